"""Write the golden test vectors: ``make vectors`` (``python -m tests.vectors.generate``).

The output is a pure function of the code under ``protocol/``: seeds come
from labels, timestamps are fixed and proof-of-work is ground from nonce 0.
``tests/test_vectors.py`` regenerates the files in memory and fails if they
differ from the checked-in ones, so a change to any format is never silent:
if it is intended, run ``make vectors`` and commit the new files.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path

from . import (
    backup_vectors,
    channel_delivery_vectors,
    channel_vectors,
    encoding_vectors,
    envelope_vectors,
    event_vectors,
    history_vectors,
    key_vectors,
    linking_vectors,
    mailbox_vectors,
    prekey_fetch_vectors,
    record_vectors,
    replication_vectors,
    rotation_vectors,
    scheme2_vectors,
    session_vectors,
    sync_vectors,
)
from ._common import Json

VECTORS_DIR = Path(__file__).resolve().parent

BUILDERS: dict[str, Callable[[], dict[str, Json]]] = {
    "encoding.json": encoding_vectors.build,
    "keys.json": key_vectors.build,
    "events.json": event_vectors.build,
    "histories.json": history_vectors.build,
    "replication.json": replication_vectors.build,
    "records.json": record_vectors.build,
    "channel.json": channel_vectors.build,
    "channel_delivery.json": channel_delivery_vectors.build,
    "mailbox.json": mailbox_vectors.build,
    "envelopes.json": envelope_vectors.build,
    "linking.json": linking_vectors.build,
    "sync.json": sync_vectors.build,
    "backup.json": backup_vectors.build,
    "session.json": session_vectors.build,
    "scheme2.json": scheme2_vectors.build,
    "rotations.json": rotation_vectors.build,
    "prekey_fetch.json": prekey_fetch_vectors.build,
}


def render(data: dict[str, Json]) -> str:
    """Stable text: keys in the builders' order, ASCII only, one trailing newline."""
    return json.dumps(data, indent=1, ensure_ascii=True) + "\n"


def build_all() -> dict[str, str]:
    return {name: render(build()) for name, build in BUILDERS.items()}


def main(argv: list[str] | None = None) -> int:
    out_dir = Path(argv[0]) if argv else VECTORS_DIR
    for name, text in build_all().items():
        path = out_dir / name
        old = path.read_text(encoding="utf-8") if path.exists() else None
        path.write_text(text, encoding="utf-8")
        print(f"{path}: {'unchanged' if old == text else 'written'} ({len(text)} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
