"""Envelopes (PROTOCOL.md §15.1-§15.8): S6 secrecy and authenticity, replay, S5 views."""

from __future__ import annotations

import dataclasses
import hashlib
from typing import Any

import msgpack
import nacl.bindings as sodium
import pytest
from hypothesis import given
from hypothesis import strategies as st

from protocol.core.canonical import encode_flat
from protocol.core.errors import (
    BadSignatureError,
    DecodeError,
    InvalidInput,
    NotActiveError,
    ProtocolError,
    SchemaError,
    SizeLimitError,
    UnauthorisedError,
    UnsupportedVersionError,
    UsageError,
    WrongNetworkError,
)
from protocol.core.keys import DeviceKeys
from protocol.core.params import NetworkParams
from protocol.log.ledger import Ledger
from protocol.log.state import AccountState, AccountStatus, DeviceRecord, DeviceStatus
from protocol.messaging import envelope as envmod
from protocol.messaging.content import (
    CHANNEL_KINDS,
    MAILBOX_NOTICE,
    ContentKind,
    ContentRange,
    HistoryBundle,
    HistoryEntry,
    Receipt,
    ReceiptStatus,
    ReplayError,
    ReplayGuard,
    SentCopy,
    Text,
    UnknownContent,
    content_range,
    decode_content,
    encode_content,
)
from protocol.messaging.envelope import (
    MAX_ENVELOPE_BYTES,
    DecryptError,
    NotForThisDeviceError,
    RecipientDisputedError,
    SenderNotActiveError,
    UnauthorisedWrapError,
    ledger_lookup,
    open_envelope,
    peek,
    seal,
)
from protocol.messaging.padding import pad_length

from .conftest import FAST, T0, History, device
from .conftest import hypothesis_settings as _settings


def _seed(label: str) -> bytes:
    return hashlib.blake2b(b"seed:" + label.encode(), digest_size=32).digest()


class World:
    """Alice (d0, d1) and Bob (d0, d1, d2); each side holds a full replica."""

    def __init__(self) -> None:
        self.a = History(name="alice")
        self.a.add("a1", "d0", "d1", ["g"])
        self.b = History(name="bob")
        self.b.add("b1", "d0", "d1", ["g"])
        self.b.add("b2", "d0", "d2", ["b1"])
        self.la = self._replica()
        self.lb = self._replica()
        self.counter = 0

    def _replica(self) -> Ledger:
        ledger = Ledger(FAST)
        for h in (self.a, self.b):
            for e in h.events.values():
                ledger.ingest(e.raw)
        return ledger

    def send(self, content: Any = None, signer: str = "d0", **kw: Any) -> envmod.SealedEnvelope:
        """Alice's ``signer`` to Bob, in Alice's replica."""
        self.counter += 1
        kw.setdefault("counter", self.counter)
        return seal(
            FAST,
            kw.pop("keys", self.a.keys[signer]),
            kw.pop("sender_state", self.la.state(self.a.account)),
            kw.pop("recipient_state", self.la.state(self.b.account)),
            content if content is not None else Text(f"hello {self.counter}"),
            timestamp=T0 + self.counter,
            seed=_seed(f"msg{self.counter}"),
            **kw,
        )

    def open_bob(self, raw: bytes, dev: str = "d0", guard: ReplayGuard | None = None) -> Any:
        return open_envelope(
            FAST,
            raw,
            self.b.account,
            self.b.keys[dev],
            ledger_lookup(self.lb),
            guard or ReplayGuard(),
        )

    def open_alice(self, raw: bytes, dev: str = "d1", guard: ReplayGuard | None = None) -> Any:
        return open_envelope(
            FAST,
            raw,
            self.a.account,
            self.a.keys[dev],
            ledger_lookup(self.la),
            guard or ReplayGuard(),
        )


@pytest.fixture
def w() -> World:
    return World()


def test_round_trip_to_three_devices_and_own_sibling(w: World) -> None:
    env = w.send(Text("hi bob"))
    b, a = w.b.keys, w.a.keys
    # the header names the recipient's devices only (§15.1): the sender's
    # sibling gets a copy of its own (§15.22)
    assert set(env.wrapped_for) == {b["d0"].sign_public, b["d1"].sign_public, b["d2"].sign_public}
    for dev in ("d0", "d1", "d2"):
        opened = w.open_bob(env.raw, dev)
        assert opened.content == Text("hi bob")
        assert opened.sender_account == w.a.account
        assert opened.sender_device == a["d0"].sign_public
        assert opened.message_id == env.message_id
        assert opened.diverged == () and opened.missing_wraps == ()
    copy = SentCopy(w.b.account, env.message_id, Text("hi bob"))
    own = w.send(copy, recipient_state=w.la.state(w.a.account))
    assert own.wrapped_for == (a["d1"].sign_public,) and own.message_id != env.message_id
    assert w.open_alice(own.raw, "d1").content == copy
    # the sending device has the plaintext: nothing is wrapped for it; in
    # the copy a decoy stands in for it, so the header lists every device
    with pytest.raises(NotForThisDeviceError):
        w.open_alice(env.raw, "d0")
    assert set(peek(own.raw, FAST).devices) == {a["d0"].sign_public, a["d1"].sign_public}
    with pytest.raises(DecryptError):
        w.open_alice(own.raw, "d0")
    with pytest.raises(NotForThisDeviceError):
        w.open_alice(env.raw, "d1")
    # same seed, same bytes: deterministic for simnet
    assert peek(env.raw, FAST).message_id == env.message_id


def test_revoked_device_gets_no_wrap_and_old_wraps_are_refused(w: World) -> None:
    stale_view = w.la.state(w.b.account)
    w.b.revoke("rv", "d0", "d2", ["b2"])
    w.lb.ingest(w.b.events["rv"].raw)
    # Alice does not know of the revocation yet: her envelope still wraps for d2,
    # and Bob's devices refuse it, with the evidence to reconcile (S5).
    stale = w.send(recipient_state=stale_view)
    with pytest.raises(UnauthorisedWrapError) as exc:
        w.open_bob(stale.raw, "d0")
    (bob_view,) = [v for v in exc.value.views if v.account == w.b.account]
    assert not bob_view.same
    assert bob_view.foreign_heads == (w.b.events["b2"].id,)
    assert w.lb.has(w.b.events["b2"].id)  # Alice is behind, not Bob
    # once Alice has it, d2 is not wrapped for and cannot read
    w.la.ingest(w.b.events["rv"].raw)
    env = w.send()
    assert w.b.keys["d2"].sign_public not in env.wrapped_for
    with pytest.raises(NotForThisDeviceError):
        w.open_bob(env.raw, "d2")
    assert w.open_bob(env.raw, "d1").content == Text(f"hello {w.counter}")


def test_sender_with_older_view_is_reported_not_refused(w: World) -> None:
    w.b.add("b3", "d0", "d3", ["b2"])
    w.lb.ingest(w.b.events["b3"].raw)
    env = w.send()  # Alice has not seen b3
    opened = w.open_bob(env.raw, "d0")
    assert opened.diverged == (w.b.account,)
    assert opened.missing_wraps == (w.b.keys["d3"].sign_public,)


def test_receiver_with_older_view_reconciles_then_opens(w: World) -> None:
    w.a.add("a2", "d0", "d2", ["a1"])
    w.la.ingest(w.a.events["a2"].raw)
    env = w.send(signer="d2")  # from Alice's new d2, which Bob has never seen
    with pytest.raises(SenderNotActiveError) as exc:
        w.open_bob(env.raw)
    (alice_view,) = [v for v in exc.value.views if v.account == w.a.account]
    assert alice_view.foreign_heads == (w.a.events["a2"].id,)
    assert not w.lb.has(w.a.events["a2"].id)  # Bob is behind: fetch it
    w.lb.ingest(w.a.events["a2"].raw)  # the node fetched what the heads named
    assert w.open_bob(env.raw).diverged == ()


def test_a_wrap_for_the_senders_own_device_is_refused(w: World) -> None:
    """A header naming a device of the sender's account would name the
    sender (§15.1): receivers refuse it, so no sender can leak that way."""
    env = w.send(recipient_state=_with_devices(w.la.state(w.b.account), w.la.state(w.a.account)))
    with pytest.raises(UnauthorisedWrapError):
        w.open_bob(env.raw)


def _with_devices(state: AccountState, other: AccountState) -> AccountState:
    """``state`` claiming ``other``'s devices too (a sender that wraps for
    its own devices in an envelope to another account)."""
    return dataclasses.replace(state, devices=(*state.devices, *other.devices))


def test_wrap_for_an_unauthorised_key_is_refused(w: World) -> None:
    # A sender whose replica was fed a fake device (or a malicious sender).
    mallory = device("mallory")
    real = w.la.state(w.b.account)
    fake = DeviceRecord(
        mallory.sign_public,
        mallory.enc_public,
        "evil",
        DeviceStatus.ACTIVE,
        b"\x00" * 32,
        b"\x00" * 32,
        real.devices[0].added_kind,
        T0,
        None,
        None,
    )
    env = w.send(recipient_state=dataclasses.replace(real, devices=(*real.devices, fake)))
    for dev in ("d0", "d1", "d2"):
        with pytest.raises(UnauthorisedWrapError):
            w.open_bob(env.raw, dev)
    # a wrap naming a real device but another X25519 key is refused too
    swapped = [
        dataclasses.replace(d, enc_public=mallory.enc_public) if d.name == "d2" else d
        for d in real.devices
    ]
    env = w.send(recipient_state=dataclasses.replace(real, devices=tuple(swapped)))
    with pytest.raises(UnauthorisedWrapError):
        w.open_bob(env.raw, "d0")


class _Impostor:
    """Claims one device key, signs with another."""

    def __init__(self, claimed: DeviceKeys, real: DeviceKeys) -> None:
        self.sign_public = claimed.sign_public
        self._real = real

    def sign(self, message: bytes) -> bytes:
        return self._real.sign(message)


def test_wrong_signer_is_refused(w: World) -> None:
    env = w.send(keys=_Impostor(w.a.keys["d0"], w.a.keys["d1"]))
    with pytest.raises(BadSignatureError):
        w.open_bob(env.raw)


def test_revoked_signer_is_refused(w: World) -> None:
    old_alice = w.la.state(w.a.account)
    w.a.revoke("rv", "d0", "d1", ["a1"])
    w.lb.ingest(w.a.events["rv"].raw)
    env = w.send(signer="d1", sender_state=old_alice)  # the thief's stale replica
    with pytest.raises(SenderNotActiveError) as exc:
        w.open_bob(env.raw)
    assert isinstance(exc.value, UnauthorisedError)
    # a signer from an account we do not know is refused the same way
    stranger = History(name="carol")
    lone = Ledger(FAST)
    lone.ingest(stranger.genesis.raw)
    env = seal(
        FAST,
        stranger.keys["d0"],
        lone.state(stranger.account),
        w.lb.state(w.b.account),
        Text("hi"),
        counter=1,
        timestamp=T0,
        seed=_seed("carol"),
    )
    with pytest.raises(SenderNotActiveError) as exc:
        w.open_bob(env.raw)
    assert exc.value.views[0].local_heads is None


def test_seal_refuses_local_misuse(w: World) -> None:
    w.a.revoke("rv", "d0", "d1", ["a1"])
    w.la.ingest(w.a.events["rv"].raw)
    with pytest.raises(NotActiveError):
        w.send(signer="d1")
    with pytest.raises(UsageError):
        w.send(counter=0)
    with pytest.raises(UsageError):
        w.send(Text("x" * (64 * 1024 + 1)))
    with pytest.raises(UsageError):
        w.send(UnknownContent(40, b""))
    with pytest.raises(UsageError):
        w.send(only_devices=[device("nobody").sign_public])


def test_disputed_or_compromised_recipient_needs_force(w: World) -> None:
    w.b.revoke("r1", "d0", "d1", ["b2"])
    w.b.revoke("r2", "d1", "d0", ["b2"])
    for label in ("r1", "r2"):
        w.la.ingest(w.b.events[label].raw)
        w.lb.ingest(w.b.events[label].raw)
    assert w.la.state(w.b.account).status is AccountStatus.DISPUTED
    with pytest.raises(RecipientDisputedError) as exc:
        w.send()
    assert exc.value.status is AccountStatus.DISPUTED
    env = w.send(force=True)
    assert w.b.keys["d0"].sign_public not in env.wrapped_for  # revoked keys stay out
    assert w.open_bob(env.raw, "d2").content == Text(f"hello {w.counter}")
    compromised = dataclasses.replace(w.la.state(w.b.account), status=AccountStatus.COMPROMISED)
    with pytest.raises(RecipientDisputedError):
        w.send(recipient_state=compromised)


def _fields(raw: bytes) -> list[Any]:
    return list(msgpack.unpackb(raw, raw=False))


def test_tampering_is_detected(w: World) -> None:
    env = w.send()
    f = _fields(env.raw)
    ct = bytearray(f[7])
    ct[len(ct) // 2] ^= 1
    cases = {
        "ciphertext": [*f[:7], bytes(ct)],
        "message id": [*f[:4], bytes(16), *f[5:]],
        "recipient": [*f[:3], w.a.account, *f[4:]],
        "nonce": [*f[:6], bytes(24), f[7]],
        "dropped wrap": [*f[:5], [x for x in f[5] if x[0] != w.b.keys["d2"].sign_public], *f[6:]],
    }
    my_wrap = [list(x) for x in f[5]]
    for x in my_wrap:
        if x[0] == w.b.keys["d0"].sign_public:
            x[3] = bytes([x[3][0] ^ 1]) + x[3][1:]
    cases["my wrap"] = [*f[:5], my_wrap, *f[6:]]
    for name, fields in cases.items():
        with pytest.raises(DecryptError):
            w.open_bob(encode_flat(fields))
        del name
    assert w.open_bob(env.raw).content == Text(f"hello {w.counter}")


def test_malformed_oversized_and_foreign_input(w: World) -> None:
    env = w.send()
    f = _fields(env.raw)
    with pytest.raises(SizeLimitError):
        w.open_bob(b"\x00" * (MAX_ENVELOPE_BYTES + 1))
    with pytest.raises(DecodeError):
        w.open_bob(b"\xc1")
    with pytest.raises(DecodeError):  # non-canonical: an int in a wider form
        w.open_bob(b"\x98\xcc\x01" + env.raw[2:])
    with pytest.raises(SchemaError):
        w.open_bob(encode_flat(f[:7]))
    with pytest.raises(UnsupportedVersionError):
        w.open_bob(encode_flat([2, *f[1:]]))
    with pytest.raises(WrongNetworkError):
        w.open_bob(encode_flat([*f[:2], "smu-other", *f[3:]]))
    with pytest.raises(SchemaError):  # wraps out of order
        w.open_bob(encode_flat([*f[:5], list(reversed(f[5])), *f[6:]]))
    other = NetworkParams(network_id="smu-other", genesis_pow_bits=0, event_pow_bits=0)
    with pytest.raises(WrongNetworkError):
        open_envelope(
            other, env.raw, w.b.account, w.b.keys["d0"], ledger_lookup(w.lb), ReplayGuard()
        )
    carol = History(name="carol")
    with pytest.raises(NotForThisDeviceError):
        open_envelope(
            FAST, env.raw, carol.account, carol.keys["d0"], ledger_lookup(w.lb), ReplayGuard()
        )


def test_replay_and_out_of_order_delivery(w: World) -> None:
    envs = [w.send() for _ in range(5)]
    guard = ReplayGuard(window=3)
    for i in (2, 0, 4, 1):  # out of order: counters 3, 1, 5, 2
        assert w.open_bob(envs[i].raw, guard=guard).counter == i + 1
    for i in (2, 0, 4, 1):
        with pytest.raises(ReplayError):
            w.open_bob(envs[i].raw, guard=guard)
    # counter 4 is still inside the window; a rejected envelope leaves no trace
    bad = _fields(envs[3].raw)
    bad[7] = bytes([bad[7][0] ^ 1]) + bad[7][1:]
    with pytest.raises(DecryptError):
        w.open_bob(encode_flat(bad), guard=guard)
    restored = ReplayGuard.decode(guard.encode())
    assert restored.encode() == guard.encode()
    assert w.open_bob(envs[3].raw, guard=restored).counter == 4
    with pytest.raises(ReplayError):
        w.open_bob(envs[3].raw, guard=restored)
    # far behind the highest: refused as too old
    later = [w.send() for _ in range(5)]  # counters 6..10
    w.open_bob(later[-1].raw, guard=restored)  # window 3 now covers 7..9
    with pytest.raises(ReplayError):
        w.open_bob(later[0].raw, guard=restored)  # 6 is 4 behind
    assert w.open_bob(later[1].raw, guard=restored).counter == 7
    assert restored.highest((w.a.account, w.a.keys["d0"].sign_public, w.b.account)) == 10


def test_replay_streams_are_per_sender_device_and_recipient(w: World) -> None:
    guard = ReplayGuard()
    e0 = w.send(signer="d0", counter=1)
    e1 = w.send(signer="d1", counter=1)
    w.open_bob(e0.raw, guard=guard)
    w.open_bob(e1.raw, guard=guard)
    assert guard.stream_count == 2


def test_receipts_travel_like_messages(w: World) -> None:
    msg = w.send(Text("ping"))
    receipt = Receipt(ReceiptStatus.DELIVERED, (msg.message_id,))
    env = seal(
        FAST,
        w.b.keys["d1"],
        w.lb.state(w.b.account),
        w.lb.state(w.a.account),
        receipt,
        counter=1,
        timestamp=T0,
        seed=_seed("receipt"),
    )
    for dev in ("d0", "d1"):
        opened = open_envelope(
            FAST, env.raw, w.a.account, w.a.keys[dev], ledger_lookup(w.la), ReplayGuard()
        )
        assert opened.content == receipt and opened.sender_device == w.b.keys["d1"].sign_public
    with pytest.raises(NotForThisDeviceError):  # Bob's own other devices: no wrap
        w.open_bob(env.raw, "d2")
    with pytest.raises(UsageError):  # an empty receipt is refused when sealed
        seal(
            FAST,
            w.b.keys["d1"],
            w.lb.state(w.b.account),
            w.lb.state(w.a.account),
            Receipt(ReceiptStatus.READ, ()),
            counter=2,
            timestamp=T0,
            seed=_seed("r2"),
        )


def test_history_bundle_goes_to_the_new_device_only(w: World) -> None:
    w.a.add("a2", "d0", "d2", ["a1"])
    w.la.ingest(w.a.events["a2"].raw)
    me = w.la.state(w.a.account)
    new = w.a.keys["d2"].sign_public
    entry = HistoryEntry(
        w.b.account, bytes(16), w.b.account, w.b.keys["d0"].sign_public, T0, Text("old")
    )
    bundle = HistoryBundle(0, 1, (entry,))
    env = seal(
        FAST,
        w.a.keys["d0"],
        me,
        me,
        bundle,
        counter=1,
        timestamp=T0,
        seed=_seed("h"),
        only_devices=[new],
    )
    assert env.wrapped_for == (new,)
    assert w.open_alice(env.raw, "d2").content == bundle
    with pytest.raises(NotForThisDeviceError):
        w.open_alice(env.raw, "d1")
    with pytest.raises(UsageError):  # never to another account
        w.send(bundle)


def test_history_from_another_account_is_refused(w: World, monkeypatch: pytest.MonkeyPatch) -> None:
    bundle = HistoryBundle(0, 1, ())
    monkeypatch.setattr(envmod, "HistoryBundle", type("Other", (), {}))  # skip seal's guard
    env = w.send(bundle)
    monkeypatch.undo()
    with pytest.raises(UnauthorisedError):
        w.open_bob(env.raw)


def test_unknown_content_kind_is_a_value() -> None:
    assert decode_content(40, b"\x90") == UnknownContent(40, b"\x90")
    assert decode_content(ContentKind.TEXT, encode_flat(["x"])) == Text("x")
    with pytest.raises(SchemaError):
        decode_content(ContentKind.RECEIPT, encode_flat([1, [bytes(16), bytes(16)]]))


def test_state_lookup_unknown_is_none(w: World) -> None:
    assert ledger_lookup(w.lb)(bytes(32)) is None
    assert isinstance(ledger_lookup(w.lb)(w.a.account), AccountState)


# --------------------------------------------------------------------------
# Fuzzing the decoders (S7): only ProtocolError subclasses, never a crash.


_WORLD = World()
_ENV = _WORLD.send().raw


def _assert_only_protocol_errors(fn: Any, *args: Any) -> None:
    try:
        fn(*args)
    except InvalidInput:
        pass
    except ProtocolError as exc:  # pragma: no cover - a local misuse would be a bug here
        raise AssertionError(f"remote input raised a local-usage error: {exc!r}") from exc


@_settings(300)
@given(st.binary(max_size=2048))
def test_fuzz_random_bytes(data: bytes) -> None:
    _assert_only_protocol_errors(_WORLD.open_bob, data)
    _assert_only_protocol_errors(peek, data, FAST)
    _assert_only_protocol_errors(ReplayGuard.decode, data)
    for kind in (1, 2, 3):
        _assert_only_protocol_errors(decode_content, kind, data)


@_settings(300)
@given(st.data())
def test_fuzz_mutated_envelopes(data: st.DataObject) -> None:
    raw = bytearray(_ENV)
    for _ in range(data.draw(st.integers(1, 4))):
        op = data.draw(st.sampled_from(["flip", "cut", "insert", "delete"]))
        pos = data.draw(st.integers(0, max(0, len(raw) - 1)))
        if op == "flip" and raw:
            raw[pos] ^= 1 << data.draw(st.integers(0, 7))
        elif op == "cut":
            del raw[pos:]
        elif op == "insert":
            raw[pos:pos] = data.draw(st.binary(min_size=1, max_size=8))
        elif raw:
            del raw[pos]
    if bytes(raw) == _ENV:
        return
    with pytest.raises(InvalidInput):
        _WORLD.open_bob(bytes(raw))


def _inner_of(w: World, kind: int, body: bytes, views: Any = None) -> bytes:
    la = w.la
    return encode_flat(
        [
            w.a.account,
            w.a.keys["d0"].sign_public,
            1,
            T0,
            views
            if views is not None
            else [envmod._view(la.state(w.a.account)), envmod._view(la.state(w.b.account))],
            kind,
            body,
            [],
        ]
    )


def _seal_raw_inner(w: World, inner: bytes, resign: bool = True, pad: bytes | None = None) -> bytes:
    """An envelope from a malicious *sender*: valid crypto around any inner bytes."""
    seed = b"f" * 32
    ck = envmod._derive(seed, b"key", 32)
    bob = w.b.keys["d0"]
    wrap = envmod._make_wrap(seed, ck, bob.sign_public, bob.enc_public)
    header = [1, FAST.suite, FAST.network_id, w.b.account, bytes(16), [wrap.to_wire()]]
    hraw = encode_flat(header)
    sig = w.a.keys["d0"].sign(envmod._signed_message(hraw, inner)) if resign else bytes(64)
    pad = bytes(pad_length(inner, sig)) if pad is None else pad
    plain = encode_flat([inner, sig, pad])
    ct = sodium.crypto_aead_xchacha20poly1305_ietf_encrypt(plain, hraw, bytes(24), ck)
    return encode_flat([*header, bytes(24), bytes(ct)])


def test_malicious_sender_inner_fields_are_checked(w: World) -> None:
    ok = _inner_of(w, 1, encode_flat(["hi"]))
    assert w.open_bob(_seal_raw_inner(w, ok)).content == Text("hi")
    with pytest.raises(BadSignatureError):
        w.open_bob(_seal_raw_inner(w, ok, resign=False))
    with pytest.raises(SchemaError):  # a view with heads out of order / wrong count
        w.open_bob(_seal_raw_inner(w, _inner_of(w, 1, encode_flat(["hi"]), [[2, [bytes(32)]]])))
    with pytest.raises(SchemaError):
        w.open_bob(_seal_raw_inner(w, _inner_of(w, 2, encode_flat([9, [bytes(16)]]))))
    with pytest.raises(SchemaError):  # kind 16 is a session reset now (§19.15)
        w.open_bob(_seal_raw_inner(w, _inner_of(w, 16, b"\x90")))
    unknown = w.open_bob(_seal_raw_inner(w, _inner_of(w, 17, b"\x90")))
    assert unknown.content == UnknownContent(17, b"\x90")


_INNER = _inner_of(_WORLD, 1, encode_flat(["fuzz"]))


@_settings(300)
@given(st.data())
def test_fuzz_signed_inner_from_a_malicious_sender(data: st.DataObject) -> None:
    """Signature and AEAD pass; the inner bytes are mutated before signing."""
    raw = bytearray(_INNER)
    for _ in range(data.draw(st.integers(1, 3))):
        pos = data.draw(st.integers(0, len(raw) - 1))
        if data.draw(st.booleans()):
            raw[pos] ^= 1 << data.draw(st.integers(0, 7))
        else:
            raw[pos:pos] = data.draw(st.binary(min_size=1, max_size=4))
    _assert_only_protocol_errors(_WORLD.open_bob, _seal_raw_inner(_WORLD, bytes(raw)))


@_settings(300)
@given(st.integers(1, 70), st.lists(st.integers(1, 200), max_size=120))
def test_replay_guard_matches_a_reference_model(window: int, counters: list[int]) -> None:
    """Accepted iff never accepted before and within ``window`` of the highest."""
    guard = ReplayGuard(window=window)
    key = (bytes(32), bytes(32), bytes(32))
    seen: set[int] = set()
    for c in counters:
        highest = max(seen, default=0)
        expect = c not in seen and (c > highest or highest - c <= window)
        try:
            guard.accept(key, c)
            accepted = True
        except ReplayError:
            accepted = False
        assert accepted == expect, (c, highest, sorted(seen))
        if accepted:
            seen.add(c)
    assert ReplayGuard.decode(guard.encode()).encode() == guard.encode()


def test_replay_guard_survives_huge_counter_jumps() -> None:
    guard = ReplayGuard()
    key = (bytes(32), bytes(32), bytes(32))
    guard.accept(key, 5)
    guard.accept(key, 2**64 - 1)  # a hostile sender's jump: no giant shift
    assert guard.highest(key) == 2**64 - 1
    with pytest.raises(ReplayError):
        guard.accept(key, 5)
    guard.accept(key, 2**64 - 2)
    assert len(guard.encode()) < 1024


def test_direct_delivery_frames(w: World) -> None:
    env = w.send()
    assert envmod.decode_delivery(envmod.delivery_frame(env.raw)) == env.raw
    assert envmod.decode_delivery_answer(envmod.delivery_answer(None)) is None
    refused = envmod.decode_delivery_answer(envmod.delivery_answer(ReplayError("again")))
    assert refused == envmod.DeliveryRefused("replay", "again")
    for bad in (b"", encode_flat([1, 16, "x"]), encode_flat([2, 1, b""]), encode_flat([1, 31])):
        with pytest.raises(InvalidInput):
            envmod.decode_delivery_answer(bad)
        with pytest.raises(InvalidInput):
            envmod.decode_delivery(bad)


def test_envelope_bytes_are_deterministic_and_pinned(w: World) -> None:
    """Same inputs, same bytes (simnet); a format change is never silent (§15.3)."""
    raw = w.send().raw
    assert raw == World().send().raw
    # 3 wraps of 152 bytes, the header, and a plaintext padded to 1,024 (§15.3 step 7)
    assert len(raw) == 1590
    # the pin moved with the networks' suite (2 to 3, PROTOCOL.md §12.1) too
    assert (
        hashlib.sha256(raw).hexdigest()
        == "5d9964c7891c2afbefa140b1fee38c23c5e4a4cec0c168fa40f38b35e1d3b38f"
    )


def test_padding_is_canonical_and_checked(w: World) -> None:
    ok = _inner_of(w, 1, encode_flat(["pad me"]))
    assert w.open_bob(_seal_raw_inner(w, ok)).content == Text("pad me")
    for pad in (b"", b"\x00", b"\x01" + bytes(pad_length(ok, bytes(64)) - 1)):
        with pytest.raises(SchemaError):
            w.open_bob(_seal_raw_inner(w, ok, pad=pad))
    # every short text's envelope is one size, whatever its length
    sizes = {len(w.send(Text("x" * n)).raw) for n in (0, 1, 100, 400)}
    assert len(sizes) == 1
    assert len(w.send(Text("x" * 5000)).raw) > max(sizes)


# --------------------------------------------------------------------------
# Content-kind ranges (PROTOCOL.md §15.4, DESIGN §10)


def test_content_ranges() -> None:
    cases = {
        ContentRange.MESSAGES: (1, 15),
        ContentRange.SESSION: (16, 31),
        ContentRange.ACCOUNT_SYNC: (32, 47),
        ContentRange.MAILBOX_TOKENS: (48, 63),
        ContentRange.RESERVED: (64, 2**64 - 1),
    }
    for rng, (first, last) in cases.items():
        assert content_range(first) is rng and content_range(last) is rng
    assert {k: content_range(k) for k in ContentKind} == {
        ContentKind.TEXT: ContentRange.MESSAGES,
        ContentKind.RECEIPT: ContentRange.MESSAGES,
        ContentKind.HISTORY_V1: ContentRange.MESSAGES,
        ContentKind.HISTORY: ContentRange.MESSAGES,
        ContentKind.SESSION_RESET: ContentRange.SESSION,  # §19.15
        ContentKind.SYNC_EDITS: ContentRange.ACCOUNT_SYNC,  # §15.19
        ContentKind.SENT_COPY: ContentRange.ACCOUNT_SYNC,  # §15.22
        ContentKind.TOKENS: ContentRange.MAILBOX_TOKENS,  # §15.16
    }
    for bad in (0, -1, True):
        with pytest.raises(SchemaError):
            content_range(bad)
    with pytest.raises(SchemaError):
        decode_content(0, b"\x90")  # 0 is no kind
    assert UnknownContent(40, b"").range is ContentRange.ACCOUNT_SYNC
    assert UnknownContent(70, b"").range is ContentRange.RESERVED


def test_channel_item_kinds_are_never_content_kinds() -> None:
    # one number space (PROTOCOL.md §17.3.1): the push notice is not TOKENS
    from node.push import MAILBOX_NOTICE as PUSHED

    assert PUSHED == MAILBOX_NOTICE == 49 and MAILBOX_NOTICE in CHANNEL_KINDS
    assert not CHANNEL_KINDS & {int(k) for k in ContentKind}
    assert content_range(MAILBOX_NOTICE) is ContentRange.MAILBOX_TOKENS
    with pytest.raises(UsageError):
        encode_content(UnknownContent(MAILBOX_NOTICE, b"\x90"))


def _own_account_envelope(w: World, kind: int, body: bytes) -> bytes:
    """Bob's d1 to Bob's own account, wrapped for d0: the shape of account sync."""
    seed = b"o" * 32
    ck = envmod._derive(seed, b"key", 32)
    d0, d1 = w.b.keys["d0"], w.b.keys["d1"]
    inner = encode_flat(
        [
            w.b.account,
            d1.sign_public,
            1,
            T0,
            [envmod._view(w.lb.state(w.b.account))],
            kind,
            body,
            [],
        ]
    )
    wrap = envmod._make_wrap(seed, ck, d0.sign_public, d0.enc_public)
    header = [1, FAST.suite, FAST.network_id, w.b.account, bytes(16), [wrap.to_wire()]]
    hraw = encode_flat(header)
    sig = d1.sign(envmod._signed_message(hraw, inner))
    pad = bytes(pad_length(inner, sig))
    plain = encode_flat([inner, sig, pad])
    ct = sodium.crypto_aead_xchacha20poly1305_ietf_encrypt(plain, hraw, bytes(24), ck)
    return encode_flat([*header, bytes(24), bytes(ct)])


@pytest.mark.parametrize("kind", [5, 15, 17, 31, 49, 63, 64, 1000])
def test_unknown_kinds_outside_account_sync_are_values_from_anyone(w: World, kind: int) -> None:
    """A contact may send an unknown kind of any range but account sync: it
    is opened, replay-checked and reported (§15.4)."""
    opened = w.open_bob(_seal_raw_inner(w, _inner_of(w, kind, b"\x90")))
    assert opened.content == UnknownContent(kind, b"\x90")
    assert opened.content.range is content_range(kind)


def test_a_sent_copy_comes_only_from_ones_own_account(w: World) -> None:
    copy = SentCopy(w.b.account, bytes(16), Text("forged"))
    kind, body = encode_content(copy)
    with pytest.raises(UnauthorisedError):
        w.open_bob(_seal_raw_inner(w, _inner_of(w, kind, body)))
    assert w.open_bob(_own_account_envelope(w, kind, body)).content == copy


@pytest.mark.parametrize("kind", [34, 40, 47])
def test_account_sync_comes_only_from_ones_own_account(w: World, kind: int) -> None:
    guard = ReplayGuard()
    with pytest.raises(UnauthorisedError):
        w.open_bob(_seal_raw_inner(w, _inner_of(w, kind, b"\x90")), guard=guard)
    assert guard.stream_count == 0  # refused: no trace in the replay state
    opened = w.open_bob(_own_account_envelope(w, kind, b"\x90"), guard=guard)
    assert opened.content == UnknownContent(kind, b"\x90")
    assert opened.content.range is ContentRange.ACCOUNT_SYNC
