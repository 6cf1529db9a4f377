"""The device side of mailboxes, sans-I/O (PROTOCOL.md §15.10-§15.12).

``MailboxClient`` decides *when* a device asks for grants, fetches and
deletes; the adapter does the asking and fetching (the frames are
``mailbox.grant_request``, ``challenge_request``, ``fetch_request`` and
``delete_request``) and reports back.  It follows the machine contract
(``core.machine``, §18): every entry point takes one ``Now`` and returns a
list of outputs, and ``tick(now)`` is due at ``next_deadline()``.

State: the grants the device holds (at most ``max_mailboxes``, at distinct
mailbox peers, for the active account and this device), the candidate peers
to ask for a grant, per mailbox the next fetch and the failures in a row,
and whether the device is active in an account.  An inactive device asks
for nothing and fetches nothing.

Outputs, in the order to carry them out:

* ``GrantDropped(grant, reason)`` -- the device no longer holds ``grant``
  (expired, replaced, or the device left the account).
* ``GrantsChanged(grants)`` -- the grants now held; save them (e.g.
  ``mailboxes.json``) *before* naming them in the device record, then
  republish the record.
* ``AskGrant(peer)`` -- send ``peer`` a GRANT_REQUEST; report the answer with
  ``granted(grant, now)`` (after checking it with ``decode_grant``,
  ``Grant.valid_for`` and the mailbox key) or ``grant_refused(peer, now)``.
* ``Fetch(grant)`` -- challenge, fetch, store what opens, challenge, delete;
  report ``fetched(mailbox_peer, count, now)`` or ``failed(mailbox_peer,
  error_text, now)``.

Schedule: each mailbox is fetched at once when its grant arrives, then
every ``poll_interval`` seconds; after ``k`` failures in a row the next try
waits ``min(poll_interval * 2**k, max_backoff)``.  ``notified`` (a push
notice from the mailbox) fetches at once.  A grant within
``renew_before_ms`` of its expiry no longer counts as held: the client asks
its mailbox again (a fresh grant replaces it in place) or, failing that,
another candidate peer (whose grant then replaces the expiring one).  A
refused ask backs off the same way, per peer.  An ask or fetch the adapter
has not reported within ``answer_timeout`` counts as failed.

::

    client = MailboxClient(device_key, grants=loaded_from_mailboxes_json)
    outs = client.set_active(account, now)
    outs = client.peers_changed(linked_peer_ids, now)
    outs = client.tick(now)                   # at client.next_deadline()
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from protocol.core.errors import UsageError
from protocol.core.machine import Now
from protocol.records.device import MAX_MAILBOXES
from protocol.records.grant import Grant


@dataclass(frozen=True, slots=True)
class ClientConfig:
    #: seconds between fetches from one mailbox
    poll_interval: float = 2.0
    #: the longest wait after failures in a row (fetches and asks)
    max_backoff: float = 60.0
    #: a grant this close to its expiry (ms) is renewed
    renew_before_ms: int = 3600 * 1000
    #: an ask or a fetch not reported on after this long (s) counts as failed
    answer_timeout: float = 120.0
    #: grants held at once, at distinct mailbox peers
    max_mailboxes: int = MAX_MAILBOXES


@dataclass(frozen=True, slots=True)
class AskGrant:
    """Ask ``peer``'s mailbox for a grant."""

    peer: str


@dataclass(frozen=True, slots=True)
class Fetch:
    """Fetch, store and delete what the mailbox of ``grant`` holds."""

    grant: Grant


@dataclass(frozen=True, slots=True)
class GrantsChanged:
    """The grants now held: save them, then name them in the device record."""

    grants: tuple[Grant, ...]


@dataclass(frozen=True, slots=True)
class GrantDropped:
    """``grant`` is no longer held: ``expired``, ``replaced`` (by a grant at
    another mailbox, as it was about to expire), ``inactive`` (the device
    is not active in an account) or ``account`` (another account)."""

    grant: Grant
    reason: str


ClientOutput = GrantDropped | GrantsChanged | AskGrant | Fetch


@dataclass(frozen=True, slots=True)
class MailboxStatus:
    """How fetching from one mailbox goes (for display)."""

    peer: str
    expires: int
    failures: int
    last_error: str | None
    #: monotonic seconds of the next fetch; None while one is under way
    next_fetch: float | None


@dataclass(slots=True)
class _Schedule:
    next_at: float
    failures: int = 0
    #: a fetch is under way and counts as failed after this time
    in_flight_until: float | None = None
    #: a notice arrived during the fetch: fetch again at once after it
    again: bool = False
    last_error: str | None = None


class MailboxClient:
    """When one device asks for grants, fetches and deletes.  Deterministic."""

    def __init__(
        self,
        device: bytes,
        *,
        config: ClientConfig | None = None,
        grants: Sequence[Grant] = (),
    ) -> None:
        self.device = device
        self.config = config or ClientConfig()
        self._account: bytes | None = None
        self._grants: list[Grant] = []
        self._schedules: dict[str, _Schedule] = {}
        for g in grants:  # e.g. from the last run; fetched once active
            held = {h.mailbox_peer for h in self._grants}
            if (
                g.device == device
                and g.mailbox_peer not in held
                and len(self._grants) < self.config.max_mailboxes
            ):
                self._grants.append(g)
                self._schedules[g.mailbox_peer] = _Schedule(float("-inf"))
        self._peers: tuple[str, ...] = ()
        #: asks under way: peer -> monotonic time they count as refused
        self._asking: dict[str, float] = {}
        #: refused asks in a row, and the time before which a peer is not asked
        self._ask_failures: dict[str, int] = {}
        self._ask_after: dict[str, float] = {}
        self._now: Now | None = None

    def __repr__(self) -> str:
        return f"MailboxClient({len(self._grants)} grants, active={self._account is not None})"

    # -- reading -----------------------------------------------------------

    @property
    def grants(self) -> tuple[Grant, ...]:
        return tuple(self._grants)

    @property
    def active(self) -> bool:
        return self._account is not None

    def status(self) -> tuple[MailboxStatus, ...]:
        out = []
        for g in self._grants:
            s = self._schedules[g.mailbox_peer]
            due = None if s.in_flight_until is not None else s.next_at
            out.append(MailboxStatus(g.mailbox_peer, g.expires, s.failures, s.last_error, due))
        return tuple(out)

    # -- entry points --------------------------------------------------------

    def set_active(self, account: bytes | None, now: Now) -> list[ClientOutput]:
        """The device is active in ``account``, or (None) in none."""
        out: list[ClientOutput] = []
        changed = False
        if account is None:
            for g in self._grants:
                out.append(GrantDropped(g, "inactive"))
            changed = bool(self._grants)
            self._grants.clear()
            self._schedules.clear()
            self._asking.clear()
        else:
            for g in [g for g in self._grants if g.account != account]:
                out.append(GrantDropped(g, "account"))
                self._remove(g)
                changed = True
        self._account = account
        return self._run(now, out, changed)

    def peers_changed(self, peer_ids: Iterable[str], now: Now) -> list[ClientOutput]:
        """The peers that may be asked for a grant (e.g. the linked ones)."""
        self._peers = tuple(sorted(set(peer_ids)))
        return self._run(now, [], False)

    def granted(self, grant: Grant, now: Now) -> list[ClientOutput]:
        """A mailbox granted ``grant``, checked by the adapter (``decode_grant``,
        ``valid_for`` this account and device now, the mailbox's key)."""
        peer = grant.mailbox_peer
        self._asking.pop(peer, None)
        if self._account is None:  # left the account while asking
            return self._run(now, [], False)
        if not grant.valid_for(self._account, self.device, now.wall_ms):
            raise UsageError("that grant is not for this device and account, or has expired")
        out: list[ClientOutput] = []
        changed = False
        held = self._held(peer)
        if held is not None:
            if held.raw == grant.raw:  # not renewed: the mailbox kept the old one
                self._ask_refused(peer, now)
            else:
                self._grants[self._grants.index(held)] = grant
                self._ask_ok(peer)
                changed = True
        else:
            expiring = sorted(
                (g for g in self._grants if self._expiring(g, now)), key=lambda g: g.expires
            )
            if len(self._grants) >= self.config.max_mailboxes and expiring:
                out.append(GrantDropped(expiring[0], "replaced"))
                self._remove(expiring[0])
            if len(self._grants) < self.config.max_mailboxes:
                self._grants.append(grant)
                self._schedules[peer] = _Schedule(now.mono)
                self._ask_ok(peer)
                changed = True
            # else: a surplus grant (asks crossed); not needed
        return self._run(now, out, changed)

    def grant_refused(self, peer: str, now: Now) -> list[ClientOutput]:
        """``peer`` refused, or could not be asked; ask it again after a back-off."""
        self._asking.pop(peer, None)
        self._ask_refused(peer, now)
        return self._run(now, [], False)

    def notified(self, mailbox_peer: str, now: Now) -> list[ClientOutput]:
        """The mailbox says it holds something for the device: fetch now."""
        s = self._schedules.get(mailbox_peer)
        if s is not None and self._account is not None:
            if s.in_flight_until is not None:
                s.again = True
            else:
                s.next_at = min(s.next_at, now.mono)
        return self._run(now, [], False)

    def fetched(self, mailbox_peer: str, count: int, now: Now) -> list[ClientOutput]:
        """A ``Fetch`` succeeded (``count`` envelopes stored)."""
        s = self._schedules.get(mailbox_peer)
        if s is not None:
            s.next_at = now.mono if s.again else now.mono + self.config.poll_interval
            s.failures, s.in_flight_until, s.again, s.last_error = 0, None, False, None
        return self._run(now, [], False)

    def failed(self, mailbox_peer: str, error_text: str, now: Now) -> list[ClientOutput]:
        """A ``Fetch`` failed (unreachable, refused, broke off): back off."""
        s = self._schedules.get(mailbox_peer)
        if s is not None:
            self._fetch_failed(s, error_text, now)
        return self._run(now, [], False)

    def tick(self, now: Now) -> list[ClientOutput]:
        return self._run(now, [], False)

    def next_deadline(self) -> float | None:
        now = self._now
        if now is None:
            return None
        renew = self.config.renew_before_ms
        times: list[float] = list(self._asking.values())
        for g in self._grants:
            edge = g.expires - renew if now.wall_ms < g.expires - renew else g.expires
            times.append(now.mono_at_wall(edge))
        if self._account is not None:
            for s in self._schedules.values():
                times.append(s.next_at if s.in_flight_until is None else s.in_flight_until)
            if self._need(now) > 0:
                times.extend(
                    after
                    for p in self._candidates(now)
                    if (after := self._ask_after.get(p, now.mono)) > now.mono
                )
        return min(times, default=None)

    # -- inside --------------------------------------------------------------

    def _held(self, peer: str) -> Grant | None:
        return next((g for g in self._grants if g.mailbox_peer == peer), None)

    def _remove(self, grant: Grant) -> None:
        self._grants.remove(grant)
        self._schedules.pop(grant.mailbox_peer, None)

    def _expiring(self, grant: Grant, now: Now) -> bool:
        return now.wall_ms + self.config.renew_before_ms >= grant.expires

    def _backoff(self, failures: int) -> float:
        cfg = self.config
        return min(cfg.poll_interval * (1 << min(failures, 16)), cfg.max_backoff)

    def _ask_ok(self, peer: str) -> None:
        self._ask_failures.pop(peer, None)
        self._ask_after.pop(peer, None)

    def _ask_refused(self, peer: str, now: Now) -> None:
        n = self._ask_failures.get(peer, 0) + 1
        self._ask_failures[peer] = n
        self._ask_after[peer] = now.mono + self._backoff(n)

    def _fetch_failed(self, s: _Schedule, error_text: str, now: Now) -> None:
        s.failures += 1
        s.next_at = now.mono + self._backoff(s.failures)
        s.in_flight_until, s.again, s.last_error = None, False, error_text[:200]

    def _need(self, now: Now) -> int:
        """How many more grants to ask for: expiring ones count as missing."""
        good = sum(1 for g in self._grants if not self._expiring(g, now))
        return self.config.max_mailboxes - good - len(self._asking)

    def _candidates(self, now: Now) -> list[str]:
        """Whom to ask, in order: the mailboxes of expiring grants (soonest
        first), then the candidate peers holding none; none being asked."""
        renew = [
            g.mailbox_peer
            for g in sorted(self._grants, key=lambda g: g.expires)
            if self._expiring(g, now)
        ]
        held = {g.mailbox_peer for g in self._grants}
        fresh = [p for p in self._peers if p not in held]
        return [p for p in [*renew, *fresh] if p not in self._asking]

    def _run(self, now: Now, out: list[ClientOutput], changed: bool) -> list[ClientOutput]:
        """Everything due at ``now``, after the entry point's own changes."""
        self._now = now
        for g in [g for g in self._grants if now.wall_ms >= g.expires]:
            out.append(GrantDropped(g, "expired"))
            self._remove(g)
            changed = True
        for peer in [p for p, until in self._asking.items() if now.mono >= until]:
            del self._asking[peer]
            self._ask_refused(peer, now)
        for s in self._schedules.values():
            if s.in_flight_until is not None and now.mono >= s.in_flight_until:
                self._fetch_failed(s, "no report", now)
        # Forget the back-off of peers no longer candidates once it is over.
        known = {*self._peers, *(g.mailbox_peer for g in self._grants)}
        for peer in [p for p, t in self._ask_after.items() if t <= now.mono and p not in known]:
            self._ask_ok(peer)
        if changed:
            out.append(GrantsChanged(tuple(self._grants)))
        if self._account is None:
            return out
        need = self._need(now)
        for peer in self._candidates(now):
            if need <= 0:
                break
            if self._ask_after.get(peer, now.mono) <= now.mono:
                out.append(AskGrant(peer))
                self._asking[peer] = now.mono + self.config.answer_timeout
                need -= 1
        for g in self._grants:
            s = self._schedules[g.mailbox_peer]
            if s.in_flight_until is None and s.next_at <= now.mono:
                out.append(Fetch(g))
                s.in_flight_until = now.mono + self.config.answer_timeout
        return out


__all__ = [
    "AskGrant",
    "ClientConfig",
    "ClientOutput",
    "Fetch",
    "GrantDropped",
    "GrantsChanged",
    "MailboxClient",
    "MailboxStatus",
]
