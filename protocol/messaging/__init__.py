"""Messaging (PROTOCOL.md §15): envelopes, contents, replay state, one-time
mailbox tokens, the mailbox machine (its frames, its store) and its
device-side client; and the session layer of §19 (prekeys, X3DH set-up,
the Double Ratchet).  A feature: imports only lower layers."""
