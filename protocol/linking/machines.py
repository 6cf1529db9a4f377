"""Linking a new device to an account: the sans-I/O handshake (PROTOCOL.md §14).

Two machines, one per side of one libp2p stream ``/smu/link/1`` (frames are
length-prefixed as in §11.1; the link string, the frames and the typed
refusals are in ``linking_wire`` and re-exported here):

* ``Approver`` — on a device already active in the account, one per link
  offer.  It owns the link secret, the expiry and the failure counter.
* ``Joiner`` — on the new device, built from the parsed link string.

Neither does I/O, reads a clock or draws randomness: the caller passes the
time (``now_ms``, milliseconds since the Unix epoch, like event
timestamps), the random link id and secret (bytes from the OS), and the
libp2p peer ids that Noise authenticated.  Every method returns a ``Step``:
the frames to write to the stream, in order, and the events to show (frozen
dataclasses).  Refusals are exceptions, all ``LinkError`` (an
``InvalidInput``) or another ``InvalidInput`` for malformed frames; when a
machine raises one, the adapter writes ``error_frame(exc)`` to the peer and
closes the stream.  Each transition is reported once: by the ``Step`` or by
the exception.

Approver (``smu device link`` / ``pending`` / ``approve`` / ``reject``)::

    ap = Approver(params, account_id, peer_id=my_peer, addrs=my_addrs,
                  link_id=os.urandom(8), secret=os.urandom(16), now_ms=now)
    print(ap.offer.to_text(), ap.offer.to_uri())   # the QR shows to_uri().upper()
    # first frame of a new stream: route by link_id_of(frame) to its Approver
    step = ap.receive(frame, remote_peer=peer, now_ms=now, ledger=ledger)
    # ApprovalRequested in step.events: ask "approve device 'laptop' <fp>?"
    approval = ap.approve(my_keys, ledger, timestamp_ms=now, now_ms=now)
    ledger.ingest(approval.event.raw)     # persist, then gossip; send approval.step
    ap.reject(now) / ap.tick(now) at ap.deadline_ms / ap.connection_lost(peer)

Joiner (``smu device join LINK [--name NAME]``)::

    offer = LinkOffer.parse(text)
    jn = Joiner(params, offer, new_keys, name, own_peer=my_peer,
                remote_peer=peer_dialled, now_ms=now)
    send(jn.start())
    step = jn.receive(frame)    # ConfirmRequired(account, code): ask the user
    send(jn.confirm())          # or jn.decline()
    step = jn.receive(frame)    # Joined(account, events, ...): ingest events

History: the approver's ``LinkCompleted`` event is the hook where the node
starts sending history, as ``messaging.HistoryBundle`` contents wrapped for
the new device only (§14.9).
"""

from __future__ import annotations

import hmac
from collections.abc import Sequence
from dataclasses import dataclass
from enum import Enum

from protocol.core import crypto
from protocol.core.canonical import encode
from protocol.core.errors import (
    BadNameError,
    InvalidEventError,
    InvalidInput,
    NotActiveError,
    SchemaError,
    UsageError,
    WrongNetworkError,
)
from protocol.core.keys import DeviceKeys, fingerprint, handle
from protocol.core.names import check_name
from protocol.core.params import NetworkParams
from protocol.linking.wire import (
    APPROVAL_WINDOW_MS,
    APPROVER_BOUND_MAX_BYTES,
    CHECKSUM_BYTES,
    CLOCK_SKEW_MS,
    CODE_DIGITS,
    D_LINK_ACCEPT,
    D_LINK_CHECKSUM,
    D_LINK_CODE,
    D_LINK_JOIN,
    D_LINK_TRANSCRIPT,
    FRAME_VERSION,
    LINK_ID_BYTES,
    LINK_SECRET_BYTES,
    LINK_TTL_MS,
    LINK_VERSION,
    MAC_BYTES,
    MAX_ADDR_BYTES,
    MAX_ADDRS,
    MAX_ERROR_CODE_BYTES,
    MAX_FAILURES,
    MAX_LINK_CHARS,
    MAX_LINK_EVENTS,
    MAX_NETWORK_ID_BYTES,
    MAX_PEER_ID_BYTES,
    PROTOCOL_ID,
    TEXT_PREFIX,
    URI_PREFIX,
    AcceptFrame,
    ApprovedFrame,
    ConfirmFrame,
    DeviceKnownError,
    DoneFrame,
    ErrorFrame,
    Frame,
    FrameType,
    JoinFrame,
    LinkBurntError,
    LinkDeclinedError,
    LinkError,
    LinkExpiredError,
    LinkMacError,
    LinkOffer,
    LinkRejectedError,
    LinkUsedError,
    UnexpectedFrameError,
    UnknownLinkError,
    WrongPeerError,
    _keyed,
    _refuse,
    decode_frame,
    encode_frame,
    error_frame,
    error_from_code,
    joiner_bound_max_bytes,
    link_id_of,
)
from protocol.log.authoring import add_device, introduce
from protocol.log.events import DeviceIntro, Event, EventKind, pop_message
from protocol.log.ledger import IngestStatus, Ledger
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
    pass


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
    """Joiner: done.  Ingest ``events`` (parents first) into the node's Ledger."""

    account: AccountInfo
    events: tuple[bytes, ...]
    add_device_id: bytes


LinkEvent = (
    JoinRequested
    | ApprovalRequested
    | JoinAborted
    | LinkExpired
    | LinkCompleted
    | ConfirmRequired
    | Joined
)


@dataclass(frozen=True, slots=True)
class Step:
    frames: tuple[bytes, ...] = ()
    events: tuple[LinkEvent, ...] = ()


@dataclass(frozen=True, slots=True)
class Approval:
    #: the signed add-device event: ingest it into the Ledger, then gossip it
    event: Event
    #: the APPROVED frame for the joiner
    step: Step


# --------------------------------------------------------------------------
# The approver (§14.5)


class ApproverState(Enum):
    OFFERED = "offered"
    PENDING_APPROVAL = "pending_approval"
    APPROVED = "approved"
    REJECTED = "rejected"
    BURNT = "burnt"
    EXPIRED = "expired"
    USED = "used"


_CLAIMED = frozenset(
    {
        ApproverState.PENDING_APPROVAL,
        ApproverState.APPROVED,
        ApproverState.REJECTED,
        ApproverState.USED,
    }
)


def _account_events(ledger: Ledger, account_id: bytes) -> list[bytes]:
    # An AccountLog's events are in arrival order, which is parents first.
    events = [e.raw for e in ledger.log(account_id).events]
    if len(events) >= MAX_LINK_EVENTS:
        raise UsageError(f"accounts of {MAX_LINK_EVENTS} events or more cannot be linked yet")
    return events


class Approver:
    """One link offer on an active device.  Not thread-safe; one per offer."""

    def __init__(
        self,
        params: NetworkParams,
        account_id: bytes,
        *,
        peer_id: str,
        addrs: Sequence[str],
        link_id: bytes,
        secret: bytes,
        now_ms: int,
        ttl_ms: int = LINK_TTL_MS,
    ) -> None:
        if len(link_id) != LINK_ID_BYTES or len(secret) != LINK_SECRET_BYTES:
            raise UsageError(f"a link id is {LINK_ID_BYTES} and a secret {LINK_SECRET_BYTES} bytes")
        self.params = params
        self.offer = LinkOffer(
            params.network_id, account_id, link_id, secret, peer_id, tuple(addrs), now_ms + ttl_ms
        )
        try:  # what we hand out must parse
            LinkOffer.parse(self.offer.to_text())
        except InvalidInput as exc:
            raise UsageError(f"cannot make a link: {exc}") from exc
        self.state = ApproverState.OFFERED
        self.failures = 0
        #: set once a valid JOIN claimed the offer
        self.request: JoinRequest | None = None
        self.joiner_confirmed = False
        self._intro: DeviceIntro | None = None
        self._claimed_at = 0

    def __repr__(self) -> str:
        return f"Approver({self.offer.link_id.hex()}, {self.state.name})"

    @property
    def deadline_ms(self) -> int | None:
        """When ``tick`` next has something to do."""
        if self.state is ApproverState.OFFERED:
            return self.offer.expires_at_ms
        if self.state is ApproverState.PENDING_APPROVAL:
            return self._claimed_at + APPROVAL_WINDOW_MS
        return None

    def _advance(self, now_ms: int) -> bool:
        """Expire if the deadline has passed; True if this call expired it."""
        deadline = self.deadline_ms
        if deadline is not None and now_ms >= deadline:
            self.state = ApproverState.EXPIRED
            return True
        return False

    def tick(self, now_ms: int) -> Step:
        was_pending = self.state is ApproverState.PENDING_APPROVAL
        if not self._advance(now_ms):
            return Step()
        frames = (encode_frame(ErrorFrame(LinkExpiredError.code)),) if was_pending else ()
        return Step(frames, (LinkExpired(),))

    def _check_open(self) -> None:
        if self.state is ApproverState.EXPIRED:
            raise _refuse(LinkExpiredError)
        if self.state is ApproverState.BURNT:
            raise _refuse(LinkBurntError)
        if self.state in _CLAIMED:
            raise _refuse(LinkUsedError)

    def _fail(self, exc: InvalidInput) -> LinkError | InvalidInput:
        """Count a refused attempt; the third burns the offer (§14.5)."""
        self.failures += 1
        if self.failures >= MAX_FAILURES:
            self.state = ApproverState.BURNT
            return _refuse(LinkBurntError, str(exc))
        return exc

    def receive(self, data: bytes, *, remote_peer: str, now_ms: int, ledger: Ledger) -> Step:
        """A frame from ``remote_peer`` (Noise-authenticated by the adapter)."""
        frame = decode_frame(data, self.params, APPROVER_BOUND_MAX_BYTES)
        if isinstance(frame, JoinFrame):
            return self._join(frame, remote_peer, now_ms, ledger)
        req = self.request
        if req is None or remote_peer != req.joiner_peer:
            raise _refuse(UnexpectedFrameError, "no join request from this peer")
        if self._advance(now_ms) or self.state is ApproverState.EXPIRED:
            raise _refuse(LinkExpiredError)
        match frame, self.state:
            case ConfirmFrame(), ApproverState.PENDING_APPROVAL if not self.joiner_confirmed:
                self.joiner_confirmed = True
                return Step(events=(ApprovalRequested(req),))
            case ErrorFrame(code), ApproverState.PENDING_APPROVAL:
                self.state = ApproverState.REJECTED
                return Step(events=(JoinAborted(code),))
            case ErrorFrame(code), ApproverState.APPROVED:
                # The event is out already; the user may want to revoke it.
                return Step(events=(JoinAborted(code),))
            case DoneFrame(), ApproverState.APPROVED:
                self.state = ApproverState.USED
                return Step(events=(LinkCompleted(req.sign_public, req.enc_public, remote_peer),))
        raise _refuse(UnexpectedFrameError, f"{type(frame).__name__} in {self.state.name}")

    def _join(self, frame: JoinFrame, remote_peer: str, now_ms: int, ledger: Ledger) -> Step:
        offer = self.offer
        if not hmac.compare_digest(frame.link_id, offer.link_id):
            raise _refuse(UnknownLinkError)
        if self.state is ApproverState.OFFERED:
            # A pending request's expiry is the claiming joiner's news, for
            # ``tick`` to send on its stream, not this stranger's.
            self._advance(now_ms)
        self._check_open()
        intro = frame.intro
        transcript = _transcript(
            offer.network_id, offer.account_id, offer.peer_id, remote_peer, offer.link_id, intro
        )
        if not hmac.compare_digest(_keyed(offer.secret, D_LINK_JOIN, transcript), frame.mac):
            raise self._fail(_refuse(LinkMacError))
        try:
            _check_pop(self.params, offer.account_id, intro)
            if ledger.state(offer.account_id).device(intro.sign_public) is not None:
                raise _refuse(DeviceKnownError)
        except InvalidInput as exc:
            burnt = self._fail(exc)
            if burnt is exc:
                raise
            raise burnt from exc
        events = _account_events(ledger, offer.account_id)
        th = crypto.hash32(D_LINK_TRANSCRIPT, transcript)
        self.state = ApproverState.PENDING_APPROVAL
        self._claimed_at = now_ms
        self._intro = intro
        self.request = JoinRequest(
            device_name=intro.name,
            sign_public=intro.sign_public,
            enc_public=intro.enc_public,
            fingerprint=fingerprint(intro.sign_public),
            code=confirmation_code(offer.secret, th, intro.sign_public),
            joiner_peer=remote_peer,
        )
        accept = AcceptFrame(tuple(events), _accept_mac(offer.secret, th, events))
        return Step((encode_frame(accept),), (JoinRequested(self.request),))

    def approve(
        self, keys: DeviceKeys, ledger: Ledger, *, timestamp_ms: int, now_ms: int
    ) -> Approval:
        """Build the add-device event on the account's current heads.

        Needs the joiner's confirmation first (``ApprovalRequested``).  The
        caller ingests ``event`` into its Ledger before sending the frame.
        """
        self._advance(now_ms)
        if self.state is ApproverState.EXPIRED:
            raise _refuse(LinkExpiredError)
        if self.state is not ApproverState.PENDING_APPROVAL or self._intro is None:
            raise UsageError(f"nothing to approve: the offer is {self.state.value}")
        if not self.joiner_confirmed:
            raise UsageError("the new device's user has not confirmed yet")
        account = self.offer.account_id
        state = ledger.state(account)
        if keys.sign_public not in state.active_keys:
            raise NotActiveError("this device is not active in the account")
        if state.device(self._intro.sign_public) is not None:
            self.state = ApproverState.REJECTED
            raise _refuse(DeviceKnownError)
        event = add_device(
            self.params, account, state.heads, keys, self._intro, timestamp=timestamp_ms
        )
        events = [*_account_events(ledger, account), event.raw]
        self.state = ApproverState.APPROVED
        return Approval(event, Step((encode_frame(ApprovedFrame(tuple(events))),)))

    def reject(self, now_ms: int) -> Step:
        """The local user said no, or cancelled the offer."""
        if self._advance(now_ms):
            raise _refuse(LinkExpiredError)
        if self.state is ApproverState.OFFERED:
            self.state = ApproverState.REJECTED
            return Step()
        if self.state is ApproverState.PENDING_APPROVAL:
            self.state = ApproverState.REJECTED
            return Step((encode_frame(ErrorFrame(LinkRejectedError.code)),))
        raise UsageError(f"nothing to reject: the offer is {self.state.value}")

    def connection_lost(self, remote_peer: str) -> Step:
        """The claiming joiner's stream closed: nobody would get the event."""
        req = self.request
        if (
            req is not None
            and req.joiner_peer == remote_peer
            and self.state is ApproverState.PENDING_APPROVAL
        ):
            self.state = ApproverState.REJECTED
            return Step(events=(JoinAborted(LinkError.code),))
        return Step()


# --------------------------------------------------------------------------
# The joiner (§14.6)


class JoinerState(Enum):
    NEW = "new"
    REQUESTED = "requested"
    CONFIRMING = "confirming"
    WAITING_APPROVAL = "waiting_approval"
    JOINED = "joined"
    DECLINED = "declined"
    FAILED = "failed"


def _load_account(params: NetworkParams, account_id: bytes, events: Sequence[bytes]) -> Ledger:
    """Verify events as the account's, parents first, in a scratch Ledger."""
    ledger = Ledger(params)
    for raw in events:
        if ledger.ingest(raw).status is not IngestStatus.ACCEPTED:
            raise SchemaError("events must be unique and parents first")
    if list(ledger.accounts) != [account_id]:
        raise SchemaError("the events are not those of the link's account")
    return ledger


class Joiner:
    """The new device's side of one linking attempt."""

    def __init__(
        self,
        params: NetworkParams,
        offer: LinkOffer,
        device: DeviceKeys,
        device_name: str,
        *,
        own_peer: str,
        remote_peer: str,
        now_ms: int,
    ) -> None:
        if offer.network_id != params.network_id:
            raise WrongNetworkError(
                f"the link is for network {offer.network_id!r}, not {params.network_id!r}"
            )
        if now_ms > offer.expires_at_ms + CLOCK_SKEW_MS:
            raise _refuse(LinkExpiredError)
        if remote_peer != offer.peer_id:
            raise _refuse(WrongPeerError)
        try:
            check_name(device_name, params.max_name_bytes)
        except BadNameError as exc:
            raise UsageError(f"bad device name: {exc}") from exc
        self.params = params
        self.offer = offer
        self.intro = introduce(params, offer.account_id, device, device_name)
        transcript = _transcript(
            params.network_id, offer.account_id, offer.peer_id, own_peer, offer.link_id, self.intro
        )
        self._join_mac = _keyed(offer.secret, D_LINK_JOIN, transcript)
        self._th = crypto.hash32(D_LINK_TRANSCRIPT, transcript)
        #: shown with the account once the approver has proved the secret
        self.code = confirmation_code(offer.secret, self._th, device.sign_public)
        self.state = JoinerState.NEW
        self.account: AccountInfo | None = None

    def __repr__(self) -> str:
        return f"Joiner({self.offer.link_id.hex()}, {self.state.name})"

    def start(self) -> Step:
        if self.state is not JoinerState.NEW:
            raise UsageError("already started")
        self.state = JoinerState.REQUESTED
        frame = JoinFrame(self.offer.link_id, self.intro, self._join_mac)
        return Step((encode_frame(frame),))

    def receive(self, data: bytes) -> Step:
        """A frame from the approver; any ``InvalidInput`` ends the attempt."""
        try:
            return self._receive(data)
        except InvalidInput:
            self.state = JoinerState.FAILED
            raise

    def _receive(self, data: bytes) -> Step:
        frame = decode_frame(data, self.params, joiner_bound_max_bytes(self.params))
        if isinstance(frame, ErrorFrame):
            raise error_from_code(frame.code)
        account = self.offer.account_id
        if isinstance(frame, AcceptFrame) and self.state is JoinerState.REQUESTED:
            expected = _accept_mac(self.offer.secret, self._th, frame.events)
            if not hmac.compare_digest(expected, frame.mac):
                raise _refuse(LinkMacError, "the other device does not hold the link's secret")
            state = _load_account(self.params, account, frame.events).state(account)
            if state.device(self.intro.sign_public) is not None:
                raise _refuse(DeviceKnownError)
            self.account = AccountInfo.from_state(state)
            self.state = JoinerState.CONFIRMING
            return Step(events=(ConfirmRequired(self.account, self.code),))
        if isinstance(frame, ApprovedFrame) and self.state is JoinerState.WAITING_APPROVAL:
            ledger = _load_account(self.params, account, frame.events)
            adds = [
                e
                for e in ledger.log(account).events
                if e.kind is EventKind.ADD_DEVICE and e.introduced_device == self.intro
            ]
            state = ledger.state(account)
            record = state.device(self.intro.sign_public)
            if not adds or record is None or record.status is not DeviceStatus.ACTIVE:
                raise InvalidEventError("the approved events do not make this device active")
            self.account = AccountInfo.from_state(state)
            self.state = JoinerState.JOINED
            return Step(
                (encode_frame(DoneFrame()),),
                (Joined(self.account, frame.events, adds[0].id),),
            )
        raise _refuse(UnexpectedFrameError, f"{type(frame).__name__} in {self.state.name}")

    def confirm(self) -> Step:
        """The user checked the account and the code and said yes."""
        if self.state is not JoinerState.CONFIRMING:
            raise UsageError(f"nothing to confirm in state {self.state.value}")
        self.state = JoinerState.WAITING_APPROVAL
        return Step((encode_frame(ConfirmFrame()),))

    def decline(self) -> Step:
        """The user said no (wrong account, wrong code) or cancelled."""
        if self.state not in (
            JoinerState.REQUESTED,
            JoinerState.CONFIRMING,
            JoinerState.WAITING_APPROVAL,
        ):
            raise UsageError(f"nothing to decline in state {self.state.value}")
        self.state = JoinerState.DECLINED
        return Step((encode_frame(ErrorFrame(LinkDeclinedError.code)),))


__all__ = [
    "APPROVAL_WINDOW_MS",
    "APPROVER_BOUND_MAX_BYTES",
    "CHECKSUM_BYTES",
    "CLOCK_SKEW_MS",
    "CODE_DIGITS",
    "D_LINK_ACCEPT",
    "D_LINK_CHECKSUM",
    "D_LINK_CODE",
    "D_LINK_JOIN",
    "D_LINK_TRANSCRIPT",
    "FRAME_VERSION",
    "LINK_ID_BYTES",
    "LINK_SECRET_BYTES",
    "LINK_TTL_MS",
    "LINK_VERSION",
    "MAC_BYTES",
    "MAX_ADDRS",
    "MAX_ADDR_BYTES",
    "MAX_ERROR_CODE_BYTES",
    "MAX_FAILURES",
    "MAX_LINK_CHARS",
    "MAX_LINK_EVENTS",
    "MAX_NETWORK_ID_BYTES",
    "MAX_PEER_ID_BYTES",
    "PROTOCOL_ID",
    "TEXT_PREFIX",
    "URI_PREFIX",
    "AcceptFrame",
    "AccountInfo",
    "Approval",
    "ApprovalRequested",
    "ApprovedFrame",
    "Approver",
    "ApproverState",
    "ConfirmFrame",
    "ConfirmRequired",
    "DeviceKnownError",
    "DeviceSummary",
    "DoneFrame",
    "ErrorFrame",
    "Frame",
    "FrameType",
    "JoinAborted",
    "JoinFrame",
    "JoinRequest",
    "JoinRequested",
    "Joined",
    "Joiner",
    "JoinerState",
    "LinkBurntError",
    "LinkCompleted",
    "LinkDeclinedError",
    "LinkError",
    "LinkEvent",
    "LinkExpired",
    "LinkExpiredError",
    "LinkMacError",
    "LinkOffer",
    "LinkRejectedError",
    "LinkUsedError",
    "Step",
    "UnexpectedFrameError",
    "UnknownLinkError",
    "WrongPeerError",
    "confirmation_code",
    "decode_frame",
    "encode_frame",
    "error_frame",
    "error_from_code",
    "joiner_bound_max_bytes",
    "link_id_of",
]
