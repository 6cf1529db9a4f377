"""Peer scoring, back-off and per-peer budgets (PROTOCOL.md §11.5).

A score per peer: invalid input costs dearly, useful first deliveries earn a
little (capped, so good behaviour cannot buy a licence to misbehave), and the
score decays towards zero with time.  Once below the threshold the peer is
disconnected and may not be redialled for a back-off that doubles with each
disconnect.  Duplicates are not offences: with eager push several peers
deliver the same event by design.

Budgets are token buckets: they slow what a peer can make us do (announce
ids, request events, reconcile ranges) and never decide what is valid.
"""

from __future__ import annotations

from dataclasses import dataclass, field

PeerId = str


@dataclass(frozen=True, slots=True)
class ScoreConfig:
    threshold: float = -50.0
    #: an invalid frame or event (malformed, non-canonical, oversized,
    #: forged, unauthorised)
    invalid_penalty: float = 100.0
    #: flooding beyond a budget's queue
    flood_penalty: float = 10.0
    #: a requested id the peer said it had and then did not deliver
    undelivered_penalty: float = 1.0
    #: a first delivery of a valid event
    delivery_reward: float = 1.0
    max_score: float = 20.0
    #: seconds for a score to halve towards zero
    half_life: float = 600.0
    backoff_base: float = 30.0
    backoff_max: float = 86_400.0


@dataclass(slots=True)
class _Record:
    score: float = 0.0
    updated: float = 0.0
    bans: int = 0
    banned_until: float = float("-inf")


@dataclass(slots=True)
class PeerBook:
    """Scores and back-off of every peer seen, connected or not."""

    config: ScoreConfig = field(default_factory=ScoreConfig)
    _records: dict[PeerId, _Record] = field(default_factory=dict)

    def _get(self, peer: PeerId, now: float) -> _Record:
        rec = self._records.get(peer)
        if rec is None:
            rec = self._records[peer] = _Record(updated=now)
        elif now > rec.updated:
            rec.score *= 0.5 ** ((now - rec.updated) / self.config.half_life)
            rec.updated = now
        return rec

    def score(self, peer: PeerId, now: float) -> float:
        rec = self._records.get(peer)
        if rec is None:
            return 0.0
        return self._get(peer, now).score

    def banned_until(self, peer: PeerId, now: float) -> float | None:
        """When a back-off ends, or None if the peer may connect now."""
        rec = self._records.get(peer)
        if rec is None or rec.banned_until <= now:
            return None
        return rec.banned_until

    def reward(self, peer: PeerId, amount: float, now: float) -> None:
        rec = self._get(peer, now)
        rec.score = min(self.config.max_score, rec.score + amount)

    def penalise(self, peer: PeerId, amount: float, now: float) -> float | None:
        """Lower the score; if it falls below the threshold, start a back-off
        and return its end (the caller disconnects)."""
        rec = self._get(peer, now)
        rec.score -= amount
        if rec.score >= self.config.threshold:
            return None
        delay = min(self.config.backoff_max, self.config.backoff_base * 2.0**rec.bans)
        rec.bans += 1
        rec.banned_until = now + delay
        # a fresh start after the back-off; the next ban lasts twice as long
        rec.score = 0.0
        return rec.banned_until


@dataclass(slots=True)
class TokenBucket:
    """``rate`` tokens per second, at most ``burst`` in hand."""

    rate: float
    burst: float
    tokens: float
    updated: float

    @classmethod
    def full(cls, rate: float, burst: float, now: float) -> TokenBucket:
        return cls(rate, burst, burst, now)

    def _refill(self, now: float) -> None:
        if now > self.updated:
            self.tokens = min(self.burst, self.tokens + (now - self.updated) * self.rate)
            self.updated = now

    def take(self, n: float, now: float) -> bool:
        """Spend ``n`` tokens (at most ``burst``) if they are there."""
        self._refill(now)
        n = min(n, self.burst)
        # a little slack, so a caller woken at ready_at() never finds the
        # bucket short by a rounding error
        if self.tokens + 1e-6 >= n:
            self.tokens = max(0.0, self.tokens - n)
            return True
        return False

    def debit(self, n: float) -> None:
        """Charge work measured after the fact; the balance may go negative."""
        self.tokens -= n

    def ready_at(self, n: float, now: float) -> float:
        """When ``n`` tokens will be there."""
        self._refill(now)
        n = min(n, self.burst)
        if self.tokens >= n:
            return now
        return now + (n - self.tokens) / self.rate
