"""Signed soft state beside the log: device records and mailbox grants
(PROTOCOL.md §16, §15.11).  Imports ``core`` and ``log``."""
