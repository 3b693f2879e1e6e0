"""Pure cores stay pure (docs/CONTRACTS.md, DESIGN "Pure cores, thin edges").

The modules below take bytes and ``now`` in and give events, bytes and deadlines out: they
must not import I/O or concurrency modules, nor the edges, and must not read the clock.
Checked statically with ``ast`` (so a module that does not import cleanly is still checked).
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent

# Packages (every .py below them) and single modules that must be pure.
PURE_PACKAGES = ["appliance/sip", "appliance/pbx"]
PURE_MODULES = [
    "appliance/media/g711.py",
    "appliance/media/rtp.py",
    "appliance/media/dtmf.py",
    "appliance/media/jitter.py",
    "appliance/media/mixer.py",
    "appliance/media/wav.py",
    "appliance/media/tones.py",
    "appliance/media/ports.py",
    "appliance/plan.py",
    "appliance/ivr/flow.py",
    "appliance/ivr/interpreter.py",
    "appliance/ivr/digits.py",
    "appliance/ivr/expr.py",
    "appliance/ivr/say.py",
    "appliance/ivr/schema.py",
    "appliance/passwords.py",
    "appliance/ids.py",
    "appliance/link/protocol.py",
    "appliance/acd/__init__.py",
    "appliance/acd/commands.py",
    "appliance/acd/core.py",
    "appliance/acd/daily.py",
    "appliance/acd/errors.py",
    "appliance/acd/events.py",
    "appliance/acd/heap.py",
    "appliance/acd/line.py",
    "appliance/acd/model.py",
    "appliance/acd/states.py",
    "appliance/acd/stats.py",
]

FORBIDDEN_MODULES = (
    "asyncio",
    "socket",
    "selectors",
    "subprocess",
    "threading",
    "appliance.edge",
    "appliance.media.endpoint",
    "appliance.media.tts",
    "appliance.media.plane",
    "appliance.node",
)
# Clock reads: time is passed in as `now`.
FORBIDDEN_CALLS = (
    "time.time",
    "time.time_ns",
    "time.monotonic",
    "time.monotonic_ns",
    "time.perf_counter",
    "time.perf_counter_ns",
)


def pure_files() -> list[Path]:
    files: set[Path] = set()
    for pkg in PURE_PACKAGES:
        root = REPO / pkg
        if root.is_dir():
            files.update(root.rglob("*.py"))
    for mod in PURE_MODULES:
        p = REPO / mod
        if p.is_file():
            files.add(p)
    return sorted(files)


def module_name(path: Path) -> str:
    rel = path.relative_to(REPO).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _forbidden(name: str) -> str | None:
    for bad in FORBIDDEN_MODULES:
        if name == bad or name.startswith(bad + "."):
            return bad
    return None


@dataclass
class Violation:
    line: int
    what: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.what}"


def _resolve_relative(module: str | None, level: int, current: str, is_package: bool) -> str:
    if level == 0:
        return module or ""
    parts = current.split(".")
    base = parts if is_package else parts[:-1]
    if level > 1:
        base = base[: len(base) - (level - 1)]
    return ".".join([*base, module] if module else base)


def check_source(source: str, modname: str, is_package: bool = False) -> list[Violation]:
    """Violations of the purity rules in one module's source."""
    tree = ast.parse(source)
    out: list[Violation] = []
    # local name -> dotted name it stands for (import aliases), for call resolution
    aliases: dict[str, str] = {}

    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                bad = _forbidden(a.name)
                if bad:
                    out.append(Violation(node.lineno, f"imports {a.name}"))
                if a.asname:
                    aliases[a.asname] = a.name
                else:
                    top = a.name.split(".")[0]
                    aliases[top] = top
        elif isinstance(node, ast.ImportFrom):
            base = _resolve_relative(node.module, node.level, modname, is_package)
            bad = _forbidden(base)
            if bad:
                out.append(Violation(node.lineno, f"imports from {base}"))
                continue
            for a in node.names:
                full = f"{base}.{a.name}" if base else a.name
                if _forbidden(full):
                    out.append(Violation(node.lineno, f"imports {full}"))
                if full in FORBIDDEN_CALLS:
                    out.append(Violation(node.lineno, f"imports the clock {full}"))
                aliases[a.asname or a.name] = full

    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        dotted = _dotted(node.func)
        if dotted is None:
            continue
        head, _, rest = dotted.partition(".")
        resolved = aliases.get(head, head) + ("." + rest if rest else "")
        if resolved in FORBIDDEN_CALLS:
            out.append(Violation(node.lineno, f"reads the clock: {dotted}() (pass `now` in)"))
        if resolved in ("importlib.import_module", "__import__") and node.args:
            arg = node.args[0]
            if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
                if _forbidden(arg.value):
                    out.append(Violation(node.lineno, f"imports {arg.value} dynamically"))
    return sorted(out, key=lambda v: v.line)


def _dotted(node: ast.expr) -> str | None:
    parts: list[str] = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name):
        parts.append(node.id)
        return ".".join(reversed(parts))
    return None


FILES = pure_files()


@pytest.mark.parametrize("path", FILES, ids=[str(p.relative_to(REPO)) for p in FILES])
def test_pure_module(path: Path) -> None:
    source = path.read_text(encoding="utf-8")
    violations = check_source(source, module_name(path), path.name == "__init__.py")
    assert not violations, f"{path.relative_to(REPO)} is not pure:\n" + "\n".join(
        f"  {v}" for v in violations
    )


def test_some_pure_modules_exist() -> None:
    assert (REPO / "appliance").is_dir()
    # The list may be short early on, but the sip package is always there.
    assert any(p.is_relative_to(REPO / "appliance" / "sip") for p in FILES)


# ----------------------------------------------------------------- the checker itself
@pytest.mark.parametrize(
    "source",
    [
        "import asyncio",
        "import socket as s",
        "import asyncio.subprocess",
        "from selectors import DefaultSelector",
        "import subprocess",
        "from threading import Lock",
        "from appliance.edge import kamailio",
        "import appliance.edge.kamailio",
        "from appliance.media import endpoint",
        "from appliance.media.tts import speak",
        "from ..edge import kamailio",
        "import time\nx = time.time()",
        "import time as t\nx = t.monotonic()",
        "from time import monotonic\nx = monotonic()",
        "from time import time as now\nx = now()",
        "import importlib\nm = importlib.import_module('socket')",
    ],
)
def test_checker_catches(source: str) -> None:
    assert check_source(source, "appliance.sip.example"), source


@pytest.mark.parametrize(
    "source",
    [
        "import time\nx = time.strftime('%Y')",
        "from appliance.sip import uri",
        "from . import uri",
        "from ..media import g711",
        "import dataclasses, enum, re",
        "def f(now: float) -> float:\n    return now + 0.5",
        "import typing\nif typing.TYPE_CHECKING:\n    pass",
    ],
)
def test_checker_allows(source: str) -> None:
    assert check_source(source, "appliance.sip.example") == [], source


def test_relative_import_from_media_package() -> None:
    assert check_source("from . import endpoint", "appliance.media.rtp")
    assert check_source("from .tts import speak", "appliance.media.rtp")
    assert not check_source("from . import g711", "appliance.media.rtp")
