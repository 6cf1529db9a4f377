"""History that proves itself (PROTOCOL.md §15.4 *History proofs*).

A device linked with approval receives its approver's earlier messages as
``HistoryBundle`` contents.  The approver is a device of the same account,
and a stolen one must not be able to plant "messages from bob": so each
entry may carry the ``HistoryProof`` of the envelope it arrived in, and the
new device checks it against its **own** replica before it shows the entry
as the sender's::

    checks = check_bundle(bundle, my_account, ledger_lookup(ledger), ledger.account_of)
    for entry, check in zip(bundle.entries, checks):
        check.verdict   # VERIFIED, UNPROVEN, FORGED or BEHIND

What the proof shows: the named sender device signed an envelope whose
inner is exactly (sender account, sender device, counter, timestamp, views,
kind, body) of the entry, and that device is one the log ever made a device
of the sender account; the recipient account through the views, whose heads
are events of the accounts they view (a message bob wrote to carol does not
pass as one he wrote to us).  What it does not show: the message id, which
sits in the clear header that the proof carries as its hash only (the wraps
make the header too big to relay, and the ratchet layer changes them).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import Enum

from protocol.core import crypto
from protocol.core.canonical import encode_flat
from protocol.core.errors import BadSignatureError, InvalidInput
from protocol.log.state import DeviceStatus
from protocol.messaging.content import (
    MAX_CONTENT_BYTES,
    MAX_HISTORY_ENTRIES,
    HistoryBundle,
    HistoryEntry,
    HistoryProof,
    ProofView,
)
from protocol.messaging.envelope import D_ENV_INNER, D_ENV_SIG, HeadsView, StateLookup

#: the account an event held here belongs to, or None (``Ledger.account_of``)
EventAccount = Callable[[bytes], bytes | None]

#: device statuses that make a signer "a device of that account" for a past
#: message: it was active when it signed (the approver opened the envelope
#: only then, §15.5 step 7).  A revocation or a recovery ends a device's
#: future, not the messages it sent before; a VOID device's adding event
#: never counted (§7.2 rules 4 and 5), so it never was one.
_WAS_A_DEVICE = frozenset(
    {DeviceStatus.ACTIVE, DeviceStatus.REVOKED, DeviceStatus.REMOVED_BY_RECOVERY}
)


class EntryVerdict(Enum):
    #: the proof holds: shown as the sender's
    VERIFIED = "verified"
    #: no proof (stored before proofs were kept, or held as relayed itself):
    #: stored and shown as relayed by the device that sent the bundle
    UNPROVEN = "unproven"
    #: a proof that does not hold: never stored, counted
    FORGED = "forged"
    #: this replica lacks the events to decide (the sender account, or the
    #: heads the proof names): the bundle is refused for now (``HistoryBehindError``)
    BEHIND = "behind"


@dataclass(frozen=True, slots=True)
class EntryCheck:
    verdict: EntryVerdict
    #: why, for a FORGED or BEHIND verdict (no secrets: ids only)
    reason: str = ""
    #: for BEHIND: what the proof says the sender account's heads were
    view: HeadsView | None = None


class HistoryBehindError(InvalidInput):
    """A history entry names events this replica does not hold yet: refused
    before anything is stored, so that the sender's retry, once this node
    has caught up (``views``, as for ``SenderNotActiveError``), can prove it."""

    code = "history_behind"

    def __init__(self, message: str, views: tuple[HeadsView, ...]) -> None:
        super().__init__(message)
        self.views = views


def inner_of(entry: HistoryEntry, proof: HistoryProof) -> bytes:
    """The envelope's inner (§15.3 step 5) rebuilt from the entry's claims
    and its proof: canonical encoding makes it byte for byte the signed one."""
    return encode_flat(
        [
            entry.sender_account,
            entry.sender_device,
            proof.counter,
            entry.timestamp,
            [[count, list(heads)] for count, heads in proof.views],
            int(entry.content.kind),
            encode_flat(entry.content.to_wire()),
            [],  # extensions: empty in version 1 (§15.9)
        ]
    )


def signed_message(entry: HistoryEntry, proof: HistoryProof) -> bytes:
    """``D_ENV_SIG ‖ H(header) ‖ H(inner)``, what the sender device signed (§15.3 step 6)."""
    return D_ENV_SIG + proof.header_hash + crypto.hash32(D_ENV_INNER, inner_of(entry, proof))


def _view(account: bytes, view: ProofView, states: StateLookup) -> HeadsView:
    state = states(account)
    return HeadsView(account, view[0], view[1], None if state is None else state.heads)


def check_entry(
    entry: HistoryEntry,
    my_account: bytes,
    states: StateLookup,
    event_account: EventAccount,
) -> EntryCheck:
    """Whether ``entry`` proves its sender, against the caller's own replica."""
    proof = entry.proof
    if proof is None:
        return EntryCheck(EntryVerdict.UNPROVEN)
    outgoing = entry.sender_account == my_account
    if not outgoing and entry.peer_account != entry.sender_account:
        return EntryCheck(EntryVerdict.FORGED, "another account's message is in its conversation")
    recipient = entry.peer_account if outgoing else my_account
    if len(proof.views) != (1 if recipient == entry.sender_account else 2):
        return EntryCheck(EntryVerdict.FORGED, "one view per account of the conversation")
    try:
        crypto.verify(entry.sender_device, signed_message(entry, proof), proof.signature)
    except BadSignatureError:
        return EntryCheck(EntryVerdict.FORGED, "the signature does not verify under its sender")
    # The views name the accounts the signer wrote between: each held head is
    # an event of the account it views, and the recipient's must all be held
    # here, so that a message to another account does not pass as one to
    # this conversation (§15.4 step 5).
    viewed = (entry.sender_account, recipient)[: len(proof.views)]
    for account, (_, heads) in zip(viewed, proof.views, strict=True):
        if any(event_account(h) not in (None, account) for h in heads):
            return EntryCheck(
                EntryVerdict.FORGED, "the views are not the sender's and the recipient's accounts"
            )
    if len(proof.views) == 2 and any(event_account(h) is None for h in proof.views[1][1]):
        view = _view(recipient, proof.views[1], states)
        if view.local_heads is None:
            # an account this node does not follow (an own text to a
            # stranger): nothing to catch up from, so relayed, not proven
            return EntryCheck(EntryVerdict.UNPROVEN, "the recipient's log is not here")
        return EntryCheck(EntryVerdict.BEHIND, "the recipient's events are not here yet", view)
    state = states(entry.sender_account)
    device = None if state is None else state.device(entry.sender_device)
    if device is None:
        # Unknown here: either we are behind (the proof's heads are events we
        # lack) or the device never was one of that account's: a forgery.
        view = _view(entry.sender_account, proof.views[0], states)
        if state is None or not all(event_account(h) is not None for h in view.claimed_heads):
            return EntryCheck(EntryVerdict.BEHIND, "the sender's events are not here yet", view)
        return EntryCheck(EntryVerdict.FORGED, "the signer never was a device of that account")
    if device.status not in _WAS_A_DEVICE:
        return EntryCheck(EntryVerdict.FORGED, "the signer's adding event is void")
    return EntryCheck(EntryVerdict.VERIFIED)


def check_bundle(
    bundle: HistoryBundle,
    my_account: bytes,
    states: StateLookup,
    event_account: EventAccount,
) -> list[EntryCheck]:
    """One check per entry, in order (at most ``MAX_HISTORY_ENTRIES``
    signature checks: the bundle's size is bounded before it is parsed)."""
    return [check_entry(e, my_account, states, event_account) for e in bundle.entries]


def behind_error(checks: Sequence[EntryCheck]) -> HistoryBehindError | None:
    """The refusal for a bundle with BEHIND entries, or None."""
    views = {c.view.account: c.view for c in checks if c.view is not None}
    behind = sum(c.verdict is EntryVerdict.BEHIND for c in checks)
    if not behind:
        return None
    return HistoryBehindError(
        f"{behind} history entries name events this node does not hold yet",
        tuple(views.values()),
    )


# --------------------------------------------------------------------------
# Sending: entries packed into bundles by bytes (§15.4 *History bundles*)

#: the body's own bytes around its entries: the array, two part numbers
#: (at most 9 bytes each) and the entries' array header (at most 5)
BUNDLE_OVERHEAD = 1 + 9 + 9 + 5


def entry_size(entry: HistoryEntry) -> int:
    """Encoded bytes of one entry inside a bundle's body."""
    return len(encode_flat(entry.to_wire()))


def pack_history(
    entries: Sequence[HistoryEntry],
    max_parts: int,
    *,
    max_body: int = MAX_CONTENT_BYTES,
    max_entries: int = MAX_HISTORY_ENTRIES,
) -> tuple[HistoryBundle, ...]:
    """``entries`` (oldest first) as at most ``max_parts`` bundles, each
    within ``max_entries`` entries and a body of ``max_body`` bytes, so
    that every one seals within ``MAX_ENVELOPE_BYTES``.  When they do not
    all fit, the newest are kept: parts fill from the newest entry back."""
    parts: list[list[HistoryEntry]] = []
    size = 0
    for entry in reversed(entries):
        n = entry_size(entry)
        if n + BUNDLE_OVERHEAD > max_body:
            continue  # cannot happen within the text limit; never sent broken
        if not parts or len(parts[-1]) >= max_entries or size + n > max_body - BUNDLE_OVERHEAD:
            if len(parts) == max_parts:
                break
            parts.append([])
            size = 0
        parts[-1].append(entry)
        size += n
    ordered = [list(reversed(p)) for p in reversed(parts)]  # oldest part first
    return tuple(HistoryBundle(i, len(ordered), tuple(p)) for i, p in enumerate(ordered))
