"""prekey_fetch.json: ``/smu/prekey/1`` (docs/PROTOCOL.md §19.16), the
UPLOAD of a batch to a mailbox included.

A device (``prekey-fetch/device``) of an account signs one batch of 64
one-time prekeys (secrets from labels); its node (``prekey-fetch/node``)
serves them.  A contact's fetch, paid with a token of the device's token
key naming the node, is answered with the lowest key's proof; the same
token again, a stranger's fetch and a token for another node are answered
SIGNED_ONLY.  Every frame is recorded as hex with its decoded value, and
frames each decoder refuses with the error class."""

from __future__ import annotations

from protocol.core.canonical import decode, encode_flat
from protocol.messaging import prekey_fetch as pf
from protocol.messaging import tokens as tk
from protocol.messaging.prekeys import PrekeyStore, verify_proof

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

DEVICE = "prekey-fetch/device"
ACCOUNT = bytes_from_label("prekey-fetch/account")
TOKEN_SEED = bytes_from_label("prekey-fetch/token-key")
NODE_KEY = device_keys("prekey-fetch/node").sign_public
NOW_MS = T0 + 60_000


def _secrets() -> list[bytes]:
    return [bytes_from_label(f"prekey-fetch/opk/{i}") for i in range(pf.OFFER_BATCH)]


def _token(i: int, mailbox_key: bytes = NODE_KEY) -> tk.Token:
    signer = tk.TokenSigner(TOKEN_SEED)
    nonce = bytes_from_label(f"prekey-fetch/nonce/{i}", 16)
    dev = device_keys(DEVICE).sign_public
    (t,) = signer.issue(PARAMS, mailbox_key, dev, [nonce], tk.token_expiry(T0))
    return t


def _h(*fields: object) -> bytes:
    return encode_flat([1, *fields])


def _frame(name: str, raw: bytes) -> Json:
    return {"name": name, "hex": raw.hex(), "value": to_tagged(decode(raw, 4096))}


def build() -> dict[str, Json]:
    keys = device_keys(DEVICE)
    dev = keys.sign_public
    signer = tk.TokenSigner(TOKEN_SEED)
    _, offer = pf.replenish(PARAMS, keys, ACCOUNT, PrekeyStore(), pf.PrekeyOffer(), _secrets(), T0)
    batch = offer.batches[0]

    def serve(request: pf.FetchRequest, o: pf.PrekeyOffer) -> tuple[pf.Answer, pf.PrekeyOffer]:
        return pf.serve(
            PARAMS, o, request, mailbox_key=NODE_KEY, token_key=signer.public, now_ms=NOW_MS
        )

    contact = pf.FetchRequest(ACCOUNT, dev, _token(0))
    stranger = pf.FetchRequest(ACCOUNT, dev, None)
    elsewhere = pf.FetchRequest(ACCOUNT, dev, _token(1, bytes_from_label("prekey-fetch/other")))
    one_time, served = serve(contact, offer)
    assert isinstance(one_time, pf.OneTimeAnswer)
    opk = verify_proof(PARAMS, one_time.proof, ACCOUNT, dev, NOW_MS)
    cases = [
        ("a contact's fetch", contact, offer, one_time),
        ("the same token again", contact, served, serve(contact, served)[0]),
        ("a stranger's fetch", stranger, offer, serve(stranger, offer)[0]),
        ("a token for another node", elsewhere, offer, serve(elsewhere, offer)[0]),
    ]
    rejected_requests = [
        ("FETCH_TOKEN without its token", _h(2, ACCOUNT, dev), "SchemaError"),
        ("FETCH with a 31-byte device", _h(1, ACCOUNT, dev[:31]), "SchemaError"),
        ("an answer sent as a request", _h(17, "no_token"), "SchemaError"),
        ("wire version 2", encode_flat([2, 1, ACCOUNT, dev]), "UnsupportedVersionError"),
        ("UPLOAD with a str batch", _h(3, ACCOUNT, dev, "batch"), "SchemaError"),
        ("over 5,120 bytes", _h(3, ACCOUNT, dev, b"x" * 5100), "LimitExceededError"),
    ]
    rejected_answers = [
        ("SIGNED_ONLY with an unknown reason", _h(17, "tired"), "SchemaError"),
        ("ONE_TIME with an empty proof", _h(16, b""), "SchemaError"),
        ("ERROR without its message", _h(31, "rate_limited"), "SchemaError"),
    ]
    for _, raw, error in rejected_requests:
        assert_raises(error, pf.decode_request, raw)
    for _, raw, error in rejected_answers:
        assert_raises(error, pf.decode_answer, raw)
    return {
        "note": FORMAT_NOTE,
        "spec": "docs/PROTOCOL.md §19.16 (proofs: §19.2; tokens: §15.16)",
        "params": params_json(),
        "protocol_id": pf.PROTOCOL_ID,
        "limits": {
            "max_request_bytes": pf.MAX_REQUEST_BYTES,
            "max_answer_bytes": pf.MAX_ANSWER_BYTES,
            "offer_batch": pf.OFFER_BATCH,
            "offer_low_water": pf.OFFER_LOW_WATER,
            "offer_batches_per_day": pf.OFFER_BATCHES_PER_DAY,
            "offer_lifetime_ms": pf.OFFER_LIFETIME_MS,
            "serve_margin_ms": pf.SERVE_MARGIN_MS,
        },
        "device": device_json(DEVICE),
        "account": ACCOUNT.hex(),
        "token_key": {"seed": TOKEN_SEED.hex(), "public": signer.public.hex()},
        "node_key": NODE_KEY.hex(),
        "check_time_ms": NOW_MS,
        "batch": {
            "first_id": batch.first_id,
            "expires": batch.expires,
            "secrets": [s.hex() for s in _secrets()],
            "hex": batch.encode(PARAMS).hex(),
        },
        "served_key": {"prekey_id": opk.prekey_id, "key": opk.key.hex()},
        "offer_after": served.encode(PARAMS).hex(),
        "exchanges": [
            {
                "name": name,
                "served_before": sorted(before.served),
                "request": _frame("request", req.encode()),
                "answer": _frame("answer", ans.encode()),
            }
            for name, req, before, ans in cases
        ],
        "error_answer": _frame("ERROR", pf.ErrorAnswer("rate_limited", "slow down").encode()),
        # the same batch uploaded to a mailbox (§19.16, At mailboxes), and its answer
        "upload": _frame("UPLOAD", pf.UploadRequest(ACCOUNT, dev, batch.encode(PARAMS)).encode()),
        "uploaded": _frame("UPLOADED", pf.UploadedAnswer(pf.OFFER_BATCH).encode()),
        "rejected_requests": [
            {"name": n, "hex": raw.hex(), "error": e} for n, raw, e in rejected_requests
        ],
        "rejected_answers": [
            {"name": n, "hex": raw.hex(), "error": e} for n, raw, e in rejected_answers
        ],
    }
