"""`smu requests [accept|block ACCOUNT]`: messages from accounts that are
not contacts (capped; they expire after 14 days)."""

from __future__ import annotations

import argparse

from .. import api
from .accounts import ACCOUNT_METAVAR
from .common import Command, client, out
from .messages import message_line


def cmd_requests(args: argparse.Namespace) -> int:
    r = api.message.MESSAGE_REQUESTS.ask(client(args), {})
    lines = [f"{m['conversation_account'][:16]}  {message_line(m)}" for m in r["requests"]]
    out(args, r, "\n".join(lines) or "no message requests")
    return 0


def _account_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("account", metavar=ACCOUNT_METAVAR, help="the sender: its name, handle or id")


def cmd_accept(args: argparse.Namespace) -> int:
    r = api.contact.REQUESTS_ACCEPT.ask(client(args), {"account": args.account})
    out(args, r, f"accepted {r['name']}")
    return 0


def cmd_block(args: argparse.Namespace) -> int:
    out(args, api.contact.REQUESTS_BLOCK.ask(client(args), {"account": args.account}), "blocked")
    return 0


COMMANDS = [
    Command(
        ("requests",),
        "messages from accounts not in contacts (capped; they expire after 14 days)",
        cmd_requests,
    ),
    Command(("requests", "accept"), "add the sender to contacts", cmd_accept, _account_arg),
    Command(("requests", "block"), "block the sender", cmd_block, _account_arg),
]
