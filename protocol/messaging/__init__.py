"""Messaging (PROTOCOL.md §15): envelopes, contents, replay state, the
mailbox machine and its device-side client.  A feature: imports only lower
layers."""
