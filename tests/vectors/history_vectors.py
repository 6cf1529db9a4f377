"""histories.json: whole account histories and the state they must produce
(docs/PROTOCOL.md §7; the seven rules of DESIGN.md §3).

Each story is written as the events a user (or a thief) makes, by label.
The generator ingests them in creation order (one valid delivery order),
checks that each event meant to be rejected is rejected with its error, and
checks the device statuses the story is about, so a rule change that breaks
a story fails here rather than being written into the vectors.
"""

from __future__ import annotations

from collections.abc import Callable

from protocol.core import errors
from protocol.core.keys import DeviceKeys, RecoveryKey
from protocol.core.params import NetworkParams
from protocol.log import authoring
from protocol.log.events import Event
from protocol.log.ledger import Ledger

from ._common import (
    FORMAT_NOTE,
    PARAMS,
    T0,
    Json,
    device_json,
    device_keys,
    params_json,
    recovery_json,
    recovery_key,
    state_json,
)


class Story:
    def __init__(
        self,
        name: str,
        description: str,
        display_name: str = "bob",
        params: NetworkParams = PARAMS,
    ) -> None:
        self.name = name
        self.params = params
        self.description = description
        self.t = T0
        self.dev_labels: dict[str, str] = {}
        self.rec_labels: dict[str, str] = {}
        self.events: dict[str, Event] = {}
        self.order: list[str] = []
        self.rejected: list[dict[str, Json]] = []
        self.checkpoints: list[dict[str, Json]] = []
        self.ledger = Ledger(self.params)
        self.rk = self.recovery("r0")
        g = authoring.genesis(
            self.params,
            self.dev("d0"),
            self.rk,
            display_name=display_name,
            device_name="d0",
            timestamp=self.t,
        )
        self.account = g.id
        self._deliver("g", g, None)

    # -- keys -------------------------------------------------------------

    def dev(self, label: str) -> DeviceKeys:
        self.dev_labels.setdefault(label, f"histories/{self.name}/{label}")
        return device_keys(self.dev_labels[label])

    def recovery(self, label: str) -> RecoveryKey:
        self.rec_labels.setdefault(label, f"histories/{self.name}/{label}")
        return recovery_key(self.rec_labels[label])

    def _ts(self, ts: int | None) -> int:
        self.t += 1000
        return self.t if ts is None else ts

    def _ids(self, parents: list[str]) -> list[bytes]:
        return [self.events[p].id for p in parents]

    # -- delivery -----------------------------------------------------------

    def _deliver(self, label: str, e: Event, reject: type[errors.InvalidInput] | None) -> None:
        assert label not in self.events, label
        self.events[label] = e
        if reject is None:
            self.ledger.ingest(e.raw)
            self.order.append(label)
            return
        try:
            self.ledger.ingest(e.raw)
        except errors.InvalidInput as exc:
            assert type(exc) is reject, f"{self.name}/{label}: {type(exc).__name__} {exc}"
        else:
            raise AssertionError(f"{self.name}/{label} was accepted")
        self.rejected.append(
            {
                "label": label,
                "after": len(self.order),
                "error": reject.__name__,
                "raw_hex": e.raw.hex(),
            }
        )

    # -- what users do --------------------------------------------------------

    def add(
        self,
        label: str,
        by: str,
        new: str,
        parents: list[str],
        *,
        reject: type[errors.InvalidInput] | None = None,
        ts: int | None = None,
    ) -> None:
        intro = authoring.introduce(self.params, self.account, self.dev(new), new)
        e = authoring.add_device(
            self.params,
            self.account,
            self._ids(parents),
            self.dev(by),
            intro,
            timestamp=self._ts(ts),
        )
        self._deliver(label, e, reject)

    def revoke(
        self,
        label: str,
        by: str,
        target: str,
        parents: list[str],
        *,
        reject: type[errors.InvalidInput] | None = None,
    ) -> None:
        e = authoring.revoke_device(
            self.params,
            self.account,
            self._ids(parents),
            self.dev(by),
            self.dev(target).sign_public,
            timestamp=self._ts(None),
        )
        self._deliver(label, e, reject)

    def recover(
        self,
        label: str,
        new: str,
        parents: list[str],
        *,
        key: str = "r0",
        reject: type[errors.InvalidInput] | None = None,
    ) -> None:
        e = authoring.recover(
            self.params,
            self.account,
            self._ids(parents),
            self.recovery(key),
            self.dev(new),
            self.recovery(f"after-{label}"),
            device_name=new,
            timestamp=self._ts(None),
        )
        self._deliver(label, e, reject)

    def profile(
        self,
        label: str,
        by: str,
        name: str,
        parents: list[str],
        *,
        ts: int | None = None,
        reject: type[errors.InvalidInput] | None = None,
    ) -> None:
        e = authoring.profile(
            self.params,
            self.account,
            self._ids(parents),
            self.dev(by),
            display_name=name,
            timestamp=self._ts(ts),
        )
        self._deliver(label, e, reject)

    def rotate(
        self, label: str, by: str, enc_from: str, parents: list[str], *, ts: int | None = None
    ) -> None:
        """``by`` rotates its encryption key to the X25519 key of device label ``enc_from``."""
        e = authoring.rotate_enc_key(
            self.params,
            self.account,
            self._ids(parents),
            self.dev(by),
            self.dev(enc_from).enc_public,
            timestamp=self._ts(ts),
        )
        self._deliver(label, e, None)

    # -- expectations ---------------------------------------------------------

    def device_status(self) -> dict[str, str]:
        state = self.ledger.state(self.account)
        out = {}
        for label in sorted(self.dev_labels):
            d = state.device(self.dev(label).sign_public)
            if d is not None:
                out[label] = d.status.value
        return out

    def expect(self, status: str, devices: dict[str, str], display_name: str | None = None) -> None:
        state = self.ledger.state(self.account)
        got = self.device_status()
        assert state.status.value == status, (self.name, state.status)
        assert got == devices, (self.name, got)
        if display_name is not None:
            assert state.display_name == display_name, (self.name, state.display_name)

    def checkpoint(self, note: str) -> None:
        state = self.ledger.state(self.account)
        self.checkpoints.append(
            {
                "after": len(self.order),
                "note": note,
                "status": state.status.value,
                "display_name": state.display_name,
                "devices": self.device_status(),
                "state_digest": state.digest.hex(),
            }
        )

    def to_json(self) -> dict[str, Json]:
        state = self.ledger.state(self.account)
        label_of = {e.id: label for label, e in self.events.items()}
        return {
            "name": self.name,
            "description": self.description,
            "params": params_json(self.params),
            "devices": {lb: device_json(full) for lb, full in self.dev_labels.items()},
            "recovery_keys": {lb: recovery_json(full) for lb, full in self.rec_labels.items()},
            "events": [
                {
                    "label": label,
                    "kind": self.events[label].kind.name,
                    "parents": [label_of[p] for p in self.events[label].parents],
                    "event_id": self.events[label].id.hex(),
                    "raw_hex": self.events[label].raw.hex(),
                }
                for label in self.order
            ],
            "rejected": self.rejected,
            "checkpoints": self.checkpoints,
            "final": {
                "status": state.status.value,
                "display_name": state.display_name,
                "devices": self.device_status(),
                "state": state_json(state),
                "state_hex": state.encode().hex(),
                "state_digest": state.digest.hex(),
            },
        }


Unauthorised = errors.UnauthorisedError
Invalid = errors.InvalidEventError


def linear_add_revoke() -> Story:
    s = Story(
        "linear_add_revoke",
        "A chain: d0 adds d1, d1 adds d2, d0 revokes d1, d2 revokes "
        "d0. A revocation does not undo what the revoked device did before it (d2 stays).",
    )
    s.add("a1", "d0", "d1", ["g"])
    s.add("a2", "d1", "d2", ["a1"])
    s.revoke("rv1", "d0", "d1", ["a2"])
    s.checkpoint("d1 revoked, d2 (added by d1 before) still active")
    s.revoke("rv0", "d2", "d0", ["rv1"])
    s.add("late", "d1", "d3", ["rv1"], reject=Unauthorised)
    s.revoke("again", "d0", "d2", ["rv0"], reject=Unauthorised)
    s.expect("ok", {"d0": "revoked", "d1": "revoked", "d2": "active"})
    return s


def concurrent_adds() -> Story:
    s = Story(
        "concurrent_adds_merged",
        "Two devices add a device each at the same moment "
        "(a partition); a later event merges both heads. Every add counts.",
    )
    s.add("a1", "d0", "d1", ["g"])
    s.add("x", "d0", "d2", ["a1"])
    s.add("y", "d1", "d3", ["a1"])
    s.checkpoint("two heads")
    s.add("merge", "d2", "d4", ["x", "y"])
    s.profile("p", "d3", "Bob B", ["merge"])
    s.expect("ok", {k: "active" for k in ("d0", "d1", "d2", "d3", "d4")}, "Bob B")
    return s


def stolen_device_race() -> Story:
    s = Story(
        "stolen_device_race",
        "A thief holding d1 adds its own device while the owner "
        "revokes d1, then chains a second device from its first. The revocation voids "
        "every event d1 signed that it had not seen, and everything that hangs on them "
        "(rules 4 and 5, S2); once the thief sees the revocation it can sign nothing.",
    )
    s.add("a1", "d0", "d1", ["g"])
    s.add("theft", "d1", "thief", ["a1"])
    s.revoke("rv", "d0", "d1", ["a1"])
    s.add("theft2", "thief", "thief2", ["theft"])
    s.profile("deface", "thief2", "pwned", ["theft2"])
    s.add("merged", "thief", "thief3", ["rv", "theft2"], reject=Unauthorised)
    s.add("d1late", "d1", "thief4", ["rv"], reject=Unauthorised)
    s.add("honest", "d0", "d2", ["rv", "deface"])
    s.expect(
        "ok",
        {"d0": "active", "d1": "revoked", "d2": "active", "thief": "void", "thief2": "void"},
        "bob",
    )
    return s


def mutual_revocation() -> Story:
    s = Story(
        "mutual_revocation_then_recover",
        "d0 and d1 revoke each other concurrently: "
        "both revocations are final and the account is disputed (rule 7) until a "
        "recover that descends from both settles it.",
    )
    s.add("a1", "d0", "d1", ["g"])
    s.revoke("r0", "d0", "d1", ["a1"])
    s.revoke("r1", "d1", "d0", ["a1"])
    s.checkpoint("disputed: each revocation races the other")
    s.expect("disputed", {"d0": "revoked", "d1": "revoked"})
    s.recover("rec", "d9", ["r0", "r1"])
    s.add("a2", "d9", "d10", ["rec"])
    s.expect("ok", {"d0": "revoked", "d1": "revoked", "d9": "active", "d10": "active"})
    return s


def recover_voids_concurrent() -> Story:
    s = Story(
        "recover_voids_concurrent",
        "A recover voids every event concurrent with it "
        "(rule 2): an add and a profile change made on a branch the recover did not see. "
        "Devices added before it are removed; the old recovery key and removed devices "
        "can sign nothing more.",
    )
    s.add("a1", "d0", "d1", ["g"])
    s.add("side", "d0", "d2", ["a1"])
    s.profile("sidename", "d1", "Side", ["a1"])
    s.recover("rec", "d9", ["a1"])
    s.add("after", "d9", "d10", ["rec", "side", "sidename"])
    s.add("old", "d0", "d11", ["rec"], reject=Unauthorised)
    s.recover("reuse", "d12", ["after"], key="r0", reject=Unauthorised)
    s.recover("rec2", "d13", ["after"], key="after-rec")
    s.expect(
        "ok",
        {
            "d0": "removed_by_recovery",
            "d1": "removed_by_recovery",
            "d2": "void",
            "d9": "removed_by_recovery",
            "d10": "removed_by_recovery",
            "d13": "active",
        },
        "bob",
    )
    return s


def concurrent_recovers() -> Story:
    s = Story(
        "concurrent_recovers_compromised",
        "Two recovers that do not see each other "
        "void each other (rule 2): the recovery key is in two hands, the account is "
        "compromised for good and nobody can recover it again. Each recover, void or not, "
        "removes the devices added among its ancestors (rule 6, suite 2), so no device is "
        "active: neither those of before the race (one of them may be the stolen one the "
        "recover was meant to remove) nor either recover's own. Nothing can be appended "
        "above both; an old device can still sign at a point before them, and that event "
        "is void.",
    )
    s.add("a1", "d0", "d1", ["g"])
    s.recover("rec1", "d8", ["a1"])
    s.recover("rec2", "d9", ["a1"])
    s.checkpoint("compromised: no device active")
    s.recover("rec3", "d7", ["rec1", "rec2"], key="after-rec1", reject=Unauthorised)
    s.add("above", "d0", "d2", ["rec1", "rec2"], reject=Unauthorised)
    s.add("under", "d1", "d3", ["a1"])
    s.expect(
        "compromised",
        {
            "d0": "removed_by_recovery",
            "d1": "removed_by_recovery",
            "d3": "void",
            "d8": "void",
            "d9": "void",
        },
    )
    return s


def long_range_fork() -> Story:
    s = Story(
        "long_range_fork_by_revoked_key",
        "Long after d1 was revoked, its key is used "
        "to fork from an old point of the history (where d1 was still active). The fork "
        "is accepted (its signer was active at its parents) but void: its adds and "
        "profile never take effect (rules 4 and 5).",
    )
    s.add("a1", "d0", "d1", ["g"])
    s.add("a2", "d1", "d2", ["a1"])
    s.revoke("rv", "d0", "d1", ["a2"])
    s.profile("p", "d2", "Bob", ["rv"])
    s.add("a3", "d2", "d3", ["p"])
    s.add("fork", "d1", "evil", ["a1"])
    s.add("fork2", "evil", "evil2", ["fork"])
    s.profile("forkname", "evil2", "Mallory", ["fork2"], ts=T0 + 10_000_000)
    s.add("tip", "d3", "d4", ["a3"])
    s.expect(
        "ok",
        {
            "d0": "active",
            "d1": "revoked",
            "d2": "active",
            "d3": "active",
            "d4": "active",
            "evil": "void",
            "evil2": "void",
        },
        "Bob",
    )
    return s


def profile_resolution() -> Story:
    s = Story(
        "profile_resolution",
        "Concurrent display names resolve by (signer's timestamp, "
        "event id), highest wins; a later profile that has seen the others supersedes "
        "them whatever its timestamp.",
    )
    s.add("a1", "d0", "d1", ["g"])
    s.profile("p1", "d0", "Robert", ["a1"], ts=T0 + 50_000)
    s.profile("p2", "d1", "Bobby", ["a1"], ts=T0 + 40_000)
    s.checkpoint("concurrent: the higher timestamp (p1) wins")
    s.profile("p3", "d1", "Rob", ["p1", "p2"], ts=T0 + 30_000)
    s.checkpoint("p3 descends from both: it wins with a lower timestamp")
    s.profile("t1", "d0", "Bert", ["p3"], ts=T0 + 60_000)
    s.profile("t2", "d1", "Bo", ["p3"], ts=T0 + 60_000)
    s.expect(
        "ok",
        {"d0": "active", "d1": "active"},
        max((s.events["t1"], "Bert"), (s.events["t2"], "Bo"), key=lambda x: x[0].id)[1],
    )
    return s


def enc_key_rotation() -> Story:
    s = Story(
        "enc_key_rotation",
        "Devices rotate their X25519 key; the latest rotation wins "
        "by causality, concurrent ones by (timestamp, id), and a rotation concurrent "
        "with the device's revocation is void.",
    )
    s.add("a1", "d0", "d1", ["g"])
    s.rotate("r1", "d0", "k1", ["a1"])
    s.rotate("r2", "d0", "k2", ["r1"])
    s.rotate("c1", "d1", "k3", ["r2"], ts=T0 + 90_000)
    s.rotate("c2", "d1", "k4", ["r2"], ts=T0 + 80_000)
    s.add("a2", "d0", "d2", ["c1", "c2"])
    s.rotate("x", "d2", "k5", ["a2"])
    s.revoke("rv", "d0", "d2", ["a2"])
    s.expect("ok", {"d0": "active", "d1": "active", "d2": "revoked"})
    state = s.ledger.state(s.account)
    enc = {lb: state.device(s.dev(lb).sign_public).enc_public for lb in ("d0", "d1")}  # type: ignore[union-attr]
    assert enc == {"d0": s.dev("k2").enc_public, "d1": s.dev("k3").enc_public}, enc
    return s


def unauthorised() -> Story:
    s = Story(
        "unauthorised_rejected",
        "Events an honest node must refuse at ingest: signed by "
        "a key never added, by a device before it was added, a recover by a wrong key, "
        "re-adding a key already added, a revocation of a key not among the "
        "ancestors, and (suite 2) a revocation of a device that is no longer active.",
    )
    s.add("a1", "d0", "d1", ["g"])
    s.add("stranger", "s", "s2", ["a1"], reject=Unauthorised)
    s.add("early", "d1", "d2", ["g"], reject=Unauthorised)
    s.recover("wrongkey", "d3", ["a1"], key="not-r0", reject=Unauthorised)
    s.add("readd", "d1", "d0", ["a1"], reject=Invalid)
    s.add("a2", "d0", "d4", ["g"])
    s.revoke("unseen", "d0", "d1", ["a2"], reject=Invalid)
    s.revoke("selfrv", "d1", "d1", ["a1"])
    s.add("afterself", "d1", "d5", ["selfrv"], reject=Unauthorised)
    # suite 2: a revocation names a device active at its parents
    s.revoke("twice", "d0", "d1", ["selfrv"], reject=Invalid)
    s.expect("ok", {"d0": "active", "d1": "revoked", "d4": "active"})
    return s


#: A network whose caps are tiny, for the caps' vectors alone (§7.3): a device
#: may sign 4 events along a path (revocations and recovers not counted), and
#: 3 devices may be active at an event's parents (2 at an add-device's).
CAP_PARAMS = NetworkParams(
    network_id="smu-vectors-cap",
    genesis_pow_bits=8,
    event_pow_bits=4,
    special_pow_bits=6,
    max_device_events=4,
    max_active_devices=3,
    suite=PARAMS.suite,  # written under suite 2, like every file but rotations.json
)


def device_cap() -> Story:
    s = Story(
        "device_cap",
        "On a network with max_device_events = 4: each device may sign at most 4 events "
        "(the genesis included) along any path through points where it is active; "
        "revocations and recovers are not counted, so the owner can always revoke and "
        "recover. The count is the device's own: another device is not affected, a side "
        "branch counts only its own path, and the device a recover brings starts from 0.",
        params=CAP_PARAMS,
    )
    s.add("a1", "d0", "d1", ["g"])  # d0: 2
    s.profile("p1", "d0", "Bob 1", ["a1"])  # d0: 3
    s.profile("p2", "d0", "Bob 2", ["p1"])  # d0: 4, at the cap
    s.profile("over", "d0", "Bob 3", ["p2"], reject=errors.LimitExceededError)
    s.profile("d1p", "d1", "Bob D", ["p2"])  # d1: 1
    s.profile("side", "d0", "Side", ["a1"])  # d0: 3 on this path
    s.revoke("rv", "d0", "d1", ["d1p"])  # d0 at its cap: revocations are not counted
    s.profile("still", "d0", "Bob 4", ["rv", "side"], reject=errors.LimitExceededError)
    s.recover("rec", "d9", ["rv", "side"])  # not counted either
    s.profile("fresh", "d9", "Bob 9", ["rec"])  # d9: 1
    s.add("a2", "d9", "d2", ["fresh"])  # d9: 2
    s.expect(
        "ok",
        {"d0": "removed_by_recovery", "d1": "revoked", "d2": "active", "d9": "active"},
        "Bob 9",
    )
    return s


def active_device_cap() -> Story:
    s = Story(
        "active_device_cap",
        "On a network with max_active_devices = 3: at most 3 devices may be active at an "
        "event's parents, and at most 2 at an add-device's, so that no event has more "
        "after it. Two branches that each stay within the cap cannot be merged while "
        "their union exceeds it; a revocation (at one parent, where the cap always holds) "
        "makes room.",
        params=CAP_PARAMS,
    )
    s.add("a1", "d0", "d1", ["g"])
    s.add("a2", "d0", "d2", ["a1"])  # 3 active
    s.add("a3", "d1", "d3", ["a2"], reject=errors.LimitExceededError)
    s.add("side", "d1", "d4", ["a1"])  # 3 active on this branch
    s.profile("merge", "d0", "Bob", ["a2", "side"], reject=errors.LimitExceededError)
    s.revoke("rv", "d0", "d2", ["a2"])
    s.profile("merged", "d0", "Bob", ["rv", "side"])  # d0, d1, d4
    s.add("a4", "d1", "d3", ["merged"], reject=errors.LimitExceededError)
    s.expect("ok", {"d0": "active", "d1": "active", "d2": "revoked", "d4": "active"}, "Bob")
    return s


def revoked_spam() -> Story:
    s = Story(
        "revoked_key_spam",
        "A thief holding d1 signs up to d1's cap, on a chain and on a side branch, and adds "
        "a device in the race. Once the owner revokes d1, nothing d1 signed counts against "
        "anyone: the owner's d0 merges every head, adds a device and changes the name. "
        "Spam from one key never exhausts another device's cap.",
        params=CAP_PARAMS,
    )
    s.add("a1", "d0", "d1", ["g"])
    s.profile("s1", "d1", "spam 1", ["a1"])  # d1: 1
    s.profile("s2", "d1", "spam 2", ["s1"])
    s.profile("s3", "d1", "spam 3", ["s2"])
    s.profile("s4", "d1", "spam 4", ["s3"])  # d1: 4, its cap
    s.profile("s5", "d1", "spam 5", ["s4"], reject=errors.LimitExceededError)
    s.add("race", "d1", "t", ["a1"])  # d1: 1 on this path
    s.revoke("rv", "d0", "d1", ["a1"])
    s.checkpoint("d1 revoked; its events and its device t are void")
    s.profile("merge", "d0", "Bob", ["race", "rv", "s4"])  # d0: 3 (genesis, a1, merge)
    s.add("a2", "d0", "d2", ["merge"])  # d0: 4
    s.profile("name", "d2", "Bob 2", ["a2"])
    s.add("late", "d1", "t2", ["s4"], reject=errors.LimitExceededError)
    s.expect(
        "ok",
        {"d0": "active", "d1": "revoked", "d2": "active", "t": "void"},
        "Bob 2",
    )
    return s


STORIES: list[Callable[[], Story]] = [
    linear_add_revoke,
    concurrent_adds,
    stolen_device_race,
    mutual_revocation,
    recover_voids_concurrent,
    concurrent_recovers,
    long_range_fork,
    profile_resolution,
    enc_key_rotation,
    unauthorised,
    device_cap,
    active_device_cap,
    revoked_spam,
]


def build() -> dict[str, Json]:
    return {
        "description": "Whole account histories (docs/PROTOCOL.md §7). 'events' is one valid "
        "delivery order; any order that an implementation's escrow can absorb must give "
        "'final.state_digest'. Each 'rejected' event fails with 'error' once the first "
        "'after' events are in (and at any later point). A checkpoint is the state after the "
        "first 'after' events.",
        "format": FORMAT_NOTE,
        "params": params_json(),
        "histories": [story().to_json() for story in STORIES],
    }
