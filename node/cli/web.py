"""`smu web`: open the node's web app with a one-time address (PROTOCOL.md
§13.1; the launch itself is ``node/web/launch.py``)."""

from __future__ import annotations

import argparse

from .common import Command, client, datadir


def _web_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--no-open", action="store_true", help="print the address only")
    p.add_argument(
        "--show-secrets", action="store_true", help="with --json: include the one-time address"
    )


def cmd_web(args: argparse.Namespace) -> int:
    from ..web.launch import run

    return run(client(args), datadir(args).path, args.json, args.show_secrets, args.no_open)


COMMANDS = [Command(("web",), "open the web app (a one-time address)", cmd_web, _web_args)]
