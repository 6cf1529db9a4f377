"""requirements.lock holds every pin of pyproject.toml, with hashes, and the
Makefile installs from it with --require-hashes (issue 16 item 5).

A dependency added or bumped in pyproject.toml without `make lock` fails
here, before a fresh clone's `make` would fail on it.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parent.parent
LOCK = ROOT / "requirements.lock"

_PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s\\;]+)")
_HASH = re.compile(r"--hash=sha256:([0-9a-f]{64})\b")


def parse_lock(text: str) -> dict[str, tuple[str, list[str]]]:
    """name -> (version, hashes) for each requirement of a pip-compile lock."""
    out: dict[str, tuple[str, list[str]]] = {}
    current: str | None = None
    for line in text.splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        if not line[0].isspace():
            m = _PIN.match(line)
            assert m, f"not a pinned requirement: {line!r}"
            current = canonicalize_name(m.group(1))
            assert current not in out, f"{current} is locked twice"
            out[current] = (m.group(2), [])
        else:
            assert current is not None, f"a hash before any requirement: {line!r}"
            out[current][1].extend(_HASH.findall(line))
    return out


def pyproject_pins() -> dict[str, str]:
    """name -> version of every dependency and dev extra of pyproject.toml;
    each must be an exact pin (==)."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    pins = {}
    for spec in [*project["dependencies"], *project["optional-dependencies"]["dev"]]:
        req = Requirement(spec)
        (only,) = req.specifier
        assert only.operator == "==", f"{spec}: pyproject.toml pins exact versions"
        pins[canonicalize_name(req.name)] = only.version
    return pins


def test_every_pin_of_pyproject_is_in_the_lock() -> None:
    locked = parse_lock(LOCK.read_text(encoding="utf-8"))
    missing = {
        name: version
        for name, version in pyproject_pins().items()
        if locked.get(name, ("", []))[0] != version
    }
    assert not missing, (
        f"pyproject.toml pins {missing}, which requirements.lock does not hold: "
        "run `make lock` and commit requirements.lock"
    )


def test_every_locked_package_has_hashes() -> None:
    locked = parse_lock(LOCK.read_text(encoding="utf-8"))
    assert len(locked) > 20
    bare = [name for name, (_, hashes) in locked.items() if not hashes]
    assert not bare, f"locked without a hash: {bare}"


def test_the_installer_and_the_build_backend_are_locked() -> None:
    """`make` installs the project with --no-build-isolation, so the build
    backend of [build-system] comes from the lock too, as does pip."""
    locked = parse_lock(LOCK.read_text(encoding="utf-8"))
    build = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["build-system"]
    for spec in [*build["requires"], "pip"]:
        req = Requirement(spec)
        name = canonicalize_name(req.name)
        assert name in locked, f"{name} is not in requirements.lock"
        assert SpecifierSet(str(req.specifier)).contains(Version(locked[name][0])), spec


def test_the_makefile_installs_from_the_lock_with_hashes() -> None:
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    assert "pip install --quiet --require-hashes -r $(LOCK)" in makefile
    assert "--no-deps --no-build-isolation -e ." in makefile
    assert re.search(r"^PIP_TOOLS := pip-tools==\d", makefile, re.M), "the lock's tool is pinned"
    assert re.search(r"^lock:", makefile, re.M)


def test_the_parser_finds_a_missing_pin() -> None:
    """The check above can fail: a lock without one pin, or with another
    version of it, is caught."""
    text = "msgpack==1.2.4 \\\n    --hash=sha256:" + "a" * 64 + "\n"
    assert parse_lock(text) == {"msgpack": ("1.2.4", ["a" * 64])}
    assert parse_lock(text.replace("1.2.4", "1.2.3"))["msgpack"][0] != pyproject_pins()["msgpack"]
    assert "pynacl" not in parse_lock(text)
