"""Message requests: texts from accounts that are not contacts (PROTOCOL.md
§15.14 "Message requests"; DESIGN §10 "Contacts belong to the account").

Every decision that treats a stranger differently from a contact asks the
contact-set service (``ContactSet``), never the contacts table: whether a
text is a request, whether it may be stored, whether it earns a receipt.

A stranger's text is stored as a request only within caps, per sender and
in total; over a cap it is refused with ``requests_full`` before anything
is written (not even its replay counter), so the refusal costs one opened
envelope and two index-only sums.  Requests nobody accepted expire.  No
receipt goes to a stranger: a receipt, signed by this device, tells a
spammer that the account is alive and read; when the user accepts a
request, the receipts for the waiting messages go out then.
"""

from __future__ import annotations

from dataclasses import dataclass

from protocol.messaging.envelope import RequestsFullError

from ..storage.db import Statement
from ..storage.messages import DAY_MS, MessageStore
from .contacts import ContactSet


@dataclass(frozen=True, slots=True)
class RequestLimits:
    """What this node keeps of strangers' texts (values: PROTOCOL.md §15.14).

    Per sender: 10 texts or 256 KiB (four texts of the 64 KiB maximum),
    enough for a stranger to say who they are and why they write; the rest
    is refused, and the sender's outbox retries it (with back-off, for the
    14 days of its lifetime), so once the user accepts, it arrives.  In
    total: 1,000 texts or 8 MiB, so that a flood from many new accounts
    costs this node at most 8 MiB of disk however many accounts it made;
    while the total is full, new strangers wait (contacts never do).
    Requests expire after 14 days, the lifetime of a sender's outbox row:
    by then no honest sender is still trying.
    """

    per_sender_count: int = 10
    per_sender_bytes: int = 256 * 1024
    total_count: int = 1_000
    total_bytes: int = 8 * 1024 * 1024
    lifetime_ms: int = 14 * DAY_MS


class Requests:
    """The request policy over the message store and the contact set."""

    def __init__(
        self, store: MessageStore, contacts: ContactSet, limits: RequestLimits | None = None
    ) -> None:
        self.store = store
        self.contacts = contacts
        self.limits = limits or RequestLimits()

    def is_request(self, sender: bytes) -> bool:
        """A text from ``sender`` waits for the user's decision."""
        return not self.contacts.is_contact(sender)

    def earns_receipt(self, sender: bytes) -> bool:
        """Receipts go to contacts only (a receipt proves the account is alive)."""
        return self.contacts.is_contact(sender)

    def since(self, now_ms: int) -> int:
        """Requests stored before this have expired."""
        return now_ms - self.limits.lifetime_ms

    def admit(self, sender: bytes, size: int, now_ms: int) -> None:
        """Raise ``RequestsFullError`` unless one more request of ``size``
        bytes from ``sender`` fits every cap."""
        lim, since = self.limits, self.since(now_ms)
        mine = self.store.request_usage(since, sender)
        if mine.count + 1 > lim.per_sender_count or mine.size + size > lim.per_sender_bytes:
            raise RequestsFullError(
                f"this account keeps at most {lim.per_sender_count} message requests "
                f"({lim.per_sender_bytes // 1024} KiB) from one sender until they are accepted"
            )
        every = self.store.request_usage(since)
        if every.count + 1 > lim.total_count or every.size + size > lim.total_bytes:
            raise RequestsFullError("this account keeps no more message requests for now")

    def sweep_statements(self, now_ms: int) -> list[Statement]:
        """Delete requests that expired unaccepted."""
        return [MessageStore.expire_requests_statement(self.since(now_ms))]
