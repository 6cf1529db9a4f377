"""Contact invites (PROTOCOL.md §4.7): an account id and where to find it.

``smu1inv...`` or ``smu://invite/...``; payload
``[version, network, account, display_name, addrs]``.  The display name is
a hint for the person adding the contact and is replaced by the name in
the account's own log once the log is here; only the account id counts,
and only the safety number verifies it.
"""

from __future__ import annotations

from dataclasses import dataclass

from protocol.core import crypto
from protocol.core.codes import from_code, to_code
from protocol.core.errors import SchemaError, UnsupportedVersionError, WrongNetworkError
from protocol.core.names import check_name
from protocol.core.params import NetworkParams

INVITE_VERSION = 1
TEXT_PREFIX = "smu1inv"
URI_PREFIX = "smu://invite/"
MAX_ADDRS = 8
MAX_ADDR_CHARS = 200


@dataclass(frozen=True, slots=True)
class Invite:
    network: str
    account: bytes
    display_name: str
    addrs: tuple[str, ...]

    def _payload(self) -> list[object]:
        return [INVITE_VERSION, self.network, self.account, self.display_name, list(self.addrs)]

    def to_text(self) -> str:
        return to_code(TEXT_PREFIX, self._payload(), crypto.D_INVITE_CHECKSUM)

    def to_uri(self) -> str:
        return to_code(URI_PREFIX, self._payload(), crypto.D_INVITE_CHECKSUM)

    @classmethod
    def parse(cls, text: str, params: NetworkParams) -> Invite:
        fields = from_code(text, (URI_PREFIX, TEXT_PREFIX), crypto.D_INVITE_CHECKSUM, "an invite")
        if type(fields) is not list or len(fields) != 5:
            raise SchemaError("an invite's payload is an array of 5")
        version, network, account, name, addrs = fields
        if version != INVITE_VERSION or type(version) is not int:
            raise UnsupportedVersionError(f"invite version {version!r} is not known here")
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
        return cls(network, account, name, tuple(addrs))
