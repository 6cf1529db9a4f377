"""The node's data directory (DESIGN §9, at rest).

Layout, all inside one directory of mode 0700:

    config.json     network, device name, this device's account (no secrets)
    keys.json       device and node secrets and the storage key, mode 0600;
                    with a passphrase they are sealed with SecretBox under an
                    Argon2id key
    prekeys.json    the device's signed prekey secrets (PROTOCOL.md §19.3),
                    mode 0600, sealed under the same key as keys.json
    prekey-offer.bin  the one-time prekey batches this node serves and the
                    ids it served (§19.16), mode 0600
    events.sqlite   the event store (node/storage.py)
    control.sock    the control API (node/control.py)
    web.key         the web app's key, mode 0600 (node/web/auth.py)
    web.json        the web app's port while it runs, mode 0600
    node.lock       held (fcntl) by the one daemon running on this directory;
                    holds its pid
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import stat
import tempfile
from dataclasses import dataclass, field, replace
from pathlib import Path

import nacl.exceptions
import nacl.pwhash
import nacl.secret
import nacl.utils
import platformdirs

from protocol.core.keys import DeviceKeys

from .errors import NodeUsageError

KEYS_FILE = "keys.json"
#: the device's prekey secrets (PROTOCOL.md §19.3), protected as keys.json
PREKEYS_FILE = "prekeys.json"
#: the public one-time prekey batches this node serves, and what it served
#: (PROTOCOL.md §19.16): no secret, but 0600 like prekeys.json
PREKEY_OFFER_FILE = "prekey-offer.bin"
#: the one-time prekey batches other devices uploaded to this node's mailbox
PREKEY_SHELF_FILE = "prekey-shelf.bin"
CONFIG_FILE = "config.json"
DB_FILE = "events.sqlite"
SOCKET_FILE = "control.sock"
LOCK_FILE = "node.lock"


def default_data_dir() -> Path:
    env = os.environ.get("SMU_HOME")
    return Path(env) if env else Path(platformdirs.user_data_dir("smu"))


def ensure_private_dir(path: Path) -> None:
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(path, 0o700)


def write_private(path: Path, data: bytes) -> None:
    """Write a file readable by the owner alone, atomically.  The temporary
    file is new (O_EXCL, mode 0600) so nobody can plant a file or symlink to
    receive the secret, even in a shared folder."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        view = memoryview(data)
        while view:  # a write may be short
            view = view[os.write(fd, view) :]
        os.fsync(fd)
    finally:
        os.close(fd)
    try:
        os.chmod(tmp, 0o600)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise
    # the rename is durable only once the directory is synced: until then a
    # crash may bring back the old file (a prekey a record already names gone)
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


STORAGE_KEY_BYTES = 32
#: derives the token key of a key file written before token keys existed
D_TOKEN_SEED = b"smu/token-seed/v1\x00"


@dataclass(frozen=True, slots=True)
class Secrets:
    device: DeviceKeys
    #: seed of the libp2p identity key, separate from the device key
    node_seed: bytes = field(repr=False)
    #: seed of the device's mailbox token key (PROTOCOL.md §15.16): a key of
    #: its own, so that a token can never pass for a device signature
    token_seed: bytes = field(default=b"", repr=False)
    #: the key of what the store keeps encrypted (PROTOCOL.md §15.21): 32
    #: random bytes, here so that a passphrase protects it as it does the
    #: device keys; empty in a key file from before it (``add_storage_key``)
    storage_key: bytes = field(default=b"", repr=False)

    def __post_init__(self) -> None:
        if not self.token_seed:
            # A key file from before token keys: derive one, the same at
            # every start, without rewriting (perhaps encrypted) keys.json.
            seed = hashlib.blake2b(D_TOKEN_SEED + self.device.sign_seed, digest_size=32).digest()
            object.__setattr__(self, "token_seed", seed)

    def to_json(self) -> dict[str, str]:
        return {
            "device_sign_seed": self.device.sign_seed.hex(),
            "device_enc_secret": self.device.enc_secret.hex(),
            "node_seed": self.node_seed.hex(),
            "token_seed": self.token_seed.hex(),
            **({"storage_key": self.storage_key.hex()} if self.storage_key else {}),
        }

    @classmethod
    def from_json(cls, data: dict[str, str]) -> Secrets:
        return cls(
            DeviceKeys(
                bytes.fromhex(data["device_sign_seed"]), bytes.fromhex(data["device_enc_secret"])
            ),
            bytes.fromhex(data["node_seed"]),
            bytes.fromhex(data.get("token_seed", "")),
            bytes.fromhex(data.get("storage_key", "")),
        )


class DataDir:
    def __init__(self, path: Path) -> None:
        self.path = path
        #: keys.json's SecretBox key and KDF parameters once the secrets are
        #: loaded with a passphrase: prekeys.json is sealed under them too
        self._box: tuple[bytes, dict[str, object]] | None = None

    @property
    def keys_path(self) -> Path:
        return self.path / KEYS_FILE

    @property
    def config_path(self) -> Path:
        return self.path / CONFIG_FILE

    @property
    def db_path(self) -> Path:
        return self.path / DB_FILE

    @property
    def socket_path(self) -> Path:
        return self.path / SOCKET_FILE

    def lock(self) -> int:
        """Take the data directory for one daemon: a second one would run
        with the same keys and, on exit, remove the first's control socket.
        Returns the lock's file descriptor, held until the process ends (or
        it is closed)."""
        ensure_private_dir(self.path)
        fd = os.open(self.path / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            # the lock file holds a pid: 32 bytes at most are read, local only
            pid = os.read(fd, 32).decode(errors="replace").strip() or "?"
            os.close(fd)
            raise NodeUsageError(
                f"a node is already running here (pid {pid}): {self.path}; "
                "stop it with `smu node stop`"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        return fd

    def exists(self) -> bool:
        return self.keys_path.exists()

    def init(self, network: str, device_name: str, passphrase: str | None) -> Secrets:
        if self.exists():
            raise NodeUsageError(f"{self.path} is already initialised (keys.json exists)")
        ensure_private_dir(self.path)
        secrets = Secrets(
            DeviceKeys.from_random(os.urandom(64)),
            os.urandom(32),
            os.urandom(32),
            os.urandom(STORAGE_KEY_BYTES),
        )
        self._write_secrets(secrets, passphrase)
        self.write_config({"network": network, "device_name": device_name, "account": None})
        return secrets

    def add_storage_key(self, passphrase: str | None) -> Secrets:
        """Give a key file from before the storage key one (on the first
        start after the upgrade), under the same passphrase, holding the
        directory's lock so that two starts cannot make two keys."""
        fd = self.lock()
        try:
            secrets = self.load_secrets(passphrase)
            if not secrets.storage_key:
                secrets = replace(secrets, storage_key=os.urandom(STORAGE_KEY_BYTES))
                # written (and synced) before the store encrypts anything with it
                self._write_secrets(secrets, passphrase)
            return secrets
        finally:
            os.close(fd)

    def _write_secrets(self, secrets: Secrets, passphrase: str | None) -> None:
        plain = json.dumps(secrets.to_json()).encode()
        doc: dict[str, object]
        if passphrase is None:
            doc = {"version": 1, "encrypted": False, "secrets": secrets.to_json()}
        else:
            salt = nacl.utils.random(nacl.pwhash.argon2id.SALTBYTES)
            ops = nacl.pwhash.argon2id.OPSLIMIT_MODERATE
            mem = nacl.pwhash.argon2id.MEMLIMIT_MODERATE
            key = nacl.pwhash.argon2id.kdf(
                nacl.secret.SecretBox.KEY_SIZE,
                passphrase.encode(),
                salt,
                opslimit=ops,
                memlimit=mem,
            )
            box = nacl.secret.SecretBox(key).encrypt(plain)
            kdf = {"alg": "argon2id13", "salt": salt.hex(), "opslimit": ops, "memlimit": mem}
            self._box = (key, kdf)
            doc = {"version": 1, "encrypted": True, "kdf": kdf, "box": bytes(box).hex()}
        write_private(self.keys_path, json.dumps(doc, indent=1).encode())

    @property
    def prekeys_path(self) -> Path:
        return self.path / PREKEYS_FILE

    def save_prekeys(self, raw: bytes) -> None:
        """Write the prekey store (``PrekeyStore.encode``) as keys.json is
        kept: 0600, sealed under the passphrase's key if it has one."""
        doc: dict[str, object]
        if self.is_encrypted():
            if self._box is None:
                raise NodeUsageError("load the secrets with the passphrase first")
            key, kdf = self._box
            box = nacl.secret.SecretBox(key).encrypt(raw)
            doc = {"version": 1, "encrypted": True, "kdf": kdf, "box": bytes(box).hex()}
        else:
            doc = {"version": 1, "encrypted": False, "store": raw.hex()}
        write_private(self.prekeys_path, json.dumps(doc).encode())

    def load_prekeys(self) -> bytes | None:
        """The stored prekey store's bytes, or None if there is none yet."""
        if not self.prekeys_path.exists():
            return None
        mode = stat.S_IMODE(self.prekeys_path.stat().st_mode)
        if mode & 0o077:
            raise NodeUsageError(f"{self.prekeys_path} is readable by others: chmod 600 it")
        doc = json.loads(self.prekeys_path.read_text())
        if not doc.get("encrypted"):
            return bytes.fromhex(str(doc["store"]))
        if self._box is None:
            raise NodeUsageError("load the secrets with the passphrase first")
        try:
            return bytes(nacl.secret.SecretBox(self._box[0]).decrypt(bytes.fromhex(doc["box"])))
        except nacl.exceptions.CryptoError as exc:
            raise NodeUsageError(f"{self.prekeys_path} does not open under the passphrase") from exc

    def save_prekey_offer(self, raw: bytes) -> None:
        """The offer (``PrekeyOffer.encode``), atomically: a served key is
        on disk before its answer leaves (§19.16)."""
        write_private(self.path / PREKEY_OFFER_FILE, raw)

    def load_prekey_offer(self) -> bytes | None:
        path = self.path / PREKEY_OFFER_FILE
        return path.read_bytes() if path.exists() else None

    def take_prekey_shelf(self) -> bytes | None:
        """``prekey-shelf.bin`` of before the mailbox's prekey table
        (§19.16): its bytes, once; the file is removed."""
        path = self.path / PREKEY_SHELF_FILE
        if not path.exists():
            return None
        raw = path.read_bytes()
        path.unlink()
        return raw

    def is_encrypted(self) -> bool:
        return bool(self._read_keys_doc().get("encrypted"))

    def _read_keys_doc(self) -> dict[str, object]:
        if not self.exists():
            raise NodeUsageError(
                f"no keys in {self.path}: run `smu init --data-dir {self.path}` first"
            )
        mode = stat.S_IMODE(self.keys_path.stat().st_mode)
        if mode & 0o077:
            raise NodeUsageError(
                f"{self.keys_path} is readable by others (mode {mode:o}): chmod 600 it"
            )
        doc = json.loads(self.keys_path.read_text())
        assert isinstance(doc, dict)
        return doc

    def load_secrets(self, passphrase: str | None = None) -> Secrets:
        doc = self._read_keys_doc()
        if not doc.get("encrypted"):
            secrets = doc["secrets"]
            assert isinstance(secrets, dict)
            return Secrets.from_json(secrets)
        if passphrase is None:
            raise NodeUsageError(
                "the keys are encrypted: give the passphrase (SMU_PASSPHRASE or prompt)"
            )
        kdf = doc["kdf"]
        assert isinstance(kdf, dict)
        key = nacl.pwhash.argon2id.kdf(
            nacl.secret.SecretBox.KEY_SIZE,
            passphrase.encode(),
            bytes.fromhex(kdf["salt"]),
            opslimit=int(kdf["opslimit"]),
            memlimit=int(kdf["memlimit"]),
        )
        try:
            plain = nacl.secret.SecretBox(key).decrypt(bytes.fromhex(str(doc["box"])))
        except nacl.exceptions.CryptoError as exc:
            raise NodeUsageError("wrong passphrase") from exc
        self._box = (key, dict(kdf))
        return Secrets.from_json(json.loads(plain))

    def read_config(self) -> dict[str, object]:
        if not self.config_path.exists():
            raise NodeUsageError(
                f"no config in {self.path}: run `smu init --data-dir {self.path}` first"
            )
        data = json.loads(self.config_path.read_text())
        assert isinstance(data, dict)
        return data

    def write_config(self, config: dict[str, object]) -> None:
        write_private(self.config_path, json.dumps(config, indent=1, sort_keys=True).encode())
