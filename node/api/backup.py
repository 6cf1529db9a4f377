"""Backups: ``backup.*`` (PROTOCOL.md §13, §15.20)."""

from __future__ import annotations

from typing import Annotated, NotRequired, TypedDict

from .schema import Empty, JsonObject, Method

PASSPHRASE = "at most 1024 characters; absent, null or empty: none"


class CreateParams(TypedDict):
    path: Annotated[str, "the file to write"]
    passphrase: NotRequired[Annotated[str | None, PASSPHRASE]]


class Created(TypedDict):
    path: str
    bytes: int
    messages: int
    edits: int
    passphrase: Annotated[bool, "whether it has one"]


class RestoreParams(TypedDict):
    path: str
    recovery_key: Annotated[str, "paper form"]
    passphrase: NotRequired[Annotated[str | None, "when the backup has one"]]


class MadeBy(TypedDict):
    device: str
    name: str | None
    status: str | None


class Restored(TypedDict):
    messages: Annotated[int, "new here"]
    messages_in_backup: int
    edits_merged: int
    created_ms: int
    made_by: MadeBy


class KeyParams(TypedDict):
    recovery_key: Annotated[str, "the current one, paper form"]


class BackupKey(TypedDict):
    backup_key: str


class AutoParams(TypedDict):
    path: NotRequired[Annotated[str | None, "the file to rewrite (not with `off`)"]]
    every_hours: NotRequired[Annotated[int | None, "default 24"]]
    off: NotRequired[Annotated[bool, "stop automatic backups"]]


AUTO = "`{path, every_hours, last_ms}`, or null when off"


class Auto(TypedDict):
    auto: Annotated[JsonObject | None, AUTO]


class Status(TypedDict):
    backup_key: Annotated[str | None, "the backup key in use; null when there is none valid"]
    problem: Annotated[str | None, "why there is none"]
    auto: Annotated[JsonObject | None, AUTO]


BACKUP_CREATE = Method(
    "backup.create",
    CreateParams,
    Created,
    "a backup sealed to the account's backup key (§15.20), written atomically with mode 0600",
)
BACKUP_RESTORE = Method(
    "backup.restore",
    RestoreParams,
    Restored,
    "refused whole (`backup_corrupt`, `backup_key`) without touching the store",
)
BACKUP_KEY = Method(
    "backup.key",
    KeyParams,
    BackupKey,
    "vouches for the backup key (accounts created before backups)",
)
BACKUP_AUTO = Method("backup.auto", AutoParams, Auto, "`path` (and `every_hours`), or `off`")
BACKUP_STATUS = Method("backup.status", Empty, Status)

METHODS = (BACKUP_CREATE, BACKUP_RESTORE, BACKUP_KEY, BACKUP_AUTO, BACKUP_STATUS)
