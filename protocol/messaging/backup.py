"""Encrypted backups of an account's messages and synced state (PROTOCOL.md
§15.20).

A backup is sealed to the account's **backup key**, an X25519 key pair
derived from the recovery (paper) key's seed.  Devices never hold the
secret half: they hold a **backup key certificate**, signed by the recovery
key and checked against the recovery commitment the log has in effect, so
a stolen device can neither read a backup nor swap the key for its own.
Restoring needs the paper key, which is the use case (every device lost).

The file is a header and a sequence of chunks, each sealed with
XChaCha20-Poly1305 under a fresh file key with a counter nonce whose last
byte marks the final chunk (the STREAM construction), the header's hash as
associated data: a truncated, reordered or spliced file is refused.  The
last chunk carries the creating device's signature over every chunk before
it.  Randomness (the file key, the ephemeral key, the salt) is passed in.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from nacl import bindings as sodium
from nacl import exceptions as nacl_exceptions

from protocol.core import crypto
from protocol.core.canonical import Value, decode, encode
from protocol.core.errors import InvalidInput, SchemaError, SizeLimitError, UsageError
from protocol.core.fields import fixed_bin as _bin
from protocol.core.fields import uint as _uint
from protocol.core.keys import DeviceKeys, RecoveryKey, recovery_commitment
from protocol.core.params import NetworkParams

D_BACKUP_KEY = b"smu/backup-key/v1\x00"
D_BACKUP_CERT = b"smu/backup-cert/v1\x00"
D_BACKUP_WRAP = b"smu/backup-wrap/v1\x00"
D_BACKUP_STREAM = b"smu/backup-stream/v1\x00"
D_BACKUP_SIG = b"smu/backup-sig/v1\x00"

MAGIC = b"SMU-BACKUP\x00\x01"
VERSION = 1
MAX_HEADER_BYTES = 1024
#: plaintext per chunk; a chunk on disk is 4 + this + 16 bytes at most
CHUNK_BYTES = 64 * 1024
MAX_CHUNKS = 4096  # 256 MiB of plaintext: a restoring node reads the file whole
#: Argon2id for the optional passphrase: fixed, so a file cannot ask a
#: restoring node for gigabytes of memory
PASS_OPSLIMIT = sodium.crypto_pwhash_argon2id_OPSLIMIT_INTERACTIVE
PASS_MEMLIMIT = sodium.crypto_pwhash_argon2id_MEMLIMIT_INTERACTIVE
SALT_BYTES = 16
_TAG = 16


class BackupError(InvalidInput):
    code = "backup"


class BackupKeyError(BackupError):
    """The key (or passphrase) given does not open this backup."""

    code = "backup_key"


class BackupCorruptError(BackupError):
    """The file was cut, altered, reordered or is not a backup."""

    code = "backup_corrupt"


# -- the backup key ------------------------------------------------------------


def backup_secret(recovery: RecoveryKey) -> bytes:
    return crypto.hash32(D_BACKUP_KEY, recovery.seed)


def backup_public(recovery: RecoveryKey) -> bytes:
    return bytes(sodium.crypto_scalarmult_base(backup_secret(recovery)))


@dataclass(frozen=True, slots=True)
class BackupCert:
    """The recovery key vouches for the backup key: ``[1, account,
    recovery_public, backup_public, signature]``."""

    account: bytes
    recovery_public: bytes
    backup_public: bytes
    signature: bytes

    def encode(self) -> bytes:
        return encode(
            [VERSION, self.account, self.recovery_public, self.backup_public, self.signature]
        )

    def check(self, commitment: bytes | None) -> None:
        """Holds for the recovery commitment the log has in effect."""
        if commitment is None or recovery_commitment(self.recovery_public) != commitment:
            raise BackupKeyError("the backup key is not vouched for by the current recovery key")


def _cert_message(params: NetworkParams, account: bytes, rec: bytes, pub: bytes) -> bytes:
    return D_BACKUP_CERT + encode([params.network_id, account, rec, pub])


def make_cert(params: NetworkParams, account: bytes, recovery: RecoveryKey) -> BackupCert:
    pub = backup_public(recovery)
    sig = recovery.sign(_cert_message(params, account, recovery.public, pub))
    return BackupCert(account, recovery.public, pub, sig)


def decode_cert(raw: bytes, params: NetworkParams) -> BackupCert:
    if len(raw) > 256:
        raise SizeLimitError("a backup key certificate is at most 256 bytes")
    fields = decode(raw, 256)
    if type(fields) is not list or len(fields) != 5 or _uint(fields[0], "version") != VERSION:
        raise SchemaError("a backup key certificate is [1, account, recovery, backup, sig]")
    cert = BackupCert(
        _bin(fields[1], 32, "account"),
        _bin(fields[2], 32, "recovery key"),
        _bin(fields[3], 32, "backup key"),
        _bin(fields[4], 64, "signature"),
    )
    crypto.check_x25519_public(cert.backup_public)
    msg = _cert_message(params, cert.account, cert.recovery_public, cert.backup_public)
    crypto.verify(cert.recovery_public, msg, cert.signature)
    return cert


# -- the file --------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Header:
    network_id: str
    account: bytes
    backup_public: bytes
    created_ms: int
    eph_public: bytes
    wrapped_key: bytes
    #: the passphrase's Argon2id salt, or None without a passphrase
    salt: bytes | None

    def encode(self) -> bytes:
        return encode(
            [
                VERSION,
                self.network_id,
                self.account,
                self.backup_public,
                self.created_ms,
                self.eph_public,
                self.wrapped_key,
                self.salt or b"",  # empty: no passphrase
            ]
        )


def decode_header(raw: bytes) -> Header:
    fields = decode(raw, MAX_HEADER_BYTES)
    if type(fields) is not list or len(fields) != 8 or _uint(fields[0], "version") != VERSION:
        raise BackupCorruptError("not a backup header this version knows")
    network, salt = fields[1], fields[7]
    if type(network) is not str:
        raise SchemaError("network id is text")
    return Header(
        network,
        _bin(fields[2], 32, "account"),
        _bin(fields[3], 32, "backup key"),
        _uint(fields[4], "created"),
        _bin(fields[5], 32, "ephemeral key"),
        _bin(fields[6], 32 + _TAG, "wrapped key"),
        None if salt == b"" else _bin(salt, SALT_BYTES, "salt"),
    )


def passphrase_key(passphrase: str, salt: bytes) -> bytes:
    return bytes(
        sodium.crypto_pwhash_alg(
            32,
            passphrase.encode(),
            salt,
            PASS_OPSLIMIT,
            PASS_MEMLIMIT,
            sodium.crypto_pwhash_ALG_ARGON2ID13,
        )
    )


def _wrap_key(shared: bytes, eph_public: bytes, backup_pub: bytes) -> bytes:
    return crypto.hash32(D_BACKUP_WRAP, shared + eph_public + backup_pub)


def _stream_key(file_key: bytes, pass_key: bytes | None) -> bytes:
    return crypto.hash32(D_BACKUP_STREAM, file_key + (pass_key or b""))


def _nonce(index: int, final: bool) -> bytes:
    return index.to_bytes(8, "big") + (b"\x01" if final else b"\x00") + bytes(15)


def _sig_message(params: NetworkParams, header_hash: bytes, body_hash: bytes) -> bytes:
    return D_BACKUP_SIG + encode([params.network_id, header_hash, body_hash])


def seal_backup(
    params: NetworkParams,
    cert: BackupCert,
    device: DeviceKeys,
    items: Iterable[Value],
    *,
    created_ms: int,
    file_key: bytes,
    eph_secret: bytes,
    salt: bytes | None = None,
    passphrase: str | None = None,
) -> Iterator[bytes]:
    """The backup file in pieces: the magic and header, then each chunk.
    ``items`` are canonical values, packed into chunks; the last chunk is
    ``["end", device, signature]`` over the hash of every chunk before it."""
    if len(file_key) != 32 or len(eph_secret) != 32:
        raise UsageError("a file key and an ephemeral secret are 32 bytes")
    if (passphrase is None) != (salt is None):
        raise UsageError("a passphrase needs a salt, and only then")
    eph_public = bytes(sodium.crypto_scalarmult_base(eph_secret))
    shared = bytes(sodium.crypto_scalarmult(eph_secret, cert.backup_public))
    wrapped = sodium.crypto_aead_xchacha20poly1305_ietf_encrypt(
        file_key, None, bytes(24), _wrap_key(shared, eph_public, cert.backup_public)
    )
    header = Header(
        params.network_id,
        cert.account,
        cert.backup_public,
        created_ms,
        eph_public,
        bytes(wrapped),
        salt,
    ).encode()
    yield MAGIC + len(header).to_bytes(4, "big") + header
    header_hash = crypto.hash32(D_BACKUP_STREAM, header)
    pass_key = None if passphrase is None else passphrase_key(passphrase, salt or b"")
    key = _stream_key(file_key, pass_key)
    body = hashlib.blake2b(digest_size=32)
    index = 0

    def chunk(plain: bytes, final: bool) -> bytes:
        boxed = sodium.crypto_aead_xchacha20poly1305_ietf_encrypt(
            plain, header_hash, _nonce(index, final), key
        )
        return len(boxed).to_bytes(4, "big") + bytes(boxed)

    pending: list[Value] = []
    size = 0
    for item in items:
        raw = encode(item)
        if len(raw) + 16 > CHUNK_BYTES:
            raise UsageError("an item does not fit in a chunk")
        if size + len(raw) + 16 > CHUNK_BYTES:
            plain = encode(pending)
            body.update(len(plain).to_bytes(4, "big") + plain)
            yield chunk(plain, False)
            index += 1
            if index >= MAX_CHUNKS - 1:
                raise UsageError("a backup holds at most 256 MiB")
            pending, size = [], 0
        pending.append(item)
        size += len(raw)
    if pending:
        plain = encode(pending)
        body.update(len(plain).to_bytes(4, "big") + plain)
        yield chunk(plain, False)
        index += 1
    sig = device.sign(_sig_message(params, header_hash, body.digest()))
    yield chunk(encode(["end", device.sign_public, sig]), True)


@dataclass(frozen=True, slots=True)
class Opened:
    header: Header
    #: the device that made the backup, its signature checked
    device: bytes
    items: tuple[Value, ...]


def read_header(data: bytes) -> tuple[Header, int]:
    """The header and where the chunks start; refuses what is no backup."""
    if data[: len(MAGIC)] != MAGIC or len(data) < len(MAGIC) + 4:
        raise BackupCorruptError("not an SMU backup (or a version this node does not know)")
    n = int.from_bytes(data[len(MAGIC) : len(MAGIC) + 4], "big")
    if n > MAX_HEADER_BYTES or len(data) < len(MAGIC) + 4 + n:
        raise BackupCorruptError("the backup's header is cut or too large")
    start = len(MAGIC) + 4
    try:
        return decode_header(data[start : start + n]), start + n
    except InvalidInput as exc:
        raise BackupCorruptError(f"the backup's header: {exc}") from exc


def open_backup(
    params: NetworkParams,
    data: bytes,
    recovery: RecoveryKey,
    *,
    passphrase: str | None = None,
) -> Opened:
    """Decrypt and check a whole backup; raises a ``BackupError`` and
    returns nothing partial."""
    header, pos = read_header(data)
    if header.network_id != params.network_id:
        raise BackupCorruptError(f"a backup from network {header.network_id!r}")
    if header.backup_public != backup_public(recovery):
        raise BackupKeyError("this backup was sealed to another recovery key")
    if (header.salt is None) != (passphrase is None):
        raise BackupKeyError(
            "this backup needs its passphrase" if header.salt else "this backup has no passphrase"
        )
    secret = backup_secret(recovery)
    shared = bytes(sodium.crypto_scalarmult(secret, header.eph_public))
    try:
        file_key = bytes(
            sodium.crypto_aead_xchacha20poly1305_ietf_decrypt(
                header.wrapped_key,
                None,
                bytes(24),
                _wrap_key(shared, header.eph_public, header.backup_public),
            )
        )
    except nacl_exceptions.CryptoError as exc:
        raise BackupCorruptError("the backup's key does not open") from exc
    pass_key = None if header.salt is None else passphrase_key(passphrase or "", header.salt)
    key = _stream_key(file_key, pass_key)
    header_hash = crypto.hash32(D_BACKUP_STREAM, data[len(MAGIC) + 4 : pos])
    body = hashlib.blake2b(digest_size=32)
    items: list[Value] = []
    index = 0
    while True:
        if pos + 4 > len(data):
            raise BackupCorruptError("the backup is cut short")
        n = int.from_bytes(data[pos : pos + 4], "big")
        if n > CHUNK_BYTES + _TAG or pos + 4 + n > len(data) or index >= MAX_CHUNKS:
            raise BackupCorruptError("a chunk is cut or too large")
        boxed = data[pos + 4 : pos + 4 + n]
        pos += 4 + n
        final = pos == len(data)
        try:
            plain = bytes(
                sodium.crypto_aead_xchacha20poly1305_ietf_decrypt(
                    boxed, header_hash, _nonce(index, final), key
                )
            )
        except nacl_exceptions.CryptoError as exc:
            if index == 0 and pass_key is not None:
                raise BackupKeyError("the passphrase does not open this backup") from exc
            raise BackupCorruptError(f"chunk {index} was altered, moved or cut") from exc
        value = decode(plain, CHUNK_BYTES)
        if final:
            return _finish(params, header, header_hash, body.digest(), value, items)
        if type(value) is not list:
            raise BackupCorruptError("a chunk is a list of items")
        body.update(len(plain).to_bytes(4, "big") + plain)
        items.extend(value)
        index += 1


def _finish(
    params: NetworkParams,
    header: Header,
    header_hash: bytes,
    body_hash: bytes,
    end: Value,
    items: list[Value],
) -> Opened:
    if type(end) is not list or len(end) != 3 or end[0] != "end":
        raise BackupCorruptError("the last chunk is not the end")
    device = _bin(end[1], 32, "device")
    signature = _bin(end[2], 64, "signature")
    try:
        crypto.verify(device, _sig_message(params, header_hash, body_hash), signature)
    except InvalidInput as exc:
        raise BackupCorruptError("the backup's signature does not verify") from exc
    return Opened(header, device, tuple(items))
