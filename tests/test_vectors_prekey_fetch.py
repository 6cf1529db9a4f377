"""prekey_fetch.json (PROTOCOL.md §19.16): the batch, every exchange on
/smu/prekey/1 and the refused frames, reproduced from the recorded inputs."""

from __future__ import annotations

from protocol.core import keys
from protocol.messaging import prekey_fetch as pf
from protocol.messaging import prekey_shelf as ps
from protocol.messaging.prekeys import decode_batch, make_batch, verify_proof

from .vector_support import load, params_of, raises_exactly


def test_prekey_fetch_exchanges_are_reproduced() -> None:
    data = load("prekey_fetch.json")
    params = params_of(data)
    device = keys.DeviceKeys.from_random(bytes.fromhex(data["device"]["seed"]))
    account = bytes.fromhex(data["account"])
    b = data["batch"]
    secrets = [bytes.fromhex(s) for s in b["secrets"]]
    batch = make_batch(params, device, account, b["first_id"], b["expires"], secrets)
    assert batch.encode(params).hex() == b["hex"]
    now = data["check_time_ms"]
    assert decode_batch(params, bytes.fromhex(b["hex"]), account, device.sign_public, now) == batch
    node_key = bytes.fromhex(data["node_key"])
    token_key = bytes.fromhex(data["token_key"]["public"])
    assert len(data["exchanges"]) == 4
    for case in data["exchanges"]:
        offer = pf.PrekeyOffer((batch,), frozenset(case["served_before"]))
        if case["served_before"]:  # the token of the first exchange paid already
            first = pf.decode_request(bytes.fromhex(data["exchanges"][0]["request"]["hex"]))
            assert first.token is not None
            offer = pf.PrekeyOffer(
                offer.batches, offer.served, {first.token.nonce: first.token.expires}
            )
        request = pf.decode_request(bytes.fromhex(case["request"]["hex"]))
        assert request.encode().hex() == case["request"]["hex"]
        answer, after = pf.serve(
            params, offer, request, mailbox_key=node_key, token_key=token_key, now_ms=now
        )
        assert answer.encode().hex() == case["answer"]["hex"], case["name"]
        assert pf.decode_answer(bytes.fromhex(case["answer"]["hex"])) == answer
        if isinstance(answer, pf.OneTimeAnswer):
            opk = verify_proof(params, answer.proof, account, device.sign_public, now)
            assert opk.prekey_id == data["served_key"]["prekey_id"]
            assert opk.key.hex() == data["served_key"]["key"]
            assert after.encode(params).hex() == data["offer_after"]
        else:
            assert after == offer
    upload = pf.decode_request(bytes.fromhex(data["upload"]["hex"]))
    assert upload == pf.UploadRequest(account, device.sign_public, batch.encode(params))
    answer, shelf = ps.PrekeyShelf().upload(params, upload, granted=True, now_ms=now)
    assert answer.encode().hex() == data["uploaded"]["hex"]
    assert shelf.offers[device.sign_public].batches == (batch,)
    for case in data["rejected_requests"]:
        raises_exactly(case["error"], pf.decode_request, bytes.fromhex(case["hex"]))
    for case in data["rejected_answers"]:
        raises_exactly(case["error"], pf.decode_answer, bytes.fromhex(case["hex"]))
