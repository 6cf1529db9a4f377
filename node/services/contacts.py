"""Contacts, invites and safety numbers: the ``invite.*`` and ``contact.*``
namespaces (DESIGN §6), and the account-level contact set (DESIGN §10).

A contact is an account id.  Contacts, blocks and verification marks
belong to the account: they are synced among its devices
(``node/services/sync.py``), so a contact added on one device is one on all.
What the user last acknowledged of a contact's devices is kept per device,
so every later change to the account (device added, revoked, voided,
removed by a recovery, the account disputed) is shown with who approved it
until the user has seen it.  Verification rests on the safety number of the
two accounts and their recovery epochs (PROTOCOL.md §4.6): device changes
never change it, a recovery always does, and a mark is kept per epoch.

``ContactSet`` is the one place that answers "is this account a contact";
message requests and their caps, receipts and mailbox tokens all ask it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from protocol.core.canonical import Value
from protocol.core.errors import InvalidInput
from protocol.core.invite import Invite
from protocol.core.keys import handle, safety_number
from protocol.core.names import sanitise
from protocol.log.ledger import Ledger
from protocol.log.state import AccountState, AccountStatus
from protocol.messaging.sync import Edit
from protocol.messaging.tokens import TokenBatch, for_invite

from .. import control
from ..api import contact as api
from ..api.schema import Empty
from ..context import NodeContext
from ..control import RpcFailure
from ..render import approver_label
from ..storage.contacts import ContactStore


def device_statuses(state: AccountState) -> dict[str, str]:
    return {d.sign_public.hex(): d.status.value for d in state.devices}


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


class Sync(Protocol):
    """The account-wide state (``services/sync.py``)."""

    def value(self, key: str) -> Value | None: ...

    def winner(self, key: str) -> Edit | None: ...

    def view(self, prefix: str) -> dict[str, Edit]: ...

    def edit(self, key: str, value: Value) -> Edit | None: ...


def _contact_key(account: bytes) -> str:
    return f"contact/{account.hex()}"


def _block_key(account: bytes) -> str:
    return f"block/{account.hex()}"


def _verified_key(account: bytes, epoch: bytes) -> str:
    return f"verified/{account.hex()}/{epoch.hex()}"


@dataclass(frozen=True, slots=True)
class Contact:
    account: bytes
    name: str
    blocked: bool


class ContactSet:
    """Is this account a contact, blocked, and what is it called here: read
    from the account's synced state."""

    def __init__(self, store: ContactStore, ledger: Ledger, sync: Sync) -> None:
        #: this device's own notes (what the user acknowledged of each contact)
        self.store = store
        self.ledger = ledger
        self.sync = sync
        #: called with the account after a contact is added (e.g. to hand it
        #: mailbox tokens, PROTOCOL.md §15.16)
        self.on_added: list[Callable[[bytes], object]] = []

    def _name(self, account: bytes) -> str | None:
        value = self.sync.value(_contact_key(account))
        if isinstance(value, dict) and isinstance(value.get("name"), str) and value["name"]:
            return str(value["name"])
        return None

    def is_contact(self, account: bytes) -> bool:
        return self._name(account) is not None and not self.is_blocked(account)

    def is_blocked(self, account: bytes) -> bool:
        return self.sync.value(_block_key(account)) is True

    def label(self, account: bytes) -> str:
        """The contact's name, else the account's handle, else a short id."""
        name = self._name(account)
        if name is not None:
            return sanitise(name)
        if account in self.ledger.accounts:
            return handle(self.ledger.state(account).display_name, account)
        return account.hex()[:12]

    def display_name(self, account: bytes) -> str | None:
        if account in self.ledger.accounts:
            return self.ledger.state(account).display_name
        return None

    def all(self, *, blocked: bool | None = False) -> list[Contact]:
        """Contacts by name; ``blocked=None`` includes blocked ones (and
        blocked accounts that never were contacts)."""
        accounts = {bytes.fromhex(k.split("/")[1]) for k in self.sync.view("contact/")}
        accounts |= {bytes.fromhex(k.split("/")[1]) for k in self.sync.view("block/")}
        out = []
        for account in accounts:
            name, is_blocked = self._name(account), self.is_blocked(account)
            if name is None and not is_blocked:
                continue
            if blocked is None or blocked == is_blocked:
                out.append(Contact(account, name or account.hex()[:12], is_blocked))
        return sorted(out, key=lambda c: (c.name, c.account))

    def find(self, ref: str) -> tuple[bytes, str]:
        """A contact (blocked ones too) by its name, handle or account id."""
        for c in self.all(blocked=None):
            label = handle(self.display_name(c.account) or c.name, c.account)
            if ref in (c.name, c.account.hex(), label) or (len(ref) >= 6 and label.endswith(ref)):
                return c.account, c.name
        raise RpcFailure(control.USAGE, f"no contact {ref!r}: see `smu contact list`")

    def _note(self, account: bytes) -> None:
        """This device's note of what the user has seen of the account."""
        if self.store.get(account) is None:
            known = account in self.ledger.accounts
            seen = device_statuses(self.ledger.state(account)) if known else {}
            self.store.add(account, self._name(account) or "", int(time.time() * 1000), seen)

    def _edit(self, key: str, value: Value) -> Edit:
        edit = self.sync.edit(key, value)
        if edit is None:  # nothing to sync with: no account, or its log not here
            raise RpcFailure(
                control.USAGE, "this device's account log is not here yet: try again shortly"
            )
        return edit

    def add(self, account: bytes, name: str) -> None:
        self._edit(_contact_key(account), {"name": name})
        self._note(account)
        for hook in self.on_added:
            hook(account)

    def remove(self, account: bytes) -> None:
        """No longer a contact, on every device (a removed contact's
        messages stay; new ones are requests again)."""
        self._edit(_contact_key(account), {})

    def block(self, account: bytes) -> None:
        self._edit(_block_key(account), True)

    def unblock(self, account: bytes) -> None:
        self._edit(_block_key(account), False)

    def seen(self, account: bytes) -> dict[str, str] | None:
        """What this device's user acknowledged of the account's devices; a
        contact that reached this device by sync starts from the devices
        it has when first shown here (the device that added it showed them)."""
        self._note(account)
        note = self.store.get(account)
        return note.seen_devices if note is not None else None

    # -- verification marks, per recovery epoch (§4.6) --------------------

    def epoch(self, account: bytes) -> bytes:
        return self.ledger.recovery_epoch(account)

    def mark(self, account: bytes) -> Edit | None:
        """The mark for the account's current epoch, if someone made one."""
        if account not in self.ledger.accounts:
            return None
        w = self.sync.winner(_verified_key(account, self.epoch(account)))
        return w if w is not None and w.value is True else None

    def mark_verified(self, account: bytes) -> None:
        self._edit(_verified_key(account, self.epoch(account)), True)

    def marked_before(self, account: bytes) -> bool:
        """A mark exists for an earlier epoch (it was verified, then recovered)."""
        current = _verified_key(account, self.epoch(account))
        return any(
            k != current and e.value is True
            for k, e in self.sync.view(f"verified/{account.hex()}/").items()
        )

    def import_legacy(self) -> int:
        """Contacts from the table of before account-wide sync become edits
        of this device, once (a mark made before a recovery of its account
        counted recovers: it carries over to the genesis epoch, §4.6)."""
        moved = 0
        for row in self.store.all(blocked=None):
            if self.sync.winner(_contact_key(row.account)) is not None or not row.name:
                continue
            self.sync.edit(_contact_key(row.account), {"name": row.name})
            if row.blocked:
                self.sync.edit(_block_key(row.account), True)
            if row.verified and row.verified_recovers == 0:
                self.sync.edit(_verified_key(row.account, row.account), True)
            moved += 1
        return moved


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
            "invite.create": api.INVITE_CREATE.bind(self.invite_create),
            "contact.add": api.CONTACT_ADD.bind(self.contact_add),
            "contact.remove": api.CONTACT_REMOVE.bind(self.contact_remove),
            "contact.block": api.CONTACT_BLOCK.bind(self.contact_block),
            "contact.list": api.CONTACT_LIST.bind(self.contact_list),
            "contact.ack": api.CONTACT_ACK.bind(self.contact_ack),
            "contact.verify": api.CONTACT_VERIFY.bind(self.contact_verify),
        }

    async def invite_create(self, params: Empty) -> api.Invite:
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

    async def contact_add(self, params: api.AddParams) -> api.Added:
        ref = params["ref"].strip()
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
        elif ref.lower().startswith(("smu1link", "smu://link/")):
            raise RpcFailure(
                control.USAGE,
                "that is a device link, not an invite: use it on the new device, "
                "with `smu device join`",
            )
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

    def _contact_doc(self, contact: Contact) -> api.ContactDoc:
        acc = contact.account
        ledger = self.ctx.ledger
        if acc not in ledger.accounts:
            return {
                "account_id": acc.hex(),
                "name": sanitise(contact.name),
                "blocked": contact.blocked,
                "synced": False,
                "handle": None,
                "status": "unknown",
                "verified": False,
                "changes": ["this account's log has not reached this node yet"],
            }
        state = ledger.state(acc)
        changes = changes_since(state, self.contacts.seen(acc) or {})
        mark = self.contacts.mark(acc)
        if mark is None and self.contacts.marked_before(acc):
            changes.append(
                "the account was recovered since you verified it: its safety number "
                "changed, verify the safety number again"
            )
        verified = mark is not None and state.status is AccountStatus.OK
        doc: api.ContactDoc = {
            "account_id": acc.hex(),
            "name": sanitise(contact.name),
            "blocked": contact.blocked,
            "synced": True,
            "handle": handle(state.display_name, acc),
            "status": state.status.value,
            # a disputed account shows no verified mark at all (DESIGN §6)
            "verified": verified,
            "active_devices": len(state.active_keys),
            "changes": changes,
        }
        if mark is not None:
            doc["verified_by"] = self._marker(mark.device)
        return doc

    def _marker(self, device: bytes) -> api.Marker:
        """Which of the own account's devices made a mark, and whether it
        is still active (a since-revoked device's mark shows as such)."""
        own = self.ctx.own_account()
        d = self.ctx.ledger.state(own).device(device) if own in self.ctx.ledger.accounts else None
        return {
            "device": sanitise(d.name) if d is not None else device.hex()[:12],
            "status": d.status.value if d is not None else "unknown",
        }

    def contact_docs(self) -> list[api.ContactDoc]:
        """Contacts that are not blocked (what the inbox shows changes of)."""
        return [self._contact_doc(c) for c in self.contacts.all()]

    async def contact_list(self, params: Empty) -> api.ContactList:
        """Every contact, blocked ones too (marked), so that they can be unblocked."""
        return {"contacts": [self._contact_doc(c) for c in self.contacts.all(blocked=None)]}

    async def contact_remove(self, params: api.ContactParams) -> api.Removed:
        account, name = self.contacts.find(params["contact"])
        self.contacts.remove(account)
        return {"account_id": account.hex(), "name": sanitise(name), "removed": True}

    async def contact_block(self, params: api.BlockParams) -> api.Blocked:
        """Block (``unblock``: false to undo) an account, on every device."""
        try:
            account, _ = self.contacts.find(params["contact"])
        except RpcFailure:
            account = self.ctx.resolve_account(params["contact"])
        if params.get("unblock"):
            self.contacts.unblock(account)
        else:
            self.contacts.block(account)
        return {"account_id": account.hex(), "blocked": not params.get("unblock")}

    async def contact_ack(self, params: api.ContactParams) -> api.Acknowledged:
        account, _ = self.contacts.find(params["contact"])
        if account in self.ctx.ledger.accounts:
            self.store.set_seen(account, device_statuses(self.ctx.ledger.state(account)))
        return {"account_id": account.hex(), "acknowledged": True}

    async def contact_verify(self, params: api.VerifyParams) -> api.Verified:
        account, name = self.contacts.find(params["contact"])
        own = self.ctx.own_account()
        ledger = self.ctx.ledger
        if account not in ledger.accounts:
            raise RpcFailure(control.USAGE, "the contact's log is not here yet: verify later")
        number = safety_number(
            own, ledger.recovery_epoch(own), account, ledger.recovery_epoch(account)
        )
        if params.get("confirm"):
            if ledger.state(account).status is not AccountStatus.OK:
                raise RpcFailure(
                    control.USAGE,
                    "a disputed account cannot be verified: its owner must recover it",
                )
            self.contacts.mark_verified(account)
        contact = Contact(account, name, self.contacts.is_blocked(account))
        return {"contact": self._contact_doc(contact), "safety_number": number}
