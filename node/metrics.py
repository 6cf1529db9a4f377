"""Prometheus metrics on loopback (PROTOCOL.md §13.3): ``metrics_port`` in
``node.toml`` or ``smu node run --metrics-port``.

Figures are read from the services when scraped (nothing is kept twice);
bytes per protocol are counted by the streams the gate admits and the
streams this node opens; ingest and delivery latency are histograms.  The
listener is a few lines of HTTP on 127.0.0.1 only: GET /metrics, nothing
else, requests capped in size and time, a few at a time.
"""

from __future__ import annotations

import contextlib
import logging
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import trio
from prometheus_client import CollectorRegistry, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from .tasks import TaskStatus

log = logging.getLogger("smu.metrics")

MAX_REQUEST_BYTES = 8192
REQUEST_SECONDS = 5
MAX_CONNECTIONS = 8


@dataclass(slots=True)
class Traffic:
    """Bytes read and written per protocol id, over every stream."""

    bytes_in: Counter[str] = field(default_factory=Counter)
    bytes_out: Counter[str] = field(default_factory=Counter)


class CountingStream:
    """A libp2p stream whose reads and writes are counted for ``protocol``."""

    def __init__(self, stream: Any, protocol: str, traffic: Traffic) -> None:
        self._stream = stream
        self._protocol = protocol
        self._traffic = traffic

    async def read(self, n: int = -1) -> bytes:
        # a pass-through: every caller bounds ``n`` itself (read_frame, read_exactly)
        data: bytes = await self._stream.read(n)
        self._traffic.bytes_in[self._protocol] += len(data)
        return data

    async def write(self, data: bytes) -> None:
        await self._stream.write(data)
        self._traffic.bytes_out[self._protocol] += len(data)

    def __getattr__(self, name: str) -> Any:  # close, reset, muxed_conn, ...
        return getattr(self._stream, name)


@dataclass(frozen=True, slots=True)
class Figures:
    """What a scrape reads from the node."""

    events: int
    accounts: int
    escrow: int
    peers: int
    refused: dict[str, int]
    admitted: dict[str, int]
    mailbox_bytes: int
    disk_used_bytes: int
    disk_full: bool
    clock_offset_ms: int | None


class _NodeCollector(Collector):
    def __init__(self, figures: Callable[[], Figures], traffic: Traffic) -> None:
        self.figures = figures
        self.traffic = traffic

    def collect(self) -> Iterator[Metric]:
        f = self.figures()
        for name, value, doc in (
            ("smu_events", f.events, "events in the log"),
            ("smu_accounts", f.accounts, "accounts in the log"),
            ("smu_escrow_events", f.escrow, "events waiting for their parents"),
            ("smu_peers", f.peers, "replication links"),
            ("smu_mailbox_bytes", f.mailbox_bytes, "bytes this node's mailbox holds"),
            ("smu_disk_used_bytes", f.disk_used_bytes, "the database and its log"),
            ("smu_disk_full", int(f.disk_full), "1 while the disk budget is full"),
        ):
            yield GaugeMetricFamily(name, doc, value=value)
        if f.clock_offset_ms is not None:
            yield GaugeMetricFamily(
                "smu_clock_offset_ms", "the peers' median clock minus ours", f.clock_offset_ms
            )
        refused = CounterMetricFamily(
            "smu_streams_refused", "inbound streams refused", labels=["protocol", "reason"]
        )
        for key, n in sorted(f.refused.items()):
            protocol, _, reason = key.partition(": ")
            refused.add_metric([protocol, reason], n)
        yield refused
        admitted = CounterMetricFamily(
            "smu_streams_admitted", "inbound streams admitted", labels=["protocol"]
        )
        for protocol, n in sorted(f.admitted.items()):
            admitted.add_metric([protocol], n)
        yield admitted
        for name, counts in (("in", self.traffic.bytes_in), ("out", self.traffic.bytes_out)):
            family = CounterMetricFamily(
                f"smu_bytes_{name}", f"stream bytes {name}", labels=["protocol"]
            )
            for protocol, n in sorted(counts.items()):
                family.add_metric([protocol], n)
            yield family


class Metrics:
    def __init__(self, figures: Callable[[], Figures]) -> None:
        self.traffic = Traffic()
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(_NodeCollector(figures, self.traffic))
        self.ingest_seconds = Histogram(
            "smu_ingest_seconds",
            "a replication frame from read to applied (checked, ingested)",
            registry=self.registry,
            buckets=(0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5),
        )
        self.delivery_seconds = Histogram(
            "smu_delivery_seconds",
            "a message from stored to delivered to one device",
            registry=self.registry,
            buckets=(0.05, 0.1, 0.25, 0.5, 1, 5, 30, 300, 3600),
        )

    def render(self) -> bytes:
        return bytes(generate_latest(self.registry))

    async def serve(
        self, port: int, task_status: TaskStatus[int] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """Serve on 127.0.0.1:``port`` (0: a free one); started with the port."""
        listeners = await trio.open_tcp_listeners(port, host="127.0.0.1")
        bound = listeners[0].socket.getsockname()[1]
        log.info("metrics on http://127.0.0.1:%d/metrics", bound)
        limiter = trio.CapacityLimiter(MAX_CONNECTIONS)
        task_status.started(bound)
        async with trio.open_nursery() as nursery:
            for listener in listeners:
                nursery.start_soon(self._accept, listener, limiter)

    async def _accept(self, listener: trio.SocketListener, limiter: trio.CapacityLimiter) -> None:
        async with listener, trio.open_nursery() as nursery:
            while True:
                stream = await listener.accept()
                if limiter.borrowed_tokens >= limiter.total_tokens:
                    await stream.aclose()  # too many at once: the scraper retries
                    continue
                nursery.start_soon(self._one, stream, limiter)

    async def _one(self, stream: trio.SocketStream, limiter: trio.CapacityLimiter) -> None:
        async with limiter, stream:
            with trio.move_on_after(REQUEST_SECONDS):
                request = b""
                while b"\r\n\r\n" not in request and len(request) <= MAX_REQUEST_BYTES:
                    chunk = await stream.receive_some(4096)
                    if not chunk:
                        return
                    request += chunk
                line = request.split(b"\r\n", 1)[0].split(b" ")
                if len(request) > MAX_REQUEST_BYTES or len(line) != 3:
                    await _respond(stream, b"400 Bad Request", b"bad request\n")
                elif line[0] != b"GET" or line[1].split(b"?")[0] != b"/metrics":
                    await _respond(stream, b"404 Not Found", b"only GET /metrics\n")
                else:
                    await _respond(stream, b"200 OK", self.render())


async def _respond(stream: trio.SocketStream, status: bytes, body: bytes) -> None:
    head = (
        b"HTTP/1.1 " + status + b"\r\nContent-Type: text/plain; version=0.0.4; charset=utf-8"
        b"\r\nContent-Length: " + str(len(body)).encode() + b"\r\nConnection: close\r\n\r\n"
    )
    with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
        await stream.send_all(head + body)
