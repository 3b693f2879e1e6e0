"""Grammar-constrained speech recognition for IVR flows (R-4.19, edge module).

An IVR flow node asks "which of these did the caller say?"; the media plane hands over
the caller's speech (8 kHz mono int16, decoded G.711) and gets a :class:`Recognition`
back.  ``choice`` is None when nothing in the grammar was recognised with enough
confidence (no speech, noise, something else said); the flow then falls back to DTMF.
:class:`AsrError` means "no recognition possible here" (unsupported language, audio too
long, the engine failed): the flow falls back to DTMF as well.

Theory of operation
-------------------
*Grammars.*  A :class:`Grammar` maps each choice (the value the flow gets, e.g. "yes",
"sales", "4") to one or more spoken phrases (lowercase English words).  ``repeat`` says
how many choices the caller says in a row: ``(1, 1)`` for a menu, ``(1, 20)`` for a digit
string, whose result is the concatenation of the choice values ("four seven one one" ->
"4711").  :meth:`Grammar.jsgf` turns it into a JSGF grammar::

    #JSGF V1.0;
    grammar branchline;
    public <utterance> = <item> [<item> [<item>]];     // repeat (1, 3)
    <item> = yes | yeah | no | technical support;     // every phrase of every choice

The decoder is restricted to that grammar (a finite-state grammar search), so only
sequences of grammar phrases can come out; :meth:`Grammar.interpret` maps the hypothesis
text back to the choice.  A hypothesis that is not a complete parse (pocketsphinx returns
the best partial path when no path reaches the grammar's end) gives ``choice=None``.
:meth:`Grammar.from_spec` validates a grammar from configuration and checks every word
against the engine's pronunciation dictionary (CMUdict for en-us).

*Audio path.*  In a worker process: (1) a speech gate on 20 ms frames: the loudest frames
(95th percentile) must reach -50 dBFS and lie at least 6 dB above the quietest (10th
percentile; steady hiss and white noise vary by 1-2 dB), and at least 150 ms of frames
within 20 dB of that peak must not be tonal (95 % of their energy in 8 of 129 FFT bins:
beeps, in-band DTMF, call-progress tones).  Audio that fails gives "no speech" without
decoding.  (2) The level is normalised (95th-percentile frame to -20 dBFS, never
clipping), 300 ms of silence is added at both ends (the decoder's silence model and its
cepstral mean need some) and Gaussian noise of RMS 60 (about -55 dBFS, fixed seed, so
results are reproducible) is mixed in: digitally silent stretches otherwise give
degenerate log-spectra, which measurably hurt accuracy.  (3) The audio is resampled to
16 kHz, the rate of the acoustic model shipped with pocketsphinx (there is no 8 kHz
model in the package; running the 16 kHz model with an 8 kHz filter bank was far worse).
(4) Two decodes of the same audio: one restricted to the grammar, one free phone loop
(all phones, the shipped phone bigram).

*Confidence.*  pocketsphinx scores each frame relative to the best-matching senone of
that frame, so the path scores of the two decodes share one scale, and their difference
says how much worse the grammar explains the audio than free phone recognition does:
``llr = (grammar score - phone-loop score) / speech frames`` (log base 1.0001 units;
speech frames: the non-silence frames of the longer of the two paths, at least 10) and
``confidence = 1 / (1 + exp(-(llr - LLR_MID) / LLR_SCALE))`` - about 0.95 when the grammar
fits as well as the phone loop, 0.5 at ``LLR_MID``, near 0 for speech the grammar does not
cover.  Below ``min_confidence`` (default :data:`MIN_CONFIDENCE`, i.e. llr < -17) the
choice is withheld (``choice=None``; ``text`` still says what the decoder heard).  The
constants were fitted on espeak-ng speech through G.711 (8 voices, 3 speeds): at the
default, 1 of 165 correct yes/no and menu answers and 9 of 152 correct digit strings
were withheld, while 49 % (yes/no), 66 % (menu) and 24 % (digits) of out-of-grammar
phrases gave no choice - the rest came back as some grammar choice, so a flow should
confirm low-confidence answers.  Re-fit on recordings of real calls before relying on them.

*Processes, not threads.*  pocketsphinx's Python binding holds the GIL for a whole decode
(measured: a 5 s decode blocks every other thread for ~0.1 s and two threads take twice
as long as one), so decoding in a thread would stall the event loop that paces RTP and
would not run in parallel.  Decoding therefore runs in a pool of ``workers`` processes
(spawned, not forked: the appliance is multi-threaded; the program's main module must be
import-safe, i.e. guarded by ``if __name__ == "__main__"``).  Each has one decoder
(decoders are not thread-safe and are never shared) and an LRU cache of compiled grammar
searches keyed by the JSGF text.  Only int16 bytes and JSGF text cross the process
boundary; ``await recognise(...)`` leaves the event loop free (measured: < 5 ms extra
latency for other tasks while six recognitions ran).  A crashed worker fails the call in
flight with :class:`AsrError`; the pool is rebuilt on the next call.

*Limits and accuracy.*  en-us only; audio at most :data:`MAX_SECONDS` (30 s); at most
:data:`MAX_CHOICES` choices, :data:`MAX_PHRASES` phrases, :data:`MAX_PHRASE_WORDS` words
per phrase and a repeat of at most :data:`MAX_REPEAT`.  One recognition of a 1 s
utterance takes 0.1-0.25 s of one core (mostly the phone loop).  Results the flow got on
espeak-ng speech through G.711 (5 Klatt voices / 3 formant voices, 3 speeds each):
yes/no right 90/90 and 54/54; menu words 74/75 and 36/45 (4 wrong); digit strings
108/135 (23 wrong) and 35/81 (30 wrong).  The model is wideband: sounds whose energy
lies above 4 kHz suffer on telephone audio ("six" is heard as "eight"), and digit strings
gain a spurious digit now and then.  Prefer menu words that differ in their vowels and
consonants, and confirm digit strings.

*Plugging in a better engine.*  Implement :class:`Recogniser`: a ``languages`` set and
``async def recognise(audio, rate, grammar, language) -> Recognition`` that must not block
the event loop, raises :class:`AsrError` for a language it lacks, never returns a choice
that is not in ``grammar.choices`` (use :meth:`Grammar.interpret` on its text) and gives
``confidence`` in 0..1, with ``choice=None`` below its own rejection threshold.  Grammars arrive as
:class:`Grammar` values; :meth:`Grammar.jsgf` is there for engines that take JSGF or SRGS-
like input, others can use ``choices`` and ``repeat`` directly.
"""

from __future__ import annotations

import asyncio
import hashlib
import math
import multiprocessing
import re
import threading
import time
from collections import OrderedDict
from collections.abc import Container, Mapping, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from functools import cache
from types import MappingProxyType
from typing import Final, Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt

from appliance.media.wav import resample

__all__ = [
    "LANGUAGES",
    "MAX_CHOICES",
    "MAX_REPEAT",
    "MAX_SECONDS",
    "MIN_CONFIDENCE",
    "AsrError",
    "Grammar",
    "PocketSphinxRecogniser",
    "Recogniser",
    "Recognition",
    "builtin_grammar",
    "pocketsphinx_lexicon",
]

Int16Array = npt.NDArray[np.int16]

LANGUAGES: Final = frozenset({"en-us"})
MAX_SECONDS: Final = 30.0
MAX_CHOICES: Final = 100
MAX_PHRASES: Final = 1000
MAX_PHRASE_WORDS: Final = 10
MAX_REPEAT: Final = 20
MAX_NAME: Final = 64

# Speech gate (20 ms frames, levels in dBFS).
FRAME_SECONDS: Final = 0.02
MIN_PEAK_DBFS: Final = -50.0
MIN_RANGE_DB: Final = 6.0
NEAR_PEAK_DB: Final = 20.0
MIN_SPEECH_SECONDS: Final = 0.15
TONAL_BINS: Final = 8  # of 129 (256-point FFT of a 20 ms frame at 8 kHz)
TONAL_SHARE: Final = 0.95
# Conditioning before decoding.
TARGET_PEAK_DBFS: Final = -20.0
PAD_SECONDS: Final = 0.3
NOISE_RMS: Final = 60.0
NOISE_SEED: Final = 0x5EED
DECODER_RATE: Final = 16000
# Confidence (see the module docstring); llr in pocketsphinx score units per frame.
LLR_MID: Final = -10.0
LLR_SCALE: Final = 5.0
MIN_FRAMES: Final = 10
MIN_CONFIDENCE: Final = 0.2

_PHRASE_RE = re.compile(r"[a-z']+(?: [a-z']+)*")
_PHONE_SEARCH = "_phone_loop"


class AsrError(Exception):
    """Recognition is not possible (unsupported language, audio too long, engine failure)."""


# --------------------------------------------------------------------------- grammars


def _normalise_phrase(phrase: str) -> str:
    return " ".join(phrase.lower().split())


@dataclass(frozen=True)
class Grammar:
    """Choices the caller may say, each with its spoken phrases.

    ``choices`` maps a choice value (what the flow gets) to its phrases; ``repeat`` is
    ``(min, max)`` choices said in a row, the result being their concatenation.
    Construction normalises phrases (lowercase, single spaces) and checks the structure;
    :meth:`from_spec` also checks the words against a dictionary.
    """

    name: str
    choices: Mapping[str, tuple[str, ...]]
    repeat: tuple[int, int] = (1, 1)

    def __post_init__(self) -> None:
        name = self.name
        if not isinstance(name, str) or not name.strip() or len(name) > MAX_NAME:
            raise ValueError(f"grammar name must be 1..{MAX_NAME} characters, not {name!r}")
        where = f"grammar {name!r}"
        if not isinstance(self.choices, Mapping):
            raise ValueError(f"{where}: choices must be a mapping of choice -> phrases")
        if not self.choices:
            raise ValueError(f"{where}: no choices")
        if len(self.choices) > MAX_CHOICES:
            raise ValueError(
                f"{where}: {len(self.choices)} choices, at most {MAX_CHOICES} are allowed"
            )
        owner: dict[str, str] = {}
        normalised: dict[str, tuple[str, ...]] = {}
        for choice, phrases in self.choices.items():
            if not isinstance(choice, str) or not choice.strip() or len(choice) > MAX_NAME:
                raise ValueError(
                    f"{where}: a choice must be a non-empty string of at most {MAX_NAME} "
                    f"characters, not {choice!r}"
                )
            if isinstance(phrases, str) or not isinstance(phrases, Sequence):
                raise ValueError(f"{where}: phrases of choice {choice!r} must be a list")
            out: list[str] = []
            for phrase in phrases:
                if not isinstance(phrase, str):
                    raise ValueError(
                        f"{where}: phrase {phrase!r} of choice {choice!r} is not a string"
                    )
                norm = _normalise_phrase(phrase)
                if not _PHRASE_RE.fullmatch(norm):
                    raise ValueError(
                        f"{where}: phrase {phrase!r} of choice {choice!r} must be words of "
                        "letters and apostrophes separated by spaces"
                    )
                if len(norm.split()) > MAX_PHRASE_WORDS:
                    raise ValueError(
                        f"{where}: phrase {phrase!r} has more than {MAX_PHRASE_WORDS} words"
                    )
                other = owner.get(norm)
                if other is not None and other != choice:
                    raise ValueError(
                        f"{where}: phrase {norm!r} belongs to both {other!r} and {choice!r}"
                    )
                if other is None:
                    owner[norm] = choice
                    out.append(norm)
            if not out:
                raise ValueError(f"{where}: choice {choice!r} has no phrases")
            normalised[choice] = tuple(out)
        if len(owner) > MAX_PHRASES:
            raise ValueError(f"{where}: {len(owner)} phrases, at most {MAX_PHRASES}")
        rep = self.repeat
        if (
            not isinstance(rep, tuple)
            or len(rep) != 2
            or not all(isinstance(n, int) and not isinstance(n, bool) for n in rep)
            or not 1 <= rep[0] <= rep[1] <= MAX_REPEAT
        ):
            raise ValueError(
                f"{where}: repeat must be (min, max) with 1 <= min <= max <= "
                f"{MAX_REPEAT}, not {rep!r}"
            )
        object.__setattr__(self, "choices", MappingProxyType(normalised))

    def __hash__(self) -> int:
        return hash((self.name, frozenset(self.choices.items()), self.repeat))

    @classmethod
    def from_spec(
        cls,
        name: str,
        spec: object,
        *,
        repeat: tuple[int, int] = (1, 1),
        lexicon: Container[str] | None = None,
    ) -> Grammar:
        """A grammar from configuration, validated with clear ``ValueError`` messages.

        ``spec`` is a mapping choice -> list of phrases (a single phrase string is
        accepted too) or a list of phrases, each its own choice.  Every word must be in
        ``lexicon`` (default: the en-us pronunciation dictionary of pocketsphinx).
        """
        where = f"grammar {name!r}"
        choices: dict[str, tuple[str, ...]] = {}
        if isinstance(spec, Mapping):
            for choice, phrases in spec.items():
                if isinstance(phrases, str):
                    phrases = [phrases]
                if not isinstance(phrases, Sequence):
                    raise ValueError(f"{where}: phrases of choice {choice!r} must be a list")
                choices[choice] = tuple(phrases)
        elif isinstance(spec, Sequence) and not isinstance(spec, str | bytes):
            for item in spec:
                if not isinstance(item, str):
                    raise ValueError(f"{where}: list entries must be strings, not {item!r}")
                key = _normalise_phrase(item)
                choices[key] = (*choices.get(key, ()), item)
        else:
            raise ValueError(
                f"{where}: spec must be a mapping of choice -> phrases or a list of words, "
                f"not {type(spec).__name__}"
            )
        grammar = cls(name, choices, repeat)
        unknown = grammar.unknown_words(pocketsphinx_lexicon() if lexicon is None else lexicon)
        if unknown:
            listed = ", ".join(repr(w) for w in unknown)
            raise ValueError(f"{where}: not in the pronunciation dictionary: {listed}")
        return grammar

    @property
    def words(self) -> frozenset[str]:
        return frozenset(w for phrases in self.choices.values() for p in phrases for w in p.split())

    def unknown_words(self, lexicon: Container[str]) -> list[str]:
        """The grammar's words missing from ``lexicon``, sorted."""
        return sorted(w for w in self.words if w not in lexicon)

    def jsgf(self) -> str:
        """The grammar as JSGF (see the module docstring)."""
        phrases = [p for ps in self.choices.values() for p in ps]
        lo, hi = self.repeat
        body = " ".join(["<item>"] * lo)
        optional = "".join(" [<item>" for _ in range(hi - lo)) + "]" * (hi - lo)
        return (
            "#JSGF V1.0;\n"
            "grammar branchline;\n"
            f"public <utterance> = {body}{optional};\n"
            f"<item> = {' | '.join(phrases)};\n"
        )

    def interpret(self, text: str) -> str | None:
        """The choice (or concatenated choices) that ``text`` says, None if it is not one."""
        words = tuple(text.lower().split())
        if not words:
            return None
        by_phrase = {tuple(p.split()): choice for choice, ps in self.choices.items() for p in ps}
        longest = max(len(k) for k in by_phrase)
        lo, hi = self.repeat

        @cache
        def parse(start: int, count: int) -> tuple[str, ...] | None:
            if start == len(words):
                return () if count >= lo else None
            if count == hi:
                return None
            for n in range(min(longest, len(words) - start), 0, -1):
                choice = by_phrase.get(words[start : start + n])
                if choice is not None:
                    rest = parse(start + n, count + 1)
                    if rest is not None:
                        return (choice, *rest)
            return None

        result = parse(0, 0)
        return None if result is None else "".join(result)


@cache
def pocketsphinx_lexicon() -> frozenset[str]:
    """Words of the en-us pronunciation dictionary that ships with pocketsphinx."""
    try:
        import pocketsphinx
    except ImportError as exc:  # pragma: no cover - the package is a dependency
        raise AsrError("pocketsphinx is not installed") from exc
    words: set[str] = set()
    with open(pocketsphinx.get_model_path("en-us/cmudict-en-us.dict"), encoding="utf-8") as f:
        for line in f:
            head = line.split(" ", 1)[0]
            if head:
                words.add(head.split("(", 1)[0])
    return frozenset(words)


_DIGIT_WORDS: Final = tuple("zero one two three four five six seven eight nine".split())
_BUILTIN: Final[dict[str, Grammar]] = {
    "yesno": Grammar("yesno", {"yes": ("yes", "yeah", "yep", "correct"), "no": ("no", "nope")}),
    "digits": Grammar(
        "digits",
        {str(i): (w, "oh") if i == 0 else (w,) for i, w in enumerate(_DIGIT_WORDS)},
        (1, MAX_REPEAT),
    ),
}


def builtin_grammar(name: str, language: str = "en-us") -> Grammar:
    """``"yesno"`` (choices "yes"/"no") or ``"digits"`` (1..20 spoken digits -> "4711")."""
    if name not in _BUILTIN:
        raise ValueError(f"no built-in grammar {name!r} (one of {sorted(_BUILTIN)})")
    if language not in LANGUAGES:
        raise AsrError(f"no built-in grammar {name!r} for language {language!r}")
    return _BUILTIN[name]


# --------------------------------------------------------------------------- results


@dataclass(frozen=True)
class Recognition:
    """What was recognised.

    ``choice`` is None when nothing matched (no speech, noise, rejected); ``text`` is
    the decoder's hypothesis (may be set even when ``choice`` is None); ``confidence``
    is 0..1 (see the module docstring); ``elapsed`` is the wall time of the call in
    seconds, waiting for a free decoder included.
    """

    choice: str | None
    text: str
    confidence: float
    elapsed: float


@runtime_checkable
class Recogniser(Protocol):
    """A speech recogniser for IVR grammars (see "Plugging in a better engine")."""

    languages: frozenset[str]

    async def recognise(
        self, audio: Int16Array, rate: int, grammar: Grammar, language: str
    ) -> Recognition: ...


# --------------------------------------------------------------------------- signal


def frame_levels(samples: Int16Array, rate: int) -> npt.NDArray[np.float64]:
    """RMS level of each 20 ms frame in dBFS (digital silence counts as -90 dBFS)."""
    frame = max(1, round(rate * FRAME_SECONDS))
    n = len(samples) // frame
    x = samples[: n * frame].astype(np.float64).reshape(n, frame)
    rms = np.sqrt(np.mean(x * x, axis=1))
    levels: npt.NDArray[np.float64] = 20.0 * np.log10(np.maximum(rms, 1.0) / 32768.0)
    return levels


def tonal_frames(samples: Int16Array, rate: int) -> npt.NDArray[np.bool_]:
    """Frames whose energy sits in a few spectral lines (beeps, DTMF, call-progress tones)."""
    frame = max(1, round(rate * FRAME_SECONDS))
    n = len(samples) // frame
    x = samples[: n * frame].astype(np.float64).reshape(n, frame) * np.hanning(frame)
    nfft = 1 << max(8, (frame - 1).bit_length())
    power = np.abs(np.fft.rfft(x, n=nfft, axis=1)) ** 2
    top = -np.partition(-power, TONAL_BINS - 1, axis=1)[:, :TONAL_BINS].sum(axis=1)
    tonal: npt.NDArray[np.bool_] = top >= TONAL_SHARE * np.maximum(power.sum(axis=1), 1e-9)
    return tonal


def has_speech(samples: Int16Array, rate: int) -> bool:
    """The speech gate: loud enough, not stationary, not tones, long enough (see above)."""
    db = frame_levels(samples, rate)
    if len(db) == 0:
        return False
    peak = float(np.percentile(db, 95))
    floor = float(np.percentile(db, 10))
    if peak < MIN_PEAK_DBFS or peak - floor < MIN_RANGE_DB:
        return False
    near = (db >= peak - NEAR_PEAK_DB) & ~tonal_frames(samples, rate)
    return bool(np.count_nonzero(near) * FRAME_SECONDS >= MIN_SPEECH_SECONDS)


def condition(samples: Int16Array, rate: int) -> Int16Array:
    """Normalise the level, pad with silence, add the noise floor, resample to 16 kHz."""
    x = samples.astype(np.float64)
    db = frame_levels(samples, rate)
    if len(db):
        gain = 10.0 ** ((TARGET_PEAK_DBFS - float(np.percentile(db, 95))) / 20.0)
        top = float(np.max(np.abs(x)))
        if top > 0:
            gain = min(gain, 32000.0 / top)
        x *= gain
    pad = np.zeros(round(rate * PAD_SECONDS))
    x = np.concatenate((pad, x, pad))
    x += np.random.default_rng(NOISE_SEED).normal(0.0, NOISE_RMS, len(x))
    return resample(x, rate, DECODER_RATE)


def confidence(grammar_score: float, phone_score: float, frames: int) -> float:
    """Confidence from the two path scores and the number of speech frames."""
    llr = (grammar_score - phone_score) / max(frames, MIN_FRAMES)
    z = (llr - LLR_MID) / LLR_SCALE
    return 1.0 / (1.0 + math.exp(-max(min(z, 50.0), -50.0)))


# --------------------------------------------------------------------------- worker side


@dataclass(frozen=True)
class _Job:
    pcm: bytes  # int16 little-endian mono
    rate: int
    jsgf: str


@dataclass(frozen=True)
class _Decoded:
    speech: bool
    text: str = ""
    grammar_score: float = 0.0
    phone_score: float = 0.0
    grammar_frames: int = 0
    phone_frames: int = 0


def _is_silence(word: str) -> bool:
    return word in ("<s>", "</s>", "<sil>", "SIL") or word.startswith(("+", "["))


class _Worker:
    """One decoder and its grammar cache; lives in a worker process (one thread)."""

    def __init__(self, cache_size: int) -> None:
        import pocketsphinx

        self._decoder = pocketsphinx.Decoder(lm=None, loglevel="FATAL")
        self._decoder.add_allphone_file(
            _PHONE_SEARCH, pocketsphinx.get_model_path("en-us/en-us-phone.lm.bin")
        )
        self._searches: OrderedDict[str, str] = OrderedDict()  # jsgf -> search name
        self._cache_size = cache_size

    def _activate(self, jsgf: str) -> None:
        name = self._searches.get(jsgf)
        if name is None:
            name = "g" + hashlib.sha256(jsgf.encode()).hexdigest()[:24]
            try:
                self._decoder.add_jsgf_string(name, jsgf)
            except (ValueError, RuntimeError) as exc:
                raise AsrError(f"the decoder rejected the grammar: {exc}") from exc
            self._searches[jsgf] = name
            while len(self._searches) > self._cache_size:
                _, old = self._searches.popitem(last=False)
                self._decoder.remove_search(old)
        else:
            self._searches.move_to_end(jsgf)
        self._decoder.activate_search(name)

    def _decode(self, pcm: bytes) -> tuple[str, float, int]:
        """Hypothesis text, path score (log base 1.0001) and non-silence frames."""
        d = self._decoder
        d.start_utt()
        d.process_raw(pcm, full_utt=True)
        d.end_utt()
        hyp = d.hyp()
        if hyp is None:
            return "", -math.inf, 0
        score = d.logmath.log(hyp.score) if hyp.score > 0 else -math.inf
        frames = sum(s.end_frame - s.start_frame + 1 for s in d.seg() if not _is_silence(s.word))
        return hyp.hypstr, float(score), frames

    @property
    def cached_grammars(self) -> int:
        return len(self._searches)

    def run(self, job: _Job) -> _Decoded:
        samples = np.frombuffer(job.pcm, dtype="<i2").astype(np.int16)
        if not has_speech(samples, job.rate):
            return _Decoded(speech=False)
        pcm = condition(samples, job.rate).astype("<i2").tobytes()
        self._activate(job.jsgf)
        text, gscore, gframes = self._decode(pcm)
        if not text:
            return _Decoded(speech=True)
        self._decoder.activate_search(_PHONE_SEARCH)
        _, pscore, pframes = self._decode(pcm)
        return _Decoded(True, text, gscore, pscore, gframes, pframes)


_worker: _Worker | None = None


def _worker_init(cache_size: int) -> None:
    global _worker
    _worker = _Worker(cache_size)


def _worker_ready() -> bool:
    return _worker is not None


def _worker_run(job: _Job) -> _Decoded:
    if _worker is None:  # pragma: no cover - the initializer always runs first
        raise AsrError("worker not initialised")
    return _worker.run(job)


# --------------------------------------------------------------------------- recogniser


class PocketSphinxRecogniser:
    """Offline en-us recogniser: pocketsphinx in a pool of worker processes.

    ``workers`` decoders run at once (further requests queue); each keeps up to
    ``grammar_cache`` compiled grammars.  Models load when the pool starts: call
    :meth:`load` (blocking) or ``await start()`` at startup, or let the first
    recognition do it.  :meth:`close` stops the workers.
    """

    languages: frozenset[str] = LANGUAGES

    def __init__(
        self,
        *,
        workers: int = 2,
        min_confidence: float = MIN_CONFIDENCE,
        grammar_cache: int = 32,
        max_seconds: float = MAX_SECONDS,
    ) -> None:
        if workers < 1 or grammar_cache < 1:
            raise ValueError("workers and grammar_cache must be at least 1")
        if not 0.0 <= min_confidence <= 1.0:
            raise ValueError("min_confidence must be in 0..1")
        self.workers = workers
        self.min_confidence = min_confidence
        self.grammar_cache = grammar_cache
        self.max_seconds = min(max_seconds, MAX_SECONDS)
        self._lock = threading.Lock()
        self._pool: ProcessPoolExecutor | None = None
        self._closed = False
        self._checked: set[Grammar] = set()

    def _executor(self) -> ProcessPoolExecutor:
        with self._lock:
            if self._closed:
                raise AsrError("recogniser is closed")
            if self._pool is None:
                self._pool = ProcessPoolExecutor(
                    max_workers=self.workers,
                    mp_context=multiprocessing.get_context("spawn"),
                    initializer=_worker_init,
                    initargs=(self.grammar_cache,),
                )
            return self._pool

    def _discard(self, pool: ProcessPoolExecutor) -> None:
        with self._lock:
            if self._pool is pool:
                self._pool = None
        pool.shutdown(wait=False, cancel_futures=True)

    def load(self, timeout: float = 60.0) -> None:
        """Start every worker and load its model now (blocking)."""
        pocketsphinx_lexicon()
        pool = self._executor()
        futures = [pool.submit(_worker_ready) for _ in range(self.workers)]
        try:
            for f in futures:
                f.result(timeout)
        except BrokenProcessPool as exc:
            self._discard(pool)
            raise AsrError(f"speech recogniser failed to start: {exc}") from exc
        except TimeoutError as exc:
            raise AsrError(f"speech recogniser did not start within {timeout:g} s") from exc

    async def start(self) -> None:
        """``load`` without blocking the event loop."""
        await asyncio.to_thread(self.load)

    def close(self) -> None:
        with self._lock:
            self._closed = True
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)

    async def aclose(self) -> None:
        """``close`` without blocking the event loop."""
        await asyncio.to_thread(self.close)

    def __enter__(self) -> PocketSphinxRecogniser:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _check(self, audio: object, rate: int, grammar: Grammar, language: str) -> Int16Array:
        if language not in self.languages:
            raise AsrError(
                f"speech recognition is not available for language {language!r} "
                f"(only {', '.join(sorted(self.languages))})"
            )
        if not isinstance(grammar, Grammar):
            raise ValueError(f"grammar must be a Grammar, not {type(grammar).__name__}")
        if not isinstance(rate, int) or isinstance(rate, bool) or not 8000 <= rate <= 48000:
            raise ValueError(f"sample rate must be an int in 8000..48000, not {rate!r}")
        if not isinstance(audio, np.ndarray) or audio.dtype != np.int16:
            raise ValueError("audio must be a numpy int16 array")
        if audio.ndim == 2 and audio.shape[1] == 1:
            audio = audio[:, 0]
        if audio.ndim != 1:
            raise ValueError(f"audio must be mono (1-D), not shape {audio.shape}")
        seconds = len(audio) / rate
        if seconds > self.max_seconds:
            raise AsrError(
                f"audio of {seconds:.1f} s is too long to recognise "
                f"(at most {self.max_seconds:g} s)"
            )
        return audio

    async def recognise(
        self, audio: Int16Array, rate: int, grammar: Grammar, language: str = "en-us"
    ) -> Recognition:
        """Recognise ``audio`` (mono int16 at ``rate``) against ``grammar``."""
        t0 = time.perf_counter()
        samples = self._check(audio, rate, grammar, language)
        if grammar not in self._checked:
            # The dictionary is read once (about 0.1 s), so not in the event loop.
            lexicon = await asyncio.to_thread(pocketsphinx_lexicon)
            unknown = grammar.unknown_words(lexicon)
            if unknown:
                raise ValueError(
                    f"grammar {grammar.name!r}: not in the pronunciation dictionary: "
                    + ", ".join(repr(w) for w in unknown)
                )
            if len(self._checked) >= 4096:
                self._checked.clear()
            self._checked.add(grammar)
        job = _Job(np.ascontiguousarray(samples, dtype="<i2").tobytes(), rate, grammar.jsgf())
        pool = self._executor()
        try:
            future: Future[_Decoded] = pool.submit(_worker_run, job)
            decoded = await asyncio.wrap_future(future)
        except BrokenProcessPool as exc:
            self._discard(pool)
            raise AsrError(f"speech recogniser worker failed: {exc}") from exc
        except RuntimeError as exc:  # submit after shutdown (closed concurrently)
            raise AsrError(f"speech recogniser unavailable: {exc}") from exc
        except asyncio.CancelledError:
            task = asyncio.current_task()
            if task is not None and task.cancelling() == 0:  # the job was cancelled by close()
                raise AsrError("speech recogniser closed during recognition") from None
            raise
        return self._result(decoded, grammar, time.perf_counter() - t0)

    def _result(self, d: _Decoded, grammar: Grammar, elapsed: float) -> Recognition:
        if not d.speech or not d.text:
            return Recognition(None, d.text, 0.0, elapsed)
        conf = confidence(d.grammar_score, d.phone_score, max(d.grammar_frames, d.phone_frames))
        choice = grammar.interpret(d.text)
        if conf < self.min_confidence:
            choice = None
        return Recognition(choice, d.text, conf, elapsed)
