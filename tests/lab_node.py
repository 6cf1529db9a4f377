"""A node for lab tests only: ``python -m tests.lab_node --data-dir D``.

It runs the same ``Daemon`` as ``smu node run``, with one difference that
nothing outside a test can ask for: its mailbox counts a depositor on
loopback by the /24 of its address (``127.a.b.*``), as if each were a
network of its own, so that a test on one machine can stand for
depositors in many networks (PROTOCOL.md §15.17).  The product has no flag,
config key or environment variable for it: only this module passes the
``Daemon`` constructor's test-only ``mailbox_group_of``.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

import trio

from node.daemon import Daemon
from node.datadir import DataDir
from node.services.mailbox import deposit_group


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
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), stream=sys.stderr)
    for noisy in ("libp2p", "multiaddr", "async_service"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    dd = DataDir(Path(args.data_dir))
    daemon = Daemon(
        dd, dd.load_secrets(), ["/ip4/127.0.0.1/tcp/0"], args.bootstrap, mailbox_group_of=lab_group
    )
    trio.run(daemon.run)
    return 0


if __name__ == "__main__":
    sys.exit(main())
