"""Accounts and their devices: ``account.*`` and ``device.*`` (PROTOCOL.md
§13, §5-§7, §14, §16)."""

from __future__ import annotations

from typing import Annotated, Literal, NotRequired, TypedDict

from .schema import Empty, Method, named

AccountStatusText = Literal["ok", "disputed", "compromised"]
DeviceStatusText = Literal["active", "revoked", "void", "removed_by_recovery", "compromised"]
ACCOUNT_REF = "id, handle, handle suffix, contact or name (*Account references*)"


@named("device document")
class DeviceDoc(TypedDict):
    name: str
    fingerprint: str
    sign_public: str
    enc_public: str
    status: DeviceStatusText
    added_by_event: str
    approved_by: str
    approver_fingerprint: str
    added_at_ms: int
    ended_by_event: Annotated[
        str | None, "null for an `active`, `void` or `compromised` device (§7.4)"
    ]
    ended_at_ms: Annotated[
        int | None, "null for an `active`, `void` or `compromised` device (§7.4)"
    ]
    this_device: NotRequired[Annotated[bool, "in `device.list` only"]]


class VoidedEvent(TypedDict):
    event_id: str
    kind: str
    reason: str
    explanation: str


@named("account state document")
class AccountStateDoc(TypedDict):
    account_id: str
    handle: str
    display_name: Annotated[str, "sanitised for terminals (§4.4), as every name"]
    status: AccountStatusText
    event_count: int
    heads: list[str]
    state_digest: Annotated[str, "§7.4"]
    recovery_commitment: Annotated[
        str | None,
        "the commitment in effect (§7.4); it changes on a recovery and on a rotation of "
        "the recovery key (§6.8); null when compromised",
    ]
    devices: list[DeviceDoc]
    voided_events: list[VoidedEvent]
    disputes: Annotated[list[list[str]], "pairs of event ids"]


class NameParams(TypedDict):
    name: Annotated[str, "the account's display name"]


class Created(TypedDict):
    account_id: str
    handle: str
    recovery_key: Annotated[str, "paper form; returned once, never stored or logged"]


class AccountParams(TypedDict):
    account: NotRequired[Annotated[str | None, f"{ACCOUNT_REF}; default: this device's"]]


class AccountSummary(TypedDict):
    account_id: str
    handle: str
    status: AccountStatusText
    devices_active: int
    events: int


class AccountList(TypedDict):
    accounts: list[AccountSummary]


class HistoryEvent(TypedDict):
    event_id: str
    kind: str
    timestamp_ms: int
    signer: str
    parents: list[str]
    text: str
    void: Annotated[str | None, "why the event is void, or null"]


class History(TypedDict):
    account: AccountStateDoc
    events: Annotated[list[HistoryEvent], "parents first"]


class RecoverParams(TypedDict):
    account: Annotated[str, ACCOUNT_REF]
    recovery_key: Annotated[str, "paper form"]


class Recovered(TypedDict):
    event_id: str
    status: str
    recovery_key: Annotated[str, "the new one"]
    account: AccountStateDoc


class RotateParams(TypedDict):
    recovery_key: Annotated[str, "paper form: the one in force"]


class RevokeParams(TypedDict):
    device: Annotated[str, "name or fingerprint prefix"]
    cascade: NotRequired[Annotated[bool, "also the devices it added, and theirs"]]
    confirm_last: NotRequired[Annotated[bool, "needed to revoke the last active device"]]


class RevokedDevice(TypedDict):
    device: str
    fingerprint: str
    event_id: str
    status: str


class Revoked(TypedDict):
    revoked: list[RevokedDevice]
    account: AccountStateDoc


class DeviceRecordDoc(TypedDict):
    device: str
    device_name: str
    peer_ids: list[str]
    addrs: list[str]
    mailboxes: Annotated[list[str], "mailbox peer ids"]
    expires_ms: int
    capabilities: Annotated[list[int], "what the device speaks (§16.5; 1: wrap scheme 2)"]
    signed_prekey_id: Annotated[int | None, "the record's signed prekey (§19.3), if any"]


class Records(TypedDict):
    records: Annotated[list[DeviceRecordDoc], "where each device can be reached (§16)"]


class LinkParams(TypedDict):
    ttl_seconds: NotRequired[Annotated[int | None, "at most 600 (the default)"]]


class LinkOffer(TypedDict):
    id: str
    link: Annotated[str, "a secret (§14.2)"]
    uri: str
    expires_at_ms: int


class PendingRequest(TypedDict):
    id: str
    state: str
    awaiting_approval: bool
    device_name: str | None
    fingerprint: str | None
    code: str | None


class Pending(TypedDict):
    requests: list[PendingRequest]


class RequestRef(TypedDict):
    id: Annotated[str, "a link request id; a prefix is enough"]


class Approved(TypedDict):
    event_id: str
    status: str
    device_name: str
    fingerprint: str
    completed: bool


class Rejected(TypedDict):
    rejected: bool


class JoinParams(TypedDict):
    link: str
    name: NotRequired[Annotated[str | None, "this device's name; default: the node's"]]


class LinkedDevice(TypedDict):
    name: str
    fingerprint: str


class LinkedAccount(TypedDict):
    account_id: str
    handle: str
    display_name: str
    status: str
    devices: list[LinkedDevice]


class Joining(TypedDict):
    join_id: str
    code: str
    account: Annotated[LinkedAccount, "the account the link leads to, checked from its own events"]
    device_name: str


class JoinConfirmParams(TypedDict):
    join_id: str
    accept: bool


class Joined(TypedDict):
    joined: bool
    account: NotRequired[LinkedAccount]
    add_device_event: NotRequired[str]


ACCOUNT_CREATE = Method("account.create", NameParams, Created)
ACCOUNT_SHOW = Method("account.show", AccountParams, AccountStateDoc)
ACCOUNT_LIST = Method("account.list", Empty, AccountList)
ACCOUNT_HISTORY = Method("account.history", AccountParams, History)
ACCOUNT_RECOVER = Method("account.recover", RecoverParams, Recovered)
ACCOUNT_ROTATE_RECOVERY = Method(
    "account.rotate_recovery",
    RotateParams,
    Recovered,
    "a rotate-recovery event (§6.8) signed by this device, which must be active, and "
    "co-signed by the given key; the devices stay, and the node certifies the new backup "
    "key (§15.20); the new key is returned once, never stored or logged",
)
DEVICE_LIST = Method("device.list", AccountParams, AccountStateDoc, "each device has `this_device`")
DEVICE_REVOKE = Method("device.revoke", RevokeParams, Revoked)
DEVICE_LINK = Method("device.link", LinkParams, LinkOffer)
DEVICE_PENDING = Method("device.pending", Empty, Pending)
DEVICE_APPROVE = Method(
    "device.approve",
    RequestRef,
    Approved,
    "the add-device event is stored and gossiped before the joiner hears of it",
)
DEVICE_REJECT = Method("device.reject", RequestRef, Rejected)
DEVICE_JOIN = Method("device.join", JoinParams, Joining)
DEVICE_JOIN_CONFIRM = Method(
    "device.join_confirm",
    JoinConfirmParams,
    Joined,
    "answered after the approver's decision; only `joined` (false) when declined",
)
DEVICE_RECORDS = Method("device.records", AccountParams, Records)

METHODS = (
    ACCOUNT_CREATE,
    ACCOUNT_SHOW,
    ACCOUNT_LIST,
    ACCOUNT_HISTORY,
    ACCOUNT_RECOVER,
    ACCOUNT_ROTATE_RECOVERY,
    DEVICE_LIST,
    DEVICE_REVOKE,
    DEVICE_LINK,
    DEVICE_PENDING,
    DEVICE_APPROVE,
    DEVICE_REJECT,
    DEVICE_JOIN,
    DEVICE_JOIN_CONFIRM,
    DEVICE_RECORDS,
)
