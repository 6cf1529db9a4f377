"""session.json: prekeys and a session between two devices (docs/PROTOCOL.md
§19): a signed one-time prekey batch and one key's proof, the X3DH set-up
(every DH output, the binding, the secret), then the first messages both
ways with every key they used, inputs a receiver refuses, the first
message in a sealed scheme-2 wrap (§19.13), and skipped keys dropped by a
stranger's bounds: the marks in the state, ``session_key_gone`` apart from
``session_duplicate`` (§19.5, §19.7)."""

from __future__ import annotations

from protocol.core import crypto
from protocol.core.canonical import encode_flat
from protocol.messaging import prekeys, ratchet, session_errors, wrap2, x3dh
from protocol.messaging.ratchet import Session, decode_message

from ._common import (
    FORMAT_NOTE,
    PARAMS,
    T0,
    Json,
    bytes_from_label,
    device_json,
    device_keys,
    params_json,
)

ALICE, BOB = "session/alice", "session/bob"
SPK_ID = 3
FIRST_OPK = 4096
BATCH_SIZE = 4
EXPIRES = T0 + 14 * 24 * 3600 * 1000
NOW_MS = T0 + 60_000
#: (sender, plaintext): two prekey messages, a reply, then ordinary messages
SCRIPT = [
    ("alice", b"hello bob"),
    ("alice", b"are you there?"),
    ("bob", b"hi alice"),
    ("alice", b"now without the prekey header"),
    ("bob", b"and a new ratchet key"),
]


def _b(label: str, n: int = 32) -> bytes:
    return bytes_from_label(f"session/{label}", n)


def _party(label: str) -> x3dh.Party:
    k = device_keys(label)
    return x3dh.Party(_b(f"{label}/account"), k.sign_public, k.enc_public)


def _opk_secrets() -> list[bytes]:
    return [_b(f"opk/{i}") for i in range(BATCH_SIZE)]


def _batch() -> prekeys.PrekeyBatch:
    return prekeys.make_batch(
        PARAMS, device_keys(BOB), _party(BOB).account, FIRST_OPK, EXPIRES, _opk_secrets()
    )


def _store() -> prekeys.PrekeyStore:
    return (
        prekeys.PrekeyStore()
        .with_signed(SPK_ID, _b("spk"), T0)
        .with_batch(FIRST_OPK, EXPIRES, _opk_secrets())
    )


def _prekeys_json() -> dict[str, Json]:
    batch = _batch()
    alice, bob = _party(ALICE), _party(BOB)
    proof = batch.proof(1)
    signed = prekeys.batch_message(
        PARAMS, bob.account, bob.device, FIRST_OPK, BATCH_SIZE, EXPIRES, batch.root
    )
    bad_sig = prekeys.PrekeyBatch(
        batch.account, batch.device, batch.first_id, batch.expires, batch.keys, bytes(64)
    )
    return {
        "signed_prekey": {"id": SPK_ID, "secret": _b("spk").hex(),
                          "public": ratchet.x25519_public(_b("spk")).hex()},
        "batch": {
            "first_id": FIRST_OPK,
            "expires": EXPIRES,
            "secrets": [s.hex() for s in _opk_secrets()],
            "keys": [k.hex() for k in batch.keys],
            "root": batch.root.hex(),
            "signed_hex": signed.hex(),
            "signature": batch.signature.hex(),
            "batch_hex": batch.encode(PARAMS).hex(),
        },
        "proof": {
            "index": 1,
            "path": [p.hex() for p in proof.path],
            "proof_hex": proof.encode(PARAMS).hex(),
        },
        "rejected_batches": [
            {"name": "signature of zeros", "error": "PrekeyError",
             "batch_hex": bad_sig.encode(PARAMS).hex()},
            {"name": "checked as alice's", "error": "PrekeyError", "device": alice.device.hex(),
             "batch_hex": batch.encode(PARAMS).hex()},
        ],
    }  # fmt: skip


def _setup_json() -> tuple[dict[str, Json], Session]:
    alice, bob = _party(ALICE), _party(BOB)
    akeys, bkeys = device_keys(ALICE), device_keys(BOB)
    random = _b("alice/random", 64)
    ek, spk = random[:32], ratchet.x25519_public(_b("spk"))
    opk = _batch().keys[0]
    dhs = [
        ratchet.dh(akeys.enc_secret, spk),
        ratchet.dh(ek, bkeys.enc_public),
        ratchet.dh(ek, spk),
        ratchet.dh(ek, opk),
    ]
    ad_input = encode_flat([PARAMS.suite, PARAMS.network_id, alice.account, alice.device,
                            alice.ik, bob.account, bob.device, bob.ik])  # fmt: skip
    ad = x3dh.session_ad(PARAMS, alice, bob)
    sk = ratchet.hkdf_sha256(bytes(32), x3dh.X3DH_PAD + b"".join(dhs), x3dh.INFO_X3DH + ad, 32)
    one_time = prekeys.OneTimePrekey(FIRST_OPK, opk, EXPIRES)
    session = x3dh.initiate(
        PARAMS, alice, akeys.enc_secret, x3dh.Bundle(bob, SPK_ID, spk, one_time), random
    )
    pending = session.state.pending
    assert pending is not None
    return {
        "alice": {**device_json(ALICE), "account": alice.account.hex()},
        "bob": {**device_json(BOB), "account": bob.account.hex()},
        "random": random.hex(),
        "ephemeral_public": ratchet.x25519_public(ek).hex(),
        "first_ratchet_public": session.state.dhs_public.hex(),
        "one_time_prekey_id": FIRST_OPK,
        "dh": [d.hex() for d in dhs],
        "ad_input_hex": ad_input.hex(),
        "ad": ad.hex(),
        "sk": sk.hex(),
        "initiation_id": pending.initiation_id().hex(),
        "alice_root_key": session.state.rk.hex(),
        "alice_sending_chain_key": (session.state.cks or b"").hex(),
    }, session


def _messages_json(alice: Session) -> tuple[list[Json], list[Json], Session]:
    out: list[Json] = []
    bob: Session | None = None
    store = _store()
    raws: list[bytes] = []
    for i, (sender, text) in enumerate(SCRIPT):
        fresh = _b(f"fresh/{i}")
        s = alice if sender == "alice" else bob
        assert s is not None and s.state.cks is not None
        mk = ratchet.kdf_ck(s.state.cks)[1]
        raw = s.encrypt(text)
        raws.append(raw)
        m = decode_message(raw)
        if sender == "alice" and bob is None:
            bob, got, store = x3dh.respond_from_store(
                PARAMS, _party(ALICE), _party(BOB), device_keys(BOB).enc_secret, store, m,
                fresh, NOW_MS,
            )  # fmt: skip
        else:
            receiver = bob if sender == "alice" else alice
            assert receiver is not None
            got = receiver.decrypt(raw, fresh)
        assert got == text
        key, nonce = ratchet.message_aead_keys(mk)
        receiver_state = (bob if sender == "alice" else alice).state  # type: ignore[union-attr]
        out.append({
            "from": sender,
            "plaintext": text.hex(),
            "form": "prekey" if m.prekey is not None else "ratchet",
            "header": {"dh": m.header.dh.hex(), "pn": m.header.pn, "n": m.header.n},
            "header_hex": m.header.encode().hex(),
            "message_key": mk.hex(),
            "aead_key": key.hex(),
            "nonce": nonce.hex(),
            "message_hex": raw.hex(),
            "receiver_fresh": fresh.hex(),
            "receiver_root_key_after": receiver_state.rk.hex(),
        })  # fmt: skip
    assert bob is not None
    rejected = _rejected(bob, store, raws)
    return out, rejected, bob


def _rejected(bob: Session, store: prekeys.PrekeyStore, raws: list[bytes]) -> list[Json]:
    """Messages Bob's session (after the script) or his store refuses."""
    first = raws[0]
    flipped = first[:-1] + bytes([first[-1] ^ 1])
    cases: list[Json] = [
        {"name": "a replay of the first prekey message", "to": "bob_session",
         "error": "DuplicateMessageError", "message_hex": first.hex()},
        {"name": "a replay of a ratchet message", "to": "bob_session",
         "error": "DuplicateMessageError", "message_hex": raws[3].hex()},
        {"name": "the first prekey message again, as a new set-up", "to": "bob_store",
         "error": "PrekeyReusedError", "message_hex": first.hex()},
        {"name": "the last ciphertext byte flipped", "to": "bob_store",
         "error": "PrekeyReusedError", "message_hex": flipped.hex()},
        {"name": "the last ciphertext byte flipped, fresh store", "to": "fresh_store",
         "error": "SessionDecryptError", "message_hex": flipped.hex()},
    ]  # fmt: skip
    errs = vars(session_errors)
    for case in cases:
        raw = bytes.fromhex(case["message_hex"])
        try:
            if case["to"] == "bob_session":
                Session.from_bytes(bob.to_bytes()).decrypt(raw, bytes(32))
            else:
                x3dh.respond_from_store(
                    PARAMS, _party(ALICE), _party(BOB), device_keys(BOB).enc_secret,
                    store if case["to"] == "bob_store" else _store(), decode_message(raw),
                    bytes(32), NOW_MS,
                )  # fmt: skip
        except session_errors.SessionError as exc:
            assert type(exc) is errs[case["error"]], (case["name"], exc)
        else:
            raise AssertionError(case["name"])
    return cases


def _dropped_json(alice: Session, bob: Session) -> dict[str, Json]:
    """After the script, Alice sends 36 messages; Bob, held to a
    stranger's bounds (32 and 32), opens number 32 (skipping 0 .. 31) and
    then 35 (two more skipped: 0 and 1 are dropped, their chain marked)."""
    limits = ratchet.STRANGER_LIMITS
    a, b = Session(alice.state), Session(bob.state)
    raws = [a.encrypt(b"dropped %d" % i) for i in range(36)]
    too_far = Session(bob.state)
    try:
        too_far.decrypt(raws[33], bytes(32), limits)
    except session_errors.TooFarAheadError:
        pass
    else:
        raise AssertionError("33 skipped keys must be too far")
    opened = []
    for i in (32, 35):
        fresh = _b(f"dropped/fresh/{i}")
        assert b.decrypt(raws[i], fresh, limits) == b"dropped %d" % i
        opened.append({"index": i, "fresh": fresh.hex()})
    dh = decode_message(raws[0]).header.dh
    assert b.state.gone == {dh: decode_message(raws[1]).header.n + 1}
    refused = []
    for i, error in ((0, "SessionKeyGoneError"), (1, "SessionKeyGoneError"),
                     (32, "DuplicateMessageError"), (35, "DuplicateMessageError")):  # fmt: skip
        try:
            Session(b.state).decrypt(raws[i], bytes(32), limits)
        except session_errors.SessionError as exc:
            assert type(exc).__name__ == error
        else:
            raise AssertionError(f"message {i} must be refused")
        refused.append({"index": i, "error": error})
    assert Session(b.state).decrypt(raws[2], bytes(32), limits) == b"dropped 2"
    return {
        "limits": {"max_skip": limits.max_skip, "max_skipped": limits.max_skipped},
        "messages_hex": [r.hex() for r in raws],
        "too_far_first": 33,
        "opened": opened,
        "marks": {dh.hex(): b.state.gone[dh]},
        "state_after_hex": b.to_bytes().hex(),
        "refused": refused,
        "still_opens": 2,
    }


def _wrap2_json(messages: list[Json]) -> dict[str, Json]:
    """The first message (a prekey message) in a scheme-2 wrap sealed to
    Bob's signed prekey (§19.13)."""
    alice, bob = _party(ALICE), _party(BOB)
    spk_secret = _b("spk")
    spk = ratchet.x25519_public(spk_secret)
    e = _b("wrap2/e")
    first = bytes.fromhex(messages[0]["message_hex"])
    sid = decode_message(first).prekey.initiation_id()  # type: ignore[union-attr]
    inner = wrap2.Wrap2Inner(sid, (alice.account, alice.device), first)
    data = wrap2.seal(bob.device, spk, e, inner)
    shared = ratchet.dh(e, spk)
    e_public = ratchet.x25519_public(e)
    opened = wrap2.open_wrap(bob.device, spk, spk_secret, data)
    assert opened == inner
    return {
        "device": bob.device.hex(),
        "key": spk.hex(),
        "e_secret": e.hex(),
        "e_public": e_public.hex(),
        "shared": shared.hex(),
        "kek": crypto.hash32(wrap2.D_WRAP2, shared + e_public + spk).hex(),
        "aad_hex": (wrap2.D_WRAP2 + bob.device + spk).hex(),
        "inner_hex": inner.encode().hex(),
        "data_hex": data.hex(),
    }


def build() -> dict[str, Json]:
    setup, alice = _setup_json()
    messages, rejected, bob = _messages_json(alice)
    return {
        "format": FORMAT_NOTE,
        "params": params_json(),
        "labels": {
            "D_PREKEY_BATCH": prekeys.D_PREKEY_BATCH.hex(),
            "D_PREKEY_LEAF": prekeys.D_PREKEY_LEAF.hex(),
            "D_PREKEY_NODE": prekeys.D_PREKEY_NODE.hex(),
            "D_SESSION_AD": x3dh.D_SESSION_AD.hex(),
            "D_INITIATION": ratchet.D_INITIATION.hex(),
            "INFO_X3DH": x3dh.INFO_X3DH.hex(),
            "INFO_ROOT": ratchet.INFO_ROOT.hex(),
            "INFO_MESSAGE": ratchet.INFO_MESSAGE.hex(),
            "D_WRAP2": wrap2.D_WRAP2.hex(),
        },
        "limits": {
            "MAX_SKIP": ratchet.MAX_SKIP,
            "MAX_SKIPPED": ratchet.MAX_SKIPPED,
            "STRANGER_MAX_SKIP": ratchet.STRANGER_MAX_SKIP,
            "STRANGER_MAX_SKIPPED": ratchet.STRANGER_MAX_SKIPPED,
            "MAX_OLD_CHAINS": ratchet.MAX_OLD_CHAINS,
            "MAX_PLAINTEXT": ratchet.MAX_PLAINTEXT,
            "MAX_MESSAGE_BYTES": ratchet.MAX_MESSAGE_BYTES,
            "MAX_BATCH_KEYS": prekeys.MAX_BATCH_KEYS,
            "MAX_BATCH_BYTES": prekeys.MAX_BATCH_BYTES,
            "MAX_PROOF_BYTES": prekeys.MAX_PROOF_BYTES,
            "MAX_BATCH_LIFETIME_MS": prekeys.MAX_BATCH_LIFETIME_MS,
        },
        "check_time_ms": NOW_MS,
        "prekeys": _prekeys_json(),
        "setup": setup,
        "messages": messages,
        "rejected": rejected,
        "wrap2": _wrap2_json(messages),
        "dropped_keys": _dropped_json(alice, bob),
    }
