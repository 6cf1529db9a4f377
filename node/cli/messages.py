"""`smu send`, `smu inbox [--follow]`, `smu conversation`, `smu export`.

``inbox --json`` is one document; ``inbox --follow --json`` is JSON Lines,
one message or notice per line (a stream).  ``export`` is always JSON
Lines: a header, then every contact, then every message; no secrets (no
keys, links, invites or tokens: only what the user sees).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Mapping
from pathlib import Path

from .. import api
from ..control import ControlClient
from ..datadir import write_private
from .common import Command, client, emit, message_text, note, out, when


def _send_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("contact", metavar="CONTACT", help="a contact's name, handle or account id")
    p.add_argument("text", nargs="?", default=None, help="the message; - or none: read stdin")
    p.add_argument("--force", action="store_true", help="send even to a disputed account")


def cmd_send(args: argparse.Namespace) -> int:
    text = message_text(args.text)
    r = api.message.MESSAGE_SEND.ask(
        client(args), {"contact": args.contact, "text": text, "force": args.force}
    )
    out(args, r, f"sent to {r['to']} ({r['devices']} device(s)); stored as {r['message_id'][:12]}")
    return 0


def message_line(m: api.message.MessageDoc) -> str:
    who = "me" if m["outgoing"] else m["from"]
    status = ""
    if m["outgoing"] and m.get("deliveries"):
        status = "  [" + ", ".join(f"{n} {s}" for s, n in sorted(m["deliveries"].items())) + "]"
    if m.get("relayed_by"):  # unproven history (§15.4): a claim, not the sender's word
        who = f"[relayed by {m['relayed_by']}, unverified] claims {who}"
    return f"{when(m['sent_ms'])}  {who} ({m['from_device']}): {m['text']}{status}"


def _inbox_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--follow", action="store_true", help="keep printing new messages")


REVOKED = "this device was revoked: it receives no new messages (see `smu node status`)"


def cmd_inbox(args: argparse.Namespace) -> int:
    c = client(args)
    r = api.message.MESSAGE_INBOX.ask(c, {"since_ms": 0})
    revoked = api.node.NODE_STATUS.ask(c, {}).get("device_status") == "revoked"
    if args.json and not args.follow:
        emit({**r, "device_status": "revoked"} if revoked else r)
        return 0
    since = _print_batch(args, r)
    if not args.json:
        for ch in r["contact_changes"]:
            for line in ch["changes"]:
                print(f"! {ch['contact']}: {line}")
        if r["requests"]:
            print(f"{r['requests']} message request(s): see `smu requests`")
        if revoked:
            print(f"! {REVOKED}")
        if not (r["messages"] or r.get("notices") or r["contact_changes"] or r["requests"]):
            print("no messages")
        sys.stdout.flush()
    while args.follow:
        time.sleep(0.5)  # the control API has no push: poll for what is new
        since = max(
            since, _print_batch(args, api.message.MESSAGE_INBOX.ask(c, {"since_ms": since}))
        )
    return 0


def _print_batch(args: argparse.Namespace, r: api.message.Inbox) -> int:
    since = 0
    for m in r["messages"]:
        since = max(since, m["stored_ms"])
        if args.json:
            emit(m)
        else:
            print(f"[{m['conversation']}] {message_line(m)}", flush=True)
    for notice in r.get("notices", []):
        since = max(since, notice["stored_ms"])
        if args.json:
            emit({"notice": notice["text"], "stored_ms": notice["stored_ms"]})
        else:
            print(f"! {notice['text']}", flush=True)
    return since


def _contact_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("contact", metavar="CONTACT", help="a contact's name, handle or account id")


def cmd_conversation(args: argparse.Namespace) -> int:
    r = api.message.MESSAGE_CONVERSATION.ask(client(args), {"contact": args.contact})
    lines = [f"conversation with {r['contact']}"] + [message_line(m) for m in r["messages"]]
    out(args, r, "\n".join(lines))
    return 0


#: what an export keeps of a contact and of a message (nothing secret)
CONTACT_FIELDS = ("account_id", "name", "handle", "status", "verified", "blocked")
MESSAGE_FIELDS = (
    "message_id",
    "conversation",
    "conversation_account",
    "outgoing",
    "from",
    "from_device",
    "sent_ms",
    "stored_ms",
    "text",
    "request",
    "deliveries",
)
EXPORT_VERSION = 1


def export_lines(c: ControlClient) -> list[dict[str, object]]:
    status = api.node.NODE_STATUS.ask(c, {})
    contacts = api.contact.CONTACT_LIST.ask(c, {})["contacts"]
    lines: list[dict[str, object]] = [
        {
            "type": "export",
            "version": EXPORT_VERSION,
            "account": status.get("account"),
            "exported_at_ms": int(time.time() * 1000),
        }
    ]
    lines += [{"type": "contact", **{k: x.get(k) for k in CONTACT_FIELDS}} for x in contacts]
    messages = []
    for x in contacts:
        messages += api.message.MESSAGE_CONVERSATION.ask(c, {"contact": x["account_id"]})[
            "messages"
        ]
    messages += api.message.MESSAGE_REQUESTS.ask(c, {})["requests"]
    seen: set[str] = set()
    for m in sorted(messages, key=lambda m: (m["sent_ms"], m["message_id"])):
        if m["message_id"] not in seen:
            seen.add(m["message_id"])
            doc: Mapping[str, object] = m
            lines.append({"type": "message", **{k: doc[k] for k in MESSAGE_FIELDS if k in doc}})
    return lines


def _export_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--out", type=Path, default=None, help="write to this file (mode 0600), not stdout"
    )


def cmd_export(args: argparse.Namespace) -> int:
    lines = export_lines(client(args))
    text = "".join(json.dumps(doc) + "\n" for doc in lines)
    if args.out is None:
        sys.stdout.write(text)
        sys.stdout.flush()
        return 0
    write_private(args.out, text.encode())
    counts = {t: sum(1 for d in lines if d["type"] == t) for t in ("contact", "message")}
    note(f"exported {counts['contact']} contact(s), {counts['message']} message(s) to {args.out}")
    return 0


COMMANDS = [
    Command(("send",), "send a message to a contact", cmd_send, _send_args),
    Command(("inbox",), "messages received, and contact changes", cmd_inbox, _inbox_args),
    Command(("conversation",), "a conversation with a contact", cmd_conversation, _contact_arg),
    Command(
        ("export",),
        "messages and contacts as JSON Lines (no secrets)",
        cmd_export,
        _export_args,
    ),
]
