"""Making events locally: one function per thing a user does.

Each returns a signed ``Event`` with its proof-of-work done; it checks
only what the caller controls.  Whether the account accepts it is the
ledger's business (``Ledger.ingest``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from protocol.core.keys import DeviceKeys, RecoveryKey
from protocol.core.params import NetworkParams
from protocol.log.events import (
    AddDeviceBody,
    DeviceIntro,
    Event,
    GenesisBody,
    ProfileBody,
    RecoverBody,
    RevokeDeviceBody,
    RotateEncKeyBody,
    RotateRecoveryBody,
    build_event,
    pop_message,
    rotation_message,
)

Progress = Callable[[int], None] | None


def introduce(params: NetworkParams, account: bytes, device: DeviceKeys, name: str) -> DeviceIntro:
    """A device's own proof of possession, for ``account`` (empty for a genesis)."""
    msg = pop_message(params.network_id, account, device.sign_public, device.enc_public)
    return DeviceIntro(device.sign_public, device.enc_public, name, device.sign(msg))


def genesis(
    params: NetworkParams,
    device: DeviceKeys,
    recovery: RecoveryKey,
    *,
    display_name: str,
    device_name: str,
    timestamp: int,
    progress: Progress = None,
) -> Event:
    body = GenesisBody(
        display_name, introduce(params, b"", device, device_name), recovery.commitment
    )
    return build_event(
        params,
        account=b"",
        parents=(),
        timestamp=timestamp,
        body=body,
        signer_public=device.sign_public,
        sign=device.sign,
        progress=progress,
    )


def add_device(
    params: NetworkParams,
    account: bytes,
    parents: Sequence[bytes],
    approver: DeviceKeys,
    intro: DeviceIntro,
    *,
    timestamp: int,
) -> Event:
    """``intro`` comes from the new device (``introduce``), so its PoP is its own."""
    return build_event(
        params,
        account=account,
        parents=tuple(parents),
        timestamp=timestamp,
        body=AddDeviceBody(intro),
        signer_public=approver.sign_public,
        sign=approver.sign,
    )


def revoke_device(
    params: NetworkParams,
    account: bytes,
    parents: Sequence[bytes],
    revoker: DeviceKeys,
    revoked: bytes,
    *,
    timestamp: int,
) -> Event:
    return build_event(
        params,
        account=account,
        parents=tuple(parents),
        timestamp=timestamp,
        body=RevokeDeviceBody(revoked),
        signer_public=revoker.sign_public,
        sign=revoker.sign,
    )


def recover(
    params: NetworkParams,
    account: bytes,
    parents: Sequence[bytes],
    recovery: RecoveryKey,
    new_device: DeviceKeys,
    next_recovery: RecoveryKey,
    *,
    device_name: str,
    timestamp: int,
) -> Event:
    body = RecoverBody(
        introduce(params, account, new_device, device_name), next_recovery.commitment
    )
    return build_event(
        params,
        account=account,
        parents=tuple(parents),
        timestamp=timestamp,
        body=body,
        signer_public=recovery.public,
        sign=recovery.sign,
    )


def rotate_enc_key(
    params: NetworkParams,
    account: bytes,
    parents: Sequence[bytes],
    device: DeviceKeys,
    new_enc_public: bytes,
    *,
    timestamp: int,
) -> Event:
    return build_event(
        params,
        account=account,
        parents=tuple(parents),
        timestamp=timestamp,
        body=RotateEncKeyBody(new_enc_public),
        signer_public=device.sign_public,
        sign=device.sign,
    )


def profile(
    params: NetworkParams,
    account: bytes,
    parents: Sequence[bytes],
    device: DeviceKeys,
    *,
    display_name: str,
    timestamp: int,
) -> Event:
    return build_event(
        params,
        account=account,
        parents=tuple(parents),
        timestamp=timestamp,
        body=ProfileBody(display_name),
        signer_public=device.sign_public,
        sign=device.sign,
    )


def rotate_recovery(
    params: NetworkParams,
    account: bytes,
    parents: Sequence[bytes],
    device: DeviceKeys,
    recovery: RecoveryKey,
    next_recovery: RecoveryKey,
    *,
    timestamp: int,
) -> Event:
    """Replace the recovery key (PROTOCOL.md §6.8): ``device`` signs the
    event, ``recovery`` (the key in force at ``parents``) co-signs it, and
    it commits to ``next_recovery``."""
    parents = tuple(sorted(set(parents)))
    commitment = next_recovery.commitment
    msg = rotation_message(params.network_id, account, parents, device.sign_public, commitment)
    return build_event(
        params,
        account=account,
        parents=parents,
        timestamp=timestamp,
        body=RotateRecoveryBody(recovery.public, commitment, recovery.sign(msg)),
        signer_public=device.sign_public,
        sign=device.sign,
    )
