"""The node's HTTP API (appliance/api.py): auth, tenant isolation, monitoring, voicemail
and prompt upload, against a real VoicemailStore and PromptStore in temporary directories.

Each test runs its requests through ``serve`` (``asyncio.run`` of an aiohttp TestServer
and TestClient, both closed on exit), so no pytest plugin is needed.
"""

from __future__ import annotations

import asyncio
import io
import json
import logging
import wave
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import numpy as np
import numpy.typing as npt
import pytest
from yarl import URL

from appliance.api import MAX_PROMPT_BYTES, Principal, make_app, start_api
from appliance.ivr.prompts import PromptStore, decode_wav
from appliance.ivr.voicemail import VoicemailStore
from appliance.media.wav import read_wav_raw
from appliance.pbx.b2bua import CallRefused
from appliance.plan import LIMITS
from tests.harness.apiapp import Client, run_app

TOKENS = {
    "tok-acme": Principal("acme", "acme-admin"),
    "tok-globex": Principal("globex", "globex-admin"),
    "tok-operator": Principal(None, "noc"),
    "tok-initech": Principal("initech", "initech-admin", suspended=True),
}
ACME, GLOBEX, OPERATOR, INITECH = ({"Authorization": f"Bearer {t}"} for t in TOKENS)


class SilentSynth:
    """PromptStore needs a synthesiser; these tests only use recorded files."""

    async def synthesize_async(self, text: str, voice: str) -> npt.NDArray[np.int16]:
        return np.zeros(80, dtype=np.int16)


@dataclass
class FakeBackend:
    voicemail: VoicemailStore
    prompts: PromptStore
    trace_path: Path
    mailboxes: set[tuple[str, str]] = field(
        default_factory=lambda: {("acme", "1001"), ("globex", "1001"), ("globex", "2001")})
    live: dict[str, dict[str, int]] = field(
        default_factory=lambda: {"acme": {"calls": 2, "ivr_busy": 1, "pstn_calls": 1}})
    ports: dict[str | None, int] = field(
        default_factory=lambda: {None: 30, "acme": 4, "globex": 0})
    quotas: dict[str, dict[str, int]] = field(
        default_factory=lambda: {"acme": {"pstn_calls": 2}})
    changed: list[tuple[str, str]] = field(default_factory=list)
    refusal: ValueError | None = None  # what originate raises

    def usage(self) -> dict[str, dict[str, int]]:
        return self.live

    def node_status(self) -> dict[str, Any]:
        return {"node": "node-1", "plan_version": 7}

    def authenticate(self, token: str) -> Principal | None:
        return TOKENS.get(token)

    def mailbox_exists(self, tenant_id: str, mailbox: str) -> bool:
        return (tenant_id, mailbox) in self.mailboxes

    def mailbox_changed(self, tenant_id: str, mailbox: str) -> None:
        self.changed.append((tenant_id, mailbox))

    def ivr_ports(self, tenant_id: str | None) -> int:
        return self.ports.get(tenant_id, 0)

    def limits(self, tenant_id: str) -> dict[str, int]:
        return {**dict.fromkeys(LIMITS, 0), "ivr_ports": self.ports.get(tenant_id, 0),
                **self.quotas.get(tenant_id, {})}

    def originate(self, tenant_id: str, number: str, flow: str, *, caller_id: str | None,
                  ring_seconds: float | None, variables: dict[str, str]) -> str:
        if self.refusal is not None:
            raise self.refusal
        return "c-new"


TRACE = [
    {"ts": 1.0, "tenant": "acme", "call": "c-acme-1", "event": "received", "to": "+100"},
    {"ts": 1.1, "tenant": "acme", "call": "c-acme-1", "event": "ivr", "step": "start"},
    {"ts": 1.2, "tenant": "globex", "call": "c-acme-1", "event": "spoofed"},
    {"ts": 2.0, "tenant": "acme", "call": "c-acme-1", "event": "ended"},
    {"ts": 3.0, "tenant": "globex", "call": "c-globex-1", "event": "received"},
    {"ts": 3.5, "tenant": "globex", "call": "c-globex-1", "event": "ended"},
]


@pytest.fixture
def backend(tmp_path: Path) -> FakeBackend:
    lines = [json.dumps(step) for step in TRACE]
    lines.insert(3, '{"ts": 1.5, "tenant": "acme", "ca')  # a line cut short by a crash
    (tmp_path / "trace.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return FakeBackend(
        voicemail=VoicemailStore(tmp_path / "storage"),
        prompts=PromptStore(tmp_path / "storage", SilentSynth()),
        trace_path=tmp_path / "trace.jsonl",
    )


def serve(backend: FakeBackend, scenario: Callable[[Client], Awaitable[None]]) -> None:
    run_app(make_app(backend), scenario)


async def expect_error(resp: aiohttp.ClientResponse, status: int, error_id: str) -> str:
    assert resp.status == status, await resp.text()
    doc = await resp.json()
    assert doc["error"]["id"] == error_id
    assert isinstance(doc["error"]["message"], str) and doc["error"]["message"]
    return str(doc["error"]["message"])


def samples(seconds: float, seed: int) -> npt.NDArray[np.int16]:
    rng = np.random.default_rng(seed)
    return rng.integers(-8000, 8000, int(seconds * 8000)).astype(np.int16)


def stereo_wav(rate: int, seconds: float) -> bytes:
    t = np.arange(int(rate * seconds)) / rate
    left = (8000 * np.sin(2 * np.pi * 440 * t)).astype(np.int16)
    right = (4000 * np.sin(2 * np.pi * 660 * t)).astype(np.int16)
    out = io.BytesIO()
    with wave.open(out, "wb") as w:
        w.setnchannels(2)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(np.stack([left, right], axis=1).astype("<i2").tobytes())
    return out.getvalue()


# --------------------------------------------------------------------------- auth
def test_health_is_open_and_everything_else_needs_a_known_bearer_token(
        backend: FakeBackend, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)

    async def scenario(client: Client) -> None:
        resp = await client.get("/api/v1/health")
        assert resp.status == 200 and await resp.json() == {"ok": True}
        for headers in ({}, {"Authorization": "Bearer"}, {"Authorization": "Basic dG9rLWFjbWU="},
                        {"Authorization": "tok-acme"}):
            resp = await client.get("/api/v1/ports", headers=headers)
            await expect_error(resp, 401, "unauthorized")
            assert resp.headers["WWW-Authenticate"].startswith("Bearer")
        resp = await client.get("/api/v1/ports", headers={"Authorization": "Bearer secret-guess"})
        await expect_error(resp, 401, "unauthorized")
        assert 'error="invalid_token"' in resp.headers["WWW-Authenticate"]
        # Every route, even one that does not exist: nothing is told without a token.
        for method, path in (("GET", "/api/v1/mailboxes/1001/messages"),
                             ("PUT", "/api/v1/prompts/en-us/welcome"),
                             ("GET", "/api/v1/calls/latest/trace"),
                             ("GET", "/api/v1/nothing-here")):
            resp = await client.request(method, path, headers={"Authorization": "Bearer nope"})
            await expect_error(resp, 401, "unauthorized")
        resp = await client.get("/api/v1/nothing-here", headers=ACME)
        await expect_error(resp, 404, "not_found")
        resp = await client.post("/api/v1/ports", headers=ACME)
        await expect_error(resp, 405, "method_not_allowed")
        assert "GET" in resp.headers["Allow"]
        resp = await client.get("/api/v1/ports", headers=ACME)
        assert resp.status == 200
        assert resp.headers["Cache-Control"] == "no-store"

    serve(backend, scenario)
    assert "secret-guess" not in caplog.text and "tok-acme" not in caplog.text


# --------------------------------------------------------------------------- monitoring
def test_ports_tenant_sees_its_own_entry_operator_sees_all(backend: FakeBackend) -> None:
    async def scenario(client: Client) -> None:
        acme = {"calls": 2, "ivr_busy": 1, "pstn_calls": 1, "ivr_ports": 4,
                "limits": backend.limits("acme")}
        assert acme["limits"]["pstn_calls"] == 2 and acme["limits"]["ivr_ports"] == 4
        idle = {"calls": 0, "ivr_busy": 0, "pstn_calls": 0, "ivr_ports": 0,
                "limits": dict.fromkeys(LIMITS, 0)}
        resp = await client.get("/api/v1/ports", headers=ACME)
        assert await resp.json() == {"node": "node-1", "plan_version": 7,
                                     "tenants": {"acme": acme}}
        resp = await client.get("/api/v1/ports", headers=GLOBEX)  # idle: zeros
        assert (await resp.json())["tenants"] == {"globex": idle}
        resp = await client.get("/api/v1/ports", headers=GLOBEX, params={"tenant": "acme"})
        await expect_error(resp, 400, "bad_request")

        backend.live["globex"] = {"calls": 1, "ivr_busy": 0, "pstn_calls": 0}
        resp = await client.get("/api/v1/ports", headers=OPERATOR)
        doc = await resp.json()
        assert doc["ivr_ports"] == 30
        assert doc["tenants"] == {"acme": acme, "globex": {**idle, "calls": 1}}
        resp = await client.get("/api/v1/ports", headers=OPERATOR, params={"tenant": "initech"})
        assert (await resp.json())["tenants"] == {"initech": idle}
        resp = await client.get("/api/v1/ports", headers=OPERATOR, params={"tenant": "../x"})
        await expect_error(resp, 400, "bad_request")

    serve(backend, scenario)


def test_trace_only_of_the_tokens_tenant(backend: FakeBackend) -> None:
    async def scenario(client: Client) -> None:
        resp = await client.get("/api/v1/calls/c-acme-1/trace", headers=ACME)
        doc = await resp.json()
        assert doc["call"] == "c-acme-1"
        assert [s["event"] for s in doc["steps"]] == ["received", "ivr", "ended"]
        assert {s["tenant"] for s in doc["steps"]} == {"acme"}  # globex's step is left out
        # The latest call of acme, although globex's call is later in the file.
        resp = await client.get("/api/v1/calls/latest/trace", headers=ACME)
        assert (await resp.json())["call"] == "c-acme-1"
        resp = await client.get("/api/v1/calls/c-globex-1/trace", headers=ACME)
        await expect_error(resp, 404, "not_found")
        resp = await client.get("/api/v1/calls/latest/trace", headers=GLOBEX)
        assert (await resp.json())["call"] == "c-globex-1"
        # The operator sees every tenant's steps, or one tenant's with ?tenant=.
        resp = await client.get("/api/v1/calls/latest/trace", headers=OPERATOR)
        assert (await resp.json())["call"] == "c-globex-1"
        resp = await client.get("/api/v1/calls/c-acme-1/trace", headers=OPERATOR)
        assert len((await resp.json())["steps"]) == 4
        resp = await client.get("/api/v1/calls/c-acme-1/trace", headers=OPERATOR,
                                params={"tenant": "globex"})
        assert [s["event"] for s in (await resp.json())["steps"]] == ["spoofed"]
        for bad in ("a.b", "x" * 65, "caf%C3%A9"):
            resp = await client.get(URL(f"/api/v1/calls/{bad}/trace", encoded=True),
                                    headers=ACME)
            await expect_error(resp, 400, "bad_request")

    serve(backend, scenario)


def test_trace_without_a_trace_file_is_not_found(backend: FakeBackend) -> None:
    backend.trace_path.unlink()

    async def scenario(client: Client) -> None:
        resp = await client.get("/api/v1/calls/latest/trace", headers=ACME)
        await expect_error(resp, 404, "not_found")

    serve(backend, scenario)


# --------------------------------------------------------------------------- voicemail
def test_voicemail_list_get_audio_patch_delete(backend: FakeBackend) -> None:
    audio = [samples(1.5, 1), samples(0.75, 2)]
    first = backend.voicemail.deposit("acme", "1001", audio[0], caller="+8613800000001",
                                      call="c-1", received=1_700_000_000.0)
    second = backend.voicemail.deposit("acme", "1001", audio[1], caller="+8613800000002",
                                       call="c-2", received=1_700_000_100.0)
    box = "/api/v1/mailboxes/1001/messages"

    async def scenario(client: Client) -> None:
        resp = await client.get(box, headers=ACME)
        doc = await resp.json()
        assert (doc["mailbox"], doc["new"], doc["saved"]) == ("1001", 2, 0)
        assert [m["id"] for m in doc["messages"]] == [first.id, second.id]
        assert doc["messages"][0] == {**first.to_dict(),
                                      "audio_url": f"{box}/{first.id}/audio"}

        resp = await client.get(f"{box}/{second.id}", headers=ACME)
        assert (await resp.json())["caller"] == "+8613800000002"

        for msg, expected in ((first, audio[0]), (second, audio[1])):
            resp = await client.get(f"{box}/{msg.id}/audio", headers=ACME)
            assert resp.status == 200
            assert resp.headers["Content-Type"] == "audio/wav"
            with wave.open(io.BytesIO(await resp.read()), "rb") as w:
                assert (w.getframerate(), w.getnchannels(), w.getsampwidth()) == (8000, 1, 2)
                got = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2")
            np.testing.assert_array_equal(got, expected)

        resp = await client.patch(f"{box}/{first.id}", headers=ACME, json={"status": "saved"})
        assert resp.status == 200 and (await resp.json())["status"] == "saved"
        assert backend.changed == [("acme", "1001")]
        doc = await (await client.get(box, headers=ACME)).json()
        assert (doc["new"], doc["saved"]) == (1, 1)
        assert [m["id"] for m in doc["messages"]] == [second.id, first.id]  # new first

        for body in ({"status": "read"}, {"status": "saved", "x": 1}, ["saved"]):
            resp = await client.patch(f"{box}/{first.id}", headers=ACME, json=body)
            await expect_error(resp, 400, "bad_request")
        resp = await client.patch(f"{box}/{first.id}", headers=ACME, data=b"{not json")
        await expect_error(resp, 400, "bad_request")
        resp = await client.patch(f"{box}/{first.id}", headers=ACME, data=b" " * 70_000)
        await expect_error(resp, 413, "too_large")
        assert backend.changed == [("acme", "1001")]

        resp = await client.delete(f"{box}/{first.id}", headers=ACME)
        assert resp.status == 204
        assert backend.changed == [("acme", "1001")] * 2
        for method in ("GET", "DELETE"):
            resp = await client.request(method, f"{box}/{first.id}", headers=ACME)
            await expect_error(resp, 404, "not_found")
        resp = await client.get(f"{box}/{first.id}/audio", headers=ACME)
        await expect_error(resp, 404, "not_found")
        doc = await (await client.get(box, headers=ACME)).json()
        assert [m["id"] for m in doc["messages"]] == [second.id]

    serve(backend, scenario)
    assert [m.id for m in backend.voicemail.list("acme", "1001")] == [second.id]


def test_voicemail_operator_names_the_tenant(backend: FakeBackend) -> None:
    msg = backend.voicemail.deposit("acme", "1001", samples(0.5, 3), caller="1", call="c")
    box = "/api/v1/mailboxes/1001/messages"

    async def scenario(client: Client) -> None:
        resp = await client.get(box, headers=OPERATOR)
        await expect_error(resp, 400, "bad_request")
        resp = await client.get(box, headers=OPERATOR, params={"tenant": "acme"})
        doc = await resp.json()
        url = doc["messages"][0]["audio_url"]
        assert url == f"{box}/{msg.id}/audio?tenant=acme"
        resp = await client.get(url, headers=OPERATOR)
        assert resp.status == 200 and len(await resp.read()) == 44 + 2 * 4000
        resp = await client.get(box, headers=OPERATOR, params={"tenant": "globex"})
        assert (await resp.json())["messages"] == []
        resp = await client.patch(f"{box}/{msg.id}", headers=OPERATOR, json={"status": "saved"})
        await expect_error(resp, 400, "bad_request")
        resp = await client.patch(f"{box}/{msg.id}?tenant=acme", headers=OPERATOR,
                                  json={"status": "saved"})
        assert resp.status == 200
        assert backend.changed == [("acme", "1001")]

    serve(backend, scenario)


def test_voicemail_of_another_tenant_is_not_found(backend: FakeBackend) -> None:
    msg = backend.voicemail.deposit("acme", "1001", samples(0.5, 4), caller="1", call="c")
    backend.mailboxes.discard(("globex", "1001"))

    async def scenario(client: Client) -> None:
        # globex has no mailbox 1001: acme's is not found, with or without a message id
        for path in ("/api/v1/mailboxes/1001/messages",
                     f"/api/v1/mailboxes/1001/messages/{msg.id}",
                     f"/api/v1/mailboxes/1001/messages/{msg.id}/audio"):
            resp = await client.get(path, headers=GLOBEX)
            await expect_error(resp, 404, "not_found")
        resp = await client.get("/api/v1/mailboxes/2001/messages", headers=ACME)
        await expect_error(resp, 404, "not_found")

        # globex's own mailbox 1001 (same number, other tenant) holds none of acme's
        backend.mailboxes.add(("globex", "1001"))
        resp = await client.get("/api/v1/mailboxes/1001/messages", headers=GLOBEX)
        assert (await resp.json())["messages"] == []
        base = f"/api/v1/mailboxes/1001/messages/{msg.id}"
        for method, path, body in (("GET", base, None), ("GET", base + "/audio", None),
                                   ("PATCH", base, {"status": "saved"}),
                                   ("DELETE", base, None)):
            resp = await client.request(method, path, headers=GLOBEX, json=body)
            await expect_error(resp, 404, "not_found")
        # acme's own token and ?tenant= do not mix with another tenant
        resp = await client.get("/api/v1/mailboxes/1001/messages", headers=GLOBEX,
                                params={"tenant": "acme"})
        await expect_error(resp, 400, "bad_request")

    serve(backend, scenario)
    assert backend.changed == []
    assert backend.voicemail.get("acme", "1001", msg.id).status == "new"


def test_bad_path_parameters_are_refused(backend: FakeBackend) -> None:
    good_id = "1700000000000-abcdef"
    bad = [
        ("GET", "/api/v1/mailboxes/1/messages"),
        ("GET", "/api/v1/mailboxes/12ab/messages"),
        ("GET", "/api/v1/mailboxes/123456789/messages"),
        ("GET", "/api/v1/mailboxes/..%2F..%2Fglobex/messages"),
        ("GET", "/api/v1/mailboxes/1001/messages/abc"),
        ("GET", f"/api/v1/mailboxes/1001/messages/{good_id}x/audio"),
        ("GET", f"/api/v1/mailboxes/1001/messages/..%2F{good_id}"),
        ("DELETE", "/api/v1/mailboxes/1001/messages/1700000000000-ABCDEF"),
        ("GET", "/api/v1/prompts?language=EN"),
        ("PUT", "/api/v1/prompts/EN/welcome"),
        ("PUT", "/api/v1/prompts/en-us/a.b"),
        ("PUT", "/api/v1/prompts/en-us/..%2F..%2Fglobex"),
        ("DELETE", "/api/v1/prompts/english-language-tag/welcome"),
        ("DELETE", f"/api/v1/prompts/en-us/{'n' * 65}"),
    ]

    async def scenario(client: Client) -> None:
        for method, path in bad:
            body = stereo_wav(8000, 0.1) if method == "PUT" else None
            resp = await client.request(method, URL(path, encoded=True), data=body,
                                        headers={**ACME, "Content-Type": "audio/wav"})
            message = await expect_error(resp, 400, "bad_request")
            assert "invalid" in message, (method, path)

    serve(backend, scenario)
    assert not (backend.voicemail.root / "globex").exists()


# --------------------------------------------------------------------------- prompts
def test_prompt_upload_is_converted_listed_and_deleted(backend: FakeBackend) -> None:
    upload = stereo_wav(16000, 1.0)

    async def scenario(client: Client) -> None:
        resp = await client.put("/api/v1/prompts/en-us/welcome", data=upload,
                                headers={**ACME, "Content-Type": "audio/x-wav"})
        assert resp.status == 201, await resp.text()
        info = {"language": "en-us", "name": "welcome", "bytes": 44 + 16000, "seconds": 1.0}
        assert await resp.json() == info
        resp = await client.get("/api/v1/prompts", headers=ACME)
        assert await resp.json() == {"prompts": [info]}
        resp = await client.get("/api/v1/prompts", headers=ACME, params={"language": "cmn"})
        assert await resp.json() == {"prompts": []}
        resp = await client.get("/api/v1/prompts", headers=GLOBEX)
        assert await resp.json() == {"prompts": []}
        resp = await client.get("/api/v1/prompts", headers=OPERATOR, params={"tenant": "acme"})
        assert await resp.json() == {"prompts": [info]}

        stored = backend.prompts.root / "acme" / "prompts" / "en-us" / "welcome.wav"
        data, rate = read_wav_raw(stored)
        assert (rate, data.shape) == (8000, (8000, 1))
        np.testing.assert_array_equal(data[:, 0], decode_wav(upload))
        resolved = await backend.prompts.resolve("acme", {"file": "welcome"}, "en-us")
        np.testing.assert_array_equal(resolved, data[:, 0])

        # globex cannot delete acme's prompt; acme can, once
        resp = await client.delete("/api/v1/prompts/en-us/welcome", headers=GLOBEX)
        await expect_error(resp, 404, "not_found")
        resp = await client.delete("/api/v1/prompts/en-us/welcome", headers=ACME)
        assert resp.status == 204
        resp = await client.delete("/api/v1/prompts/en-us/welcome", headers=ACME)
        await expect_error(resp, 404, "not_found")
        resp = await client.get("/api/v1/prompts", headers=ACME)
        assert await resp.json() == {"prompts": []}

    serve(backend, scenario)


def test_prompt_upload_refusals(backend: FakeBackend) -> None:
    url = "/api/v1/prompts/en-us/welcome"
    wav_type = {"Content-Type": "audio/wav"}

    async def too_large_stream() -> AsyncIterator[bytes]:
        block = b"\0" * (1 << 20)
        for _ in range(MAX_PROMPT_BYTES // len(block) + 1):
            yield block

    async def scenario(client: Client) -> None:
        resp = await client.put(url, data=b"this is not a WAV file", headers={**ACME, **wav_type})
        message = await expect_error(resp, 400, "invalid_audio")
        assert "not a usable WAV" in message
        resp = await client.put(url, data=b"", headers={**ACME, **wav_type})
        await expect_error(resp, 400, "invalid_audio")
        resp = await client.put(url, data=stereo_wav(8000, 0.1),
                                headers={**ACME, "Content-Type": "text/plain"})
        await expect_error(resp, 415, "unsupported_media_type")
        # declared too large (Content-Length), then streamed too large (chunked)
        resp = await client.put(url, data=io.BytesIO(b"\0" * (MAX_PROMPT_BYTES + 1)),
                                headers={**ACME, **wav_type})
        await expect_error(resp, 413, "too_large")
        resp = await client.put(url, data=too_large_stream(), headers={**ACME, **wav_type})
        await expect_error(resp, 413, "too_large")
        resp = await client.put(url, data=stereo_wav(8000, 0.1), headers={**OPERATOR, **wav_type})
        await expect_error(resp, 400, "bad_request")
        resp = await client.get("/api/v1/prompts", headers=OPERATOR)
        await expect_error(resp, 400, "bad_request")
        # still serving after all that: an octet-stream upload is fine
        resp = await client.put(url, data=stereo_wav(8000, 0.1),
                                headers={**ACME, "Content-Type": "application/octet-stream"})
        assert resp.status == 201

    serve(backend, scenario)
    assert [p.name for p in backend.prompts.list("acme")] == ["welcome"]
    assert backend.prompts.list("globex") == []


def test_prompt_upload_over_the_storage_quota_is_refused(backend: FakeBackend) -> None:
    """The quota counts everything in the tenant's storage (voicemail, recordings...);
    a replaced prompt no longer counts; another tenant is not affected."""
    backend.quotas["acme"] = {"storage_mb": 1}
    backend.quotas["globex"] = {"storage_mb": 1}
    url = "/api/v1/prompts/en-us/welcome"
    wav_type = {"Content-Type": "audio/wav"}
    one_second = stereo_wav(16000, 1.0)  # stored as 44 + 16000 bytes
    messages = backend.prompts.root / "acme" / "voicemail" / "1001"
    messages.mkdir(parents=True)
    (messages / "old.wav").write_bytes(b"\0" * ((1 << 20) - 20000))

    async def scenario(client: Client) -> None:
        resp = await client.put(url, data=one_second, headers={**ACME, **wav_type})
        assert resp.status == 201, await resp.text()
        # the same prompt again replaces it: it fits
        resp = await client.put(url, data=one_second, headers={**ACME, **wav_type})
        assert resp.status == 201, await resp.text()
        resp = await client.put("/api/v1/prompts/en-us/bye", data=one_second,
                                headers={**ACME, **wav_type})
        message = await expect_error(resp, 413, "quota_exceeded")
        assert "storage quota" in message
        resp = await client.put("/api/v1/prompts/en-us/bye", data=one_second,
                                headers={**OPERATOR, **wav_type}, params={"tenant": "acme"})
        await expect_error(resp, 413, "quota_exceeded")
        resp = await client.put("/api/v1/prompts/en-us/bye", data=one_second,
                                headers={**GLOBEX, **wav_type})
        assert resp.status == 201
        # room made: it fits again
        (messages / "old.wav").unlink()
        resp = await client.put("/api/v1/prompts/en-us/bye", data=one_second,
                                headers={**ACME, **wav_type})
        assert resp.status == 201

    serve(backend, scenario)
    assert [p.name for p in backend.prompts.list("acme")] == ["bye", "welcome"]


# --------------------------------------------------------------------------- tenancy
def test_a_suspended_tenants_token_is_refused_the_operator_still_acts_for_it(
        backend: FakeBackend) -> None:
    async def scenario(client: Client) -> None:
        for method, path in (("GET", "/api/v1/ports"), ("GET", "/api/v1/prompts"),
                             ("PUT", "/api/v1/prompts/en-us/welcome"),
                             ("POST", "/api/v1/calls"), ("GET", "/api/v1/nothing-here")):
            resp = await client.request(method, path, headers=INITECH)
            message = await expect_error(resp, 403, "tenant_suspended")
            assert "initech" in message
        resp = await client.get("/api/v1/prompts", headers=OPERATOR,
                                params={"tenant": "initech"})
        assert resp.status == 200 and await resp.json() == {"prompts": []}

    serve(backend, scenario)


@pytest.mark.parametrize(("refusal", "status", "error_id"), [
    (CallRefused("quota_exceeded", "acme holds 2 PSTN calls, its limit"), 429,
     "quota_exceeded"),
    (CallRefused("tenant_suspended", "acme is suspended"), 403, "tenant_suspended"),
    (ValueError("acme has no flow 'nope'"), 400, "bad_request"),
])
def test_outbound_call_refusals_have_their_own_ids(
        backend: FakeBackend, refusal: ValueError, status: int, error_id: str) -> None:
    body = {"number": "013800000000", "flow": "notice"}

    async def scenario(client: Client) -> None:
        resp = await client.post("/api/v1/calls", json=body, headers=ACME)
        assert resp.status == 201 and await resp.json() == {"call": "c-new"}
        backend.refusal = refusal
        resp = await client.post("/api/v1/calls", json=body, headers=ACME)
        assert await expect_error(resp, status, error_id) == str(refusal)

    serve(backend, scenario)


# --------------------------------------------------------------------------- serving
def test_start_api_serves_on_a_tcp_port(backend: FakeBackend) -> None:
    async def main() -> None:
        runner = await start_api(backend, "127.0.0.1", 0)
        try:
            host, port = runner.addresses[0][:2]
            async with aiohttp.ClientSession() as session:
                async with session.get(f"http://{host}:{port}/api/v1/health") as resp:
                    assert await resp.json() == {"ok": True}
                async with session.get(f"http://{host}:{port}/api/v1/ports",
                                       headers=ACME) as resp:
                    assert (await resp.json())["node"] == "node-1"
        finally:
            await runner.cleanup()

    asyncio.run(main())
