"""Text to speech with espeak-ng, cached as 8 kHz WAV files (edge module).

espeak-ng writes 22,050 Hz mono PCM; ``wav.read_wav`` converts it to the
8 kHz int16 the media plane plays.  Results are cached in ``cache_dir`` as
``<sha256(voice, text)>.wav`` at 8 kHz, written atomically, so a prompt is
synthesised once per (voice, text).  Callers that must keep tenants'
prompts apart pass a per-tenant ``cache_dir``.

The text goes to espeak-ng on stdin, never on the command line, so it
cannot be mistaken for options.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import subprocess
import tempfile
from pathlib import Path

import numpy as np
import numpy.typing as npt

from appliance.media.wav import read_wav, write_wav

__all__ = ["VOICES", "Tts", "TtsError", "synthesize", "synthesize_async"]

VOICES = frozenset({"cmn", "yue", "en-us"})
# espeak-ng 1.51's plain "cmn" reads many hanzi as pinyin spelled in English (e.g. 一 as
# "yi one", espeak-ng issues 1236/1370); its pinyin variant reads them as Mandarin.
ESPEAK_VOICE = {"cmn": "cmn-latn-pinyin", "yue": "yue", "en-us": "en-us"}
RATE = 8000


class TtsError(RuntimeError):
    """espeak-ng is missing, failed, or the voice is not supported."""


def cache_key(text: str, voice: str) -> str:
    h = hashlib.sha256()
    h.update(ESPEAK_VOICE.get(voice, voice).encode("utf-8"))
    h.update(b"\x00")
    h.update(text.encode("utf-8"))
    return h.hexdigest()


class Tts:
    def __init__(
        self,
        cache_dir: str | os.PathLike[str] | None = None,
        *,
        espeak: str = "espeak-ng",
        speed: int | None = None,
        timeout: float = 30.0,
    ) -> None:
        self.cache_dir = Path(cache_dir) if cache_dir is not None else None
        self.espeak = espeak
        self.speed = speed
        self.timeout = timeout
        if self.cache_dir is not None:
            self.cache_dir.mkdir(parents=True, exist_ok=True)

    def _check(self, text: str, voice: str) -> None:
        if voice not in VOICES:
            raise TtsError(f"unsupported voice {voice!r} (one of {sorted(VOICES)})")
        if not text.strip():
            raise TtsError("nothing to say")

    def _argv(self, voice: str, out: Path) -> list[str]:
        argv = [self.espeak, "-v", ESPEAK_VOICE[voice], "-w", str(out), "--stdin"]
        if self.speed is not None:
            argv[1:1] = ["-s", str(self.speed)]
        return argv

    def _cached(self, key: str) -> npt.NDArray[np.int16] | None:
        if self.cache_dir is None:
            return None
        path = self.cache_dir / f"{key}.wav"
        if not path.exists():
            return None
        return read_wav(path, RATE)

    def _store(self, key: str, samples: npt.NDArray[np.int16]) -> None:
        if self.cache_dir is None:
            return
        fd, tmp = tempfile.mkstemp(dir=self.cache_dir, suffix=".tmp")
        os.close(fd)
        try:
            write_wav(tmp, samples, RATE)
            os.replace(tmp, self.cache_dir / f"{key}.wav")
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def synthesize(self, text: str, voice: str = "en-us") -> npt.NDArray[np.int16]:
        """8 kHz int16 speech for ``text`` (blocking; see ``synthesize_async``)."""
        self._check(text, voice)
        key = cache_key(text, voice)
        cached = self._cached(key)
        if cached is not None:
            return cached
        with tempfile.TemporaryDirectory() as tmpdir:
            out = Path(tmpdir) / "tts.wav"
            try:
                proc = subprocess.run(
                    self._argv(voice, out),
                    input=text.encode("utf-8"),
                    capture_output=True,
                    timeout=self.timeout,
                    check=False,
                )
            except FileNotFoundError as exc:
                raise TtsError(f"{self.espeak} not found") from exc
            except subprocess.TimeoutExpired as exc:
                raise TtsError("espeak-ng timed out") from exc
            if proc.returncode != 0 or not out.exists():
                err = proc.stderr.decode("utf-8", "replace").strip()
                raise TtsError(f"espeak-ng failed ({proc.returncode}): {err}")
            samples = read_wav(out, RATE)
        self._store(key, samples)
        return samples

    async def synthesize_async(self, text: str, voice: str = "en-us") -> npt.NDArray[np.int16]:
        """Like ``synthesize`` but runs espeak-ng as an asyncio subprocess."""
        self._check(text, voice)
        key = cache_key(text, voice)
        cached = self._cached(key)
        if cached is not None:
            return cached
        with tempfile.TemporaryDirectory() as tmpdir:
            out = Path(tmpdir) / "tts.wav"
            try:
                proc = await asyncio.create_subprocess_exec(
                    *self._argv(voice, out),
                    stdin=asyncio.subprocess.PIPE,
                    stdout=asyncio.subprocess.DEVNULL,
                    stderr=asyncio.subprocess.PIPE,
                )
            except FileNotFoundError as exc:
                raise TtsError(f"{self.espeak} not found") from exc
            try:
                _, stderr = await asyncio.wait_for(
                    proc.communicate(text.encode("utf-8")), self.timeout
                )
            except TimeoutError as exc:
                proc.kill()
                await proc.wait()
                raise TtsError("espeak-ng timed out") from exc
            except BaseException:
                if proc.returncode is None:
                    proc.kill()
                    await proc.wait()
                raise
            if proc.returncode != 0 or not out.exists():
                err = stderr.decode("utf-8", "replace").strip()
                raise TtsError(f"espeak-ng failed ({proc.returncode}): {err}")
            samples = read_wav(out, RATE)
        self._store(key, samples)
        return samples


def synthesize(
    text: str, voice: str = "en-us", cache_dir: str | os.PathLike[str] | None = None
) -> npt.NDArray[np.int16]:
    return Tts(cache_dir).synthesize(text, voice)


async def synthesize_async(
    text: str, voice: str = "en-us", cache_dir: str | os.PathLike[str] | None = None
) -> npt.NDArray[np.int16]:
    return await Tts(cache_dir).synthesize_async(text, voice)
