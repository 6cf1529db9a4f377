"""PNG figures of a run (matplotlib, Agg backend: no display needed)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from .sim import Simulation


def write_all(sim: Simulation, out: Path) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    name = sim.sc.name
    paths = []
    # matplotlib writes its version and a date into PNG metadata: drop them
    meta: dict[str, Any] = {"Software": None}

    lat = sim.obs.latencies()
    fig, ax = plt.subplots(figsize=(6, 4))
    if lat:
        ys = [(i + 1) / len(lat) for i in range(len(lat))]
        ax.plot(lat, ys, drawstyle="steps-post")
    ax.set_xlabel("propagation latency (s)")
    ax.set_ylabel("fraction of (event, honest node) deliveries")
    ax.set_title(f"{name}: propagation latency CDF")
    ax.grid(True, alpha=0.3)
    paths.append(_save(fig, out / "latency_cdf.png", meta))

    fig, ax = plt.subplots(figsize=(6, 4))
    samples = sim.obs.samples
    ts = [s[0] for s in samples]
    ax.plot(ts, [s[1] for s in samples], label="deliveries made / expected")
    ax.plot(ts, [s[2] for s in samples], label="honest nodes holding every event")
    for p in sim.sc.partitions:
        ax.axvspan(p.start, p.end, color="red", alpha=0.1, label="partition")
    ax.set_xlabel("virtual time (s)")
    ax.set_ylabel("fraction")
    ax.set_ylim(-0.02, 1.02)
    ax.set_title(f"{name}: convergence over time")
    ax.legend(loc="lower right", fontsize="small")
    ax.grid(True, alpha=0.3)
    paths.append(_save(fig, out / "convergence.png", meta))

    fig, ax = plt.subplots(figsize=(6, 4))
    nodes = sim.engine.nodes
    honest = sorted(n.bytes_sent + n.bytes_received for n in nodes if n.honest)
    attackers = sorted(n.bytes_sent + n.bytes_received for n in nodes if not n.honest)
    ax.bar(range(len(honest)), honest, width=1.0, label="honest")
    if attackers:
        ax.bar(
            range(len(honest), len(honest) + len(attackers)),
            attackers,
            width=1.0,
            color="tab:red",
            label="attacker",
        )
    ax.set_xlabel("node (sorted)")
    ax.set_ylabel("bytes sent + received")
    ax.set_title(f"{name}: bytes per node")
    ax.legend(fontsize="small")
    paths.append(_save(fig, out / "bytes_per_node.png", meta))
    return paths


def _save(fig: Any, path: Path, meta: dict[str, Any]) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=100, metadata=meta)
    plt.close(fig)
    return path
