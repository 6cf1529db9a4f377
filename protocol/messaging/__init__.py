"""Messaging (PROTOCOL.md §15): envelopes, contents, replay state and
mailboxes.  A feature: imports only lower layers."""
