"""SMU protocol core: sans-I/O formats, rules and state machines.

Nothing here does I/O, reads the clock or uses global randomness: callers
pass the current time and a seeded ``random.Random`` (or bytes) in.
The normative description of everything here is ``docs/PROTOCOL.md``.
"""
