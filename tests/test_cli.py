"""The `smu` CLI without a daemon: a fake control client answers, so that
what the CLI itself decides (options, the --json rule, secrets, limits,
questions on the terminal) is tested in this process, fast."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any, ClassVar

import pytest

import node.cli.common
from node.cli import build_parser, main
from node.errors import RpcError
from protocol.messaging.content import MAX_TEXT_BYTES

KEY = "RECOVERY-KEY-abcdef-0123"
LINK = "smu1linkexample"


class FakeClient:
    """Answers control-API calls from a table; records every call."""

    answers: ClassVar[dict[str, Any]] = {}
    calls: ClassVar[list[tuple[str, dict[str, Any]]]] = []

    def __init__(self, path: Path, timeout: float | None = 600.0) -> None:
        self.timeout = timeout

    def call(self, method: str, **params: Any) -> Any:
        FakeClient.calls.append((method, params))
        answer = FakeClient.answers[method]
        return answer(params) if callable(answer) else json.loads(json.dumps(answer))


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> type[FakeClient]:
    monkeypatch.setattr(node.cli.common, "ControlClient", FakeClient)
    monkeypatch.setattr(node.cli.common, "TTY", str(tmp_path / "no-terminal"))
    FakeClient.calls = []
    FakeClient.answers = {
        "account.create": {"account_id": "ab" * 32, "handle": "bob.x", "recovery_key": KEY},
        "account.recover": {"account": {"handle": "bob.x"}, "recovery_key": KEY, "event_id": "e"},
        "device.link": {
            "id": "11" * 16,
            "link": LINK,
            "uri": "smu://link/EXAMPLE",
            "expires_at_ms": 2_000_000_000_000,
        },
        "node.status": {"device_status": "active", "account": "ab" * 32},
    }
    return FakeClient


def methods(fake: type[FakeClient]) -> list[str]:
    return [m for m, _ in fake.calls]


def test_global_options_anywhere(tmp_path: Path) -> None:
    # before the command, between a command and its subcommand, after it
    for argv in (
        ["--data-dir", str(tmp_path), "--json", "requests", "accept", "bob"],
        ["requests", "--data-dir", str(tmp_path), "accept", "bob", "--json"],
        ["peers", "--json", "--data-dir", str(tmp_path), "disconnect", "P"],
        ["device", "--data-dir", str(tmp_path), "list", "--json"],
        ["account", "show", "bob", "--data-dir", str(tmp_path), "--json"],
    ):
        args = build_parser().parse_args(argv)
        assert args.data_dir == tmp_path, argv
        assert args.json is True, argv


def test_create_json_never_drops_the_recovery_key(
    fake: type[FakeClient], capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    # --json with nowhere to put the key: refused before the account exists
    assert main(["account", "create", "--name", "bob", "--json"]) == 1
    err = json.loads(capsys.readouterr().out)["error"]
    assert "--recovery-key-file" in err["message"] and err["code"] == "usage"
    assert fake.calls == []
    assert main(["recover", "bob", "--json", "--recovery-key-file", str(tmp_path / "k")]) == 1
    assert "--new-recovery-key-file" in capsys.readouterr().out and fake.calls == []

    assert main(["account", "create", "--name", "bob", "--json", "--show-secrets"]) == 0
    assert json.loads(capsys.readouterr().out)["recovery_key"] == KEY
    keyfile = tmp_path / "key.txt"
    assert (
        main(["account", "create", "--name", "b", "--json", "--recovery-key-file", str(keyfile)])
        == 0
    )
    out = capsys.readouterr().out
    assert KEY not in out and json.loads(out)["recovery_key_file"] == str(keyfile)
    assert keyfile.read_text().strip() == KEY
    # on the terminal it is shown
    assert main(["account", "create", "--name", "bob"]) == 0
    assert KEY in capsys.readouterr().out


def test_errors_under_json_are_json(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert main(["node", "status", "--json", "--data-dir", str(tmp_path)]) == 1
    doc = json.loads(capsys.readouterr().out)
    assert doc["error"]["code"] == "not_running" and "smu node run" in doc["error"]["message"]
    with pytest.raises(SystemExit):
        main(["node", "status", "--json", "--bogus"])
    assert json.loads(capsys.readouterr().out)["error"]["code"] == "usage"


def test_send_reads_stdin_for_dash_and_refuses_over_the_limit(
    fake: type[FakeClient], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    fake.answers["message.send"] = {"message_id": "aa" * 16, "to": "alice", "devices": 2}
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(b"hello from stdin\n")))
    assert main(["send", "alice", "-"]) == 0
    assert fake.calls[-1] == (
        "message.send",
        {"contact": "alice", "text": "hello from stdin", "force": False},
    )
    big = b"x" * (2 << 20)
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(big)))
    fake.calls.clear()
    assert main(["send", "alice", "-"]) == 1
    assert "64 KiB" in capsys.readouterr().err and fake.calls == []
    assert main(["send", "alice", "y" * (MAX_TEXT_BYTES + 1)]) == 1 and fake.calls == []


def test_inbox_json_is_one_document(
    fake: type[FakeClient], capsys: pytest.CaptureFixture[str]
) -> None:
    msg = {
        "message_id": "m1",
        "conversation": "alice",
        "outgoing": False,
        "from": "alice",
        "from_device": "phone",
        "sent_ms": 1,
        "stored_ms": 1,
        "text": "hi",
    }
    inbox = {"messages": [msg, {**msg, "message_id": "m2"}], "notices": []}
    fake.answers["message.inbox"] = {**inbox, "contact_changes": [], "requests": 3}
    assert main(["inbox", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)  # one document, not JSON Lines
    assert [m["message_id"] for m in doc["messages"]] == ["m1", "m2"] and doc["requests"] == 3
    fake.answers["message.inbox"] = {
        "messages": [],
        "notices": [],
        "contact_changes": [],
        "requests": 0,
    }
    assert main(["inbox", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["messages"] == []
    assert main(["inbox"]) == 0
    assert "no messages" in capsys.readouterr().out


def test_revoked_device_is_told(fake: type[FakeClient], capsys: pytest.CaptureFixture[str]) -> None:
    fake.answers["node.status"] = {
        "device_status": "revoked",
        "account": "ab" * 32,
        "peer_id": "P",
        "network": "smu-test",
        "listen": [],
        "peers": 0,
        "events": 1,
        "accounts": 1,
        "escrow": 0,
        "event_set_digest": "d",
    }
    assert main(["node", "status"]) == 0
    assert "REVOKED" in capsys.readouterr().out
    fake.answers["message.inbox"] = {
        "messages": [],
        "notices": [],
        "contact_changes": [],
        "requests": 0,
    }
    assert main(["inbox"]) == 0
    assert "revoked" in capsys.readouterr().out


def test_link_ttl_qr_and_secrets(
    fake: type[FakeClient], capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    assert main(["device", "link", "--ttl", "6000", "--no-qr"]) == 0
    captured = capsys.readouterr()
    assert "at most 600" in captured.err
    assert fake.calls[-1] == ("device.link", {"ttl_seconds": 600})
    assert LINK in captured.out and "scan" not in captured.out
    # not on a terminal (captured): no QR code either
    assert main(["device", "link"]) == 0
    out = capsys.readouterr().out
    assert "scan" not in out and "\u2588" not in out and "\u2580" not in out
    # --json without a place for the link: refused, nothing created
    fake.calls.clear()
    assert main(["device", "link", "--json"]) == 1
    assert "--link-file" in capsys.readouterr().out and fake.calls == []


def test_link_approve_without_terminal_says_what_to_do(
    fake: type[FakeClient], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["device", "link", "--approve"]) == 1
    err = capsys.readouterr().err
    assert "smu device approve" in err and "--yes" not in err
    assert fake.calls == []  # no link was made that nobody can approve here


def test_link_approve_asks_on_the_terminal(
    fake: type[FakeClient], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    request = {
        "id": "11" * 16,
        "state": "pending_approval",
        "awaiting_approval": True,
        "code": "123-456",
        "device_name": "laptop",
        "fingerprint": "FP",
    }
    fake.answers["device.pending"] = {"requests": [request]}
    fake.answers["device.approve"] = {"device_name": "laptop", "fingerprint": "FP"}
    master, slave = os.openpty()
    try:
        monkeypatch.setattr(node.cli.common, "TTY", os.ttyname(slave))
        os.write(master, b"y\n")
        assert main(["device", "link", "--approve", "--no-qr"]) == 0
        asked = b""
        while b"[y/N]" not in asked:  # the pty hands output over in pieces
            asked += os.read(master, 4096)
    finally:
        os.close(master)
        os.close(slave)
    captured = capsys.readouterr()
    assert "waiting for the new device" in captured.err
    assert b"123-456" in asked and b"Approve device 'laptop'" in asked
    assert "approved laptop" in captured.out and ("device.approve", {"id": "11" * 16}) in fake.calls


def test_join_without_terminal_does_not_use_the_link(
    fake: type[FakeClient], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sys, "stdin", io.StringIO(LINK + "\n"))
    assert main(["device", "join", "-"]) == 1
    assert "--yes" in capsys.readouterr().err
    assert fake.calls == []  # device.join was never asked: the link is unused


def test_verify_confirm_says_it_is_done(
    fake: type[FakeClient], capsys: pytest.CaptureFixture[str]
) -> None:
    fake.answers["contact.verify"] = {
        "safety_number": " ".join(["12345"] * 12),
        "contact": {"name": "alice", "verified": True, "status": "ok"},
    }
    assert main(["verify", "alice", "--confirm"]) == 0
    out = capsys.readouterr().out
    assert "marked alice verified" in out and "--confirm" not in out


def test_broken_pipe_is_quiet(tmp_path: Path) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "node.cli", "init", "--network", "smu-test"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**os.environ, "SMU_HOME": str(tmp_path / "n")},
    )
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.close()  # the reader is gone before anything is written (`| head -0`)
    err = proc.stderr.read().decode()
    assert proc.wait(60) == 141
    assert "Traceback" not in err and "Exception ignored" not in err


def test_join_yes_that_timed_out_but_joined_says_joined(
    fake: type[FakeClient], capsys: pytest.CaptureFixture[str]
) -> None:
    account = {"handle": "bob.x", "status": "ok", "devices": []}
    fake.answers["device.join"] = {
        "join_id": "j",
        "code": "123-456",
        "account": account,
        "device_name": "laptop",
    }

    def late(params: dict[str, Any]) -> Any:
        raise RpcError(2, "not joined: link_timeout")

    fake.answers["device.join_confirm"] = late
    # the approval landed as the wait ended: the node has the account
    fake.answers["node.status"] = {"device_status": "active", "account": "ab" * 32}
    assert main(["device", "join", LINK, "--yes"]) == 0
    assert "joined bob.x" in capsys.readouterr().out
    # it did not: the error stands
    fake.answers["node.status"] = {"device_status": None, "account": None}
    assert main(["device", "join", LINK, "--yes"]) == 1
    assert "link_timeout" in capsys.readouterr().err


def test_join_from_stdin_asks_on_the_terminal(
    fake: type[FakeClient], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    account = {
        "handle": "bob.x",
        "status": "ok",
        "devices": [{"name": "phone", "fingerprint": "F"}],
    }
    fake.answers["device.join"] = {
        "join_id": "j",
        "code": "123-456",
        "account": account,
        "device_name": "laptop",
    }
    fake.answers["device.join_confirm"] = {"joined": True, "account": account}
    monkeypatch.setattr(sys, "stdin", io.StringIO(LINK + "\n"))
    master, slave = os.openpty()
    try:
        monkeypatch.setattr(node.cli.common, "TTY", os.ttyname(slave))
        os.write(master, b"y\n")
        assert main(["device", "join", "-"]) == 0
        asked = b""
        while b"[y/N]" not in asked:
            asked += os.read(master, 4096)
    finally:
        os.close(master)
        os.close(slave)
    assert b"123-456" in asked and b"Join this account?" in asked
    assert ("device.join", {"link": LINK, "name": None}) in fake.calls
    assert ("device.join_confirm", {"join_id": "j", "accept": True}) in fake.calls
    assert "joined bob.x" in capsys.readouterr().out


def test_node_status_says_reachability_and_relays(
    fake: type[FakeClient], capsys: pytest.CaptureFixture[str]
) -> None:
    fake.answers["node.status"] = {
        "device_status": None,
        "peer_id": "P",
        "network": "smu-test",
        "listen": [],
        "peers": 2,
        "events": 1,
        "accounts": 1,
        "escrow": 0,
        "event_set_digest": "d",
        "reachability": {"reachability": "private", "relays": ["R1", "R2"]},
    }
    assert main(["node", "status"]) == 0
    assert "reach     private   relays R1, R2" in capsys.readouterr().out
