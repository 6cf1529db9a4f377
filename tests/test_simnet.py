"""simnet: determinism, safety under every adversary, and judges that can fail."""

from __future__ import annotations

import dataclasses
import json
import os
import random
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

import protocol.log.account
import protocol.log.rules
import protocol.log.state
from protocol.links.policy import LinkLimits, network_group
from protocol.log.state import VoidReason
from simnet import scenario as sc_mod
from simnet import topology as topo
from simnet.cli import dumps
from simnet.scenario import Distribution, Topology
from simnet.sim import Simulation

ROOT = Path(__file__).resolve().parent.parent
SMALL = 20


def run(name: str, nodes: int = SMALL, seed: int | None = None) -> dict[str, Any]:
    sc = sc_mod.load(sc_mod.builtin(name)).with_overrides(seed=seed, nodes=nodes)
    report, _ = Simulation(sc).run()
    return report


def test_same_seed_same_report_bytes_even_across_hash_seeds(tmp_path: Path) -> None:
    first = dumps(run("stolen-device"))
    assert first == dumps(run("stolen-device"))
    # a separate interpreter with another str/bytes hash seed: set and dict
    # iteration orders change, the report must not
    env = dict(os.environ, PYTHONHASHSEED="12345")
    cmd = [sys.executable, "-m", "simnet.cli", "run", "stolen-device", "--nodes", str(SMALL)]
    cmd += ["--out", str(tmp_path)]
    done = subprocess.run(cmd, cwd=ROOT, env=env, check=True, capture_output=True, text=True)
    assert (tmp_path / "report.json").read_text() == first
    assert "simulated events per wall second" in done.stdout
    for png in ("latency_cdf.png", "convergence.png", "bytes_per_node.png"):
        assert (tmp_path / png).read_bytes().startswith(b"\x89PNG")
    assert "wall" not in first  # wall-clock figures live in stats.json
    assert "wall_seconds" in json.loads((tmp_path / "stats.json").read_text())


def test_different_seeds_give_different_traces() -> None:
    sc = sc_mod.load(sc_mod.builtin("baseline")).with_overrides(nodes=SMALL)
    sc = dataclasses.replace(sc, duration=12.0)
    a = Simulation(dataclasses.replace(sc, seed=1))
    b = Simulation(dataclasses.replace(sc, seed=2))
    a.run()
    b.run()
    assert a.obs.latencies() != b.obs.latencies()
    assert sorted(a.engine.edges) != sorted(b.engine.edges)


def test_topologies() -> None:
    rng = random.Random(7)
    edges = topo.build(Topology("random_regular", degree=8), 200, rng)
    degree = Counter(i for e in edges for i in e)
    assert set(degree.values()) == {8} and len(degree) == 200
    assert topo.connected(200, edges)
    assert topo.build(Topology("line"), 5, rng) == [(0, 1), (1, 2), (2, 3), (3, 4)]
    given = topo.build(Topology("edges", edges=((2, 0), (1, 1), (0, 9))), 3, rng)
    assert given == [(0, 2)]
    sw = topo.build(Topology("small_world", degree=4, rewire=0.3), 50, rng)
    assert len(sw) == 100 and sw != sorted(topo.ring_lattice(50, 4))


def test_latency_samplers_and_loss_model() -> None:
    rng = random.Random(3)
    uni = topo.sampler(Distribution("uniform", low=0.01, high=0.02), rng)
    assert all(0.01 <= topo.sample(uni, rng) <= 0.02 for _ in range(100))
    logn = topo.sampler(Distribution("lognormal", median=0.05, sigma=0.5), rng)
    xs = sorted(topo.sample(logn, rng) for _ in range(2001))
    assert 0.04 < xs[1000] < 0.06
    # loss on a reliable stream delays frames, never loses them (links stay
    # as the topology has them: no peer-exchange dials, so none closes)
    base = sc_mod.load(sc_mod.builtin("baseline")).with_overrides(nodes=SMALL)
    fixed = LinkLimits(outbound_target=0)
    lossy = Simulation(dataclasses.replace(base, loss=0.2, duration=40.0, link_limits=fixed))
    report, _ = lossy.run()
    assert lossy.engine.retransmissions > 0
    assert report["delivery_ratio"] == 1.0
    assert report["cost"]["frames_dropped"] == 0


ADVERSARIAL = [
    "key-injection",
    "stolen-device",
    "long-range",
    "eclipse",
    "censorship",
    "sybil-flood",
    "replay",
    "seen-paper-key",
]


@pytest.mark.parametrize("name", ["baseline", "partition-heal", "churn", *ADVERSARIAL])
def test_scenario_is_safe_and_converges(name: str) -> None:
    report = run(name)
    assert report["safety"]["violations"] == 0
    assert report["safety"]["digest_mismatch_pairs"] == 0
    assert report["safety"]["digest_checks"] > 0
    assert report["convergence"]["converged"], report["convergence"]
    assert report["delivery_ratio"] == 1.0
    for heal in report["convergence"]["after_heal"]:
        assert heal["seconds"] is not None
    if name in ADVERSARIAL[:4]:
        (attack,) = {a["kind"]: a for a in report["attacks"]}.values()
        assert attack["attacker_keys"] > 0
    if name == "eclipse":
        (attack,) = report["attacks"]
        assert attack["withheld_reached_victim_after_heal"] is not None
    if name in ("key-injection", "sybil-flood"):
        assert report["scores"]["attackers"]["banned_at_end"] > 0
        assert report["scores"]["honest_peers"]["banned_at_end"] == 0


def test_stolen_device_attack_really_happens() -> None:
    """The thief's devices reach honest nodes (valid events, voided there)."""
    report = run("stolen-device")
    attacks = report["attacks"]
    assert len(attacks) == 3
    for a in attacks:
        assert a["attacker_events_valid"] > 0
        assert a["owner_revocations"] > 0
        # valid events: every honest node has them, and none is active there
        assert a["honest_nodes_holding_all_attacker_events"] == report["honest_nodes"]
        assert a["honest_nodes_with_attacker_key_active_at_end"] == 0
        assert a["account_status_at_end"] == ["ok"]
    # the thief that revoked the owner's device forced a recover
    assert [a["recovers"] for a in attacks] == [0, 0, 1]


def test_seen_paper_key_compromises_and_takes_nothing() -> None:
    """The thief's recovers with the old key are valid where they attach
    and reach every honest node; the rotation makes them concurrent uses of
    the key, so the account ends compromised and no thief key is active."""
    report = run("seen-paper-key")
    (a,) = report["attacks"]
    assert a["attacker_events_valid"] == 2 and a["attacker_keys"] == 2
    assert a["honest_nodes_holding_all_attacker_events"] == report["honest_nodes"]
    assert a["honest_nodes_with_attacker_key_active_at_end"] == 0
    assert a["account_status_at_end"] == ["compromised"]


def test_safety_judge_catches_a_rotation_that_voids_no_recover(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Rule 2 for rotations gone from the ledger: the thief's recover wins.
    monkeypatch.setattr(protocol.log.rules.Verdicts, "_key_use", _no_key_use)
    report = run("seen-paper-key")
    assert report["safety"]["violations"] > 0
    assert report["safety"]["violation_examples"][0]["attack"] == "seen_paper_key"


def _no_key_use(self: Any, i: int, event: Any, key_at: int, dirty: list[int]) -> None:
    ids = self._key_ids
    if ids is None:
        ids = self._key_ids = []
    ids.append((event.id, i))


def _weakened_verdict(self: Any, x: int) -> tuple[VoidReason, int] | None:
    """Rule 4 broken: a revocation no longer voids what the revoked device
    added concurrently (nor, through rule 5, what those devices added)."""
    verdict = _ORIGINAL_VERDICT(self, x)
    if verdict is not None and verdict[0] in (
        VoidReason.SIGNER_REVOKED,
        VoidReason.SIGNER_ADD_VOID,
    ):
        return None
    return verdict


_ORIGINAL_VERDICT = protocol.log.rules.Verdicts._verdict


def test_safety_judge_catches_a_weakened_revocation_rule(monkeypatch: pytest.MonkeyPatch) -> None:
    # The ledger's incremental rules (protocol/log/rules.py) give every state.
    monkeypatch.setattr(protocol.log.rules.Verdicts, "_verdict", _weakened_verdict)
    report = run("stolen-device")
    assert report["safety"]["violations"] > 0
    assert report["safety"]["violation_examples"][0]["attack"] == "stolen_device"


_ORIGINAL_BUILD_STATE = protocol.log.state.build_state


def _arrival_dependent_build_state(
    events: Any, anc: Any, ev: Any
) -> protocol.log.state.AccountState:
    st = _ORIGINAL_BUILD_STATE(events, anc, ev)
    return dataclasses.replace(st, display_name=events[-1].id.hex()[:8])  # last arrival


def test_convergence_judge_catches_arrival_order_dependence(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(protocol.log.account, "build_state", _arrival_dependent_build_state)
    report = run("partition-heal", nodes=30)
    assert report["safety"]["digest_mismatch_pairs"] > 0


@pytest.mark.slow
def test_scale_targets() -> None:
    """DESIGN.md §8 figures at 1,000 nodes (minutes of CPU: `make test-slow`)."""
    base = run("baseline", nodes=1000)
    assert base["delivery_ratio"] == 1.0
    assert base["propagation_latency"]["p99"] <= 1.0
    assert base["cost"]["duplicate_receptions_per_node_per_event"] <= 3.0
    sybil = run("sybil-flood", nodes=1000)
    assert sybil["delivery_ratio"] == 1.0
    assert sybil["propagation_latency"]["p99"] <= 1.6
    assert sybil["safety"]["violations"] == 0


def test_message_traffic_reaches_exactly_the_authorised_devices() -> None:
    """Real envelopes between simulated devices (simnet/messages.py): every
    delivery is made or refused for a reason the log gives; none is opened by
    a device its receiver does not see as active; the run is deterministic."""
    report = run("messaging")
    m = report["messages"]
    assert m["sent"] > 50
    assert m["deliveries"] + m["gave_up"] + m["in_flight_at_end"] == m["deliveries_expected"]
    assert m["in_flight_at_end"] <= 0.01 * m["deliveries_expected"]
    assert m["deliveries"] >= 0.95 * m["deliveries_expected"]
    # session_peer: the sender's device is not active here yet, seen at the
    # scheme-2 wrap before the signature (PROTOCOL.md §15.5 step 3)
    allowed = {"sender_not_active", "session_peer", "unauthorised_wrap"}
    assert set(m["gave_up_refusals"]) <= allowed
    # every device advertises scheme 2: every wrap is a ratchet message
    s2 = m["wrap_scheme_2"]
    assert s2["wraps_opened_by_scheme"] == {"2": m["deliveries"]}
    assert s2["wraps_sealed_by_scheme"] == {"2": m["deliveries_expected"]}
    assert s2["sessions"] > 0
    assert m["opened_by_inactive_device"] == 0
    assert m["opened_from_inactive_sender"] == 0
    assert m["latency"]["p50"] is not None
    assert report["safety"]["violations"] == 0 and report["convergence"]["converged"]
    assert dumps(run("messaging")) == dumps(report)


def test_message_check_can_fail(monkeypatch: pytest.MonkeyPatch) -> None:
    """If the receiver opened envelopes without asking its replica whether
    the sender is active, revoked senders would be read: the figure shows it."""
    from types import SimpleNamespace

    import simnet.messages as messages_mod

    def careless_open(
        params: Any, raw: bytes, account: bytes, keys: Any, states: Any, guard: Any, sessions: Any
    ) -> Any:
        # accepts everything, checks nothing, keeps no session
        return SimpleNamespace(book=None, prekeys=None, scheme=2)

    monkeypatch.setattr(messages_mod, "open_envelope", careless_open)
    m = run("messaging", nodes=40)["messages"]
    assert m["opened_from_inactive_sender"] + m["opened_by_inactive_device"] > 0


def test_simnet_runs_the_ratchets_and_the_scheme_changes_no_delivery() -> None:
    """With half the devices advertising scheme 2, both schemes are sealed
    and opened; with none, the same messages reach the same devices: which
    devices may read is the log's, whatever the wrap (PROTOCOL.md §19.13)."""
    sc = sc_mod.load(sc_mod.builtin("messaging")).with_overrides(nodes=SMALL)

    def with_share(share: float) -> dict[str, Any]:
        w = dataclasses.replace(sc.workload, scheme2_share=share)
        report, _ = Simulation(dataclasses.replace(sc, workload=w)).run()
        return dict(report["messages"])

    none, half = with_share(0.0), with_share(0.5)
    assert none["wrap_scheme_2"]["wraps_opened_by_scheme"] == {"1": none["deliveries"]}
    assert none["wrap_scheme_2"]["sessions"] == 0
    opened = half["wrap_scheme_2"]["wraps_opened_by_scheme"]
    assert set(opened) == {"1", "2"} and sum(opened.values()) == half["deliveries"]
    assert half["wrap_scheme_2"]["sessions"] > 0
    for key in ("sent", "deliveries_expected", "deliveries", "opened_by_inactive_device"):
        assert half[key] == none[key], key


# -- the link manager (protocol.links.manager) in every node ----------------------


def _quiet(**extra: Any) -> sc_mod.Scenario:
    """A small scenario with next to no workload, for link behaviour."""
    data: dict[str, Any] = {
        "name": "links",
        "duration": 10.0,
        "workload": {"accounts": 1, "events": 1},
        **extra,
    }
    return sc_mod.from_dict(data)


def _group(sim: Simulation, i: int) -> str:
    return network_group(sim.engine.nodes[i].host)


def test_admission_caps_inbound_links_in_all_and_per_network_group() -> None:
    """Fifteen nodes, three to a /16, dial node 0 at once: it keeps at most
    its inbound cap, at most the per-group cap from any one /16, and the
    others stay refused (they retry, held back, and are refused again)."""
    sc = _quiet(
        nodes=16,
        topology={"kind": "edges", "edges": [[i, 0] for i in range(1, 16)]},
        network={"honest_per_group": 3},
        link_limits={"max_inbound": 6, "max_inbound_per_group": 2},
    )
    sim = Simulation(sc)
    report, _ = sim.run()
    e = sim.engine
    inbound = [j for j in e.connected_peers(0) if e.dialled_by(j, 0)]
    assert len(inbound) == 6
    assert max(Counter(_group(sim, j) for j in inbound).values()) <= 2
    stats = e.nodes[0].links.stats
    refused = stats.rejected
    # full: a newcomer took an unprotected slot (eviction), and peers just
    # evicted were refused rather than evicting in turn
    assert refused["GROUP_FULL"] > 0 and stats.evicted > 0 and refused["INBOUND_FULL"] > 0
    # refused diallers were held back, not redialling in a loop: a few rounds
    # of BOOTSTRAP_RETRY in ten seconds, not one per round trip
    assert sum(refused.values()) < 9 * 4
    everyone = report["links"]["honest"]["refused"]  # node 0's refusals are among them
    assert all(everyone[reason] >= n for reason, n in refused.items())


def test_peer_exchange_leads_to_dials_in_distinct_network_groups() -> None:
    """A node whose only bootstrap peer is a hub others connected to learns
    them in the hub's PEERS frame and dials one per /16."""
    sc = _quiet(
        nodes=12,
        topology={"kind": "edges", "edges": [[i, 0] for i in range(1, 11)]},
        network={"honest_per_group": 2},
    )
    sim = Simulation(sc)
    e = sim.engine
    e.at(2.0, lambda t: e.add_edge(11, 0, t))  # node 11 joins late, through the hub
    sim.run()
    outbound = [j for j in e.connected_peers(11) if e.dialled_by(11, j)]
    assert 0 in outbound and len(outbound) >= 5
    groups = [_group(sim, j) for j in outbound]
    assert len(set(groups)) == len(groups)
    assert e.nodes[11].links.stats.dials >= len(outbound)


def test_a_ban_closes_the_link_and_blocks_redials_until_it_ends() -> None:
    """Node 1 sends node 0 junk: node 0's replicator disconnects it, its link
    manager bans it (30 s) and refuses node 1's redials until then."""
    sc = _quiet(
        nodes=4,
        duration=45.0,
        topology={"kind": "edges", "edges": [[1, 0], [2, 0], [3, 0]]},
    )
    sim = Simulation(sc)
    e = sim.engine
    e.at(2.0, lambda t: e.transmit(e.nodes[1], 0, b"\xff junk", t))
    e.run(2.5)
    assert 1 not in e.connected_peers(0)
    until = e.nodes[0].links.banned_until("n0001")
    assert until is not None and 31.0 < until < 33.0
    e.run(until - 0.1)
    assert 1 not in e.connected_peers(0)
    assert e.nodes[0].links.stats.rejected["BANNED"] >= 5  # node 1 kept redialling
    e.run(until + 5.0)  # its bootstrap redial after the ban (BOOTSTRAP_RETRY)
    assert 1 in e.connected_peers(0)
    report, _ = sim.run()
    assert report["links"]["honest"]["bans"] == 1


def _eclipse_sybil(sybils: int = 40, **limits: int | bool) -> sc_mod.Scenario:
    """eclipse-sybil at test size: 40 Sybils (more than a node's 32 link
    slots) against 12 honest nodes."""
    sc = sc_mod.load(sc_mod.builtin("eclipse-sybil"))
    (adv,) = sc.adversaries
    params = {**adv.params, "restart_at": 1.0, "attack_at": 3.0}
    return dataclasses.replace(
        sc,
        nodes=12 + sybils,
        duration=10.0,
        workload=dataclasses.replace(sc.workload, accounts=4, events=20, start=2.5, end=8.0),
        adversaries=(dataclasses.replace(adv, count=sybils, params=params),),
        link_limits=LinkLimits(**limits),
        compare_baseline=not limits,
    )


def test_eclipse_sybil_is_defeated_by_the_link_policy_and_not_without_it() -> None:
    report, _ = Simulation(_eclipse_sybil()).run()
    (attack,) = report["attacks"]
    v = attack["victim_links"]
    base = report["attacker_free_baseline"]
    # with the policy: the victim holds honest links throughout, at most the
    # per-group cap of inbound links from each of the two Sybil /16s, and
    # learns the revocation within a few round trips
    assert v["seconds_without_honest_links"] == 0
    assert v["at_revocation"]["honest"] >= 2
    assert v["most_attacker_inbound_links"] == 2 * LinkLimits().max_inbound_per_group
    assert v["refused"]["GROUP_FULL"] > 0
    assert attack["revocation_reached_victim_seconds"] < 1.0
    assert report["safety"]["violations"] == 0 and report["convergence"]["converged"]
    # and honest delivery is as good as without any attacker
    assert report["delivery_ratio"] == base["delivery_ratio"] == 1.0
    assert report["propagation_latency"]["p99"] <= base["propagation_latency"]["p99"] + 0.25
    # defences off (caps and eviction): the Sybils take every slot of the
    # restarted victim, it never gets the revocation, and it misses events
    off, _ = Simulation(_eclipse_sybil(max_inbound=32, max_inbound_per_group=32, evict=False)).run()
    (attack,) = off["attacks"]
    v = attack["victim_links"]
    assert v["at_revocation"] == {"honest": 0, "attacker": 32}
    assert v["seconds_without_honest_links"] >= 8.0
    assert attack["revocation_reached_victim_seconds"] is None
    assert off["delivery_ratio"] < 1.0
    assert "attacker_free_baseline" not in off


def test_runs_with_link_managers_are_deterministic() -> None:
    """Admissions, refusals, hold-backs, bans and peer-exchange dials: the
    same seed gives the same bytes."""
    sc = dataclasses.replace(_eclipse_sybil(sybils=16), compare_baseline=False)
    first = dumps(Simulation(sc).run()[0])
    assert '"GROUP_FULL"' in first and '"BANNED"' in first
    assert dumps(Simulation(sc).run()[0]) == first


_DET_CODE = (
    "import dataclasses, sys; from tests.test_simnet import _eclipse_sybil, Simulation, dumps; "
    "sc = dataclasses.replace(_eclipse_sybil(sybils=16), compare_baseline=False); "
    "sys.stdout.write(dumps(Simulation(sc).run()[0]))"
)


def test_runs_with_link_churn_do_not_depend_on_the_hash_seed() -> None:
    outs = []
    for hash_seed in ("1", "4321"):
        env = dict(os.environ, PYTHONHASHSEED=hash_seed, PYTHONPATH=str(ROOT))
        cmd = [sys.executable, "-c", _DET_CODE]
        done = subprocess.run(cmd, cwd=ROOT, env=env, check=True, capture_output=True, text=True)
        outs.append(done.stdout)
    assert outs[0] == outs[1]


# -- resource attacks (issue 11): each against the same run without it ------------

from protocol.core.params import NetworkParams  # noqa: E402
from simnet import cpu as cpu_mod  # noqa: E402
from simnet.cli import P99_RATIO_TARGET, compare  # noqa: E402


def _attack(name: str, nodes: int, adv: dict[str, Any], **extra: Any) -> sc_mod.Scenario:
    """A built-in resource-attack scenario at test size."""
    sc = sc_mod.load(sc_mod.builtin(name))
    (a,) = sc.adversaries
    a = dataclasses.replace(a, count=adv.pop("count", a.count), params={**a.params, **adv})
    return dataclasses.replace(sc, nodes=nodes, adversaries=(a,), **extra)


def _meets(c: dict[str, Any]) -> dict[str, Any]:
    """The issue's simnet target, asserted; the comparison, for more."""
    assert c["safety_violations"] == 0 and c["digest_mismatch_pairs"] == 0
    assert c["converged"]
    assert c["delivery_ratio"] == 1.0 == c["delivery_ratio_without_attacker"]
    assert c["p99_ratio"] is not None and c["p99_ratio"] <= P99_RATIO_TARGET, c
    assert c["target_met"]
    return c


def _reevaluates_whole_account() -> bool:
    """Does an append off the heads re-evaluate the whole account here?"""
    p = NetworkParams(network_id="smu-sim", genesis_pow_bits=0, event_pow_bits=0)
    return cpu_mod.check_wide(p, 60, tail=10)["evaluated_events_per_event"] > 0


def test_cpu_model_charges_signatures_and_evaluations_not_held_duplicates() -> None:
    """An honest node is charged one verification per signature and one
    evaluation per event it checks; a replayed event it holds costs
    neither (the replicator drops it by lookup before verification)."""
    sc = _quiet(nodes=3, topology={"kind": "edges", "edges": [[1, 0], [2, 0]]})
    sim = Simulation(sc)
    e = sim.engine
    e.run(3.0)
    node = e.nodes[0]
    sigs, evals = node.meter.signatures, node.meter.evaluations
    assert evals == node.ledger.event_count >= 1  # the workload's genesis
    assert sigs == 2 * evals  # a genesis: its signature and its device's proof
    raws = [node.ledger.raw(i) for i in node.ledger.event_ids()]
    from protocol.sync.wire import EventsFrame, encode_frame

    frame = encode_frame(EventsFrame(tuple(r for r in raws if r is not None)))
    for k in range(5):
        e.at(3.0 + k * 0.1, lambda t: e.transmit(e.nodes[1], 0, frame, t))
    e.run(5.0)
    assert (node.meter.signatures, node.meter.evaluations) == (sigs, evals)
    off = Simulation(dataclasses.replace(sc, defences=sc_mod.Defences(dedup_before_verify=False)))
    off.engine.run(3.0)
    n0 = off.engine.nodes[0]
    sigs0 = n0.meter.signatures
    for k in range(5):
        off.engine.at(
            3.0 + k * 0.1, lambda t: off.engine.transmit(off.engine.nodes[1], 0, frame, t)
        )
    off.engine.run(5.0)
    assert n0.meter.signatures == sigs0 + 5 * sigs  # every replay verified again


def test_replay_flood_costs_a_lookup_and_without_the_defence_it_shows() -> None:
    sc = _attack("replay-flood", 10, {"count": 2, "end": 9.0}, duration=11.0)
    sc = dataclasses.replace(
        sc, workload=dataclasses.replace(sc.workload, accounts=4, events=30, end=8.0)
    )
    c = compare(sc)
    _meets(c)
    assert c["adversary"]["replay"]["replayed_events"] > 10_000
    # defences off (verify before the duplicate check, no allowance): the
    # same flood is signature-checked again and again, and latency shows it
    defences = sc_mod.Defences(dedup_before_verify=False, duplicate_allowance=False)
    off, _ = Simulation(dataclasses.replace(sc, defences=defences)).run()
    assert (
        off["cpu"]["signature_checks_per_honest_node_max"]
        > 20 * (c["signature_checks_per_honest_node_max"])
    )
    assert off["propagation_latency"]["p99"] > P99_RATIO_TARGET * c["p99_without_attacker"]


def test_deep_chain_keeps_honest_latency() -> None:
    sc = _attack("deep-chain", 8, {"events": 1000, "batch": 50}, duration=20.0)
    c = compare(sc)
    _meets(c)
    assert c["adversary"]["deep_chain"]["attacker_events_made"] == 1000


def test_wide_dag_keeps_honest_latency() -> None:
    """400 siblings: met even by a ledger that re-evaluates the whole
    account on every append off the heads (the cost is quadratic: see the
    slow test at the scenario's own size)."""
    sc = _attack("wide-dag", 8, {"events": 400, "batch": 50}, duration=20.0)
    c = _meets(compare(sc))
    assert c["adversary"]["wide_dag"]["attacker_events_made"] == 400  # the attack ran


def test_an_append_off_the_heads_evaluates_only_the_new_event() -> None:
    """Issue 11 item 1: what made the wide DAG an attack (p99 ratio 10.9 at
    10 nodes when every append re-evaluated the whole account) is gone."""
    assert not _reevaluates_whole_account()


@pytest.mark.slow
def test_wide_dag_at_scenario_size() -> None:
    c = _meets(compare(sc_mod.load(sc_mod.builtin("wide-dag"))))
    assert c["adversary"]["wide_dag"]["attacker_events_made"] > 0


@pytest.mark.slow
@pytest.mark.parametrize(
    "name",
    [
        "deep-chain",
        "replay-flood",
        "mailbox-fill",
        "stranger-flood",
        "connection-flood",
        "eclipse-sybil",
    ],
)
def test_resource_attack_at_scenario_size(name: str) -> None:
    c = _meets(compare(sc_mod.load(sc_mod.builtin(name))))
    assert c["adversary"], "the attacker ran and reported its figures"


def test_wide_dag_is_charged_for_what_the_ledger_does() -> None:
    """The attack shows in the CPU figures: every honest node checked every
    attacker event (a signature and an evaluation each)."""
    sc = _attack("wide-dag", 6, {"events": 200, "batch": 50}, duration=12.0)
    report, _ = Simulation(sc).run()
    held = report["adversary_figures"]["wide_dag"]["attacker_account_events_at_honest_nodes"]
    assert held == {"min": 201, "max": 201}
    assert report["cpu"]["signature_checks_per_honest_node_max"] >= 201
    assert report["delivery_ratio"] == 1.0 and report["safety"]["violations"] == 0


def test_connection_flood_leaves_honest_links() -> None:
    sc = _attack("connection-flood", 50, {"count": 40, "groups": 2}, duration=14.0)
    sc = dataclasses.replace(
        sc, workload=dataclasses.replace(sc.workload, accounts=4, events=30, end=11.0)
    )
    c = compare(sc)
    _meets(c)
    assert c["victim_seconds_without_honest_links"] == 0
    assert c["adversary"]["connection_flood"]["honest_links_per_honest_node_min_at_end"] >= 2


def test_eclipse_sybil_p99_ratio() -> None:
    c = _meets(compare(dataclasses.replace(_eclipse_sybil(), compare_baseline=False)))
    assert c["p99_ratio"] <= P99_RATIO_TARGET


def _mailbox_fill(nodes: int = 10, group_by: str = "network_group") -> sc_mod.Scenario:
    sc = _attack("mailbox-fill", nodes, {"count": 2}, duration=16.0)
    mb = dataclasses.replace(sc.mailbox, deposits=30, start=3.0, end=13.0, group_by=group_by)
    return dataclasses.replace(
        sc, mailbox=mb, workload=dataclasses.replace(sc.workload, events=12, end=10.0)
    )


def test_mailbox_fill_from_fresh_ids_leaves_contacts_and_strangers_room() -> None:
    c = compare(_mailbox_fill())
    _meets(c)
    assert c["mailbox_contact_accepted_ratio"] == 1.0
    assert c["mailbox_contact_p99_ratio"] <= P99_RATIO_TARGET
    assert c["mailbox_stranger_accepted_ratio"] >= 0.5
    assert c["mailbox_stranger_held_at_end_ratio"] >= 0.5
    attackers = c["mailbox_attacker_deposits"]
    assert attackers["attempted"] >= 1000 and attackers["accepted"] <= 2 * 8
    # strangers counted by peer id instead of network group (the defence
    # removed): the fresh ids fill the pool and push the honest stranger's
    # items out as fast as it deposits them; contacts' token deposits stay
    report, _ = Simulation(_mailbox_fill(group_by="peer_id")).run()
    m = report["mailbox"]
    assert m["contacts"]["accepted_ratio"] == m["contacts"]["held_at_end_ratio"] == 1.0
    assert m["stranger"]["held_at_end_ratio"] < 0.5
    assert m["held_at_end"]["stranger_items"] == 64


def test_stranger_flood_keeps_honest_messages() -> None:
    sc = _attack("stranger-flood", 10, {"count": 2}, duration=16.0)
    sc = dataclasses.replace(
        sc, workload=dataclasses.replace(sc.workload, events=16, end=12.0, messages=60)
    )
    c = compare(sc)
    _meets(c)
    assert c["message_delivery_ratio"] == 1.0
    assert c["message_p99_ratio"] <= P99_RATIO_TARGET
    assert c["adversary"]["stranger_flood"]["opened"] >= 1000


_RESOURCE_DET_CODE = (
    "import dataclasses, sys; from tests.test_simnet import _attack, _mailbox_fill, "
    "Simulation, dumps; "
    "scs = [_mailbox_fill(nodes=8), "
    "_attack('stranger-flood', 8, {'count': 1}, duration=10.0), "
    "_attack('connection-flood', 30, {'count': 20, 'groups': 2}, duration=8.0)]; "
    "sys.stdout.write(''.join(dumps(Simulation(sc).run()[0]) for sc in scs))"
)


def test_resource_attacks_do_not_depend_on_the_hash_seed() -> None:
    outs = []
    for hash_seed in ("1", "4321"):
        env = dict(os.environ, PYTHONHASHSEED=hash_seed, PYTHONPATH=str(ROOT))
        cmd = [sys.executable, "-c", _RESOURCE_DET_CODE]
        done = subprocess.run(cmd, cwd=ROOT, env=env, check=True, capture_output=True, text=True)
        outs.append(done.stdout)
    assert outs[0] == outs[1]
    assert '"mailbox"' in outs[0] and '"stranger_flood"' in outs[0]
