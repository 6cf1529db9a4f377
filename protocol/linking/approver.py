"""The approving side of a link (PROTOCOL.md §14.5): one machine per
link offer, on a device already active in the account."""

from __future__ import annotations

import hmac
from collections.abc import Sequence
from enum import Enum

from protocol.core import crypto
from protocol.core.errors import (
    InvalidInput,
    NotActiveError,
    UsageError,
)
from protocol.core.keys import DeviceKeys, fingerprint
from protocol.core.machine import Hangup, Now, Send
from protocol.core.params import NetworkParams
from protocol.linking.reports import (
    Approval,
    ApprovalRequested,
    JoinAborted,
    JoinRequest,
    JoinRequested,
    LinkCompleted,
    LinkExpired,
    LinkOutput,
    _accept_mac,
    _check_pop,
    _transcript,
    confirmation_code,
    refusal,
)
from protocol.linking.wire import (
    APPROVAL_WINDOW_MS,
    APPROVER_BOUND_MAX_BYTES,
    D_LINK_JOIN,
    D_LINK_TRANSCRIPT,
    LINK_ID_BYTES,
    LINK_SECRET_BYTES,
    LINK_TTL_MS,
    MAX_FAILURES,
    MAX_LINK_EVENTS,
    AcceptFrame,
    ApprovedFrame,
    ConfirmFrame,
    DeviceKnownError,
    DoneFrame,
    ErrorFrame,
    JoinFrame,
    LinkBurntError,
    LinkError,
    LinkExpiredError,
    LinkMacError,
    LinkOffer,
    LinkRejectedError,
    LinkUsedError,
    UnexpectedFrameError,
    UnknownLinkError,
    _keyed,
    _refuse,
    decode_frame,
    encode_frame,
    error_frame,
)
from protocol.log.authoring import add_device
from protocol.log.events import DeviceIntro
from protocol.log.ledger import Ledger

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
