"""Deterministic simulation of SMU networks under virtual time.

simnet runs many nodes built from the *same* protocol machines as the real
node (a ``protocol.log.ledger.Ledger`` and a ``protocol.sync.replication.Replicator``
each) over a simulated network, in virtual time, from one seeded
``random.Random``: the same scenario and seed give a byte-identical
report.json (DESIGN.md §2).

    simnet run SCENARIO.toml [--seed N] [--nodes N] [--out DIR] [--no-plots]
    simnet list                      # the built-in scenarios (simnet/scenarios)

Modules:

* ``scenario``  — the TOML scenario format and its defaults.
* ``engine``    — scheduler (heap keyed by time and sequence number), links
  (latency distributions, retransmission on loss, bandwidth, partitions),
  and each node's virtual CPU (jobs cost virtual time; frames queue).
* ``topology``  — random regular, small world, line, given edges.
* ``workload``  — honest accounts and devices making signed events.
* ``adversaries`` — key injection, stolen device, long-range fork, eclipse
  and withholding, censorship, Sybil flood, replay; each records the ground
  truth its safety figure is judged by.
* ``ledgers``   — the cross-node signature cache and attacker ledgers.
* ``metrics``   — safety and convergence judges, latency and cost figures.
* ``sim``       — one run end to end; ``plots`` and ``cli`` around it.
"""
