"""libp2p plumbing (PROTOCOL.md §11.1): host construction and framing.

Noise is the only security transport and Yamux the only muxer: py-libp2p's
default host would also accept plaintext, and mplex stalls on large frames.
Streams carry no framing of their own, so every frame is a 4-byte
big-endian length followed by that many bytes; the length is checked
against the limit before the body is read.
"""

from __future__ import annotations

import errno
import socket
import struct
from collections.abc import Sequence
from typing import Any

import multiaddr
import trio
from libp2p import new_host
from libp2p.crypto.ed25519 import create_new_key_pair
from libp2p.crypto.x25519 import create_new_key_pair as create_x25519_pair
from libp2p.exceptions import BaseLibp2pError
from libp2p.network.config import ConnectionConfig
from libp2p.security.noise.transport import PROTOCOL_ID as NOISE_ID
from libp2p.security.noise.transport import Transport as NoiseTransport
from libp2p.stream_muxer.yamux.yamux import PROTOCOL_ID as YAMUX_ID
from libp2p.stream_muxer.yamux.yamux import Yamux

from protocol.sync.wire import PROTOCOL_ID as WIRE_PROTOCOL_ID

from .errors import NodeUsageError, PeerError

REPLICATION_PROTOCOL = WIRE_PROTOCOL_ID

#: what a stream raises when it ends or breaks: EOF (``read_exactly``, and
#: libp2p's StreamEOF), libp2p's stream, muxer and connection errors, socket
#: errors, and trio's for in-memory streams
STREAM_ERRORS: tuple[type[BaseException], ...] = (
    EOFError,
    OSError,
    BaseLibp2pError,
    trio.BrokenResourceError,
    trio.ClosedResourceError,
)
#: and a peer that breaks the framing rules (a length over the limit)
REQUEST_ERRORS: tuple[type[BaseException], ...] = (*STREAM_ERRORS, PeerError)
FRAME_HEADER = struct.Struct(">I")


def make_host(node_seed: bytes) -> Any:
    key_pair = create_new_key_pair(node_seed)
    noise = NoiseTransport(key_pair, noise_privkey=create_x25519_pair().private_key)
    return new_host(
        key_pair=key_pair,
        sec_opt={NOISE_ID: noise},
        # libp2p's own annotations want a TProtocol key and IMuxedConn class
        muxer_opt={YAMUX_ID: Yamux},  # type: ignore[dict-item]
        # one connection per peer also removes a fixed 250 ms wait on every dial
        connection_config=ConnectionConfig(max_connections_per_peer=1),
    )


def parse_multiaddr(text: str) -> multiaddr.Multiaddr:
    try:
        return multiaddr.Multiaddr(text)
    except Exception as exc:  # multiaddr raises several unrelated types
        raise ValueError(f"not a multiaddr: {text!r}") from exc


async def read_exactly(stream: Any, n: int) -> bytes:
    buf = bytearray()
    while len(buf) < n:
        chunk = await stream.read(n - len(buf))
        if not chunk:
            raise EOFError("stream closed")
        buf += chunk
    return bytes(buf)


async def read_frame(stream: Any, max_bytes: int) -> bytes:
    (length,) = FRAME_HEADER.unpack(await read_exactly(stream, FRAME_HEADER.size))
    if length > max_bytes:
        raise PeerError(f"frame of {length} bytes is over the limit of {max_bytes}")
    return await read_exactly(stream, length)


def frame(data: bytes) -> bytes:
    return FRAME_HEADER.pack(len(data)) + data


def probe_listen(listen: Sequence[str]) -> None:
    """A TCP port that something listens on already is an error.  libp2p
    listens with SO_REUSEPORT (hole punching needs it), with which a second
    node would share the port and the kernel would split inbound dials
    between them: bind once without it first to find out."""
    for text in listen:
        parts = text.split("/")
        if len(parts) < 5 or parts[1] not in ("ip4", "ip6") or parts[3] != "tcp":
            continue
        host, port = parts[2], int(parts[4]) if parts[4].isdigit() else 0
        if port == 0:
            continue
        family = socket.AF_INET6 if parts[1] == "ip6" else socket.AF_INET
        with socket.socket(family, socket.SOCK_STREAM) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind((host, port))
            except OSError as exc:
                if exc.errno == errno.EADDRINUSE:
                    raise NodeUsageError(
                        f"TCP port {port} on {host} is in use (another node?): "
                        "choose another with --listen"
                    ) from None
                raise NodeUsageError(f"cannot listen on {text}: {exc.strerror}") from None
