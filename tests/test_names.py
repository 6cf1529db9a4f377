"""Name validity is a fixed rule, the same on every Python (S3)."""

from __future__ import annotations

import unicodedata

import pytest

from protocol.core.errors import BadNameError
from protocol.core.names import check_name, is_forbidden, sanitise


@pytest.mark.parametrize("name", ["alice", "Zoë", "李小龙", "bob's laptop", "x\U0001f6dc", "🙂"])
def test_ordinary_names_are_valid(name: str) -> None:
    check_name(name, 64)


@pytest.mark.parametrize(
    "name",
    [
        "",
        " lead",
        "trail ",
        "two  spaces",
        "a\u202eb",
        "a\u2066b",
        "a\x00b",
        "a\nb",
        "a\u200bb",
        "a\u00a0b",
        "a\ufeffb",
        "a\U000e0041b",
        "a\ue000b",
        "a\ufffeb",
        "a\U0001fffeb",
        "x" * 65,
    ],
)
def test_invalid_names(name: str) -> None:
    with pytest.raises(BadNameError):
        check_name(name, 64)


def test_every_control_and_format_character_of_this_python_is_forbidden_or_visible() -> None:
    """The fixed list covers every Cc/Zl/Zp/Co/Cs this Python knows, and
    every Cf except the few visible ones (number signs etc. are listed too)."""
    for cp in range(0x110000):
        cat = unicodedata.category(chr(cp))
        if cat in ("Cc", "Zl", "Zp", "Co", "Cs"):
            assert is_forbidden(cp), hex(cp)
        if cat == "Cf":
            assert is_forbidden(cp), f"format character U+{cp:04X} is not forbidden"


def test_sanitise_hides_what_it_must() -> None:
    assert sanitise("a\u202eb\x1b[31m") == "a\ufffdb\ufffd[31m"
