"""Voicemail mailboxes in the tenant's storage (edge module; R-4.10).

Layout
------
``root/<tenant>/voicemail/<mailbox>/<id>.wav`` (8 kHz mono 16-bit) with its
``<id>.json`` beside it: ``{id, mailbox, caller, call, received, seconds, status}``
where ``status`` is ``new`` or ``saved``. Ids sort by arrival (milliseconds since
the epoch, then a random suffix), so listing needs no index. Both files are written
to a temporary name and renamed, the metadata last: a message is visible whole or
not at all. A personal greeting, when recorded, is ``greeting.wav`` in the same
directory.

Who may use a mailbox is the plan's business (mailboxes are declared per tenant,
with a hashed PIN); this store only confines every path to ``root/<tenant>/
voicemail/<mailbox>`` (ids, tenants and mailbox numbers are validated; resolved
paths must stay inside, so a symlink planted towards another tenant is refused).
All methods block (small files) and are called from worker threads or admin paths.
"""

from __future__ import annotations

import builtins
import json
import os
import re
import secrets
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from appliance.ids import EXTENSION_RE, ID_RE
from appliance.media.wav import read_wav, write_wav
from appliance.passwords import verify

RATE = 8000
TENANT_RE = ID_RE
MAILBOX_RE = EXTENSION_RE  # mailbox numbers follow the extension rule
MESSAGE_ID_RE = re.compile(r"[0-9]{13}-[0-9a-f]{6}")
STATUSES = ("new", "saved")
GREETING_SOURCE_RE = re.compile(r"recordings/[A-Za-z0-9_-]{1,64}\.wav")


class VoicemailError(ValueError):
    """A request the store refuses (bad id, no such message, mailbox full...)."""


@dataclass(frozen=True)
class Message:
    id: str
    mailbox: str
    caller: str
    call: str
    received: float
    seconds: float
    status: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class VoicemailStore:
    def __init__(self, root: Path, *, max_messages: int = 100) -> None:
        root.mkdir(parents=True, exist_ok=True)
        self.root = root.resolve()
        self.max_messages = max_messages

    # ----------------------------------------------------------------- paths
    def _box(self, tenant_id: str, mailbox: str, *, create: bool = False) -> Path:
        if not isinstance(tenant_id, str) or not TENANT_RE.fullmatch(tenant_id):
            raise VoicemailError(f"invalid tenant {tenant_id!r}")
        if not isinstance(mailbox, str) or not MAILBOX_RE.fullmatch(mailbox):
            raise VoicemailError(f"invalid mailbox {mailbox!r}")
        tenant_dir = self.root / tenant_id
        box = tenant_dir / "voicemail" / mailbox
        if create:
            box.mkdir(parents=True, exist_ok=True)
        if tenant_dir.is_symlink() or not box.resolve().is_relative_to(
                tenant_dir.resolve() / "voicemail"):
            raise VoicemailError(f"mailbox {mailbox} is outside the tenant's storage")
        return box

    def _file(self, box: Path, msg_id: str, suffix: str) -> Path:
        if not isinstance(msg_id, str) or not MESSAGE_ID_RE.fullmatch(msg_id):
            raise VoicemailError(f"invalid message id {msg_id!r}")
        path = box / f"{msg_id}{suffix}"
        if path.is_symlink() or not path.resolve().is_relative_to(box.resolve()):
            raise VoicemailError(f"message {msg_id} is outside the mailbox")
        return path

    # ----------------------------------------------------------------- messages
    def deposit(self, tenant_id: str, mailbox: str, samples: npt.NDArray[np.int16], *,
                caller: str, call: str, received: float | None = None) -> Message:
        box = self._box(tenant_id, mailbox, create=True)
        if len(self._ids(box)) >= self.max_messages:
            raise VoicemailError(f"mailbox {mailbox} is full ({self.max_messages} messages)")
        received = time.time() if received is None else received
        msg = Message(
            id=f"{int(received * 1000):013d}-{secrets.token_hex(3)}", mailbox=mailbox,
            caller=caller, call=call, received=round(received, 3),
            seconds=round(len(samples) / RATE, 2), status="new",
        )
        wav = self._file(box, msg.id, ".wav")
        tmp = wav.with_suffix(f".wav.{secrets.token_hex(4)}.tmp")
        write_wav(tmp, np.asarray(samples, dtype=np.int16), RATE)
        tmp.replace(wav)
        self._write_meta(box, msg)
        return msg

    def list(self, tenant_id: str, mailbox: str) -> builtins.list[Message]:
        """New messages first, then saved ones, each oldest first."""
        box = self._box(tenant_id, mailbox)
        messages = [m for m in (self._read_meta(box, i) for i in self._ids(box))
                    if m is not None]
        return sorted(messages, key=lambda m: (m.status != "new", m.id))

    def get(self, tenant_id: str, mailbox: str, msg_id: str) -> Message:
        box = self._box(tenant_id, mailbox)
        msg = self._read_meta(box, msg_id)
        if msg is None:
            raise VoicemailError(f"no message {msg_id} in mailbox {mailbox}")
        return msg

    def audio_path(self, tenant_id: str, mailbox: str, msg_id: str) -> Path:
        self.get(tenant_id, mailbox, msg_id)
        return self._file(self._box(tenant_id, mailbox), msg_id, ".wav")

    def mark(self, tenant_id: str, mailbox: str, msg_id: str, status: str) -> Message:
        if status not in STATUSES:
            raise VoicemailError(f"status is one of {', '.join(STATUSES)}")
        box = self._box(tenant_id, mailbox)
        msg = self.get(tenant_id, mailbox, msg_id)
        if msg.status != status:
            msg = Message(**{**msg.to_dict(), "status": status})
            self._write_meta(box, msg)
        return msg

    def delete(self, tenant_id: str, mailbox: str, msg_id: str) -> None:
        box = self._box(tenant_id, mailbox)
        self.get(tenant_id, mailbox, msg_id)
        self._file(box, msg_id, ".json").unlink()  # invisible first, then the audio
        self._file(box, msg_id, ".wav").unlink(missing_ok=True)

    def set_greeting(self, tenant_id: str, mailbox: str, recording: str) -> None:
        """Make a recording of the tenant (``recordings/<name>.wav``, as a ``record``
        node leaves it) the mailbox's personal greeting; the recording is moved."""
        if not isinstance(recording, str) or not GREETING_SOURCE_RE.fullmatch(recording):
            raise VoicemailError(f"a greeting comes from recordings/<name>.wav, not "
                                 f"{recording!r}")
        box = self._box(tenant_id, mailbox, create=True)
        source = self.root / tenant_id / recording
        if source.is_symlink() or not source.is_file():
            raise VoicemailError(f"no recording {recording}")
        os.replace(source, box / "greeting.wav")

    def counts(self, tenant_id: str, mailbox: str) -> tuple[int, int]:
        """(new, saved), what message-waiting indication reports."""
        messages = self.list(tenant_id, mailbox)
        new = sum(1 for m in messages if m.status == "new")
        return new, len(messages) - new

    def read_audio(self, tenant_id: str, mailbox: str, msg_id: str) -> npt.NDArray[np.int16]:
        return read_wav(self.audio_path(tenant_id, mailbox, msg_id))

    # ----------------------------------------------------------------- internals
    @staticmethod
    def _ids(box: Path) -> builtins.list[str]:
        if not box.is_dir():
            return []
        return sorted(p.stem for p in box.glob("*.json") if MESSAGE_ID_RE.fullmatch(p.stem))

    def _read_meta(self, box: Path, msg_id: str) -> Message | None:
        path = self._file(box, msg_id, ".json")
        try:
            doc = json.loads(path.read_text(encoding="utf-8"))
            msg = Message(**{k: doc[k] for k in Message.__dataclass_fields__})
        except (OSError, ValueError, KeyError, TypeError):
            return None
        return msg if (msg.id, msg.mailbox) == (msg_id, box.name) else None

    def _write_meta(self, box: Path, msg: Message) -> None:
        path = self._file(box, msg.id, ".json")
        tmp = path.with_suffix(f".json.{secrets.token_hex(4)}.tmp")  # writers never share
        tmp.write_text(json.dumps(msg.to_dict(), sort_keys=True), encoding="utf-8")
        os.replace(tmp, path)


# --------------------------------------------------------------------------- flow actions
MAX_FAILURES = 5  # wrong PINs in a row before a mailbox locks
LOCK_SECONDS = 300.0


class MailboxActions:
    """The ``mailbox`` action of flows: ``login`` (mailbox + PIN: counts and the ids of
    the messages, new first), ``count``, ``message`` (by id: caller, time, the audio's
    path for a ``{recording: ...}`` prompt), ``mark`` (new/saved), ``delete`` and
    ``greeting`` (a recording becomes the mailbox's personal greeting).

    ``pin_hash(tenant, mailbox)`` gives the plan's PIN hash, or None when the tenant
    has no such mailbox. After ``MAX_FAILURES`` wrong PINs a mailbox refuses logins
    for ``LOCK_SECONDS`` (a PIN is short; guessing it must be slow).
    """

    def __init__(self, store: VoicemailStore, pin_hash: Callable[[str, str], str | None],
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.store = store
        self.pin_hash = pin_hash
        self.clock = clock
        self._failures: dict[tuple[str, str], tuple[int, float]] = {}

    def run(self, tenant_id: str, params: dict[str, Any]) -> Any:
        """Blocking (file access, scrypt): call from a worker thread."""
        op = params.get("op")
        mailbox = str(params.get("mailbox", ""))
        hashed = self.pin_hash(tenant_id, mailbox)
        if hashed is None:
            raise VoicemailError(f"no mailbox {mailbox}")
        if op == "login":
            key = (tenant_id, mailbox)
            count, since = self._failures.get(key, (0, 0.0))
            if count >= MAX_FAILURES and self.clock() - since < LOCK_SECONDS:
                raise VoicemailError(f"mailbox {mailbox} is locked after wrong PINs")
            if not verify(str(params.get("pin", "")), hashed):
                self._failures[key] = (count + 1, self.clock())
                raise VoicemailError("wrong PIN")
            self._failures.pop(key, None)
            return self._summary(tenant_id, mailbox)
        if op == "count":
            return {k: v for k, v in self._summary(tenant_id, mailbox).items() if k != "ids"}
        msg_id = str(params.get("id", ""))
        if op == "message":
            msg = self.store.get(tenant_id, mailbox, msg_id)
            local = time.localtime(msg.received)
            # the audio's path relative to the tenant's storage, for prompt playback
            return {**msg.to_dict(), "path": f"voicemail/{mailbox}/{msg.id}.wav",
                    "date": time.strftime("%Y-%m-%d", local),
                    "time": time.strftime("%H:%M", local)}
        if op == "mark":
            return self.store.mark(tenant_id, mailbox, msg_id, str(params.get("status"))).status
        if op == "delete":
            self.store.delete(tenant_id, mailbox, msg_id)
            return True
        if op == "greeting":
            self.store.set_greeting(tenant_id, mailbox, str(params.get("recording", "")))
            return True
        raise VoicemailError(f"unknown mailbox operation {op!r}")

    def _summary(self, tenant_id: str, mailbox: str) -> dict[str, Any]:
        messages = self.store.list(tenant_id, mailbox)
        new = sum(1 for m in messages if m.status == "new")
        return {"new": new, "saved": len(messages) - new, "total": len(messages),
                "ids": [m.id for m in messages]}
