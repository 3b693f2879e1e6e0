"""PluginHost: WebAssembly plug-ins for flows, run by wasmtime in a sandbox per call.

Every plug-in here is written in WebAssembly text in this file (or is the shipped
``luhn.wat`` sample), stored under a temporary storage root the way a tenant would deploy
it, and called through the real host: real compiles, real fuel, real epoch interruption,
real memory limits. Async tests run through ``run`` (``asyncio.run`` with a timeout), so
no pytest plugin is needed.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Awaitable, Callable, Coroutine
from decimal import Decimal
from pathlib import Path
from typing import Any, TypeVar

import pytest
from wasmtime import wat2wasm

import appliance.ivr
from appliance.ivr.plugins import PluginError, PluginHost, PluginLimits

T = TypeVar("T")

SAMPLE = Path(appliance.ivr.__file__).parent / "samples" / "plugins" / "luhn.wat"

# memory, a bump allocator that grows memory (and traps when it cannot), and $pack
PRELUDE = """
  (memory (export "memory") {pages})
  (global $heap (mut i32) (i32.const 1024))
  (func $alloc (export "alloc") (param $size i32) (result i32)
    (local $ptr i32)
    (local.set $ptr (global.get $heap))
    (global.set $heap (i32.add (local.get $ptr) (local.get $size)))
    (if (i32.gt_u (global.get $heap) (i32.shl (memory.size) (i32.const 16)))
      (then
        (if (i32.eq
              (memory.grow (i32.add (i32.const 1) (i32.shr_u
                (i32.sub (global.get $heap) (i32.shl (memory.size) (i32.const 16)))
                (i32.const 16))))
              (i32.const -1))
          (then (unreachable)))))
    (local.get $ptr))
  (func $pack (param $ptr i32) (param $len i32) (result i64)
    (i64.or (i64.shl (i64.extend_i32_u (local.get $ptr)) (i64.const 32))
            (i64.extend_i32_u (local.get $len))))
"""

ECHO = """
  (func (export "echo") (param $ptr i32) (param $len i32) (result i64)
    (call $pack (local.get $ptr) (local.get $len)))
"""

# {"echo": <input>}
WRAP = r"""
  (data (i32.const 16) "{\"echo\":")
  (func (export "wrap") (param $ptr i32) (param $len i32) (result i64)
    (local $out i32)
    (local.set $out (call $alloc (i32.add (local.get $len) (i32.const 9))))
    (memory.copy (local.get $out) (i32.const 16) (i32.const 8))
    (memory.copy (i32.add (local.get $out) (i32.const 8)) (local.get $ptr) (local.get $len))
    (i32.store8 (i32.add (i32.add (local.get $out) (i32.const 8)) (local.get $len))
                (i32.const 125))
    (call $pack (local.get $out) (i32.add (local.get $len) (i32.const 9))))
"""

SPIN = """
  (func (export "spin") (param i32 i32) (result i64)
    (loop $forever (br $forever))
    (i64.const 0))
"""

# counts to 0x0800_0000 (about 0.1-0.5 s of wasm) and answers 1
COUNT = """
  (data (i32.const 16) "1")
  (func (export "count") (param i32 i32) (result i64)
    (local $i i32)
    (loop $more
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br_if $more (i32.lt_u (local.get $i) (i32.const 0x08000000))))
    (call $pack (i32.const 16) (i32.const 1)))
"""

# asks for 1000 more pages (62.5 MiB); traps when refused, else answers "ok"
GROW = r"""
  (data (i32.const 16) "\"ok\"")
  (func (export "grow") (param i32 i32) (result i64)
    (if (i32.eq (memory.grow (i32.const 1000)) (i32.const -1))
      (then (unreachable)))
    (call $pack (i32.const 16) (i32.const 4)))
"""


def plugin(*bodies: str, pages: int = 1, imports: str = "") -> str:
    """A module following the ABI: ``imports``, the prelude, then ``bodies``."""
    return f"(module {imports} {PRELUDE.format(pages=pages)} {' '.join(bodies)})"


def returning(function: str, data: bytes, *, ptr: int = 16, length: int | None = None) -> str:
    """A function that answers ``length`` (default: all) bytes at ``ptr``, where ``data``
    sits."""
    escaped = "".join(f"\\{b:02x}" for b in data)
    n = len(data) if length is None else length
    return f"""
      (data (i32.const 16) "{escaped}")
      (func (export "{function}") (param i32 i32) (result i64)
        (call $pack (i32.const {ptr}) (i32.const {n})))
    """


def put(root: Path, tenant: str, name: str, wat: str, *, binary: bool = False) -> Path:
    """Deploy a plug-in as ``<root>/<tenant>/plugins/<name>.wat`` (or ``.wasm``)."""
    base = root / tenant / "plugins"
    base.mkdir(parents=True, exist_ok=True)
    path = base / f"{name}.{'wasm' if binary else 'wat'}"
    if binary:
        path.write_bytes(bytes(wat2wasm(wat)))
    else:
        path.write_text(wat)
    return path


def run(coro: Coroutine[Any, Any, T]) -> T:
    async def main() -> T:
        return await asyncio.wait_for(coro, 20.0)

    return asyncio.run(main())


def hosted(root: Path, body: Callable[[PluginHost], Awaitable[T]],
           limits: PluginLimits | None = None, *, workers: int = 2) -> T:
    """Run ``body(host)`` with a host that is always closed afterwards."""

    async def main() -> T:
        host = PluginHost(root, limits or PluginLimits(), workers=workers)
        try:
            return await body(host)
        finally:
            await host.close()

    return run(main())


def fails(root: Path, tenant: str, name: str, function: str, value: Any = None,
          *, timeout: float = 5.0, limits: PluginLimits | None = None) -> PluginError:
    """The PluginError of one call (the test fails if the call succeeds)."""

    async def body(host: PluginHost) -> PluginError:
        with pytest.raises(PluginError) as info:
            await host.call(tenant, name, function, value, timeout)
        return info.value

    err = hosted(root, body, limits)
    assert "\n" not in str(err)
    assert str(root) not in str(err)
    return err


def call(root: Path, tenant: str, name: str, function: str, value: Any = None,
         *, timeout: float = 5.0, limits: PluginLimits | None = None) -> Any:
    async def body(host: PluginHost) -> Any:
        return await host.call(tenant, name, function, value, timeout)

    return hosted(root, body, limits)


@pytest.fixture
def root(tmp_path: Path) -> Path:
    path = tmp_path / "storage"
    path.mkdir()
    return path


# --------------------------------------------------------------------------- the sample
@pytest.mark.parametrize("binary", [False, True], ids=["wat", "wasm"])
def test_luhn_sample(root: Path, binary: bool) -> None:
    put(root, "acme", "luhn", SAMPLE.read_text(), binary=binary)
    cases = {
        "4111111111111111": True,  # the classic test Visa number
        "79927398713": True,
        "5555555555554444": True,
        "4111111111111112": False,
        "79927398710": False,
        "4111 1111 1111 1111": False,  # anything but digits
        "4111-1111-1111-1111": False,
        "41111111111111x1": False,
        "": False,
        "0": False,  # fewer than two digits
        "٤١١١١١١١١١١١١١١١": False,  # Arabic-Indic digits are not 0-9
    }

    async def body(host: PluginHost) -> dict[str, Any]:
        got = {number: await host.call("acme", "luhn", "check", number, 2.0)
               for number in cases}
        got["int"] = await host.call("acme", "luhn", "check", 4111111111111111, 2.0)
        got["dict"] = await host.call("acme", "luhn", "check", {"n": "42"}, 2.0)
        return got

    got = hosted(root, body)
    for number, valid in cases.items():
        assert got[number] == {"valid": valid}, number
    assert got["int"] == {"valid": False}  # a JSON number is not a string of digits
    assert got["dict"] == {"valid": False}


# --------------------------------------------------------------------------- the ABI
def test_echo_and_transform_round_trip_nested_json(root: Path) -> None:
    put(root, "acme", "json", plugin(ECHO, WRAP))
    value = {"caller": "+4930123456", "digits": [1, 2, 3], "nested": {"a": [None, True,
             False, {"b": -1.5e10}], "text": "Grüße, 你好 \"quoted\" \\ \n"}, "empty": {}}

    async def body(host: PluginHost) -> tuple[Any, Any, Any, Any]:
        return (await host.call("acme", "json", "echo", value, 2.0),
                await host.call("acme", "json", "wrap", value, 2.0),
                await host.call("acme", "json", "wrap", "x", 2.0),
                await host.call("acme", "json", "echo", Decimal("2.50"), 2.0))

    echoed, wrapped, small, decimal = hosted(root, body)
    assert echoed == value
    assert wrapped == {"echo": value}
    assert small == {"echo": "x"}
    assert decimal == 2.5


def test_input_that_is_not_json_or_too_big(root: Path) -> None:
    put(root, "acme", "json", plugin(ECHO))
    assert fails(root, "acme", "json", "echo", {"x": object()}).code == "invalid-request"
    assert fails(root, "acme", "json", "echo", float("nan")).code == "invalid-request"
    err = fails(root, "acme", "json", "echo", "x" * 200,
                limits=PluginLimits(max_input_bytes=100))
    assert "input is too big" in str(err)
    assert call(root, "acme", "json", "echo", "x" * 90,
                limits=PluginLimits(max_input_bytes=100)) == "x" * 90


def test_missing_or_mistyped_function(root: Path) -> None:
    put(root, "acme", "p", plugin(ECHO, "(func (export \"bad\") (param i32) (result i32) "
                                        "(local.get 0))"))
    err = fails(root, "acme", "p", "nope")
    assert err.code == "invalid-module"
    assert "no function 'nope'" in str(err)
    err = fails(root, "acme", "p", "bad")
    assert "(i32, i32) -> i64" in str(err) and "(i32) -> i32" in str(err)
    assert fails(root, "acme", "p", "bad name!").code == "invalid-request"


def test_module_must_export_memory_and_alloc(root: Path) -> None:
    put(root, "acme", "nomem", "(module (func (export \"alloc\") (param i32) (result i32) "
                               "(local.get 0)))")
    put(root, "acme", "noalloc", "(module (memory (export \"memory\") 1))")
    assert "'memory'" in str(fails(root, "acme", "nomem", "f"))
    assert "alloc" in str(fails(root, "acme", "noalloc", "f"))


def test_invalid_module_files(root: Path) -> None:
    base = root / "acme" / "plugins"
    base.mkdir(parents=True)
    (base / "garbage.wasm").write_bytes(b"\0asm\x01\0\0\0\x01\x02")
    (base / "text.wasm").write_text("(module)")
    (base / "broken.wat").write_text("(module (func (export \"f\") (blah)))")
    err = fails(root, "acme", "garbage", "f")
    assert err.code == "invalid-module" and "not a valid WebAssembly module" in str(err)
    assert "not a WebAssembly binary" in str(fails(root, "acme", "text", "f"))
    err = fails(root, "acme", "broken", "f")
    assert "not valid WebAssembly text" in str(err) and "line 1" in str(err)
    assert fails(root, "acme", "absent", "f").code == "not-found"


@pytest.mark.parametrize(
    ("imports", "named"),
    [
        ('(import "env" "f" (func))', "env.f"),
        ('(import "wasi_snapshot_preview1" "fd_write" '
         "(func (param i32 i32 i32 i32) (result i32)))", "wasi_snapshot_preview1.fd_write"),
        ('(import "env" "table" (table 1 funcref))', "env.table"),
    ],
)
def test_module_with_an_import_is_refused(root: Path, imports: str, named: str) -> None:
    put(root, "acme", "imp", plugin(ECHO, imports=imports))
    err = fails(root, "acme", "imp", "echo", "x")
    assert err.code == "invalid-module"
    assert f"imports {named}" in str(err)


def test_out_of_bounds_output_pointer(root: Path) -> None:
    put(root, "acme", "oob", plugin(returning("far", b"1", ptr=0xFFFF0000, length=10),
                                    returning("edge", b"1", ptr=65535, length=2)))
    for function in ("far", "edge"):
        err = fails(root, "acme", "oob", function)
        assert err.code == "bad-output" and "out of bounds" in str(err), function


def test_out_of_bounds_alloc_pointer(root: Path) -> None:
    put(root, "acme", "badalloc", f"""(module (memory (export "memory") 1)
        (func (export "alloc") (param i32) (result i32) (i32.const 65530))
        {ECHO.replace("$pack", "$p")}
        (func $p (param i32 i32) (result i64) (i64.const 0)))""")
    err = fails(root, "acme", "badalloc", "echo", "0123456789")
    assert err.code == "bad-output" and "alloc(12) returned an out-of-bounds pointer" in str(err)


@pytest.mark.parametrize(
    ("data", "expect"),
    [
        (b"{not json", "not valid JSON"),
        (b'"\xff\xfe"', "not valid UTF-8"),
        (b"NaN", "not valid JSON"),
        (b"", "not valid JSON"),
        (b"[" * 100_000, "not valid JSON"),  # too deep for the parser: refused, not a crash
    ],
    ids=["syntax", "utf8", "nan", "empty", "deep"],
)
def test_invalid_output(root: Path, data: bytes, expect: str) -> None:
    put(root, "acme", "out", plugin(returning("f", data), pages=2))
    err = fails(root, "acme", "out", "f")
    assert err.code == "bad-output" and expect in str(err)


def test_output_too_big(root: Path) -> None:
    text = b'"' + b"a" * 198 + b'"'
    put(root, "acme", "big", plugin(returning("f", text)))
    assert call(root, "acme", "big", "f") == "a" * 198
    err = fails(root, "acme", "big", "f", limits=PluginLimits(max_output_bytes=100))
    assert err.code == "bad-output" and "output is too big (200 bytes, at most 100)" in str(err)


# --------------------------------------------------------------------------- budgets
def test_infinite_loop_runs_out_of_fuel_and_host_stays_usable(root: Path) -> None:
    put(root, "acme", "spin", plugin(SPIN, ECHO))

    async def body(host: PluginHost) -> tuple[PluginError, float, Any]:
        start = time.monotonic()
        with pytest.raises(PluginError) as info:
            await host.call("acme", "spin", "spin", None, 10.0)
        elapsed = time.monotonic() - start
        return info.value, elapsed, await host.call("acme", "spin", "echo", [1, 2], 1.0)

    err, elapsed, after = hosted(root, body, PluginLimits(fuel=20_000_000))
    assert err.code == "fuel"
    assert "ran out of its instruction budget" in str(err)
    assert elapsed < 5.0  # the fuel, not the 10 s timeout, stopped it
    assert after == [1, 2]


def test_infinite_loop_with_huge_fuel_times_out_by_epoch(root: Path) -> None:
    put(root, "acme", "spin", plugin(SPIN, ECHO))

    async def body(host: PluginHost) -> tuple[PluginError, float, Any]:
        start = time.monotonic()
        with pytest.raises(PluginError) as info:
            await host.call("acme", "spin", "spin", None, 0.4)
        elapsed = time.monotonic() - start
        return info.value, elapsed, await host.call("acme", "spin", "echo", "ok", 1.0)

    err, elapsed, after = hosted(root, body, PluginLimits(fuel=10**15))
    assert err.code == "timeout"
    assert "timed out after 0.4 s" in str(err)
    assert 0.4 <= elapsed < 0.9
    assert after == "ok"


def test_start_function_is_under_the_same_budget(root: Path) -> None:
    put(root, "acme", "start", plugin(ECHO, "(func $s (loop $l (br $l))) (start $s)"))
    err = fails(root, "acme", "start", "echo", limits=PluginLimits(fuel=1_000_000))
    assert err.code == "fuel"


def test_memory_grow_beyond_the_limit_fails(root: Path) -> None:
    put(root, "acme", "grow", plugin(GROW))
    # 1 + 1000 pages is about 62.5 MiB: over the default 16 MiB, memory.grow gives -1
    err = fails(root, "acme", "grow", "grow")
    assert err.code == "trap" and "unreachable" in str(err)
    # the same code under a 128 MiB limit grows fine: the limit is what refused it
    assert call(root, "acme", "grow", "grow", limits=PluginLimits(memory_bytes=128 << 20)) == "ok"


def test_initial_memory_beyond_the_limit_is_refused(root: Path) -> None:
    put(root, "acme", "huge", plugin(ECHO, pages=300))  # 18.75 MiB
    err = fails(root, "acme", "huge", "echo", 1)
    assert err.code == "memory" and "could not start" in str(err)
    assert call(root, "acme", "huge", "echo", 1, limits=PluginLimits(memory_bytes=32 << 20)) == 1


@pytest.mark.parametrize(
    ("code", "reason"),
    [
        ("(drop (i32.div_u (i32.const 1) (i32.const 0)))", "integer divide by zero"),
        ("(call $down)", "call stack exhausted"),
        ("(drop (i32.load (i32.const 0x7fffffff)))", "out of bounds memory access"),
        ("(unreachable)", "unreachable"),
    ],
    ids=["div0", "stack", "load", "unreachable"],
)
def test_trap_gives_its_reason(root: Path, code: str, reason: str) -> None:
    put(root, "acme", "trap", plugin(f"""
        (func $down (call $down))
        (func (export "f") (param i32 i32) (result i64) {code} (i64.const 0))"""))
    err = fails(root, "acme", "trap", "f")
    assert err.code == "trap" and reason in str(err)
    assert "backtrace" not in str(err)


# --------------------------------------------------------------------------- confinement
def test_tenants_cannot_reach_each_other(root: Path) -> None:
    secret = put(root, "b", "secret", plugin(returning("f", b'"b-secret"')))
    put(root, "a", "echo", plugin(ECHO))
    a_plugins = root / "a" / "plugins"
    (a_plugins / "steal.wat").symlink_to(secret)  # a link into b's plug-ins
    (a_plugins / "alias.wat").symlink_to(a_plugins / "echo.wat")  # one of a's own
    (root / "c").symlink_to(root / "b")  # a tenant directory that is a link
    (root / "d").mkdir()
    (root / "d" / "plugins").symlink_to(root / "b" / "plugins")  # a plug-in dir link
    (a_plugins / "loop.wasm").symlink_to(a_plugins / "loop.wasm")  # a link to itself

    assert call(root, "b", "secret", "f") == "b-secret"  # b itself may
    assert call(root, "a", "alias", "echo", 7) == 7  # a link inside a's own dir is fine
    for name in ("../b/plugins/secret", "/abs/secret", "secret.wat", "..", ""):
        assert fails(root, "a", name, "f").code == "invalid-request", name
    for tenant in ("../b", "B", "-b", "b/..", ""):
        assert fails(root, tenant, "secret", "f").code == "invalid-request", tenant
    err = fails(root, "a", "steal", "f")
    assert err.code == "refused" and "outside" in str(err)
    err = fails(root, "c", "secret", "f")
    assert err.code == "refused" and "symlink" in str(err)
    err = fails(root, "d", "secret", "f")
    assert err.code == "refused"
    assert fails(root, "a", "secret", "f").code == "not-found"
    assert fails(root, "a", "loop", "f").code == "refused"
    assert call(root, "b", "secret", "f") == "b-secret"  # and b's plug-in is untouched


def test_a_fifo_is_refused_without_blocking(root: Path) -> None:
    base = root / "acme" / "plugins"
    base.mkdir(parents=True)
    os.mkfifo(base / "fifo.wasm")
    err = fails(root, "acme", "fifo", "f", timeout=2.0)
    assert err.code == "refused" and "not a regular file" in str(err)


# --------------------------------------------------------------------------- cache
def test_cache_is_used_and_revalidated(root: Path) -> None:
    path = put(root, "acme", "ver", plugin(returning("f", b"1")))

    async def body(host: PluginHost) -> list[Any]:
        seen = [await host.call("acme", "ver", "f", None, 2.0),
                await host.call("acme", "ver", "f", None, 2.0), host.compiles]
        # a new file renamed over the old one (a new inode, as add() does)
        tmp = path.with_name("new.tmp")
        tmp.write_text(plugin(returning("f", b"2")))
        os.replace(tmp, path)
        seen += [await host.call("acme", "ver", "f", None, 2.0), host.compiles]
        # rewritten in place with the same size: the mtime tells it apart
        before = path.stat()
        path.write_text(plugin(returning("f", b"3")))
        os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns + 1_000_000_000))
        seen += [await host.call("acme", "ver", "f", None, 2.0), host.compiles]
        # a .wasm beside the .wat wins
        put(root, "acme", "ver", plugin(returning("f", b"4")), binary=True)
        seen += [await host.call("acme", "ver", "f", None, 2.0), host.compiles]
        return seen

    assert hosted(root, body) == [1, 1, 1, 2, 2, 3, 3, 4, 4]


# --------------------------------------------------------------------------- add / list
def test_add_validates_then_stores_atomically(root: Path) -> None:
    good = bytes(wat2wasm(plugin(ECHO)))

    async def body(host: PluginHost) -> None:
        assert host.list("acme") == []
        for data, expect in [
            (b"not a module at all", "not valid WebAssembly text"),
            (b"\0asm\x01\0\0\0\x01\x02", "not a valid WebAssembly module"),
            (bytes(wat2wasm(plugin(ECHO, imports='(import "env" "f" (func))'))),
             "imports env.f"),
            (bytes(wat2wasm('(module (memory (export "memory") 1))')), "alloc"),
        ]:
            with pytest.raises(PluginError, match=expect):
                host.add("acme", "bad", data)
        with pytest.raises(PluginError) as info:
            host.add("acme", "../b", good)
        assert info.value.code == "invalid-request"
        with pytest.raises(PluginError, match="too big"):
            host.add("acme", "big", good + b"\0" * (64 << 10))  # over the 64 KiB below
        assert host.list("acme") == []

        host.add("acme", "echo", good)
        host.add("acme", "text", plugin(ECHO).encode())  # text is stored compiled
        assert host.list("acme") == ["echo", "text"]
        assert sorted(os.listdir(root / "acme" / "plugins")) == ["echo.wasm", "text.wasm"]
        assert (root / "acme" / "plugins" / "text.wasm").read_bytes().startswith(b"\0asm")
        assert await host.call("acme", "echo", "echo", {"k": [1]}, 2.0) == {"k": [1]}
        assert await host.call("acme", "text", "echo", "t", 2.0) == "t"
        assert host.list("other") == []

        (root / "link").symlink_to(root / "acme")
        with pytest.raises(PluginError, match="symlink"):
            host.add("link", "x", good)
        with pytest.raises(PluginError, match="symlink"):
            host.list("link")

    hosted(root, body, PluginLimits(max_module_bytes=64 << 10))


# --------------------------------------------------------------------------- concurrency
def test_parallel_calls_do_not_block_the_loop(root: Path) -> None:
    put(root, "a", "slow", plugin(COUNT))
    put(root, "b", "slow", plugin(COUNT))

    async def body(host: PluginHost) -> tuple[list[Any], int, float]:
        ticks = 0
        stop = asyncio.Event()

        async def ticker() -> None:
            nonlocal ticks
            while not stop.is_set():
                await asyncio.sleep(0.01)
                ticks += 1

        task = asyncio.create_task(ticker())
        start = time.monotonic()
        results = await asyncio.gather(host.call("a", "slow", "count", None, 10.0),
                                       host.call("b", "slow", "count", None, 10.0))
        elapsed = time.monotonic() - start
        stop.set()
        await task
        return list(results), ticks, elapsed

    results, ticks, elapsed = hosted(root, body, PluginLimits(fuel=10**12))
    assert results == [1, 1]
    assert elapsed > 0.05  # the plug-ins really took a while...
    assert ticks >= elapsed / 0.01 / 3  # ...and the loop kept ticking all along


def test_closed_host_refuses_calls(root: Path) -> None:
    put(root, "acme", "echo", plugin(ECHO))

    async def main() -> PluginError:
        host = PluginHost(root)
        assert await host.call("acme", "echo", "echo", 1, 1.0) == 1
        await host.close()
        await host.close()  # idempotent
        with pytest.raises(PluginError) as info:
            await host.call("acme", "echo", "echo", 1, 1.0)
        return info.value

    assert run(main()).code == "closed"


def test_bad_timeouts_are_refused(root: Path) -> None:
    put(root, "acme", "echo", plugin(ECHO))
    for timeout in (0, -1, float("inf"), float("nan"), 10_000):
        assert fails(root, "acme", "echo", "echo", 1, timeout=timeout).code == "invalid-request"


def test_limits_are_validated() -> None:
    with pytest.raises(ValueError):
        PluginLimits(fuel=0)
    with pytest.raises(ValueError):
        PluginLimits(memory_bytes=1000)
