"""backup.json: encrypted backups (docs/PROTOCOL.md §15.20): the backup key
from a recovery seed, its certificate, and two small backup files (with and
without a passphrase) from fixed randomness, with their plaintext items."""

from __future__ import annotations

from protocol.core.canonical import Value
from protocol.messaging import backup

from ._common import (
    FORMAT_NOTE,
    PARAMS,
    T0,
    Json,
    bytes_from_label,
    device_json,
    device_keys,
    recovery_json,
    recovery_key,
    to_tagged,
)

ACCOUNT = bytes_from_label("backup/account")
ITEMS: list[Value] = [
    [
        "msg",
        bytes_from_label("backup/peer"),
        bytes_from_label("backup/m1", 16),
        False,
        bytes_from_label("backup/peer"),
        bytes_from_label("backup/peer-device"),
        T0,
        "hello",
    ],
    [
        "msg",
        bytes_from_label("backup/peer"),
        bytes_from_label("backup/m2", 16),
        True,
        ACCOUNT,
        device_keys("backup/device").sign_public,
        T0 + 1000,
        "hi back",
        [],  # the form since proofs (§15.20): a proof, or [] for none
    ],
]


def _file(label: str, passphrase: str | None) -> dict[str, Json]:
    rk = recovery_key("backup/recovery")
    cert = backup.make_cert(PARAMS, ACCOUNT, rk)
    file_key = bytes_from_label(f"backup/{label}/file-key")
    eph = bytes_from_label(f"backup/{label}/eph")
    salt = None if passphrase is None else bytes_from_label(f"backup/{label}/salt", 16)
    data = b"".join(
        backup.seal_backup(
            PARAMS,
            cert,
            device_keys("backup/device"),
            ITEMS,
            created_ms=T0,
            file_key=file_key,
            eph_secret=eph,
            salt=salt,
            passphrase=passphrase,
        )
    )
    assert list(backup.open_backup(PARAMS, data, rk, passphrase=passphrase).items) == ITEMS
    return {
        "label": label,
        "file_key": file_key.hex(),
        "eph_secret": eph.hex(),
        "salt": None if salt is None else salt.hex(),
        "passphrase": passphrase,
        "file_hex": data.hex(),
    }


def build() -> dict[str, Json]:
    rk = recovery_key("backup/recovery")
    cert = backup.make_cert(PARAMS, ACCOUNT, rk)
    return {
        "format": FORMAT_NOTE,
        "network_id": PARAMS.network_id,
        "domains": {
            name: getattr(backup, name).hex()
            for name in (
                "D_BACKUP_KEY",
                "D_BACKUP_CERT",
                "D_BACKUP_WRAP",
                "D_BACKUP_STREAM",
                "D_BACKUP_SIG",
            )
        },
        "magic_hex": backup.MAGIC.hex(),
        "recovery": recovery_json("backup/recovery"),
        "device": device_json("backup/device"),
        "account": ACCOUNT.hex(),
        "backup_secret": backup.backup_secret(rk).hex(),
        "backup_public": backup.backup_public(rk).hex(),
        "cert_hex": cert.encode().hex(),
        "items": [to_tagged(i) for i in ITEMS],
        "created_ms": T0,
        "files": [_file("plain", None), _file("passphrase", "river stone")],
    }
