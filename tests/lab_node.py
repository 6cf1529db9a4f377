"""A node for lab tests only: ``python -m tests.lab_node --data-dir D``.

It runs the same ``Daemon`` as ``smu node run``, with one difference that
nothing outside a test can ask for: its mailbox counts a depositor on
loopback by the /24 of its address (``127.a.b.*``), as if each were a
network of its own, so that a test on one machine can stand for
depositors in many networks (PROTOCOL.md §15.17).  The product has no flag,
config key or environment variable for it: only this module passes the
``Daemon`` constructor's test-only ``mailbox_group_of``.

With ``--note-requests`` it also writes a line to stderr (``node.log``) for
each deposit and each prekey fetch its mailbox is asked to answer: the
peer id the request came from, and whether any device record this node
holds names that peer id (``lab-note mailbox <peer> named=0``), so a test
can see which identity a depositor used (PROTOCOL.md §15.13.1).
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import sys
from pathlib import Path

import trio

from node.daemon import Daemon
from node.datadir import DataDir
from node.services.mailbox import deposit_group
from protocol.core.errors import InvalidInput
from protocol.messaging import mailbox_wire, prekey_fetch


def lab_group(host: str) -> str:
    """``127.a.b.c`` -> ``lab:127.a.b``; any other host as a node would."""
    parts = host.split(".")
    if len(parts) == 4 and parts[0] == "127":
        return "lab:" + ".".join(parts[:3])
    return deposit_group(host)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="lab_node")
    parser.add_argument("--data-dir", required=True)
    parser.add_argument("--bootstrap", action="append", default=[])
    parser.add_argument("--log-level", default="warning")
    parser.add_argument("--note-requests", action="store_true")
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), stream=sys.stderr)
    for noisy in ("libp2p", "multiaddr", "async_service"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    dd = DataDir(Path(args.data_dir))
    daemon = Daemon(
        dd, dd.load_secrets(), ["/ip4/127.0.0.1/tcp/0"], args.bootstrap, mailbox_group_of=lab_group
    )
    if args.note_requests:
        note_requests(daemon)
    trio.run(daemon.run)
    return 0


def note_requests(daemon: Daemon) -> None:
    """Wrap the mailbox's and the prekey server's request handlers to note
    who each deposit and fetch came from."""
    handle, answer = daemon.mailbox._handle, daemon.prekey_serve.answer

    def note(what: str, peer: str) -> None:
        named = any(peer in r.peer_ids for r in daemon.records)
        print(f"lab-note {what} {peer} named={int(named)}", file=sys.stderr, flush=True)

    def noted_handle(data: bytes, peer: str, group: str) -> bytes:
        with contextlib.suppress(InvalidInput):  # the handler answers junk itself
            if isinstance(mailbox_wire.decode_request(data), mailbox_wire.DepositRequest):
                note("mailbox", peer)
        return handle(data, peer, group)

    def noted_answer(data: bytes, peer: str) -> bytes:
        with contextlib.suppress(InvalidInput):
            if isinstance(prekey_fetch.decode_request(data), prekey_fetch.FetchRequest):
                note("prekey", peer)
        return answer(data, peer)

    daemon.mailbox._handle = noted_handle  # type: ignore[method-assign]
    daemon.prekey_serve.answer = noted_answer  # type: ignore[method-assign]


if __name__ == "__main__":
    sys.exit(main())
