"""The node's SQLite storage (DESIGN §7; PROTOCOL.md §8): one database per
node, WAL mode, ``synchronous=FULL``.  Each module holds the tables it owns
(their schema, as forward migrations) and the SQL that uses them:

* ``db``        the connection, transactions and the migration runner
* ``events``    accepted events (the log): staged puts, an explicit commit
* ``contacts``  what this device's user acknowledged of each contact (and
                the contacts of before account-wide sync, imported once)
* ``messages``  messages (and requests), the outbox of deliveries, counters
* ``replay``    the receive-side replay state, one row per sender stream
* ``mailbox``   what this node's mailbox holds: grants, envelopes, spent tokens
* ``tokens``    mailbox tokens held for others' mailboxes, and issued to contacts
* ``sync``      account-wide state: signed edits, those waiting, the hybrid clock
* ``sessions``  this device's sessions (one row each) and the devices seen
                speaking wrap scheme 2 (sticky)
* ``at_rest``   the row cipher: what is sealed under the storage key
* ``reads``     what the user has read of each conversation (a cache of the
                account-wide read marks) and the conversation summaries

Derived state (account states, indexes in memory) is never stored: it is
rebuilt from the events on start.
"""

from __future__ import annotations

from pathlib import Path

from . import (
    contacts,
    events,
    mailbox,
    messages,
    prekey_shelf,
    reads,
    replay,
    resends,
    sessions,
    sync,
    tokens,
)
from .at_rest import RowCipher, row_key
from .contacts import ContactStore
from .db import Database, Migrations
from .events import SqliteEventStore
from .mailbox import SqliteMailboxStore
from .messages import MessageStore
from .reads import ReadStore
from .sync import SyncStore
from .tokens import TokenStore

#: MIGRATIONS[v] upgrades a database from version v to v + 1
MIGRATIONS: Migrations = {
    0: events.SCHEMA_V1,
    1: contacts.SCHEMA_V2,
    2: messages.SCHEMA_V3,
    # outbox expiry and its due index; request sizes and their index
    3: messages.SCHEMA_V4,
    # the replay guard split into one row per sender stream
    4: replay.SCHEMA_V5,
    # a mailbox's grants, items and spent tokens
    5: mailbox.SCHEMA_V6,
    # tokens held for others' mailboxes, and issued to contacts
    6: tokens.SCHEMA_V7,
    # account-wide state: edits, those waiting, the hybrid clock
    7: sync.SCHEMA_V8,
    # read marks per conversation, for unread counts
    8: reads.SCHEMA_V9,
    # texts, contact names and synced edits sealed at rest (§15.21)
    9: [*messages.SCHEMA_V10, *contacts.SCHEMA_V10, *sync.SCHEMA_V10],
    # history proofs kept with texts, and who relayed an unproven entry
    10: messages.SCHEMA_V11,
    # sessions per device pair (state sealed at rest), and the devices seen
    # speaking wrap scheme 2
    11: sessions.SCHEMA_V12,
    # the copies of sent texts for the account's other devices
    12: messages.SCHEMA_V13,
    # texts re-sealed for one device after a session reset (§19.15)
    13: resends.SCHEMA_V14,
    # one-time prekeys a mailbox holds, a row per device (§19.16)
    14: prekey_shelf.SCHEMA_V15,
}
SCHEMA_VERSION = len(MIGRATIONS)


def open_database(path: Path, storage_key: bytes | None = None) -> Database:
    """Open (creating or migrating forward) a node's database.  Without the
    device's storage key (``keys.json``, PROTOCOL.md §15.21) only the tables
    kept in the clear can be used: the event log, mailbox, tokens."""
    cipher = None if storage_key is None else RowCipher(storage_key)
    return Database(path, MIGRATIONS, cipher)


__all__ = [
    "SCHEMA_VERSION",
    "ContactStore",
    "Database",
    "MessageStore",
    "ReadStore",
    "RowCipher",
    "SqliteEventStore",
    "SqliteMailboxStore",
    "SyncStore",
    "TokenStore",
    "open_database",
    "row_key",
]
