"""Accounts: the ``account.*`` namespace (DESIGN §3; PROTOCOL.md §5-§7).

Creating and recovering build a signed event with this node's keys and
publish it, which commits it before anything is sent or answered.  The
recovery key leaves the node only in the answer to the call that made it.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable

import trio

from protocol.core.errors import ChecksumError, DecodeError, UsageError
from protocol.core.keys import RecoveryKey, fingerprint, handle
from protocol.core.names import sanitise
from protocol.log import authoring
from protocol.log.events import (
    AddDeviceBody,
    Event,
    GenesisBody,
    ProfileBody,
    RecoverBody,
    RevokeDeviceBody,
    RotateEncKeyBody,
    RotateRecoveryBody,
)
from protocol.log.state import AccountState

from .. import control
from ..api import account as api
from ..api.schema import Empty
from ..context import NodeContext
from ..control import RpcFailure
from ..render import approver_label, state_json


def _now_ms() -> int:
    return int(time.time() * 1000)


def describe_event(state: AccountState, event: Event, void_reason: str | None) -> api.HistoryEvent:
    """One line of an account's explained history."""

    def who(key: bytes) -> str:
        return approver_label(state, key)

    body = event.body
    if isinstance(body, GenesisBody):
        text = (
            f"account created as {sanitise(body.display_name)!r} with first device "
            f"{sanitise(body.device.name)!r} ({fingerprint(body.device.sign_public)})"
        )
    elif isinstance(body, AddDeviceBody):
        text = (
            f"device {sanitise(body.device.name)!r} ({fingerprint(body.device.sign_public)}) "
            f"added, approved by {who(event.signer)}"
        )
    elif isinstance(body, RevokeDeviceBody):
        text = f"device {who(body.device)} revoked by {who(event.signer)}"
    elif isinstance(body, RecoverBody):
        text = (
            f"account recovered with the recovery key; only device now "
            f"{sanitise(body.device.name)!r} ({fingerprint(body.device.sign_public)})"
        )
    elif isinstance(body, RotateEncKeyBody):
        text = f"{who(event.signer)} replaced its encryption key"
    elif isinstance(body, RotateRecoveryBody):
        text = (
            f"recovery key replaced by {who(event.signer)} with the old recovery key; "
            "the devices stay"
        )
    else:
        assert isinstance(body, ProfileBody)
        text = f"display name set to {sanitise(body.display_name)!r} by {who(event.signer)}"
    return {
        "event_id": event.id.hex(),
        "kind": event.kind.name.lower(),
        "timestamp_ms": event.timestamp,
        "signer": event.signer.hex(),
        "parents": [p.hex() for p in event.parents],
        "text": text,
        "void": void_reason,
    }


class AccountService:
    def __init__(self, ctx: NodeContext) -> None:
        self.ctx = ctx
        #: told the new paper key while it is at hand (the backup key's
        #: certificate is made from it, PROTOCOL.md §15.20); never stored
        self.on_recovery_key: list[Callable[[RecoveryKey], None]] = []

    def handlers(self) -> dict[str, control.Handler]:
        return {
            "account.create": api.ACCOUNT_CREATE.bind(self.account_create),
            "account.show": api.ACCOUNT_SHOW.bind(self.account_show),
            "account.list": api.ACCOUNT_LIST.bind(self.account_list),
            "account.recover": api.ACCOUNT_RECOVER.bind(self.account_recover),
            "account.rotate_recovery": api.ACCOUNT_ROTATE_RECOVERY.bind(
                self.account_rotate_recovery
            ),
            "account.history": api.ACCOUNT_HISTORY.bind(self.account_history),
        }

    async def account_create(self, params: api.NameParams) -> api.Created:
        if self.ctx.account() is not None:
            raise RpcFailure(control.USAGE, "this device already belongs to an account")
        name = params["name"]
        recovery = RecoveryKey(os.urandom(32))
        device_name = self.ctx.device_name
        try:
            event = await trio.to_thread.run_sync(
                lambda: authoring.genesis(
                    self.ctx.params,
                    self.ctx.device,
                    recovery,
                    display_name=name,
                    device_name=device_name,
                    timestamp=_now_ms(),
                )
            )
        except UsageError as exc:
            raise RpcFailure(control.USAGE, str(exc)) from exc
        await self.ctx.publish(event.raw)
        self.ctx.set_account(event.id)
        self.ctx.publish_own_record()
        for listener in self.on_recovery_key:
            listener(recovery)
        return {
            "account_id": event.id.hex(),
            "handle": handle(name, event.id),
            # The only time the recovery key leaves the node: the CLI shows it once.
            "recovery_key": recovery.to_paper(),
        }

    async def account_show(self, params: api.AccountParams) -> api.AccountStateDoc:
        account = self.ctx.resolve_account(params.get("account"))
        if account not in self.ctx.ledger.accounts:
            raise RpcFailure(control.USAGE, f"account {account.hex()} is not known here")
        return state_json(self.ctx.ledger.state(account))

    async def account_list(self, params: Empty) -> api.AccountList:
        out: list[api.AccountSummary] = []
        for account in sorted(self.ctx.ledger.accounts):
            s = self.ctx.ledger.state(account)
            out.append(
                {
                    "account_id": account.hex(),
                    "handle": handle(s.display_name, account),
                    "status": s.status.value,
                    "devices_active": len(s.active_keys),
                    "events": s.event_count,
                }
            )
        return {"accounts": out}

    async def account_recover(self, params: api.RecoverParams) -> api.Recovered:
        account = self.ctx.resolve_account(params["account"])
        if account not in self.ctx.ledger.accounts:
            raise RpcFailure(
                control.USAGE,
                "this node does not hold that account's log yet: "
                "connect it to the network and wait for it to sync",
            )
        try:
            recovery = RecoveryKey.from_paper(params["recovery_key"])
        except (ChecksumError, DecodeError) as exc:
            raise RpcFailure(control.USAGE, f"recovery key: {exc}") from exc
        state = self.ctx.ledger.state(account)
        if state.recovery_commitment != recovery.commitment:
            raise RpcFailure(control.USAGE, "that is not the account's current recovery key")
        if state.device(self.ctx.device.sign_public) is not None:
            raise RpcFailure(
                control.USAGE,
                "this device's key was already part of the account; "
                "recover from a freshly initialised node",
            )
        next_key = RecoveryKey(os.urandom(32))
        name = self.ctx.device_name
        try:
            event = await trio.to_thread.run_sync(
                lambda: authoring.recover(
                    self.ctx.params,
                    account,
                    list(state.heads),
                    recovery,
                    self.ctx.device,
                    next_key,
                    device_name=name,
                    timestamp=_now_ms(),
                )
            )
        except UsageError as exc:
            raise RpcFailure(control.USAGE, str(exc)) from exc
        published = await self.ctx.publish(event.raw)
        self.ctx.set_account(account)
        for listener in self.on_recovery_key:
            listener(next_key)
        return {
            "event_id": published.event_id,
            "status": published.status,
            "recovery_key": next_key.to_paper(),
            "account": state_json(self.ctx.ledger.state(account)),
        }

    async def account_rotate_recovery(self, params: api.RotateParams) -> api.Recovered:
        """Replace the recovery key, keeping every device (PROTOCOL.md §6.8):
        this device signs, the current paper key co-signs."""
        account = self.ctx.own_account()
        try:
            recovery = RecoveryKey.from_paper(params["recovery_key"])
        except (ChecksumError, DecodeError) as exc:
            raise RpcFailure(control.USAGE, f"recovery key: {exc}") from exc
        if not self.ctx.params.has_recovery_rotation:
            raise RpcFailure(control.USAGE, "this network's rules have no recovery-key rotation")
        state = self.ctx.ledger.state(account)
        if state.recovery_commitment is None:
            raise RpcFailure(control.USAGE, "this account is compromised: its key cannot rotate")
        if state.recovery_commitment != recovery.commitment:
            raise RpcFailure(control.USAGE, "that is not the account's current recovery key")
        if self.ctx.device.sign_public not in state.active_keys:
            raise RpcFailure(control.USAGE, "this device is not active in its account")
        next_key = RecoveryKey(os.urandom(32))
        try:
            event = await trio.to_thread.run_sync(
                lambda: authoring.rotate_recovery(
                    self.ctx.params,
                    account,
                    list(state.heads),
                    self.ctx.device,
                    recovery,
                    next_key,
                    timestamp=_now_ms(),
                )
            )
        except UsageError as exc:
            raise RpcFailure(control.USAGE, str(exc)) from exc
        published = await self.ctx.publish(event.raw)
        # The new backup key's certificate, while the new paper key is at
        # hand (§15.20); published first, so the edit names the rotation.
        for listener in self.on_recovery_key:
            listener(next_key)
        return {
            "event_id": published.event_id,
            "status": published.status,
            "recovery_key": next_key.to_paper(),
            "account": state_json(self.ctx.ledger.state(account)),
        }

    async def account_history(self, params: api.AccountParams) -> api.History:
        ref = params.get("account")
        account = self.ctx.resolve_account(ref) if ref else self.ctx.own_account()
        log = self.ctx.ledger.log(account)
        state = log.state()
        voids = {v.event_id: v.explain() for v in state.voided}
        # Parents first; ties by timestamp then id so every node prints the same order.
        order = sorted(
            range(len(log.events)),
            key=lambda i: (log.anc[i].bit_count(), log.events[i].timestamp, log.events[i].id),
        )
        events = [describe_event(state, log.events[i], voids.get(log.events[i].id)) for i in order]
        return {"account": state_json(state), "events": events}
