"""Device linking (PROTOCOL.md §14): the link string, its frames and the
approver and joiner machines.  A feature: imports only lower layers."""
