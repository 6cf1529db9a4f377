"""Deterministic simulation of SMU networks under virtual time.

simnet runs many nodes built from the *same* protocol machines as the real
node (a ``protocol.log.ledger.Ledger``, a ``protocol.sync.replication.Replicator``
and a ``protocol.links.manager.LinkManager`` each, on a simulated IPv4
address) over a simulated network, in virtual time, from one seeded
``random.Random``: the same scenario and seed give a byte-identical
report.json (DESIGN.md §2).

    simnet run SCENARIO.toml [--seed N] [--nodes N] [--out DIR] [--no-plots]
    simnet list                      # the built-in scenarios (simnet/scenarios)
    simnet compare SCENARIO...       # with and without the attacker; last line JSON
    simnet calibrate                 # measure the CPU model's costs here

Modules:

* ``scenario``  — the TOML scenario format and its defaults.
* ``engine``    — scheduler (heap keyed by time and sequence number), links
  (latency distributions, retransmission on loss, bandwidth, partitions),
  dials and admission by each node's link manager, and each node's virtual
  CPU (jobs cost virtual time; frames queue).
* ``topology``  — random regular, small world, line, given edges: who has
  whom on its bootstrap list.
* ``workload``  — honest accounts and devices making signed events.
* ``adversaries`` — key injection, stolen device, long-range fork, eclipse
  and withholding (by hand, and by Sybils against the link policy),
  censorship, Sybil flood, replay; each records the ground truth its safety
  figure is judged by.
* ``attacks``   — resource attacks: wide DAG, deep chain, connection flood.
* ``cpu``       — what a node's CPU is charged for (signature checks,
  evaluations of the account rules) and its calibration.
* ``ledgers``   — the cross-node signature cache and attacker ledgers.
* ``metrics``   — safety and convergence judges, latency and cost figures.
* ``sim``       — one run end to end; ``plots`` and ``cli`` around it.
"""
