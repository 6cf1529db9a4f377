"""The protocol package's error types (docs/PROTOCOL.md §10).

Two branches under one root:

* ``InvalidInput`` — what a *remote* party sent is wrong (malformed,
  non-canonical, oversized, forged, unauthorised).  A node rejects the input,
  keeps nothing of it and may score the sender down.
* ``UsageError`` — the *local* caller misused the API (asked for an unknown
  account, tried to sign with a key that is not active, ...).

Conflicts and equivocation are not errors: they are values in the account
state (void events, the disputed flag).
"""

from __future__ import annotations


class ProtocolError(Exception):
    """Root of every error raised by ``protocol``."""


class InvalidInput(ProtocolError):
    """Input from outside is invalid; nothing of it was stored."""

    #: short machine-readable code, stable across versions (PROTOCOL.md §10)
    code = "invalid"


class DecodeError(InvalidInput):
    code = "decode"


class NonCanonicalError(DecodeError):
    code = "non_canonical"


class SizeLimitError(InvalidInput):
    code = "too_large"


class SchemaError(DecodeError):
    """Wrong field count, wrong type, unknown enum value."""

    code = "schema"


class WrongNetworkError(InvalidInput):
    code = "wrong_network"


class UnsupportedVersionError(InvalidInput):
    code = "unsupported_version"


class InvalidKeyError(InvalidInput):
    code = "invalid_key"


class BadSignatureError(InvalidInput):
    code = "bad_signature"


class InsufficientWorkError(InvalidInput):
    code = "insufficient_work"


class BadParentsError(InvalidInput):
    code = "bad_parents"


class BadTimestampError(InvalidInput):
    code = "bad_timestamp"


class BadNameError(InvalidInput):
    code = "bad_name"


class UnauthorisedError(InvalidInput):
    """The signer was not entitled to sign this event at its parents (rule 1)."""

    code = "unauthorised"


class InvalidEventError(InvalidInput):
    """The event breaks an account rule other than authorisation."""

    code = "invalid_event"


class LimitExceededError(InvalidInput):
    code = "limit_exceeded"


class ChecksumError(InvalidInput):
    """A typed-in key or code has a wrong checksum (a typo)."""

    code = "checksum"


class ChannelProtocolError(InvalidInput):
    """A per-link channel frame that is well formed but wrong at this point
    of the stream (PROTOCOL.md §17.3.5): a frame before HELLO, a second
    HELLO, a gap in sequence numbers, an ACK of items never sent."""

    code = "channel_protocol"


class FlowControlError(InvalidInput):
    """A channel peer sent beyond the window it was granted, or shrank the
    window it grants (PROTOCOL.md §17.3.3)."""

    code = "flow_control"


class UsageError(ProtocolError):
    """The local caller misused the API."""


class UnknownAccountError(UsageError):
    pass


class NotActiveError(UsageError):
    """The local device is not active in the account, so it cannot act."""
