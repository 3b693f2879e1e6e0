"""Per-tenant prompt store: recorded files, TTS and "say" (edge module; R-4.3, R-4.18).

Layout
------
``root/<tenant>/prompts/<language>/<name>.wav``, any number of files.  ``add``
accepts any common WAV (8/16/24/32-bit PCM, G.711 A-law or mu-law,
WAVE_FORMAT_EXTENSIBLE, any channel count, the usual rates from 8 to 192 kHz),
converts it with ``appliance.media.wav`` to 8 kHz mono int16 and stores it
atomically.  Files an operator copies in directly are converted the same way
when loaded.  32-bit float WAVs are refused (export 16-bit PCM).

References (as written in flows, see ``appliance/ivr/flow.py``)
---------------------------------------------------------------
- ``{"file": "welcome"}``: a recording, looked up in the call's language, then
  the tenant's default language, then any language the tenant has it in
  (en-us, cmn, yue first, then other language directories in name order).
- ``{"tts": "text"}`` (or the bare string ``"text"``, as flows normalise it):
  synthesised with the voice of the call's language; the synthesiser caches.
- ``{"say": "12.50", "as": "money"}``: ``appliance.ivr.say.say_text`` then TTS;
  ``as`` defaults to ``digits``; the optional keys ``currency``, ``liang``,
  ``yao`` and ``clock24`` are passed to ``say_text``.
- ``{"recording": "voicemail/1001/greeting.wav"}``: a WAV anywhere in the
  tenant's storage, by its relative path (a recording, a voicemail message);
  ``otherwise`` (any reference) plays when that file does not exist.
- ``{"en-us": {...}, "cmn": {...}}``: the entry for the call's language, else the
  tenant's default language, else the first of en-us, cmn, yue present; the
  entry is resolved in the language it is written for (its TTS voice and
  recordings), never nested further.

Isolation
---------
Tenant ids (the plan's rule, ``[a-z0-9][a-z0-9-]{0,62}``), language tags and
prompt names (``[A-Za-z0-9_-]{1,64}``) are validated, so no reference can
name a path outside ``root/<tenant>``; on top of that every path is resolved
(following symlinks) and must stay inside ``root/<tenant>``, so a symlink to
another tenant's prompt or anywhere else is refused, and so is a tenant
directory that is itself a symlink.  (This defends against what tenants and
flows can write, not against a local user racing renames under ``root``.)
The synthesiser is shared by default, so two tenants saying the same text
share one cached audio file; pass ``tts_for_tenant`` (for example
``lambda t: Tts(root / t / "tts-cache")``) to keep TTS caches apart as well.

Memory
------
Loaded recordings are kept in an LRU cache bounded by bytes of audio
(``cache_bytes``); an entry is revalidated against the file's inode, size and
mtime on every lookup, and ``add``/``delete`` drop it at once.  Arrays handed
out from the cache are read-only.  Disk reads and conversion run in a worker
thread (``asyncio.to_thread``), so a long recording never stalls the event
loop; ``add``, ``list`` and ``delete`` are blocking and meant for the admin
path.

Errors: ``PromptError`` (a ``ValueError``) means the reference, the value to
say or the stored/uploaded audio is wrong, and names tenant, prompt and
language; ``StorageQuotaExceeded`` (a ``PromptError``) that an upload would take
the tenant's storage (``appliance.storage``) over the ``quota_bytes`` given to
``add``.  Failures of the speech engine itself (``TtsError``) pass through
unchanged: they are ours, not the flow author's.
"""

from __future__ import annotations

import asyncio
import builtins
import io
import logging
import os
import re
import tempfile
import threading
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, Protocol

import numpy as np
import numpy.typing as npt

from appliance.ids import ID_RE
from appliance.ivr.say import KINDS, LANGUAGES, Kind, Language, SayError, say_text
from appliance.media import g711
from appliance.media.wav import WavError, read_wav_raw, resample, to_mono, write_wav
from appliance.storage import used_bytes

__all__ = [
    "RATE",
    "PromptError",
    "PromptStore",
    "SpeechSynthesizer",
    "StorageQuotaExceeded",
    "StoredPrompt",
    "decode_wav",
]

log = logging.getLogger(__name__)

Int16Array = npt.NDArray[np.int16]

RATE: Final = 8000
TENANT_RE: Final = ID_RE
NAME_RE: Final = re.compile(r"[A-Za-z0-9_-]{1,64}")
LANGUAGE_RE: Final = re.compile(r"[a-z]{2,3}(?:-[a-z0-9]{2,8}){0,2}")
SOURCE_RATES: Final = frozenset(
    {8000, 11025, 12000, 16000, 22050, 24000, 32000, 44100, 48000, 88200, 96000, 176400, 192000}
)
MAX_CHANNELS: Final = 8
MAX_TTS_CHARS: Final = 2000
DEFAULT_VOICES: Final[Mapping[str, str]] = {lang: lang for lang in LANGUAGES}
_SAY_OPTIONS: Final = frozenset({"currency", "liang", "yao", "clock24"})
_REF_KEYS: Final = frozenset({"file", "tts", "say", "as", "recording", "otherwise"}) \
    | _SAY_OPTIONS
RECORDING_RE: Final = re.compile(r"(?:[A-Za-z0-9_][A-Za-z0-9_.-]{0,79}/){0,3}"
                                 r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,79}\.wav")
_SAY_LANGUAGES: Final[Mapping[str, Language]] = {lang: lang for lang in LANGUAGES}
_SAY_KINDS: Final[Mapping[str, Kind]] = {kind: kind for kind in KINDS}


class PromptError(ValueError):
    """A prompt reference, a value to say, or a prompt file is not acceptable."""

    def __init__(
        self,
        message: str,
        *,
        tenant_id: str | None = None,
        name: str | None = None,
        language: str | None = None,
    ) -> None:
        where = [
            f"{label} {value!r}"
            for label, value in (("tenant", tenant_id), ("prompt", name), ("language", language))
            if value is not None
        ]
        super().__init__(f"{', '.join(where)}: {message}" if where else message)
        self.tenant_id = tenant_id
        self.name = name
        self.language = language
        self.reason = message


class StorageQuotaExceeded(PromptError):
    """Storing the prompt would take the tenant's files over its storage quota."""

    def __init__(self, message: str, *, tenant_id: str, name: str, language: str,
                 used: int, needed: int, quota: int) -> None:
        super().__init__(message, tenant_id=tenant_id, name=name, language=language)
        self.used, self.needed, self.quota = used, needed, quota


class SpeechSynthesizer(Protocol):
    """A TTS engine: 8 kHz mono int16 speech for ``text`` in ``voice``.

    ``appliance.media.tts.Tts`` satisfies it (espeak-ng, cached on disk).
    """

    async def synthesize_async(self, text: str, voice: str) -> Int16Array: ...


@dataclass(frozen=True)
class StoredPrompt:
    tenant_id: str
    language: str
    name: str
    path: Path
    size: int  # bytes on disk


# --------------------------------------------------------------------------- WAV decoding
_WAVE_PCM, _WAVE_FLOAT, _WAVE_ALAW, _WAVE_MULAW, _WAVE_EXTENSIBLE = 1, 3, 6, 7, 0xFFFE
# KSDATAFORMAT_SUBTYPE_*: the format tag followed by this fixed GUID tail
_SUBFORMAT_TAIL: Final = bytes.fromhex("000000001000800000aa00389b71")


@dataclass(frozen=True)
class _RiffInfo:
    tag: int  # effective format tag (the sub-format of WAVE_FORMAT_EXTENSIBLE)
    channels: int
    rate: int
    block_align: int
    bits: int
    extensible: bool
    data: bytes


def _riff_info(blob: bytes) -> _RiffInfo:
    if len(blob) < 12 or blob[:4] != b"RIFF" or blob[8:12] != b"WAVE":
        raise WavError("not a WAV file (no RIFF/WAVE header)")
    fmt: bytes | None = None
    pos = 12
    while pos + 8 <= len(blob):
        chunk_id = blob[pos : pos + 4]
        size = int.from_bytes(blob[pos + 4 : pos + 8], "little")
        body = blob[pos + 8 : pos + 8 + size]
        if chunk_id == b"fmt ":
            fmt = body
        elif chunk_id == b"data":
            if fmt is None:
                raise WavError("data chunk before fmt chunk")
            break
        pos += 8 + size + (size & 1)
    else:
        raise WavError("no data chunk" if fmt is not None else "no fmt chunk")
    if len(fmt) < 16:
        raise WavError("fmt chunk too short")
    tag = int.from_bytes(fmt[0:2], "little")
    channels = int.from_bytes(fmt[2:4], "little")
    rate = int.from_bytes(fmt[4:8], "little")
    block_align = int.from_bytes(fmt[12:14], "little")
    bits = int.from_bytes(fmt[14:16], "little")
    extensible = tag == _WAVE_EXTENSIBLE
    if extensible:
        if len(fmt) < 40 or fmt[26:40] != _SUBFORMAT_TAIL:
            raise WavError("WAVE_FORMAT_EXTENSIBLE with an unknown sub-format")
        tag = int.from_bytes(fmt[24:26], "little")
    return _RiffInfo(tag, channels, rate, block_align, bits, extensible, body)


def _canonical_pcm(info: _RiffInfo, data: bytes) -> bytes:
    fmt = (
        _WAVE_PCM.to_bytes(2, "little")
        + info.channels.to_bytes(2, "little")
        + info.rate.to_bytes(4, "little")
        + (info.rate * info.block_align).to_bytes(4, "little")
        + info.block_align.to_bytes(2, "little")
        + info.bits.to_bytes(2, "little")
    )
    body = b"WAVEfmt " + len(fmt).to_bytes(4, "little") + fmt
    body += b"data" + len(data).to_bytes(4, "little") + data
    return b"RIFF" + len(body).to_bytes(4, "little") + body


def decode_wav(blob: bytes, *, max_seconds: float = 3600.0) -> Int16Array:
    """8 kHz mono int16 from the bytes of a WAV file; ``WavError`` says why not."""
    info = _riff_info(blob)
    if info.tag == _WAVE_FLOAT:
        raise WavError("32-bit float WAV is not supported: export 16-bit PCM")
    if info.tag not in (_WAVE_PCM, _WAVE_ALAW, _WAVE_MULAW):
        raise WavError(f"unsupported WAV encoding (format tag {info.tag:#06x})")
    if not 1 <= info.channels <= MAX_CHANNELS:
        raise WavError(f"{info.channels} channels (1 to {MAX_CHANNELS} accepted)")
    if info.rate not in SOURCE_RATES:
        raise WavError(f"sample rate {info.rate} Hz is not one of {sorted(SOURCE_RATES)}")
    if info.block_align <= 0:
        raise WavError("bad block alignment")
    frames = len(info.data) // info.block_align
    if frames == 0:
        raise WavError("no audio (0 frames)")
    if frames > max_seconds * info.rate:
        raise WavError(f"{frames / info.rate:.0f} s of audio (at most {max_seconds:.0f} s)")
    if info.tag == _WAVE_PCM:
        if not 1 <= info.bits <= 32:
            raise WavError(f"{info.bits}-bit samples (8 to 32 accepted)")
        if info.block_align != info.channels * ((info.bits + 7) // 8):
            raise WavError(f"block alignment {info.block_align} does not match the format")
        # Hand ``wave`` a canonical file: tag 1 (Python 3.11 reads no EXTENSIBLE header)
        # and whole frames only (a truncated upload may end inside a frame).
        canonical = _canonical_pcm(info, info.data[: frames * info.block_align])
        try:
            samples, _ = read_wav_raw(io.BytesIO(canonical))
        except ValueError as exc:  # WavError, or numpy refusing a malformed buffer
            raise WavError(f"unreadable WAV: {exc}") from None
    else:
        if info.bits != 8 or info.block_align != info.channels:
            raise WavError(f"G.711 WAV with {info.bits}-bit samples (8 expected)")
        law = g711.alaw_decode if info.tag == _WAVE_ALAW else g711.ulaw_decode
        samples = law(info.data[: frames * info.channels]).reshape(frames, info.channels)
    mono = to_mono(samples)
    return mono if info.rate == RATE else resample(mono, info.rate, RATE)


# --------------------------------------------------------------------------- audio cache
class _AudioCache:
    """LRU of decoded recordings by path, bounded by the bytes of the arrays."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self.bytes = 0
        self.hits = 0
        self.misses = 0
        self._entries: OrderedDict[str, tuple[tuple[int, ...], Int16Array]] = OrderedDict()
        self._lock = threading.Lock()  # add()/delete() may run on another thread

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: str, stamp: tuple[int, ...]) -> Int16Array | None:
        with self._lock:
            entry = self._entries.get(key)
            if entry is None or entry[0] != stamp:
                self.misses += 1
                return None
            self._entries.move_to_end(key)
            self.hits += 1
            return entry[1]

    def put(self, key: str, stamp: tuple[int, ...], samples: Int16Array) -> None:
        samples.setflags(write=False)
        if samples.nbytes > self.max_bytes:
            return
        with self._lock:
            self._discard(key)
            self._entries[key] = (stamp, samples)
            self.bytes += samples.nbytes
            while self.bytes > self.max_bytes:
                _, (_, old) = self._entries.popitem(last=False)
                self.bytes -= old.nbytes

    def discard(self, key: str) -> None:
        with self._lock:
            self._discard(key)

    def _discard(self, key: str) -> None:
        entry = self._entries.pop(key, None)
        if entry is not None:
            self.bytes -= entry[1].nbytes


def _stamp(st: os.stat_result) -> tuple[int, ...]:
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)


class _NoRecording(PromptError):
    """The recording a ``{recording: ...}`` prompt names does not exist."""


# --------------------------------------------------------------------------- the store
class PromptStore:
    """Tenants' recorded prompts plus TTS and "say", resolved to 8 kHz audio."""

    def __init__(
        self,
        root: Path,
        tts: SpeechSynthesizer,
        *,
        default_language: Callable[[str], str | None] | None = None,
        voices: Mapping[str, str] | None = None,
        cache_bytes: int = 64 << 20,
        max_seconds: float = 3600.0,
        tts_for_tenant: Callable[[str], SpeechSynthesizer] | None = None,
    ) -> None:
        """``default_language(tenant_id)`` gives a tenant's default language (or None);
        ``voices`` maps a language to the synthesiser's voice (default: the same name)."""
        root.mkdir(parents=True, exist_ok=True)
        self.root = root.resolve()
        self.tts = tts
        self.default_language = default_language
        self.voices: Mapping[str, str] = dict(voices if voices is not None else DEFAULT_VOICES)
        self.max_seconds = max_seconds
        self.tts_for_tenant = tts_for_tenant
        self.cache = _AudioCache(cache_bytes)
        self._writing = threading.Lock()  # a quota check and its write, one at a time

    # ----------------------------------------------------------------- validation
    @staticmethod
    def _check_tenant(tenant_id: object) -> str:
        if not isinstance(tenant_id, str) or not TENANT_RE.fullmatch(tenant_id):
            raise PromptError(f"invalid tenant id {tenant_id!r}")
        return tenant_id

    @staticmethod
    def _check_language(tenant_id: str, language: object) -> str:
        if not isinstance(language, str) or not LANGUAGE_RE.fullmatch(language):
            raise PromptError(f"invalid language tag {language!r}", tenant_id=tenant_id)
        return language

    @staticmethod
    def _check_name(tenant_id: str, language: str | None, name: object) -> str:
        if not isinstance(name, str) or not NAME_RE.fullmatch(name):
            raise PromptError(
                f"invalid prompt name {name!r} (1-64 letters, digits, - or _)",
                tenant_id=tenant_id,
                language=language,
            )
        return name

    def _tenant_dir(self, tenant_id: str) -> Path:
        return self.root / tenant_id

    def _confined(self, tenant_id: str, path: Path, *, name: str | None = None) -> Path:
        """``path`` with symlinks resolved; refused unless inside ``root/<tenant>``."""
        real = path.resolve()
        if not real.is_relative_to(self._tenant_dir(tenant_id)):
            raise PromptError(
                f"{path.relative_to(self.root)} leads outside the tenant's directory",
                tenant_id=tenant_id,
                name=name,
            )
        return real

    def _prompt_path(self, tenant_id: str, language: str, name: str) -> Path:
        return self._tenant_dir(tenant_id) / "prompts" / language / f"{name}.wav"

    def _tenant_languages(self, tenant_id: str) -> builtins.list[str]:
        base = self._tenant_dir(tenant_id) / "prompts"
        try:
            found = [p.name for p in base.iterdir() if LANGUAGE_RE.fullmatch(p.name)]
        except (FileNotFoundError, NotADirectoryError):
            return []
        order: dict[str, int] = {lang: i for i, lang in enumerate(LANGUAGES)}
        return sorted(found, key=lambda lang: (order.get(lang, len(order)), lang))

    def _tenant_default(self, tenant_id: str) -> str | None:
        if self.default_language is None:
            return None
        lang = self.default_language(tenant_id)
        return lang if isinstance(lang, str) and LANGUAGE_RE.fullmatch(lang) else None

    # ----------------------------------------------------------------- resolving
    async def resolve(
        self, tenant_id: str, ref: Mapping[str, Any] | str, language: str
    ) -> Int16Array:
        """The audio of ``ref`` for a call of ``tenant_id`` in ``language`` (8 kHz int16)."""
        tenant_id = self._check_tenant(tenant_id)
        language = self._check_language(tenant_id, language)
        if isinstance(ref, Mapping) and ref and set(ref).isdisjoint(_REF_KEYS):
            language, ref = self._choose_language(tenant_id, ref, language)
        return await self._resolve_one(tenant_id, ref, language)

    def _choose_language(
        self, tenant_id: str, ref: Mapping[str, Any], language: str
    ) -> tuple[str, Any]:
        for key in ref:
            if not isinstance(key, str) or not LANGUAGE_RE.fullmatch(key):
                raise PromptError(
                    f"prompt reference key {key!r} is neither file/tts/say nor a language",
                    tenant_id=tenant_id,
                    language=language,
                )
        default = self._tenant_default(tenant_id)
        for lang in (language, default, *LANGUAGES, *sorted(ref)):
            if lang is not None and lang in ref:
                return lang, ref[lang]
        raise AssertionError("unreachable: a non-empty map has a key")

    async def _resolve_one(self, tenant_id: str, ref: object, language: str) -> Int16Array:
        if isinstance(ref, str):
            ref = {"tts": ref}
        if not isinstance(ref, Mapping) or not ref:
            raise PromptError(
                f"a prompt is {{file: ...}}, {{tts: ...}}, {{say: ..., as: ...}} or a map "
                f"by language, not {ref!r}",
                tenant_id=tenant_id,
                language=language,
            )
        unknown = set(ref) - _REF_KEYS
        kinds = [k for k in ("file", "tts", "say", "recording") if k in ref]
        if unknown or len(kinds) != 1:
            raise PromptError(
                "a prompt has exactly one of file, tts, say, recording "
                f"(got keys {sorted(map(str, ref))})",
                tenant_id=tenant_id,
                language=language,
            )
        kind = kinds[0]
        allowed = {"as"} | _SAY_OPTIONS if kind == "say" else \
            {"otherwise"} if kind == "recording" else set()
        extra = set(ref) - {kind} - allowed
        if extra:
            raise PromptError(
                f"{kind} prompt does not take {sorted(extra)}",
                tenant_id=tenant_id,
                language=language,
            )
        if kind == "file":
            return await self._load_file(tenant_id, ref["file"], language)
        if kind == "recording":
            try:
                return await self._load_recording(tenant_id, ref["recording"])
            except _NoRecording:
                if "otherwise" not in ref:  # a personal greeting not recorded yet...
                    raise
                return await self.resolve(tenant_id, ref["otherwise"], language)
        if kind == "tts":
            text = ref["tts"]
            if not isinstance(text, str) or not text.strip():
                raise PromptError(
                    f"tts text must be non-empty text, not {text!r}",
                    tenant_id=tenant_id,
                    language=language,
                )
            return await self._speak(tenant_id, text, language)
        return await self._say(tenant_id, ref, language)

    async def _say(self, tenant_id: str, ref: Mapping[str, Any], language: str) -> Int16Array:
        value, kind = ref["say"], ref.get("as", "digits")
        if isinstance(value, int) and not isinstance(value, bool):
            value = str(value)
        if not isinstance(value, str):
            raise PromptError(
                f"say value must be text or an integer, not {value!r}",
                tenant_id=tenant_id,
                language=language,
            )
        say_kind = _SAY_KINDS.get(kind) if isinstance(kind, str) else None
        if say_kind is None:
            raise PromptError(
                f"say as {kind!r}: one of {', '.join(KINDS)}",
                tenant_id=tenant_id,
                language=language,
            )
        say_language = _SAY_LANGUAGES.get(language)
        if say_language is None:
            raise PromptError(
                f"say is available in {', '.join(LANGUAGES)} only",
                tenant_id=tenant_id,
                language=language,
            )
        options: dict[str, Any] = {}
        for key in _SAY_OPTIONS & set(ref):
            wanted = str if key == "currency" else bool
            if not isinstance(ref[key], wanted):
                raise PromptError(
                    f"say option {key} must be {wanted.__name__}, not {ref[key]!r}",
                    tenant_id=tenant_id,
                    language=language,
                )
            options[key] = ref[key]
        try:
            text = say_text(value, say_kind, say_language, **options)
        except SayError as exc:
            raise PromptError(str(exc), tenant_id=tenant_id, language=language) from None
        return await self._speak(tenant_id, text, language)

    async def _speak(self, tenant_id: str, text: str, language: str) -> Int16Array:
        voice = self.voices.get(language)
        if voice is None:
            raise PromptError(
                f"no TTS voice for this language (voices: {', '.join(sorted(self.voices))})",
                tenant_id=tenant_id,
                language=language,
            )
        if len(text) > MAX_TTS_CHARS:
            raise PromptError(
                f"tts text of {len(text)} characters (at most {MAX_TTS_CHARS})",
                tenant_id=tenant_id,
                language=language,
            )
        tts = self.tts if self.tts_for_tenant is None else self.tts_for_tenant(tenant_id)
        return await tts.synthesize_async(text, voice)

    async def _load_file(self, tenant_id: str, name: object, language: str) -> Int16Array:
        name = self._check_name(tenant_id, language, name)
        default = self._tenant_default(tenant_id)  # on the loop: it may read the live plan
        path, stamp = await asyncio.to_thread(self._locate, tenant_id, name, language, default)
        key = str(path)
        cached = self.cache.get(key, stamp)
        if cached is not None:
            return cached
        samples = await asyncio.to_thread(self._read, tenant_id, name, path)
        self.cache.put(key, stamp, samples)
        return samples

    async def _load_recording(self, tenant_id: str, rel: object) -> Int16Array:
        """A WAV anywhere in the tenant's storage (a recording, a voicemail message),
        named relative to it: ``voicemail/1001/<id>.wav``. Not cached."""
        tenant_id = self._check_tenant(tenant_id)
        if not isinstance(rel, str) or not RECORDING_RE.fullmatch(rel) or ".." in rel:
            raise PromptError(f"a recording is a relative .wav path, not {rel!r}",
                              tenant_id=tenant_id)
        path = self._tenant_dir(tenant_id) / rel

        def read() -> Int16Array:
            if self._tenant_dir(tenant_id).is_symlink():
                raise PromptError("the tenant directory is a link", tenant_id=tenant_id)
            real = self._confined(tenant_id, path, name=rel)
            if not real.is_file():
                raise _NoRecording(f"no recording {rel}", tenant_id=tenant_id)
            return self._read(tenant_id, rel, real)

        return await asyncio.to_thread(read)

    def _locate(
        self, tenant_id: str, name: str, language: str, default: str | None
    ) -> tuple[Path, tuple[int, ...]]:
        """The real path of the first existing candidate and its stamp (runs in a thread)."""
        candidates: builtins.list[str] = []
        for lang in (language, default, *self._tenant_languages(tenant_id)):
            if lang is not None and lang not in candidates:
                candidates.append(lang)
        for lang in candidates:
            path = self._prompt_path(tenant_id, lang, name)
            if not os.path.lexists(path):
                continue
            real = self._confined(tenant_id, path, name=name)
            try:
                st = real.stat()
            except FileNotFoundError:  # a dangling symlink: treat as absent
                continue
            if lang != language:
                log.info(
                    "tenant %s: prompt %s not recorded in %s, using %s",
                    tenant_id,
                    name,
                    language,
                    lang,
                )
            return real, _stamp(st)
        raise PromptError(
            f"no such prompt (looked in {', '.join(candidates) or language})",
            tenant_id=tenant_id,
            name=name,
            language=language,
        )

    def _read(self, tenant_id: str, name: str, path: Path) -> Int16Array:
        try:
            return decode_wav(path.read_bytes(), max_seconds=self.max_seconds)
        except (WavError, IsADirectoryError) as exc:
            raise PromptError(
                f"stored file {path.relative_to(self.root)} is not usable: {exc}",
                tenant_id=tenant_id,
                name=name,
            ) from None

    # ----------------------------------------------------------------- admin (blocking)
    def add(self, tenant_id: str, language: str, name: str, wav_bytes: bytes, *,
            quota_bytes: int = 0) -> Path:
        """Convert a WAV upload to 8 kHz mono and store it (replacing any same name).
        With ``quota_bytes``, refuse (``StorageQuotaExceeded``) when the tenant's
        storage would then hold more than that (a replaced file no longer counts)."""
        tenant_id = self._check_tenant(tenant_id)
        language = self._check_language(tenant_id, language)
        name = self._check_name(tenant_id, language, name)
        if not isinstance(wav_bytes, bytes | bytearray | memoryview):
            raise PromptError(
                "WAV data must be bytes", tenant_id=tenant_id, name=name, language=language
            )
        try:
            samples = decode_wav(bytes(wav_bytes), max_seconds=self.max_seconds)
        except WavError as exc:
            raise PromptError(
                f"not a usable WAV file: {exc}", tenant_id=tenant_id, name=name, language=language
            ) from None
        directory = self._prompt_path(tenant_id, language, name).parent
        self._confined(tenant_id, directory, name=name)  # before creating anything
        directory.mkdir(parents=True, exist_ok=True)
        directory = self._confined(tenant_id, directory, name=name)
        target = directory / f"{name}.wav"
        encoded = io.BytesIO()
        write_wav(encoded, samples, RATE)
        data = encoded.getvalue()
        with self._writing:
            if quota_bytes:
                replaced = target.stat().st_size if target.is_file() else 0
                used = used_bytes(self.root, tenant_id) - replaced
                if used + len(data) > quota_bytes:
                    raise StorageQuotaExceeded(
                        f"storing {len(data)} bytes would exceed the storage quota "
                        f"({used} of {quota_bytes} bytes used)", tenant_id=tenant_id,
                        name=name, language=language, used=used, needed=len(data),
                        quota=quota_bytes)
            fd, tmp = tempfile.mkstemp(dir=directory, prefix=f".{name}.", suffix=".tmp")
            try:
                with os.fdopen(fd, "wb") as f:
                    f.write(data)
                    f.flush()
                    os.fsync(f.fileno())
                os.replace(tmp, target)
            except BaseException:
                Path(tmp).unlink(missing_ok=True)
                raise
        self.cache.discard(str(target))
        log.info("tenant %s: prompt %s stored in %s", tenant_id, name, language)
        return target

    def list(self, tenant_id: str, language: str | None = None) -> builtins.list[StoredPrompt]:
        """The tenant's stored prompts, by language then name."""
        tenant_id = self._check_tenant(tenant_id)
        if language is not None:
            languages = [self._check_language(tenant_id, language)]
        else:
            languages = self._tenant_languages(tenant_id)
        out: builtins.list[StoredPrompt] = []
        for lang in languages:
            directory = self._tenant_dir(tenant_id) / "prompts" / lang
            try:
                real_dir = self._confined(tenant_id, directory)
                entries = sorted(real_dir.iterdir())
            except (PromptError, FileNotFoundError, NotADirectoryError):
                continue
            for entry in entries:
                if entry.suffix != ".wav" or not NAME_RE.fullmatch(entry.stem):
                    continue
                try:
                    real = self._confined(tenant_id, entry)
                    if not real.is_file():
                        continue
                    size = real.stat().st_size
                except (PromptError, FileNotFoundError):
                    continue
                out.append(StoredPrompt(tenant_id, lang, entry.stem, entry, size))
        return out

    def delete(self, tenant_id: str, language: str, name: str) -> None:
        """Remove one stored prompt; ``PromptError`` if it does not exist."""
        tenant_id = self._check_tenant(tenant_id)
        language = self._check_language(tenant_id, language)
        name = self._check_name(tenant_id, language, name)
        path = self._prompt_path(tenant_id, language, name)
        real_dir = self._confined(tenant_id, path.parent, name=name)
        target = real_dir / path.name
        try:
            target.unlink()  # a symlink is removed itself, never what it points to
        except FileNotFoundError:
            raise PromptError(
                "no such prompt", tenant_id=tenant_id, name=name, language=language
            ) from None
        self.cache.discard(str(target))
        self.cache.discard(str(path))
        log.info("tenant %s: prompt %s deleted from %s", tenant_id, name, language)
