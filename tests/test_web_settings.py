"""The web app's settings (PROTOCOL.md §13.1, §13.3): ``web`` and
``web_port`` in node.toml, ``--no-web`` and ``--web-port`` over them."""

from __future__ import annotations

from pathlib import Path

import pytest

from node.cli import build_parser
from node.config import NodeConfig, load_config
from node.errors import NodeUsageError


def flags(*argv: str) -> dict[str, object]:
    args = build_parser().parse_args(["node", "run", *argv])
    return {"web": args.web, "web_port": args.web_port}


def test_web_settings_and_flags(tmp_path: Path) -> None:
    assert NodeConfig().web_listen_port == 0  # on, at a free port, by default
    (tmp_path / "node.toml").write_text("web_port = 8420\n")
    c = load_config(tmp_path)
    assert c.web_listen_port == 8420
    assert c.with_flags(**flags()).web_listen_port == 8420  # no flag: the file's
    assert c.with_flags(**flags("--web-port", "9000")).web_listen_port == 9000
    assert c.with_flags(**flags("--no-web")).web_listen_port is None
    (tmp_path / "node.toml").write_text("web = false\n")
    assert load_config(tmp_path).web_listen_port is None
    for bad, word in (("web = 1\n", "web is true or false"), ("web_port = -1\n", "web_port")):
        (tmp_path / "node.toml").write_text(bad)
        with pytest.raises(NodeUsageError, match=word):
            load_config(tmp_path)
