"""Contact invites (PROTOCOL.md §4.7): an account id, where to find it and,
from version 2, a few one-time mailbox tokens of the inviting device.

``smu1inv...`` or ``smu://invite/...``; payload

    v1: [1, network, account, display_name, addrs]
    v2: [2, network, account, display_name, addrs, [[device, mailbox_key, [token...]]...]]

with ``token = [nonce bin(16), expires uint, signature bin(64)]`` (§15.16).
An invite without tokens is written as version 1, byte for byte as before;
both versions parse.  The display name is a hint for the person adding the
contact and is replaced by the name in the account's own log once the log
is here; only the account id counts, and only the safety number verifies
it.  Tokens are only checked for shape here (this layer knows no
mailboxes): the mailbox checks them when they are spent, and
``protocol.messaging.tokens`` turns them into batches.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import pairwise

from protocol.core import crypto
from protocol.core.codes import from_code, to_code
from protocol.core.errors import SchemaError, UnsupportedVersionError, WrongNetworkError
from protocol.core.fields import fixed_bin, uint
from protocol.core.names import check_name
from protocol.core.params import NetworkParams

INVITE_VERSION = 1
#: the version that carries tokens
INVITE_TOKENS_VERSION = 2
TEXT_PREFIX = "smu1inv"
URI_PREFIX = "smu://invite/"
MAX_ADDRS = 8
MAX_ADDR_CHARS = 200
#: an invite carries tokens for at most this many (device, mailbox) pairs,
#: and this many per pair: a code people scan stays short (§4.7)
MAX_INVITE_BATCHES = 2
MAX_INVITE_TOKENS = 4

#: ``(nonce, expires, signature)``
InviteToken = tuple[bytes, int, bytes]
#: ``(device, mailbox_key, tokens)``
InviteBatch = tuple[bytes, bytes, tuple[InviteToken, ...]]


@dataclass(frozen=True, slots=True)
class Invite:
    network: str
    account: bytes
    display_name: str
    addrs: tuple[str, ...]
    #: version 2: deposit tokens of the inviting device, per mailbox
    tokens: tuple[InviteBatch, ...] = ()

    def _payload(self) -> list[object]:
        base: list[object] = [self.network, self.account, self.display_name, list(self.addrs)]
        if not self.tokens:
            return [INVITE_VERSION, *base]
        batches = [[d, m, [list(t) for t in ts]] for d, m, ts in self.tokens]
        return [INVITE_TOKENS_VERSION, *base, batches]

    def to_text(self) -> str:
        return to_code(TEXT_PREFIX, self._payload(), crypto.D_INVITE_CHECKSUM)

    def to_uri(self) -> str:
        return to_code(URI_PREFIX, self._payload(), crypto.D_INVITE_CHECKSUM)

    @classmethod
    def parse(cls, text: str, params: NetworkParams) -> Invite:
        fields = from_code(text, (URI_PREFIX, TEXT_PREFIX), crypto.D_INVITE_CHECKSUM, "an invite")
        if type(fields) is not list or not fields:
            raise SchemaError("an invite's payload is an array")
        version = fields[0]
        if type(version) is not int or version not in (INVITE_VERSION, INVITE_TOKENS_VERSION):
            raise UnsupportedVersionError(f"invite version {version!r} is not known here")
        if len(fields) != (5 if version == INVITE_VERSION else 6):
            raise SchemaError(f"a version-{version} invite's payload has {4 + version} elements")
        network, account, name, addrs = fields[1:5]
        if network != params.network_id:
            raise WrongNetworkError(f"the invite is for network {network!r}")
        if type(account) is not bytes or len(account) != 32:
            raise SchemaError("an invite names a 32-byte account id")
        if type(name) is not str:
            raise SchemaError("display name must be a string")
        check_name(name, params.max_name_bytes)
        if (
            type(addrs) is not list
            or len(addrs) > MAX_ADDRS
            or not all(
                type(a) is str and 0 < len(a) <= MAX_ADDR_CHARS and a.isprintable() for a in addrs
            )
        ):
            raise SchemaError(f"at most {MAX_ADDRS} printable addresses")
        tokens = _batches(fields[5]) if version == INVITE_TOKENS_VERSION else ()
        return cls(network, account, name, tuple(addrs), tokens)


def _batches(value: object) -> tuple[InviteBatch, ...]:
    """1 to ``MAX_INVITE_BATCHES`` batches of 1 to ``MAX_INVITE_TOKENS``
    tokens each, ascending by nonce (a v2 invite without tokens is no v2)."""
    if type(value) is not list or not 0 < len(value) <= MAX_INVITE_BATCHES:
        raise SchemaError(f"an invite carries 1 to {MAX_INVITE_BATCHES} token batches")
    out: list[InviteBatch] = []
    for b in value:
        if type(b) is not list or len(b) != 3 or type(b[2]) is not list:
            raise SchemaError("a token batch is [device, mailbox_key, [tokens]]")
        if not 0 < len(b[2]) <= MAX_INVITE_TOKENS:
            raise SchemaError(f"an invite's batch holds 1 to {MAX_INVITE_TOKENS} tokens")
        tokens: list[InviteToken] = []
        for t in b[2]:
            if type(t) is not list or len(t) != 3:
                raise SchemaError("a token is [nonce, expires, signature]")
            tokens.append(
                (fixed_bin(t[0], 16, "nonce"), uint(t[1], "expiry"), fixed_bin(t[2], 64, "sig"))
            )
        if any(a[0] >= z[0] for a, z in pairwise(tokens)):
            raise SchemaError("a batch's tokens are ascending by nonce and unique")
        out.append(
            (fixed_bin(b[0], 32, "device"), fixed_bin(b[1], 32, "mailbox key"), tuple(tokens))
        )
    return tuple(out)
