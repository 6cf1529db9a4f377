"""Every open link offer of a node, as one machine (PROTOCOL.md §14.5, §14.10).

``Offers`` holds the node's ``Approver``s by link id, at most
``MAX_OFFERS``, routes the first frame of each new ``/smu/link/1`` stream
to the offer it names, and drives every offer's timer through one timer
pair.  A finished offer (used, rejected, burnt, expired) is kept
``KEEP_FINISHED_MS`` past the offer's expiry, so that a late joiner hears
why (``link_expired``, ``link_used``, ...) rather than ``link_unknown``.

Outputs of an offer's ``tick`` come wrapped as ``OfferOutput(link_id,
output)``: the caller needs the offer to find the stream a ``Send`` or a
``Hangup`` is for, and which offer a ``LinkExpired`` ended.  An offer the
machine forgets is reported as ``OfferForgotten(link_id)``.

::

    offers = Offers(params)
    ap = offers.create(account, peer_id=me, addrs=addrs, link_id=os.urandom(8),
                       secret=os.urandom(16), now=now)
    routed = offers.route(first_frame, remote_peer, now)
    if isinstance(routed, list):     # refused: carry out the outputs, done
        ...
    else:                            # the offer: feed it this and later frames
        outs = routed.receive(first_frame, remote_peer=remote_peer, now=now, ledger=ledger)
    outs = offers.tick(now)          # at offers.next_deadline()
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from protocol.core.errors import InvalidInput, UsageError
from protocol.core.machine import Hangup, Now, Send
from protocol.core.params import NetworkParams
from protocol.linking.machines import Approver, LinkOutput, refusal
from protocol.linking.wire import LINK_TTL_MS, UnknownLinkError, error_frame, link_id_of

#: open and finished offers held at once
MAX_OFFERS = 64
#: a finished offer is forgotten this long after the offer's expiry
KEEP_FINISHED_MS = 3600 * 1000


@dataclass(frozen=True, slots=True)
class OfferOutput:
    """An output of the offer ``link_id``'s own ``tick``."""

    link_id: bytes
    output: LinkOutput


@dataclass(frozen=True, slots=True)
class OfferForgotten:
    """The offer ``link_id`` is gone: a JOIN naming it now hears ``link_unknown``."""

    link_id: bytes


OffersOutput = OfferOutput | OfferForgotten


class Offers:
    """A node's link offers.  Not thread-safe."""

    def __init__(
        self,
        params: NetworkParams,
        *,
        max_offers: int = MAX_OFFERS,
        keep_finished_ms: int = KEEP_FINISHED_MS,
    ) -> None:
        self.params = params
        self.max_offers = max_offers
        self.keep_finished_ms = keep_finished_ms
        self._offers: dict[bytes, Approver] = {}  # insertion = creation order
        #: forgotten by ``create``, reported by the next ``tick``
        self._unreported: list[bytes] = []
        self._now: Now | None = None

    def __len__(self) -> int:
        return len(self._offers)

    def __iter__(self) -> Iterator[Approver]:
        """The offers, oldest first."""
        return iter(list(self._offers.values()))

    def get(self, link_id: bytes) -> Approver | None:
        return self._offers.get(link_id)

    def find(self, prefix: str) -> Approver | None:
        """The one offer whose link id (hex) starts with ``prefix``, in any
        letter case; None if no offer or more than one matches."""
        ref = prefix.lower()
        matches = [ap for k, ap in self._offers.items() if k.hex().startswith(ref)]
        return matches[0] if len(matches) == 1 else None

    def create(
        self,
        account_id: bytes,
        *,
        peer_id: str,
        addrs: Sequence[str],
        link_id: bytes,
        secret: bytes,
        now: Now,
        ttl_ms: int = LINK_TTL_MS,
    ) -> Approver:
        """A new offer.  ``UsageError`` when ``max_offers`` are held even after
        forgetting those past their keeping time, or for a link id in use."""
        self._now = now
        self._unreported.extend(self._forget(now))
        if len(self._offers) >= self.max_offers:
            raise UsageError(f"{self.max_offers} link offers are open: wait for them to expire")
        if link_id in self._offers:
            raise UsageError("that link id is in use")
        ap = Approver(
            self.params,
            account_id,
            peer_id=peer_id,
            addrs=addrs,
            link_id=link_id,
            secret=secret,
            now=now,
            ttl_ms=ttl_ms,
        )
        self._offers[link_id] = ap
        return ap

    def route(self, first_frame: bytes, remote_peer: str, now: Now) -> Approver | list[LinkOutput]:
        """The offer the first frame of a stream names, or the outputs that
        refuse the stream: a malformed frame or one that is not JOIN
        (``Send`` of ERROR, ``Misbehaved``, ``Hangup``), an unknown link id
        (``Send`` of ERROR ``link_unknown``, ``Hangup``: a stale or mistyped
        link is no misbehaviour).  Feed the frame itself to the offer."""
        self._now = now
        try:
            link_id = link_id_of(first_frame, self.params)
        except InvalidInput as exc:
            return refusal(remote_peer, exc)
        ap = self._offers.get(link_id)
        if ap is None:
            return [Send(remote_peer, error_frame(UnknownLinkError())), Hangup(remote_peer)]
        return ap

    def _forget_at(self, ap: Approver) -> int:
        return ap.offer.expires_at_ms + self.keep_finished_ms

    def _forget(self, now: Now) -> list[bytes]:
        """Drop the offers past their keeping time that have nothing left to
        do (an offer whose own deadline is due is ticked first)."""
        gone = [
            k
            for k, ap in self._offers.items()
            if now.wall_ms >= self._forget_at(ap) and ap.next_deadline() is None
        ]
        for k in gone:
            del self._offers[k]
        return gone

    def next_deadline(self) -> float | None:
        if self._unreported and self._now is not None:
            return self._now.mono
        times = []
        for ap in self._offers.values():
            due = ap.next_deadline()
            if due is not None:
                times.append(due)
            elif self._now is not None:
                times.append(self._now.mono_at_wall(self._forget_at(ap)))
        return min(times, default=None)

    def tick(self, now: Now) -> list[OffersOutput]:
        """Tick every offer (expiries, with a waiting joiner told why), then
        forget the finished offers past their keeping time."""
        self._now = now
        out: list[OffersOutput] = [OfferForgotten(k) for k in self._unreported]
        self._unreported.clear()
        for link_id, ap in list(self._offers.items()):
            out.extend(OfferOutput(link_id, o) for o in ap.tick(now))
        out.extend(OfferForgotten(k) for k in self._forget(now))
        return out


__all__ = [
    "KEEP_FINISHED_MS",
    "MAX_OFFERS",
    "OfferForgotten",
    "OfferOutput",
    "Offers",
    "OffersOutput",
]
