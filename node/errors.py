"""The node package's error types.

``NodeError`` is the root.  ``NodeUsageError`` is local misuse (bad flag,
no daemon, wrong passphrase); ``PeerError`` is a remote peer's fault.
"""

from __future__ import annotations


class NodeError(Exception):
    """Root of every error raised by ``node``."""


class NodeUsageError(NodeError):
    """The local user or caller did something wrong; the message says what to do."""


class DaemonNotRunning(NodeUsageError):
    pass


class StoreError(NodeError):
    """The on-disk store is damaged or of an unknown schema."""


class StoreCorruptError(StoreError):
    """A value encrypted at rest does not open (PROTOCOL.md §15.21): the
    store is damaged, or it is opened under another storage key."""


class PeerError(NodeError):
    """A remote peer broke the transport rules (framing, sizes)."""


class RpcError(NodeError):
    """The daemon answered a control-API call with an error."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code


class PeerUnreachable(NodeError):
    """A peer could not be dialled, or the stream to it broke (transport)."""


class DiskFullError(StoreError):
    """The disk, or the node's disk budget, is full: the write was rolled
    back whole and nothing was stored."""
