"""SMU protocol: sans-I/O formats, rules and state machines.

Nothing here does I/O, reads the clock or uses global randomness: callers
pass the current time (``core.machine.Now``) and a seeded ``random.Random``
(or bytes) in.  The normative description of everything here is
``docs/PROTOCOL.md``; each module names the sections it implements.

Layers, lowest first.  A module imports only from its own sub-package or
from a lower layer, and no feature imports another feature
(``tests/test_layers.py`` fails otherwise):

=========  ==========================  ==========================================
layer      sub-package                 PROTOCOL.md
=========  ==========================  ==========================================
core       ``core``                    §2 canonical encoding, §3 hashes and
                                       signatures, §4 keys, names, codes and
                                       invites, §9 parameters, §10 errors, §18
                                       the machine contract
log        ``log``                     §5-§6 events, §7 account state, §8 ingest,
                                       storage and escrow
records    ``records``                 §16 device records, §15.11 grants
feature    ``sync``                    §11 replication, reconciliation, scores,
                                       device-record flooding, peer exchange
feature    ``links``                   §17 link policy, admission and the
                                       per-link channel
feature    ``linking``                 §14 device linking
feature    ``messaging``               §15 envelopes, contents, replay state,
                                       mailboxes
=========  ==========================  ==========================================

``node/`` composes the features over trio, libp2p and SQLite; ``simnet/``
drives the same machines under virtual time.  Neither is imported here.
"""
