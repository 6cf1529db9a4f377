"""The account log: events, the account rules, the ledger of every account,
the store interface and the escrow (PROTOCOL.md §5-§8).  Imports only ``core``."""
