"""What every command group of the CLI shares: the ``Command`` table entry,
the global options, output under the one ``--json`` rule, the terminal.

The ``--json`` rule (PROTOCOL.md §13.4): a command prints exactly one JSON
document on standard output; a stream (``--follow``) prints JSON Lines, one
document per item.  A failure under ``--json`` is the document
``{"error": {"code": ..., "message": ...}}`` on standard output (and a
non-zero exit).  Secrets appear in it only with ``--show-secrets``.
"""

from __future__ import annotations

import argparse
import getpass
import json
import os
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from protocol.messaging.content import MAX_TEXT_BYTES

from ..control import ControlClient
from ..datadir import DataDir, default_data_dir
from ..errors import NodeUsageError


@dataclass(frozen=True)
class Command:
    """One entry of a command group: where it sits (``("device", "link")``),
    its help, its arguments and its handler.  ``run`` None: a group header,
    only the help of a word that has subcommands."""

    path: tuple[str, ...]
    help: str
    run: Callable[[argparse.Namespace], int] | None = None
    args: Callable[[argparse.ArgumentParser], None] = field(default=lambda p: None)


def group(path: tuple[str, ...], help: str) -> Command:
    return Command(path, help)


def add_global_options(p: argparse.ArgumentParser) -> None:
    """``--data-dir`` and ``--json``, accepted on every level (before or after
    the subcommand): defaults are suppressed so that a level that does not
    name them leaves what another level set (``finish_globals`` fills in)."""
    p.add_argument(
        "--data-dir",
        type=Path,
        default=argparse.SUPPRESS,
        help="node data directory (default: $SMU_HOME or the user data dir)",
    )
    p.add_argument(
        "--json",
        action="store_true",
        default=argparse.SUPPRESS,
        help="one JSON document on stdout (JSON Lines for --follow); errors as JSON too",
    )


def finish_globals(args: argparse.Namespace) -> argparse.Namespace:
    if not hasattr(args, "data_dir"):
        args.data_dir = None
    if not hasattr(args, "json"):
        args.json = False
    return args


def datadir(args: argparse.Namespace) -> DataDir:
    return DataDir(args.data_dir if args.data_dir is not None else default_data_dir())


#: what ``init``, ``account create`` and ``node status`` say of the data
#: directory's protection (PROTOCOL.md §15.21): the store's sealed values
#: are only as safe as keys.json, which only a passphrase protects
PROTECTED_TEXT = (
    "message history and keys on disk are encrypted under your passphrase: "
    "a copy of the data directory does not reveal them"
)
UNPROTECTED_TEXT = (
    "no passphrase: anyone who copies the data directory can read your message "
    "history and use your keys (a passphrase is set with `smu init --passphrase`)"
)


def history_protected(dd: DataDir) -> bool | None:
    """Whether a passphrase protects the keys, and with them the history
    (None: this data directory's keys cannot be read here)."""
    try:
        return dd.is_encrypted()
    except (NodeUsageError, OSError, ValueError):
        return None


def protection_text(protected: bool | None) -> str:
    if protected is None:
        return "unknown (the data directory's keys.json cannot be read here)"
    return PROTECTED_TEXT if protected else UNPROTECTED_TEXT


def client(args: argparse.Namespace) -> ControlClient:
    return ControlClient(datadir(args).socket_path)


def emit(doc: object) -> None:
    print(json.dumps(doc), flush=True)


def out(args: argparse.Namespace, doc: object, text: str) -> None:
    """The one output of a command: ``doc`` under --json, else ``text``."""
    if args.json:
        emit(doc)
    else:
        print(text, flush=True)


def note(text: str) -> None:
    """A side remark for the user (stderr: never mixed into the output)."""
    sys.stderr.write(text + "\n")
    sys.stderr.flush()


def passphrase(confirm: bool) -> str:
    env = os.environ.get("SMU_PASSPHRASE")
    if env is not None:
        return env
    if not sys.stdin.isatty():
        raise NodeUsageError("the keys are encrypted: set SMU_PASSPHRASE or run on a terminal")
    first = getpass.getpass("passphrase: ")
    if confirm and getpass.getpass("again: ") != first:
        raise NodeUsageError("the passphrases differ")
    return first


#: where questions are asked (a test points it at a pseudo-terminal)
TTY = "/dev/tty"


class Terminal:
    """The user's terminal, read and written apart (a tty cannot seek)."""

    def __init__(self, reader: IO[str], writer: IO[str]) -> None:
        self.reader, self.writer = reader, writer

    def write(self, text: str) -> None:
        self.writer.write(text)
        self.writer.flush()

    def ask(self, question: str) -> bool:
        self.write(f"{question} [y/N] ")
        return self.reader.readline().strip().lower() in ("y", "yes")


@contextmanager
def terminal(hint: str) -> Iterator[Terminal]:
    """The controlling terminal (``/dev/tty``), to ask on even when standard
    input is a pipe; ``hint`` says what to do without one."""
    try:
        reader = open(TTY)  # noqa: SIM115 - closed below
    except OSError as exc:
        raise NodeUsageError(f"no terminal to ask on: {hint}") from exc
    with reader, open(TTY, "w") as writer:
        yield Terminal(reader, writer)


def read_stdin_line(what: str) -> str:
    line = sys.stdin.readline(4096).strip()
    if not line:
        raise NodeUsageError(f"no {what} on standard input")
    return line


def message_text(text: str | None) -> str:
    """A message from the argument, or from standard input for None or
    ``-``; over the protocol's limit is an error here, before sending."""
    if text is None or text == "-":
        data = sys.stdin.buffer.read(MAX_TEXT_BYTES + 2)
        text = data.decode("utf-8", errors="replace").rstrip("\n")
    if len(text.encode()) > MAX_TEXT_BYTES:
        raise NodeUsageError(
            f"the message is over the limit of {MAX_TEXT_BYTES // 1024} KiB "
            f"({MAX_TEXT_BYTES} bytes): split it"
        )
    return text


def qr_text(data: str) -> str:
    """A QR code drawn with block characters (segno), for a terminal."""
    import io

    import segno

    buf = io.StringIO()
    segno.make(data.upper(), error="m").terminal(out=buf, compact=True)
    return buf.getvalue()


def want_qr(args: argparse.Namespace) -> bool:
    """A QR only on a terminal, and not with --no-qr or --json."""
    return not (args.json or getattr(args, "no_qr", False)) and sys.stdout.isatty()


def when(ms: int, fmt: str = "%Y-%m-%d %H:%M") -> str:
    return time.strftime(fmt, time.localtime(ms / 1000))


class Spinner:
    """Progress on stderr while the daemon does the proof-of-work."""

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

    def __enter__(self) -> Spinner:
        if self.enabled:
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._done.set()
        if self.enabled:
            self._thread.join()
