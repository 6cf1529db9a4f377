"""`smu init`, `smu node run|status|stop`, `smu log verify`, `smu event
submit`, `smu demo`: the node itself."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from .. import api
from ..config import DEFAULT_LISTEN, load_config
from ..errors import NodeUsageError
from .common import (
    Command,
    client,
    datadir,
    emit,
    group,
    history_protected,
    out,
    passphrase,
    protection_text,
)

if TYPE_CHECKING:  # the daemon imports libp2p, which takes a second: at run time only
    from ..daemon import NatOptions


def _init_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--name", default=None, help="this device's name (default: the host name)")
    p.add_argument("--network", default="smu-main", choices=["smu-main", "smu-test"])
    p.add_argument(
        "--passphrase", action="store_true", help="encrypt the keys (asks, or reads SMU_PASSPHRASE)"
    )


def cmd_init(args: argparse.Namespace) -> int:
    dd = datadir(args)
    name = args.name or os.uname().nodename or "device"
    secrets = dd.init(args.network, name, passphrase(True) if args.passphrase else None)
    doc = {
        "data_dir": str(dd.path),
        "network": args.network,
        "device_name": name,
        "device_fingerprint": secrets.device.fingerprint,
        "encrypted": bool(args.passphrase),
        # the store's sealed history is as safe as keys.json (§15.21)
        "history_protected": bool(args.passphrase),
    }
    out(
        args,
        doc,
        f"initialised {dd.path}\n  network {args.network}\n  device  {name} "
        f"({secrets.device.fingerprint})\n  at rest {protection_text(bool(args.passphrase))}",
    )
    return 0


def _run_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--listen",
        action="append",
        default=None,
        metavar="MULTIADDR",
        help=f"listen address (default {DEFAULT_LISTEN[0]}); repeatable",
    )
    p.add_argument(
        "--bootstrap",
        action="append",
        default=None,
        metavar="MULTIADDR",
        help="peer to keep connected to; repeatable",
    )
    p.add_argument("--log-level", default=None, choices=["debug", "info", "warning", "error"])
    p.add_argument(
        "--web-port",
        type=int,
        default=None,
        metavar="PORT",
        help="the web app's loopback port (default: any free)",
    )
    p.add_argument(
        "--no-web", action="store_const", const=False, dest="web", help="run without the web app"
    )
    p.add_argument(
        "--metrics-port",
        type=int,
        default=None,
        metavar="PORT",
        help="serve Prometheus metrics on 127.0.0.1:PORT (0: a free port)",
    )
    p.add_argument(
        "--disk-budget-mb",
        type=int,
        default=None,
        metavar="MIB",
        help="stop accepting data once the database reaches this size",
    )
    p.add_argument(
        "--no-mailbox",
        action="store_true",
        help="grant no mailbox to other nodes' devices (grants held are served until they "
        "expire; node.toml: mailbox = false)",
    )
    p.add_argument(
        "--no-relay",
        action="store_true",
        help="do not relay for nodes behind NAT (offered by default once reachable; "
        "node.toml: relay = false)",
    )
    p.add_argument(
        "--lab-prefixes",
        metavar="FILE",
        default=None,
        help="test networks only: a file of 100.64/10 prefixes to treat as public (the NAT lab)",
    )
    p.add_argument("--relay-circuit-bytes", type=int, default=None, help=argparse.SUPPRESS)
    p.add_argument("--reach-fast", action="store_true", help=argparse.SUPPRESS)


def cmd_node_run(args: argparse.Namespace) -> int:
    dd = datadir(args)
    # node.toml in the data dir, each flag given overriding it (§13.3)
    settings = load_config(dd.path).with_flags(
        listen=args.listen,
        bootstrap=args.bootstrap,
        log_level=args.log_level,
        web=args.web,
        web_port=args.web_port,
        metrics_port=args.metrics_port,
        disk_budget_mb=args.disk_budget_mb,
        relay=False if args.no_relay else None,
        mailbox=False if args.no_mailbox else None,
    )
    logging.basicConfig(
        level=settings.log_level.upper(),
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    options = _nat_options(args, str(dd.read_config()["network"]), offer_relay=settings.relay)
    secret = passphrase(False) if dd.is_encrypted() else None
    secrets = dd.load_secrets(secret)
    if not secrets.storage_key:  # a data dir from before §15.21
        secrets = dd.add_storage_key(secret)
    from ..daemon import run_daemon  # importing libp2p takes a second: only here

    _quiet_libp2p()
    run_daemon(dd, secrets, settings, **options)
    return 0


def _quiet_libp2p() -> None:
    """Once libp2p is imported: its import cuts the "libp2p" logger off
    (no handler, no propagation), so what it logs reached stderr unformatted
    through logging's last resort; it goes through ours again, and the
    loggers that report every refused or failed attempt at ERROR (a failed
    dial or stream over several lines, a peer resetting its connection,
    relay, hole punching, the auto-dialler) are silenced: the node logs what
    it decides itself, once and readably (smu.links, smu.relay, smu.reach)."""
    logging.getLogger("libp2p").propagate = True
    for noisy in ("libp2p", "multiaddr", "async_service"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    for chatty in (
        "libp2p.host.basic_host",
        "libp2p.protocol_muxer",
        "libp2p.stream_muxer",
        "libp2p.transport",
        "libp2p.relay",
        "libp2p.network",
        "libp2p.network.auto_connector",  # its own level: INFO every few seconds
        "libp2p.identity",
    ):
        logging.getLogger(chatty).setLevel(logging.CRITICAL)


def _nat_options(args: argparse.Namespace, network: str, *, offer_relay: bool) -> NatOptions:
    from protocol.links.addresses import LabConfigError, lab_classifier
    from protocol.links.reachability import ReachConfig

    options: NatOptions = {"offer_relay": offer_relay}
    if args.lab_prefixes:
        try:
            text = Path(args.lab_prefixes).read_text()
            options["classifier"] = lab_classifier(network, text)
        except (OSError, LabConfigError) as exc:
            raise SystemExit(f"error: --lab-prefixes: {exc}") from exc
    if args.relay_circuit_bytes:
        options["circuit_bytes"] = args.relay_circuit_bytes
    if args.reach_fast:  # the lab: verdicts in seconds, not minutes
        options["reach_config"] = ReachConfig(
            probe_timeout=8.0, probe_interval=30.0, relay_retry=2.0
        )
    return options


DEVICE_STATUS_TEXT = {
    None: "no account yet",
    "joining": "joining (its account's log is not here yet)",
    "revoked": "REVOKED — this device can no longer send, nor read new messages",
}


def cmd_node_status(args: argparse.Namespace) -> int:
    s = api.node.NODE_STATUS.ask(client(args), {})
    # read from the data directory here, not asked of the daemon (§15.21)
    protected = history_protected(datadir(args))
    device = s.get("device_status")
    text = "\n".join(
        [
            f"peer id   {s['peer_id']}",
            f"network   {s['network']}",
            f"device    {DEVICE_STATUS_TEXT.get(device, device)}",
            *[f"listen    {a}" for a in s["listen"]],
            f"peers     {s['peers']}",
            *_reach_lines(s.get("reachability")),
            f"events    {s['events']}   accounts {s['accounts']}   escrow {s['escrow']}",
            f"digest    {s['event_set_digest']}",
            f"at rest   {protection_text(protected)}",
        ]
    )
    out(args, {**s, "history_protected": protected}, text)
    return 0


def _reach_lines(reach: Mapping[str, object] | None) -> list[str]:
    """The reachability verdict and the relays in use (none from a node
    that does not say)."""
    if not reach:
        return []
    used = reach.get("relays")
    relays = f"   relays {', '.join(map(str, used))}" if isinstance(used, list) and used else ""
    return [f"reach     {reach['reachability']}{relays}"]


def cmd_node_stop(args: argparse.Namespace) -> int:
    out(args, api.node.NODE_STOP.ask(client(args), {}), "stopping")
    return 0


def cmd_log_verify(args: argparse.Namespace) -> int:
    from protocol.core.params import network_by_id

    from ..verify import verify_store

    dd = datadir(args)
    params = network_by_id(str(dd.read_config()["network"]))
    report = verify_store(dd.db_path, params)
    lines = [
        f"{report.events} events checked, {report.accepted} valid, {report.accounts} accounts, "
        f"{len(report.problems)} problem(s)"
    ]
    lines += [
        f"  seq {p['seq']} {p['event_id'][:16]}: {p['error']}: {p['message']}"
        for p in report.problems
    ]
    out(args, report.to_json(), "\n".join(lines))
    return 0 if report.ok else 1


def _submit_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("event", help="event as hex, or - to read hex lines from stdin")


def cmd_event_submit(args: argparse.Namespace) -> int:
    c = client(args)
    items = [line.strip() for line in sys.stdin] if args.event == "-" else [args.event]
    results = []
    for item in items:
        if not item:
            continue
        try:
            bytes.fromhex(item)
        except ValueError as exc:
            raise NodeUsageError("an event is given as hex") from exc
        results.append(api.node.EVENT_SUBMIT.ask(c, {"event": item}))
    if args.json:
        emit(results[0] if len(results) == 1 else results)
    else:
        for r in results:
            print(f"{r['status']} {r['event_id']}")
    return 0


def _demo_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--nodes", type=int, default=6, help="how many nodes (at least 6)")
    p.add_argument("--keep", action="store_true", help="keep the demo's data directories")


def cmd_demo(args: argparse.Namespace) -> int:
    from ..netdemo import run

    return run(as_json=args.json, nodes=args.nodes, keep=args.keep)


COMMANDS = [
    Command(("init",), "create this node's keys", cmd_init, _init_args),
    group(("node",), "run and inspect the daemon"),
    Command(("node", "run"), "run the daemon in the foreground", cmd_node_run, _run_args),
    Command(("node", "status"), "peer id, addresses, counts, set digest", cmd_node_status),
    Command(("node", "stop"), "stop the running daemon", cmd_node_stop),
]

#: listed after the everyday commands
TOOLS = [
    group(("log",), "the local event store"),
    Command(("log", "verify"), "re-verify the whole store from scratch", cmd_log_verify),
    group(("event",), "raw signed events"),
    Command(
        ("event", "submit"), "submit an already-signed event (hex)", cmd_event_submit, _submit_args
    ),
    Command(("demo",), "the local network demo", cmd_demo, _demo_args),
]
