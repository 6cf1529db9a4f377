"""Messages: ``message.*`` (PROTOCOL.md §13, §15.14, §15.19)."""

from __future__ import annotations

from typing import Annotated, NotRequired, TypedDict

from .schema import Empty, Method, named

#: per delivery state (§13 *Delivery states*), how many deliveries are in it
DeliveryCounts = dict[str, int]

# "from" is a Python keyword: the functional form
MessageDoc = TypedDict(
    "MessageDoc",
    {
        "message_id": str,
        "conversation": Annotated[str, "the contact's name"],
        "conversation_account": str,
        "outgoing": bool,
        "from": Annotated[str, "the sender's name, `me` for an outgoing one"],
        "from_device": str,
        "sent_ms": int,
        "stored_ms": int,
        "text": str,
        "request": Annotated[bool, "from an account that is not a contact"],
        "relayed_by": Annotated[
            str | None,
            "null, or the name of the own device that relayed it as a history entry "
            "without a proof of its sender (§15.4 *History proofs*): `from` and "
            "`from_device` are then that device's claim, and a client MUST show it as "
            "relayed and unverified, never as the claimed sender's",
        ],
        "deliveries": NotRequired[
            Annotated[DeliveryCounts, "outgoing ones only, as `message.status` gives them"]
        ],
    },
)
named("message document")(MessageDoc)


class SendParams(TypedDict):
    contact: Annotated[str, "a contact's name, handle or account id"]
    text: str
    force: NotRequired[Annotated[bool, "send although the account is disputed"]]


class Sent(TypedDict):
    message_id: str
    to: str
    devices: Annotated[int, "how many devices it was wrapped for"]
    stored: bool


class InboxParams(TypedDict):
    since_ms: NotRequired[Annotated[int | None, "only what was stored after; default 0"]]


class Notice(TypedDict):
    stored_ms: int
    text: str


class ContactChange(TypedDict):
    contact: str
    changes: list[str]


class Inbox(TypedDict):
    messages: list[MessageDoc]
    notices: list[Notice]
    contact_changes: list[ContactChange]
    requests: Annotated[int, "how many accounts have requests waiting"]


class ConversationParams(TypedDict):
    contact: Annotated[str, "a contact's name, handle or account id"]


class Conversation(TypedDict):
    contact: str
    account: str
    messages: list[MessageDoc]


class StatusParams(TypedDict):
    ids: Annotated[list[str], "message ids, hex"]


class Deliveries(TypedDict):
    deliveries: Annotated[
        dict[str, DeliveryCounts],
        "per message id, how many of its deliveries (one per device it was wrapped for) are in"
        " each delivery state (below)",
    ]


class ReadParams(TypedDict):
    contact: Annotated[str, "a contact's name, handle or account id"]
    up_to_ms: NotRequired[Annotated[int | None, "default, and at most: the newest incoming one"]]


class ReadMark(TypedDict):
    account_id: str
    read_ms: int


class UnreadConversation(TypedDict):
    account_id: str
    conversation: str
    unread: int
    read_ms: int


class Unread(TypedDict):
    conversations: Annotated[list[UnreadConversation], "per contact with messages"]


class IdsParams(TypedDict):
    ids: Annotated[list[str], "1 to 500 message ids, hex"]


class Deleted(TypedDict):
    deleted: list[str]
    unknown: list[str]
    purged_after_days: int


class Restored(TypedDict):
    restored: list[str]
    unknown: list[str]


class TrashItem(TypedDict):
    message_id: str
    sender_account: str
    deleted_ms: int
    purge_ms: int
    text: Annotated[str | None, "null once purged here"]


class Trash(TypedDict):
    trash: Annotated[list[TrashItem], "oldest first"]


class Requests(TypedDict):
    requests: Annotated[
        list[MessageDoc],
        "texts from accounts that are not contacts, not yet expired (§15.14 *Message requests*)",
    ]


MESSAGE_SEND = Method(
    "message.send",
    SendParams,
    Sent,
    "answered after the message and its outbox rows are durable",
)
MESSAGE_INBOX = Method("message.inbox", InboxParams, Inbox)
MESSAGE_CONVERSATION = Method("message.conversation", ConversationParams, Conversation)
MESSAGE_STATUS = Method("message.status", StatusParams, Deliveries)
MESSAGE_READ = Method(
    "message.read",
    ReadParams,
    ReadMark,
    "the conversation is read up to the incoming message sent at `up_to_ms`, on every device of"
    " the account (`read/<account>`, §15.19); a mark never moves back",
)
MESSAGE_UNREAD = Method(
    "message.unread", Empty, Unread, "`unread`: incoming messages sent after the mark"
)
MESSAGE_DELETE = Method(
    "message.delete",
    IdsParams,
    Deleted,
    "each known message goes to the account's trash (a `trash/` edit, §15.19): hidden from"
    " `message.inbox`, `message.conversation` and history bundles on every device of the"
    " account, purged 30 days after it was deleted",
)
MESSAGE_RESTORE = Method(
    "message.restore", IdsParams, Restored, "out of the trash on every device (value `0`)"
)
MESSAGE_TRASH = Method("message.trash", Empty, Trash)
MESSAGE_REQUESTS = Method("message.requests", Empty, Requests)

METHODS = (
    MESSAGE_SEND,
    MESSAGE_INBOX,
    MESSAGE_CONVERSATION,
    MESSAGE_STATUS,
    MESSAGE_READ,
    MESSAGE_UNREAD,
    MESSAGE_DELETE,
    MESSAGE_RESTORE,
    MESSAGE_TRASH,
    MESSAGE_REQUESTS,
)
