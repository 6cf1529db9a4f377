"""The per-link channel: one framed, flow-controlled stream per peer link
(PROTOCOL.md §17.3; DESIGN §10).

One ``Channel`` is one end of one ``/smu/channel/1`` stream.  Its user puts
opaque items ``(kind, payload)`` on it and gets the peer's items out, in
order, each exactly once per stream; messages, receipts and mailbox
notifications will travel this way instead of a stream per delivery.

* Both sides send HELLO first: the receive window they grant and the
  largest frame they accept (§17.3.2).
* Items are numbered from 1 in each direction and sent in DATA frames;
  several queued items share a frame (§17.3.3).
* Flow control: the receiver grants a window in bytes of item cost (payload
  plus ``ITEM_COST``); the sender never has more than that unacknowledged.
  The receiver acknowledges an item only once its user says it has been
  processed (``processed``: persisted, say), cumulatively, and coalesced:
  after ``ack_delay``, or at once when half the window waits (§17.3.3).
* Back-pressure: ``offer`` puts an item on a bounded queue, or answers
  ``Refused`` when the queue is full; the caller keeps the item in its own
  outbox and offers it again later (§17.3.4).
* A peer that acknowledges nothing for ``stall_timeout`` while items wait
  for it is closed (STALLED); one that sends invalid input, beyond its
  window or out of sequence is closed (PROTOCOL) and reported as
  ``Misbehaved``; a silent peer is closed after ``idle_timeout`` (TIMEOUT).
  Each side sends PING when it has sent nothing for ``keepalive_interval``
  (§17.3.5).
* On every close, the items the peer has not acknowledged are reported in
  ``Closed``, so the caller can offer them again on a new stream.  The
  channel itself stores nothing (§17.3.6).

The machine contract (``protocol.core.machine``): every entry point takes
one ``Now`` and returns a list of ``Output`` values; remote input never
raises, local misuse raises ``UsageError``; ``next_deadline`` / ``tick``
drive the ack delay, the timeouts and the keepalive.  Only ``Now.mono`` is
read.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from enum import Enum

from protocol.core.errors import (
    ChannelProtocolError,
    FlowControlError,
    InvalidInput,
    UsageError,
)
from protocol.core.machine import Now
from protocol.links.channel_wire import (
    CHANNEL_VERSION,
    MAX_ITEM_BYTES,
    MAX_ITEMS_PER_FRAME,
    MAX_KIND,
    MAX_U32,
    MIN_FRAME_BYTES,
    MIN_WINDOW,
    PROTOCOL_ID,
    AckFrame,
    CloseCode,
    CloseFrame,
    DataFrame,
    Frame,
    HelloFrame,
    PingFrame,
    data_bound,
    decode_frame,
    encode_frame,
    item_cost,
    reason_text,
)

__all__ = [
    "PROTOCOL_ID",
    "Acknowledged",
    "Channel",
    "ChannelConfig",
    "ChannelStats",
    "CloseCode",
    "Closed",
    "Item",
    "Misbehaved",
    "Output",
    "Queued",
    "Received",
    "Refusal",
    "Refused",
    "Send",
    "State",
]


@dataclass(frozen=True, slots=True)
class ChannelConfig:
    """Limits and timers of one channel end; defaults and their reasons
    are in PROTOCOL.md §17.3.7."""

    #: bytes of item cost the peer may have unacknowledged towards us
    #: (announced in HELLO; ``grant`` raises it later)
    receive_window: int = 2 * 1024 * 1024
    #: the largest frame we accept (announced in HELLO) and send
    max_frame_bytes: int = MIN_FRAME_BYTES
    #: items we put in one DATA frame
    max_items_per_frame: int = 256
    #: the largest payload ``offer`` takes
    max_item_bytes: int = MAX_ITEM_BYTES
    #: items offered but not yet sent: beyond either bound ``offer`` refuses
    max_queue_items: int = 1024
    max_queue_bytes: int = 4 * 1024 * 1024
    #: our own cap on unacknowledged items, whatever window the peer grants
    #: (we keep each one until it is acknowledged, to report it on a close)
    max_inflight_bytes: int = 4 * 1024 * 1024
    max_inflight_items: int = 4096
    #: seconds a processed item may wait for its ACK, to coalesce acks
    ack_delay: float = 0.025
    #: seconds without ack progress, while items are unacknowledged, before
    #: the peer counts as not reading
    stall_timeout: float = 30.0
    #: seconds without sending anything before we send PING
    keepalive_interval: float = 20.0
    #: seconds without receiving anything before we give the peer up
    idle_timeout: float = 60.0
    #: seconds from ``start`` for the peer's HELLO
    hello_timeout: float = 10.0

    def __post_init__(self) -> None:
        checks = [
            (MIN_WINDOW <= self.receive_window <= MAX_U32, "receive_window"),
            (MIN_FRAME_BYTES <= self.max_frame_bytes <= MAX_U32, "max_frame_bytes"),
            (1 <= self.max_items_per_frame <= MAX_ITEMS_PER_FRAME, "max_items_per_frame"),
            (0 <= self.max_item_bytes <= MAX_ITEM_BYTES, "max_item_bytes"),
            (self.max_queue_items >= 1, "max_queue_items"),
            (self.max_queue_bytes >= self.max_item_bytes, "max_queue_bytes"),
            # the largest item must fit our own cap, or it could never go
            (self.max_inflight_bytes >= item_cost(self.max_item_bytes), "max_inflight_bytes"),
            (self.max_inflight_items >= 1, "max_inflight_items"),
            (self.ack_delay >= 0, "ack_delay"),
            (self.stall_timeout > 0, "stall_timeout"),
            (0 < self.keepalive_interval < self.idle_timeout, "keepalive_interval"),
            (self.hello_timeout > 0, "hello_timeout"),
        ]
        bad = [name for ok, name in checks if not ok]
        if bad:
            raise UsageError(f"ChannelConfig: {', '.join(bad)} out of range (§17.3.7)")


_DEFAULT_CONFIG = ChannelConfig()


@dataclass(frozen=True, slots=True)
class Item:
    """One item of one direction of a channel."""

    seq: int
    kind: int
    payload: bytes


# -- outputs -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Send:
    """Write this frame (without the stream's length prefix)."""

    frame: bytes


class Refusal(Enum):
    QUEUE_FULL = "the send queue is full"
    CLOSED = "the channel is closed"


@dataclass(frozen=True, slots=True)
class Queued:
    """``offer`` took the item; ``seq`` names it in ``Acknowledged`` and
    ``Closed.unacknowledged``."""

    seq: int


@dataclass(frozen=True, slots=True)
class Refused:
    """``offer`` did not take the item: keep it and offer it again later
    (after an ``Acknowledged``) or on a new channel."""

    reason: Refusal


@dataclass(frozen=True, slots=True)
class Received:
    """An item from the peer, in order, once; call ``processed(seq)`` when
    it is safe (stored, or handed on) so that it is acknowledged."""

    seq: int
    kind: int
    payload: bytes


@dataclass(frozen=True, slots=True)
class Acknowledged:
    """The peer processed our items ``first`` to ``last`` (inclusive): the
    caller may mark them delivered."""

    first: int
    last: int

    @property
    def seqs(self) -> range:
        return range(self.first, self.last + 1)


@dataclass(frozen=True, slots=True)
class Misbehaved:
    """The peer broke the protocol; a ``Closed`` follows."""

    error: InvalidInput


@dataclass(frozen=True, slots=True)
class Closed:
    """The channel is over; nothing more is sent or received on it."""

    #: the CLOSE code sent or received; None when the stream ended without one
    code: CloseCode | None
    reason: str
    #: the peer ended it (its CLOSE, or the stream was lost)
    by_peer: bool
    #: what the peer did wrong, when we closed it for that
    error: InvalidInput | None
    #: our items the peer did not acknowledge, sent or not, in order: offer
    #: them again on a new channel (the peer may have processed some, so
    #: its user must tolerate a repeat)
    unacknowledged: tuple[Item, ...]


Output = Send | Queued | Refused | Received | Acknowledged | Misbehaved | Closed


class State(Enum):
    NEW = "new"  # before start
    OPENING = "opening"  # our HELLO sent, the peer's not yet received
    OPEN = "open"
    CLOSED = "closed"


@dataclass(slots=True)
class ChannelStats:
    frames_sent: int = 0
    bytes_sent: int = 0
    frames_received: int = 0
    bytes_received: int = 0
    items_sent: int = 0
    items_received: int = 0
    acks_sent: int = 0
    pings_sent: int = 0


class Channel:
    """One end of one channel stream."""

    def __init__(self, config: ChannelConfig = _DEFAULT_CONFIG) -> None:
        self.config = config
        self.state = State.NEW
        self.stats = ChannelStats()
        self.closed: Closed | None = None
        #: the version both sides speak, once the peer's HELLO is in
        self.version: int | None = None
        self._started = 0.0
        self._last_sent = 0.0
        self._last_received = 0.0
        # sending: items offered and not yet sent, then sent and not yet
        # acknowledged; sequence numbers are consecutive across both
        self._next_seq = 1
        self._queue: deque[Item] = deque()
        self._queue_bytes = 0
        self._inflight: deque[Item] = deque()
        self._inflight_cost = 0
        self._acked = 0  # the peer's cumulative ACK
        self._peer_window = 0  # 0 until its HELLO: nothing may be sent
        self._peer_max_frame = 0
        self._flush_at: float | None = None
        self._stall_since: float | None = None
        # receiving
        self._window = config.receive_window  # as announced (HELLO, ACK)
        self._recv_next = 1
        #: cost of each item received and not yet covered by an ACK we sent
        self._costs: dict[int, int] = {}
        self._unacked_cost = 0
        self._ack_sent = 0  # what our last ACK said
        self._ack_point = 0  # every item up to here is processed
        self._ack_pending_cost = 0  # cost of (ack_sent, ack_point]
        self._processed: set[int] = set()  # processed beyond ack_point
        self._ack_at: float | None = None

    # -- queries -----------------------------------------------------------------

    @property
    def peer_window(self) -> int:
        """The window the peer granted us (0 before its HELLO)."""
        return self._peer_window

    @property
    def receive_window(self) -> int:
        """The window we grant the peer (as last announced)."""
        return self._window

    @property
    def in_flight(self) -> tuple[int, int]:
        """Our items sent and not yet acknowledged: (count, cost)."""
        return len(self._inflight), self._inflight_cost

    @property
    def queued(self) -> tuple[int, int]:
        """Our items offered and not yet sent: (count, payload bytes)."""
        return len(self._queue), self._queue_bytes

    def has_room(self, payload_bytes: int = 0) -> bool:
        """Would ``offer`` take an item of this size now?"""
        return self.state is not State.CLOSED and self._queue_fits(payload_bytes)

    def unacknowledged(self) -> tuple[Item, ...]:
        """Our items the peer has not acknowledged, sent or not, in order."""
        return (*self._inflight, *self._queue)

    def next_deadline(self) -> float | None:
        if self.state in (State.NEW, State.CLOSED):
            return None
        c = self.config
        due = [self._last_sent + c.keepalive_interval, self._silence_deadline()]
        if self._flush_at is not None:
            due.append(self._flush_at)
        if self._ack_at is not None:
            due.append(self._ack_at)
        if self._stall_since is not None:
            due.append(self._stall_since + c.stall_timeout)
        return min(due)

    # -- entry points ------------------------------------------------------------

    def start(self, now: Now) -> list[Output]:
        """Open our end: HELLO goes first (§17.3.2)."""
        if self.state is not State.NEW:
            raise UsageError("the channel was started already")
        self.state = State.OPENING
        self._started = self._last_received = now.mono
        out: list[Output] = []
        hello = HelloFrame(CHANNEL_VERSION, self._window, self.config.max_frame_bytes)
        self._emit(hello, now, out)
        return out

    def offer(self, kind: int, payload: bytes, now: Now) -> list[Output]:
        """Queue an item: ``[Queued(seq)]``, or ``[Refused(reason)]`` when
        the queue is full or the channel closed.  It goes out at the next
        ``tick`` (due at once), so items offered together share a frame.
        Items offered before ``start`` wait for the peer's HELLO like any."""
        if type(kind) is not int or not 0 <= kind <= MAX_KIND:
            raise UsageError(f"an item kind is an integer from 0 to {MAX_KIND}")
        if type(payload) is not bytes:
            raise UsageError("an item payload is bytes")
        if len(payload) > self.config.max_item_bytes:
            raise UsageError(f"an item of {len(payload)} bytes, over {self.config.max_item_bytes}")
        if self.state is State.CLOSED:
            return [Refused(Refusal.CLOSED)]
        if not self._queue_fits(len(payload)):
            return [Refused(Refusal.QUEUE_FULL)]
        item = Item(self._next_seq, kind, payload)
        self._next_seq += 1
        self._queue.append(item)
        self._queue_bytes += len(payload)
        if self._flush_at is None:
            self._flush_at = now.mono
        return [Queued(item.seq)]

    def processed(self, seq: int, now: Now) -> list[Output]:
        """The user is done with received item ``seq`` (in any order); the
        ACK covers every item up to the first one not yet processed."""
        self._require_started()
        if self.state is State.CLOSED:
            return []  # nobody to tell: the peer offers it again elsewhere
        if not self._ack_point < seq < self._recv_next or seq in self._processed:
            raise UsageError(f"item {seq} was not received, or was processed already")
        self._processed.add(seq)
        while self._ack_point + 1 in self._processed:
            self._ack_point += 1
            self._processed.remove(self._ack_point)
            self._ack_pending_cost += self._costs[self._ack_point]
        out: list[Output] = []
        if self._ack_point > self._ack_sent:
            if 2 * self._ack_pending_cost >= self._window:
                self._send_ack(now, out)  # half the window waits: do not delay
            elif self._ack_at is None:
                self._ack_at = now.mono + self.config.ack_delay
        return out

    def grant(self, window: int, now: Now) -> list[Output]:
        """Raise the receive window we grant (it never shrinks, §17.3.3);
        before ``start``, HELLO carries it."""
        if type(window) is not int or not self._window <= window <= MAX_U32:
            raise UsageError(f"a window can only grow, from {self._window} up to {MAX_U32}")
        if self.state is State.CLOSED or window == self._window:
            return []
        self._window = window
        out: list[Output] = []
        if self.state is not State.NEW:
            self._send_ack(now, out)
        return out

    def receive(self, data: bytes, now: Now) -> list[Output]:
        """One frame from the peer (without its length prefix)."""
        self._require_started()
        if self.state is State.CLOSED:
            return []  # frames still in flight after a close are dropped
        out: list[Output] = []
        try:
            frame = decode_frame(data, self.config.max_frame_bytes)
            self._check(frame)
        except InvalidInput as exc:
            self._fail(exc, now, out)
            return out
        self.stats.frames_received += 1
        self.stats.bytes_received += len(data)
        self._last_received = now.mono
        self._apply(frame, now, out)
        return out

    def reject(self, error: InvalidInput, now: Now) -> list[Output]:
        """The adapter found the peer's input invalid before the machine saw
        it (a length prefix over ``max_frame_bytes``): close as PROTOCOL."""
        self._require_started()
        out: list[Output] = []
        if self.state is not State.CLOSED:
            self._fail(error, now, out)
        return out

    def close(self, now: Now, reason: str = "") -> list[Output]:
        """Our user is done: a last ACK for what it processed, then CLOSE
        (before ``start``: nothing to send)."""
        out: list[Output] = []
        if self.state is State.CLOSED:
            return out
        if self.state is State.NEW:
            self._finish(CloseCode.NORMAL, reason_text(reason), False, None, out)
            return out
        if self._ack_point > self._ack_sent:
            self._send_ack(now, out)
        self._close(CloseCode.NORMAL, reason_text(reason), None, now, out)
        return out

    def connection_lost(self, now: Now, reason: str = "stream ended") -> list[Output]:
        """The stream ended or failed without a CLOSE."""
        self._require_started()
        out: list[Output] = []
        if self.state is not State.CLOSED:
            self._finish(None, reason, True, None, out)
        return out

    def tick(self, now: Now) -> list[Output]:
        if self.state in (State.NEW, State.CLOSED):
            return []
        out: list[Output] = []
        t = now.mono
        c = self.config
        if t >= self._silence_deadline():
            what = "no HELLO" if self.version is None else "nothing received"
            waited = c.hello_timeout if self.version is None else c.idle_timeout
            self._close(CloseCode.TIMEOUT, f"{what} for {waited:g} s", None, now, out)
            return out
        if self._stall_since is not None and t >= self._stall_since + c.stall_timeout:
            reason = f"nothing acknowledged for {c.stall_timeout:g} s"
            self._close(CloseCode.STALLED, reason, None, now, out)
            return out
        if self._ack_at is not None and t >= self._ack_at:
            self._send_ack(now, out)
        if self._flush_at is not None and t >= self._flush_at:
            self._flush_at = None
            self._pump(now, out)
        if t >= self._last_sent + c.keepalive_interval:
            self.stats.pings_sent += 1
            self._emit(PingFrame(), now, out)
        return out

    # -- receiving -----------------------------------------------------------------

    def _check(self, frame: Frame) -> None:
        """Is this valid frame allowed now (§17.3.5)?  Raises before any
        state changes, so a refused frame leaves nothing behind."""
        if isinstance(frame, CloseFrame):
            return
        if isinstance(frame, HelloFrame):
            if self.version is not None:
                raise ChannelProtocolError("a second HELLO")
            return
        if self.version is None:
            raise ChannelProtocolError(f"{type(frame).__name__} before HELLO")
        if isinstance(frame, DataFrame):
            if frame.first_seq != self._recv_next:
                raise ChannelProtocolError(
                    f"DATA starts at item {frame.first_seq}, expected {self._recv_next}"
                )
            cost = sum(item_cost(len(payload)) for _, payload in frame.items)
            if self._unacked_cost + cost > self._window:
                raise FlowControlError(
                    f"{self._unacked_cost + cost} bytes unacknowledged, "
                    f"over the window of {self._window}"
                )
        elif isinstance(frame, AckFrame):
            sent = self._next_seq - 1 - len(self._queue)
            if not self._acked <= frame.seq <= sent:
                raise ChannelProtocolError(
                    f"ACK of item {frame.seq}: acknowledged {self._acked}, sent {sent}"
                )
            if frame.window < self._peer_window:
                raise FlowControlError(f"window shrank from {self._peer_window} to {frame.window}")
            if frame.seq == self._acked and frame.window == self._peer_window:
                raise ChannelProtocolError("an ACK that changes nothing")

    def _apply(self, frame: Frame, now: Now, out: list[Output]) -> None:
        if isinstance(frame, HelloFrame):
            self.version = min(frame.version, CHANNEL_VERSION)
            self._peer_window = frame.window
            self._peer_max_frame = frame.max_frame
            self.state = State.OPEN
            self._pump(now, out)  # items offered before the HELLO go now
        elif isinstance(frame, DataFrame):
            for kind, payload in frame.items:
                seq = self._recv_next
                self._recv_next += 1
                cost = item_cost(len(payload))
                self._costs[seq] = cost
                self._unacked_cost += cost
                out.append(Received(seq, kind, payload))
            self.stats.items_received += len(frame.items)
        elif isinstance(frame, AckFrame):
            self._on_ack(frame, now, out)
        elif isinstance(frame, CloseFrame):
            self._finish(frame.code, frame.reason, True, None, out)
        # PING: its arrival (``_last_received``) is all it says

    def _on_ack(self, frame: AckFrame, now: Now, out: list[Output]) -> None:
        self._peer_window = frame.window
        if frame.seq > self._acked:
            first = self._acked + 1
            while self._inflight and self._inflight[0].seq <= frame.seq:
                item = self._inflight.popleft()
                self._inflight_cost -= item_cost(len(item.payload))
            self._acked = frame.seq
            out.append(Acknowledged(first, frame.seq))
            self._stall_since = now.mono if self._inflight else None
        self._pump(now, out)

    # -- sending -------------------------------------------------------------------

    def _queue_fits(self, payload_bytes: int) -> bool:
        c = self.config
        return (
            len(self._queue) < c.max_queue_items
            and self._queue_bytes + payload_bytes <= c.max_queue_bytes
        )

    def _pump(self, now: Now, out: list[Output]) -> None:
        """Send what the windows allow, packed into as few frames as the
        frame limits allow (§17.3.3)."""
        if self.state is not State.OPEN:
            return
        c = self.config
        window = min(self._peer_window, c.max_inflight_bytes)
        max_frame = min(self._peer_max_frame, c.max_frame_bytes)
        while self._queue:
            batch: list[Item] = []
            cost = payload_total = 0
            while self._queue and len(batch) < c.max_items_per_frame:
                head = self._queue[0]
                size = len(head.payload)
                if (
                    self._inflight_cost + cost + item_cost(size) > window
                    or len(self._inflight) + len(batch) >= c.max_inflight_items
                    or data_bound(payload_total + size, len(batch) + 1) > max_frame
                ):
                    break
                batch.append(self._queue.popleft())
                cost += item_cost(size)
                payload_total += size
            if not batch:
                return  # the window is full: an ACK will open it
            if not self._inflight:
                self._stall_since = now.mono
            self._queue_bytes -= payload_total
            self._inflight.extend(batch)
            self._inflight_cost += cost
            self.stats.items_sent += len(batch)
            items = tuple((item.kind, item.payload) for item in batch)
            self._emit(DataFrame(batch[0].seq, items), now, out)

    def _send_ack(self, now: Now, out: list[Output]) -> None:
        for seq in range(self._ack_sent + 1, self._ack_point + 1):
            self._unacked_cost -= self._costs.pop(seq)
        self._ack_sent = self._ack_point
        self._ack_pending_cost = 0
        self._ack_at = None
        self.stats.acks_sent += 1
        self._emit(AckFrame(self._ack_sent, self._window), now, out)

    def _emit(self, frame: Frame, now: Now, out: list[Output]) -> None:
        data = encode_frame(frame)
        self.stats.frames_sent += 1
        self.stats.bytes_sent += len(data)
        self._last_sent = now.mono
        out.append(Send(data))

    # -- closing -------------------------------------------------------------------

    def _fail(self, error: InvalidInput, now: Now, out: list[Output]) -> None:
        out.append(Misbehaved(error))
        self._close(CloseCode.PROTOCOL, reason_text(f"{error.code}: {error}"), error, now, out)

    def _close(
        self,
        code: CloseCode,
        reason: str,
        error: InvalidInput | None,
        now: Now,
        out: list[Output],
    ) -> None:
        self._emit(CloseFrame(code, reason), now, out)
        self._finish(code, reason, False, error, out)

    def _finish(
        self,
        code: CloseCode | None,
        reason: str,
        by_peer: bool,
        error: InvalidInput | None,
        out: list[Output],
    ) -> None:
        self.state = State.CLOSED
        self._flush_at = self._ack_at = self._stall_since = None
        self._costs.clear()
        self._processed.clear()
        self.closed = Closed(code, reason, by_peer, error, self.unacknowledged())
        out.append(self.closed)

    # -- helpers -------------------------------------------------------------------

    def _require_started(self) -> None:
        if self.state is State.NEW:
            raise UsageError("start the channel first")

    def _silence_deadline(self) -> float:
        if self.version is None:
            return self._started + self.config.hello_timeout
        return self._last_received + self.config.idle_timeout
