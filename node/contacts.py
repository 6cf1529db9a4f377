"""Contacts, invites and safety numbers (issue: Messaging; DESIGN §6).

A contact is an account id.  What the user last acknowledged of its devices
is stored, so every later change to the account (device added, revoked,
voided, removed by a recovery, the account disputed) is shown with who
approved it until the user has seen it.  Verification rests on the safety
number of the two account ids; it survives device changes, because each is
authorised in the log, but a recovery always asks for re-verification.
"""

from __future__ import annotations

import json
import time
from typing import TYPE_CHECKING, Any

from protocol.core.errors import InvalidInput
from protocol.core.invite import Invite
from protocol.core.keys import handle, safety_number
from protocol.core.names import sanitise
from protocol.log.events import EventKind
from protocol.log.state import AccountState, AccountStatus

from . import control
from .control import RpcFailure
from .render import approver_label

if TYPE_CHECKING:
    from .daemon import Daemon


def device_statuses(state: AccountState) -> dict[str, str]:
    return {d.sign_public.hex(): d.status.value for d in state.devices}


def recover_count(daemon: Daemon, account: bytes) -> int:
    log = daemon.ledger.log(account)
    return sum(1 for e in log.events if e.kind is EventKind.RECOVER)


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


class ContactMethods:
    def __init__(self, daemon: Daemon) -> None:
        self.d = daemon
        self.db = daemon.store.db

    def handlers(self) -> dict[str, control.Handler]:
        return {
            "invite.create": self.invite_create,
            "contact.add": self.contact_add,
            "contact.list": self.contact_list,
            "contact.ack": self.contact_ack,
            "contact.verify": self.contact_verify,
        }

    async def invite_create(self, params: dict[str, Any]) -> dict[str, Any]:
        account = self.d.own_account()
        state = self.d.ledger.state(account)
        addrs = [a if "/p2p/" in a else f"{a}/p2p/{self.d.peer_id}" for a in self.d.addresses()]
        inv = Invite(self.d.params.network_id, account, state.display_name, tuple(addrs[:4]))
        return {
            "invite": inv.to_text(),
            "uri": inv.to_uri(),
            "handle": handle(state.display_name, account),
        }

    def find(self, ref: str) -> tuple[bytes, str]:
        """A contact by its name, handle or account id."""
        rows = self.db.execute("SELECT account, name FROM contacts").fetchall()
        for account, name in rows:
            acc = bytes(account)
            label = handle(self._display(acc) or name, acc)
            if ref in (name, acc.hex(), label) or (len(ref) >= 6 and label.endswith(ref)):
                return acc, str(name)
        raise RpcFailure(control.USAGE, f"no contact {ref!r}: see `smu contact list`")

    def _display(self, account: bytes) -> str | None:
        if account in self.d.ledger.accounts:
            return self.d.ledger.state(account).display_name
        return None

    async def contact_add(self, params: dict[str, Any]) -> dict[str, Any]:
        ref = str(params["ref"]).strip()
        name = params.get("name")
        if ref.lower().startswith(("smu1inv", "smu://invite/")):
            try:
                inv = Invite.parse(ref, self.d.params)
            except InvalidInput as exc:
                raise RpcFailure(control.USAGE, f"invite: {exc}") from exc
            account, hint = inv.account, inv.display_name
            for addr in inv.addrs:
                try:
                    await self.d.dial(addr)
                    break
                except Exception:  # an unreachable inviter is not an error: gossip may bring it
                    continue
        else:
            account = self.d.resolve_account(ref)
            hint = self._display(account) or ""
        if account == self.d.own_account():
            raise RpcFailure(control.USAGE, "that is your own account")
        known = account in self.d.ledger.accounts
        seen = json.dumps(device_statuses(self.d.ledger.state(account))) if known else "{}"
        label = str(name or hint or account.hex()[:12])
        self.db.execute(
            "INSERT INTO contacts(account, name, added_ms, seen_devices) VALUES(?, ?, ?, ?) "
            "ON CONFLICT(account) DO UPDATE SET name=excluded.name",
            (account, label, int(time.time() * 1000), seen),
        )
        return {
            "account_id": account.hex(),
            "name": label,
            "synced": known,
            "handle": handle(self._display(account) or hint or label, account),
        }

    def _contact_doc(self, row: tuple[Any, ...]) -> dict[str, Any]:
        account, name, verified, verified_recovers, seen_json = row
        acc = bytes(account)
        doc: dict[str, Any] = {"account_id": acc.hex(), "name": sanitise(str(name))}
        if acc not in self.d.ledger.accounts:
            doc.update(
                synced=False,
                handle=None,
                status="unknown",
                verified=bool(verified),
                changes=["this account's log has not reached this node yet"],
            )
            return doc
        state = self.d.ledger.state(acc)
        recovered = recover_count(self.d, acc) > int(verified_recovers)
        changes = changes_since(state, json.loads(seen_json))
        if verified and recovered:
            changes.append(
                "the account was recovered since you verified it: verify the safety number again"
            )
        doc.update(
            synced=True,
            handle=handle(state.display_name, acc),
            status=state.status.value,
            verified=bool(verified) and not recovered,
            active_devices=len(state.active_keys),
            changes=changes,
        )
        return doc

    async def contact_list(self, params: dict[str, Any]) -> dict[str, Any]:
        rows = self.db.execute(
            "SELECT account, name, verified, verified_recovers, seen_devices "
            "FROM contacts WHERE blocked=0 ORDER BY name"
        ).fetchall()
        return {"contacts": [self._contact_doc(r) for r in rows]}

    async def contact_ack(self, params: dict[str, Any]) -> dict[str, Any]:
        account, _ = self.find(str(params["contact"]))
        if account in self.d.ledger.accounts:
            seen = device_statuses(self.d.ledger.state(account))
            self.db.execute(
                "UPDATE contacts SET seen_devices=? WHERE account=?", (json.dumps(seen), account)
            )
        return {"account_id": account.hex(), "acknowledged": True}

    async def contact_verify(self, params: dict[str, Any]) -> dict[str, Any]:
        account, _ = self.find(str(params["contact"]))
        own = self.d.own_account()
        number = safety_number(own, account)
        if params.get("confirm"):
            if account not in self.d.ledger.accounts:
                raise RpcFailure(control.USAGE, "the contact's log is not here yet: verify later")
            self.db.execute(
                "UPDATE contacts SET verified=1, verified_recovers=? WHERE account=?",
                (recover_count(self.d, account), account),
            )
        row = self.db.execute(
            "SELECT account, name, verified, verified_recovers, seen_devices "
            "FROM contacts WHERE account=?",
            (account,),
        ).fetchone()
        doc = self._contact_doc(row)
        return {"contact": doc, "safety_number": number}
