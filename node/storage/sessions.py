"""This device's sessions with other devices, and the devices it has seen
speak wrap scheme 2 (PROTOCOL.md §19.11, §19.13, §15.9).

* ``sessions``: one row per session (its id, the initiation id, §19.4): the
  peer (account, device, identity key), ``used`` (the book's sequence
  number when it last opened a message or was made: the least recently
  used goes first, §19.11) and ``state``, the ratchet state as
  ``encode_state_blob`` writes it: sealed at rest under the storage key
  and bound to the session id (§15.21).
* ``session_seq``: the book's sequence number, one row.
* ``scheme2_devices``: every device this node has seen advertise
  ``WRAP_SCHEME_2`` (in a record, or by sending a scheme-2 wrap): sticky,
  never forgotten while the device is active (§15.9), with the last signed
  prekey seen for it, if any, so that a withheld or aged record cannot
  downgrade it to scheme 1.

A message reads only the rows of the sessions it may touch (one peer
device's) and writes back only what changed, in the transaction that
stores the message (``statements``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

from protocol.messaging.ratchet import SessionState, decode_state, encode_state
from protocol.messaging.sessions import MAX_SESSIONS, SessionBook, SessionEntry
from protocol.messaging.x3dh import Party

from .at_rest import RowCipher, row_key
from .db import Step

if TYPE_CHECKING:
    from .db import Database, Statement

SCHEMA_V12: list[Step] = [
    """CREATE TABLE IF NOT EXISTS sessions (
           session_id BLOB PRIMARY KEY,
           peer_account BLOB NOT NULL,
           peer_device BLOB NOT NULL,
           peer_ik BLOB NOT NULL,
           used INTEGER NOT NULL,
           state BLOB NOT NULL) WITHOUT ROWID""",
    "CREATE INDEX IF NOT EXISTS sessions_peer ON sessions(peer_account, peer_device)",
    "CREATE INDEX IF NOT EXISTS sessions_used ON sessions(used)",
    "CREATE TABLE IF NOT EXISTS session_seq (id INTEGER PRIMARY KEY CHECK (id = 1), seq INTEGER)",
    """CREATE TABLE IF NOT EXISTS scheme2_devices (
           account BLOB NOT NULL,
           device BLOB NOT NULL,
           spk_id INTEGER,
           spk BLOB,
           PRIMARY KEY (account, device)) WITHOUT ROWID""",
]


# The one pair that turns a session's state into its stored blob and back:
# the ratchet's secrets, sealed at rest to the session's row (§15.21).
def encode_state_blob(cipher: RowCipher, session_id: bytes, state: SessionState) -> bytes:
    return cipher.seal("sessions", "state", row_key(session_id), encode_state(state))


def decode_state_blob(cipher: RowCipher, session_id: bytes, blob: object) -> SessionState:
    return decode_state(cipher.open("sessions", "state", row_key(session_id), blob))


PeerKey = tuple[bytes, bytes]


class SessionStore:
    def __init__(self, db: Database) -> None:
        self.db = db
        self.cipher = db.require_cipher()

    def _seq(self) -> int:
        row = self.db.query_one("SELECT seq FROM session_seq WHERE id=1")
        return int(row[0]) if row else 0

    def book_of(self, peers: Iterable[PeerKey]) -> SessionBook:
        """A book holding every session with these peer devices."""
        entries: dict[bytes, SessionEntry] = {}
        for account, device in set(peers):
            for sid, ik, used, blob in self.db.query(
                "SELECT session_id, peer_ik, used, state FROM sessions "
                "WHERE peer_account=? AND peer_device=?",
                (account, device),
            ):
                state = decode_state_blob(self.cipher, bytes(sid), blob)
                entries[bytes(sid)] = SessionEntry(Party(account, device, bytes(ik)), state, used)
        return SessionBook(entries, self._seq())

    def active_ik(self, account: bytes, device: bytes) -> bytes | None:
        """The identity key of the peer device's active session (the most
        recently used, §19.11), without opening any state: None if none."""
        row = self.db.query_one(
            "SELECT peer_ik FROM sessions WHERE peer_account=? AND peer_device=? "
            "ORDER BY used DESC LIMIT 1",
            (account, device),
        )
        return None if row is None else bytes(row[0])

    def book_for(self, session_id: bytes, initiator: PeerKey | None) -> SessionBook:
        """The sessions a wrap naming ``session_id`` may touch: that
        session's peer's, or the initiator's for a new set-up."""
        row = self.db.query_one(
            "SELECT peer_account, peer_device FROM sessions WHERE session_id=?", (session_id,)
        )
        if row is not None:
            return self.book_of([(bytes(row[0]), bytes(row[1]))])
        return self.book_of([initiator] if initiator is not None else [])

    def statements(self, before: SessionBook, after: SessionBook) -> list[Statement]:
        """What to write for ``after`` (a book ``book_of`` read as ``before``,
        advanced): changed and new rows, ended ones deleted, the sequence,
        and the oldest beyond ``MAX_SESSIONS`` in all (§19.11)."""
        rows: list[Statement] = []
        for sid in before.entries.keys() - after.entries.keys():
            rows.append(("DELETE FROM sessions WHERE session_id=?", (sid,)))
        for sid, e in after.entries.items():
            old = before.entries.get(sid)
            if old is not None and old.state is e.state and old.used == e.used:
                continue
            rows.append(
                (
                    "INSERT OR REPLACE INTO sessions(session_id, peer_account, peer_device, "
                    "peer_ik, used, state) VALUES(?, ?, ?, ?, ?, ?)",
                    (
                        sid,
                        e.peer.account,
                        e.peer.device,
                        e.peer.ik,
                        e.used,
                        encode_state_blob(self.cipher, sid, e.state),
                    ),
                )
            )
        if after.seq != before.seq:
            # never backwards: two books read in one transaction (a text and
            # its copy) each advance from the same stored number
            rows.append(
                (
                    "INSERT INTO session_seq(id, seq) VALUES(1, ?) "
                    "ON CONFLICT(id) DO UPDATE SET seq = MAX(seq, excluded.seq)",
                    (after.seq,),
                )
            )
            rows.append(
                (
                    "DELETE FROM sessions WHERE session_id IN (SELECT session_id FROM sessions "
                    "ORDER BY used DESC LIMIT -1 OFFSET ?)",
                    (MAX_SESSIONS,),
                )
            )
        return rows

    def end_sessions(self, account: bytes, keep: Callable[[Party], bool]) -> list[Statement]:
        """Delete the sessions with ``account``'s devices that ``keep`` refuses
        (a device no longer ACTIVE, or under a replaced key, §19.11)."""
        rows: list[Statement] = []
        for device, ik in self.db.query(
            "SELECT DISTINCT peer_device, peer_ik FROM sessions WHERE peer_account=?", (account,)
        ):
            if not keep(Party(account, bytes(device), bytes(ik))):
                rows.append(
                    (
                        "DELETE FROM sessions WHERE peer_account=? AND peer_device=? AND peer_ik=?",
                        (account, bytes(device), bytes(ik)),
                    )
                )
        return rows

    def stranger_statements(self, keep: Callable[[bytes], bool]) -> list[Statement]:
        """End the sessions with every account ``keep`` refuses and of
        which no message is held any more (a stranger whose requests expired,
        or a blocked one): sessions must not outlive what let them in
        (§19.11)."""
        rows: list[Statement] = []
        for (account,) in self.db.query(
            "SELECT DISTINCT s.peer_account FROM sessions s WHERE NOT EXISTS "
            "(SELECT 1 FROM messages m WHERE m.sender_account = s.peer_account "
            "AND m.outgoing = 0)"
        ):
            if not keep(bytes(account)):
                rows.append(("DELETE FROM sessions WHERE peer_account=?", (bytes(account),)))
        return rows

    @staticmethod
    def end_device_statement(account: bytes, device: bytes) -> Statement:
        return (
            "DELETE FROM sessions WHERE peer_account=? AND peer_device=?",
            (account, device),
        )

    # -- sticky scheme 2 (§15.9) ---------------------------------------------

    def scheme2(self, account: bytes, device: bytes) -> tuple[bool, int | None, bytes | None]:
        """(seen with scheme 2, the last signed prekey id and key seen)."""
        row = self.db.query_one(
            "SELECT spk_id, spk FROM scheme2_devices WHERE account=? AND device=?",
            (account, device),
        )
        if row is None:
            return False, None, None
        return True, row[0], None if row[1] is None else bytes(row[1])

    @staticmethod
    def seen_statement(
        account: bytes, device: bytes, spk_id: int | None = None, spk: bytes | None = None
    ) -> Statement:
        """Remember that ``device`` speaks scheme 2 (with its newest signed
        prekey if given; without one, what was remembered stays)."""
        if spk is None:
            return (
                "INSERT OR IGNORE INTO scheme2_devices(account, device) VALUES(?, ?)",
                (account, device),
            )
        return (
            "INSERT OR REPLACE INTO scheme2_devices(account, device, spk_id, spk) "
            "VALUES(?, ?, ?, ?)",
            (account, device, spk_id, spk),
        )

    def session_count(self) -> int:
        row = self.db.query_one("SELECT COUNT(*) FROM sessions")
        return int(row[0]) if row else 0
