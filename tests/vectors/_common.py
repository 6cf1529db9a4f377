"""What the vector generator and the vector tests share.

Everything here is deterministic: keys come from seeds hashed from labels,
timestamps are fixed, and the proof-of-work is ground from nonce 0 upwards,
so running the generator twice gives the same bytes.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Callable
from typing import Any

from protocol.core import crypto, errors
from protocol.core.canonical import encode_flat
from protocol.core.keys import DeviceKeys, RecoveryKey
from protocol.core.params import FORMAT_VERSION, SUITE_V2, SUITE_V3, NetworkParams
from protocol.log.state import AccountState

#: A network of its own: proof-of-work is real (so an implementation must
#: check it) but cheap, and its id keeps these events off every real network.
PARAMS = NetworkParams(
    network_id="smu-vectors",
    genesis_pow_bits=8,
    event_pow_bits=4,
    special_pow_bits=6,
    # the files written before suite 3 stay byte for byte as they were (§12.2):
    # suite 3 changed nothing they contain; rotations.json is under suite 3
    suite=SUITE_V2,
)
#: suite 3 (rotations of the recovery key, PROTOCOL.md §6.8): rotations.json
PARAMS_V3 = dataclasses.replace(PARAMS, suite=SUITE_V3)

#: 2026-01-01T00:00:00Z in milliseconds; every timestamp is T0 plus a small offset.
T0 = 1_767_225_600_000

FORMAT_NOTE = "smu golden vectors v1; see tests/vectors/README.md"

Json = Any


def params_json(params: NetworkParams = PARAMS) -> dict[str, Json]:
    return {
        "network_id": params.network_id,
        "format_version": FORMAT_VERSION,
        "suite": params.suite,
        "genesis_pow_bits": params.genesis_pow_bits,
        "event_pow_bits": params.event_pow_bits,
        "special_pow_bits": params.pow_bits(False, special=True),
        "max_event_bytes": params.max_event_bytes,
        "max_parents": params.max_parents,
        "max_name_bytes": params.max_name_bytes,
        "max_device_events": params.max_device_events,
        "max_active_devices": params.max_active_devices,
        "min_timestamp_ms": params.min_timestamp_ms,
        "max_timestamp_ms": params.max_timestamp_ms,
    }


def domains_json() -> dict[str, str]:
    """Every domain label of ``protocol/core/crypto.py``, as hex (each ends
    in a NUL byte); labels of other modules are listed by their own files."""
    return {
        name: getattr(crypto, name).hex()
        for name in (
            "D_EVENT_ID",
            "D_EVENT_SIG",
            "D_POW",
            "D_POP",
            "D_RECOVERY_COMMIT",
            "D_FINGERPRINT",
            "D_SAFETY_NUMBER",
            "D_STATE_DIGEST",
            "D_PAPER_KEY",
            "D_DEVICE_RECORD",
            "D_INVITE_CHECKSUM",
        )
    }


# -- seeds ------------------------------------------------------------------


def device_seed(label: str) -> bytes:
    """64 bytes: the Ed25519 seed then the X25519 secret (``DeviceKeys.from_random``)."""
    return hashlib.blake2b(b"smu-vectors/device\x00" + label.encode(), digest_size=64).digest()


def recovery_seed(label: str) -> bytes:
    return hashlib.blake2b(b"smu-vectors/recovery\x00" + label.encode(), digest_size=32).digest()


def bytes_from_label(label: str, size: int = 32) -> bytes:
    return hashlib.blake2b(b"smu-vectors/bytes\x00" + label.encode(), digest_size=size).digest()


def device_keys(label: str) -> DeviceKeys:
    return DeviceKeys.from_random(device_seed(label))


def recovery_key(label: str) -> RecoveryKey:
    return RecoveryKey(recovery_seed(label))


def device_json(label: str) -> dict[str, Json]:
    k = device_keys(label)
    return {
        "label": label,
        "seed": device_seed(label).hex(),
        "sign_public": k.sign_public.hex(),
        "enc_public": k.enc_public.hex(),
    }


def recovery_json(label: str) -> dict[str, Json]:
    r = recovery_key(label)
    return {
        "label": label,
        "seed": r.seed.hex(),
        "public": r.public.hex(),
        "commitment": r.commitment.hex(),
    }


# -- tagged values (encoding.json) ------------------------------------------


def to_tagged(value: object) -> Json:
    """A msgpack value in JSON: every value is a one-key object naming its type."""
    if type(value) is bool:
        return {"bool": value}
    if type(value) is int:
        return {"int": str(value)}  # a string: JSON numbers lose precision over 2**53
    if type(value) is str:
        return {"str": value}
    if type(value) is bytes:
        return {"bin": value.hex()}
    if type(value) is list or type(value) is tuple:
        return {"array": [to_tagged(v) for v in value]}
    if type(value) is dict:
        return {"map": [[to_tagged(k), to_tagged(v)] for k, v in value.items()]}
    raise TypeError(f"no tagged form for {type(value).__name__}")


def from_tagged(tagged: Json) -> object:
    ((tag, inner),) = tagged.items()
    if tag == "bool":
        return bool(inner)
    if tag == "int":
        return int(inner)
    if tag == "str":
        return str(inner)
    if tag == "bin":
        return bytes.fromhex(inner)
    if tag == "array":
        return [from_tagged(v) for v in inner]
    if tag == "map":
        return {from_tagged(k): from_tagged(v) for k, v in inner}
    raise ValueError(f"unknown tag {tag!r}")


# -- account state rendering (histories.json) --------------------------------

STATE_FIELDS = (
    "account_id",
    "display_name",
    "status",
    "devices",
    "heads",
    "recovery_commitment",
    "event_count",
    "voided",
    "disputes",
)
DEVICE_FIELDS = (
    "sign_public",
    "enc_public",
    "name",
    "status",
    "added_by",
    "approver",
    "added_kind",
    "added_at",
    "ended_by",
    "ended_at",
)
VOID_FIELDS = ("event_id", "kind", "reason", "cause")


def _plain(value: object) -> Json:
    if type(value) is bytes:
        return value.hex()
    if type(value) is list:
        return [_plain(v) for v in value]
    return value


def state_json(state: AccountState) -> dict[str, Json]:
    """``AccountState.to_wire()`` with its positions named; bytes as hex.

    The array order of the wire form is the order of the keys here.
    """
    wire = state.to_wire()
    out = dict(zip(STATE_FIELDS, (_plain(v) for v in wire), strict=True))
    out["devices"] = [
        dict(zip(DEVICE_FIELDS, (_plain(v) for v in d), strict=True))
        for d in wire[3]  # type: ignore[attr-defined]
    ]
    out["voided"] = [
        dict(zip(VOID_FIELDS, (_plain(v) for v in d), strict=True))
        for d in wire[7]  # type: ignore[attr-defined]
    ]
    return out


def core_bytes(fields: list[object], nonce: bytes) -> bytes:
    """The canonical 10-element core: the nine fields then the nonce."""
    return encode_flat([*fields, nonce])


def assert_raises(error: str, fn: Callable[..., object], *args: object) -> None:
    """The generator's own check that a case fails the way it is recorded."""
    try:
        fn(*args)
    except errors.ProtocolError as exc:
        if type(exc).__name__ != error:
            raise AssertionError(f"expected {error}, got {type(exc).__name__}: {exc}") from exc
    else:
        raise AssertionError(f"expected {error}, nothing raised")
