"""`smu account create|show|list|history|rotate-recovery` and `smu recover`.

A recovery key is shown in one place (``_show_recovery_key``): to a file
the user named, else on the terminal; into ``--json`` only with
``--show-secrets``.  ``--json`` with neither a file nor ``--show-secrets``
is refused before anything is created, so that the key is never dropped.
"""

from __future__ import annotations

import argparse
import getpass
import sys
import time
from collections.abc import Mapping
from pathlib import Path

from .. import api
from ..datadir import write_private
from ..errors import NodeUsageError
from ..render import state_text
from .common import (
    Command,
    Spinner,
    client,
    datadir,
    emit,
    group,
    history_protected,
    out,
    protection_text,
)

ACCOUNT_METAVAR = "CONTACT|HANDLE|ACCOUNT_ID"


def _key_destination(args: argparse.Namespace, file: Path | None, flag: str) -> None:
    """Refuse --json that would leave the recovery key nowhere."""
    if args.json and file is None and not args.show_secrets:
        raise NodeUsageError(
            f"--json would leave out the recovery key, which is shown only once: "
            f"add {flag} FILE, or --show-secrets to put it in the JSON"
        )


def _show_recovery_key(
    args: argparse.Namespace,
    answer: Mapping[str, object],
    file: Path | None,
    summary: str,
    warning: str,
) -> None:
    key = str(answer["recovery_key"])
    doc: dict[str, object] = {k: v for k, v in answer.items() if k != "recovery_key"}
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
    elif args.json:  # --show-secrets, checked by _key_destination
        doc["recovery_key"] = key
    if args.json:
        emit(doc)
        return
    print(summary)
    if file is not None:
        print(f"  recovery key written to {file}")
    else:
        print(f"\n{warning}\n\n    {key}\n")


def _secret_args(p: argparse.ArgumentParser, file_flag: str, file_help: str) -> None:
    p.add_argument(file_flag, type=Path, default=None, help=file_help)
    p.add_argument(
        "--show-secrets",
        action="store_true",
        help="with --json: include the recovery key in the JSON output",
    )


def _create_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--name", required=True, help="display name")
    _secret_args(
        p,
        "--recovery-key-file",
        "write the recovery key to this file (mode 0600) instead of the terminal",
    )


def cmd_create(args: argparse.Namespace) -> int:
    _key_destination(args, args.recovery_key_file, "--recovery-key-file")
    with Spinner("working on the proof-of-work", sys.stderr.isatty()):
        r = api.account.ACCOUNT_CREATE.ask(client(args), {"name": args.name})
    protected = history_protected(datadir(args))
    _show_recovery_key(
        args,
        {**r, "history_protected": protected},
        args.recovery_key_file,
        f"created {r['handle']}\n  account id {r['account_id']}\n  at rest    "
        f"{protection_text(protected)}",
        "RECOVERY KEY — write it down now and keep it offline. It is shown only once,\n"
        "and it is the only way back into the account if every device is lost:",
    )
    return 0


def _account_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "account", nargs="?", default=None, metavar=ACCOUNT_METAVAR, help="default: your own"
    )


def cmd_show(args: argparse.Namespace) -> int:
    doc = api.account.ACCOUNT_SHOW.ask(client(args), {"account": args.account})
    out(args, doc, state_text(doc))
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    r = api.account.ACCOUNT_LIST.ask(client(args), {})
    lines = [
        f"{a['handle']:<28} {a['status']:<12} {a['devices_active']} active device(s), "
        f"{a['events']} events"
        for a in r["accounts"]
    ]
    out(args, r, "\n".join(lines) or "no accounts")
    return 0


def cmd_history(args: argparse.Namespace) -> int:
    r = api.account.ACCOUNT_HISTORY.ask(client(args), {"account": args.account})
    lines = [f"history of {r['account']['handle']}"]
    for e in r["events"]:
        stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(e["timestamp_ms"] / 1000))
        lines.append(f"  {stamp}Z  {e['event_id'][:12]}  {e['text']}")
        if e["void"]:
            lines.append(f"      VOID: {e['void']}")
    out(args, r, "\n".join(lines))
    return 0


def _recover_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("account", metavar=ACCOUNT_METAVAR)
    p.add_argument(
        "--recovery-key-file",
        type=Path,
        default=None,
        help="read the recovery key from this file instead of a prompt",
    )
    _secret_args(p, "--new-recovery-key-file", "write the new recovery key to this file (0600)")


def _read_recovery_key(path: Path | None) -> str:
    if path is not None:
        try:
            return path.read_text().strip()
        except OSError as exc:
            raise NodeUsageError(
                f"cannot read the recovery key from {path}: {exc.strerror}"
            ) from exc
    if not sys.stdin.isatty():
        raise NodeUsageError("no terminal to ask for the recovery key: use --recovery-key-file")
    return getpass.getpass("recovery key: ").strip()


def cmd_recover(args: argparse.Namespace) -> int:
    _key_destination(args, args.new_recovery_key_file, "--new-recovery-key-file")
    key = _read_recovery_key(args.recovery_key_file)
    with Spinner("working on the proof-of-work", sys.stderr.isatty()):
        r = api.account.ACCOUNT_RECOVER.ask(
            client(args), {"account": args.account, "recovery_key": key}
        )
    _show_recovery_key(
        args,
        r,
        args.new_recovery_key_file,
        f"recovered {r['account']['handle']}: this node is now its only device",
        "NEW RECOVERY KEY — the old one no longer works. Write this one down now:",
    )
    return 0


def _rotate_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--recovery-key-file",
        type=Path,
        default=None,
        help="read the current recovery key from this file instead of a prompt",
    )
    _secret_args(p, "--new-recovery-key-file", "write the new recovery key to this file (0600)")


def cmd_rotate_recovery(args: argparse.Namespace) -> int:
    _key_destination(args, args.new_recovery_key_file, "--new-recovery-key-file")
    key = _read_recovery_key(args.recovery_key_file)
    with Spinner("working on the proof-of-work", sys.stderr.isatty()):
        r = client(args).call("account.rotate_recovery", recovery_key=key)
    _show_recovery_key(
        args,
        r,
        args.new_recovery_key_file,
        f"replaced the recovery key of {r['account']['handle']}; every device stays",
        "NEW RECOVERY KEY — the old one no longer recovers the account: destroy it.\n"
        "Write this one down now and keep it offline; it is shown only once:",
    )
    return 0


COMMANDS = [
    group(("account",), "accounts"),
    Command(("account", "create"), "create an account (genesis)", cmd_create, _create_args),
    Command(("account", "show"), "an account's devices and status", cmd_show, _account_arg),
    Command(("account", "list"), "accounts this node knows", cmd_list),
    Command(("account", "history"), "every change, explained", cmd_history, _account_arg),
    Command(
        ("account", "rotate-recovery"),
        "replace the recovery key (it may have been seen), keeping every device",
        cmd_rotate_recovery,
        _rotate_args,
    ),
    Command(
        ("recover",),
        "make this fresh node the account's only device, with the recovery key",
        cmd_recover,
        _recover_args,
    ),
]
