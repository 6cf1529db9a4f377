"""Names shown to people (PROTOCOL.md §4.4).

Display and device names travel in signed events and end up on terminals, so
the rules reject anything that could rewrite a screen, reorder text or hide
itself: controls, bidirectional and other invisible format characters, line
separators, private-use characters, noncharacters and spaces other than
U+0020.

Validity is part of consensus: two nodes must accept exactly the same
events (S3).  So the rule is a fixed list of code-point ranges, not a query
to the running Python's Unicode database, whose answers change between
Unicode versions (a character unassigned in Python 3.11 is assigned in
3.12).  ``sanitise`` is display-only, so it may use the live database.
"""

from __future__ import annotations

import unicodedata
from bisect import bisect_right

from protocol.core.errors import BadNameError

#: Inclusive code-point ranges that a name must not contain (PROTOCOL.md §4.4).
FORBIDDEN_RANGES: tuple[tuple[int, int], ...] = (
    (0x0000, 0x001F),  # C0 controls
    (0x007F, 0x00A0),  # DEL, C1 controls, no-break space
    (0x00AD, 0x00AD),  # soft hyphen
    (0x034F, 0x034F),  # combining grapheme joiner
    (0x0600, 0x0605),  # Arabic number signs (format)
    (0x061C, 0x061C),  # Arabic letter mark
    (0x06DD, 0x06DD),  # Arabic end of ayah
    (0x070F, 0x070F),  # Syriac abbreviation mark
    (0x0890, 0x0891),  # Arabic pound/piastre mark above
    (0x08E2, 0x08E2),  # Arabic disputed end of ayah
    (0x115F, 0x1160),  # Hangul fillers
    (0x1680, 0x1680),  # Ogham space mark
    (0x17B4, 0x17B5),  # Khmer inherent vowels (invisible)
    (0x180B, 0x180F),  # Mongolian variation selectors and vowel separator
    (0x2000, 0x200F),  # spaces, zero-width characters, LRM, RLM
    (0x2028, 0x202F),  # line/paragraph separators, bidi embeddings, narrow NBSP
    (0x205F, 0x206F),  # medium space, invisible operators, bidi isolates
    (0x3000, 0x3000),  # ideographic space
    (0x3164, 0x3164),  # Hangul filler
    (0xD800, 0xF8FF),  # surrogates, private use
    (0xFDD0, 0xFDEF),  # noncharacters
    (0xFE00, 0xFE0F),  # variation selectors
    (0xFEFF, 0xFEFF),  # zero-width no-break space (BOM)
    (0xFFA0, 0xFFA0),  # halfwidth Hangul filler
    (0xFFF0, 0xFFFB),  # specials and interlinear annotation controls
    (0x110BD, 0x110BD),  # Kaithi number sign
    (0x110CD, 0x110CD),  # Kaithi number sign above
    (0x13430, 0x1345F),  # Egyptian hieroglyph format controls
    (0x1BCA0, 0x1BCA3),  # shorthand format controls
    (0x1D173, 0x1D17A),  # musical symbol format controls
    (0xE0000, 0xE0FFF),  # tags, variation selectors supplement
    (0xF0000, 0x10FFFF),  # supplementary private use areas
)
_STARTS = [lo for lo, _ in FORBIDDEN_RANGES]


def is_forbidden(code_point: int) -> bool:
    # Every plane's last two code points are noncharacters.
    if code_point & 0xFFFE == 0xFFFE:
        return True
    i = bisect_right(_STARTS, code_point) - 1
    return i >= 0 and code_point <= FORBIDDEN_RANGES[i][1]


def check_name(name: str, max_bytes: int) -> None:
    """Raise ``BadNameError`` unless ``name`` is a valid display/device name."""
    if not name:
        raise BadNameError("a name must not be empty")
    if len(name.encode("utf-8", "surrogatepass")) > max_bytes:
        raise BadNameError(f"a name is at most {max_bytes} bytes of UTF-8")
    if name != name.strip(" ") or "  " in name:
        raise BadNameError("a name has no leading, trailing or doubled spaces")
    if name.isascii() and name.isprintable():
        return  # U+0020..U+007E: nothing forbidden (the common case, fast)
    for ch in name:
        if is_forbidden(ord(ch)):
            raise BadNameError(f"a name must not contain U+{ord(ch):04X}")


# Display only (not consensus): also hide what the live database knows to be
# invisible or unassigned.
_HIDDEN_CATEGORIES = frozenset({"Cc", "Cf", "Zl", "Zp", "Cs", "Co", "Cn"})


def sanitise(text: str, max_chars: int = 200) -> str:
    """Make any text safe to print: forbidden characters become U+FFFD."""
    out = []
    for ch in text[:max_chars]:
        if (
            is_forbidden(ord(ch))
            or unicodedata.category(ch) in _HIDDEN_CATEGORIES
            or (ch.isspace() and ch != " ")
        ):
            out.append("\ufffd")
        else:
            out.append(ch)
    return "".join(out) + ("…" if len(text) > max_chars else "")


def slug(name: str) -> str:
    """The name part of a handle: lowercase ASCII letters, digits, '-' and '_'."""
    out = []
    # NFKD first: compatibility capitals (U+1D400 ...) become ASCII capitals
    for ch in unicodedata.normalize("NFKD", name).lower():
        if ch.isascii() and (ch.isalnum() or ch in "-_"):
            out.append(ch)
        elif ch == " " and out and out[-1] != "-":
            out.append("-")
    return "".join(out).strip("-")[:32] or "user"
