"""Session set-up between two devices, X3DH-style (PROTOCOL.md §19.4).

Follows Signal's published X3DH with SMU's keys: a device's **identity
key** is its X25519 encryption key as the log lists it (bound to its device
key by the proof of possession, §5.4), its **signed prekey** is the one in
its device record v2 (§16.2) and its **one-time prekeys** come in signed
batches (``prekeys.py``).  The initiator computes::

    DH1 = DH(IK_A, SPK_B)   DH2 = DH(EK_A, IK_B)   DH3 = DH(EK_A, SPK_B)   [DH4 = DH(EK_A, OPK_B)]
    AD  = H(D_SESSION_AD, enc([suite, network, A.account, A.device, A.ik,
                                B.account, B.device, B.ik]))
    SK  = HKDF-SHA-256(salt = 0^32, ikm = 0xff^32 ‖ DH1 ‖ DH2 ‖ DH3 [‖ DH4],
                       info = INFO_X3DH ‖ AD, 32 bytes)

and starts the Double Ratchet with SK as the root key and SPK_B as the
responder's first ratchet key.  Randomness (the ephemeral and the first
ratchet secret) comes in as bytes.
"""

from __future__ import annotations

from dataclasses import dataclass

from protocol.core import crypto
from protocol.core.canonical import encode_flat
from protocol.core.params import NetworkParams
from protocol.messaging.prekeys import OneTimePrekey, PrekeyStore
from protocol.messaging.ratchet import (
    FULL_LIMITS,
    KEY,
    PrekeyHeader,
    RatchetLimits,
    RatchetMessage,
    Session,
    SessionState,
    decrypt_state,
    dh,
    hkdf_sha256,
    kdf_rk,
    x25519_public,
)
from protocol.messaging.session_errors import (
    IdentityMismatchError,
    SessionUsageError,
    WrongSessionError,
)

D_SESSION_AD = b"smu/session-ad/v1\x00"
INFO_X3DH = b"smu/x3dh/v1\x00"
#: 32 bytes of 0xff before the DH outputs, as X3DH prescribes for X25519
X3DH_PAD = b"\xff" * 32


@dataclass(frozen=True, slots=True)
class Party:
    """One end of a session as the log shows it: the account, the device
    (Ed25519 key) and its current X25519 encryption key (the identity key)."""

    account: bytes
    device: bytes
    ik: bytes


@dataclass(frozen=True, slots=True)
class Bundle:
    """What an initiator needs from the responder: its party (from the
    initiator's own replica), its signed prekey (from its verified record)
    and, if one was fetched, a verified one-time prekey."""

    responder: Party
    spk_id: int
    spk: bytes
    opk: OneTimePrekey | None = None


def session_ad(params: NetworkParams, initiator: Party, responder: Party) -> bytes:
    """The binding hash of a session (§19.4): both parties, the network."""
    return crypto.hash32(
        D_SESSION_AD,
        encode_flat(
            [params.suite, params.network_id, initiator.account, initiator.device, initiator.ik,
             responder.account, responder.device, responder.ik]
        ),
    )  # fmt: skip


def _sk(dhs: list[bytes], ad: bytes) -> bytes:
    return hkdf_sha256(bytes(32), X3DH_PAD + b"".join(dhs), INFO_X3DH + ad, KEY)


def initiate(
    params: NetworkParams,
    initiator: Party,
    ik_secret: bytes,
    bundle: Bundle,
    random: bytes,
) -> Session:
    """The initiator's new session; its messages carry the prekey header
    until the first reply arrives.  ``random``: 64 fresh bytes (the
    ephemeral secret, then the first ratchet secret)."""
    if len(random) != 2 * KEY or len(ik_secret) != KEY:
        raise SessionUsageError("initiate needs a 32-byte identity secret and 64 random bytes")
    if x25519_public(ik_secret) != initiator.ik:
        raise SessionUsageError("the identity secret is not the initiator's identity key")
    crypto.check_x25519_public(bundle.spk)
    crypto.check_x25519_public(bundle.responder.ik)
    ek_secret, ratchet_secret = random[:KEY], random[KEY:]
    b = bundle.responder
    dhs = [dh(ik_secret, bundle.spk), dh(ek_secret, b.ik), dh(ek_secret, bundle.spk)]
    if bundle.opk is not None:
        crypto.check_x25519_public(bundle.opk.key)
        dhs.append(dh(ek_secret, bundle.opk.key))
    ad = session_ad(params, initiator, b)
    sk = _sk(dhs, ad)
    header = PrekeyHeader(
        initiator.ik,
        x25519_public(ek_secret),
        bundle.spk_id,
        None if bundle.opk is None else bundle.opk.prekey_id,
    )
    rk, cks = kdf_rk(sk, dh(ratchet_secret, bundle.spk))
    state = SessionState(
        ad=ad,
        initiation=header.initiation_id(),
        rk=rk,
        dhs_secret=ratchet_secret,
        dhs_public=x25519_public(ratchet_secret),
        dhr=bundle.spk,
        cks=cks,
        ckr=None,
        pending=header,
    )
    return Session(state)


def respond(
    params: NetworkParams,
    initiator: Party,
    responder: Party,
    ik_secret: bytes,
    spk_secret: bytes,
    opk_secret: bytes | None,
    message: RatchetMessage,
    fresh: bytes,
    limits: RatchetLimits = FULL_LIMITS,
) -> tuple[Session, bytes]:
    """The responder's session from the first prekey message it accepts,
    and that message's plaintext.  ``initiator`` is the sender as the
    responder's own replica lists it (the caller looked up the device the
    envelope names); the prekey header's identity key must be its key."""
    p = message.prekey
    if p is None:
        raise WrongSessionError("not a prekey message: no session to open it")
    if p.ik != initiator.ik:
        raise IdentityMismatchError("the initiator used an identity key its log does not list")
    if (opk_secret is None) != (p.opk_id is None):
        raise SessionUsageError("pass the one-time secret exactly when the message names one")
    if x25519_public(ik_secret) != responder.ik:
        raise SessionUsageError("the identity secret is not the responder's identity key")
    dhs = [dh(spk_secret, p.ik), dh(ik_secret, p.ek), dh(spk_secret, p.ek)]
    if opk_secret is not None:
        dhs.append(dh(opk_secret, p.ek))
    ad = session_ad(params, initiator, responder)
    state = SessionState(
        ad=ad,
        initiation=p.initiation_id(),
        rk=_sk(dhs, ad),
        dhs_secret=spk_secret,
        dhs_public=x25519_public(spk_secret),
        dhr=None,
        cks=None,
        ckr=None,
    )
    new, plaintext = decrypt_state(state, message, fresh, limits)
    return Session(new), plaintext


def respond_from_store(
    params: NetworkParams,
    initiator: Party,
    responder: Party,
    ik_secret: bytes,
    store: PrekeyStore,
    message: RatchetMessage,
    fresh: bytes,
    now_ms: int,
    limits: RatchetLimits = FULL_LIMITS,
) -> tuple[Session, bytes, PrekeyStore]:
    """``respond`` with the secrets from the device's store.  Returns the
    store with the one-time prekey spent, to be committed with the session;
    every refusal (an unknown or reused prekey, a message that does not
    authenticate) leaves the caller's store and sessions as they were."""
    p = message.prekey
    if p is None:
        raise WrongSessionError("not a prekey message: no session to open it")
    if p.ik != initiator.ik:  # before the store is asked anything (§19.4 step 1)
        raise IdentityMismatchError("the initiator used an identity key its log does not list")
    spk_secret = store.signed_secret(p.spk_id, now_ms)
    opk_secret, after = (None, store) if p.opk_id is None else store.take_one_time(p.opk_id, now_ms)
    session, plaintext = respond(
        params, initiator, responder, ik_secret, spk_secret, opk_secret, message, fresh, limits
    )
    return session, plaintext, after


__all__ = [
    "D_SESSION_AD",
    "INFO_X3DH",
    "Bundle",
    "Party",
    "initiate",
    "respond",
    "respond_from_store",
    "session_ad",
]
