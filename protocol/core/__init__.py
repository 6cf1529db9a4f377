"""Core: canonical encoding, crypto, keys, names, codes, parameters, errors
and the machine contract (PROTOCOL.md §2-§4, §9, §10, §18).  Imports nothing
else of ``protocol``."""
