"""Control-API methods that act on accounts: devices, revocation, recovery,
history (issue: Accounts and devices).

Each method builds a signed event with this node's keys and publishes it
through the daemon, which persists it before anything is sent or answered.
"""

from __future__ import annotations

import os
import time
from typing import TYPE_CHECKING, Any

import trio

from protocol.core.errors import ChecksumError, DecodeError, UsageError
from protocol.core.keys import RecoveryKey, fingerprint, handle
from protocol.core.names import sanitise
from protocol.log import authoring
from protocol.log.events import (
    AddDeviceBody,
    Event,
    EventKind,
    GenesisBody,
    ProfileBody,
    RecoverBody,
    RevokeDeviceBody,
    RotateEncKeyBody,
)
from protocol.log.state import AccountState, DeviceRecord, DeviceStatus

from . import control
from .control import RpcFailure
from .render import approver_label, state_json

if TYPE_CHECKING:
    from .daemon import Daemon


def _now_ms() -> int:
    return int(time.time() * 1000)


def find_device(state: AccountState, ref: str) -> DeviceRecord:
    """A device by exact name, or by fingerprint prefix (spaces ignored)."""
    by_name = [d for d in state.devices if d.name == ref]
    if len(by_name) == 1:
        return by_name[0]
    compact = ref.replace(" ", "").lower()
    by_fp = [
        d for d in state.devices if compact and d.fingerprint.replace(" ", "").startswith(compact)
    ]
    if len(by_fp) == 1:
        return by_fp[0]
    found = len(by_name) or len(by_fp)
    raise RpcFailure(
        control.USAGE,
        f"no single device matches {ref!r} ({found} found): "
        "use a longer fingerprint prefix (see `smu device list`)",
    )


def cascade(state: AccountState, root: DeviceRecord) -> list[DeviceRecord]:
    """The devices ``root`` added, and the devices those added, still active."""
    out: list[DeviceRecord] = []
    frontier = [root.sign_public]
    while frontier:
        key = frontier.pop()
        for d in state.devices:
            if (
                d.approver == key
                and d.added_kind is EventKind.ADD_DEVICE
                and d not in out
                and d.status is DeviceStatus.ACTIVE
                and d is not root
            ):
                out.append(d)
                frontier.append(d.sign_public)
    return out


def describe_event(state: AccountState, event: Event, void_reason: str | None) -> dict[str, Any]:
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


class AccountMethods:
    def __init__(self, daemon: Daemon) -> None:
        self.d = daemon

    def handlers(self) -> dict[str, control.Handler]:
        return {
            "device.list": self.device_list,
            "device.revoke": self.device_revoke,
            "account.recover": self.account_recover,
            "account.history": self.account_history,
        }

    def _my_state(self) -> AccountState:
        return self.d.ledger.state(self.d.own_account())

    def _require_active(self, state: AccountState) -> None:
        me = self.d.secrets.device.sign_public
        mine = state.device(me)
        if mine is None or mine.status is not DeviceStatus.ACTIVE:
            why = mine.status.value if mine is not None else "not a member"
            raise RpcFailure(
                control.USAGE,
                f"this device is not active in "
                f"{handle(state.display_name, state.account_id)} ({why}); it cannot "
                "act for the account",
            )

    async def device_list(self, params: dict[str, Any]) -> dict[str, Any]:
        ref = params.get("account")
        state = self.d.ledger.state(self.d.resolve_account(ref)) if ref else self._my_state()
        doc = state_json(state)
        me = self.d.secrets.device.sign_public.hex()
        for dev in doc["devices"]:
            dev["this_device"] = dev["sign_public"] == me
        return doc

    async def device_revoke(self, params: dict[str, Any]) -> dict[str, Any]:
        state = self._my_state()
        self._require_active(state)
        target = find_device(state, str(params["device"]))
        if target.status is not DeviceStatus.ACTIVE:
            raise RpcFailure(
                control.USAGE, f"device {sanitise(target.name)!r} is already {target.status.value}"
            )
        victims = [target] + (cascade(state, target) if params.get("cascade") else [])
        remaining = state.active_keys - {v.sign_public for v in victims}
        if not remaining and not params.get("confirm_last"):
            raise RpcFailure(
                control.USAGE,
                "this would revoke the last active device; only the "
                "recovery key could act afterwards (confirm with --yes)",
            )
        parents = list(state.heads)
        published = []
        for victim in victims:
            event = authoring.revoke_device(
                self.d.params,
                state.account_id,
                parents,
                self.d.secrets.device,
                victim.sign_public,
                timestamp=_now_ms(),
            )
            status, event_id, _ = self.d.publish(event.raw)
            published.append(
                {
                    "device": sanitise(victim.name),
                    "fingerprint": victim.fingerprint,
                    "event_id": event_id,
                    "status": status,
                }
            )
            parents = [event.id]
        return {"revoked": published, "account": state_json(self.d.ledger.state(state.account_id))}

    async def account_recover(self, params: dict[str, Any]) -> dict[str, Any]:
        account = self.d.resolve_account(str(params["account"]))
        if account not in self.d.ledger.accounts:
            raise RpcFailure(
                control.USAGE,
                "this node does not hold that account's log yet: "
                "connect it to the network and wait for it to sync",
            )
        try:
            recovery = RecoveryKey.from_paper(str(params["recovery_key"]))
        except (ChecksumError, DecodeError) as exc:
            raise RpcFailure(control.USAGE, f"recovery key: {exc}") from exc
        state = self.d.ledger.state(account)
        if state.recovery_commitment != recovery.commitment:
            raise RpcFailure(control.USAGE, "that is not the account's current recovery key")
        if state.device(self.d.secrets.device.sign_public) is not None:
            raise RpcFailure(
                control.USAGE,
                "this device's key was already part of the account; "
                "recover from a freshly initialised node",
            )
        next_key = RecoveryKey(os.urandom(32))
        name = str(self.d.config.get("device_name") or "device")
        try:
            event = await trio.to_thread.run_sync(
                lambda: authoring.recover(
                    self.d.params,
                    account,
                    list(state.heads),
                    recovery,
                    self.d.secrets.device,
                    next_key,
                    device_name=name,
                    timestamp=_now_ms(),
                )
            )
        except UsageError as exc:
            raise RpcFailure(control.USAGE, str(exc)) from exc
        status, event_id, _ = self.d.publish(event.raw)
        self.d.config["account"] = account.hex()
        self.d.datadir.write_config(self.d.config)
        return {
            "event_id": event_id,
            "status": status,
            "recovery_key": next_key.to_paper(),
            "account": state_json(self.d.ledger.state(account)),
        }

    async def account_history(self, params: dict[str, Any]) -> dict[str, Any]:
        ref = params.get("account")
        account = self.d.resolve_account(ref) if ref else self._my_state().account_id
        log = self.d.ledger.log(account)
        state = log.state()
        voids = {v.event_id: v.explain() for v in state.voided}
        # Parents first; ties by timestamp then id so every node prints the same order.
        order = sorted(
            range(len(log.events)),
            key=lambda i: (log.anc[i].bit_count(), log.events[i].timestamp, log.events[i].id),
        )
        events = [describe_event(state, log.events[i], voids.get(log.events[i].id)) for i in order]
        return {"account": state_json(state), "events": events}
