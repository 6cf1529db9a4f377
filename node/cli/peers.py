"""`smu peers [connect|disconnect|refuse|unrefuse]`."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import TypeVar

from .. import api
from ..api.schema import Method
from .common import Command, client, out

R = TypeVar("R")


def cmd_peers(args: argparse.Namespace) -> int:
    r = api.node.PEERS_LIST.ask(client(args), {})
    lines = [
        f"{p['peer_id']}  score {p['score']:>8}  {p['direction']}  {p['connection']}"
        for p in r["peers"]
    ]
    lines += [f"refused {p}" for p in r["refused"]]
    out(args, r, "\n".join(lines) or "no peers")
    return 0


def _connect_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("addr", metavar="MULTIADDR", help="ending in /p2p/<peer id>")


def cmd_connect(args: argparse.Namespace) -> int:
    r = api.node.PEERS_CONNECT.ask(client(args), {"addr": args.addr})
    out(args, r, f"connected to {r['peer_id']}")
    return 0


def _peer_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("peer", metavar="PEER_ID")


def _on_peer(
    verb: str, method: Method[api.node.PeerParams, R]
) -> Callable[[argparse.Namespace], int]:
    def run(args: argparse.Namespace) -> int:
        r = method.ask(client(args), {"peer": args.peer})
        out(args, r, f"{verb}: {args.peer}")
        return 0

    return run


COMMANDS = [
    Command(("peers",), "connected peers and their scores", cmd_peers),
    Command(("peers", "connect"), "connect to a peer", cmd_connect, _connect_args),
    Command(
        ("peers", "disconnect"),
        "drop the link to a peer",
        _on_peer("disconnect", api.node.PEERS_DISCONNECT),
        _peer_args,
    ),
    Command(
        ("peers", "refuse"),
        "disconnect and refuse a peer (for partitions)",
        _on_peer("refuse", api.node.PEERS_REFUSE),
        _peer_args,
    ),
    Command(
        ("peers", "unrefuse"),
        "take a peer off the refused list",
        _on_peer("unrefuse", api.node.PEERS_UNREFUSE),
        _peer_args,
    ),
]
