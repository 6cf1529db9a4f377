"""`smu log verify`: re-verify a whole store from scratch (DESIGN §7).

Opens its own read-only connection, so it runs beside a live daemon (WAL
allows concurrent readers) or on the files of a stopped one.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass, field
from pathlib import Path

from protocol.core.errors import InvalidInput
from protocol.core.params import NetworkParams
from protocol.log.ledger import IngestStatus, Ledger


@dataclass
class VerifyReport:
    events: int = 0
    accepted: int = 0
    accounts: int = 0
    problems: list[dict[str, str]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def to_json(self) -> dict[str, object]:
        return {
            "ok": self.ok,
            "events": self.events,
            "accepted": self.accepted,
            "accounts": self.accounts,
            "problems": self.problems,
        }


def verify_store(db_path: Path, params: NetworkParams) -> VerifyReport:
    report = VerifyReport()
    if not db_path.exists():
        return report
    db = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True)
    ledger = Ledger(params)
    try:
        for seq, stored_id, raw in db.execute("SELECT seq, id, raw FROM events ORDER BY seq"):
            report.events += 1
            try:
                result = ledger.ingest(bytes(raw))
            except InvalidInput as exc:
                report.problems.append(
                    {
                        "seq": str(seq),
                        "event_id": bytes(stored_id).hex(),
                        "error": exc.code,
                        "message": str(exc),
                    }
                )
                continue
            if result.event_id != bytes(stored_id):
                report.problems.append(
                    {
                        "seq": str(seq),
                        "event_id": bytes(stored_id).hex(),
                        "error": "id_mismatch",
                        "message": "stored id is not the event's id",
                    }
                )
            if result.status is IngestStatus.ESCROWED:
                report.problems.append(
                    {
                        "seq": str(seq),
                        "event_id": result.event_id.hex(),
                        "error": "missing_parents",
                        "message": "stored before its parents",
                    }
                )
            elif result.status is IngestStatus.DUPLICATE:
                report.problems.append(
                    {
                        "seq": str(seq),
                        "event_id": result.event_id.hex(),
                        "error": "duplicate",
                        "message": "stored twice",
                    }
                )
            report.accepted += len(result.accepted)
    finally:
        db.close()
    report.accounts = len(ledger.accounts)
    return report
