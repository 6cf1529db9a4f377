"""`smu device list|link|pending|approve|reject|join|revoke`.

Questions are asked on the terminal (``/dev/tty``), so that the link can
come on standard input (``device join -``); a command that will need to ask
finds out that it cannot before it does anything that cannot be undone
(a join request burns the link).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from .. import api
from ..datadir import write_private
from ..errors import NodeUsageError, RpcError
from .accounts import ACCOUNT_METAVAR
from .common import (
    Command,
    Terminal,
    client,
    emit,
    group,
    note,
    out,
    qr_text,
    read_stdin_line,
    terminal,
    want_qr,
    when,
)

#: how long a link stays valid at most (the daemon's limit, §14.2)
MAX_TTL = 600


def _list_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "account", nargs="?", default=None, metavar=ACCOUNT_METAVAR, help="default: your own"
    )


def cmd_list(args: argparse.Namespace) -> int:
    doc = api.account.DEVICE_LIST.ask(client(args), {"account": args.account})
    lines = [f"{doc['handle']}  [{doc['status']}]"]
    for d in doc["devices"]:
        me = "  (this device)" if d.get("this_device") else ""
        lines.append(
            f"  {d['status']:<20} {d['name']:<16} {d['fingerprint']}   "
            f"approved by {d['approved_by']}{me}"
        )
    out(args, doc, "\n".join(lines))
    return 0


def _link_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--approve", action="store_true", help="wait for the request and ask for approval here"
    )
    p.add_argument(
        "--link-file",
        type=Path,
        default=None,
        help="write the link to this file (mode 0600) instead of the terminal",
    )
    p.add_argument(
        "--show-secrets",
        action="store_true",
        help="with --json: include the link (a secret) in the JSON output",
    )
    p.add_argument("--no-qr", action="store_true", help="do not draw the QR code")
    p.add_argument(
        "--ttl",
        type=int,
        default=MAX_TTL,
        metavar="SECONDS",
        help=f"how long the link stays valid (at most {MAX_TTL})",
    )


APPROVE_ELSEWHERE = "approve with `smu device pending` and `smu device approve ID`"


def cmd_link(args: argparse.Namespace) -> int:
    if args.json and args.link_file is None and not args.show_secrets:
        raise NodeUsageError(
            "--json would leave out the link: add --link-file FILE, or --show-secrets "
            "to put it in the JSON"
        )
    if args.ttl < 1:
        raise NodeUsageError("--ttl is a number of seconds, at least 1")
    if args.ttl > MAX_TTL:
        note(f"smu: a link is valid for at most {MAX_TTL} s: this one for {MAX_TTL} s")
        args.ttl = MAX_TTL
    if args.approve:
        with terminal(f"--approve asks here; without a terminal, {APPROVE_ELSEWHERE}") as tty:
            return _link_and_approve(args, tty)
    _offer(args)
    return 0


def _offer(args: argparse.Namespace) -> api.account.LinkOffer:
    r = api.account.DEVICE_LINK.ask(client(args), {"ttl_seconds": args.ttl})
    until = when(int(r["expires_at_ms"]), "%H:%M:%S")
    if args.link_file is not None:
        write_private(args.link_file, (r["link"] + "\n").encode())
    if args.json:
        doc: dict[str, object] = {"id": r["id"], "expires_at_ms": r["expires_at_ms"]}
        if args.show_secrets:
            doc.update(link=r["link"], uri=r["uri"])
        if args.link_file is not None:
            doc["link_file"] = str(args.link_file)
        emit(doc)
    elif args.link_file is not None:
        print(f"link written to {args.link_file}; single use, valid until {until}")
    else:
        qr = want_qr(args)
        print(
            "On the new device run:\n\n"
            f"    smu device join {r['link']}\n\n"
            f"or open {r['uri']}" + ("\nor scan:" if qr else "")
        )
        if qr:
            print(qr_text(r["uri"]))
        print(
            f"The link works once and until {until}. Anyone holding it can ask to join, so "
            "share it only with your new device.",
            flush=True,
        )
    return r


def _link_and_approve(args: argparse.Namespace, tty: Terminal) -> int:
    c = client(args)
    r = _offer(args)
    deadline = int(r["expires_at_ms"]) / 1000
    until = when(int(r["expires_at_ms"]), "%H:%M:%S")
    note(f"waiting for the new device to ask to join (until {until}; Ctrl-C stops)...")
    while time.time() < deadline:
        mine = [x for x in api.account.DEVICE_PENDING.ask(c, {})["requests"] if x["id"] == r["id"]]
        if not mine or mine[0]["state"] not in ("offered", "pending_approval"):
            raise NodeUsageError("the link was refused, expired or burnt")
        if mine[0]["awaiting_approval"]:
            req = mine[0]
            tty.write(f"\nThe new device shows code {req['code']}.\n")
            question = f"Approve device {req['device_name']!r}, fingerprint {req['fingerprint']}?"
            if tty.ask(question):
                a = api.account.DEVICE_APPROVE.ask(c, {"id": r["id"]})
                out(args, a, f"approved {a['device_name']} ({a['fingerprint']})")
                return 0
            out(args, api.account.DEVICE_REJECT.ask(c, {"id": r["id"]}), "rejected")
            return 1
        time.sleep(0.3)  # polling the daemon; no event to wait on over the control API
    raise NodeUsageError("the link expired before a device asked to join")


def cmd_pending(args: argparse.Namespace) -> int:
    r = api.account.DEVICE_PENDING.ask(client(args), {})
    lines = []
    for x in r["requests"]:
        if x["awaiting_approval"]:
            lines.append(
                f"{x['id'][:8]}  {x['device_name']!r}  {x['fingerprint']}  code "
                f"{x['code']}  -> smu device approve {x['id'][:8]}"
            )
        else:
            lines.append(f"{x['id'][:8]}  {x['state']}")
    out(args, r, "\n".join(lines) or "no link requests")
    return 0


def _id_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("id", metavar="ID", help="request id (a prefix is enough)")


def cmd_approve(args: argparse.Namespace) -> int:
    r = api.account.DEVICE_APPROVE.ask(client(args), {"id": args.id})
    out(args, r, f"approved {r['device_name']} ({r['fingerprint']}); event {r['event_id'][:12]}")
    return 0


def cmd_reject(args: argparse.Namespace) -> int:
    out(args, api.account.DEVICE_REJECT.ask(client(args), {"id": args.id}), "rejected")
    return 0


def _join_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "link",
        metavar="LINK",
        help="the link string or URI from the other device, or - to read it from "
        "stdin (other local users can see command lines)",
    )
    p.add_argument("--name", default=None, help="this device's name")
    p.add_argument(
        "--yes", action="store_true", help="confirm without asking (scripts; no code check)"
    )


def cmd_join(args: argparse.Namespace) -> int:
    link = read_stdin_line("link") if args.link == "-" else args.link
    if args.yes:
        return _join(args, link, None)
    # Find out now whether we can ask: after device.join the link is used.
    with terminal("run `smu device join` on a terminal, or add --yes (scripts)") as tty:
        return _join(args, link, tty)


def _join(args: argparse.Namespace, link: str, tty: Terminal | None) -> int:
    c = client(args)
    r = api.account.DEVICE_JOIN.ask(c, {"link": link, "name": args.name})
    acct = r["account"]
    accept = True
    if tty is not None:
        tty.write(f"Joining {acct['handle']} [{acct['status']}] as {r['device_name']!r}.\n")
        for d in acct["devices"]:
            tty.write(f"  active device {d['name']!r}  {d['fingerprint']}\n")
        tty.write(f"Confirmation code: {r['code']} — the other device must show the same code.\n")
        accept = tty.ask("Join this account?")
    if accept:
        note("waiting for the other device to approve (up to 6 minutes)...")
    c.timeout = None  # the daemon bounds the wait (the joiner's approval timeout)
    try:
        done = api.account.DEVICE_JOIN_CONFIRM.ask(c, {"join_id": r["join_id"], "accept": accept})
    except RpcError:
        # The approval may have landed as the wait ended: the node knows.
        status = api.node.NODE_STATUS.ask(c, {})
        if not (accept and status.get("account")):
            raise
        done = {"joined": True, "account": acct}
    if not accept:
        out(args, done, "declined")
        return 1
    out(
        args,
        {**done, "code": r["code"]},
        f"joined {done['account']['handle']}: this device is now active",
    )
    return 0


def _revoke_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("device", metavar="NAME|FINGERPRINT")
    p.add_argument("--cascade", action="store_true", help="also revoke every device it added")
    p.add_argument("--yes", action="store_true", help="confirm revoking the last active device")


def cmd_revoke(args: argparse.Namespace) -> int:
    r = api.account.DEVICE_REVOKE.ask(
        client(args), {"device": args.device, "cascade": args.cascade, "confirm_last": args.yes}
    )
    lines = [
        f"revoked {x['device']} ({x['fingerprint']}): event {x['event_id'][:12]}"
        for x in r["revoked"]
    ]
    out(args, r, "\n".join(lines))
    return 0


COMMANDS = [
    group(("device",), "this account's devices"),
    Command(("device", "list"), "devices, status and approvers", cmd_list, _list_args),
    Command(("device", "link"), "a one-time link for a new device", cmd_link, _link_args),
    Command(("device", "pending"), "link requests waiting for you", cmd_pending),
    Command(("device", "approve"), "approve a link request", cmd_approve, _id_args),
    Command(("device", "reject"), "reject a link request", cmd_reject, _id_args),
    Command(("device", "join"), "join an account with a link", cmd_join, _join_args),
    Command(("device", "revoke"), "revoke a device", cmd_revoke, _revoke_args),
]
