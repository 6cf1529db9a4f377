"""The package structure holds (DESIGN §2): layers import only downward,
features never import each other, ``protocol/`` stays sans-I/O, and
``node/`` has no import circle.

Imports are read from the source (every ``import`` statement, lazy ones
inside functions included), so nothing here depends on what happens to be
loaded.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

#: protocol's sub-packages by layer (protocol/__init__.py has the map)
LAYER = {"core": 0, "log": 1, "records": 2, "sync": 3, "links": 3, "linking": 3, "messaging": 3}
FEATURE = 3

#: what protocol/ must never import: I/O, the clock, global randomness
FORBIDDEN_IN_PROTOCOL = {
    "asyncio",
    "datetime",
    "libp2p",
    "multiaddr",
    "node",
    "os",
    "secrets",
    "selectors",
    "simnet",
    "socket",
    "sqlite3",
    "threading",
    "time",
    "trio",
}


def _module_name(path: Path) -> str:
    rel = path.relative_to(ROOT).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports_of(path: Path) -> set[str]:
    """Absolute names of every module ``path`` imports, at any depth."""
    tree = ast.parse(path.read_text(), str(path))
    package = _module_name(path).split(".")
    if path.name != "__init__.py":
        package = package[:-1]
    out: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - node.level + 1]
                stem = ".".join([*base, node.module] if node.module else base)
            else:
                stem = node.module or ""
            out.add(stem)
            # ``from pkg import module`` imports the module too
            out.update(f"{stem}.{alias.name}" for alias in node.names)
    return out


def _sources(package: str) -> list[Path]:
    return sorted((ROOT / package).rglob("*.py"))


def _layer_violations(path: Path) -> list[str]:
    own = _module_name(path).split(".")
    own_pkg = own[1] if len(own) > 1 else None
    bad: list[str] = []
    for name in sorted(imports_of(path)):
        top = name.split(".")[0]
        if top in FORBIDDEN_IN_PROTOCOL:
            bad.append(f"{name} (protocol/ is sans-I/O and never imports {top})")
            continue
        parts = name.split(".")
        if top != "protocol" or len(parts) < 2 or parts[1] not in LAYER:
            continue
        target = parts[1]
        if own_pkg is None or target == own_pkg:
            continue
        if own_pkg not in LAYER:
            bad.append(f"{name} (protocol.{own_pkg} is not in the layer map)")
        elif LAYER[target] > LAYER[own_pkg]:
            bad.append(f"{name} (layer {target} is above {own_pkg})")
        elif LAYER[target] == FEATURE == LAYER[own_pkg]:
            bad.append(f"{name} (feature {own_pkg} imports feature {target})")
    return bad


def test_every_protocol_module_is_in_a_layer() -> None:
    loose = [
        p.relative_to(ROOT).as_posix()
        for p in (ROOT / "protocol").glob("*.py")
        if p.name != "__init__.py"
    ]
    assert loose == [], "protocol/ modules live in a layer's sub-package"
    packages = {p.name for p in (ROOT / "protocol").iterdir() if (p / "__init__.py").exists()}
    assert packages == set(LAYER), "the layer map and protocol/'s sub-packages differ"


@pytest.mark.parametrize("path", _sources("protocol"), ids=lambda p: p.relative_to(ROOT).as_posix())
def test_protocol_imports_only_downward(path: Path) -> None:
    assert _layer_violations(path) == []


def test_the_check_catches_an_upward_import(tmp_path: Path) -> None:
    """The checker itself: an upward import, a feature-to-feature import and
    an I/O import are each reported (so the test above can fail)."""
    core = ROOT / "protocol" / "core" / "zz_probe_upward.py"
    feature = ROOT / "protocol" / "sync" / "zz_probe_feature.py"
    try:
        core.write_text("from protocol.log.events import Event\nimport time\n")
        feature.write_text("def f() -> None:\n    from ..messaging import envelope\n")
        assert [v.split(" ")[0] for v in _layer_violations(core)] == [
            "protocol.log.events",
            "protocol.log.events.Event",
            "time",
        ]
        assert "feature sync imports feature messaging" in " ".join(_layer_violations(feature))
    finally:
        core.unlink(missing_ok=True)
        feature.unlink(missing_ok=True)


@pytest.mark.parametrize("package", ["protocol", "simnet"])
def test_protocol_and_simnet_never_import_node(package: str) -> None:
    offenders = [
        (p.relative_to(ROOT).as_posix(), name)
        for p in _sources(package)
        for name in imports_of(p)
        if name == "node" or name.startswith("node.")
    ]
    assert offenders == []


def _circles(package: str) -> list[list[str]]:
    """Import cycles among ``package``'s modules (Tarjan's strongly
    connected components of more than one module, or a self-import)."""
    modules = {_module_name(p): p for p in _sources(package)}

    def target(name: str) -> str | None:
        # ``from pkg.mod import Name`` names pkg.mod.Name: the module is the
        # longest prefix that is one (never the package of a module named)
        while name and name not in modules:
            name = name.rpartition(".")[0]
        return name or None

    graph = {
        m: sorted({t for name in imports_of(p) if (t := target(name)) not in (None, m, package)})
        for m, p in modules.items()
    }
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for m in sorted(graph):
        if m not in index:
            visit(m)
    return found


@pytest.mark.parametrize("package", ["protocol", "simnet", "node"])
def test_no_import_circles(package: str) -> None:
    assert _circles(package) == []
