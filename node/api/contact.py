"""Contacts, invites and message requests: ``invite.*``, ``contact.*`` and
``requests.*`` (PROTOCOL.md §13, §4.7, §15.14, §15.19)."""

from __future__ import annotations

from typing import Annotated, NotRequired, TypedDict

from .account import ACCOUNT_REF
from .schema import Empty, Method, named


class Invite(TypedDict):
    invite: Annotated[str, "§4.7"]
    uri: str
    handle: str


class AddParams(TypedDict):
    ref: Annotated[str, "an invite, or an account reference (*Account references*)"]
    name: NotRequired[Annotated[str | None, "what to call the contact"]]


class Added(TypedDict):
    account_id: str
    name: str
    synced: Annotated[bool, "whether the account's log is here yet"]
    handle: str


class Marker(TypedDict):
    device: Annotated[str, "the own device that marked it"]
    status: Annotated[str, "that device's status"]


@named("contact document")
class ContactDoc(TypedDict):
    account_id: str
    name: str
    blocked: bool
    synced: bool
    handle: Annotated[str | None, "null until the account's log is here"]
    status: Annotated[str, "the account's status, `unknown` until its log is here"]
    verified: Annotated[bool, "never for a disputed account (DESIGN §6)"]
    changes: Annotated[list[str], "since last acknowledged (`contact.ack`)"]
    active_devices: NotRequired[int]
    verified_by: NotRequired[Marker]


class ContactList(TypedDict):
    contacts: Annotated[list[ContactDoc], "blocked ones too, so that they can be unblocked"]


class ContactParams(TypedDict):
    contact: Annotated[str, "a contact's name, handle or account id"]


class Removed(TypedDict):
    account_id: str
    name: str
    removed: bool


class BlockParams(TypedDict):
    contact: Annotated[str, "a contact, or an account reference"]
    unblock: NotRequired[Annotated[bool, "undo a block"]]


class Blocked(TypedDict):
    account_id: str
    blocked: bool


class Acknowledged(TypedDict):
    account_id: str
    acknowledged: bool


class VerifyParams(TypedDict):
    contact: Annotated[str, "a contact's name, handle or account id"]
    confirm: NotRequired[Annotated[bool, "mark it verified (else: only read the number)"]]


class Verified(TypedDict):
    contact: ContactDoc
    safety_number: str


class AcceptParams(TypedDict):
    account: Annotated[str, ACCOUNT_REF]
    name: NotRequired[Annotated[str | None, "what to call the contact"]]


class RequestBlockParams(TypedDict):
    account: Annotated[str, ACCOUNT_REF]


class RequestBlocked(TypedDict):
    blocked: Annotated[str, "the account id"]


INVITE_CREATE = Method("invite.create", Empty, Invite)
CONTACT_ADD = Method(
    "contact.add",
    AddParams,
    Added,
    "a device link (`smu1link…`, `smu://link/…`) is error 2 saying it is a device link",
)
CONTACT_LIST = Method("contact.list", Empty, ContactList)
CONTACT_REMOVE = Method(
    "contact.remove",
    ContactParams,
    Removed,
    "no longer a contact, on every device of the account (§15.19); its messages stay, and new"
    " ones are requests again",
)
CONTACT_BLOCK = Method(
    "contact.block",
    BlockParams,
    Blocked,
    "blocked (or, with `unblock`, no longer), on every device",
)
CONTACT_ACK = Method(
    "contact.ack", ContactParams, Acknowledged, "the contact's changes are marked as seen"
)
CONTACT_VERIFY = Method("contact.verify", VerifyParams, Verified)
REQUESTS_ACCEPT = Method(
    "requests.accept",
    AcceptParams,
    Added,
    "the sender becomes a contact; its requests become messages, and the DELIVERED receipts"
    " held back from it go out now",
)
REQUESTS_BLOCK = Method(
    "requests.block",
    RequestBlockParams,
    RequestBlocked,
    "the sender is blocked and its requests deleted; later texts from it are stored nowhere",
)

METHODS = (
    INVITE_CREATE,
    CONTACT_ADD,
    CONTACT_LIST,
    CONTACT_REMOVE,
    CONTACT_BLOCK,
    CONTACT_ACK,
    CONTACT_VERIFY,
    REQUESTS_ACCEPT,
    REQUESTS_BLOCK,
)
