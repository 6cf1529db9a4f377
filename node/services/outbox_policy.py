"""When an outbox row is tried again, and which answers end it (PROTOCOL.md
§15.14, §19.13): the delivery policy the message service applies after
every attempt, apart so that it can be read (and tested) on its own."""

from __future__ import annotations

from ..storage.messages import DeliveryState, DueDelivery

DELIVERY_TIMEOUT = 10.0
MAX_BACKOFF_MS = 5 * 60 * 1000
MAX_IN_FLIGHT = 32
DEPOSITED = "deposited"
#: answers that mean the device cannot open our session with it, or not
#: this message's key (§19.13): the session ends; a text refused with
#: ``session_key_gone`` or ``prekey_reused`` is sealed again (``resets.RESEAL``)
SESSION_LOST = frozenset(
    {"prekey_unknown", "prekey_reused", "session_wrong", "session_identity", "session_key_gone"}
)
# Refusals that mean "this envelope can never be opened there": stop trying.
FINAL = {"not_for_this_device", "decrypt", "bad_signature", "schema", "session_decrypt"}
FINAL_REFUSALS = SESSION_LOST | FINAL
#: answers that mean the device has this message already: the session key
#: of a resent envelope is used up there (§19.5), as its counter is (§15.6).
#: Never ``session_key_gone``: that key may have been dropped unused
ALREADY_THERE = frozenset({"replay", "session_duplicate"})


def backoff_ms(attempts: int) -> int:
    """Wait after ``attempts`` failed tries: 1 s, 2 s, 4 s, ... up to 5 minutes."""
    return min(MAX_BACKOFF_MS, 1000 << min(attempts, 16))


def next_delivery(due: DueDelivery, error: str | None, now_ms: int) -> tuple[DeliveryState, int]:
    """A row's state after one attempt that ended with ``error`` (None: the
    device's node stored it), and when it is due again (§15.14).  A row
    still being tried is never due after its expiry, so the loop finds it
    then and ends it."""
    policy = due.policy
    if error is None:
        return DeliveryState.DELIVERED, 0
    if error.split(":")[0] in FINAL_REFUSALS:
        return DeliveryState.FAILED, 0
    if due.attempts + 1 >= policy.max_attempts:
        return DeliveryState.EXPIRED, 0
    if error == DEPOSITED:
        # At a mailbox: a text's receipt says when it arrives; until then
        # keep trying directly, slowly (a mailbox is never the only copy).
        # Nothing ever confirms a receipt or history: its deposit was its
        # last try, and it ends as expired at the end of its lifetime.
        retry = policy.deposited_retry_ms
        later = due.expires_ms if retry is None else now_ms + retry
        return DeliveryState.DEPOSITED, min(later, due.expires_ms)
    return DeliveryState.PENDING, min(now_ms + backoff_ms(due.attempts), due.expires_ms)
