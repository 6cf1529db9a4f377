"""`smu backup ...` (PROTOCOL.md §15.20) and the trash, `smu delete`,
`smu restore`, `smu trash` (§15.19): history that outlives a device, and
deletions that a stolen device cannot make final."""

from __future__ import annotations

import argparse
import getpass
import os
import sys
from pathlib import Path

from .. import api
from ..errors import NodeUsageError
from .accounts import _read_recovery_key
from .common import Command, client, group, out, when


def _backup_passphrase(args: argparse.Namespace, confirm: bool) -> str | None:
    if not args.passphrase:
        return None
    env = os.environ.get("SMU_BACKUP_PASSPHRASE")
    if env is not None:
        return env
    if not sys.stdin.isatty():
        raise NodeUsageError("no terminal to ask for the passphrase: set SMU_BACKUP_PASSPHRASE")
    first = getpass.getpass("backup passphrase: ")
    if confirm and getpass.getpass("again: ") != first:
        raise NodeUsageError("the passphrases differ")
    return first


def _file_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("file", type=Path, help="the backup file")
    p.add_argument(
        "--passphrase",
        action="store_true",
        help="an extra passphrase (asked on the terminal, or SMU_BACKUP_PASSPHRASE)",
    )


def _restore_args(p: argparse.ArgumentParser) -> None:
    _file_args(p)
    p.add_argument("--recovery-key-file", type=Path, help="read the recovery key from this file")


def _key_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--recovery-key-file", type=Path, help="read the recovery key from this file")


def cmd_create(args: argparse.Namespace) -> int:
    secret = _backup_passphrase(args, confirm=True)
    params: api.backup.CreateParams = {"path": str(args.file.resolve())}
    if secret is not None:
        params["passphrase"] = secret
    r = api.backup.BACKUP_CREATE.ask(client(args), params)
    out(args, r, f"backed up {r['messages']} messages and {r['edits']} edits to {r['path']}")
    return 0


def cmd_restore(args: argparse.Namespace) -> int:
    key = _read_recovery_key(args.recovery_key_file)
    params: api.backup.RestoreParams = {"path": str(args.file.resolve()), "recovery_key": key}
    secret = _backup_passphrase(args, confirm=False)
    if secret is not None:
        params["passphrase"] = secret
    r = api.backup.BACKUP_RESTORE.ask(client(args), params)
    by = r["made_by"]
    text = (
        f"restored {r['messages']} new messages ({r['messages_in_backup']} in the backup) and "
        f"{r['edits_merged']} edits; made {when(r['created_ms'])} by "
        f"{by['name'] or by['device'][:12]} ({by['status'] or 'unknown device'})"
    )
    out(args, r, text)
    return 0


def cmd_key(args: argparse.Namespace) -> int:
    key = _read_recovery_key(args.recovery_key_file)
    r = api.backup.BACKUP_KEY.ask(client(args), {"recovery_key": key})
    out(args, r, f"backups are sealed to {r['backup_key'][:16]}… from now on")
    return 0


def _auto_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("file", type=Path, nargs="?", help="the file to rewrite")
    p.add_argument("--every-hours", type=int, default=24, help="how often (default 24)")
    p.add_argument("--off", action="store_true", help="stop automatic backups")


def cmd_auto(args: argparse.Namespace) -> int:
    if args.off:
        r = api.backup.BACKUP_AUTO.ask(client(args), {"off": True})
        out(args, r, "automatic backups are off")
        return 0
    if args.file is None:
        raise NodeUsageError("name the file to back up to, or --off")
    r = api.backup.BACKUP_AUTO.ask(
        client(args), {"path": str(args.file.resolve()), "every_hours": args.every_hours}
    )
    auto = r["auto"]
    assert auto is not None  # on: the settings just written
    out(args, r, f"a backup to {auto['path']} every {auto['every_hours']} hours")
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    r = api.backup.BACKUP_STATUS.ask(client(args), {})
    lines = [
        f"backup key  {r['backup_key'] or 'none: ' + str(r['problem'])}",
        "automatic   "
        + (f"{r['auto']['path']} every {r['auto']['every_hours']} h" if r["auto"] else "off"),
    ]
    out(args, r, "\n".join(lines))
    return 0


def _ids_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("ids", nargs="+", metavar="MESSAGE_ID", help="message ids (hex)")


def cmd_delete(args: argparse.Namespace) -> int:
    r = api.message.MESSAGE_DELETE.ask(client(args), {"ids": args.ids})
    text = f"moved {len(r['deleted'])} to the trash (purged after {r['purged_after_days']} days)"
    if r["unknown"]:
        text += f"; not found: {', '.join(r['unknown'])}"
    out(args, r, text)
    return 0


def cmd_restore_messages(args: argparse.Namespace) -> int:
    r = api.message.MESSAGE_RESTORE.ask(client(args), {"ids": args.ids})
    out(args, r, f"restored {len(r['restored'])}")
    return 0


def cmd_trash(args: argparse.Namespace) -> int:
    r = api.message.MESSAGE_TRASH.ask(client(args), {})
    lines = [
        f"{t['message_id']}  deleted {when(t['deleted_ms'])}, purged {when(t['purge_ms'])}  "
        + (t["text"] if t["text"] is not None else "(purged here)")
        for t in r["trash"]
    ]
    out(args, r, "\n".join(lines) or "the trash is empty")
    return 0


COMMANDS = [
    group(("backup",), "encrypted backups that only the recovery key opens"),
    Command(
        ("backup", "create"), "write a backup of messages and contacts", cmd_create, _file_args
    ),
    Command(
        ("backup", "restore"),
        "restore a backup (needs the recovery key)",
        cmd_restore,
        _restore_args,
    ),
    Command(
        ("backup", "key"), "vouch for the backup key with the recovery key", cmd_key, _key_args
    ),
    Command(("backup", "auto"), "back up to a file regularly", cmd_auto, _auto_args),
    Command(("backup", "status"), "the backup key and automatic backups", cmd_status),
    Command(("delete",), "move messages to the account's trash", cmd_delete, _ids_args),
    Command(("restore",), "bring messages back from the trash", cmd_restore_messages, _ids_args),
    Command(("trash",), "what is in the trash", cmd_trash),
]
