"""Encrypted backups on a node: the ``backup.*`` methods (PROTOCOL.md
§15.20; ``protocol/messaging/backup.py``).

A backup holds the account's texts (not requests, not the trash) and every
synced edit (contacts, blocks, verification marks, read markers), never a
device key.  It is sealed to the backup key that the account's synced
``backup-key`` certificate names; the certificate is made where the paper
key is at hand (account creation, recovery, rotation of the recovery key,
or ``backup.key`` once for an account created before backups) and checked
against the log's recovery commitment each time it is used, so after a
rotation every device seals to the new backup key and none to the old.
Restoring needs the paper key.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Protocol

import trio

from protocol.core.canonical import Value
from protocol.core.errors import ChecksumError, DecodeError, InvalidInput
from protocol.core.keys import RecoveryKey
from protocol.messaging.backup import (
    BackupCert,
    BackupError,
    Opened,
    decode_cert,
    make_cert,
    open_backup,
    seal_backup,
)
from protocol.messaging.content import MAX_TEXT_BYTES, HistoryEntry, Text, decode_proof
from protocol.messaging.envelope import ledger_lookup
from protocol.messaging.history import EntryVerdict, check_entry
from protocol.messaging.sync import MAX_EDIT_BYTES, MAX_EDITS_PER_BATCH, Edit, SyncEdits

from .. import control
from ..api import backup as api
from ..api.schema import Empty
from ..context import NodeContext
from ..control import RpcFailure
from ..storage.db import Statement
from ..storage.messages import KIND_TEXT, MessageStore, NewMessage

log = logging.getLogger("smu.backup")

CERT_KEY = "backup-key"
#: a restoring node reads the file whole: refuse larger ones before reading
MAX_FILE_BYTES = 256 * 1024 * 1024 + 1024 * 1024
MAX_MESSAGES = 1_000_000
AUTO_FILE = "backup-auto.json"
MIN_AUTO_HOURS = 1


class Sync(Protocol):
    def value(self, key: str) -> Value | None: ...

    def edit(self, key: str, value: Value) -> Edit | None: ...

    def all_edits(self) -> list[Edit]: ...

    def receive_statements(self, batch: SyncEdits) -> tuple[list[Statement], int]: ...

    def changed(self) -> None: ...


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


def _paper(params: Mapping[str, object]) -> RecoveryKey:
    try:
        return RecoveryKey.from_paper(str(params["recovery_key"]))
    except (ChecksumError, DecodeError, KeyError) as exc:
        raise RpcFailure(control.USAGE, f"recovery key: {exc}") from exc


def _path(params: Mapping[str, object]) -> Path:
    raw = params.get("path")
    if not isinstance(raw, str) or not raw:
        raise RpcFailure(control.USAGE, "give the backup file's path")
    return Path(raw).expanduser().resolve()


def _passphrase(params: Mapping[str, object]) -> str | None:
    p = params.get("passphrase")
    if p is None or p == "":
        return None
    if not isinstance(p, str) or len(p) > 1024:
        raise RpcFailure(control.USAGE, "a passphrase is text of at most 1024 characters")
    return p


def _write_private(path: Path, parts: list[bytes]) -> int:
    """Write atomically, readable by the user alone."""
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    size = 0
    with os.fdopen(fd, "wb") as f:
        for part in parts:
            f.write(part)
            size += len(part)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    return size


class BackupService:
    def __init__(self, ctx: NodeContext, store: MessageStore, sync: Sync) -> None:
        self.ctx = ctx
        self.store = store
        self.sync = sync
        self._auto_wake = trio.Event()

    def handlers(self) -> dict[str, control.Handler]:
        return {
            "backup.create": api.BACKUP_CREATE.bind(self.create),
            "backup.restore": api.BACKUP_RESTORE.bind(self.restore),
            "backup.key": api.BACKUP_KEY.bind(self.set_key),
            "backup.auto": api.BACKUP_AUTO.bind(self.auto),
            "backup.status": api.BACKUP_STATUS.bind(self.status),
        }

    # -- the key ------------------------------------------------------------

    def enroll(self, recovery: RecoveryKey) -> None:
        """Vouch for the backup key while the paper key is at hand (account
        creation, recovery and rotation of the recovery key call this, with
        the new key, after the event is in the log: PROTOCOL.md §6.8)."""
        account = self.ctx.account()
        if account is None:
            return
        cert = make_cert(self.ctx.params, account, recovery)
        self.sync.edit(CERT_KEY, cert.encode())

    def cert(self) -> BackupCert:
        account = self.ctx.own_account()
        raw = self.sync.value(CERT_KEY)
        if not isinstance(raw, bytes):
            raise RpcFailure(
                control.USAGE,
                "this account has no backup key yet: run `smu backup key` once with the "
                "recovery key",
            )
        try:
            cert = decode_cert(raw, self.ctx.params)
            if cert.account != account:
                raise BackupError("a certificate for another account")
            cert.check(self.ctx.ledger.state(account).recovery_commitment)
        except InvalidInput as exc:
            raise RpcFailure(
                control.USAGE,
                f"the backup key is not valid now ({exc}); run `smu backup key` with the "
                "current recovery key",
            ) from exc
        return cert

    async def set_key(self, params: api.KeyParams) -> api.BackupKey:
        recovery = _paper(params)
        account = self.ctx.own_account()
        if self.ctx.ledger.state(account).recovery_commitment != recovery.commitment:
            raise RpcFailure(control.USAGE, "that is not the account's current recovery key")
        self.enroll(recovery)
        return {"backup_key": self.cert().backup_public.hex()}

    # -- making one -------------------------------------------------------------

    def _items(self) -> list[Value]:
        own = self.ctx.own_account()
        items: list[Value] = [["edit", e.encode()] for e in self.sync.all_edits()]
        for r in self.store.history(KIND_TEXT, MAX_MESSAGES):
            sa = r.sender_account
            # with its proof (§15.4), or [] (relayed, or from before proofs):
            # the restoring device believes a sender only on its proof
            proof: Value = [] if r.proof is None else r.proof.to_wire()
            items.append(
                [
                    "msg", r.peer, r.message_id, sa == own, sa, r.sender_device, r.sent_ms,
                    r.text, proof,
                ]
            )  # fmt: skip
        return items

    async def _create(self, path: Path, passphrase: str | None) -> api.Created:
        cert = self.cert()
        items = self._items()
        salt = os.urandom(16) if passphrase else None
        device = self.ctx.device
        params = self.ctx.params

        def seal() -> list[bytes]:
            return list(
                seal_backup(
                    params,
                    cert,
                    device,
                    items,
                    created_ms=_now_ms(),
                    file_key=os.urandom(32),
                    eph_secret=os.urandom(32),
                    salt=salt,
                    passphrase=passphrase,
                )
            )

        parts = await trio.to_thread.run_sync(seal)
        try:
            size = await trio.to_thread.run_sync(_write_private, path, parts)
        except OSError as exc:
            raise RpcFailure(control.USAGE, f"cannot write {path}: {exc.strerror}") from exc
        messages = sum(1 for i in items if isinstance(i, list) and i[0] == "msg")
        return {
            "path": str(path),
            "bytes": size,
            "messages": messages,
            "edits": len(items) - messages,
            "passphrase": passphrase is not None,
        }

    async def create(self, params: api.CreateParams) -> api.Created:
        return await self._create(_path(params), _passphrase(params))

    # -- restoring one ------------------------------------------------------------

    async def restore(self, params: api.RestoreParams) -> api.Restored:
        path = _path(params)
        recovery = _paper(params)
        passphrase = _passphrase(params)
        account = self.ctx.own_account()
        try:
            if path.stat().st_size > MAX_FILE_BYTES:
                raise RpcFailure(control.USAGE, "that file is larger than any backup")
            data = await trio.to_thread.run_sync(path.read_bytes)
        except OSError as exc:
            raise RpcFailure(control.USAGE, f"cannot read {path}: {exc.strerror}") from exc
        net = self.ctx.params
        try:
            opened = await trio.to_thread.run_sync(
                lambda: open_backup(net, data, recovery, passphrase=passphrase)
            )
        except InvalidInput as exc:
            raise RpcFailure(
                control.INVALID_INPUT, f"the backup was not restored: {exc}", {"code": exc.code}
            ) from exc
        if opened.header.account != account:
            raise RpcFailure(control.USAGE, "that backup is of another account")
        return self._apply(opened, account)

    def _apply(self, opened: Opened, account: bytes) -> api.Restored:
        """Every item checked before anything is written, in one transaction."""
        edits: list[bytes] = []
        messages: list[NewMessage] = []
        for item in opened.items:
            messages_or_edit = _item(item, account)
            if isinstance(messages_or_edit, bytes):
                edits.append(messages_or_edit)
            else:
                messages.append(messages_or_edit)
        rows: list[Statement] = []
        merged = 0
        try:
            for i in range(0, len(edits), MAX_EDITS_PER_BATCH):
                got, n = self.sync.receive_statements(
                    SyncEdits(tuple(edits[i : i + MAX_EDITS_PER_BATCH]))
                )
                rows.extend(got)
                merged += n
        except InvalidInput as exc:
            raise RpcFailure(
                control.INVALID_INPUT, f"the backup was not restored: {exc}", {"code": exc.code}
            ) from exc
        in_backup = len(messages)
        messages = self._judged(messages, account, opened.device)
        before = self.store.count_texts()
        rows.extend(self.store.insert_statement(m) for m in messages)
        self.store.db.write(rows)
        self.sync.changed()
        state = self.ctx.ledger.state(account).device(opened.device)
        return {
            "messages": self.store.count_texts() - before,
            "messages_in_backup": in_backup,
            "edits_merged": merged,
            "created_ms": opened.header.created_ms,
            "made_by": {
                "device": opened.device.hex(),
                "name": None if state is None else state.name,
                "status": None if state is None else state.status.value,
            },
        }

    def _judged(self, messages: list[NewMessage], account: bytes, maker: bytes) -> list[NewMessage]:
        """A backup's messages as a history bundle's are judged (§15.4,
        §15.20): the file is its making device's word, and that device may
        be stolen.  A proven message is its sender's; one without a proof
        that holds is relayed by the maker; a forged one is not restored."""
        ledger = self.ctx.ledger
        lookup = ledger_lookup(ledger)
        out = []
        for m in messages:
            entry = HistoryEntry(
                m.peer, m.message_id, m.sender_account, m.sender_device, m.sent_ms,
                Text(m.text), m.proof,
            )  # fmt: skip
            verdict = check_entry(entry, account, lookup, ledger.account_of).verdict
            if verdict is EntryVerdict.FORGED:
                continue
            if verdict is not EntryVerdict.VERIFIED:
                m = dataclasses.replace(m, proof=None, relayed_by=maker)
            out.append(m)
        return out

    # -- automatic backups --------------------------------------------------------

    def _auto_file(self) -> Path:
        return self.ctx.data_path / AUTO_FILE

    def _auto_config(self) -> dict[str, Any] | None:
        try:
            doc = json.loads(self._auto_file().read_text())
        except (OSError, ValueError):
            return None
        return doc if isinstance(doc, dict) and isinstance(doc.get("path"), str) else None

    async def auto(self, params: api.AutoParams) -> api.Auto:
        """``path`` and ``every_hours`` to turn it on, ``off`` to turn it
        off.  No passphrase: a node would have to keep it."""
        if params.get("off"):
            self._auto_file().unlink(missing_ok=True)
            self._auto_wake.set()
            return {"auto": None}
        path = _path(params)
        raw_hours = params.get("every_hours")
        hours = 24 if raw_hours is None else int(raw_hours)
        if hours < MIN_AUTO_HOURS:
            raise RpcFailure(control.USAGE, f"at most one backup every {MIN_AUTO_HOURS} hour")
        self.cert()  # refuse now rather than fail every hour
        doc = {"path": str(path), "every_hours": hours, "last_ms": 0}
        _write_private(self._auto_file(), [json.dumps(doc).encode()])
        self._auto_wake.set()
        return {"auto": doc}

    async def run_auto(self) -> None:
        while True:
            doc = self._auto_config()
            wait = 3600.0
            if doc is not None:
                due = int(doc.get("last_ms", 0)) + int(doc["every_hours"]) * 3600_000
                if _now_ms() >= due:
                    try:
                        await self._create(Path(doc["path"]), None)
                        doc["last_ms"] = _now_ms()
                        _write_private(self._auto_file(), [json.dumps(doc).encode()])
                        log.info("automatic backup written to %s", doc["path"])
                    except RpcFailure as exc:
                        log.warning("automatic backup failed: %s", exc)
                else:
                    wait = min(wait, (due - _now_ms()) / 1000)
            with trio.move_on_after(max(1.0, wait)):
                await self._auto_wake.wait()
            self._auto_wake = trio.Event()

    async def status(self, params: Empty) -> api.Status:
        try:
            key: str | None = self.cert().backup_public.hex()
            problem = None
        except RpcFailure as exc:
            key, problem = None, str(exc)
        return {"backup_key": key, "problem": problem, "auto": self._auto_config()}


def _item(item: Value, account: bytes) -> bytes | NewMessage:
    """One backup item, checked (the file is signed, but by a device that may
    since have been stolen: nothing in it is trusted beyond its form)."""
    if type(item) is not list or not item:
        raise RpcFailure(control.INVALID_INPUT, "the backup was not restored: an item is malformed")
    if item[0] == "edit" and len(item) == 2 and type(item[1]) is bytes:
        if len(item[1]) > MAX_EDIT_BYTES:
            raise RpcFailure(
                control.INVALID_INPUT, "the backup was not restored: an edit too large"
            )
        return item[1]
    if item[0] == "msg" and len(item) in (8, 9):  # 8: from before proofs were kept
        _, peer, mid, outgoing, sa, sd, ts, text = item[:8]
        try:
            proof = decode_proof(item[8]) if len(item) == 9 else None
        except InvalidInput:
            raise RpcFailure(
                control.INVALID_INPUT, "the backup was not restored: an item is malformed"
            ) from None
        ok = (
            all(type(b) is bytes and len(b) == 32 for b in (peer, sa, sd))
            and type(mid) is bytes
            and 0 < len(mid) <= 32
            and type(outgoing) is bool
            and outgoing == (sa == account)
            and type(ts) is int
            and ts >= 0
            and type(text) is str
            and len(text.encode()) <= MAX_TEXT_BYTES
        )
        if ok:
            assert isinstance(peer, bytes) and isinstance(mid, bytes) and isinstance(ts, int)
            assert isinstance(sa, bytes) and isinstance(sd, bytes) and isinstance(text, str)
            return NewMessage(
                mid, peer, bool(outgoing), sa, sd, ts, ts, KIND_TEXT, text, proof=proof
            )
    raise RpcFailure(control.INVALID_INPUT, "the backup was not restored: an item is malformed")
