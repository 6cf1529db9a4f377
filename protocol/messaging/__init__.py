"""Messaging (PROTOCOL.md §15): envelopes, contents, replay state, one-time
mailbox tokens, the mailbox machine (its frames, its store) and its
device-side client.  A feature: imports only lower layers."""
