"""Device linking (PROTOCOL.md §14): the link string, its frames, the
approver and joiner machines, and a node's book of offers.  A feature:
imports only lower layers."""
