"""Replication (PROTOCOL.md §11): the frames, range-based reconciliation, the
replication machine, peer scores, record flooding and peer exchange.  A
feature: imports ``core``, ``log`` and ``records``, no other feature."""
