"""Network parameters (PROTOCOL.md §9).

Everything that two nodes must agree on to keep the same event set lives
here; a network is named by its id, which every signature covers.
"""

from __future__ import annotations

from dataclasses import dataclass

from protocol.core.errors import UnsupportedVersionError

FORMAT_VERSION = 1
#: Ed25519 signatures, X25519 encryption keys, BLAKE2b-256 hashes, and the
#: account rules of PROTOCOL.md §7 as written today
SUITE_V1 = 1
#: Every suite this code implements.  A suite id names the algorithms *and*
#: the version of the account rules (PROTOCOL.md §12): a rule change that
#: could make two nodes holding the same events disagree gets a new id here,
#: and a real network moves to it only by changing its ``suite``.
KNOWN_SUITES: frozenset[int] = frozenset({SUITE_V1})


@dataclass(frozen=True, slots=True)
class NetworkParams:
    network_id: str
    #: leading zero bits of the proof-of-work hash of a genesis event
    genesis_pow_bits: int
    #: leading zero bits of the proof-of-work hash of every other event
    event_pow_bits: int
    max_event_bytes: int = 2048
    max_parents: int = 8
    #: UTF-8 bytes of a display name or device name
    max_name_bytes: int = 64
    #: an event other than a revocation or recover may have at most this
    #: many ancestors: a cap on an account's history that depends on the DAG
    #: alone (PROTOCOL.md §7.3)
    max_ancestors: int = 50_000
    #: timestamps are milliseconds since the Unix epoch, within these bounds
    min_timestamp_ms: int = 1_704_067_200_000  # 2024-01-01T00:00:00Z
    max_timestamp_ms: int = 7_258_118_400_000  # 2200-01-01T00:00:00Z
    #: the suite (algorithms and account-rules version, PROTOCOL.md §12) that
    #: every event, record, grant and envelope of this network carries; the
    #: encoders write it and the decoders accept exactly it (``check_suite``)
    suite: int = SUITE_V1

    def pow_bits(self, is_genesis: bool) -> int:
        return self.genesis_pow_bits if is_genesis else self.event_pow_bits


#: The public network: a genesis costs about 1.4 s of one core on average
#: (it varies widely: 0.1-6 s seen), any other event about 3 ms (PROTOCOL.md §9).
MAINNET = NetworkParams(network_id="smu-main", genesis_pow_bits=21, event_pow_bits=12)

#: For tests, demos and benchmarks: proof-of-work is trivial.
TESTNET = NetworkParams(network_id="smu-test", genesis_pow_bits=4, event_pow_bits=1)


def suite_known(params: NetworkParams, suite: object) -> bool:
    """Whether a value read from a ``suite`` field is one this network
    speaks.  One network runs one set of rules, so that is its own suite
    alone: a node never evaluates an account under two rule versions
    (PROTOCOL.md §12).  ``bool`` is no integer on the wire."""
    return type(suite) is int and suite == params.suite


def check_suite(params: NetworkParams, suite: object, what: str) -> int:
    """``suite_known`` or ``UnsupportedVersionError``: the one place every
    decoder asks (events, device records, grants, envelopes)."""
    if not suite_known(params, suite):
        raise UnsupportedVersionError(
            f"{what} of suite {suite!r} is not known on network {params.network_id!r}"
        )
    return params.suite


def network_by_id(network_id: str) -> NetworkParams:
    for params in (MAINNET, TESTNET):
        if params.network_id == network_id:
            return params
    raise KeyError(network_id)
