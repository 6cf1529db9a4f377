"""The control API's one source (``node/api``): PROTOCOL.md §13's tables are
what the definitions give, every served method is bound to its definition,
and the params check refuses what the definitions do not allow, with a
ParamError and nothing else, whatever the JSON."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, NotRequired, TypedDict

import pytest

from node import api
from node.api import spec
from node.api.node import PEERS_CONNECT, Connected
from node.api.schema import (
    BoundMethod,
    Empty,
    Method,
    ParamError,
    check_params,
    conforms,
    fields,
    type_text,
)
from node.daemon import Daemon
from node.datadir import DataDir
from protocol.core.params import TESTNET


def test_protocol_md_tables_are_the_definitions() -> None:
    """`python -m node.api.spec --check` passes: no line of §13's generated
    tables differs from what node/api gives."""
    assert spec.diff(spec.SPEC.read_text(encoding="utf-8")) == []
    assert spec.main(["--check"]) == 0


def test_a_changed_definition_fails_the_check(monkeypatch: pytest.MonkeyPatch) -> None:
    class Wider(TypedDict):
        addr: Annotated[str, "multiaddr with `/p2p/`"]
        timeout_ms: NotRequired[int]

    wider = Method("peers.connect", Wider, Connected, PEERS_CONNECT.note)
    methods = tuple(wider if m.name == "peers.connect" else m for m in api.METHODS)
    monkeypatch.setattr(spec, "METHODS", methods)
    lines = spec.diff(spec.SPEC.read_text(encoding="utf-8"))
    changed = [line for line in lines if line.startswith(("-|", "+|"))]
    assert len(changed) == 2 and all("`peers.connect`" in line for line in changed)
    assert "`timeout_ms` (`int, optional`)" in changed[1]
    assert spec.main(["--check"]) == 1


def test_a_changed_spec_row_fails_the_check() -> None:
    text = spec.SPEC.read_text(encoding="utf-8")
    row = spec.method_row(PEERS_CONNECT)
    assert row in text
    edited = text.replace(row, row.replace("`connected` (`bool`)", "`connected` (`int`)"))
    assert any("`peers.connect`" in line for line in spec.diff(edited))
    with pytest.raises(ValueError, match="no generated methods block"):
        spec.rewrite(text.replace(spec._begin("methods"), ""))


def test_every_served_method_is_checked_against_its_definition(tmp_path: Path) -> None:
    dd = DataDir(tmp_path / "node")
    secrets = dd.init(TESTNET.network_id, "api", None)
    daemon = Daemon(dd, secrets, ["/ip4/127.0.0.1/tcp/0"], [])
    try:
        bound = [h for s in daemon.services for h in s.handlers().values()]
        served = set(daemon.methods())
    finally:
        daemon.db.close()
    assert served == set(api.BY_NAME)
    assert all(isinstance(h, BoundMethod) for h in bound)
    assert {h.method.name for h in bound if isinstance(h, BoundMethod)} == served


def test_every_definition_has_a_spec_form_and_a_check() -> None:
    for m in api.METHODS:
        type_text(m.params), type_text(m.result)
        for f in fields(m.params):
            conforms(None, f.tp)  # raises TypeError for a type the check cannot read


class Sample(TypedDict):
    contact: str
    ids: list[str]
    count: NotRequired[int]
    force: NotRequired[bool]
    account: NotRequired[str | None]


GOOD: dict[str, object] = {"contact": "bob", "ids": ["00ff"]}


@pytest.mark.parametrize(
    ("params", "reason"),
    [
        ({**GOOD, "extra": 1}, "unknown parameter 'extra'"),
        ({"ids": []}, "missing parameter 'contact'"),
        ({**GOOD, "contact": 5}, "parameter 'contact' must be string"),
        ({**GOOD, "contact": None}, "parameter 'contact' must be string"),
        ({**GOOD, "ids": "00ff"}, "parameter 'ids' must be [string]"),
        ({**GOOD, "ids": ["00", 1]}, "parameter 'ids' must be [string]"),
        ({**GOOD, "count": True}, "parameter 'count' must be int"),
        ({**GOOD, "count": 1.5}, "parameter 'count' must be int"),
        # beyond a signed 64-bit integer: SQLite would raise past the check
        ({**GOOD, "count": 2**63}, "parameter 'count' must be int"),
        ({**GOOD, "count": -(2**63) - 1}, "parameter 'count' must be int"),
        ({**GOOD, "force": 1}, "parameter 'force' must be bool"),
        ({**GOOD, "force": None}, "parameter 'force' must be bool"),
        ({**GOOD, "account": 7}, "parameter 'account' must be string | null"),
    ],
)
def test_params_the_definition_does_not_allow_are_refused(
    params: dict[str, object], reason: str
) -> None:
    with pytest.raises(ParamError) as info:
        check_params(Sample, params)
    assert str(info.value) == reason


def test_params_the_definition_allows_pass_as_they_are() -> None:
    full = {**GOOD, "count": 3, "force": False, "account": None}
    assert check_params(Sample, full) == full
    assert check_params(Sample, GOOD) == GOOD
    assert check_params(Empty, {}) == {}
    with pytest.raises(ParamError, match="unknown parameter"):
        check_params(Empty, {"x": 1})


def test_an_unknown_name_is_quoted_short() -> None:
    with pytest.raises(ParamError) as info:
        check_params(Empty, {"x" * 10_000: 1})
    assert len(str(info.value)) < 100


def test_results_are_checked_field_by_field() -> None:
    ok = {"peer_id": "12D3", "connected": True}
    assert conforms(ok, Connected)
    assert not conforms({**ok, "extra": 1}, Connected)
    assert not conforms({"peer_id": "12D3"}, Connected)
    assert not conforms({**ok, "connected": "yes"}, Connected)


def test_node_status_names_every_link_counter_and_the_replication_ones_are_ints() -> None:
    """node.status copies the link counters one by one (§17.1): a counter
    added to the machine's stats must be added to the definition too; the
    §11.6 counters are passed whole, and are all ints as §13 says."""
    import dataclasses

    from node.api.node import LinkStats
    from protocol.links.manager import LinkStats as MachineLinkStats
    from protocol.sync.types import ReplicationStats

    assert [f.name for f in fields(LinkStats)] == [
        f.name for f in dataclasses.fields(MachineLinkStats)
    ]
    assert conforms(dataclasses.asdict(ReplicationStats()), dict[str, int])
