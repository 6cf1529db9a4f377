"""Encrypted backups (PROTOCOL.md §15.20, protocol/messaging/backup.py):
only the paper key opens them, a device's certificate is checked against
the log's recovery commitment, and any cut, change or reordering of the
file is refused whole."""

from __future__ import annotations

import os

import pytest

from protocol.core.errors import InvalidInput
from protocol.core.keys import RecoveryKey
from protocol.messaging.backup import (
    CHUNK_BYTES,
    BackupCorruptError,
    BackupKeyError,
    decode_cert,
    make_cert,
    open_backup,
    read_header,
    seal_backup,
)

from .conftest import FAST, History

ITEMS = [["m", i, "x" * 3000] for i in range(60)]  # several chunks


def _sealed(h: History, recovery: RecoveryKey, **kw: object) -> bytes:
    cert = make_cert(FAST, h.account, recovery)
    parts = seal_backup(
        FAST,
        cert,
        h.keys["d0"],
        ITEMS,
        created_ms=1,
        file_key=os.urandom(32),
        eph_secret=os.urandom(32),
        **kw,  # type: ignore[arg-type]
    )
    return b"".join(parts)


@pytest.fixture
def bob() -> tuple[History, RecoveryKey]:
    return History(name="bob"), RecoveryKey(os.urandom(32))


def test_the_paper_key_opens_a_backup_and_nothing_else_does(
    bob: tuple[History, RecoveryKey],
) -> None:
    h, rk = bob
    data = _sealed(h, rk)
    assert len(data) > 2 * CHUNK_BYTES
    opened = open_backup(FAST, data, rk)
    assert list(opened.items) == ITEMS and opened.device == h.keys["d0"].sign_public
    assert opened.header.account == h.account
    with pytest.raises(BackupKeyError):
        open_backup(FAST, data, RecoveryKey(os.urandom(32)))
    # no device secret appears in what a device needs to make one
    cert = make_cert(FAST, h.account, rk)
    assert rk.seed not in cert.encode() and rk.secret not in cert.encode()


def test_a_passphrase_is_needed_when_set_and_a_wrong_one_is_refused(
    bob: tuple[History, RecoveryKey],
) -> None:
    h, rk = bob
    data = _sealed(h, rk, salt=os.urandom(16), passphrase="correct horse")
    assert list(open_backup(FAST, data, rk, passphrase="correct horse").items) == ITEMS
    for wrong in (None, "wrong"):
        with pytest.raises(BackupKeyError):
            open_backup(FAST, data, rk, passphrase=wrong)


def test_cut_altered_reordered_or_extended_files_are_refused(
    bob: tuple[History, RecoveryKey],
) -> None:
    h, rk = bob
    data = _sealed(h, rk)
    _, start = read_header(data)
    first = start + 4 + int.from_bytes(data[start : start + 4], "big")
    second = first + 4 + int.from_bytes(data[first : first + 4], "big")
    flipped = bytearray(data)
    flipped[first + 100] ^= 1
    bad = {
        "cut inside a chunk": data[:-10],
        "cut at a chunk boundary": data[:second],
        "a byte flipped": bytes(flipped),
        "two chunks swapped": data[:start] + data[first:second] + data[start:first] + data[second:],
        "something appended": data + data[start:first],
        "not a backup": b"hello" * 10,
        "the header cut": data[: start - 3],
    }
    for label, blob in bad.items():
        with pytest.raises(BackupCorruptError):
            open_backup(FAST, blob, rk)
        assert label


def test_a_certificate_holds_only_for_the_commitment_in_effect(
    bob: tuple[History, RecoveryKey],
) -> None:
    h, rk = bob
    cert = decode_cert(make_cert(FAST, h.account, rk).encode(), FAST)
    cert.check(rk.commitment)
    with pytest.raises(BackupKeyError):
        cert.check(RecoveryKey(os.urandom(32)).commitment)  # after a recovery
    with pytest.raises(BackupKeyError):
        cert.check(None)  # a compromised account
    # a device cannot vouch for a key of its own: the recovery key signs
    thief = make_cert(FAST, h.account, RecoveryKey(os.urandom(32)))
    forged = bytearray(thief.encode())
    forged[-70:-64] = bytes(6)
    with pytest.raises(InvalidInput):
        decode_cert(bytes(forged), FAST)
    with pytest.raises(BackupKeyError):
        decode_cert(thief.encode(), FAST).check(rk.commitment)
