"""This account's devices: ``device.list``, ``device.revoke`` and
``device.records`` (DESIGN §3, §6; PROTOCOL.md §6.4, §16).  Linking a new
device, the rest of the ``device.*`` namespace, is ``services/linking.py``.

Revoking builds a signed event with this node's keys and publishes it,
which commits it before anything is sent or answered.
"""

from __future__ import annotations

import time

from protocol.core.keys import handle
from protocol.core.names import sanitise
from protocol.log import authoring
from protocol.log.events import EventKind
from protocol.log.state import AccountState, DeviceRecord, DeviceStatus
from protocol.records.grant import decode_grant

from .. import control
from ..api import account as api
from ..context import NodeContext
from ..control import RpcFailure
from ..render import state_json


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


def require_active(ctx: NodeContext, state: AccountState) -> None:
    me = ctx.device.sign_public
    mine = state.device(me)
    if mine is None or mine.status is not DeviceStatus.ACTIVE:
        why = mine.status.value if mine is not None else "not a member"
        raise RpcFailure(
            control.USAGE,
            f"this device is not active in "
            f"{handle(state.display_name, state.account_id)} ({why}); it cannot "
            "act for the account",
        )


class DeviceService:
    def __init__(self, ctx: NodeContext) -> None:
        self.ctx = ctx

    def handlers(self) -> dict[str, control.Handler]:
        return {
            "device.list": api.DEVICE_LIST.bind(self.device_list),
            "device.revoke": api.DEVICE_REVOKE.bind(self.device_revoke),
            "device.records": api.DEVICE_RECORDS.bind(self.device_records),
        }

    def _my_state(self) -> AccountState:
        return self.ctx.ledger.state(self.ctx.own_account())

    async def device_list(self, params: api.AccountParams) -> api.AccountStateDoc:
        ref = params.get("account")
        state = self.ctx.ledger.state(self.ctx.resolve_account(ref)) if ref else self._my_state()
        doc = state_json(state)
        me = self.ctx.device.sign_public.hex()
        for dev in doc["devices"]:
            dev["this_device"] = dev["sign_public"] == me
        return doc

    async def device_revoke(self, params: api.RevokeParams) -> api.Revoked:
        state = self._my_state()
        require_active(self.ctx, state)
        target = find_device(state, params["device"])
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
        revoked: list[api.RevokedDevice] = []
        for victim in victims:
            event = authoring.revoke_device(
                self.ctx.params,
                state.account_id,
                parents,
                self.ctx.device,
                victim.sign_public,
                timestamp=_now_ms(),
            )
            published = await self.ctx.publish(event.raw)
            revoked.append(
                {
                    "device": sanitise(victim.name),
                    "fingerprint": victim.fingerprint,
                    "event_id": published.event_id,
                    "status": published.status,
                }
            )
            parents = [event.id]
        after = self.ctx.ledger.state(state.account_id)
        return {"revoked": revoked, "account": state_json(after)}

    async def device_records(self, params: api.AccountParams) -> api.Records:
        """Where each device of an account can be reached (PROTOCOL.md §16)."""
        account = self.ctx.resolve_account(params.get("account"))
        state = self.ctx.ledger.state(account) if account in self.ctx.ledger.accounts else None
        out: list[api.DeviceRecordDoc] = []
        for r in self.ctx.records.for_account(account):
            dev = state.device(r.device) if state is not None else None
            out.append(
                {
                    "device": r.device.hex(),
                    "device_name": sanitise(dev.name) if dev is not None else r.device.hex()[:12],
                    "peer_ids": list(r.peer_ids),
                    "addrs": list(r.addrs),
                    "mailboxes": [
                        decode_grant(g, self.ctx.params).mailbox_peer for g, _ in r.mailboxes
                    ],
                    "expires_ms": r.expires,
                }
            )
        return {"records": out}
