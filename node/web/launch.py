"""``smu web``: the user's side of opening the web app (``auth.py`` has the
scheme).  The launch address carries the one-time code, the challenge and
the answer the page must get from the server, all in the fragment, which a
browser never sends to any server."""

from __future__ import annotations

import json
import os
import sys
import webbrowser
from dataclasses import dataclass
from pathlib import Path

from ..api.node import WEB_LAUNCH
from ..control import ControlClient
from .auth import proof, read_key


@dataclass(frozen=True, slots=True)
class Launch:
    url: str
    port: int
    expires_at_ms: int


def make_launch(client: ControlClient, datadir: Path) -> Launch:
    got = WEB_LAUNCH.ask(client, {})
    port = got["port"]
    challenge = os.urandom(16)
    expected = proof(read_key(datadir), port, challenge)
    url = f"http://127.0.0.1:{port}/#launch={got['code']}&c={challenge.hex()}&v={expected}"
    return Launch(url, port, got["expires_at_ms"])


def open_browser(url: str) -> bool:
    """Open ``url`` where a person is at a terminal and a browser exists."""
    if not sys.stdout.isatty():
        return False
    try:
        browser = webbrowser.get()
    except webbrowser.Error:
        return False
    try:
        return bool(browser.open(url, new=2))
    except Exception:  # a browser that will not start is not our failure
        return False


def run(client: ControlClient, datadir: Path, as_json: bool, secrets: bool, no_open: bool) -> int:
    """``smu web``: the address in --json only with --show-secrets (it is
    one, for a minute)."""
    launch = make_launch(client, datadir)
    if as_json:
        doc: dict[str, object] = {"port": launch.port, "expires_at_ms": launch.expires_at_ms}
        if secrets:
            doc["url"] = launch.url
        print(json.dumps(doc))
        return 0
    opened = not no_open and open_browser(launch.url)
    print(
        f"{'Opened' if opened else 'Open'} the web app at\n\n    {launch.url}\n\n"
        "The address works once, within a minute; run `smu web` again for a new one."
    )
    return 0
