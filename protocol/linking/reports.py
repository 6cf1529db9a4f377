"""What the linking machines report, and what both sides compute: the
transcript, its MACs and the confirmation code (PROTOCOL.md §14.3)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from protocol.core import crypto
from protocol.core.canonical import encode
from protocol.core.errors import (
    InvalidInput,
)
from protocol.core.keys import handle
from protocol.core.machine import Hangup, Misbehaved, Send
from protocol.core.params import NetworkParams
from protocol.linking.wire import (
    CODE_DIGITS,
    D_LINK_ACCEPT,
    D_LINK_CODE,
    _keyed,
    error_frame,
)
from protocol.log.events import DeviceIntro, Event, pop_message
from protocol.log.state import AccountState, AccountStatus, DeviceStatus

# --------------------------------------------------------------------------
# The transcript, MACs and the confirmation code (§14.3)


def _transcript(
    network_id: str,
    account_id: bytes,
    approver_peer: str,
    joiner_peer: str,
    link_id: bytes,
    intro: DeviceIntro,
) -> bytes:
    return encode([network_id, account_id, approver_peer, joiner_peer, link_id, intro.to_wire()])


def _accept_mac(secret: bytes, th: bytes, events: Sequence[bytes]) -> bytes:
    return _keyed(secret, D_LINK_ACCEPT, th + encode(list(events)))


def confirmation_code(secret: bytes, transcript_hash: bytes, new_sign_public: bytes) -> str:
    """Six decimal digits, the same on both devices (§14.3)."""
    digest = _keyed(secret, D_LINK_CODE, transcript_hash + new_sign_public, 8)
    return f"{int.from_bytes(digest, 'big') % 10**CODE_DIGITS:0{CODE_DIGITS}d}"


def _check_pop(params: NetworkParams, account_id: bytes, intro: DeviceIntro) -> None:
    msg = pop_message(params.network_id, account_id, intro.sign_public, intro.enc_public)
    crypto.verify(intro.sign_public, msg, intro.pop)


# --------------------------------------------------------------------------
# What the machines report


@dataclass(frozen=True, slots=True)
class JoinRequest:
    """A new device asking to join, as the approving user sees it."""

    device_name: str
    sign_public: bytes
    enc_public: bytes
    fingerprint: str
    code: str
    joiner_peer: str


@dataclass(frozen=True, slots=True)
class DeviceSummary:
    name: str
    sign_public: bytes
    fingerprint: str


@dataclass(frozen=True, slots=True)
class AccountInfo:
    """The account a joiner is about to join, computed from verified events."""

    account_id: bytes
    display_name: str
    handle: str
    status: AccountStatus
    #: the active devices, in the state's order
    devices: tuple[DeviceSummary, ...]

    @classmethod
    def from_state(cls, state: AccountState) -> AccountInfo:
        return cls(
            account_id=state.account_id,
            display_name=state.display_name,
            handle=handle(state.display_name, state.account_id),
            status=state.status,
            devices=tuple(
                DeviceSummary(d.name, d.sign_public, d.fingerprint)
                for d in state.devices
                if d.status is DeviceStatus.ACTIVE
            ),
        )


@dataclass(frozen=True, slots=True)
class JoinRequested:
    """Approver: a valid request claimed the offer; its user is confirming."""

    request: JoinRequest


@dataclass(frozen=True, slots=True)
class ApprovalRequested:
    """Approver: the new device's user confirmed; ask ours (``approve``/``reject``)."""

    request: JoinRequest


@dataclass(frozen=True, slots=True)
class JoinAborted:
    """Approver: the joiner declined, failed or went away (``code`` is theirs)."""

    code: str


@dataclass(frozen=True, slots=True)
class LinkExpired:
    """Approver: the offer, or the request that claimed it, timed out."""


@dataclass(frozen=True, slots=True)
class LinkCompleted:
    """Approver: the new device has its account.  History hook (§14.9)."""

    sign_public: bytes
    enc_public: bytes
    joiner_peer: str


@dataclass(frozen=True, slots=True)
class ConfirmRequired:
    """Joiner: show the account and the code, then ``confirm`` or ``decline``."""

    account: AccountInfo
    code: str


@dataclass(frozen=True, slots=True)
class Joined:
    """Joiner: done.  Ingest ``events`` (parents first) into the node's Ledger
    before carrying out the ``Send`` of DONE that follows."""

    account: AccountInfo
    events: tuple[bytes, ...]
    add_device_id: bytes


@dataclass(frozen=True, slots=True)
class JoinFailed:
    """Joiner: the attempt is over.  ``error`` is the typed reason: the
    approver's ERROR frame (``error_from_code``), a frame this side refused,
    or ``LinkTimeoutError``."""

    error: InvalidInput


LinkEvent = (
    JoinRequested
    | ApprovalRequested
    | JoinAborted
    | LinkExpired
    | LinkCompleted
    | ConfirmRequired
    | Joined
    | JoinFailed
)

#: what every entry point of ``Approver`` and ``Joiner`` returns, in the order
#: to carry it out
LinkOutput = Send | Misbehaved | Hangup | LinkEvent


@dataclass(frozen=True, slots=True)
class Approval:
    #: the signed add-device event: ingest it into the Ledger, then gossip it
    event: Event
    #: the ``Send`` of the APPROVED frame to the joiner, for after the ingest
    outputs: tuple[LinkOutput, ...]


def refusal(peer: str, exc: InvalidInput) -> list[LinkOutput]:
    """Refuse what ``peer`` sent: tell it why, report it, hang up (§14.7)."""
    return [Send(peer, error_frame(exc)), Misbehaved(peer, exc), Hangup(peer)]
