"""A real node against the control API's definitions (``node/api``, PROTOCOL.md
§13): requests whose params the definitions do not allow get error -32602
naming the parameter and change nothing; the results of a live exchange
have exactly the fields and types the definitions (and so the spec) give."""

from __future__ import annotations

import json
import socket

import pytest

from node import api
from node.api.schema import conforms
from node.control import INVALID_PARAMS
from node.netdemo import Demo, DemoNode

from .process import alice_and_bob, delivered, start_nodes, wait_for

pytestmark = pytest.mark.process


def _raw(node: DemoNode, method: str, params: object) -> dict[str, object]:
    """One request line as a hostile local caller would send it."""
    line = json.dumps({"jsonrpc": "2.0", "id": 1, "method": method, "params": params})
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(30)
        s.connect(str(node.dir / "control.sock"))
        s.sendall(line.encode() + b"\n")
        answer: dict[str, object] = json.loads(s.makefile("rb").readline())
    return answer


HOSTILE = [
    ("account.create", {"name": 5}, "parameter 'name' must be string"),
    ("account.create", {}, "missing parameter 'name'"),
    ("account.create", {"name": "eve", "admin": True}, "unknown parameter 'admin'"),
    ("account.show", {"account": ["x"]}, "parameter 'account' must be string | null"),
    ("event.submit", {"event": {"raw": "00"}}, "parameter 'event' must be string"),
    ("event.has", {"ids": "00"}, "parameter 'ids' must be [string]"),
    ("message.inbox", {"since_ms": "0"}, "parameter 'since_ms' must be int | null"),
    ("message.inbox", {"since_ms": 2**64}, "parameter 'since_ms' must be int | null"),
    ("message.delete", {"ids": [1, 2]}, "parameter 'ids' must be [string]"),
    ("device.link", {"ttl_seconds": True}, "parameter 'ttl_seconds' must be int | null"),
    ("device.revoke", {"device": "d", "cascade": "yes"}, "parameter 'cascade' must be bool"),
    ("peers.connect", {"addr": None}, "parameter 'addr' must be string"),
    ("node.status", {"verbose": 1}, "unknown parameter 'verbose'"),
]


def test_params_of_the_wrong_shape_are_refused_and_change_nothing(demo: Demo) -> None:
    (a,) = start_nodes(demo, ["typed"])
    for method, params, reason in HOSTILE:
        answer = _raw(a, method, params)
        assert answer["error"] == {"code": INVALID_PARAMS, "message": reason}, method
    # nothing was created or linked, and the node still answers
    status = a.client.call("node.status")
    assert status["account"] is None and status["events"] == 0
    assert a.client.call("device.pending")["requests"] == []
    assert conforms(status, api.node.NodeStatus)


def test_results_have_the_fields_and_types_the_spec_gives(demo: Demo) -> None:
    (a, b), alice, bob = alice_and_bob(demo, ["typed-a", "typed-b"], bob_on=1)
    assert conforms(alice, api.account.Created) and conforms(bob, api.account.Created)
    invite = b.client.call("invite.create")
    added = a.client.call("contact.add", ref=invite["invite"], name="bob")
    b.client.call("contact.add", ref=alice["account_id"], name="alice")
    sent = a.client.call("message.send", contact="bob", text="typed hello")
    wait_for(lambda: delivered(a, sent["message_id"]).get("delivered") == 1)
    answers = {
        "invite.create": invite,
        "contact.add": added,
        "message.send": sent,
        "message.status": a.client.call("message.status", ids=[sent["message_id"]]),
        "message.conversation": a.client.call("message.conversation", contact="bob"),
        "message.inbox": b.client.call("message.inbox", since_ms=0),
        "message.unread": b.client.call("message.unread"),
        "message.requests": b.client.call("message.requests"),
        "message.trash": a.client.call("message.trash"),
        "node.status": a.client.call("node.status"),
        "peers.list": a.client.call("peers.list"),
        "account.show": a.client.call("account.show", account="bob"),
        "account.list": a.client.call("account.list"),
        "account.history": a.client.call("account.history"),
        "device.list": a.client.call("device.list"),
        "device.records": a.client.call("device.records", account="bob"),
        "device.pending": a.client.call("device.pending"),
        "device.link": a.client.call("device.link", ttl_seconds=60),
        "contact.list": a.client.call("contact.list"),
        "contact.verify": a.client.call("contact.verify", contact="bob"),
        "contact.ack": a.client.call("contact.ack", contact="bob"),
        "mailbox.status": a.client.call("mailbox.status"),
        "backup.status": a.client.call("backup.status"),
        "web.status": a.client.call("web.status"),
        "event.has": a.client.call("event.has", ids=[alice["account_id"]]),
    }
    for method, result in answers.items():
        assert conforms(result, api.BY_NAME[method].result), (method, result)
    # the checks look inside: the outgoing message has its deliveries, the
    # incoming one is bob's, and a field of the wrong type would not pass
    (mine,) = answers["message.conversation"]["messages"]
    assert mine["outgoing"] and mine["deliveries"] == {"delivered": 1}
    assert [m["text"] for m in answers["message.inbox"]["messages"]] == ["typed hello"]
    assert not conforms({**mine, "sent_ms": str(mine["sent_ms"])}, api.message.MessageDoc)
