"""The web app over plain HTTP against real nodes (issue: a local web app):
what a request without the session, with a foreign Origin or a foreign Host
gets; the launch, the cookie and the sessions; malformed requests get 4xx
answers and the node keeps running."""

from __future__ import annotations

import base64
import http.client
import json
import os
import stat
import threading
import time
from dataclasses import dataclass
from typing import Any

import pytest

from node.control import ControlClient
from node.errors import RpcError
from node.netdemo import Demo, DemoNode, link_devices
from node.web.auth import proof, read_key
from node.web.guard import CSP

from .process import alice_and_bob, smu, start_nodes, wait_for

pytestmark = pytest.mark.process


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    cookies: list[str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


class Web:
    """Raw HTTP to one node's web app, with or without a session."""

    def __init__(self, node: DemoNode) -> None:
        self.node = node
        self.control = ControlClient(node.dir / "control.sock")
        self.port = int(self.control.call("web.status")["port"])
        self.host = f"127.0.0.1:{self.port}"
        self.origin = f"http://{self.host}"
        self.cookie = ""
        self.key = ""

    def request(
        self,
        method: str,
        path: str,
        body: bytes | str | None = None,
        *,
        headers: dict[str, str | None] | None = None,
        auth: bool = True,
    ) -> Answer:
        h: dict[str, str | None] = {"Host": self.host}
        if method == "POST":
            h.update({"Origin": self.origin, "Content-Type": "application/json"})
        if auth and self.cookie:
            h.update({"Cookie": self.cookie, "X-SMU-Key": self.key})
        h.update(headers or {})
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        conn.putrequest(method, path, skip_host=True, skip_accept_encoding=True)
        for k, v in h.items():
            if v is not None:
                conn.putheader(k, v)
        data = body.encode() if isinstance(body, str) else body
        if data is not None:
            conn.putheader("Content-Length", str(len(data)))
        conn.endheaders(data)
        r = conn.getresponse()
        answer = Answer(
            r.status,
            {k.lower(): v for k, v in r.getheaders()},
            [v for k, v in r.getheaders() if k.lower() == "set-cookie"],
            b"" if r.status == 101 else r.read(),  # an upgraded connection stays open
        )
        conn.close()
        return answer

    def post(self, path: str, doc: object, **kw: Any) -> Answer:
        return self.request("POST", path, json.dumps(doc), **kw)

    def sign_in(self) -> Answer:
        got = self.control.call("web.launch")
        r = self.post("/api/session", {"code": got["code"]}, auth=False)
        assert r.status == 200, r.body
        self.cookie = r.cookies[0].split(";")[0]
        self.key = r.json()["key"]
        return r


def websocket(web: Web, origin: str | None) -> int:
    headers = {
        "Upgrade": "websocket",
        "Connection": "Upgrade",
        "Sec-WebSocket-Version": "13",
        "Sec-WebSocket-Key": base64.b64encode(os.urandom(16)).decode(),
        "Origin": origin,
    }
    return web.request("GET", "/api/live", headers=headers).status


def test_refusals_sessions_and_malformed_requests(demo: Demo) -> None:
    a_node, b_node = start_nodes(demo, ["a", "b"])
    a, b = Web(a_node), Web(b_node)
    for name in ("web.key", "web.json"):
        assert stat.S_IMODE((a_node.dir / name).stat().st_mode) == 0o600

    # the page and its headers
    page = a.request("GET", "/", headers={"Sec-Fetch-Site": "none"})
    assert page.status == 200 and b"app." in page.body
    assert page.headers["content-security-policy"] == CSP
    assert page.headers["x-frame-options"] == "DENY"
    assert page.headers["referrer-policy"] == "no-referrer"
    assert page.headers["cache-control"] == "no-store"
    assert "server" not in page.headers
    script = page.body.decode().split('src="')[1].split('"')[0]
    js = a.request("GET", script, headers={"Sec-Fetch-Site": "same-origin"})
    assert js.status == 200 and "immutable" in js.headers["cache-control"]
    assert "text/javascript" in js.headers["content-type"]

    # the proof: keyed with the node's web key, bound to the port
    c = os.urandom(16)
    got = a.post("/api/proof", {"challenge": c.hex()}, auth=False).json()["proof"]
    assert got == proof(read_key(a_node.dir), a.port, c)
    assert a.post("/api/proof", {"challenge": "zz"}, auth=False).status == 400

    # `smu web`: the address carries the code, the challenge and the answer
    # the page must get; in --json only with --show-secrets
    assert "url" not in json.loads(smu(a_node, "web", "--json").stdout)
    url = json.loads(smu(a_node, "web", "--json", "--show-secrets").stdout)["url"]
    assert url.startswith(f"http://127.0.0.1:{a.port}/#launch=")
    fragment = dict(part.split("=", 1) for part in url.split("#", 1)[1].split("&"))
    answer = a.post("/api/proof", {"challenge": fragment["c"]}, auth=False).json()["proof"]
    assert answer == fragment["v"]
    assert a.post("/api/session", {"code": fragment["launch"]}, auth=False).status == 200

    # the launch code: once, then a session cookie named for this node and port
    code = a.control.call("web.launch")["code"]
    first = a.post("/api/session", {"code": code}, auth=False)
    assert first.status == 200
    cookie = first.cookies[0]
    for attr in ("HttpOnly", "SameSite=strict", "Max-Age=43200", "Path=/"):
        assert attr.lower() in cookie.lower(), cookie
    assert "domain" not in cookie.lower()
    assert a.post("/api/session", {"code": code}, auth=False).status == 401
    a.cookie, a.key = cookie.split(";")[0], first.json()["key"]
    assert a.request("GET", "/api/state").status == 200
    assert a_node.dir.joinpath("node.log").read_text().count(code) == 0

    # without the session, the key, with a foreign Origin, Host or site: refused
    assert a.request("GET", "/api/state", auth=False).status == 401
    assert a.request("GET", "/api/state", headers={"X-SMU-Key": None}).status == 401
    assert a.request("GET", "/api/state", headers={"Host": "evil.example"}).status == 421
    assert a.request("GET", "/api/state", headers={"Host": f"localhost:{a.port}"}).status == 200
    assert a.request("GET", "/api/state", headers={"Sec-Fetch-Site": "cross-site"}).status == 403
    assert a.request("GET", "/api/state", headers={"Sec-Fetch-Site": "same-site"}).status == 403
    evil = {"Origin": "http://127.0.0.1:1"}
    assert a.post("/api/read", {"account": "00" * 32}, headers=evil).status == 403
    assert a.post("/api/read", {"account": "00" * 32}, headers={"Origin": None}).status == 403
    # another node's app takes neither this cookie nor its token under its own name
    b.sign_in()
    token = a.cookie.split("=", 1)[1]
    assert b.cookie.split("=")[0] != a.cookie.split("=")[0]
    for cookie_header in (a.cookie, f"{b.cookie.split('=')[0]}={token}"):
        r = b.request("GET", "/api/state", headers={"Cookie": cookie_header, "X-SMU-Key": a.key})
        assert r.status == 401

    # the WebSocket upgrade needs this app's Origin
    assert websocket(a, None) == 403
    assert websocket(a, "http://evil.example") == 403
    assert websocket(a, a.origin) == 101

    # malformed requests: 4xx, and the node goes on
    started = time.monotonic()
    malformed = [
        a.request("POST", "/api/send", "not json"),
        a.request("POST", "/api/send", "[1, 2]"),
        a.request("POST", "/api/send", '{"a":' * 5000),
        a.post("/api/send", {"text": "no account"}),
        a.post("/api/send", {"account": "xyz", "text": "hi"}),
        a.post("/api/send", {"account": 7, "text": "hi"}),
        a.post("/api/send", {"account": "00" * 32, "text": ["list"]}),
        a.post("/api/send", {"account": "00" * 32, "text": "to nobody"}),
        a.request("GET", "/api/conversation?account=" + "11" * 32),
        a.request("GET", "/api/conversation"),
        a.post("/api/devices/approve", {"id": "00", "code": "123456"}),
        a.post("/api/devices/revoke", {"fingerprint": "nope"}),
        a.post("/api/devices/join", {"link": "smu1lnk-garbage", "name": "x"}),
        a.post("/api/contacts/add", {"ref": "smu1inv" + "a" * 50}),
        a.post("/api/account/recover", {"account": "nobody", "recovery_key": "x"}),
        a.post("/api/devices/revoke", {"fingerprint": "abcd", "cascade": "yes"}),
        a.post("/api/sessions/revoke", {"id": "nope"}),
        a.post("/api/send", {"account": "00" * 32, "text": "x" * 300_000}),
        a.request("POST", "/api/send", "{}", headers={"Content-Type": "text/plain"}),
        a.request("GET", "/api/send"),
        a.request("DELETE", "/api/state"),
        a.request("GET", "/nothing/here"),
    ]
    statuses = [r.status for r in malformed]
    assert time.monotonic() - started < 10
    assert all(400 <= s < 500 for s in statuses), statuses
    assert all(r.json().get("error") for r in malformed), statuses
    assert a_node.client.call("node.status")["peer_id"]
    assert a.request("GET", "/api/state").status == 200
    assert a_node.proc is not None and a_node.proc.poll() is None

    # approving needs the code both devices show: a wrong one refuses the request
    a_node.client.call("account.create", name="alice")
    offer = a_node.client.call("device.link")
    started = b_node.client.call("device.join", link=offer["link"], name="b")
    outcome: dict[str, Any] = {}

    def confirm() -> None:
        try:
            b_node.client.call("device.join_confirm", join_id=started["join_id"], accept=True)
        except RpcError as exc:
            outcome["error"] = str(exc)

    waiter = threading.Thread(target=confirm)
    waiter.start()
    waiting = wait_for(
        lambda: [
            r
            for r in a.request("GET", "/api/devices/pending").json()["requests"]
            if r["awaiting_approval"]
        ],
        what="the request awaiting approval",
    )[0]
    assert "code" not in waiting and started["code"] in waiting["choices"]
    wrong = next(c for c in waiting["choices"] if c != started["code"])
    r = a.post("/api/devices/approve", {"id": waiting["id"], "code": wrong})
    assert r.status == 403 and "did not match" in r.json()["error"]
    waiter.join(30)
    assert "reject" in outcome.get("error", "")
    assert b_node.client.call("node.status")["account"] is None

    # sessions: listed, one ended from another, and signing out
    other = Web(a_node)
    theirs = other.sign_in().json()["session"]
    listed = a.request("GET", "/api/sessions").json()["sessions"]
    assert len(listed) == 3 and sum(s["current"] for s in listed) == 1  # smu web made one
    assert theirs in {s["id"] for s in listed if not s["current"]}
    assert a.post("/api/sessions/revoke", {"id": theirs}).status == 200
    assert other.request("GET", "/api/state").status == 401
    out = a.post("/api/logout", {})
    assert out.status == 200 and "max-age=0" in out.cookies[0].lower()
    assert a.request("GET", "/api/state").status == 401


def test_reads_sync_and_contacts_block_and_remove(demo: Demo) -> None:
    """A read in one device's web app clears the unread count on the
    account's other device (``read/<account>``, §15.19); blocking hides the
    conversation and keeps the contact listed as blocked; removing drops it;
    the trash lists what was deleted and restores it on every device."""
    (laptop, phone, bob_node), alice, bob = alice_and_bob(demo, ["laptop", "phone", "bob"], 2)
    link_devices(demo, laptop, phone, "phone")
    bob_node.client.call("contact.add", ref=alice["account_id"], name="alice")
    laptop.client.call("contact.add", ref=bob["account_id"], name="bob")
    wait_for(lambda: phone.client.call("contact.list")["contacts"], 20, "bob synced to the phone")
    sent = [bob_node.client.call("message.send", contact="alice", text=t) for t in ("one", "two")]
    web = Web(laptop)
    web.sign_in()

    def unread(node: DemoNode) -> int:
        doc = node.client.call("message.unread")["conversations"]
        return sum(c["unread"] for c in doc if c["account_id"] == bob["account_id"])

    for node in (laptop, phone):
        wait_for(lambda n=node: unread(n) == 2, 30, f"two unread on {node.name}")
    row = web.request("GET", "/api/conversations").json()["conversations"][0]
    assert row["account_id"] == bob["account_id"] and row["unread"] == 2
    conv = web.request("GET", f"/api/conversation?account={bob['account_id']}").json()
    first = min(m["sent_ms"] for m in conv["messages"])
    assert {m["message_id"] for m in conv["messages"]} == {s["message_id"] for s in sent}

    # read up to the first one in the laptop's page: one unread, on both devices
    r = web.post("/api/read", {"account": bob["account_id"], "up_to_ms": first})
    assert r.status == 200 and r.json()["read_ms"] == first
    assert web.request("GET", "/api/conversations").json()["conversations"][0]["unread"] == 1
    wait_for(lambda: unread(phone) == 1, 20, "the read synced to the phone")
    assert web.post("/api/read", {"account": bob["account_id"], "up_to_ms": "x"}).status == 400
    assert web.post("/api/read", {"account": bob["account_id"], "up_to_ms": True}).status == 400
    # replying reads the rest
    assert web.post("/api/send", {"account": bob["account_id"], "text": "hi"}).status == 200
    wait_for(lambda: unread(phone) == 0, 20, "the reply's read synced to the phone")
    assert unread(laptop) == 0

    # the trash: deleted here, listed by who wrote it, restored from the list
    one = sent[0]["message_id"]
    assert web.post("/api/messages/delete", {"message_id": one}).status == 200
    (item,) = web.request("GET", "/api/trash").json()["trash"]
    assert (item["message_id"], item["from"], item["text"]) == (one, "bob", "one")
    assert item["purge_ms"] - item["deleted_ms"] == 30 * 24 * 3600 * 1000
    conv = web.request("GET", f"/api/conversation?account={bob['account_id']}").json()
    assert one not in {m["message_id"] for m in conv["messages"]}
    wait_for(lambda: len(phone.client.call("message.trash")["trash"]) == 1, 20, "trash synced")
    assert web.post("/api/messages/restore", {"message_id": one}).json()["restored"] == [one]
    assert web.request("GET", "/api/trash").json()["trash"] == []
    conv = web.request("GET", f"/api/conversation?account={bob['account_id']}").json()
    assert one in {m["message_id"] for m in conv["messages"]}
    wait_for(lambda: phone.client.call("message.trash")["trash"] == [], 20, "restore synced")

    # block: no conversation, a blocked contact (on both devices); unblock
    assert web.post("/api/contacts/block", {"account": bob["account_id"]}).json()["blocked"]
    assert web.request("GET", "/api/conversations").json()["conversations"] == []
    (listed,) = web.request("GET", "/api/contacts").json()["contacts"]
    assert listed["blocked"] and listed["name"] == "bob"
    wait_for(lambda: phone.client.call("contact.list")["contacts"][0]["blocked"], 20, "blocked")
    done = web.post("/api/contacts/block", {"account": bob["account_id"], "unblock": True})
    assert done.status == 200 and not done.json()["blocked"]
    assert len(web.request("GET", "/api/conversations").json()["conversations"]) == 1
    assert web.post("/api/contacts/block", {"account": "zz"}).status == 400
    odd = {"account": bob["account_id"], "unblock": 1}
    assert web.post("/api/contacts/block", odd).status == 400

    # remove: gone from contacts and conversations, on both devices
    assert web.post("/api/contacts/remove", {"account": bob["account_id"]}).json()["removed"]
    assert web.request("GET", "/api/contacts").json()["contacts"] == []
    assert web.request("GET", "/api/conversations").json()["conversations"] == []
    wait_for(lambda: phone.client.call("contact.list")["contacts"] == [], 20, "removed")
    assert web.post("/api/contacts/remove", {"account": bob["account_id"]}).status == 400
