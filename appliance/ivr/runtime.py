"""The IVR's edge services on one node (asyncio): what flows ask for outside the call.

The call control hands the node two kinds of IVR work and waits for the answer:

- data actions (``RunIvrAction``): ``http``, ``sql``, ``socket`` and ``file`` go to
  :class:`~appliance.ivr.actions.ActionRunner`; ``plugin`` to the WebAssembly host
  (:mod:`appliance.ivr.plugins`); ``mailbox`` to the voicemail operations
  (:class:`~appliance.ivr.voicemail.MailboxActions`);
- ended captures (``CaptureAudio`` with the audio the media plane kept): a recording
  is written to the tenant's ``recordings/``, a voicemail message deposited (and the
  mailbox's phone told), speech handed to the recogniser (:mod:`appliance.ivr.asr`,
  started on first use).

Both come back as ``(ok, value, error)``; nothing here raises because a tenant's
request failed. :meth:`IvrRuntime.capture_trace` says what to trace about a capture,
since the call may be over by then (callers end most voicemail by hanging up).
Blocking work (files, scrypt, SQL) runs in threads, plug-ins and speech in their own
workers, so the event loop carrying the media never waits.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from appliance.ivr.actions import ActionRunner, action_from_params
from appliance.ivr.asr import AsrError, Grammar, PocketSphinxRecogniser, builtin_grammar
from appliance.ivr.plugins import PluginError, PluginHost
from appliance.ivr.voicemail import MailboxActions, VoicemailError, VoicemailStore
from appliance.media.wav import write_wav
from appliance.pbx.b2bua import CaptureAudio
from appliance.plan import Plan

log = logging.getLogger("branchline.ivr")

RATE = 8000
MIN_MESSAGE_SECONDS = 1.0  # shorter voicemail is a caller who hung up at the beep
_RECORDING_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")

Result = tuple[bool, Any, str | None]
# (tenant, extension, mailbox, new, saved): tell a phone about waiting messages; called
# from worker threads
MessagesWaiting = Callable[[str, str, str, int, int], None]


class IvrRuntime:
    def __init__(self, storage_dir: Path, plan: Callable[[], Plan],
                 messages_waiting: MessagesWaiting) -> None:
        """``plan()`` gives the plan in force (it changes on reload)."""
        self.storage_dir = storage_dir
        self._plan = plan
        self._messages_waiting = messages_waiting
        self.voicemail = VoicemailStore(storage_dir)
        self.mailboxes = MailboxActions(self.voicemail, self.pin_hash)
        self.plugins = PluginHost(storage_dir)
        self.actions = ActionRunner(
            storage_root=storage_dir,
            databases=lambda tenant, name: (t.databases.get(name)
                                            if (t := plan().tenant(tenant)) else None),
            allowed_hosts=lambda tenant: (t.action_hosts if (t := plan().tenant(tenant))
                                          else ()),
        )
        self._asr: PocketSphinxRecogniser | None = None  # started on first use

    async def close(self) -> None:
        await self.actions.close()
        await self.plugins.close()
        if self._asr is not None:
            await asyncio.to_thread(self._asr.close)
            self._asr = None

    # ----------------------------------------------------------------- mailboxes
    def pin_hash(self, tenant_id: str, mailbox: str) -> str | None:
        """The PIN hash of one of the tenant's mailboxes, or None: no such mailbox."""
        tenant = self._plan().tenant(tenant_id)
        box = tenant.mailbox(mailbox) if tenant is not None else None
        return box.pin if box is not None else None

    def mailbox_changed(self, tenant_id: str, mailbox: str) -> None:
        """Message waiting (blocking: a worker thread): the mailbox's phone learns the
        counts."""
        tenant = self._plan().tenant(tenant_id)
        box = tenant.mailbox(mailbox) if tenant is not None else None
        if box is None or box.extension is None:
            return
        new, saved = self.voicemail.counts(tenant_id, mailbox)
        self._messages_waiting(tenant_id, box.extension, mailbox, new, saved)

    # ----------------------------------------------------------------- actions
    async def run_action(self, tenant: str, kind: str, params: Mapping[str, Any],
                         timeout: float) -> Result:
        if kind == "plugin":
            try:
                value = await self.plugins.call(
                    tenant, str(params.get("plugin", "")), str(params.get("function", "")),
                    params.get("input"), timeout)
            except PluginError as exc:
                return False, None, str(exc)
            return True, value, None
        if kind == "mailbox":
            try:
                value = await asyncio.wait_for(
                    asyncio.to_thread(self.mailboxes.run, tenant, dict(params)), timeout)
            except (VoicemailError, TimeoutError) as exc:
                return False, None, str(exc) or "timed out"
            if params.get("op") in ("mark", "delete"):
                await asyncio.to_thread(self.mailbox_changed, tenant,
                                        str(params.get("mailbox")))
            return True, value, None
        try:
            action = action_from_params(kind, params, timeout)
        except ValueError as exc:
            return False, None, str(exc)
        result = await self.actions.run(tenant, action)
        return result.ok, result.value, result.error

    # ----------------------------------------------------------------- captures
    async def finish_capture(self, cmd: CaptureAudio, audio: npt.NDArray[np.int16],
                             reason: str, speech: bool) -> Result:
        kind = cmd.capture.kind
        try:
            if kind == "voicemail":
                value = await asyncio.to_thread(self._deposit, cmd, audio)
                return True, {**value, "ended_by": reason}, None
            if kind == "record":
                path = await asyncio.to_thread(self._save_recording, cmd, audio)
                return True, {"path": path, "seconds": round(len(audio) / RATE, 2),
                              "ended_by": reason}, None
            value = {"speech": speech, "choice": None, "text": "", "ended_by": reason}
            if speech:
                value.update(await self._recognise(cmd, audio))
            return True, value, None
        except (VoicemailError, OSError, ValueError) as exc:
            return False, None, str(exc)

    @staticmethod
    def capture_trace(cmd: CaptureAudio, audio: npt.NDArray[np.int16], reason: str,
                      result: Result) -> tuple[tuple[str, str], ...] | None:
        """What the trace keeps of an ended recording or message (None: nothing)."""
        if cmd.capture.kind == "recognise":
            return None  # the flow's own trace has the recognised step
        ok, value, error = result
        return (("kept", "true" if ok else "false"),
                ("seconds", str(round(len(audio) / RATE, 2))), ("ended_by", reason),
                *((("error", error),) if error else ()),
                *((("id", str(value["id"])),) if ok and value and "id" in value else ()))

    def _deposit(self, cmd: CaptureAudio, audio: npt.NDArray[np.int16]) -> dict[str, Any]:
        tenant_id, mailbox = cmd.tenant_id or "", cmd.capture.target
        if self.pin_hash(tenant_id, mailbox) is None:
            raise VoicemailError(f"no mailbox {mailbox}")
        if len(audio) < MIN_MESSAGE_SECONDS * RATE:
            raise VoicemailError("message too short, not kept")
        msg = self.voicemail.deposit(tenant_id, mailbox, audio, caller=cmd.caller,
                                     call=cmd.call_id)
        log.info("voicemail tenant=%s mailbox=%s message %s (%.1f s) from %s", tenant_id,
                 mailbox, msg.id, msg.seconds, cmd.caller)
        self.mailbox_changed(tenant_id, mailbox)
        return {"mailbox": mailbox, "id": msg.id, "seconds": msg.seconds}

    def _save_recording(self, cmd: CaptureAudio, audio: npt.NDArray[np.int16]) -> str:
        name = cmd.capture.target or f"{cmd.call_id}-{cmd.capture.seq}"
        if not _RECORDING_NAME.fullmatch(name):
            raise ValueError(f"a recording name is 1-64 letters, digits, - or _, not {name!r}")
        folder = self.storage_dir / (cmd.tenant_id or "_unrouted") / "recordings"
        folder.mkdir(parents=True, exist_ok=True)
        tmp = folder / f".{name}.tmp"
        write_wav(tmp, audio)
        tmp.replace(folder / f"{name}.wav")
        return f"recordings/{name}.wav"

    async def _recognise(self, cmd: CaptureAudio,
                         audio: npt.NDArray[np.int16]) -> dict[str, Any]:
        """Speech against the node's grammar (R-4.19); ``AsrError`` (a language the
        engine lacks, a word outside its dictionary) becomes the flow's error, and the
        caller can still answer with the keypad."""
        spec = cmd.capture
        try:
            if spec.grammar in ("yesno", "digits"):
                grammar = builtin_grammar(spec.grammar, cmd.language)
            else:
                grammar = await asyncio.to_thread(
                    Grammar.from_spec, "choices",
                    {k: list(v) for k, v in (spec.choices or {}).items()})
            if self._asr is None:
                self._asr = PocketSphinxRecogniser()
            result = await self._asr.recognise(audio, RATE, grammar, cmd.language)
        except AsrError as exc:
            raise ValueError(str(exc)) from None
        return {"choice": result.choice, "text": result.text,
                "confidence": round(result.confidence, 2)}
