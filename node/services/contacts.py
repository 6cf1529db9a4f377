"""Contacts, invites and safety numbers: the ``invite.*`` and ``contact.*``
namespaces (DESIGN §6), and the account-level contact set (DESIGN §10).

A contact is an account id.  What the user last acknowledged of its devices
is stored, so every later change to the account (device added, revoked,
voided, removed by a recovery, the account disputed) is shown with who
approved it until the user has seen it.  Verification rests on the safety
number of the two account ids; it survives device changes, because each is
authorised in the log, but a recovery always asks for re-verification.

``ContactSet`` is the one place that answers "is this account a contact";
message requests and their caps, receipts and (later) quotas all ask it
(``node/services/requests.py``).  It is backed by
this device's table until account-wide sync fills it for every device.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, Protocol

from protocol.core.errors import InvalidInput
from protocol.core.invite import Invite
from protocol.core.keys import handle, safety_number
from protocol.core.names import sanitise
from protocol.log.events import EventKind
from protocol.log.ledger import Ledger
from protocol.log.state import AccountState, AccountStatus
from protocol.messaging.tokens import TokenBatch, for_invite

from .. import control
from ..context import NodeContext
from ..control import RpcFailure
from ..render import approver_label
from ..storage.contacts import ContactRow, ContactStore
from ..storage.db import Statement


def device_statuses(state: AccountState) -> dict[str, str]:
    return {d.sign_public.hex(): d.status.value for d in state.devices}


def recover_count(ledger: Ledger, account: bytes) -> int:
    return sum(1 for e in ledger.log(account).events if e.kind is EventKind.RECOVER)


def changes_since(state: AccountState, seen: dict[str, str]) -> list[str]:
    """What changed in ``state`` since the user saw ``seen``, with approvers."""
    out = []
    for d in state.devices:
        before = seen.get(d.sign_public.hex())
        name = f"{sanitise(d.name)!r} ({d.fingerprint})"
        if before is None:
            approver = approver_label(state, d.approver, d.sign_public)
            out.append(f"device {name} added ({d.status.value}), approved by {approver}")
        elif before != d.status.value:
            out.append(f"device {name} is now {d.status.value} (was {before})")
    if state.status is not AccountStatus.OK:
        out.append(
            f"the account is {state.status.value}: its devices cannot be trusted until "
            "its owner recovers it"
        )
    return out


class ContactSet:
    """Is this account a contact, blocked, and what is it called here."""

    def __init__(self, store: ContactStore, ledger: Ledger) -> None:
        self.store = store
        self.ledger = ledger
        #: called with the account after a contact is added (e.g. to hand it
        #: mailbox tokens, PROTOCOL.md §15.16)
        self.on_added: list[Callable[[bytes], object]] = []

    def is_contact(self, account: bytes) -> bool:
        row = self.store.get(account)
        return row is not None and not row.blocked

    def is_blocked(self, account: bytes) -> bool:
        row = self.store.get(account)
        return row is not None and row.blocked

    def label(self, account: bytes) -> str:
        """The contact's name, else the account's handle, else a short id."""
        row = self.store.get(account)
        if row is not None:
            return sanitise(row.name)
        if account in self.ledger.accounts:
            return handle(self.ledger.state(account).display_name, account)
        return account.hex()[:12]

    def display_name(self, account: bytes) -> str | None:
        if account in self.ledger.accounts:
            return self.ledger.state(account).display_name
        return None

    def find(self, ref: str) -> tuple[bytes, str]:
        """A contact (blocked ones too) by its name, handle or account id."""
        for row in self.store.all(blocked=None):
            acc = row.account
            label = handle(self.display_name(acc) or row.name, acc)
            if ref in (row.name, acc.hex(), label) or (len(ref) >= 6 and label.endswith(ref)):
                return acc, row.name
        raise RpcFailure(control.USAGE, f"no contact {ref!r}: see `smu contact list`")

    def add(self, account: bytes, name: str) -> None:
        known = account in self.ledger.accounts
        seen = device_statuses(self.ledger.state(account)) if known else {}
        self.store.add(account, name, int(time.time() * 1000), seen)
        for hook in self.on_added:
            hook(account)

    def block_statement(self, account: bytes, now_ms: int) -> Statement:
        """Block ``account`` (a blocked contact if it was none), as a
        statement for the caller's transaction."""
        return self.store.block_statement(account, account.hex()[:12], now_ms)


class InviteTokens(Protocol):
    """Mailbox tokens in invites (``services/tokens.py``)."""

    def invite_batches(self) -> tuple[TokenBatch, ...]: ...

    def hold_invite(self, invite: Invite) -> int: ...


class ContactService:
    def __init__(
        self, ctx: NodeContext, contacts: ContactSet, tokens: InviteTokens | None = None
    ) -> None:
        self.ctx = ctx
        self.contacts = contacts
        self.store = contacts.store
        #: puts a few of this device's tokens in each invite, and keeps those
        #: of invites it is given
        self.tokens = tokens

    def handlers(self) -> dict[str, control.Handler]:
        return {
            "invite.create": self.invite_create,
            "contact.add": self.contact_add,
            "contact.list": self.contact_list,
            "contact.ack": self.contact_ack,
            "contact.verify": self.contact_verify,
        }

    async def invite_create(self, params: dict[str, Any]) -> dict[str, Any]:
        account = self.ctx.own_account()
        state = self.ctx.ledger.state(account)
        inv = Invite(
            self.ctx.params.network_id,
            account,
            state.display_name,
            tuple(self.ctx.addresses()[:4]),
            for_invite(self.tokens.invite_batches()) if self.tokens is not None else (),
        )
        return {
            "invite": inv.to_text(),
            "uri": inv.to_uri(),
            "handle": handle(state.display_name, account),
        }

    async def contact_add(self, params: dict[str, Any]) -> dict[str, Any]:
        ref = str(params["ref"]).strip()
        name = params.get("name")
        if ref.lower().startswith(("smu1inv", "smu://invite/")):
            try:
                inv = Invite.parse(ref, self.ctx.params)
            except InvalidInput as exc:
                raise RpcFailure(control.USAGE, f"invite: {exc}") from exc
            account, hint = inv.account, inv.display_name
            if self.tokens is not None and account != self.ctx.own_account():
                self.tokens.hold_invite(inv)
            for addr in inv.addrs:
                try:
                    await self.ctx.dial(addr)
                    break
                except Exception:  # an unreachable inviter is not an error: gossip may bring it
                    continue
        else:
            account = self.ctx.resolve_account(ref)
            hint = self.contacts.display_name(account) or ""
        if account == self.ctx.own_account():
            raise RpcFailure(control.USAGE, "that is your own account")
        label = str(name or hint or account.hex()[:12])
        self.contacts.add(account, label)
        return {
            "account_id": account.hex(),
            "name": label,
            "synced": account in self.ctx.ledger.accounts,
            "handle": handle(self.contacts.display_name(account) or hint or label, account),
        }

    def _contact_doc(self, row: ContactRow) -> dict[str, Any]:
        acc = row.account
        ledger = self.ctx.ledger
        doc: dict[str, Any] = {"account_id": acc.hex(), "name": sanitise(row.name)}
        if acc not in ledger.accounts:
            doc.update(
                synced=False,
                handle=None,
                status="unknown",
                verified=row.verified,
                changes=["this account's log has not reached this node yet"],
            )
            return doc
        state = ledger.state(acc)
        recovered = recover_count(ledger, acc) > row.verified_recovers
        changes = changes_since(state, row.seen_devices)
        if row.verified and recovered:
            changes.append(
                "the account was recovered since you verified it: verify the safety number again"
            )
        doc.update(
            synced=True,
            handle=handle(state.display_name, acc),
            status=state.status.value,
            verified=row.verified and not recovered,
            active_devices=len(state.active_keys),
            changes=changes,
        )
        return doc

    def contact_docs(self) -> list[dict[str, Any]]:
        return [self._contact_doc(r) for r in self.store.all()]

    async def contact_list(self, params: dict[str, Any]) -> dict[str, Any]:
        return {"contacts": self.contact_docs()}

    async def contact_ack(self, params: dict[str, Any]) -> dict[str, Any]:
        account, _ = self.contacts.find(str(params["contact"]))
        if account in self.ctx.ledger.accounts:
            self.store.set_seen(account, device_statuses(self.ctx.ledger.state(account)))
        return {"account_id": account.hex(), "acknowledged": True}

    async def contact_verify(self, params: dict[str, Any]) -> dict[str, Any]:
        account, _ = self.contacts.find(str(params["contact"]))
        own = self.ctx.own_account()
        number = safety_number(own, account)
        if params.get("confirm"):
            if account not in self.ctx.ledger.accounts:
                raise RpcFailure(control.USAGE, "the contact's log is not here yet: verify later")
            self.store.set_verified(account, recover_count(self.ctx.ledger, account))
        row = self.store.get(account)
        assert row is not None
        return {"contact": self._contact_doc(row), "safety_number": number}
