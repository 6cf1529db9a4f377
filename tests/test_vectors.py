"""The golden vectors in tests/vectors/ hold for the current code.

Three kinds of check: every recorded value is reproduced byte for byte
from its recorded inputs (seeds, fields), every invalid vector fails with
exactly its recorded error class, and the generator run in memory writes
exactly the checked-in files, so no format change goes unnoticed.
"""

from __future__ import annotations

import difflib
import random
from typing import Any

import pytest

from protocol.core import crypto, errors, keys, names
from protocol.core.canonical import decode, encode, encode_flat
from protocol.core.params import NetworkParams
from protocol.log.events import EventKind, decode_event, pop_message, verify_event
from protocol.log.ledger import IngestStatus, Ledger
from protocol.records.device import decode_record
from protocol.records.grant import D_MAILBOX_GRANT, decode_grant
from protocol.sync import reconcile, wire
from tests.vectors import generate
from tests.vectors._common import PARAMS, from_tagged, state_json

from .vector_support import VECTORS, load, params_of, raises_exactly

# -- the files are what the generator writes ---------------------------------


def test_checked_in_files_match_the_generator() -> None:
    fresh = generate.build_all()
    assert sorted(fresh) == sorted(p.name for p in VECTORS.glob("*.json"))
    for name, text in fresh.items():
        on_disk = (VECTORS / name).read_text(encoding="utf-8")
        if on_disk != text:
            diff = "".join(
                list(
                    difflib.unified_diff(
                        on_disk.splitlines(keepends=True),
                        text.splitlines(keepends=True),
                        f"checked-in {name}",
                        f"generated {name}",
                        n=1,
                    )
                )[:40]
            )
            pytest.fail(
                f"{name} differs from what the code generates: a format changed. If that is "
                f"intended, run `make vectors` and commit.\n{diff}"
            )


# -- encoding.json -------------------------------------------------------------


def test_encoding_valid() -> None:
    data = load("encoding.json")
    assert data["valid"]
    for case in data["valid"]:
        value = from_tagged(case["value"])
        assert encode(value).hex() == case["hex"], case["name"]
        assert decode(bytes.fromhex(case["hex"]), data["default_max_size"]) == value, case["name"]


def test_encoding_rejected() -> None:
    data = load("encoding.json")
    names = set()
    for case in data["rejected"]:
        names.add(case["error"])
        raises_exactly(case["error"], decode, bytes.fromhex(case["hex"]), case["max_size"])
    assert names == {"NonCanonicalError", "DecodeError", "SizeLimitError"}


def test_encoding_distinct_types_stay_apart() -> None:
    data = load("encoding.json")
    hexes = [c["hex"] for c in data["distinct"]]
    assert len(set(hexes)) == len(hexes)
    for case in data["distinct"]:
        value = from_tagged(case["value"])
        back = decode(bytes.fromhex(case["hex"]), data["default_max_size"])
        assert encode(value).hex() == case["hex"]
        assert type(back) is type(value) and back == value


# -- keys.json -----------------------------------------------------------------


def test_keys() -> None:
    data = load("keys.json")
    for name, hexlabel in data["domains"].items():
        assert getattr(crypto, name).hex() == hexlabel
    # every label of crypto.py, as tests/vectors/README.md says
    assert sorted(data["domains"]) == sorted(n for n in vars(crypto) if n.startswith("D_"))
    for case in data["base32"]:
        assert keys.b32encode(bytes.fromhex(case["bytes"])) == case["text"]
        assert keys.b32decode(case["text"], len(case["bytes"]) // 2).hex() == case["bytes"]
    for d in data["devices"]:
        k = keys.DeviceKeys.from_random(bytes.fromhex(d["seed"]))
        assert k.sign_public.hex() == d["sign_public"]
        assert k.enc_public.hex() == d["enc_public"]
        assert k.fingerprint == d["fingerprint"]
    for r in data["recovery_keys"]:
        rk = keys.RecoveryKey(bytes.fromhex(r["seed"]))
        assert rk.public.hex() == r["public"]
        assert rk.commitment.hex() == r["commitment"]
        assert rk.to_paper() == r["paper"]
        for case in r["paper_parse"]:
            if "error" in case:
                raises_exactly(case["error"], keys.RecoveryKey.from_paper, case["input"])
            else:
                assert keys.RecoveryKey.from_paper(case["input"]).seed.hex() == case["seed"]
    for h in data["handles"]:
        account = bytes.fromhex(h["account_id"])
        assert names.slug(h["display_name"]) == h["slug"]
        assert keys.handle(h["display_name"], account) == h["handle"]
        suffix = h["handle"].rsplit(".", 1)[1]
        assert len(suffix) == data["handle_suffix_chars"]
    for s in data["safety_numbers"]:
        a, b = bytes.fromhex(s["account_a"]), bytes.fromhex(s["account_b"])
        ea, eb = bytes.fromhex(s["epoch_a"]), bytes.fromhex(s["epoch_b"])
        assert keys.safety_number(a, ea, b, eb) == keys.safety_number(b, eb, a, ea) == s["number"]


# -- events.json ---------------------------------------------------------------


def _device_wire(d: dict[str, str]) -> list[object]:
    return [
        bytes.fromhex(d["sign_public"]),
        bytes.fromhex(d["enc_public"]),
        d["name"],
        bytes.fromhex(d["pop"]),
    ]


def _body_wire(kind: EventKind, b: dict[str, Any]) -> list[object]:
    if kind is EventKind.GENESIS:
        return [
            b["display_name"],
            _device_wire(b["device"]),
            bytes.fromhex(b["recovery_commitment"]),
        ]
    if kind is EventKind.ADD_DEVICE:
        return [_device_wire(b["device"])]
    if kind is EventKind.REVOKE_DEVICE:
        return [bytes.fromhex(b["device"])]
    if kind is EventKind.RECOVER:
        return [_device_wire(b["device"]), bytes.fromhex(b["recovery_commitment"])]
    if kind is EventKind.ROTATE_ENC_KEY:
        return [bytes.fromhex(b["enc_public"])]
    return [b["display_name"]]


def _signer(key: dict[str, str]) -> Any:
    seed = bytes.fromhex(key["seed"])
    if len(seed) == 64:
        return keys.DeviceKeys.from_random(seed)
    return keys.RecoveryKey(seed)


def test_valid_events_are_reproduced_from_their_fields() -> None:
    data = load("events.json")
    params = params_of(data)
    assert params == PARAMS
    # every kind but the rotation of the recovery key (suite 3: rotations.json)
    assert {EventKind(e["kind"]) for e in data["valid"]} == set(EventKind) - {
        EventKind.ROTATE_RECOVERY
    }
    ledger = Ledger(params)
    for e in data["valid"]:
        f = e["fields"]
        kind = EventKind(f["kind"])
        body = _body_wire(kind, f["body"])
        assert encode_flat(body).hex() == e["body_hex"]
        core = encode_flat(
            [
                f["version"],
                f["suite"],
                f["network"],
                f["kind"],
                bytes.fromhex(f["account"]),
                [bytes.fromhex(p) for p in f["parents"]],
                f["timestamp"],
                body,
                bytes.fromhex(f["signer"]),
                bytes.fromhex(f["nonce"]),
            ]
        )
        assert core.hex() == e["core_hex"], e["name"]
        assert crypto.hash32(crypto.D_EVENT_ID, core).hex() == e["event_id"]
        pow_hash = crypto.hash32(crypto.D_POW, core)
        assert pow_hash.hex() == e["pow_hash"]
        assert crypto.leading_zero_bits_ok(pow_hash, params.pow_bits(kind is EventKind.GENESIS))
        signing_input = crypto.D_EVENT_SIG + core
        assert signing_input.hex() == e["signing_input_hex"]
        signer = _signer(data["keys"][e["signer_key"]])
        assert signer.sign(signing_input).hex() == e["signature"]  # Ed25519 is deterministic
        raw = encode_flat([*decode(core, 4096), bytes.fromhex(e["signature"])])
        assert raw.hex() == e["raw_hex"]
        if "pop_message_hex" in e:
            new = _signer(data["keys"][e["introduced_key"]])
            dev = f["body"]["device"]
            msg = pop_message(
                f["network"],
                bytes.fromhex(f["account"]),
                bytes.fromhex(dev["sign_public"]),
                bytes.fromhex(dev["enc_public"]),
            )
            assert msg.hex() == e["pop_message_hex"]
            assert new.sign(msg).hex() == dev["pop"]
        event = decode_event(raw, params)
        verify_event(event, params)
        assert event.id.hex() == e["event_id"] and event.kind is kind
        assert ledger.ingest(raw).status is IngestStatus.ACCEPTED


def test_invalid_events_fail_with_their_error() -> None:
    data = load("events.json")
    params = params_of(data)
    seen = set()
    for case in data["invalid"]:
        raw = bytes.fromhex(case["raw_hex"])
        seen.add(case["error"])
        if case["stage"] == "decode":
            raises_exactly(case["error"], decode_event, raw, params)
        else:
            assert case["stage"] == "verify"
            event = decode_event(raw, params)
            raises_exactly(case["error"], verify_event, event, params)
        raises_exactly(case["error"], Ledger(params).ingest, raw)
    assert len(seen) >= 10


# -- histories.json ------------------------------------------------------------


def _deliver(params: NetworkParams, raws: list[bytes]) -> tuple[Ledger, dict[bytes, str]]:
    """Ingest in this order; collect every rejection, raised or released from escrow."""
    ledger = Ledger(params)
    rejected: dict[bytes, str] = {}
    for raw in raws:
        try:
            result = ledger.ingest(raw)
        except errors.InvalidInput as exc:
            rejected[decode_event(raw, params).id] = type(exc).__name__
            continue
        for event_id, error, _source in result.rejected:
            rejected[event_id] = type(error).__name__
    return ledger, rejected


def _topological(raws: list[bytes], params: NetworkParams, rng: random.Random) -> list[bytes]:
    """A random order in which every event comes after its parents."""
    events = [decode_event(r, params) for r in raws]
    done: set[bytes] = set()
    out: list[bytes] = []
    pending = list(events)
    while pending:
        ready = [e for e in pending if all(p in done for p in e.parents)]
        pick = rng.choice(ready)
        pending.remove(pick)
        done.add(pick.id)
        out.append(pick.raw)
    return out


HISTORIES = load("histories.json")["histories"]


@pytest.mark.parametrize("history", HISTORIES, ids=[h["name"] for h in HISTORIES])
def test_history_in_recorded_order(history: dict[str, Any]) -> None:
    params = params_of(history)
    raws = [bytes.fromhex(e["raw_hex"]) for e in history["events"]]
    ledger = Ledger(params)
    rejected_at: dict[int, list[dict[str, Any]]] = {}
    for r in history["rejected"]:
        rejected_at.setdefault(r["after"], []).append(r)
    checkpoints = {c["after"]: c for c in history["checkpoints"]}
    account = bytes.fromhex(history["events"][0]["event_id"])
    for i in range(len(raws) + 1):
        for r in rejected_at.get(i, []):
            raises_exactly(r["error"], ledger.ingest, bytes.fromhex(r["raw_hex"]))
        if i in checkpoints:
            state = ledger.state(account)
            assert state.digest.hex() == checkpoints[i]["state_digest"]
            assert state.status.value == checkpoints[i]["status"]
            assert state.display_name == checkpoints[i]["display_name"]
        if i < len(raws):
            result = ledger.ingest(raws[i])
            assert result.status is IngestStatus.ACCEPTED
            assert result.event_id.hex() == history["events"][i]["event_id"]
    final = history["final"]
    state = ledger.state(account)
    assert state_json(state) == final["state"]
    assert state.encode().hex() == final["state_hex"]
    assert state.digest.hex() == final["state_digest"]
    assert state.status.value == final["status"]
    by_key = {bytes.fromhex(d["sign_public"]): label for label, d in history["devices"].items()}
    assert {by_key[d.sign_public]: d.status.value for d in state.devices} == final["devices"]
    # A rejected event stays rejected once everything else is in.
    for r in history["rejected"]:
        raises_exactly(r["error"], ledger.ingest, bytes.fromhex(r["raw_hex"]))


@pytest.mark.parametrize("history", HISTORIES, ids=[h["name"] for h in HISTORIES])
def test_history_in_other_delivery_orders(history: dict[str, Any]) -> None:
    """Reversed and shuffled orders lean on the escrow; topological ones do not.
    Every one must give the recorded digest and the recorded rejections (S3)."""
    params = params_of(history)
    valid = [bytes.fromhex(e["raw_hex"]) for e in history["events"]]
    bad = [bytes.fromhex(r["raw_hex"]) for r in history["rejected"]]
    expected_rejections = {
        decode_event(raw, params).id: r["error"]
        for raw, r in zip(bad, history["rejected"], strict=True)
    }
    account = bytes.fromhex(history["events"][0]["event_id"])
    everything = valid + bad
    rng = random.Random(f"vectors/{history['name']}")
    orders = [everything[::-1], valid[::-1] + bad]
    for _ in range(4):
        shuffled = list(everything)
        rng.shuffle(shuffled)
        orders.append(shuffled)
    orders += [_topological(everything, params, rng) for _ in range(4)]
    for order in orders:
        ledger, rejected = _deliver(params, order)
        assert rejected == expected_rejections
        assert len(ledger.escrow) == 0
        state = ledger.state(account)
        assert state.digest.hex() == history["final"]["state_digest"]
        assert state.event_count == len(valid)


# -- replication.json ----------------------------------------------------------


def test_replication_frames() -> None:
    data = load("replication.json")
    types = set()
    for case in data["frames"]:
        raw = bytes.fromhex(case["hex"])
        frame = wire.decode_frame(raw)
        types.add(type(frame).__name__)
        assert wire.encode_frame(frame) == raw, case["name"]
        assert decode(raw, len(raw)) == from_tagged(case["value"]), case["name"]
    assert len(types) == 8  # every frame type of §11.2.1
    for case in data["rejected"]:
        raises_exactly(case["error"], wire.decode_frame, bytes.fromhex(case["hex"]))


def test_replication_reconcile_rejected() -> None:
    """Frames that decode, but whose ranges processing refuses whole: a
    ranked id outside its range, a list out of order, bounds that do not
    increase, ranges past or short of the end (PROTOCOL.md §11.3.1)."""
    data = load("replication.json")
    index = reconcile.IdIndex([bytes.fromhex(e) for e in data["exchange"]["ids"]["A"]])
    assert data["reconcile_rejected"]
    for case in data["reconcile_rejected"]:
        frame = wire.decode_frame(bytes.fromhex(case["hex"]))
        assert isinstance(frame, wire.ReconcileFrame), case["name"]
        salt = reconcile.session_salt(frame.session)
        raises_exactly(case["error"], reconcile.respond, index, frame.ranges, salt)


def test_replication_frames_list_ids_inside_their_ranges() -> None:
    """Every valid RECONCILE frame of the vectors is one a receiver processes."""
    processed = 0
    for case in load("replication.json")["frames"]:
        frame = wire.decode_frame(bytes.fromhex(case["hex"]))
        if isinstance(frame, wire.ReconcileFrame):
            out = reconcile.respond(
                reconcile.IdIndex([]), frame.ranges, reconcile.session_salt(frame.session)
            )
            # a receiver holding nothing gives nothing, and any reply covers
            # the id space to its end
            assert out.give == (), case["name"]
            assert not out.reply or out.reply[-1].upper == b"", case["name"]
            assert len(set(out.need)) == len(out.need), case["name"]
            processed += 1
    assert processed > 0


def test_replication_fingerprints_and_short_ids() -> None:
    data = load("replication.json")
    for case in data["fingerprints"]:
        ids = [bytes.fromhex(e) for e in case["ids"]]
        index = reconcile.IdIndex(ids)
        assert index.fingerprint(0, len(ids)).hex() == case["fingerprint"], case["name"]
        records = reconcile.IdIndex(ids, reconcile.RECORD_ITEMS)
        assert records.fingerprint(0, len(ids)).hex() == case["record_fingerprint"]
    kinds = {"events": reconcile.EVENT_IDS, "records": reconcile.RECORD_ITEMS}
    for case in data["short_ids"]:
        salt = reconcile.session_salt(case["session"])
        value = int.from_bytes(bytes.fromhex(case["id"]), "big")
        assert reconcile.short_id(kinds[case["set"]], salt, value).hex() == case["short_id"]


def test_replication_exchange_is_reproduced_message_by_message() -> None:
    """Each side, answering the other's message with its own ids and ranks
    (position in its sorted list), writes exactly the next message, and
    learns exactly the recorded ids to fetch (with ranks) and to push."""
    ex = load("replication.json")["exchange"]
    cfg = reconcile.ReconcileConfig(
        ex["list_threshold"], ex["list_round"], max_ids_per_range=ex["max_ids_per_range"]
    )
    salt = reconcile.session_salt(ex["session"])
    ids = {side: [bytes.fromhex(e) for e in v] for side, v in ex["ids"].items()}
    index = {side: reconcile.IdIndex(v) for side, v in ids.items()}
    rank = {
        side: {int.from_bytes(e, "big"): i for i, e in enumerate(v)}.__getitem__
        for side, v in ids.items()
    }
    frames = [wire.decode_frame(bytes.fromhex(m["hex"])) for m in ex["messages"]]
    assert ex["messages"][0]["from"] == "A"
    first = frames[0]
    assert isinstance(first, wire.ReconcileFrame) and first.round == 1
    assert first.ranges == reconcile.initiate(index["A"], salt, cfg)
    for i, frame in enumerate(frames):
        assert isinstance(frame, wire.ReconcileFrame) and frame.session == ex["session"]
        receiver = "B" if ex["messages"][i]["from"] == "A" else "A"
        out = reconcile.respond(
            index[receiver], frame.ranges, salt, cfg, rank[receiver], frame.round, ex["push_limit"]
        )
        fetch = [[e.hex(), r] for e, r in zip(out.need, out.ranks, strict=True)]
        assert fetch == ex["messages"][i]["fetch"]
        assert [e.hex() for e in out.give] == ex["messages"][i]["push"]
        if i + 1 < len(frames):
            assert out.wants_reply and ex["messages"][i + 1]["from"] == receiver
            nxt = frames[i + 1]
            assert isinstance(nxt, wire.ReconcileFrame) and nxt.ranges == out.reply
            assert nxt.round == frame.round + 1
        else:
            assert not out.wants_reply


# -- records.json ----------------------------------------------------------------

_GRANT_BIN = {"mailbox_key", "account", "device", "token_key"}


def _grant_wire(fields: dict[str, Any]) -> list[object]:
    """The signed elements of a grant, in the JSON's (array) order."""
    return [bytes.fromhex(v) if k in _GRANT_BIN else v for k, v in fields.items()]


def _record_wire(fields: dict[str, Any], grants: dict[str, bytes]) -> list[object]:
    out: list[object] = []
    for k, v in fields.items():
        if k in ("account", "device"):
            out.append(bytes.fromhex(v))
        elif k == "mailboxes":
            out.append([[grants[m["grant"]], m["addrs"]] for m in v])
        elif k == "signed_prekey":
            out.append([v[0], bytes.fromhex(v[1])] if v else [])
        else:
            out.append(v)
    return out


def test_record_and_grant_vectors_are_reproduced_from_their_fields() -> None:
    data = load("records.json")
    params = params_of(data)
    assert data["domains"]["D_MAILBOX_GRANT"] == D_MAILBOX_GRANT.hex()
    assert data["domains"]["D_DEVICE_RECORD"] == crypto.D_DEVICE_RECORD.hex()
    grants: dict[str, bytes] = {}
    for case in data["grants"]["valid"]:
        raw, signed = bytes.fromhex(case["raw_hex"]), _grant_wire(case["fields"])
        signing_input = D_MAILBOX_GRANT + encode_flat(signed)
        assert signing_input.hex() == case["signing_input_hex"], case["name"]
        sig = bytes.fromhex(case["signature"])
        crypto.verify(bytes.fromhex(case["fields"]["mailbox_key"]), signing_input, sig)
        assert encode_flat([*signed, sig]) == raw, case["name"]
        g = decode_grant(raw, params)
        assert (g.version, g.token_key.hex()) == (
            case["fields"]["version"],
            case["fields"].get("token_key", ""),
        )
        grants[case["name"]] = raw
    versions = []
    for case in data["records"]["valid"]:
        raw, signed = bytes.fromhex(case["raw_hex"]), _record_wire(case["fields"], grants)
        signing_input = crypto.D_DEVICE_RECORD + encode_flat(signed)
        assert signing_input.hex() == case["signing_input_hex"], case["name"]
        sig = bytes.fromhex(case["signature"])
        crypto.verify(bytes.fromhex(case["fields"]["device"]), signing_input, sig)
        assert encode_flat([*signed, sig]) == raw, case["name"]
        r = decode_record(raw, params)
        versions.append(r.version)
        assert list(r.capabilities) == case["fields"].get("capabilities", [])
        assert list(r.relays) == case["fields"].get("relays", [])
    assert sorted(set(versions)) == [1, 2]


def test_invalid_records_and_grants_fail_with_their_error() -> None:
    data = load("records.json")
    params = params_of(data)
    seen = set()
    for case in data["grants"]["invalid"]:
        seen.add(case["error"])
        raises_exactly(case["error"], decode_grant, bytes.fromhex(case["raw_hex"]), params)
    for case in data["records"]["invalid"]:
        seen.add(case["error"])
        raises_exactly(case["error"], decode_record, bytes.fromhex(case["raw_hex"]), params)
    assert len(seen) >= 8


def test_newest_record_wins_across_versions() -> None:
    data = load("records.json")
    records = {
        c["name"]: decode_record(bytes.fromhex(c["raw_hex"]), params_of(data))
        for c in data["records"]["valid"]
    }
    order = sorted(records, key=lambda n: (records[n].timestamp, records[n].raw))
    assert order == data["newest_last"]
