"""Key files are replaced durably (PROTOCOL.md §19.3, DESIGN S8): the new
file is synced, renamed over the old one, and the rename itself synced (the
directory), so that after a crash ``prekeys.json`` is never older than the
record that already named its newest signed prekey, nor ``keys.json`` than
the storage key that sealed the store."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from node import datadir
from node.datadir import DataDir


def test_a_key_file_write_syncs_the_file_then_its_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    synced: list[tuple[bool, bool]] = []  # (a directory?, the target in place?)
    real_fsync = os.fsync
    target = tmp_path / "prekeys.json"

    def fsync(fd: int) -> None:
        synced.append((stat.S_ISDIR(os.fstat(fd).st_mode), target.exists()))
        real_fsync(fd)

    monkeypatch.setattr(datadir.os, "fsync", fsync)
    d = DataDir(tmp_path)
    d.init("testnet", "laptop", None)
    synced.clear()
    d.save_prekeys(b"\x01" * 70_000)
    assert synced == [(False, False), (True, True)]
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    assert d.load_prekeys() == b"\x01" * 70_000
