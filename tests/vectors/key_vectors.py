"""keys.json: device keys, recovery (paper) keys, handles, safety numbers
(docs/PROTOCOL.md §4)."""

from __future__ import annotations

from protocol.core import keys, names

from ._common import (
    FORMAT_NOTE,
    Json,
    assert_raises,
    bytes_from_label,
    device_json,
    device_keys,
    domains_json,
    params_json,
    recovery_json,
    recovery_key,
)

DEVICE_LABELS = ["keys/alice-phone", "keys/alice-laptop", "keys/bob-phone"]
RECOVERY_LABELS = ["keys/alice-recovery", "keys/bob-recovery"]

HANDLE_NAMES = [
    "Alice",
    "Zoë Smith",
    "Bob O'Neil-Smith_2",
    "  many   spaces  ",
    "李小龍",
    "ABCDEFGHIJKLMNOPQRSTUVWXYZ-abcdefghijklmnopqrstuvwxyz",
]

B32_INPUTS = [b"", b"\x00", b"\xff", b"\x00\x01\x02\x03\x04", bytes(range(10)), b"smu"]


def _paper_variants(paper: str) -> list[tuple[str, str]]:
    """Ways a user may type a correct paper key (all accepted)."""
    plain = paper.replace("-", "")
    return [
        ("as printed", paper),
        ("upper case", paper.upper()),
        ("no dashes", plain),
        ("spaces instead of dashes", paper.replace("-", " ")),
        ("surrounding whitespace", f"  {paper}\n"),
        ("o for 0, i and l for 1", plain.replace("0", "o").replace("1", "l")),
    ]


def _typo(paper: str) -> str:
    """Change one character to another valid one: the checksum catches it."""
    i = 5
    ch = paper[i]
    repl = "0" if ch != "0" else "1"
    return paper[:i] + repl + paper[i + 1 :]


def build() -> dict[str, Json]:
    devices = []
    for label in DEVICE_LABELS:
        d = device_json(label)
        d["fingerprint"] = device_keys(label).fingerprint
        devices.append(d)

    recoveries = []
    for label in RECOVERY_LABELS:
        r = recovery_json(label)
        rk = recovery_key(label)
        paper = rk.to_paper()
        r["paper"] = paper
        parse = []
        for name, text in _paper_variants(paper):
            assert keys.RecoveryKey.from_paper(text).seed == rk.seed
            parse.append({"name": name, "input": text, "seed": rk.seed.hex()})
        for name, text, error in [
            ("one character changed", _typo(paper), "ChecksumError"),
            ("one character missing", paper[:-1], "DecodeError"),
            ("a 'u' (not in Crockford's alphabet)", "u" + paper[1:], "DecodeError"),
        ]:
            assert_raises(error, keys.RecoveryKey.from_paper, text)
            parse.append({"name": name, "input": text, "error": error})
        r["paper_parse"] = parse
        recoveries.append(r)

    account_ids = [bytes_from_label(f"keys/account/{n}") for n in ("alice", "bob", "carol")]
    handles = [
        {
            "display_name": name,
            "account_id": account_ids[i % len(account_ids)].hex(),
            "slug": names.slug(name),
            "handle": keys.handle(name, account_ids[i % len(account_ids)]),
        }
        for i, name in enumerate(HANDLE_NAMES)
    ]
    pairs = [(0, 1), (1, 2), (0, 2)]
    safety = []
    for a, b in pairs:
        # epoch: the account id itself (never recovered: its genesis), or,
        # for the last pair, a recover's id on one side
        ea = account_ids[a]
        eb = account_ids[b] if (a, b) != (0, 2) else bytes(31) + b"\x07"
        sn = keys.safety_number(account_ids[a], ea, account_ids[b], eb)
        assert sn == keys.safety_number(account_ids[b], eb, account_ids[a], ea)
        safety.append(
            {
                "account_a": account_ids[a].hex(),
                "epoch_a": ea.hex(),
                "account_b": account_ids[b].hex(),
                "epoch_b": eb.hex(),
                "number": sn,
            }
        )

    return {
        "description": "Keys from seeds (docs/PROTOCOL.md §4). A device seed is 64 bytes: "
        "the Ed25519 seed, then the X25519 secret (used as is by crypto_scalarmult_base). "
        "A recovery seed is a 32-byte Ed25519 seed.",
        "format": FORMAT_NOTE,
        "params": params_json(),
        "domains": domains_json(),
        "base32_alphabet": keys.B32_ALPHABET,
        "base32": [{"bytes": b.hex(), "text": keys.b32encode(b)} for b in B32_INPUTS],
        "devices": devices,
        "recovery_keys": recoveries,
        "handles": handles,
        "handle_suffix_chars": keys.HANDLE_SUFFIX_CHARS,
        "safety_numbers": safety,
    }
