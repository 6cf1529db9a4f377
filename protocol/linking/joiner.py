"""The joining side of a link (PROTOCOL.md §14.6): the new device's
machine for one attempt, built from the parsed link string."""

from __future__ import annotations

import hmac
from collections.abc import Sequence
from enum import Enum

from protocol.core import crypto
from protocol.core.errors import (
    BadNameError,
    InvalidEventError,
    InvalidInput,
    SchemaError,
    UsageError,
    WrongNetworkError,
)
from protocol.core.keys import DeviceKeys
from protocol.core.machine import Hangup, Misbehaved, Now, Send
from protocol.core.names import check_name
from protocol.core.params import NetworkParams
from protocol.linking.reports import (
    AccountInfo,
    ConfirmRequired,
    Joined,
    JoinFailed,
    LinkOutput,
    _accept_mac,
    _transcript,
    confirmation_code,
)
from protocol.linking.wire import (
    ANSWER_TIMEOUT_MS,
    APPROVAL_TIMEOUT_MS,
    CLOCK_SKEW_MS,
    D_LINK_JOIN,
    D_LINK_TRANSCRIPT,
    AcceptFrame,
    ApprovedFrame,
    ConfirmFrame,
    DeviceKnownError,
    DoneFrame,
    ErrorFrame,
    JoinFrame,
    LinkDeclinedError,
    LinkError,
    LinkExpiredError,
    LinkMacError,
    LinkOffer,
    LinkTimeoutError,
    UnexpectedFrameError,
    WrongPeerError,
    _keyed,
    _refuse,
    decode_frame,
    encode_frame,
    error_from_code,
    joiner_bound_max_bytes,
)
from protocol.log.authoring import introduce
from protocol.log.events import EventKind
from protocol.log.ledger import IngestStatus, Ledger
from protocol.log.state import DeviceStatus

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
