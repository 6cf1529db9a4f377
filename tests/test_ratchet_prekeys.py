"""Signed one-time prekey batches and the device's prekey store
(PROTOCOL.md §19.2, §19.3): a batch and each key's proof verify only as the
device signed them; a one-time prekey opens one session, and a second
set-up naming it gets ``PrekeyReusedError``."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from protocol.core import errors
from protocol.core.canonical import decode, encode_flat
from protocol.core.params import NetworkParams
from protocol.messaging import prekeys, ratchet, x3dh
from protocol.messaging.prekeys import (
    MAX_BATCH_BYTES,
    PrekeyStore,
    decode_batch,
    make_batch,
    verify_proof,
)
from protocol.messaging.session_errors import (
    PrekeyError,
    PrekeyExpiredError,
    PrekeyReusedError,
    SessionDecryptError,
    SessionUsageError,
    UnknownPrekeyError,
)

from .conftest import FAST, T0, hypothesis_settings
from .ratchet_support import EXPIRES, FIRST_OPK, make_device, secret


def _batch(n: int = 8) -> tuple[prekeys.PrekeyBatch, bytes, bytes]:
    bob = make_device("bob")
    batch = make_batch(
        FAST, bob.keys, bob.party.account, 50, EXPIRES, [secret(f"k{i}") for i in range(n)]
    )
    return batch, bob.party.account, bob.keys.sign_public


def test_a_batch_round_trips_and_verifies() -> None:
    batch, account, device = _batch(128)
    raw = batch.encode(FAST)
    assert len(raw) <= MAX_BATCH_BYTES
    assert decode_batch(FAST, raw, account, device, T0) == batch


@pytest.mark.parametrize("n", [1, 2, 8, 128])
def test_every_key_of_a_batch_has_a_proof_that_verifies(n: int) -> None:
    batch, account, device = _batch(n)
    for i in range(n):
        raw = batch.proof(i).encode(FAST)
        assert len(raw) <= prekeys.MAX_PROOF_BYTES
        opk = verify_proof(FAST, raw, account, device, T0)
        assert (opk.prekey_id, opk.key, opk.expires) == (50 + i, batch.keys[i], EXPIRES)


def _mutate(raw: bytes, index: int, value: object) -> bytes:
    v = decode(raw, 1 << 16)
    v[index] = value
    return encode_flat(v)


def test_a_batch_is_refused_unless_its_device_signed_exactly_it() -> None:
    batch, account, device = _batch(8)
    raw = batch.encode(FAST)
    other = make_device("carol")
    cases: list[tuple[bytes, bytes, bytes, type[Exception]]] = [
        (raw, account, other.keys.sign_public, PrekeyError),  # another device
        (raw, other.party.account, device, PrekeyError),  # another account
        (_mutate(raw, 5, 51), account, device, PrekeyError),  # ids moved: another root
        (_mutate(raw, 6, EXPIRES + 1), account, device, PrekeyError),
        (_mutate(raw, 8, bytes(64)), account, device, PrekeyError),
        (_mutate(raw, 7, list(reversed(batch.keys))), account, device, PrekeyError),
        (_mutate(raw, 7, list(batch.keys[:6])), account, device, errors.SchemaError),
        (_mutate(raw, 7, [batch.keys[0]] * 8), account, device, errors.SchemaError),
        (_mutate(raw, 7, [bytes(32)] * 8), account, device, errors.InvalidKeyError),
        (_mutate(raw, 0, 2), account, device, errors.UnsupportedVersionError),
        (_mutate(raw, 1, 99), account, device, errors.UnsupportedVersionError),
        (_mutate(raw, 2, "other"), account, device, errors.WrongNetworkError),
        (_mutate(raw, 5, 2**32 - 4), account, device, errors.SchemaError),
        (raw + b"\x00", account, device, errors.NonCanonicalError),
        (b"\x90" * (MAX_BATCH_BYTES + 1), account, device, errors.SizeLimitError),
    ]
    for data, acc, dev, error in cases:
        with pytest.raises(error):
            decode_batch(FAST, data, acc, dev, T0)
    with pytest.raises(PrekeyExpiredError):
        decode_batch(FAST, raw, account, device, EXPIRES)
    with pytest.raises(PrekeyError):  # claims to outlive what a store keeps
        decode_batch(FAST, raw, account, device, EXPIRES - prekeys.MAX_BATCH_LIFETIME_MS - 1)
    other_net = NetworkParams(network_id="smu-other", genesis_pow_bits=0, event_pow_bits=0)
    with pytest.raises(errors.WrongNetworkError):
        decode_batch(other_net, raw, account, device, T0)


def test_a_proof_is_refused_if_any_part_is_changed() -> None:
    batch, account, device = _batch(8)
    proof = batch.proof(5)
    raw = proof.encode(FAST)
    for index, value, error in [
        (9, 4, PrekeyError),  # another position: another leaf
        (10, batch.keys[4], PrekeyError),  # another key at this position
        (11, [*proof.path[:2], bytes(32)], PrekeyError),
        (11, list(proof.path[:2]), errors.SchemaError),
        (9, 8, errors.SchemaError),
        (6, 16, errors.SchemaError),  # a bigger tree: the path is too short
        (6, 6, errors.SchemaError),
        (5, 51, PrekeyError),
        (7, EXPIRES + 3600_000, PrekeyError),
        (10, bytes(32), errors.InvalidKeyError),
    ]:
        with pytest.raises(error):
            verify_proof(FAST, _mutate(raw, index, value), account, device, T0)
    with pytest.raises(errors.SizeLimitError):
        verify_proof(FAST, b"\x90" * (prekeys.MAX_PROOF_BYTES + 1), account, device, T0)
    with pytest.raises(PrekeyExpiredError):
        verify_proof(FAST, raw, account, device, EXPIRES)


def test_making_a_batch_refuses_misuse() -> None:
    bob = make_device("bob")
    for n in (0, 3, 256):
        with pytest.raises(SessionUsageError):
            make_batch(FAST, bob.keys, bob.party.account, 0, EXPIRES, [secret("x")] * n)
    with pytest.raises(SessionUsageError):
        make_batch(FAST, bob.keys, bob.party.account, 2**32 - 1, EXPIRES, [secret("x")] * 2)


def test_a_one_time_prekey_is_taken_once() -> None:
    store = PrekeyStore().with_batch(10, EXPIRES, [secret("a"), secret("b")])
    s, after = store.take_one_time(10, T0)
    assert s == secret("a")
    assert 10 not in after.one_time and after.spent == {10: EXPIRES}
    assert store.take_one_time(10, T0)[0] == s  # the old store is unchanged
    with pytest.raises(PrekeyReusedError):
        after.take_one_time(10, T0)
    with pytest.raises(UnknownPrekeyError):
        after.take_one_time(12, T0)
    with pytest.raises(PrekeyExpiredError):
        after.take_one_time(11, EXPIRES)
    pruned = after.pruned(EXPIRES)
    assert pruned.one_time == {} and pruned.spent == {}
    with pytest.raises(SessionUsageError):
        after.with_batch(10, EXPIRES, [secret("c")])  # an id is never reused


def test_the_store_round_trips_and_refuses_malformed_encodings() -> None:
    store = (
        PrekeyStore()
        .with_signed(2, secret("s2"), T0)
        .with_signed(1, secret("s1"), T0 + 1)
        .with_batch(30, EXPIRES, [secret("b"), secret("a")])
    )
    _, store = store.take_one_time(31, T0)
    raw = store.encode()
    assert PrekeyStore.decode(raw) == store
    assert PrekeyStore.decode(raw).encode() == raw
    bad = [[2, [], [], []], [1, [], []], [1, [[1, b"x", 0]], [], []], [1, [], [], [[1]]]]
    for value in bad:
        with pytest.raises(errors.SchemaError):
            PrekeyStore.decode(encode_flat(value))
    with pytest.raises(errors.SizeLimitError):
        PrekeyStore.decode(b"\x90" * (prekeys.MAX_STORE_BYTES + 1))


def test_a_superseded_signed_prekey_stays_usable_for_the_grace_period() -> None:
    store = PrekeyStore().with_signed(1, secret("s1"), T0).with_signed(2, secret("s2"), T0 + 5)
    assert store.signed_secret(1, T0 + 6) == secret("s1")
    end = T0 + 5 + prekeys.SIGNED_PREKEY_GRACE_MS
    assert store.signed_secret(2, end + 1) == secret("s2")  # the current one has no end
    with pytest.raises(UnknownPrekeyError):
        store.signed_secret(1, end)
    assert set(store.pruned(end).signed) == {2}
    with pytest.raises(UnknownPrekeyError):
        store.signed_secret(3, T0)


def test_a_reused_one_time_prekey_gets_a_typed_refusal() -> None:
    alice, bob = make_device("alice"), make_device("bob")
    carol = make_device("carol")
    a = x3dh.initiate(FAST, alice.party, alice.keys.enc_secret, bob.bundle(0), alice.rand(64))
    m = ratchet.decode_message(a.encrypt(b"from alice"))
    _, _, store = x3dh.respond_from_store(
        FAST, alice.party, bob.party, bob.keys.enc_secret, bob.store, m, bob.rand(), T0
    )
    assert FIRST_OPK in store.spent
    # carol was handed the same one-time prekey (a mailbox served it twice)
    c = x3dh.initiate(FAST, carol.party, carol.keys.enc_secret, bob.bundle(0), carol.rand(64))
    mc = ratchet.decode_message(c.encrypt(b"from carol"))
    with pytest.raises(PrekeyReusedError):
        x3dh.respond_from_store(
            FAST, carol.party, bob.party, bob.keys.enc_secret, store, mc, bob.rand(), T0
        )
    # with a fresh bundle she gets through
    c = x3dh.initiate(FAST, carol.party, carol.keys.enc_secret, bob.bundle(1), carol.rand(64))
    mc = ratchet.decode_message(c.encrypt(b"from carol"))
    _, pt, store = x3dh.respond_from_store(
        FAST, carol.party, bob.party, bob.keys.enc_secret, store, mc, bob.rand(), T0
    )
    assert pt == b"from carol" and set(store.spent) == {FIRST_OPK, FIRST_OPK + 1}


def test_a_set_up_that_does_not_authenticate_spends_nothing() -> None:
    alice, bob = make_device("alice"), make_device("bob")
    a = x3dh.initiate(FAST, alice.party, alice.keys.enc_secret, bob.bundle(2), alice.rand(64))
    m = ratchet.decode_message(a.encrypt(b"x"))
    bad = ratchet.RatchetMessage(m.header, bytes(len(m.ciphertext)), m.prekey)
    store = bob.store
    with pytest.raises(SessionDecryptError):
        x3dh.respond_from_store(
            FAST, alice.party, bob.party, bob.keys.enc_secret, store, bad, bob.rand(), T0
        )
    assert store == bob.store and store.spent == {}
    unknown = ratchet.RatchetMessage(
        m.header,
        m.ciphertext,
        ratchet.PrekeyHeader(m.prekey.ik, m.prekey.ek, 8, None),  # type: ignore[union-attr]
    )
    with pytest.raises(UnknownPrekeyError):  # a signed prekey id bob never had
        x3dh.respond_from_store(
            FAST, alice.party, bob.party, bob.keys.enc_secret, store, unknown, bob.rand(), T0
        )


@hypothesis_settings(40)
@given(st.integers(0, 7), st.integers(0, 2**32 - 9), st.binary(min_size=1, max_size=64))
def test_proofs_verify_for_any_position_and_break_for_any_flip(
    exp: int, first_id: int, noise: bytes
) -> None:
    n = 1 << exp
    bob = make_device("bob")
    secrets = [secret(f"h{first_id}/{i}") for i in range(n)]
    batch = make_batch(FAST, bob.keys, bob.party.account, first_id, EXPIRES, secrets)
    index = noise[0] % n
    raw = batch.proof(index).encode(FAST)
    opk = verify_proof(FAST, raw, bob.party.account, bob.keys.sign_public, T0)
    assert opk.prekey_id == first_id + index
    pos = int.from_bytes(noise, "big") % len(raw)
    flipped = raw[:pos] + bytes([raw[pos] ^ (1 << (noise[-1] % 8))]) + raw[pos + 1 :]
    with pytest.raises(errors.InvalidInput):
        verify_proof(FAST, flipped, bob.party.account, bob.keys.sign_public, T0)
