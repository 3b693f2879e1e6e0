"""Sandboxed plug-ins for IVR flows: tenant code in WebAssembly (edge module).

Requirement R-4.13: flows call external code. The customer said "DLL"; a DLL loaded into
the node would let one tenant's code crash, stall or read the whole node. The modern
equivalent is a sandboxed plug-in: a WebAssembly module, run by wasmtime, that can only
compute on the bytes it is given and answer with bytes, within budgets of instructions,
time and memory. No tenant code may ever affect the node process or another tenant.

Theory of operation
-------------------
A flow node says: call plug-in ``name``, function ``fn``, with a JSON-like input value
(dict, list, str, int, float, bool, None; ``Decimal`` is sent as an int when integral,
else as a float), and a timeout. :meth:`PluginHost.call` returns the JSON-like output, or
raises :class:`PluginError`, whose text is one line meant for the flow's
``<result>_error`` variable and the call trace (it never shows a host path, only the
tenant's own plug-in name; ``code`` tells the kind of failure for metrics and tests).

Where plug-ins live: ``<storage_root>/<tenant_id>/plugins/<name>.wasm`` (binary), or
``<name>.wat`` (WebAssembly text, compiled on load; for convenience). When both exist the
``.wasm`` wins. Tenant ids match ``[a-z0-9][a-z0-9-]{0,62}``, names
``[A-Za-z0-9_-]{1,64}``, function names ``[A-Za-z_][A-Za-z0-9_]{0,63}``. The file is
found as the rest of the project confines tenant files: the ids are checked by regex,
a tenant directory that is a symlink is refused, and the plug-in's path, with every
symlink resolved, must stay inside ``<storage_root>/<tenant_id>/plugins`` -- a symlink to
another tenant's plug-in (or anywhere else) is refused. Only a regular file is read (a
FIFO or a device never blocks a worker).

One call, in a worker thread:

1. load the module (from the cache, see below), check it exports ``fn`` with the ABI's
   type;
2. make a fresh :class:`wasmtime.Store` with the limits below, set its fuel and its
   epoch deadline, and instantiate the module in it -- no state survives a call, nothing
   is shared between calls, flows or tenants;
3. run the ABI exchange (below), decode the output, drop the store.

The ABI (what tenants program against)
--------------------------------------
A plug-in is a core WebAssembly module (wasm32: 32-bit linear memory, not memory64, not
shared) that:

* imports **nothing**: no WASI, no host functions. A module with any import is refused
  when it is loaded (or added), with an error naming the import. A plug-in computes; it
  cannot do I/O -- flows have http, sql, socket and file actions for that;
* exports its linear memory as ``memory``;
* exports ``alloc(size: i32) -> i32``: returns a pointer to ``size`` writable bytes in
  ``memory`` (a bump allocator is enough: every call gets a fresh instance, so nothing
  needs freeing);
* exports each function a flow may call as ``fn(ptr: i32, len: i32) -> i64``.

The host JSON-encodes the input (UTF-8, compact, no NaN/Infinity), calls
``alloc(len)``, writes the ``len`` bytes at the pointer it got, then calls
``fn(ptr, len)``. ``fn`` returns its output packed in one i64 as
``(out_ptr << 32) | out_len`` (both unsigned 32-bit); the host reads ``out_len`` bytes at
``out_ptr`` in ``memory`` and decodes them as UTF-8 JSON (any JSON value; NaN and
Infinity are refused). A trap (``unreachable``, division by zero, out-of-bounds access,
stack exhaustion...) fails the call with the trap's reason. A start function, if any,
runs at instantiation under the same budgets.

Building one:

* Rust: a ``cdylib`` crate built with ``cargo build --release --target
  wasm32-unknown-unknown`` (no ``std`` I/O: nothing may end up imported -- check with
  ``wasm-tools print``); ``#[no_mangle] pub extern "C" fn alloc(size: i32) -> i32``
  (e.g. leak a ``Vec<u8>`` with that capacity) and ``#[no_mangle] pub extern "C" fn
  check(ptr: i32, len: i32) -> i64`` that builds the input slice with
  ``std::slice::from_raw_parts``, parses it with ``serde_json`` and returns
  ``((out.as_ptr() as i64) << 32) | out.len() as i64`` after leaking the output.
  The linker exports ``memory`` by itself.
* C: ``clang --target=wasm32 -O2 -nostdlib -Wl,--no-entry -Wl,--export=alloc
  -Wl,--export=check -o check.wasm check.c`` (a static arena for ``alloc``, no libc
  that does I/O; wasm-ld exports the memory as ``memory`` by default).
* AssemblyScript: ``asc check.ts --runtime stub -o check.wasm`` with ``export function
  alloc(size: i32): i32`` (``heap.alloc``) and ``export function check(ptr: i32, len:
  i32): i64``; it imports ``env.abort`` unless told otherwise (``--use abort=`` or a
  custom abort), and any import is refused.
* By hand: see ``appliance/ivr/samples/plugins/luhn.wat``, a Luhn checksum for card
  numbers, exports ``memory``, ``alloc`` and ``check``.

Limits (:class:`PluginLimits`) and why each exists
--------------------------------------------------
``fuel`` (default 50 million)
    wasmtime's fuel, roughly one unit per wasm instruction, for the whole call
    (instantiation, ``alloc`` and ``fn``). It bounds the CPU one call may burn
    deterministically, whatever the machine's load: an endless loop fails with "ran out
    of its instruction budget" in tens of milliseconds instead of holding a worker.
``timeout`` (per call, from the flow node)
    wall-clock bound, enforced by wasmtime's epoch interruption: a ticker thread bumps
    the engine's epoch every :data:`TICK` seconds while a call runs, and each store's
    deadline is the number of ticks left until the call's deadline (counted from when
    ``call`` was awaited, so time spent queued behind other calls counts). Fuel alone
    cannot bound wall time (a slow, loaded machine), and time alone is not reproducible;
    both are used. Loading/compiling cannot be interrupted; the awaiting side still gives
    up :data:`GRACE` seconds after the deadline (the compile ends in the background and
    is cached).
``memory_bytes`` (default 16 MiB)
    the store's limiter: instantiation fails if the module's initial memory is larger,
    and ``memory.grow`` returns -1 past it (the plug-in sees a normal out-of-memory).
    The store also allows one memory, one instance, a few tables of bounded size, so a
    module cannot take node memory in another shape.
``max_input_bytes`` / ``max_output_bytes`` (default 1 MiB each)
    the JSON crossing the boundary: a flow variable should never be megabytes, and the
    host copies and parses it in Python.
``max_module_bytes`` (default 8 MiB)
    the file (text or binary) and the compiled binary: compiling cannot be interrupted,
    and its time and memory grow with the module's size.

Out-of-bounds pointers from the plug-in (from ``alloc`` or in the packed output) are
checked by the host before it touches memory and fail the call; they never read host
memory (all accesses go through the bounds-checked linear memory).

Threading
---------
wasm runs in a small :class:`~concurrent.futures.ThreadPoolExecutor` owned by the host
(``workers``, default 2); wasmtime releases the GIL while wasm runs, so the event loop
never stalls, and a slow plug-in holds one worker at most until its deadline. The epoch
ticker is one daemon thread that sleeps on a condition while no call runs.
:meth:`PluginHost.close` refuses new calls, waits for the running ones (each ends by its
own deadline at worst), then stops the ticker. Compilation is single-threaded
(``parallel_compilation`` off), so a big module never takes every core from the media
threads. :meth:`PluginHost.list` and :meth:`PluginHost.add` are blocking (``add``
compiles): the admin API should run them in a thread.

Caching
-------
Compiling is the expensive part (parsing, validation, Cranelift), instantiating a
compiled module is cheap. One :class:`wasmtime.Engine` (``consume_fuel`` and
``epoch_interruption`` on) compiles every module; compiled modules are kept per (tenant,
name), at most ``cache_size`` of them, least recently used dropped first, and
revalidated on every call against the file's ``(st_dev, st_ino, st_size, st_mtime_ns)``
(from ``fstat`` of the descriptor actually read): replacing the file, even in place,
makes the next call compile the new code. A module is shared by calls in several
threads (wasmtime modules are thread-safe); stores never are.

Cost, measured on the 2-core development machine with the ``luhn`` sample: a warm call
(cached module) takes about 0.7 ms end to end from the event loop, of which about
0.3 ms is the fresh store, instantiation and the two wasm calls, the rest the hop to a
worker thread and the file check; a cold call adds the compile, about 4-7 ms.
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import functools
import json
import logging
import math
import os
import re
import stat
import tempfile
import threading
import time
from collections import OrderedDict
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any, Final

from wasmtime import (
    Config,
    Engine,
    Func,
    FuncType,
    Instance,
    Memory,
    MemoryType,
    Module,
    Store,
    Trap,
    TrapCode,
    WasmtimeError,
    wat2wasm,
)

from appliance.ids import ID_RE

__all__ = [
    "GRACE",
    "TICK",
    "PluginError",
    "PluginHost",
    "PluginLimits",
]

log = logging.getLogger(__name__)

TENANT_RE: Final = ID_RE
NAME_RE: Final = re.compile(r"[A-Za-z0-9_-]{1,64}")
FUNCTION_RE: Final = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}")

TICK: Final = 0.01
"""Seconds between two epoch increments while a call runs (timeout granularity)."""
GRACE: Final = 1.0
"""Seconds after its deadline at which ``call`` gives up waiting for a worker."""
MAX_TIMEOUT: Final = 300.0
MAX_TABLE_ELEMENTS: Final = 100_000  # 8 bytes each
MAX_TABLES: Final = 4

_SUFFIXES: Final = (".wasm", ".wat")
_MAGIC: Final = b"\0asm"
_U32: Final = 0xFFFF_FFFF
_U64: Final = 0xFFFF_FFFF_FFFF_FFFF
_Signature = tuple[tuple[str, ...], tuple[str, ...]]
_ALLOC_SIGNATURE: Final[_Signature] = (("i32",), ("i32",))
_CALL_SIGNATURE: Final[_Signature] = (("i32", "i32"), ("i64",))


class PluginError(Exception):
    """A plug-in call (or load, or add) failed; ``str()`` is one user-facing line.

    ``code`` is the kind: ``invalid-request`` (bad tenant, name, function, timeout or
    input), ``refused`` (confinement), ``not-found``, ``invalid-module`` (does not
    compile, imports something, misses or mistypes an ABI export), ``fuel``, ``timeout``,
    ``memory``, ``trap``, ``bad-output``, ``closed``, ``storage`` or ``internal``.
    """

    def __init__(self, message: str, *, code: str = "error") -> None:
        super().__init__(_clean(message, 300))
        self.code = code


@dataclass(frozen=True)
class PluginLimits:
    """Per-call budgets (see the module docstring for why each one exists)."""

    fuel: int = 50_000_000
    memory_bytes: int = 16 << 20
    max_input_bytes: int = 1 << 20
    max_output_bytes: int = 1 << 20
    max_module_bytes: int = 8 << 20

    def __post_init__(self) -> None:
        for field in ("fuel", "memory_bytes", "max_input_bytes", "max_output_bytes",
                      "max_module_bytes"):
            value = getattr(self, field)
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise ValueError(f"PluginLimits.{field} must be a positive int, not {value!r}")
        if self.memory_bytes < 1 << 16:
            raise ValueError("PluginLimits.memory_bytes must be at least one page (65536)")


DEFAULT_LIMITS: Final = PluginLimits()


@dataclass(frozen=True)
class _Loaded:
    """A compiled module and the file identity it was compiled from."""

    ident: tuple[int, int, int, int, str]  # st_dev, st_ino, st_size, st_mtime_ns, suffix
    module: Module
    functions: dict[str, _Signature]  # exported functions and their types


# --------------------------------------------------------------------------- helpers
_UNPRINTABLE: Final = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]+")


def _clean(text: str, limit: int = 80) -> str:
    """``text`` on one line, control characters replaced, cut at ``limit`` characters."""
    text = _UNPRINTABLE.sub(" ", text).strip()
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _one_line(message: str) -> str:
    """A wasmtime error as one line: the headline, with the root cause or the place."""
    lines = [line.strip() for line in message.splitlines() if line.strip()]
    if not lines:
        return "unknown error"
    head = lines[0]
    if "Caused by:" in lines[1:]:
        cause = re.sub(r"^\d+:\s*", "", lines[-1])
        return f"{head}: {cause}"
    for line in lines[1:]:
        where = re.fullmatch(r"-->\s*\S*?:(\d+):(\d+)", line)
        if where:
            return f"{head} (line {where[1]}, column {where[2]})"
    return head


def _trap_reason(message: str) -> str:
    """The reason of a trap ("out of bounds memory access"), without the backtrace."""
    for line in reversed(message.splitlines()):
        _, sep, reason = line.partition("wasm trap: ")
        if sep:
            return reason.strip()
    return _one_line(message)


def _json_default(value: object) -> Any:
    if isinstance(value, Decimal):
        return int(value) if value.is_finite() and value == value.to_integral_value() else (
            float(value))
    raise TypeError(f"{type(value).__name__} is not a JSON value")


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _signature(ty: FuncType) -> _Signature:
    return tuple(str(p) for p in ty.params), tuple(str(r) for r in ty.results)


def _show_signature(sig: _Signature) -> str:
    params, results = sig
    return f"({', '.join(params)}) -> {', '.join(results) or '()'}"


def encode_input(value: Any, max_bytes: int) -> bytes:
    """``value`` as the UTF-8 JSON bytes a plug-in receives; PluginError if impossible."""
    try:
        text = json.dumps(value, ensure_ascii=False, allow_nan=False, separators=(",", ":"),
                          default=_json_default)
        data = text.encode("utf-8")
    except (TypeError, ValueError, RecursionError) as exc:
        raise PluginError(f"input is not a JSON value: {_clean(str(exc))}",
                          code="invalid-request") from None
    if len(data) > max_bytes:
        raise PluginError(f"input is too big ({len(data)} bytes, at most {max_bytes})",
                          code="invalid-request")
    return data


def decode_output(data: bytes) -> Any:
    """The JSON value in ``data`` (UTF-8); PluginError if it is not one."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise PluginError(f"output is not valid UTF-8 (byte {exc.start})",
                          code="bad-output") from None
    try:
        return json.loads(text, parse_constant=_reject_constant)
    except (ValueError, RecursionError) as exc:
        raise PluginError(f"output is not valid JSON: {_clean(str(exc))}",
                          code="bad-output") from None


# --------------------------------------------------------------------------- the host
class PluginHost:
    """Runs tenants' WebAssembly plug-ins for flows, each call in a fresh sandbox."""

    def __init__(
        self,
        storage_root: Path,
        limits: PluginLimits = DEFAULT_LIMITS,
        *,
        workers: int = 2,
        cache_size: int = 64,
    ) -> None:
        if workers < 1 or cache_size < 1:
            raise ValueError("workers and cache_size must be at least 1")
        self.root = Path(storage_root).resolve()
        self.limits = limits
        self.compiles = 0
        """Modules compiled so far (cache misses), for metrics and tests."""
        config = Config()
        config.consume_fuel = True
        config.epoch_interruption = True
        config.parallel_compilation = False
        config.wasm_threads = False  # no shared memories
        config.wasm_memory64 = False  # the ABI is wasm32
        self._engine = Engine(config)
        self._executor = ThreadPoolExecutor(max_workers=workers,
                                            thread_name_prefix="ivr-plugin")
        self._cache: OrderedDict[tuple[str, str], _Loaded] = OrderedDict()
        self._cache_size = cache_size
        self._cache_lock = threading.Lock()
        self._cond = threading.Condition()
        self._running = 0  # calls executing wasm; the ticker runs while > 0
        self._stopping = False  # no new calls
        self._closed = False  # ticker told to stop
        self._ticker = threading.Thread(target=self._tick, name="ivr-plugin-epoch",
                                        daemon=True)
        self._ticker.start()

    # ------------------------------------------------------------------ public API
    async def call(self, tenant_id: str, name: str, function: str, value: Any,
                   timeout: float) -> Any:
        """Run ``function`` of the tenant's plug-in ``name`` on ``value``; its JSON output.

        Raises :class:`PluginError` (one line) for every failure.
        """
        if self._stopping:
            raise PluginError("plug-in host is closed", code="closed")
        self._check_tenant(tenant_id)
        self._check_name(name)
        if not isinstance(function, str) or not FUNCTION_RE.fullmatch(function):
            raise PluginError(f"invalid plug-in function name {_clean(repr(function))}",
                              code="invalid-request")
        if isinstance(timeout, bool) or not isinstance(timeout, (int, float, Decimal)):
            raise PluginError("timeout must be a number of seconds", code="invalid-request")
        seconds = float(timeout)
        if not (0 < seconds <= MAX_TIMEOUT):
            raise PluginError(f"timeout must be more than 0 and at most {MAX_TIMEOUT:g} s",
                              code="invalid-request")
        payload = encode_input(value, self.limits.max_input_bytes)  # here: the loop owns it
        deadline = time.monotonic() + seconds
        loop = asyncio.get_running_loop()
        try:
            future = loop.run_in_executor(
                self._executor,
                functools.partial(self._call_sync, tenant_id, name, function, payload,
                                  deadline, seconds),
            )
        except RuntimeError:  # the executor was shut down meanwhile
            raise PluginError("plug-in host is closed", code="closed") from None
        try:
            return await asyncio.wait_for(future, seconds + GRACE)
        except TimeoutError:
            log.warning("plug-in %s/%s.%s: no answer %.1f s after its deadline",
                        tenant_id, name, function, GRACE)
            raise PluginError(f"plug-in {name!r} timed out after {seconds:g} s",
                              code="timeout") from None

    def list(self, tenant_id: str) -> builtins.list[str]:
        """The names of the tenant's plug-ins, sorted (blocking)."""
        base = self._plugin_dir(tenant_id)
        try:
            entries = os.listdir(base)
        except (FileNotFoundError, NotADirectoryError):
            return []
        except OSError as exc:
            raise PluginError(f"cannot list plug-ins: {exc.strerror or type(exc).__name__}",
                              code="storage") from None
        names = set()
        for entry in entries:
            stem, dot, suffix = entry.rpartition(".")
            if dot and f".{suffix}" in _SUFFIXES and NAME_RE.fullmatch(stem):
                names.add(stem)
        return sorted(names)

    def add(self, tenant_id: str, name: str, data: bytes) -> None:
        """Validate ``data`` (a binary module, or WebAssembly text) and store it as the
        tenant's ``<name>.wasm``, atomically (blocking: it compiles).

        Refused with :class:`PluginError` unless it compiles, imports nothing and exports
        ``memory`` and ``alloc`` as the ABI says. Text is stored compiled; a ``<name>.wat``
        left beside it is shadowed (``.wasm`` wins).
        """
        if self._stopping:
            raise PluginError("plug-in host is closed", code="closed")
        base = self._plugin_dir(tenant_id)
        self._check_name(name)
        if not isinstance(data, (bytes, bytearray)):
            raise PluginError("a plug-in must be bytes", code="invalid-request")
        limit = self.limits.max_module_bytes
        if len(data) > limit:
            raise PluginError(f"plug-in {name!r} is too big ({len(data)} bytes, "
                              f"at most {limit})", code="invalid-module")
        data = bytes(data)
        binary, _module, _functions = self._compile(data, not data.startswith(_MAGIC), name)
        try:
            base.mkdir(parents=True, exist_ok=True)
            if base.is_symlink() or base.resolve() != base:
                raise PluginError("the tenant's plug-in directory is a symlink: refused",
                                  code="refused")
            fd, tmp = tempfile.mkstemp(prefix=f".{name}.", suffix=".tmp", dir=base)
            try:
                with os.fdopen(fd, "wb") as f:
                    f.write(binary)
                    f.flush()
                    os.fsync(f.fileno())
                os.replace(tmp, base / f"{name}.wasm")
            except BaseException:
                with contextlib.suppress(OSError):
                    os.unlink(tmp)
                raise
            dir_fd = os.open(base, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)
        except OSError as exc:
            raise PluginError(f"cannot store plug-in {name!r}: "
                              f"{exc.strerror or type(exc).__name__}", code="storage") from None
        log.info("plug-in %s/%s stored (%d bytes)", tenant_id, name, len(binary))

    async def close(self) -> None:
        """Refuse new calls, wait for the running ones, stop the epoch ticker."""
        if self._stopping:
            return
        self._stopping = True
        await asyncio.to_thread(self._executor.shutdown, wait=True)
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        await asyncio.to_thread(self._ticker.join)
        with self._cache_lock:
            self._cache.clear()

    # ------------------------------------------------------------------ validation
    @staticmethod
    def _check_tenant(tenant_id: object) -> str:
        if not isinstance(tenant_id, str) or not TENANT_RE.fullmatch(tenant_id):
            raise PluginError(f"invalid tenant id {_clean(repr(tenant_id))}",
                              code="invalid-request")
        return tenant_id

    @staticmethod
    def _check_name(name: object) -> str:
        if not isinstance(name, str) or not NAME_RE.fullmatch(name):
            raise PluginError(f"invalid plug-in name {_clean(repr(name))} "
                              "(1-64 letters, digits, - or _)", code="invalid-request")
        return name

    def _plugin_dir(self, tenant_id: str) -> Path:
        """``<root>/<tenant>/plugins``; refused when the tenant directory is a symlink."""
        tenant_dir = self.root / self._check_tenant(tenant_id)
        if tenant_dir.is_symlink():
            raise PluginError("the tenant's storage is a symlink: refused", code="refused")
        return tenant_dir / "plugins"

    def _locate(self, tenant_id: str, name: str) -> tuple[Path, str]:
        """The real path of the plug-in file and its suffix, confined to the tenant."""
        base = self._plugin_dir(tenant_id)
        for suffix in _SUFFIXES:
            candidate = base / f"{name}{suffix}"
            if not os.path.lexists(candidate):
                continue
            try:
                real = candidate.resolve()
            except (OSError, RuntimeError):  # a symlink loop (RuntimeError before 3.13)
                raise PluginError(f"plug-in {name!r} cannot be resolved (a symlink loop?)",
                                  code="refused") from None
            if not real.is_relative_to(base):
                raise PluginError(f"plug-in {name!r} leads outside the tenant's plug-in "
                                  "directory: refused", code="refused")
            return real, suffix
        raise PluginError(f"no plug-in named {name!r}", code="not-found")

    # ------------------------------------------------------------------ loading
    def _load(self, tenant_id: str, name: str) -> _Loaded:
        """The compiled module, from the cache while the file is unchanged."""
        real, suffix = self._locate(tenant_id, name)
        limit = self.limits.max_module_bytes
        try:
            fd = os.open(real, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
        except FileNotFoundError:
            raise PluginError(f"no plug-in named {name!r}", code="not-found") from None
        except OSError as exc:
            raise PluginError(f"cannot open plug-in {name!r}: "
                              f"{exc.strerror or type(exc).__name__}", code="storage") from None
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                raise PluginError(f"plug-in {name!r} is not a regular file", code="refused")
            ident = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, suffix)
            key = (tenant_id, name)
            with self._cache_lock:
                cached = self._cache.get(key)
                if cached is not None and cached.ident == ident:
                    self._cache.move_to_end(key)
                    return cached
            if st.st_size > limit:
                raise PluginError(f"plug-in {name!r} is too big ({st.st_size} bytes, "
                                  f"at most {limit})", code="invalid-module")
            chunks = []
            size = 0
            while size <= limit:
                chunk = os.read(fd, min(1 << 20, limit + 1 - size))
                if not chunk:
                    break
                chunks.append(chunk)
                size += len(chunk)
            data = b"".join(chunks)
        except OSError as exc:
            raise PluginError(f"cannot read plug-in {name!r}: "
                              f"{exc.strerror or type(exc).__name__}", code="storage") from None
        finally:
            os.close(fd)
        if len(data) > limit:  # grew while being read
            raise PluginError(f"plug-in {name!r} is too big (more than {limit} bytes)",
                              code="invalid-module")
        if suffix == ".wasm" and not data.startswith(_MAGIC):
            raise PluginError(f"plug-in {name!r} is not a WebAssembly binary module "
                              "(a .wasm file must start with \\0asm)", code="invalid-module")
        _binary, module, functions = self._compile(data, suffix == ".wat", name)
        loaded = _Loaded(ident, module, functions)
        with self._cache_lock:
            self.compiles += 1
            self._cache[key] = loaded
            self._cache.move_to_end(key)
            while len(self._cache) > self._cache_size:
                self._cache.popitem(last=False)
        return loaded

    def _compile(self, data: bytes, is_text: bool,
                 name: str) -> tuple[bytes, Module, dict[str, _Signature]]:
        """Compile and check the ABI; the binary, the module and its exported functions."""
        limit = self.limits.max_module_bytes
        if is_text:
            try:
                binary = bytes(wat2wasm(data.decode("utf-8")))
            except UnicodeDecodeError:
                raise PluginError(f"plug-in {name!r} is neither a WebAssembly binary nor "
                                  "UTF-8 text", code="invalid-module") from None
            except WasmtimeError as exc:
                raise PluginError(f"plug-in {name!r} is not valid WebAssembly text: "
                                  f"{_one_line(str(exc))}", code="invalid-module") from None
            if len(binary) > limit:
                raise PluginError(f"plug-in {name!r} is too big once compiled "
                                  f"({len(binary)} bytes, at most {limit})",
                                  code="invalid-module")
        else:
            binary = data
        try:
            module = Module(self._engine, binary)
        except WasmtimeError as exc:
            raise PluginError(f"plug-in {name!r} is not a valid WebAssembly module: "
                              f"{_one_line(str(exc))}", code="invalid-module") from None
        return binary, module, self._check_abi(module, name)

    @staticmethod
    def _check_abi(module: Module, name: str) -> dict[str, _Signature]:
        imports = module.imports
        if imports:
            first = imports[0]
            what = f"{_clean(first.module, 40)}.{_clean(first.name or '', 40)}"
            more = f" (and {len(imports) - 1} more)" if len(imports) > 1 else ""
            raise PluginError(f"plug-in {name!r} imports {what}{more}; plug-ins may import "
                              "nothing (no WASI, no host functions)", code="invalid-module")
        functions: dict[str, _Signature] = {}
        memory: MemoryType | None = None
        for export in module.exports:
            ty = export.type
            if isinstance(ty, FuncType):
                functions[export.name] = _signature(ty)
            elif isinstance(ty, MemoryType) and export.name == "memory":
                memory = ty
        if memory is None:
            raise PluginError(f"plug-in {name!r} does not export its memory as 'memory'",
                              code="invalid-module")
        # shared memories do not even compile (wasm_threads is off); is_shared is checked
        # too where wasmtime has it (wasmtime-py 20 has no MemoryType.is_shared)
        if memory.is_64 or getattr(memory, "is_shared", False):
            raise PluginError(f"plug-in {name!r}: 'memory' must be a 32-bit, unshared memory",
                              code="invalid-module")
        alloc = functions.get("alloc")
        if alloc != _ALLOC_SIGNATURE:
            raise PluginError(
                f"plug-in {name!r} must export alloc {_show_signature(_ALLOC_SIGNATURE)}"
                + (f", not {_show_signature(alloc)}" if alloc else ""),
                code="invalid-module")
        return functions

    # ------------------------------------------------------------------ running
    def _tick(self) -> None:
        """The epoch ticker: one increment per TICK while a call runs, never faster."""
        with self._cond:
            next_at = time.monotonic() + TICK
            while not self._closed:
                if not self._running:
                    self._cond.wait()
                    next_at = time.monotonic() + TICK
                    continue
                delay = next_at - time.monotonic()
                if delay > 0:
                    self._cond.wait(delay)
                    continue
                self._engine.increment_epoch()
                next_at = time.monotonic() + TICK

    @contextlib.contextmanager
    def _running_call(self) -> Iterator[None]:
        with self._cond:
            self._running += 1
            if self._running == 1:
                self._cond.notify_all()
        try:
            yield
        finally:
            with self._cond:
                self._running -= 1

    def _call_sync(self, tenant_id: str, name: str, function: str, payload: bytes,
                   deadline: float, timeout: float) -> Any:
        """One call, in a worker thread; raises only PluginError."""
        try:
            started = time.monotonic()
            if started >= deadline:
                raise PluginError(f"plug-in {name!r} timed out after {timeout:g} s "
                                  "(waited for a free worker)", code="timeout")
            loaded = self._load(tenant_id, name)
            sig = loaded.functions.get(function)
            if sig is None:
                raise PluginError(f"plug-in {name!r} has no function {function!r}",
                                  code="invalid-module")
            if sig != _CALL_SIGNATURE:
                raise PluginError(f"plug-in {name!r}: function {function!r} must be "
                                  f"{_show_signature(_CALL_SIGNATURE)}, not "
                                  f"{_show_signature(sig)}", code="invalid-module")
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise PluginError(f"plug-in {name!r} timed out after {timeout:g} s "
                                  "(while loading)", code="timeout")
            ticks = math.ceil(remaining / TICK) + 1
            with self._running_call():
                output, fuel = self._execute(loaded, name, function, payload, ticks, timeout)
            value = decode_output(output)
            log.debug("plug-in %s/%s.%s: %d bytes in, %d out, %d fuel, %.1f ms", tenant_id,
                      name, function, len(payload), len(output), fuel,
                      (time.monotonic() - started) * 1000)
            return value
        except PluginError:
            raise
        except Exception as exc:  # never let a surprise escape as something else
            log.exception("plug-in %s/%s.%s: unexpected error", tenant_id, name, function)
            raise PluginError(f"plug-in {name!r} failed: internal error "
                              f"({type(exc).__name__})", code="internal") from None

    def _execute(self, loaded: _Loaded, name: str, function: str, payload: bytes,
                 ticks: int, timeout: float) -> tuple[bytes, int]:
        """Instantiate in a fresh store and run the ABI exchange; (output, fuel used)."""
        limits = self.limits
        store = Store(self._engine)
        try:
            store.set_limits(memory_size=limits.memory_bytes, table_elements=MAX_TABLE_ELEMENTS,
                             instances=1, tables=MAX_TABLES, memories=1)
            store.set_fuel(limits.fuel)
            store.set_epoch_deadline(ticks)
            try:
                instance = Instance(store, loaded.module, [])
            except Trap as exc:  # in the start function
                raise self._trap_error(exc, name, timeout) from None
            except WasmtimeError as exc:
                message = _one_line(str(exc))
                code = "memory" if "memory" in message else "invalid-module"
                raise PluginError(f"plug-in {name!r} could not start: {message}",
                                  code=code) from None
            exports = instance.exports(store)
            memory, alloc, func = exports["memory"], exports["alloc"], exports[function]
            if not (isinstance(memory, Memory) and isinstance(alloc, Func)
                    and isinstance(func, Func)):  # checked at load; cannot happen
                raise PluginError(f"plug-in {name!r} does not follow the ABI",
                                  code="invalid-module")
            try:
                in_ptr = alloc(store, len(payload)) & _U32
                if in_ptr + len(payload) > memory.data_len(store):
                    raise PluginError(
                        f"plug-in {name!r}: alloc({len(payload)}) returned an out-of-bounds "
                        f"pointer ({in_ptr:#x}, memory is {memory.data_len(store):#x} bytes)",
                        code="bad-output")
                memory.write(store, payload, in_ptr)
                packed = func(store, in_ptr, len(payload)) & _U64
            except Trap as exc:
                raise self._trap_error(exc, name, timeout) from None
            except WasmtimeError as exc:
                raise PluginError(f"plug-in {name!r} failed: {_one_line(str(exc))}",
                                  code="trap") from None
            out_ptr, out_len = packed >> 32, packed & _U32
            if out_len > limits.max_output_bytes:
                raise PluginError(f"plug-in {name!r}: output is too big ({out_len} bytes, "
                                  f"at most {limits.max_output_bytes})", code="bad-output")
            size = memory.data_len(store)
            if out_ptr + out_len > size:
                raise PluginError(f"plug-in {name!r}: output is out of bounds "
                                  f"({out_len} bytes at {out_ptr:#x}, memory is {size:#x} "
                                  "bytes)", code="bad-output")
            output = bytes(memory.read(store, out_ptr, out_ptr + out_len))
            return output, limits.fuel - store.get_fuel()
        finally:
            store.close()

    def _trap_error(self, exc: Trap, name: str, timeout: float) -> PluginError:
        code = exc.trap_code
        if code is TrapCode.OUT_OF_FUEL:
            return PluginError(f"plug-in {name!r} ran out of its instruction budget "
                               f"({self.limits.fuel} fuel)", code="fuel")
        if code is TrapCode.INTERRUPT:
            return PluginError(f"plug-in {name!r} timed out after {timeout:g} s",
                               code="timeout")
        return PluginError(f"plug-in {name!r} trapped: {_trap_reason(exc.message)}",
                           code="trap")
