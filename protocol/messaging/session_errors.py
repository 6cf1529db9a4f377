"""Errors of the session layer: prekeys, X3DH set-up and the Double Ratchet
(PROTOCOL.md §19.9).

Two roots, as everywhere in ``protocol`` (PROTOCOL.md §10):

* ``SessionError`` (an ``InvalidInput``): what the *other* party (or
  whoever relayed its bytes) sent is wrong.  A session, a prekey store or
  a replay state is never changed by input that raises one of these.
* ``SessionUsageError`` (a ``UsageError``): the *local* caller misused the
  API (wrong secret sizes, a plaintext over the limit, a reply on a
  session that cannot send).
"""

from __future__ import annotations

from protocol.core.errors import InvalidInput, UsageError


class SessionError(InvalidInput):
    """Root of the session layer's refusals of remote input."""

    code = "session"


class SessionDecryptError(SessionError):
    """A ratchet message does not authenticate under the key its header
    selects (tampered, truncated, or for another session)."""

    code = "session_decrypt"


class DuplicateMessageError(SessionError):
    """The message key for this header was used already (a replay), or the
    header names a chain this session has moved past."""

    code = "session_duplicate"


class SessionKeyGoneError(SessionError):
    """The message's key is not held and may never have been used: the
    skipped-key bound dropped it (§19.7).  Unlike ``session_duplicate``
    the message may never have been stored, so its sender MUST send it
    again under a new session, never count it delivered (§19.13)."""

    code = "session_key_gone"


class TooFarAheadError(SessionError):
    """Accepting the message would make the receiver derive more skipped
    message keys than ``MAX_SKIP`` (§19.7)."""

    code = "session_too_far"


class WrongSessionError(SessionError):
    """A prekey message that does not belong to this session (another
    initiation), or a bundle/message for other parties."""

    code = "session_wrong"


class PeerNotActiveError(SessionError):
    """The device a scheme-2 wrap names as its session's peer is not ACTIVE
    in the receiver's replica: the receiver may be behind (a device linked
    just now), so the sender tries again later (§15.5 step 3)."""

    code = "session_peer"


class IdentityMismatchError(SessionError):
    """The initiator's identity key in a prekey message is not the one the
    receiver's replica lists for that device (stale, rotated or forged)."""

    code = "session_identity"


class PrekeyError(SessionError):
    """A prekey batch, proof or reference that is malformed or not signed
    by the device it names."""

    code = "prekey"


class UnknownPrekeyError(PrekeyError):
    """The signed or one-time prekey id a message names is not (or no
    longer) held by this device."""

    code = "prekey_unknown"


class PrekeyExpiredError(PrekeyError):
    code = "prekey_expired"


class PrekeyReusedError(PrekeyError):
    """A one-time prekey already used by an earlier session set-up: the
    sender MUST fetch a fresh bundle and start again (§19.3)."""

    code = "prekey_reused"


class SessionUsageError(UsageError):
    """Local misuse of the session API."""


__all__ = [
    "DuplicateMessageError",
    "IdentityMismatchError",
    "PeerNotActiveError",
    "PrekeyError",
    "PrekeyExpiredError",
    "PrekeyReusedError",
    "SessionDecryptError",
    "SessionError",
    "SessionKeyGoneError",
    "SessionUsageError",
    "TooFarAheadError",
    "UnknownPrekeyError",
    "WrongSessionError",
]
