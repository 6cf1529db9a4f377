"""Messaging (PROTOCOL.md §15): envelopes, contents, replay state, one-time
mailbox tokens, the mailbox machine (its frames, its store) and its
device-side client; the session layer of §19 (prekeys, X3DH set-up, the
Double Ratchet) and its use in envelopes (wrap scheme 2, ``scheme2.py``);
padding to size buckets (``padding.py``).  A feature: imports only lower
layers."""
