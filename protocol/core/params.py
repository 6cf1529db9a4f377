"""Network parameters (PROTOCOL.md §9).

Everything that two nodes must agree on to keep the same event set lives
here; a network is named by its id, which every signature covers.
"""

from __future__ import annotations

from dataclasses import dataclass

from protocol.core.errors import UnsupportedVersionError

FORMAT_VERSION = 1
#: The first rules version (suite-1 rules: PROTOCOL.md §12.1).  Retired
#: before any network was deployed: no code computes its rules any more, and
#: its id is never reused.
SUITE_V1 = 1
#: Ed25519 signatures, X25519 encryption keys, BLAKE2b-256 hashes, and the
#: account rules of PROTOCOL.md §7 as written today: suite 1 plus the
#: per-device event cap and the active-device cap (§7.3), revocations that
#: must name an active device (§7.1), extra work on revocations, recovers and
#: merges (§3.4), and rule 6 removing devices under a void recover too
#: (§7.2).  Two nodes holding the same events compute different verdicts
#: under suites 1 and 2, hence the new id (PROTOCOL.md §12.2).
SUITE_V2 = 2
#: Suite 2 plus the rotate-recovery event (kind 7, PROTOCOL.md §6.8): the
#: recovery key replaced with an active device's co-signature, without
#: resetting the devices.  Kind 7 is refused under suite 2 and accepted
#: under suite 3, so nodes holding the same events would disagree: a new id
#: (§12.2).  Every other rule is suite 2's, byte for byte.
SUITE_V3 = 3
#: Every suite this code implements.  A suite id names the algorithms *and*
#: the version of the account rules (PROTOCOL.md §12): a rule change that
#: could make two nodes holding the same events disagree gets a new id here,
#: and a real network moves to it only by changing its ``suite``.
KNOWN_SUITES: frozenset[int] = frozenset({SUITE_V2, SUITE_V3})


@dataclass(frozen=True, slots=True)
class NetworkParams:
    network_id: str
    #: leading zero bits of the proof-of-work hash of a genesis event
    genesis_pow_bits: int
    #: leading zero bits of the proof-of-work hash of an ordinary event
    event_pow_bits: int
    max_event_bytes: int = 2048
    max_parents: int = 8
    #: UTF-8 bytes of a display name or device name
    max_name_bytes: int = 64
    #: The per-device event cap (PROTOCOL.md §7.3): along any path of the
    #: history through points where a device is active, it may sign at most
    #: this many events other than revocations and recovers.  A function of
    #: the event and its ancestors alone; spam from one key never counts
    #: against another device, so once the owner revokes a stolen key, its
    #: events weigh on nobody.  50,000 events cost a thief about 2.3 minutes
    #: of one core on MAINNET, and are more than a device signs in a lifetime.
    max_device_events: int = 50_000
    #: The active-device cap (§7.3): at most this many devices may be active
    #: at an event's parents, and fewer at an add-device's (a recover, which
    #: leaves one, is exempt), so no event has more after it.  It is the most
    #: an envelope wraps for (``envelope.MAX_WRAPS``, §15), and it bounds
    #: what every node keeps per event.
    max_active_devices: int = 64
    #: Leading zero bits for revocations, recovers and merges (events with
    #: more than one parent); ``None``: ``event_pow_bits``.  These are the
    #: events that cost a node work in proportion to the account (an
    #: ancestor set, a scan of what they void, §8), and revocations and
    #: recovers are exempt from the caps, so work prices them instead.
    special_pow_bits: int | None = None
    #: timestamps are milliseconds since the Unix epoch, within these bounds
    min_timestamp_ms: int = 1_704_067_200_000  # 2024-01-01T00:00:00Z
    max_timestamp_ms: int = 7_258_118_400_000  # 2200-01-01T00:00:00Z
    #: the suite (algorithms and account-rules version, PROTOCOL.md §12) that
    #: every event, record, grant and envelope of this network carries; the
    #: encoders write it and the decoders accept exactly it (``check_suite``)
    suite: int = SUITE_V3

    @property
    def has_recovery_rotation(self) -> bool:
        """Whether events of kind 7 (rotate-recovery) exist on this network."""
        return self.suite >= SUITE_V3

    def pow_bits(self, is_genesis: bool, special: bool = False) -> int:
        """The work an event needs (PROTOCOL.md §3.4): ``special`` for a
        revocation, a recover or a merge."""
        if is_genesis:
            return self.genesis_pow_bits
        if special and self.special_pow_bits is not None:
            return self.special_pow_bits
        return self.event_pow_bits


#: The public network: a genesis costs about 1.4 s of one core on average
#: (it varies widely: 0.1-6 s seen), an ordinary event about 3 ms, and a
#: revocation, recover or merge about 45 ms (PROTOCOL.md §9).
MAINNET = NetworkParams(
    network_id="smu-main", genesis_pow_bits=21, event_pow_bits=12, special_pow_bits=16
)

#: For tests, demos and benchmarks: proof-of-work is trivial.
TESTNET = NetworkParams(
    network_id="smu-test", genesis_pow_bits=4, event_pow_bits=1, special_pow_bits=2
)


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
