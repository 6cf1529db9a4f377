"""Names shown to people (PROTOCOL.md §4.4).

Display and device names travel in signed events and end up on terminals, so
the rules reject anything that could rewrite a screen or reorder text:
control characters, bidirectional overrides and other invisible formatting.
``sanitise`` is the second line of defence for any text shown to a user.
"""

from __future__ import annotations

import unicodedata

from .errors import BadNameError

# Unicode general categories never allowed in a name: controls, format
# characters (this includes every bidirectional control such as U+202E),
# line and paragraph separators, surrogates, private use and unassigned.
_FORBIDDEN_CATEGORIES = frozenset({"Cc", "Cf", "Zl", "Zp", "Cs", "Co", "Cn"})


def check_name(name: str, max_bytes: int) -> None:
    """Raise ``BadNameError`` unless ``name`` is a valid display/device name."""
    if not name:
        raise BadNameError("a name must not be empty")
    if len(name.encode("utf-8")) > max_bytes:
        raise BadNameError(f"a name is at most {max_bytes} bytes of UTF-8")
    if unicodedata.normalize("NFC", name) != name:
        raise BadNameError("a name must be in Unicode NFC form")
    if name != name.strip() or "  " in name:
        raise BadNameError("a name has no leading, trailing or doubled spaces")
    for ch in name:
        if unicodedata.category(ch) in _FORBIDDEN_CATEGORIES:
            raise BadNameError(f"a name must not contain U+{ord(ch):04X}")
        if ch.isspace() and ch != " ":
            raise BadNameError(f"a name must not contain U+{ord(ch):04X}")


def sanitise(text: str, max_chars: int = 200) -> str:
    """Make any text safe to print: forbidden characters become U+FFFD."""
    out = []
    for ch in text[:max_chars]:
        if unicodedata.category(ch) in _FORBIDDEN_CATEGORIES or (ch.isspace() and ch != " "):
            out.append("\ufffd")
        else:
            out.append(ch)
    return "".join(out) + ("…" if len(text) > max_chars else "")


def slug(name: str) -> str:
    """The name part of a handle: lowercase ASCII letters, digits, '-' and '_'."""
    out = []
    for ch in unicodedata.normalize("NFKD", name.lower()):
        if ch.isascii() and (ch.isalnum() or ch in "-_"):
            out.append(ch)
        elif ch == " " and out and out[-1] != "-":
            out.append("-")
    return "".join(out).strip("-")[:32] or "user"
