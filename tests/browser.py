"""A real browser for the web app's tests: Debian's headless Chromium driven
by Selenium through Debian's chromedriver, never a downloaded one.

``make test`` installs the two packages where it runs as root with apt (CI
does).  Elsewhere a missing browser skips the browser tests with a one-line
reason; under CI it fails them instead.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import pytest

from node.control import ControlClient
from node.netdemo import DemoNode
from node.web.launch import make_launch

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
#: without the background-networking flags Chromium dials out, and this
#: machine's closed network refuses it
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--window-size=1280,860",
]
#: screenshots for a person to look at (gitignored)
SHOTS = Path(__file__).resolve().parent.parent / "out" / "web"

T = TypeVar("T")

# Selenium never fetches a driver or a browser: the driver's path is given
os.environ.setdefault("SE_OFFLINE", "true")
os.environ.setdefault("SE_AVOID_STATS", "true")


def missing() -> str | None:
    """Why the browser tests cannot run here, or None."""
    absent = [str(p) for p in (CHROMIUM, CHROMEDRIVER) if not p.exists()]
    if absent:
        return f"no {' and '.join(absent)} (apt-get install chromium chromium-driver)"
    return None


def require_browser() -> None:
    reason = missing()
    if reason is None:
        return
    if os.environ.get("CI"):
        pytest.fail(f"the browser tests must run in CI: {reason}")
    pytest.skip(reason)


class Browser:
    """One headless Chromium with a fresh profile, on one node's web app."""

    def __init__(self, name: str) -> None:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service

        self.name = name
        self.profile = tempfile.mkdtemp(prefix=f"smu-chromium-{name}-")
        options = webdriver.ChromeOptions()
        options.binary_location = str(CHROMIUM)
        for flag in [*FLAGS, f"--user-data-dir={self.profile}"]:
            options.add_argument(flag)
        options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
        self.driver: Any = webdriver.Chrome(
            service=Service(executable_path=str(CHROMEDRIVER)), options=options
        )
        self.driver.set_script_timeout(10)

    def quit(self) -> None:
        try:
            self.driver.quit()
        finally:
            shutil.rmtree(self.profile, ignore_errors=True)

    # -- the app ------------------------------------------------------------------

    def open_app(self, node: DemoNode) -> None:
        """What `smu web` does, then wait until the page is signed in."""
        launch = make_launch(ControlClient(node.dir / "control.sock"), node.dir)
        self.driver.get(launch.url)
        self.wait(lambda: self.js("return !!(window.SMU && SMU.state)"), what="the app to start")

    def js(self, script: str, *args: Any) -> Any:
        return self.driver.execute_script(script, *args)

    def wait(self, fn: Callable[[], T], timeout: float = 20.0, what: str = "") -> T:
        deadline = time.monotonic() + timeout
        last: Any = None
        while True:
            try:
                last = fn()
            except Exception as exc:  # the page may be re-rendering
                last = exc
            if last and not isinstance(last, Exception):
                return last  # type: ignore[no-any-return]
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"{self.name}: timed out waiting for {what or fn}; last: {last!r}\n"
                    f"page: {self.text('body')[:2000]}"
                )
            time.sleep(0.03)

    def find(self, css: str) -> Any:
        from selenium.webdriver.common.by import By

        return self.driver.find_element(By.CSS_SELECTOR, css)

    def finds(self, css: str) -> list[Any]:
        from selenium.webdriver.common.by import By

        return list(self.driver.find_elements(By.CSS_SELECTOR, css))

    def text(self, css: str) -> str:
        """The visible text of the first match, read in one step inside the
        page (a find then a read can race a re-render: a stale element)."""
        script = "const e = document.querySelector(arguments[0]); return e ? e.innerText : '';"
        try:
            return str(self.js(script, css))
        except Exception:  # the page is navigating
            return ""

    def click_css(self, css: str) -> None:
        """Click the first match of ``css`` once there is one, found and
        clicked in one step inside the page (a list that re-renders between a
        find and a click would leave a stale element)."""
        script = "const e = document.querySelector(arguments[0]); if (e) e.click(); return !!e;"
        self.wait(lambda: self.js(script, css), what=css)

    def button(self, label: str, within: str = "") -> Any:
        """The visible button whose text is ``label``."""
        from selenium.webdriver.common.by import By

        xpath = f"{within}//button[normalize-space()={_xpath_string(label)}]"

        def visible() -> Any:
            found = [b for b in self.driver.find_elements(By.XPATH, xpath) if b.is_displayed()]
            return found[0] if found else None

        return self.wait(visible, what=f"a button {label!r}")

    def click(self, label: str, within: str = "") -> None:
        self.button(label, within).click()

    def element(self, css: str) -> Any:
        """The first element ``css`` matches, once there is one."""
        return self.wait(lambda: self.find(css), what=css)

    def nav(self, screen: str) -> None:
        """Go to a screen with the navigation (its label may carry a count)."""
        self.wait(lambda: self.find(f'nav button[data-screen="{screen}"]'), what=screen).click()

    def type(self, css: str, text: str) -> None:
        el = self.wait(lambda: self.find(css), what=css)
        el.clear()
        el.send_keys(text)

    def value(self, css: str) -> str:
        return str(self.wait(lambda: self.find(css).get_attribute("value"), what=css))

    def shot(self, name: str) -> Path:
        SHOTS.mkdir(parents=True, exist_ok=True)
        path = SHOTS / f"{name}.png"
        time.sleep(0.15)  # let a re-render settle
        self.js("document.querySelectorAll('.toast').forEach(t => t.remove())")  # transient
        self.driver.save_screenshot(str(path))
        return path

    def console_errors(self) -> list[str]:
        return [e["message"] for e in self.driver.get_log("browser") if e["level"] == "SEVERE"]


def _xpath_string(text: str) -> str:
    if "'" not in text:
        return f"'{text}'"
    parts = text.split("'")
    return "concat(" + ', "\'", '.join(f"'{p}'" for p in parts) + ")"
