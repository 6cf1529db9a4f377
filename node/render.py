"""Account states as JSON documents and terminal text (names sanitised)."""

from __future__ import annotations

from protocol.core.keys import fingerprint, handle
from protocol.core.names import sanitise
from protocol.log.state import AccountState

from .api.account import AccountStateDoc


def approver_label(state: AccountState, approver: bytes, device: bytes | None = None) -> str:
    if approver == device:
        return "itself, creating the account"
    d = state.device(approver)
    if d is None:
        return "recovery key"
    return f"{sanitise(d.name)} ({d.fingerprint})"


def state_json(state: AccountState) -> AccountStateDoc:
    return {
        "account_id": state.account_id.hex(),
        "handle": handle(state.display_name, state.account_id),
        "display_name": sanitise(state.display_name),
        "status": state.status.value,
        "event_count": state.event_count,
        "heads": [h.hex() for h in state.heads],
        "state_digest": state.digest.hex(),
        # which recovery key is in force (a hash, no secret): it changes on a
        # recovery or a rotation of the key (§6.8); null once compromised
        "recovery_commitment": (
            state.recovery_commitment.hex() if state.recovery_commitment else None
        ),
        "devices": [
            {
                "name": sanitise(d.name),
                "fingerprint": d.fingerprint,
                "sign_public": d.sign_public.hex(),
                "enc_public": d.enc_public.hex(),
                "status": d.status.value,
                "added_by_event": d.added_by.hex(),
                "approved_by": approver_label(state, d.approver, d.sign_public),
                "approver_fingerprint": fingerprint(d.approver),
                "added_at_ms": d.added_at,
                "ended_by_event": d.ended_by.hex() if d.ended_by else None,
                "ended_at_ms": d.ended_at,
            }
            for d in state.devices
        ],
        "voided_events": [
            {
                "event_id": v.event_id.hex(),
                "kind": v.kind.name.lower(),
                "reason": v.reason.value,
                "explanation": v.explain(),
            }
            for v in state.voided
        ],
        "disputes": [[a.hex(), b.hex()] for a, b in state.disputes],
    }


def state_text(doc: AccountStateDoc) -> str:
    lines = [
        f"{doc['handle']}  [{doc['status']}]",
        f"  account  {doc['account_id']}",
        f"  events   {doc['event_count']}   heads {', '.join(h[:12] for h in doc['heads'])}",
        f"  digest   {doc['state_digest'][:32]}",
        "  devices:",
    ]
    for d in doc["devices"]:
        lines.append(
            f"    {d['status']:<20} {d['name']:<16} {d['fingerprint']}"
            f"   approved by {d['approved_by']}"
        )
    for v in doc["voided_events"]:
        lines.append(f"  void {v['kind']} {v['event_id'][:12]}: {v['explanation']}")
    if doc["status"] != "ok":
        lines.append(
            "  WARNING: this account is " + doc["status"] + "; do not trust its devices until "
            "its owner recovers it"
        )
    return "\n".join(lines)
