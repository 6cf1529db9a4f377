"""The control API the node serves is the one PROTOCOL.md §13 lists: a
method added to a service without its row in the spec (or a row left for a
method that is gone) fails here."""

from __future__ import annotations

import re
from pathlib import Path

from node.daemon import Daemon
from node.datadir import DataDir
from protocol.core.params import TESTNET

SPEC = Path(__file__).resolve().parent.parent / "docs" / "PROTOCOL.md"


def spec_methods() -> set[str]:
    text = SPEC.read_text(encoding="utf-8")
    start = text.index("\n## 13. ")
    end = text.index("\n## 14. ")
    names: set[str] = set()
    for cell in re.findall(
        r"^\| (`[a-z_]+\.[a-z_]+`(?: / `[a-z_]+\.[a-z_]+`)*) \|", text[start:end], flags=re.M
    ):
        names.update(re.findall(r"`([a-z_.]+)`", cell))
    return names


async def test_the_node_serves_exactly_the_methods_the_spec_lists(tmp_path: Path) -> None:
    dd = DataDir(tmp_path / "node")
    secrets = dd.init(TESTNET.network_id, "api", None)
    daemon = Daemon(dd, secrets, ["/ip4/127.0.0.1/tcp/0"], [])
    try:
        served = set(daemon.methods())
    finally:
        daemon.db.close()
    listed = spec_methods()
    assert served - listed == set(), "served but not in PROTOCOL.md §13"
    assert listed - served == set(), "in PROTOCOL.md §13 but not served"
