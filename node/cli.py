"""The `smu` command line (DESIGN §6).

Every command takes ``--data-dir`` (default ``$SMU_HOME``, else the
platform's user data directory) and ``--json``.  Errors are one line on
stderr and a non-zero exit; secrets go to the terminal only when asked for
and never into ``--json`` unless ``--show-secrets`` is given.
"""

from __future__ import annotations

import argparse
import getpass
import json
import logging
import os
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn

from .config import load_config
from .control import ControlClient
from .datadir import DataDir, default_data_dir, write_private
from .errors import NodeError, NodeUsageError


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        sys.stderr.write(f"{self.prog}: error: {message} (see `{self.prog} --help`)\n")
        sys.exit(2)


def _common() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(add_help=False)
    p.add_argument(
        "--data-dir",
        type=Path,
        default=None,
        help="node data directory (default: $SMU_HOME or the user data dir)",
    )
    p.add_argument(
        "--json", action="store_true", help="print one JSON document (JSON Lines for streams)"
    )
    return p


def build_parser() -> argparse.ArgumentParser:
    common = _common()
    parser = _Parser(prog="smu", description="SMU: peer-to-peer key transparency and messaging")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    p = sub.add_parser("init", parents=[common], help="create this node's keys")
    p.add_argument("--name", default=None, help="this device's name (default: the host name)")
    p.add_argument("--network", default="smu-main", choices=["smu-main", "smu-test"])
    p.add_argument(
        "--passphrase", action="store_true", help="encrypt the keys (asks, or reads SMU_PASSPHRASE)"
    )

    node = sub.add_parser("node", help="run and inspect the daemon").add_subparsers(
        dest="node_command", required=True, parser_class=_Parser
    )
    p = node.add_parser("run", parents=[common], help="run the daemon in the foreground")
    p.add_argument(
        "--listen",
        action="append",
        default=None,
        metavar="MULTIADDR",
        help="listen address (default /ip4/127.0.0.1/tcp/0); repeatable",
    )
    p.add_argument(
        "--bootstrap",
        action="append",
        default=None,
        metavar="MULTIADDR",
        help="peer to keep connected to; repeatable",
    )
    p.add_argument(
        "--no-relay",
        action="store_true",
        help="do not relay for nodes behind NAT (offered by default once reachable)",
    )
    p.add_argument(
        "--lab-prefixes",
        metavar="FILE",
        default=None,
        help="test networks only: a file of 100.64/10 prefixes to treat as public (the NAT lab)",
    )
    p.add_argument("--relay-circuit-bytes", type=int, default=None, help=argparse.SUPPRESS)
    p.add_argument("--reach-fast", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--log-level", default=None, choices=["debug", "info", "warning", "error"])
    p.add_argument(
        "--metrics-port",
        type=int,
        default=None,
        metavar="PORT",
        help="serve Prometheus metrics on 127.0.0.1:PORT (0: a free port)",
    )
    p.add_argument(
        "--disk-budget-mb",
        type=int,
        default=None,
        metavar="MIB",
        help="stop accepting data once the database reaches this size",
    )
    node.add_parser("status", parents=[common], help="peer id, addresses, counts, set digest")
    node.add_parser("stop", parents=[common], help="stop the running daemon")

    peers = sub.add_parser("peers", parents=[common], help="connected peers and their scores")
    psub = peers.add_subparsers(dest="peers_command", parser_class=_Parser)
    p = psub.add_parser("connect", parents=[common], help="connect to a peer")
    p.add_argument("addr", metavar="MULTIADDR")
    for name, text in (
        ("disconnect", "drop the link to a peer"),
        ("refuse", "disconnect and refuse a peer (for partitions)"),
        ("unrefuse", "take a peer off the refused list"),
    ):
        p = psub.add_parser(name, parents=[common], help=text)
        p.add_argument("peer", metavar="PEER_ID")

    account = sub.add_parser("account", help="accounts").add_subparsers(
        dest="account_command", required=True, parser_class=_Parser
    )
    p = account.add_parser("create", parents=[common], help="create an account (genesis)")
    p.add_argument("--name", required=True, help="display name")
    p.add_argument(
        "--recovery-key-file",
        type=Path,
        default=None,
        help="write the recovery key to this file (mode 0600) instead of the terminal",
    )
    p.add_argument(
        "--show-secrets",
        action="store_true",
        help="with --json: include the recovery key in the JSON output",
    )
    p = account.add_parser("show", parents=[common], help="an account's devices and status")
    p.add_argument("account", nargs="?", default=None, metavar="ACCOUNT_ID|HANDLE")
    account.add_parser("list", parents=[common], help="accounts this node knows")
    p = account.add_parser("history", parents=[common], help="every change, explained")
    p.add_argument("account", nargs="?", default=None, metavar="ACCOUNT_ID|HANDLE")

    device = sub.add_parser("device", help="this account's devices").add_subparsers(
        dest="device_command", required=True, parser_class=_Parser
    )
    p = device.add_parser("list", parents=[common], help="devices, status and approvers")
    p.add_argument("account", nargs="?", default=None, metavar="ACCOUNT_ID|HANDLE")
    p = device.add_parser("link", parents=[common], help="a one-time link for a new device")
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
        default=600,
        metavar="SECONDS",
        help="how long the link stays valid (at most 600)",
    )
    device.add_parser("pending", parents=[common], help="link requests waiting for you")
    for name, text in (("approve", "approve a link request"), ("reject", "reject a link request")):
        p = device.add_parser(name, parents=[common], help=text)
        p.add_argument("id", metavar="ID", help="request id (a prefix is enough)")
    p = device.add_parser("join", parents=[common], help="join an account with a link")
    p.add_argument(
        "link",
        metavar="LINK",
        help="the link string or URI from the other device, or - to read it from "
        "stdin (other local users can see command lines)",
    )
    p.add_argument("--name", default=None, help="this device's name")
    p.add_argument("--yes", action="store_true", help="confirm without asking (scripts)")
    p = device.add_parser("revoke", parents=[common], help="revoke a device")
    p.add_argument("device", metavar="NAME|FINGERPRINT")
    p.add_argument("--cascade", action="store_true", help="also revoke every device it added")
    p.add_argument("--yes", action="store_true", help="confirm revoking the last active device")

    p = sub.add_parser(
        "recover",
        parents=[common],
        help="make this fresh node the account's only device, with the recovery key",
    )
    p.add_argument("account", metavar="ACCOUNT_ID|HANDLE")
    p.add_argument(
        "--recovery-key-file",
        type=Path,
        default=None,
        help="read the recovery key from this file instead of a prompt",
    )
    p.add_argument(
        "--new-recovery-key-file",
        type=Path,
        default=None,
        help="write the new recovery key to this file (mode 0600)",
    )
    p.add_argument(
        "--show-secrets",
        action="store_true",
        help="with --json: include the new recovery key in the JSON output",
    )

    p = sub.add_parser(
        "invite", parents=[common], help="an invite for your account (code, URI, QR)"
    )
    p.add_argument("--no-qr", action="store_true", help="do not draw the QR code")

    contact = sub.add_parser("contact", help="contacts").add_subparsers(
        dest="contact_command", required=True, parser_class=_Parser
    )
    p = contact.add_parser("add", parents=[common], help="add a contact")
    p.add_argument("ref", metavar="INVITE|ACCOUNT_ID|HANDLE")
    p.add_argument("--name", default=None, help="your name for the contact")
    contact.add_parser("list", parents=[common], help="contacts, with changes to their accounts")
    p = contact.add_parser("ack", parents=[common], help="mark a contact's changes as seen")
    p.add_argument("contact", metavar="CONTACT")

    p = sub.add_parser("verify", parents=[common], help="the safety number with a contact")
    p.add_argument("contact", metavar="CONTACT")
    p.add_argument(
        "--confirm",
        action="store_true",
        help="mark the contact verified (after comparing the number in person)",
    )

    p = sub.add_parser("send", parents=[common], help="send a message to a contact")
    p.add_argument("contact", metavar="CONTACT")
    p.add_argument("text", nargs="?", default=None, help="the message (default: read stdin)")
    p.add_argument("--force", action="store_true", help="send even to a disputed account")
    p = sub.add_parser("inbox", parents=[common], help="messages received, and contact changes")
    p.add_argument("--follow", action="store_true", help="keep printing new messages")
    p = sub.add_parser("conversation", parents=[common], help="a conversation with a contact")
    p.add_argument("contact", metavar="CONTACT")
    p = sub.add_parser(
        "requests",
        parents=[common],
        help="messages from accounts not in contacts (capped; they expire after 14 days)",
    )
    rsub = p.add_subparsers(dest="requests_command", parser_class=_Parser)
    for name, text in (("accept", "add the sender to contacts"), ("block", "block the sender")):
        q = rsub.add_parser(name, parents=[common], help=text)
        q.add_argument("account", metavar="ACCOUNT_ID|HANDLE")

    logp = sub.add_parser("log", help="the local event store").add_subparsers(
        dest="log_command", required=True, parser_class=_Parser
    )
    logp.add_parser("verify", parents=[common], help="re-verify the whole store from scratch")

    event = sub.add_parser("event", help="raw signed events").add_subparsers(
        dest="event_command", required=True, parser_class=_Parser
    )
    p = event.add_parser("submit", parents=[common], help="submit an already-signed event (hex)")
    p.add_argument("event", help="event as hex, or - to read hex lines from stdin")

    p = sub.add_parser("demo", parents=[common], help="the local network demo")
    p.add_argument("--nodes", type=int, default=6, help="how many nodes (at least 6)")
    p.add_argument("--keep", action="store_true", help="keep the demo's data directories")
    return parser


def _datadir(args: argparse.Namespace) -> DataDir:
    return DataDir(args.data_dir if args.data_dir is not None else default_data_dir())


def _client(args: argparse.Namespace) -> ControlClient:
    return ControlClient(_datadir(args).socket_path)


def _out(args: argparse.Namespace, doc: Any, text: str) -> None:
    if args.json:
        print(json.dumps(doc))
    else:
        print(text)


def _passphrase(confirm: bool) -> str:
    env = os.environ.get("SMU_PASSPHRASE")
    if env is not None:
        return env
    if not sys.stdin.isatty():
        raise NodeUsageError("the keys are encrypted: set SMU_PASSPHRASE or run on a terminal")
    first = getpass.getpass("passphrase: ")
    if confirm and getpass.getpass("again: ") != first:
        raise NodeUsageError("the passphrases differ")
    return first


def cmd_init(args: argparse.Namespace) -> int:
    dd = _datadir(args)
    name = args.name or os.uname().nodename or "device"
    secrets = dd.init(args.network, name, _passphrase(True) if args.passphrase else None)
    doc = {
        "data_dir": str(dd.path),
        "network": args.network,
        "device_name": name,
        "device_fingerprint": secrets.device.fingerprint,
        "encrypted": bool(args.passphrase),
    }
    _out(
        args,
        doc,
        f"initialised {dd.path}\n  network {args.network}\n  device  {name} "
        f"({secrets.device.fingerprint})",
    )
    return 0


def cmd_node_run(args: argparse.Namespace) -> int:
    dd = _datadir(args)
    # node.toml in the data dir, each flag given overriding it (§13.3)
    settings = load_config(dd.path).with_flags(
        listen=args.listen,
        bootstrap=args.bootstrap,
        log_level=args.log_level,
        metrics_port=args.metrics_port,
        disk_budget_mb=args.disk_budget_mb,
    )
    logging.basicConfig(
        level=settings.log_level.upper(),
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    options = _nat_options(args, str(dd.read_config()["network"]))
    secrets = dd.load_secrets(_passphrase(False) if dd.is_encrypted() else None)
    from .daemon import run_daemon  # importing libp2p takes a second: only here

    _quiet_libp2p()
    run_daemon(dd, secrets, settings, **options)
    return 0


def _quiet_libp2p() -> None:
    """Once libp2p is imported: its import cuts the "libp2p" logger off
    (no handler, no propagation), so what it logs reached stderr unformatted
    through logging's last resort; it goes through ours again, and the
    loggers that report every refused or failed attempt at ERROR (stream
    opening over seven lines, a peer resetting its connection, relay, hole
    punching) are silenced: the node logs what it decides itself
    (smu.links, smu.relay, smu.reach)."""
    logging.getLogger("libp2p").propagate = True
    for noisy in ("libp2p", "multiaddr", "async_service"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    for chatty in (
        "libp2p.host.basic_host",
        "libp2p.protocol_muxer",
        "libp2p.stream_muxer",
        "libp2p.transport",
        "libp2p.relay",
        "libp2p.network",
        "libp2p.network.auto_connector",  # its own level: INFO every few seconds
        "libp2p.identity",
    ):
        logging.getLogger(chatty).setLevel(logging.CRITICAL)


def _nat_options(args: argparse.Namespace, network: str) -> dict[str, Any]:
    from protocol.links.addresses import LabConfigError, lab_classifier
    from protocol.links.reachability import ReachConfig

    options: dict[str, Any] = {"offer_relay": not args.no_relay}
    if args.lab_prefixes:
        try:
            text = Path(args.lab_prefixes).read_text()
            options["classifier"] = lab_classifier(network, text)
        except (OSError, LabConfigError) as exc:
            raise SystemExit(f"error: --lab-prefixes: {exc}") from exc
    if args.relay_circuit_bytes:
        options["circuit_bytes"] = args.relay_circuit_bytes
    if args.reach_fast:  # the lab: verdicts in seconds, not minutes
        options["reach_config"] = ReachConfig(
            probe_timeout=8.0, probe_interval=30.0, relay_retry=2.0
        )
    return options


def cmd_node_status(args: argparse.Namespace) -> int:
    s = _client(args).call("node.status")
    text = "\n".join(
        [
            f"peer id   {s['peer_id']}",
            f"network   {s['network']}",
            *[f"listen    {a}" for a in s["listen"]],
            f"peers     {s['peers']}",
            f"reach     {s['reachability']['reachability']}"
            + (
                f"   relays {', '.join(s['reachability']['relays'])}"
                if s["reachability"]["relays"]
                else ""
            ),
            f"events    {s['events']}   accounts {s['accounts']}   escrow {s['escrow']}",
            f"digest    {s['event_set_digest']}",
        ]
    )
    _out(args, s, text)
    return 0


def cmd_node_stop(args: argparse.Namespace) -> int:
    _out(args, _client(args).call("node.stop"), "stopping")
    return 0


def cmd_peers(args: argparse.Namespace) -> int:
    c = _client(args)
    if args.peers_command is None:
        r = c.call("peers.list")
        lines = [
            f"{p['peer_id']}  score {p['score']:>8}  {p['direction']}  {p['connection']}"
            for p in r["peers"]
        ]
        lines += [f"refused {p}" for p in r["refused"]]
        _out(args, r, "\n".join(lines) or "no peers")
    elif args.peers_command == "connect":
        r = c.call("peers.connect", addr=args.addr)
        _out(args, r, f"connected to {r['peer_id']}")
    else:
        r = c.call(f"peers.{args.peers_command}", peer=args.peer)
        _out(args, r, f"{args.peers_command}: {args.peer}")
    return 0


class _Spinner:
    """Progress while the daemon does the proof-of-work."""

    def __init__(self, text: str, enabled: bool) -> None:
        self.text, self.enabled = text, enabled
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._spin, daemon=True)

    def _spin(self) -> None:
        start = time.monotonic()
        while not self._done.wait(0.2):
            sys.stderr.write(f"\r{self.text} {time.monotonic() - start:4.1f}s")
            sys.stderr.flush()
        sys.stderr.write("\r" + " " * (len(self.text) + 8) + "\r")

    def __enter__(self) -> _Spinner:
        if self.enabled:
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._done.set()
        if self.enabled:
            self._thread.join()


def _show_recovery_key(
    args: argparse.Namespace, doc: dict[str, Any], file: Path | None, summary: str, warning: str
) -> None:
    """The one place a recovery key is shown (DESIGN §9, secrets in output):
    to a file the user named, else on the terminal; in --json only with
    --show-secrets."""
    key = doc.pop("recovery_key")
    if file is not None:
        try:
            write_private(file, (key + "\n").encode())
            doc["recovery_key_file"] = str(file)
        except OSError as exc:
            # The account exists now: never lose its only recovery key.
            sys.stderr.write(
                f"smu: could not write {file} ({exc.strerror}); the recovery key "
                f"is shown here instead — write it down:\n    {key}\n"
            )
            file = None
            doc["recovery_key_file"] = None
    elif args.json and args.show_secrets:
        doc["recovery_key"] = key
    if args.json:
        print(json.dumps(doc))
        return
    print(summary)
    if file is not None:
        print(f"  recovery key written to {file}")
    else:
        print(f"\n{warning}\n\n    {key}\n")


def cmd_account_create(args: argparse.Namespace) -> int:
    with _Spinner("working on the proof-of-work", sys.stderr.isatty()):
        r = _client(args).call("account.create", name=args.name)
    _show_recovery_key(
        args,
        r,
        args.recovery_key_file,
        f"created {r['handle']}\n  account id {r['account_id']}",
        "RECOVERY KEY — write it down now and keep it offline. It is shown only once,\n"
        "and it is the only way back into the account if every device is lost:",
    )
    return 0


def cmd_account_show(args: argparse.Namespace) -> int:
    from .render import state_text

    doc = _client(args).call("account.show", account=args.account)
    _out(args, doc, state_text(doc))
    return 0


def cmd_account_list(args: argparse.Namespace) -> int:
    r = _client(args).call("account.list")
    lines = [
        f"{a['handle']:<28} {a['status']:<12} {a['devices_active']} active device(s), "
        f"{a['events']} events"
        for a in r["accounts"]
    ]
    _out(args, r, "\n".join(lines) or "no accounts")
    return 0


def cmd_account_history(args: argparse.Namespace) -> int:
    r = _client(args).call("account.history", account=args.account)
    lines = [f"history of {r['account']['handle']}"]
    for e in r["events"]:
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(e["timestamp_ms"] / 1000))
        lines.append(f"  {when}Z  {e['event_id'][:12]}  {e['text']}")
        if e["void"]:
            lines.append(f"      VOID: {e['void']}")
    _out(args, r, "\n".join(lines))
    return 0


def cmd_device_list(args: argparse.Namespace) -> int:
    doc = _client(args).call("device.list", account=args.account)
    lines = [f"{doc['handle']}  [{doc['status']}]"]
    for d in doc["devices"]:
        me = "  (this device)" if d.get("this_device") else ""
        lines.append(
            f"  {d['status']:<20} {d['name']:<16} {d['fingerprint']}   "
            f"approved by {d['approved_by']}{me}"
        )
    _out(args, doc, "\n".join(lines))
    return 0


def _ask(question: str) -> bool:
    if not sys.stdin.isatty():
        raise NodeUsageError(
            "no terminal to ask on: answer with --yes, or with `smu device approve|reject ID`"
        )
    return input(f"{question} [y/N] ").strip().lower() in ("y", "yes")


def cmd_device_link(args: argparse.Namespace) -> int:
    c = _client(args)
    r = c.call("device.link", ttl_seconds=args.ttl)
    when = time.strftime("%H:%M:%S", time.localtime(r["expires_at_ms"] / 1000))
    if args.link_file is not None:
        write_private(args.link_file, (r["link"] + "\n").encode())
    if args.json:
        doc = {"id": r["id"], "expires_at_ms": r["expires_at_ms"]}
        if args.show_secrets:
            doc.update(link=r["link"], uri=r["uri"])
        if args.link_file is not None:
            doc["link_file"] = str(args.link_file)
        print(json.dumps(doc), flush=True)
    elif args.link_file is not None:
        print(f"link written to {args.link_file}; single use, valid until {when}")
    else:
        print(
            "On the new device run:\n\n"
            f"    smu device join {r['link']}\n\n"
            f"or open {r['uri']}\nor scan:"
        )
        if not args.no_qr:
            print(qr_text(r["uri"]))
        print(
            f"The link works once and until {when}. Anyone holding it can ask to join, so "
            "share it only with your new device.",
            flush=True,
        )
    if not args.approve:
        return 0
    deadline = r["expires_at_ms"] / 1000
    while time.time() < deadline:
        mine = [x for x in c.call("device.pending")["requests"] if x["id"] == r["id"]]
        if not mine or mine[0]["state"] not in ("offered", "pending_approval"):
            raise NodeUsageError("the link was refused, expired or burnt")
        if mine[0]["awaiting_approval"]:
            req = mine[0]
            print(f"\nThe new device shows code {req['code']}.")
            if _ask(f"Approve device {req['device_name']!r}, fingerprint {req['fingerprint']}?"):
                a = c.call("device.approve", id=r["id"])
                _out(args, a, f"approved {a['device_name']} ({a['fingerprint']})")
            else:
                c.call("device.reject", id=r["id"])
                _out(args, {"rejected": True}, "rejected")
            return 0
        time.sleep(0.3)
    raise NodeUsageError("the link expired before a device asked to join")


def cmd_device_pending(args: argparse.Namespace) -> int:
    r = _client(args).call("device.pending")
    lines = []
    for x in r["requests"]:
        if x["awaiting_approval"]:
            lines.append(
                f"{x['id'][:8]}  {x['device_name']!r}  {x['fingerprint']}  code "
                f"{x['code']}  -> smu device approve {x['id'][:8]}"
            )
        else:
            lines.append(f"{x['id'][:8]}  {x['state']}")
    _out(args, r, "\n".join(lines) or "no link requests")
    return 0


def cmd_device_answer(args: argparse.Namespace) -> int:
    c = _client(args)
    if args.device_command == "approve":
        r = c.call("device.approve", id=args.id)
        _out(
            args, r, f"approved {r['device_name']} ({r['fingerprint']}); event {r['event_id'][:12]}"
        )
    else:
        _out(args, c.call("device.reject", id=args.id), "rejected")
    return 0


def cmd_device_join(args: argparse.Namespace) -> int:
    c = _client(args)
    link = sys.stdin.readline().strip() if args.link == "-" else args.link
    r = c.call("device.join", link=link, name=args.name)
    acct = r["account"]
    if not args.json:
        print(f"Joining {acct['handle']} [{acct['status']}] as {r['device_name']!r}.")
        for d in acct["devices"]:
            print(f"  active device {d['name']!r}  {d['fingerprint']}")
        print(f"Confirmation code: {r['code']} — the other device must show the same code.")
    accept = args.yes or _ask("Join this account?")
    if accept and not args.json:
        print("Waiting for the other device to approve...", flush=True)
    done = c.call("device.join_confirm", join_id=r["join_id"], accept=accept)
    if not accept:
        _out(args, done, "declined")
        return 1
    _out(
        args,
        {**done, "code": r["code"]},
        f"joined {done['account']['handle']}: this device is now active",
    )
    return 0


def cmd_device_revoke(args: argparse.Namespace) -> int:
    r = _client(args).call(
        "device.revoke", device=args.device, cascade=args.cascade, confirm_last=args.yes
    )
    lines = [
        f"revoked {x['device']} ({x['fingerprint']}): event {x['event_id'][:12]}"
        for x in r["revoked"]
    ]
    _out(args, r, "\n".join(lines))
    return 0


def _read_recovery_key(path: Path | None) -> str:
    if path is not None:
        return path.read_text().strip()
    if not sys.stdin.isatty():
        raise NodeUsageError("no terminal to ask for the recovery key: use --recovery-key-file")
    return getpass.getpass("recovery key: ").strip()


def cmd_recover(args: argparse.Namespace) -> int:
    key = _read_recovery_key(args.recovery_key_file)
    with _Spinner("working on the proof-of-work", sys.stderr.isatty()):
        r = _client(args).call("account.recover", account=args.account, recovery_key=key)
    _show_recovery_key(
        args,
        r,
        args.new_recovery_key_file,
        f"recovered {r['account']['handle']}: this node is now its only device",
        "NEW RECOVERY KEY — the old one no longer works. Write this one down now:",
    )
    return 0


def qr_text(data: str) -> str:
    """A QR code drawn with block characters (segno), for a terminal."""
    import io

    import segno

    out = io.StringIO()
    segno.make(data.upper(), error="m").terminal(out=out, compact=True)
    return out.getvalue()


def cmd_invite(args: argparse.Namespace) -> int:
    r = _client(args).call("invite.create")
    text = [f"invite for {r['handle']}", f"  code  {r['invite']}", f"  URI   {r['uri']}"]
    if not args.no_qr:
        text.append(qr_text(r["uri"]))
    _out(args, r, "\n".join(text))
    return 0


def cmd_contact(args: argparse.Namespace) -> int:
    c = _client(args)
    if args.contact_command == "add":
        r = c.call("contact.add", ref=args.ref, name=args.name)
        note = "" if r["synced"] else " (its log is not here yet; it will arrive by gossip)"
        _out(args, r, f"added {r['name']}: {r['handle']}{note}")
    elif args.contact_command == "ack":
        _out(args, c.call("contact.ack", contact=args.contact), "marked as seen")
    else:
        r = c.call("contact.list")
        lines = []
        for x in r["contacts"]:
            mark = "verified" if x["verified"] else "not verified"
            lines.append(
                f"{x['name']:<16} {x['handle'] or '(not synced)':<28} {x['status']:<12} {mark}"
            )
            lines += [f"    ! {change}" for change in x["changes"]]
        _out(args, r, "\n".join(lines) or "no contacts")
    return 0


def cmd_verify(args: argparse.Namespace) -> int:
    r = _client(args).call("contact.verify", contact=args.contact, confirm=args.confirm)
    n = r["safety_number"].split()
    grid = "\n".join("    " + " ".join(n[i : i + 4]) for i in range(0, 12, 4))
    state = "verified" if r["contact"]["verified"] else "not verified"
    _out(
        args,
        r,
        f"safety number with {r['contact']['name']} ({state}):\n{grid}\n"
        "compare it with your contact in person or on a call; if it matches, run "
        f"`smu verify {args.contact} --confirm`",
    )
    return 0


def cmd_send(args: argparse.Namespace) -> int:
    text = args.text if args.text is not None else sys.stdin.read().rstrip("\n")
    r = _client(args).call("message.send", contact=args.contact, text=text, force=args.force)
    _out(args, r, f"sent to {r['to']} ({r['devices']} device(s)); stored as {r['message_id'][:12]}")
    return 0


def _message_line(m: dict[str, Any]) -> str:
    when = time.strftime("%Y-%m-%d %H:%M", time.localtime(m["sent_ms"] / 1000))
    who = "me" if m["outgoing"] else m["from"]
    status = ""
    if m["outgoing"] and m.get("deliveries"):
        status = "  [" + ", ".join(f"{n} {s}" for s, n in sorted(m["deliveries"].items())) + "]"
    return f"{when}  {who} ({m['from_device']}): {m['text']}{status}"


def cmd_inbox(args: argparse.Namespace) -> int:
    c = _client(args)
    since = 0
    first = True
    while True:
        r = c.call("message.inbox", since_ms=since)
        for m in r["messages"]:
            since = max(since, m["stored_ms"])
            print(
                json.dumps(m) if args.json else f"[{m['conversation']}] {_message_line(m)}",
                flush=True,
            )
        for notice in r.get("notices", []):
            since = max(since, notice["stored_ms"])
            print(json.dumps(notice) if args.json else f"! {notice['text']}", flush=True)
        if first:
            for ch in r["contact_changes"]:
                for line in ch["changes"]:
                    doc = {"contact": ch["contact"], "change": line}
                    print(json.dumps(doc) if args.json else f"! {ch['contact']}: {line}")
            if r["requests"] and not args.json:
                print(f"{r['requests']} message request(s): see `smu requests`")
            first = False
        if not args.follow:
            return 0
        time.sleep(0.5)


def cmd_conversation(args: argparse.Namespace) -> int:
    r = _client(args).call("message.conversation", contact=args.contact)
    _out(
        args,
        r,
        "\n".join(
            [f"conversation with {r['contact']}"] + [_message_line(m) for m in r["messages"]]
        ),
    )
    return 0


def cmd_requests(args: argparse.Namespace) -> int:
    c = _client(args)
    if args.requests_command == "accept":
        r = c.call("requests.accept", account=args.account)
        _out(args, r, f"accepted {r['name']}")
    elif args.requests_command == "block":
        _out(args, c.call("requests.block", account=args.account), "blocked")
    else:
        r = c.call("message.requests")
        lines = [f"{m['conversation_account'][:16]}  {_message_line(m)}" for m in r["requests"]]
        _out(args, r, "\n".join(lines) or "no message requests")
    return 0


def cmd_log_verify(args: argparse.Namespace) -> int:
    from protocol.core.params import network_by_id

    from .verify import verify_store

    dd = _datadir(args)
    params = network_by_id(str(dd.read_config()["network"]))
    report = verify_store(dd.db_path, params)
    lines = [
        f"{report.events} events checked, {report.accepted} valid, {report.accounts} accounts, "
        f"{len(report.problems)} problem(s)"
    ]
    lines += [
        f"  seq {p['seq']} {p['event_id'][:16]}: {p['error']}: {p['message']}"
        for p in report.problems
    ]
    _out(args, report.to_json(), "\n".join(lines))
    return 0 if report.ok else 1


def cmd_event_submit(args: argparse.Namespace) -> int:
    c = _client(args)
    items = [line.strip() for line in sys.stdin] if args.event == "-" else [args.event]
    results = []
    for item in items:
        if not item:
            continue
        try:
            bytes.fromhex(item)
        except ValueError as exc:
            raise NodeUsageError("an event is given as hex") from exc
        results.append(c.call("event.submit", event=item))
    if args.json:
        print(json.dumps(results[0] if len(results) == 1 else results))
    else:
        for r in results:
            print(f"{r['status']} {r['event_id']}")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from .netdemo import run

    return run(as_json=args.json, nodes=args.nodes, keep=args.keep)


# (command, subcommand) -> handler; subcommand None for commands without one.
COMMANDS: dict[tuple[str, str | None], Callable[[argparse.Namespace], int]] = {
    ("init", None): cmd_init,
    ("node", "run"): cmd_node_run,
    ("node", "status"): cmd_node_status,
    ("node", "stop"): cmd_node_stop,
    ("peers", None): cmd_peers,
    ("account", "create"): cmd_account_create,
    ("account", "show"): cmd_account_show,
    ("account", "list"): cmd_account_list,
    ("account", "history"): cmd_account_history,
    ("device", "list"): cmd_device_list,
    ("device", "revoke"): cmd_device_revoke,
    ("device", "link"): cmd_device_link,
    ("device", "pending"): cmd_device_pending,
    ("device", "approve"): cmd_device_answer,
    ("device", "reject"): cmd_device_answer,
    ("device", "join"): cmd_device_join,
    ("recover", None): cmd_recover,
    ("invite", None): cmd_invite,
    ("contact", None): cmd_contact,
    ("verify", None): cmd_verify,
    ("log", "verify"): cmd_log_verify,
    ("event", "submit"): cmd_event_submit,
    ("demo", None): cmd_demo,
    ("send", None): cmd_send,
    ("inbox", None): cmd_inbox,
    ("conversation", None): cmd_conversation,
    ("requests", None): cmd_requests,
}


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    sub = getattr(args, f"{args.command}_command", None)
    fn = COMMANDS.get((args.command, sub)) or COMMANDS[(args.command, None)]
    try:
        return fn(args)
    except NodeError as exc:  # RpcError included: the daemon's one-line answer
        sys.stderr.write(f"smu: error: {exc}\n")
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
