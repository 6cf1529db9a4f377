"""Links between nodes (PROTOCOL.md §17): which links a node keeps, the
admission gate's decisions, and the per-link channel.  A feature: imports
only lower layers."""
