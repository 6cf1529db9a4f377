"""mailbox.json: one-time mailbox tokens (docs/PROTOCOL.md §15.16), the
TOKENS content (kind 48, §15.4), invites with tokens (§4.7 v2), and every
frame of /smu/mailbox/1 (§15.13), the new ones (DEPOSIT_TOKEN,
GRANT_REQUEST_KEYED) included, with frames the decoder refuses and tokens
a mailbox refuses."""

from __future__ import annotations

from typing import Any

from protocol.core.canonical import decode, encode_flat
from protocol.core.invite import Invite
from protocol.messaging import mailbox_wire as mw
from protocol.messaging import tokens as tk
from protocol.messaging.content import encode_content
from protocol.messaging.mailbox import MailboxIdentity
from protocol.records.grant import D_MAILBOX_GRANT, GRANT_V2, decode_grant, grant_fields

from ._common import (
    FORMAT_NOTE,
    PARAMS,
    T0,
    Json,
    assert_raises,
    bytes_from_label,
    device_json,
    device_keys,
    params_json,
    to_tagged,
)

DEVICE = "mailbox/device"
ACCOUNT = bytes_from_label("mailbox/account")
TOKEN_SEED = bytes_from_label("mailbox/token-key")
MAILBOX_SEED = bytes_from_label("mailbox/identity")
#: the time the tokens are checked at; they expire after it
NOW_MS = T0 + 60_000


def _nonce(i: int) -> bytes:
    return bytes_from_label(f"mailbox/nonce/{i}", 16)


def _setting() -> tuple[tk.TokenSigner, bytes, bytes]:
    return (
        tk.TokenSigner(TOKEN_SEED),
        MailboxIdentity(MAILBOX_SEED).public,
        device_keys(DEVICE).sign_public,
    )


def _token(
    i: int,
    *,
    expires: int | None = None,
    mailbox: bytes | None = None,
    device: bytes | None = None,
    signer: tk.TokenSigner | None = None,
) -> tk.Token:
    default_signer, mailbox_key, dev = _setting()
    (t,) = (signer or default_signer).issue(
        PARAMS, mailbox or mailbox_key, device or dev, [_nonce(i)],
        tk.token_expiry(T0) if expires is None else expires,
    )  # fmt: skip
    return t


def _token_json(name: str, t: tk.Token, mailbox_key: bytes, device: bytes) -> dict[str, Json]:
    signed = tk.token_message(PARAMS.network_id, mailbox_key, device, t.nonce, t.expires)
    return {
        "name": name,
        "mailbox_key": mailbox_key.hex(),
        "device": device.hex(),
        "nonce": t.nonce.hex(),
        "expires": t.expires,
        "signed_hex": signed.hex(),
        "signature": t.signature.hex(),
        "token_hex": encode_flat(t.to_wire()).hex(),
    }


#: tokens a mailbox refuses at NOW_MS (PROTOCOL.md §15.16 steps 1, 2, 5, 6)
def _refused_tokens() -> list[tuple[str, tk.Token, str]]:
    return [
        ("expired", _token(10, expires=NOW_MS), "TokenExpiredError"),
        ("a life over 8 days", _token(11, expires=NOW_MS + tk.MAX_TOKEN_LIFETIME_MS + 1),
         "TokenInvalidError"),
        ("signed for another mailbox", _token(12, mailbox=bytes_from_label("mailbox/other")),
         "TokenInvalidError"),
        ("signed for another device", _token(13, device=device_keys("mailbox/other").sign_public),
         "TokenInvalidError"),
        ("signed by another token key", _token(14, signer=tk.TokenSigner(bytes_from_label("x"))),
         "TokenInvalidError"),
    ]  # fmt: skip


def _frames() -> list[tuple[str, bytes]]:
    _, mailbox_key, dev = _setting()
    me = device_keys(DEVICE)
    env = bytes_from_label("mailbox/envelope", 48)  # frames carry envelopes as opaque bin
    item = mw.item_id_of(dev, env)
    nonce = _nonce(99)
    return [
        ("DEPOSIT (a stranger's)", mw.deposit_request(dev, env)),
        ("DEPOSIT_TOKEN (a contact's)", mw.deposit_request(dev, env, _token(0))),
        ("CHALLENGE_REQUEST", mw.challenge_request(dev)),
        ("FETCH", mw.fetch_request(PARAMS, me, mailbox_key, nonce, 100)),
        ("DELETE", mw.delete_request(PARAMS, me, mailbox_key, nonce, [item])),
        ("GRANT_REQUEST", mw.grant_request(PARAMS, me, ACCOUNT, mailbox_key, T0)),
        ("GRANT_REQUEST_KEYED",
         mw.grant_request(PARAMS, me, ACCOUNT, mailbox_key, T0, _setting()[0].public)),
        ("DEPOSITED", mw.frame_of(mw.Frame.DEPOSITED, item)),
        ("CHALLENGE", mw.frame_of(mw.Frame.CHALLENGE, nonce, T0 + 60_000)),
        ("ITEMS", mw.frame_of(mw.Frame.ITEMS, [[item, T0, env]])),
        ("DELETED", mw.frame_of(mw.Frame.DELETED, 1)),
        ("GRANTED (a v2 grant naming the device's token key)",
         mw.frame_of(mw.Frame.GRANTED, _grant())),
        ("ERROR: stranger_pool_full",
         mw.error_frame(mw.StrangerPoolFullError("this device's pool for strangers is full"))),
        ("ERROR: token_spent", mw.error_frame(tk.TokenSpentError("that token was spent here"))),
    ]  # fmt: skip


def _grant() -> bytes:
    """The v2 grant the mailbox signs for DEVICE, naming its token key
    (§15.11); records.json has grants field by field."""
    signer, mailbox_key, dev = _setting()
    fields = grant_fields(
        PARAMS, GRANT_V2, mailbox_key, "12D3KooWVectorsMailbox", ACCOUNT, dev, 1 << 20, 100,
        T0, T0 + 7 * 24 * 3600 * 1000,
    )  # fmt: skip
    fields[11] = signer.public
    signature = MailboxIdentity(MAILBOX_SEED).sign(D_MAILBOX_GRANT + encode_flat(fields))
    grant = encode_flat([*fields, signature])
    assert decode_grant(grant, PARAMS).token_key == signer.public
    return grant


#: answer frames ``decode_answer`` refuses, with the error class
def _rejected_answers() -> list[tuple[str, bytes, str]]:
    return [
        ("DEPOSITED with a 15-byte item id", _h(16, b"i" * 15), "SchemaError"),
        ("ITEMS holding an item of two fields", _h(18, [[b"i" * 16, T0]]), "SchemaError"),
        ("GRANTED with a str grant", _h(20, "grant"), "SchemaError"),
        ("ERROR without its message", _h(31, "quota"), "SchemaError"),
        ("a request sent as an answer", _h(2, b"d" * 32), "SchemaError"),
    ]


def _h(*fields: object) -> bytes:
    return encode_flat([1, *fields])


#: request frames ``decode_request`` refuses, with the error class
def _rejected() -> list[tuple[str, bytes, str]]:
    d, e, t = b"d" * 32, b"e", _token(0).to_wire()
    return [
        ("DEPOSIT_TOKEN without its token", _h(6, d, e), "SchemaError"),
        ("DEPOSIT_TOKEN with a token of two fields", _h(6, d, e, t[:2]), "SchemaError"),
        ("DEPOSIT_TOKEN with a 15-byte nonce", _h(6, d, e, [b"n" * 15, t[1], t[2]]), "SchemaError"),
        ("DEPOSIT_TOKEN with a negative expiry", _h(6, d, e, [t[0], -1, t[2]]), "SchemaError"),
        ("DEPOSIT_TOKEN with a str envelope", _h(6, d, "e", t), "SchemaError"),
        ("GRANT_REQUEST_KEYED with a 31-byte key", _h(7, d, d, T0, b"k" * 31, b"s" * 64),
         "SchemaError"),
        ("GRANT_REQUEST_KEYED without its key", _h(7, d, d, T0, b"s" * 64), "SchemaError"),
        ("an answer sent as a request", _h(16, b"i" * 16), "SchemaError"),
        ("unknown frame type 8", _h(8), "SchemaError"),
        ("wire version 2", encode_flat([2, 1, d, e]), "UnsupportedVersionError"),
    ]  # fmt: skip


def build() -> dict[str, Json]:
    signer, mailbox_key, dev = _setting()
    tokens = [_token(i) for i in range(3)]
    batch = tk.TokenBatch(dev, mailbox_key, tuple(sorted(tokens, key=lambda t: t.nonce)))
    kind, body = encode_content(batch)
    invite = Invite(PARAMS.network_id, ACCOUNT, "bob", ("/ip4/192.0.2.7/tcp/4001",),
                    tk.for_invite([tk.TokenBatch(dev, mailbox_key, batch.tokens[:2])]))  # fmt: skip
    for _, t, error in _refused_tokens():
        assert_raises(error, tk.verify_token, PARAMS, mailbox_key, dev, signer.public, t, NOW_MS)
    for t in tokens:
        tk.verify_token(PARAMS, mailbox_key, dev, signer.public, t, NOW_MS)
    frames: list[Json] = []
    for name, raw in _frames():
        frames.append({"name": name, "hex": raw.hex(), "value": to_tagged(_decode(raw))})
    rejected: list[Json] = []
    for name, raw, error in _rejected():
        assert_raises(error, mw.decode_request, raw)
        rejected.append({"name": name, "hex": raw.hex(), "error": error})
    rejected_answers = []
    for name, raw, error in _rejected_answers():
        assert_raises(error, mw.decode_answer, raw)
        rejected_answers.append({"name": name, "hex": raw.hex(), "error": error})
    return {
        "note": FORMAT_NOTE,
        "spec": "docs/PROTOCOL.md §4.7, §15.4, §15.13, §15.16",
        "params": params_json(),
        "domains": {
            "D_MAILBOX_TOKEN": tk.D_MAILBOX_TOKEN.hex(),
            "D_MAILBOX_AUTH": mw.D_MAILBOX_AUTH.hex(),
            "D_MAILBOX_ITEM": mw.D_MAILBOX_ITEM.hex(),
        },
        "limits": {
            "token_lifetime_ms": tk.TOKEN_LIFETIME_MS,
            "max_token_lifetime_ms": tk.MAX_TOKEN_LIFETIME_MS,
            "expiry_granule_ms": tk.EXPIRY_GRANULE_MS,
            "max_batch": tk.MAX_BATCH,
        },
        "device": device_json(DEVICE),
        "token_key": {"seed": TOKEN_SEED.hex(), "public": signer.public.hex()},
        "mailbox": {"seed": MAILBOX_SEED.hex(), "public": mailbox_key.hex()},
        "check_time_ms": NOW_MS,
        "tokens": [_token_json(f"token {i}", t, mailbox_key, dev) for i, t in enumerate(tokens)],
        "refused_tokens": [
            {
                **_token_json(name, t, _mailbox_of(name, mailbox_key), _device_of(name, dev)),
                "error": error,
            }
            for name, t, error in _refused_tokens()
        ],
        "tokens_content": {"kind": kind, "body_hex": body.hex()},
        "invite": {"text": invite.to_text(), "payload": to_tagged(invite._payload())},
        "frames": frames,
        "rejected": rejected,
        "rejected_answers": rejected_answers,
    }


def _mailbox_of(name: str, default: bytes) -> bytes:
    return bytes_from_label("mailbox/other") if "another mailbox" in name else default


def _device_of(name: str, default: bytes) -> bytes:
    return device_keys("mailbox/other").sign_public if "another device" in name else default


def _decode(raw: bytes) -> Any:
    return decode(raw, len(raw))
