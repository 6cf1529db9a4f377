"""Linking a new device to an account: the sans-I/O handshake (PROTOCOL.md §14).

Two machines, one per side of one libp2p stream ``/smu/link/1`` (frames are
length-prefixed as in §11.1; the link string, the frames and the typed
refusals are in ``linking.wire`` and re-exported here):

* ``Approver`` — on a device already active in the account, one per link
  offer.  It owns the link secret, the expiry and the failure counter.
  ``linking.offers.Offers`` holds a node's approvers and routes streams to
  them.
* ``Joiner`` — on the new device, built from the parsed link string.

Both follow the machine contract (``core.machine``, §18).  Neither does I/O,
reads a clock or draws randomness: the caller passes ``Now`` to every entry
point, the random link id and secret (bytes from the OS), and the libp2p peer
ids that Noise authenticated.  Every entry point returns a list of outputs
(``LinkOutput``), in the order to carry them out: ``Send(peer, frame)`` a
frame on the stream to that peer, ``Hangup(peer)`` close that stream, and the
events (frozen dataclasses) to show.  Remote input never raises: the approver
answers a refused frame with ``Send`` of ``error_frame(exc)``, ``Misbehaved``
and ``Hangup``; the joiner reports ``JoinFailed`` (with ``Misbehaved`` unless
the approver itself sent ERROR) and ``Hangup``.  Local misuse still raises
(``UsageError``, or the typed ``LinkError`` where one says why).  Each
machine has the timer pair ``next_deadline()`` (monotonic seconds) and
``tick(now)``.

Approver (``smu device link`` / ``pending`` / ``approve`` / ``reject``)::

    ap = Approver(params, account_id, peer_id=my_peer, addrs=my_addrs,
                  link_id=os.urandom(8), secret=os.urandom(16), now=now)
    print(ap.offer.to_text(), ap.offer.to_uri())   # the QR shows to_uri().upper()
    # first frame of a new stream: Offers.route(frame, peer, now) finds ap
    outs = ap.receive(frame, remote_peer=peer, now=now, ledger=ledger)
    # Send -> write to the stream, Hangup -> close it; ApprovalRequested:
    # ask "approve device 'laptop' <fp>?"
    approval = ap.approve(my_keys, ledger, timestamp_ms=now.wall_ms, now=now)
    ledger.ingest(approval.event.raw)   # persist, then gossip; then approval.outputs
    ap.reject(now) / ap.connection_lost(peer, now) / ap.tick(now) at ap.next_deadline()

Joiner (``smu device join LINK [--name NAME]``)::

    offer = LinkOffer.parse(text)
    jn = Joiner(params, offer, new_keys, name, own_peer=my_peer,
                remote_peer=peer_dialled, now=now)
    outs = jn.start(now)          # [Send(JOIN)]
    outs = jn.receive(frame, now) # [ConfirmRequired(account, code)]: ask the user
    outs = jn.confirm(now)        # or jn.decline(now)
    outs = jn.receive(frame, now) # [Joined(account, events, ...), Send(DONE), Hangup]:
                                  # ingest the events before sending DONE
    jn.tick(now) at jn.next_deadline()  # [JoinFailed(LinkTimeoutError), Hangup]

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
from protocol.core.machine import Hangup, Misbehaved, Now, Send
from protocol.core.names import check_name
from protocol.core.params import NetworkParams
from protocol.linking.wire import (
    ANSWER_TIMEOUT_MS,
    APPROVAL_TIMEOUT_MS,
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
    LinkTimeoutError,
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


class _TooLong(Exception):
    """The account has too many events to link (a limit of this version)."""


def _account_events(ledger: Ledger, account_id: bytes) -> list[bytes]:
    # An AccountLog's events are in arrival order, which is parents first.
    events = [e.raw for e in ledger.log(account_id).events]
    if len(events) >= MAX_LINK_EVENTS:
        raise UsageError(f"accounts of {MAX_LINK_EVENTS} events or more cannot be linked yet")
    return events


class Approver:
    """One link offer on an active device.  Not thread-safe; one per offer.

    Its deadlines are by the wall clock (the offer's expiry travels in the
    link string); ``next_deadline`` turns them into monotonic time through
    the last ``Now`` an entry point was given.
    """

    def __init__(
        self,
        params: NetworkParams,
        account_id: bytes,
        *,
        peer_id: str,
        addrs: Sequence[str],
        link_id: bytes,
        secret: bytes,
        now: Now,
        ttl_ms: int = LINK_TTL_MS,
    ) -> None:
        if len(link_id) != LINK_ID_BYTES or len(secret) != LINK_SECRET_BYTES:
            raise UsageError(f"a link id is {LINK_ID_BYTES} and a secret {LINK_SECRET_BYTES} bytes")
        self.params = params
        self.offer = LinkOffer(
            params.network_id,
            account_id,
            link_id,
            secret,
            peer_id,
            tuple(addrs),
            now.wall_ms + ttl_ms,
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
        self._now = now

    def __repr__(self) -> str:
        return f"Approver({self.offer.link_id.hex()}, {self.state.name})"

    def _deadline_ms(self) -> int | None:
        """The wall-clock time at which the offer expires in this state."""
        if self.state is ApproverState.OFFERED:
            return self.offer.expires_at_ms
        if self.state is ApproverState.PENDING_APPROVAL:
            return self._claimed_at + APPROVAL_WINDOW_MS
        return None

    def next_deadline(self) -> float | None:
        """Monotonic seconds at which ``tick`` has something to do, or None."""
        deadline = self._deadline_ms()
        return None if deadline is None else self._now.mono_at_wall(deadline)

    def _advance(self, now: Now) -> bool:
        """Expire if the deadline has passed; True if this call expired it."""
        self._now = now
        deadline = self._deadline_ms()
        if deadline is not None and now.wall_ms >= deadline:
            self.state = ApproverState.EXPIRED
            return True
        return False

    def tick(self, now: Now) -> list[LinkOutput]:
        """Expire the offer or the pending request at its deadline; a waiting
        joiner hears why."""
        req = self.request if self.state is ApproverState.PENDING_APPROVAL else None
        if not self._advance(now):
            return []
        if req is None:
            return [LinkExpired()]
        peer = req.joiner_peer
        expired = encode_frame(ErrorFrame(LinkExpiredError.code))
        return [Send(peer, expired), Hangup(peer), LinkExpired()]

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

    def receive(
        self, data: bytes, *, remote_peer: str, now: Now, ledger: Ledger
    ) -> list[LinkOutput]:
        """A frame from ``remote_peer`` (Noise-authenticated by the adapter).

        Never raises for what the peer sent: a refusal is ``Send`` of the
        ERROR frame, ``Misbehaved`` and ``Hangup``.
        """
        self._now = now
        try:
            return self._receive(data, remote_peer, now, ledger)
        except InvalidInput as exc:
            return refusal(remote_peer, exc)
        except _TooLong:
            # Not the joiner's fault: tell it the link failed, and nothing else.
            return [Send(remote_peer, error_frame(_refuse(LinkError))), Hangup(remote_peer)]

    def _receive(self, data: bytes, remote_peer: str, now: Now, ledger: Ledger) -> list[LinkOutput]:
        frame = decode_frame(data, self.params, APPROVER_BOUND_MAX_BYTES)
        if isinstance(frame, JoinFrame):
            return self._join(frame, remote_peer, now, ledger)
        req = self.request
        if req is None or remote_peer != req.joiner_peer:
            raise _refuse(UnexpectedFrameError, "no join request from this peer")
        if self._advance(now) or self.state is ApproverState.EXPIRED:
            raise _refuse(LinkExpiredError)
        match frame, self.state:
            case ConfirmFrame(), ApproverState.PENDING_APPROVAL if not self.joiner_confirmed:
                self.joiner_confirmed = True
                return [ApprovalRequested(req)]
            case ErrorFrame(code), ApproverState.PENDING_APPROVAL:
                self.state = ApproverState.REJECTED
                return [JoinAborted(code), Hangup(remote_peer)]
            case ErrorFrame(code), ApproverState.APPROVED:
                # The event is out already; the user may want to revoke it.
                return [JoinAborted(code), Hangup(remote_peer)]
            case DoneFrame(), ApproverState.APPROVED:
                self.state = ApproverState.USED
                done = LinkCompleted(req.sign_public, req.enc_public, remote_peer)
                return [done, Hangup(remote_peer)]
        raise _refuse(UnexpectedFrameError, f"{type(frame).__name__} in {self.state.name}")

    def _join(
        self, frame: JoinFrame, remote_peer: str, now: Now, ledger: Ledger
    ) -> list[LinkOutput]:
        offer = self.offer
        if not hmac.compare_digest(frame.link_id, offer.link_id):
            raise _refuse(UnknownLinkError)
        if self.state is ApproverState.OFFERED:
            # A pending request's expiry is the claiming joiner's news, for
            # ``tick`` to send on its stream, not this stranger's.
            self._advance(now)
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
        try:
            events = _account_events(ledger, offer.account_id)
        except UsageError as exc:
            raise _TooLong from exc
        th = crypto.hash32(D_LINK_TRANSCRIPT, transcript)
        self.state = ApproverState.PENDING_APPROVAL
        self._claimed_at = now.wall_ms
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
        return [Send(remote_peer, encode_frame(accept)), JoinRequested(self.request)]

    def approve(self, keys: DeviceKeys, ledger: Ledger, *, timestamp_ms: int, now: Now) -> Approval:
        """Build the add-device event on the account's current heads.

        Needs the joiner's confirmation first (``ApprovalRequested``).  The
        caller ingests ``event`` into its Ledger before carrying out
        ``outputs``.  Local misuse raises: ``UsageError``, ``NotActiveError``,
        and ``LinkExpiredError`` / ``DeviceKnownError`` as the typed reason.
        """
        self._advance(now)
        if self.state is ApproverState.EXPIRED:
            raise _refuse(LinkExpiredError)
        if self.state is not ApproverState.PENDING_APPROVAL or self._intro is None:
            raise UsageError(f"nothing to approve: the offer is {self.state.value}")
        if not self.joiner_confirmed:
            raise UsageError("the new device's user has not confirmed yet")
        req = self.request
        assert req is not None  # set with _intro
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
        approved = encode_frame(ApprovedFrame(tuple(events)))
        return Approval(event, (Send(req.joiner_peer, approved),))

    def reject(self, now: Now) -> list[LinkOutput]:
        """The local user said no, or cancelled the offer."""
        req = self.request
        if self._advance(now):
            raise _refuse(LinkExpiredError)
        if self.state is ApproverState.OFFERED:
            self.state = ApproverState.REJECTED
            return []
        if self.state is ApproverState.PENDING_APPROVAL and req is not None:
            self.state = ApproverState.REJECTED
            peer = req.joiner_peer
            return [Send(peer, encode_frame(ErrorFrame(LinkRejectedError.code))), Hangup(peer)]
        raise UsageError(f"nothing to reject: the offer is {self.state.value}")

    def connection_lost(self, remote_peer: str, now: Now) -> list[LinkOutput]:
        """The claiming joiner's stream closed: nobody would get the event."""
        self._now = now
        req = self.request
        if (
            req is not None
            and req.joiner_peer == remote_peer
            and self.state is ApproverState.PENDING_APPROVAL
        ):
            self.state = ApproverState.REJECTED
            return [JoinAborted(LinkError.code)]
        return []


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


class _Declined(Exception):
    """The approver's ERROR frame: its decision, not misbehaviour."""

    def __init__(self, error: LinkError) -> None:
        super().__init__(str(error))
        self.error = error


class Joiner:
    """The new device's side of one linking attempt.

    Its timers are its own, by the monotonic clock: the approver must answer
    the JOIN within ``ANSWER_TIMEOUT_MS`` and send APPROVED within
    ``APPROVAL_TIMEOUT_MS`` of ``confirm``, else ``tick`` ends the attempt.
    """

    def __init__(
        self,
        params: NetworkParams,
        offer: LinkOffer,
        device: DeviceKeys,
        device_name: str,
        *,
        own_peer: str,
        remote_peer: str,
        now: Now,
    ) -> None:
        if offer.network_id != params.network_id:
            raise WrongNetworkError(
                f"the link is for network {offer.network_id!r}, not {params.network_id!r}"
            )
        if now.wall_ms > offer.expires_at_ms + CLOCK_SKEW_MS:
            raise _refuse(LinkExpiredError)
        if remote_peer != offer.peer_id:
            raise _refuse(WrongPeerError)
        try:
            check_name(device_name, params.max_name_bytes)
        except BadNameError as exc:
            raise UsageError(f"bad device name: {exc}") from exc
        self.params = params
        self.offer = offer
        self.approver_peer = remote_peer
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
        self._deadline: float | None = None

    def __repr__(self) -> str:
        return f"Joiner({self.offer.link_id.hex()}, {self.state.name})"

    def next_deadline(self) -> float | None:
        """Monotonic seconds at which the approver's answer is overdue."""
        return self._deadline

    def tick(self, now: Now) -> list[LinkOutput]:
        if self._deadline is None or now.mono < self._deadline:
            return []
        return self._failed(_refuse(LinkTimeoutError), misbehaved=False)

    def _failed(self, exc: InvalidInput, *, misbehaved: bool) -> list[LinkOutput]:
        self.state = JoinerState.FAILED
        self._deadline = None
        peer = self.approver_peer
        if misbehaved:
            return [JoinFailed(exc), Misbehaved(peer, exc), Hangup(peer)]
        return [JoinFailed(exc), Hangup(peer)]

    def start(self, now: Now) -> list[LinkOutput]:
        if self.state is not JoinerState.NEW:
            raise UsageError("already started")
        self.state = JoinerState.REQUESTED
        self._deadline = now.mono + ANSWER_TIMEOUT_MS / 1000
        frame = JoinFrame(self.offer.link_id, self.intro, self._join_mac)
        return [Send(self.approver_peer, encode_frame(frame))]

    def receive(self, data: bytes, now: Now) -> list[LinkOutput]:
        """A frame from the approver.  Never raises for what it sent: any
        refused frame, and any ERROR frame, ends the attempt (``JoinFailed``)."""
        try:
            return self._receive(data)
        except _Declined as declined:
            return self._failed(declined.error, misbehaved=False)
        except InvalidInput as exc:
            return self._failed(exc, misbehaved=True)

    def _receive(self, data: bytes) -> list[LinkOutput]:
        frame = decode_frame(data, self.params, joiner_bound_max_bytes(self.params))
        if isinstance(frame, ErrorFrame):
            raise _Declined(error_from_code(frame.code))
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
            self._deadline = None  # the user takes the time they need
            return [ConfirmRequired(self.account, self.code)]
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
            self._deadline = None
            peer = self.approver_peer
            return [
                Joined(self.account, frame.events, adds[0].id),
                Send(peer, encode_frame(DoneFrame())),
                Hangup(peer),
            ]
        raise _refuse(UnexpectedFrameError, f"{type(frame).__name__} in {self.state.name}")

    def confirm(self, now: Now) -> list[LinkOutput]:
        """The user checked the account and the code and said yes."""
        if self.state is not JoinerState.CONFIRMING:
            raise UsageError(f"nothing to confirm in state {self.state.value}")
        self.state = JoinerState.WAITING_APPROVAL
        self._deadline = now.mono + APPROVAL_TIMEOUT_MS / 1000
        return [Send(self.approver_peer, encode_frame(ConfirmFrame()))]

    def decline(self, now: Now) -> list[LinkOutput]:
        """The user said no (wrong account, wrong code) or cancelled."""
        if self.state not in (
            JoinerState.REQUESTED,
            JoinerState.CONFIRMING,
            JoinerState.WAITING_APPROVAL,
        ):
            raise UsageError(f"nothing to decline in state {self.state.value}")
        self.state = JoinerState.DECLINED
        self._deadline = None
        peer = self.approver_peer
        return [Send(peer, encode_frame(ErrorFrame(LinkDeclinedError.code))), Hangup(peer)]


__all__ = [
    "ANSWER_TIMEOUT_MS",
    "APPROVAL_TIMEOUT_MS",
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
    "Hangup",
    "JoinAborted",
    "JoinFailed",
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
    "LinkOutput",
    "LinkRejectedError",
    "LinkTimeoutError",
    "LinkUsedError",
    "Misbehaved",
    "Now",
    "Send",
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
    "refusal",
]
