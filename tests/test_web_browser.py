"""The web app in a real browser (issue: a local web app): three real nodes
on loopback, each with its own headless Chromium.

One story, step by step: alice creates her account in the browser and
writes down the recovery key; links her phone, approving it in the
laptop's browser after both show the same code; bob adds her by invite and
writes first, so she gets a message request and accepts it; her answer
appears live in bob's browser; she marks bob's safety number verified;
reading bob's next message on the laptop clears its unread count on the
phone; she revokes the phone, and the phone's browser says so; she blocks
bob.  Names and messages full of markup show as text and run nothing, and
the CSP stops inline script.  Screenshots of each screen go to ``out/web/``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import pytest

from node.netdemo import Demo, DemoNode

from .browser import SHOTS, Browser, require_browser
from .process import start_nodes

pytestmark = pytest.mark.process

XSS_NAME = "<img src=x onerror=window.__pwned=1>"
XSS_DEVICE = "<b>phone</b><img src=x onerror=window.__pwned=2>"
XSS_TEXT = "<script>window.__pwned=3</script><img src=x onerror=window.__pwned=3> hi bob"
NEVER_RAN = "return window.__pwned === undefined && window.__inline === undefined"


@pytest.fixture
def browsers() -> Iterator[dict[str, Browser]]:
    require_browser()
    opened: dict[str, Browser] = {}
    try:
        yield opened
    finally:
        for b in opened.values():
            b.quit()


def test_the_web_app_story(demo: Demo, browsers: dict[str, Browser]) -> None:
    laptop, phone, bob_node = start_nodes(demo, ["laptop", "phone", "bob"])
    demo.connect(laptop, phone)
    demo.connect(laptop, bob_node)
    bob_node.client.call("account.create", name=XSS_NAME)
    a = browsers["laptop"] = Browser("laptop")
    p = browsers["phone"] = Browser("phone")
    b = browsers["bob"] = Browser("bob")

    # -- alice creates her account in the browser ----------------------------------
    a.open_app(laptop)
    a.wait(lambda: "Welcome to SMU" in a.text("main"), what="the first-run screen")
    assert a.driver.current_url.rstrip("/").endswith(str(laptop_port(laptop)))  # code gone
    assert "proved" in a.text("#proof")
    a.shot("01-first-run")
    a.click("Create account")
    a.type("#create-name", "alice")
    a.click("Create account")
    key = a.wait(lambda: a.text("#recovery-key"), what="the recovery key")
    assert len(key.split("-")) >= 8
    a.shot("02-recovery-key")
    assert not a.button("Continue").is_enabled()  # until it is written down
    a.element("#written").click()
    a.click("Continue")
    a.wait(lambda: "Conversations" in a.text("main h1"), what="the conversations")

    # -- the phone joins; the laptop approves with the code both show --------------
    p.open_app(phone)
    p.click("Join with a link")
    a.nav("account")
    a.click("Link a new device")
    link = a.value("#link-text")
    a.shot("03-link-device")
    p.type("#join-link", link)
    p.type("#join-name", XSS_DEVICE)
    p.click("Continue")
    code = p.wait(lambda: p.text("#join-code"), what="the confirmation code").replace(" ", "")
    assert "alice" in p.text("main")
    p.shot("04-join-confirm")
    p.click("Yes, join")
    a.wait(lambda: a.text("#approve-name"), what="the approval prompt")
    assert a.text("#approve-name") == XSS_DEVICE  # shown as text
    choices = {el.get_attribute("value"): el for el in a.finds(".choices input")}
    assert code in choices and len(choices) == 4
    a.shot("05-approve-device")
    choices[code].click()
    a.click("Approve")
    p.wait(lambda: "Conversations" in p.text("main h1"), timeout=30, what="the phone joined")
    a.wait(lambda: XSS_DEVICE in a.text("main table"), what="the phone in the devices")
    row = a.text(f'tr[data-fingerprint="{phone_fingerprint(phone)}"]')
    assert "laptop" in row and "active" in row  # approved by the laptop
    a.shot("06-this-account")

    # -- bob adds alice by invite and writes first: a message request --------------
    a.nav("contacts")
    invite = a.value("#invite-text")
    assert invite.startswith("smu1inv")
    a.wait(lambda: a.finds("svg.qr path"), what="the invite's QR code")
    a.shot("07-contacts")
    b.open_app(bob_node)
    b.nav("contacts")
    b.type("#add-ref", invite)
    b.click("Add contact")
    b.wait(lambda: b.text("main h1") == "alice", what="alice's contact page")
    b.click("Message")
    b.type("#compose", "hello alice, it is bob")
    b.click("Send")
    a.nav("conversations")
    a.wait(lambda: "Message requests" in a.text("main"), timeout=30, what="the request")
    a.shot("08-message-request")
    a.element(".requests-box button.conv").click()
    a.wait(lambda: "hello alice" in a.text(".messages"), what="the request's message")
    a.click("Accept")
    a.wait(lambda: a.finds("#compose"), what="the composer after accepting")

    # -- alice answers: live in bob's browser within a second ----------------------
    b.wait(lambda: "hello alice" in b.text(".messages"), what="bob's own message")
    a.type("#compose", XSS_TEXT)
    sent = time.monotonic()
    a.click("Send")
    b.wait(lambda: XSS_TEXT in b.text(".messages"), timeout=5, what="the answer, live")
    delay = time.monotonic() - sent
    assert delay < 1.0, f"the message took {delay:.2f}s to appear"
    # the newest bubble, read in one step (the list may re-render meanwhile)
    shown, tags = b.js(
        "const all = document.querySelectorAll('.msg.in .bubble');"
        "const e = all[all.length - 1];"
        "return [e.innerText, e.querySelectorAll('img, script').length];"
    )
    assert shown == XSS_TEXT and tags == 0
    a.wait(
        lambda: "delivered" in a.finds(".msg.out .deliveries")[-1].text,
        timeout=20,
        what="the delivery state",
    )
    b.shot("09-conversation-bob")
    a.shot("10-conversation-alice")

    # -- the safety number ------------------------------------------------------------
    b.nav("contacts")
    b.element(".contact-row").click()
    theirs = b.wait(lambda: b.text("#safety-mine"), what="bob's safety number")
    a.click("Safety number and history")
    a.wait(lambda: a.text("#safety-mine"), what="alice's safety number")
    a.type("#safety-theirs", theirs)
    a.wait(lambda: "match" in a.text("#safety-verdict"), what="the numbers match")
    a.click("Mark as verified")
    a.click("Yes, they match")
    a.wait(lambda: "✓ Verified" in a.text("main"), what="the verified mark")
    assert "account created" in a.text("main .history")
    a.shot("12-safety-number")

    # -- unread on both of alice's devices; read on the laptop, cleared on the phone --
    b.click("Message")
    b.type("#compose", "are you there?")
    b.click("Send")
    p.nav("conversations")
    p.wait(lambda: badge(p) == "1", timeout=30, what="one unread on the phone")
    p.shot("11-unread-phone")
    a.nav("conversations")
    a.wait(lambda: badge(a) == "1", timeout=30, what="one unread on the laptop")
    a.element(".conv-list button.conv").click()
    a.wait(lambda: "are you there?" in a.text(".messages"), what="the message on the laptop")
    a.wait(lambda: badge(a) == "", what="read on the laptop")
    p.wait(lambda: badge(p) == "", timeout=20, what="the read synced to the phone, live")
    # deleted on the laptop: to the account's trash, gone from the phone's view too

    def delete_it() -> bool:
        # the list may re-render under us (the read just synced): find it anew
        for m in a.finds(".msg.in"):
            if "are you there?" in m.text:
                m.find_element("css selector", "button.delete").click()
                return True
        return False

    a.wait(delete_it, what="the delete button")
    a.wait(lambda: "are you there?" not in a.text(".messages"), what="the message deleted")
    p.wait(
        lambda: (
            [t["text"] for t in phone.client.call("message.trash")["trash"]] == ["are you there?"]
        ),
        timeout=20,
        what="the delete synced to the phone",
    )
    # the phone's Trash screen brings it back, for every device
    p.nav("trash")
    p.wait(lambda: "are you there?" in p.text(".trash-list"), what="the message in the trash")
    assert "From you" not in p.text(".trash-list")  # bob wrote it, under his label
    p.shot("11b-trash-phone")
    p.click("Restore")
    p.wait(lambda: "The trash is empty" in p.text("main"), what="the trash emptied")
    p.wait(
        lambda: laptop.client.call("message.trash")["trash"] == [],
        timeout=20,
        what="the restore synced to the laptop",
    )
    a.nav("conversations")
    a.click_css(".conv-list button.conv")  # the list re-renders as the restore syncs
    a.wait(lambda: "are you there?" in a.text(".messages"), what="the message back on the laptop")
    a.click("Safety number and history")
    a.wait(lambda: "✓ Verified" in a.text("main"), what="alice's contact page")

    # -- the node screen ------------------------------------------------------------
    a.nav("node")
    a.wait(lambda: a.finds(".chart svg rect"), what="the charts")
    a.wait(lambda: "Event-set digest" in a.text("main"), what="the node's facts")
    assert " used" in a.text("main .facts") and "Clock" in a.text("main .facts")
    assert "Reachable" in a.text("main .facts")  # the dial-back probe's verdict (§17.4)
    assert "direct" in a.text("main table")  # each peer: direct or relayed via whom
    a.shot("13-node")

    # -- revoking the phone; its browser says so -------------------------------------
    a.nav("account")
    a.element(f'tr[data-fingerprint="{phone_fingerprint(phone)}"] button').click()
    a.wait(lambda: a.text("#dialog-title"), what="the revoke dialog")
    a.shot("14-revoke-dialog")
    a.click("Revoke", within="//dialog")
    a.wait(lambda: "revoked" in a.find(f'tr[data-fingerprint="{phone_fingerprint(phone)}"]').text)
    p.wait(lambda: "was revoked" in p.text("#banner"), timeout=30, what="the phone told")
    assert "laptop" in p.text("#banner")
    p.shot("15-revoked-phone")

    # -- blocking a contact from the contact's page, with a confirmation ----------
    a.nav("contacts")
    a.element(".contact-row").click()
    a.click("Block")
    a.wait(lambda: a.text("#dialog-title").startswith("Block"), what="the block dialog")
    a.click("Block", within="//dialog")
    a.wait(lambda: a.finds("#contact-block") and a.text("#contact-block") == "Unblock")
    assert "Blocked" in a.text("main") and not a.finds("#contact-remove")
    a.shot("16-blocked-contact")
    a.nav("conversations")
    a.wait(lambda: "No contacts yet" in a.text(".conv-list"), what="no conversation shown")

    # -- nothing the names or messages carried ran; the CSP stops inline script --------
    for br in (a, p, b):
        assert br.js(NEVER_RAN), f"script ran in {br.name}'s browser"
    violations = a.js(
        """
        window.__violations = 0;
        document.addEventListener('securitypolicyviolation', () => window.__violations++);
        const s = document.createElement('script');
        s.textContent = 'window.__inline = 1';
        document.body.append(s);
        const d = document.createElement('div');
        d.innerHTML = '<img src=x onerror="window.__inline = 2">';
        document.body.append(d);
        return new Promise(r => setTimeout(() => r(window.__violations), 300));
        """
    )
    assert violations >= 1 and a.js(NEVER_RAN)
    assert (SHOTS / "13-node.png").exists()


def badge(br: Browser) -> str:
    """The unread badge of the first conversation in the list ('' if none)."""
    found = br.js(
        "const row = document.querySelector('.conv-list button.conv');"
        "const b = row && row.querySelector('.badge'); return b ? b.innerText : '';"
    )
    return str(found)


def laptop_port(node: DemoNode) -> int:
    return int(json.loads((node.dir / "web.json").read_text())["port"])


def phone_fingerprint(node: DemoNode) -> str:
    return str(node.status()["device_fingerprint"])
