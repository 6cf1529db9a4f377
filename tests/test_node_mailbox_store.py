"""The node's mailbox on disk and its network groups (PROTOCOL.md §15.17,
§15.18), without processes: the SQLite store keeps what the machine holds
across a restart; the lab-only group mapping is off unless a test passes it;
tokens held for others stay within their caps."""

from __future__ import annotations

import inspect
from pathlib import Path

from node.cli import build_parser
from node.daemon import Daemon
from node.services.mailbox import LOCAL_GROUP, UNKNOWN_GROUP, MailboxService, deposit_group
from node.storage import SqliteMailboxStore, TokenStore, open_database
from node.storage.tokens import HELD_PER_MAILBOX
from protocol.messaging.mailbox import Mailbox, MailboxIdentity, MailboxLimits
from protocol.messaging.tokens import TokenBatch, TokenSigner

from .conftest import FAST, T0, device
from .mailbox_support import junk_envelope
from .test_mailbox_quotas import ACCOUNT, BOB, NOW, at, nonce


def _box(path: Path, **limits: int) -> tuple[Mailbox, SqliteMailboxStore]:
    store = SqliteMailboxStore(open_database(path / "events.sqlite"))
    box = Mailbox(FAST, MailboxIdentity(b"d" * 32), "12D3KooWDisk", MailboxLimits(**limits),
                  store=store)  # fmt: skip
    return box, store


def test_a_restart_keeps_deposits_spent_tokens_and_grants(tmp_path: Path) -> None:
    signer = TokenSigner(b"s" * 32)
    box, store = _box(tmp_path)
    box.issue_grant(ACCOUNT, BOB.sign_public, now=NOW, token_key=signer.public)
    (token,) = signer.issue(FAST, box.identity.public, BOB.sign_public, [nonce(1)], T0 + 3600_000)
    contact = box.deposit(
        BOB.sign_public, junk_envelope(FAST, BOB.sign_public, "c"), group="x", now=NOW, token=token
    )
    stranger = box.deposit(
        BOB.sign_public, junk_envelope(FAST, BOB.sign_public, "s", 5000), group="g", now=NOW
    )
    assert store.stored_bytes() == sum(box.held(BOB.sign_public)[:1])
    store.db.close()

    again, store2 = _box(tmp_path)
    assert again.grant_of(BOB.sign_public) == box.grant_of(BOB.sign_public)
    assert again.held(BOB.sign_public) == box.held(BOB.sign_public)
    assert again.held_by_strangers(BOB.sign_public) == box.held_by_strangers(BOB.sign_public)
    assert again.spent_count == 1
    bodies = store2.read(BOB.sign_public, [contact, stranger])
    assert bodies[0] == junk_envelope(FAST, BOB.sign_public, "c")
    # expiry reaches the disk too: the stranger's item goes after a day
    again.tick(at(24 * 3600 * 1000))
    assert store2.stored_bytes() == again.held(BOB.sign_public)[0] < 1000
    assert again.spent_count == 0  # the token expired after an hour


def test_the_global_byte_cap_bounds_the_disk(tmp_path: Path) -> None:
    box, store = _box(tmp_path, max_bytes=20_000, group_device_count=100, stranger_count=100,
                      stranger_bytes=10**6, group_bytes=10**6)  # fmt: skip
    box.issue_grant(ACCOUNT, BOB.sign_public, now=NOW)
    refused = 0
    for i in range(40):
        try:
            box.deposit(BOB.sign_public, junk_envelope(FAST, BOB.sign_public, f"{i}", 1000),
                        group=f"g{i % 30}", now=NOW)  # fmt: skip
        except Exception as exc:
            assert type(exc).__name__ == "MailboxFullError"
            refused += 1
    assert refused > 0 and store.stored_bytes() <= 20_000


def test_deposits_are_grouped_by_network_and_exempt_addresses_share_one_group() -> None:
    assert deposit_group("81.2.69.7") == deposit_group("81.2.3.9") == "ip4:81.2.0.0/16"
    assert deposit_group("2a00:1450:4001::1") == "ip6:2a00:1450::/32"
    for host in ("127.0.0.1", "127.0.3.7", "10.1.2.3", "192.168.0.5", "::1", "fe80::1"):
        assert deposit_group(host) == LOCAL_GROUP  # one group of their own, still capped
    assert deposit_group("") == UNKNOWN_GROUP


def test_the_lab_group_mapping_is_off_by_default_and_no_flag_reaches_it() -> None:
    param = inspect.signature(Daemon.__init__).parameters["mailbox_group_of"]
    assert param.kind is inspect.Parameter.KEYWORD_ONLY and param.default is None
    assert inspect.signature(MailboxService.__init__).parameters["group_of"].default is None
    # the service falls back to the link policy's groups
    service = MailboxService.__new__(MailboxService)
    MailboxService.__init__(
        service,
        ctx=type("Ctx", (), {"node_seed": b"\x01" * 32})(),  # type: ignore[arg-type]
        receive=lambda e: None,
        store=None,  # type: ignore[arg-type]
        tokens=None,  # type: ignore[arg-type]
    )
    assert service.group_of is deposit_group
    # and nothing the command line or a config file reaches passes it
    import node.cli
    import node.daemon

    assert "group" not in inspect.signature(node.daemon.run_daemon).parameters
    assert "mailbox_group_of" not in inspect.getsource(node.cli)
    assert "mailbox_group_of" not in inspect.getsource(node.daemon.run_daemon)
    assert "group" not in build_parser().format_help()


def test_tokens_held_for_one_mailbox_are_capped(tmp_path: Path) -> None:
    store = TokenStore(open_database(tmp_path / "events.sqlite"))
    signer = TokenSigner(b"h" * 32)
    dev = device("held").sign_public
    for round_ in range(3):
        nonces = [nonce(1000 * round_ + i) for i in range(64)]
        batch = TokenBatch(dev, b"m" * 32, signer.issue(FAST, b"m" * 32, dev, nonces, T0 + 10**9))
        store.db.write(store.hold_statements(ACCOUNT, batch, T0))
    assert store.held_count(dev) == HELD_PER_MAILBOX
    assert len(store.held(dev, b"m" * 32, T0)) == HELD_PER_MAILBOX
    store.prune(T0 + 10**9)
    assert store.held_count() == 0
