"""The `smu` command line (DESIGN §6): one module per command group, each
command's arguments, handler and rendering side by side, and one table
(``COMMANDS``) that both the parser and the dispatch are built from.

``--data-dir`` (default ``$SMU_HOME``, else the platform's user data
directory) and ``--json`` are accepted anywhere on the line.  Errors are one
line on stderr and a non-zero exit, or under ``--json`` the document
``{"error": {"code": ..., "message": ...}}`` on stdout (the rule is in
``node/cli/common.py`` and PROTOCOL.md §13.4).  Secrets go to the terminal
only when asked for, and into ``--json`` only with ``--show-secrets``.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from typing import NoReturn

from ..control import DISK_FULL, INVALID_INPUT, USAGE
from ..errors import DaemonNotRunning, NodeError, RpcError
from . import accounts, backup, contacts, devices, messages, node, peers, requests
from .common import Command, add_global_options, emit, finish_globals, qr_text

COMMANDS: list[Command] = [
    *node.COMMANDS,
    *peers.COMMANDS,
    *accounts.COMMANDS,
    *devices.COMMANDS,
    *contacts.COMMANDS,
    *messages.COMMANDS,
    *requests.COMMANDS,
    *backup.COMMANDS,
    *node.TOOLS,
]

#: kept for callers of the module before it was split
message_line = _message_line = messages.message_line


class _Parser(argparse.ArgumentParser):
    #: set by ``main``: whether the command line asked for --json
    json_errors = False

    def error(self, message: str) -> NoReturn:
        text = f"{message} (see `{self.prog} --help`)"
        if _Parser.json_errors:
            emit({"error": {"code": "usage", "message": text}})
        else:
            sys.stderr.write(f"{self.prog}: error: {text}\n")
        sys.exit(2)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="smu", description="SMU: peer-to-peer key transparency and messaging")
    add_global_options(parser)
    parsers: dict[tuple[str, ...], argparse.ArgumentParser] = {(): parser}
    subs: dict[tuple[str, ...], argparse._SubParsersAction[_Parser]] = {}
    has_run = {c.path for c in COMMANDS if c.run is not None}
    for cmd in COMMANDS:
        parent = cmd.path[:-1]
        if parent not in subs:
            subs[parent] = parsers[parent].add_subparsers(
                dest="_".join(("cmd", *parent)),
                # a word with a command of its own runs it without a subcommand
                required=parent not in has_run,
                parser_class=_Parser,
                metavar="COMMAND",
            )
        p = subs[parent].add_parser(cmd.path[-1], help=cmd.help, description=cmd.help)
        add_global_options(p)
        cmd.args(p)
        if cmd.run is not None:
            p.set_defaults(_run=cmd.run)
        parsers[cmd.path] = p
    return parser


def _error(json_mode: bool, code: str, message: str, status: int) -> int:
    if json_mode:
        emit({"error": {"code": code, "message": message}})
    else:
        sys.stderr.write(f"smu: error: {message}\n")
    return status


_RPC_CODES = {USAGE: "usage", INVALID_INPUT: "invalid_input", DISK_FULL: "disk_full"}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    _Parser.json_errors = "--json" in argv
    args = finish_globals(build_parser().parse_args(argv))
    run: Callable[[argparse.Namespace], int] = args._run
    try:
        return run(args)
    except DaemonNotRunning as exc:
        return _error(args.json, "not_running", str(exc), 1)
    except RpcError as exc:  # the daemon's one-line answer
        return _error(args.json, _RPC_CODES.get(exc.code, f"rpc_{exc.code}"), str(exc), 1)
    except NodeError as exc:
        return _error(args.json, "usage", str(exc), 1)
    except KeyboardInterrupt:
        sys.stderr.write("\n")
        return 130
    except BrokenPipeError:
        # the reader went away (`smu inbox | head -1`): stop quietly, and
        # keep Python from complaining when it flushes stdout at exit
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 141


__all__ = ["COMMANDS", "build_parser", "main", "message_line", "qr_text"]
