"""The NAT lab: network namespaces, veth pairs and nftables routers on one
machine, with real ``smu node`` processes in them (PROTOCOL.md §17.4).

Topology (every name carries the lab's unique prefix)::

        pub0 100.64.0.2   pub1 100.65.0.2   pub2 100.66.0.2   (public nodes)
              \\                |                /
               +-------------- core ------------+       (the "internet")
              /                                   \\
     nat0 WAN 100.80.0.2                   nat1 WAN 100.81.0.2
     masquerade, only replies in           masquerade (random: symmetric)
          |                                        |
     host0 192.168.1.2                      host1 192.168.2.2

* ``core`` routes between /24 links, one per attached namespace, and has no
  route to any private network: a SYN to one from a public host is counted
  in its prerouting counter and then dropped.
* A NAT router masquerades what leaves its WAN side and forwards into its
  LAN only packets of connections it has seen (``ct state
  established,related``): an address- and port-dependent filter; what is
  addressed to the router itself from outside is dropped, not refused, as
  most home routers do (a refusal would break a simultaneous open).  Plain
  ``masquerade`` keeps the source port when it is free (so the mapping is
  endpoint-independent for a socket bound to its listen port, which hole
  punching relies on); ``masquerade random`` picks a new port for every
  connection (a symmetric NAT).  Its prerouting counter counts SYNs from
  the LAN to private or unroutable destinations outside that LAN.
* Public addresses come from the shared space 100.64/10 only (no address
  of the real internet is ever used); the nodes classify them as public
  through a lab file (``protocol.links.addresses.lab_classifier``).

Everything is torn down by ``close`` (processes first, then namespaces,
which takes their veths with them), whatever state a test left.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from node.control import ControlClient
from node.errors import NodeError
from protocol.core.params import TESTNET

#: the lab file every lab node reads: all public lab addresses
LAB_PREFIXES = "100.64.0.0/11\n"
#: destinations no SYN of a lab host should ever go to
PRIVATE_SET = (
    "10.0.0.0/8, 172.16.0.0/12, 192.168.0.0/16, 127.0.0.0/8, 169.254.0.0/16, 0.0.0.0/8, 224.0.0.0/3"
)
LISTEN_PORT = 4001
_counter = 0


def available() -> str | None:
    """None if the lab can run here, else a one-line reason."""
    if os.geteuid() != 0:
        return "the NAT lab needs root (network namespaces)"
    for tool in ("ip", "nft"):
        if shutil.which(tool) is None:
            return f"the NAT lab needs `{tool}` (apt-get install iproute2 nftables)"
    probe = f"smuprobe{os.getpid()}"
    made = subprocess.run(["ip", "netns", "add", probe], capture_output=True)
    if made.returncode != 0:
        return "cannot create network namespaces here: " + made.stderr.decode().strip()
    subprocess.run(["ip", "netns", "del", probe], capture_output=True)
    return None


def sh(*args: str, check: bool = True) -> str:
    done = subprocess.run(list(args), capture_output=True, text=True)
    if check and done.returncode != 0:
        raise RuntimeError(f"{' '.join(args)}: {done.stderr.strip()}")
    return done.stdout


def nft(ns: str, script: str) -> None:
    done = subprocess.run(
        ["ip", "netns", "exec", ns, "nft", "-f", "-"], input=script, capture_output=True, text=True
    )
    if done.returncode != 0:
        raise RuntimeError(f"nft in {ns}: {done.stderr.strip()}\n{script}")


@dataclass
class Host:
    """A namespace with one address, where a node can run."""

    lab: Lab
    name: str
    ns: str
    ip: str
    dir: Path
    proc: subprocess.Popen[bytes] | None = None
    peer_id: str = ""

    @property
    def addr(self) -> str:
        return f"/ip4/{self.ip}/tcp/{LISTEN_PORT}/p2p/{self.peer_id}"

    @property
    def client(self) -> ControlClient:
        return ControlClient(self.dir / "control.sock", timeout=60)

    def smu(self, *args: str) -> str:
        return sh(*self._python(), "-m", "node.cli", *args, "--data-dir", str(self.dir))

    def _python(self) -> list[str]:
        return ["ip", "netns", "exec", self.ns, sys.executable]

    def init(self) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        self.smu("init", "--network", TESTNET.network_id, "--name", self.name)
        (self.dir / "lab-prefixes").write_text(LAB_PREFIXES)

    def start(self, bootstrap: Sequence[str] = (), extra: Sequence[str] = ()) -> None:
        if not (self.dir / "config.json").exists():
            self.init()
        cmd = [
            *self._python(),
            "-m",
            "node.cli",
            "node",
            "run",
            "--data-dir",
            str(self.dir),
            "--listen",
            f"/ip4/{self.ip}/tcp/{LISTEN_PORT}",
            "--lab-prefixes",
            str(self.dir / "lab-prefixes"),
            "--log-level",
            "info",
            *extra,
        ]
        for b in bootstrap:
            cmd += ["--bootstrap", b]
        log = open(self.dir / "node.log", "ab")  # noqa: SIM115 - lives as long as the process
        env = dict(os.environ)
        self.proc = subprocess.Popen(cmd, stdout=log, stderr=log, env=env)
        self.lab.procs.append(self.proc)

    def wait_ready(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited:\n{self.log_tail()}")
            try:
                self.peer_id = self.client.call("node.status")["peer_id"]
                return
            except NodeError:
                time.sleep(0.1)
        raise RuntimeError(f"{self.name} did not start within {timeout:.0f}s\n{self.log_tail()}")

    def call(self, method: str, **params: object) -> dict[str, object]:
        result: dict[str, object] = self.client.call(method, **params)
        return result

    def stop(self) -> None:
        self.ask_to_stop()
        self.wait_stopped()

    def ask_to_stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        try:
            self.client.call("node.stop")
        except (NodeError, OSError):
            self.proc.kill()

    def wait_stopped(self) -> None:
        if self.proc is None:
            return
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()

    def log_tail(self, lines: int = 30) -> str:
        try:
            text = (self.dir / "node.log").read_text(errors="replace").splitlines()[-lines:]
        except FileNotFoundError:
            text = ["(no log)"]
        return f"--- {self.name} ---\n" + "\n".join(text)


@dataclass
class Router:
    lab: Lab
    name: str
    ns: str
    wan_ip: str
    lan_prefix: str
    symmetric: bool


@dataclass
class Lab:
    base: Path
    prefix: str = ""
    namespaces: list[str] = field(default_factory=list)
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)
    hosts: list[Host] = field(default_factory=list)
    routers: list[Router] = field(default_factory=list)
    core: str = ""
    _links: int = 0

    def __post_init__(self) -> None:
        global _counter
        _counter += 1
        if not self.prefix:
            self.prefix = f"sl{os.getpid() % 100000}x{_counter}"
        self.core = self._ns("core")
        sh("ip", "netns", "exec", self.core, "sysctl", "-qw", "net.ipv4.ip_forward=1")
        nft(
            self.core,
            f"""table ip lab {{
  counter private_syn {{ }}
  chain count_syn {{
    type filter hook prerouting priority -150; policy accept;
    iifname "p*" tcp flags & (syn | ack) == syn ip daddr {{ {PRIVATE_SET} }} \
counter name private_syn
  }}
}}
""",
        )

    # -- building ----------------------------------------------------------------

    def _ns(self, name: str) -> str:
        ns = f"{self.prefix}-{name}"
        sh("ip", "netns", "add", ns)
        self.namespaces.append(ns)
        sh("ip", "-n", ns, "link", "set", "lo", "up")
        return ns

    def _wire(self, a: str, a_if: str, a_ip: str, b: str, b_if: str, b_ip: str) -> None:
        """A veth pair between namespaces ``a`` and ``b`` (/24 addresses)."""
        sh("ip", "link", "add", "name", a_if, "netns", a, "type", "veth", "peer", b_if, "netns", b)
        for ns, ifname, ip in ((a, a_if, a_ip), (b, b_if, b_ip)):
            sh("ip", "-n", ns, "addr", "add", f"{ip}/24", "dev", ifname)
            sh("ip", "-n", ns, "link", "set", ifname, "up")

    def public_host(self, name: str, index: int) -> Host:
        """A host on the public segment, in 100.(64+index).0.0/16."""
        ns = self._ns(name)
        net = f"100.{64 + index}.0"
        self._links += 1
        self._wire(self.core, f"p{self._links}", f"{net}.1", ns, "eth0", f"{net}.2")
        sh("ip", "-n", ns, "route", "add", "default", "via", f"{net}.1")
        host = Host(self, name, ns, f"{net}.2", self.base / name)
        self.hosts.append(host)
        return host

    def nat(self, name: str, index: int, symmetric: bool = False) -> Router:
        """A NAT router: WAN 100.(80+index).0.2, LAN 192.168.(index+1).0/24."""
        ns = self._ns(name)
        wan = f"100.{80 + index}.0"
        lan = f"192.168.{index + 1}"
        self._links += 1
        self._wire(self.core, f"r{self._links}", f"{wan}.1", ns, "wan", f"{wan}.2")
        sh("ip", "-n", ns, "route", "add", "default", "via", f"{wan}.1")
        sh("ip", "netns", "exec", ns, "sysctl", "-qw", "net.ipv4.ip_forward=1")
        masq = "masquerade random" if symmetric else "masquerade"
        nft(
            ns,
            f"""table ip lab {{
  counter private_syn {{ }}
  chain count_syn {{
    type filter hook prerouting priority -150; policy accept;
    iifname "lan" ip daddr != {lan}.0/24 tcp flags & (syn | ack) == syn \
ip daddr {{ {PRIVATE_SET} }} counter name private_syn
  }}
  chain only_replies {{
    type filter hook forward priority 0; policy drop;
    ct state established,related accept
    iifname "lan" oifname "wan" accept
  }}
  chain to_router {{
    type filter hook input priority 0; policy drop;
    ct state established,related accept
    iifname {{ "lan", "lo" }} accept
  }}
  chain nat_out {{
    type nat hook postrouting priority 100; policy accept;
    oifname "wan" {masq}
  }}
}}
""",
        )
        router = Router(self, name, ns, f"{wan}.2", f"{lan}.0/24", symmetric)
        self.routers.append(router)
        return router

    def nat_host(self, router: Router, name: str) -> Host:
        ns = self._ns(name)
        lan = router.lan_prefix.rsplit(".", 1)[0]
        self._wire(router.ns, "lan", f"{lan}.1", ns, "eth0", f"{lan}.2")
        sh("ip", "-n", ns, "route", "add", "default", "via", f"{lan}.1")
        host = Host(self, name, ns, f"{lan}.2", self.base / name)
        self.hosts.append(host)
        return host

    # -- reading -------------------------------------------------------------------

    def private_syns(self) -> dict[str, int]:
        """SYNs to private or unroutable destinations seen at each router."""
        out = {}
        for name, ns in [("core", self.core), *((r.name, r.ns) for r in self.routers)]:
            text = sh(
                "ip",
                "netns",
                "exec",
                ns,
                "nft",
                "-j",
                "list",
                "counter",
                "ip",
                "lab",
                "private_syn",
            )
            packets = 0
            for item in json.loads(text)["nftables"]:
                if "counter" in item:
                    packets = int(item["counter"]["packets"])
            out[name] = packets
        return out

    def logs(self) -> str:
        return "\n".join(h.log_tail() for h in self.hosts)

    # -- tearing down ----------------------------------------------------------------

    def close(self) -> None:
        # every node is asked at once: a node holding relay circuits takes
        # seconds to end, and one after the other that added up
        for host in self.hosts:
            with contextlib.suppress(Exception):  # tearing down: go on with the rest
                host.ask_to_stop()
        for host in self.hosts:
            with contextlib.suppress(Exception):
                host.wait_stopped()
        for proc in self.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGKILL)
                proc.wait()
        for ns in reversed(self.namespaces):
            # anything still running in it (a stray child) goes first
            pids = sh("ip", "netns", "pids", ns, check=False).split()
            for pid in pids:
                with contextlib.suppress(ProcessLookupError, ValueError):
                    os.kill(int(pid), signal.SIGKILL)
            sh("ip", "netns", "del", ns, check=False)
        self.namespaces.clear()


def leftover_namespaces(prefix: str) -> list[str]:
    return [
        line.split()[0]
        for line in sh("ip", "netns", "list", check=False).splitlines()
        if line.startswith(prefix)
    ]
