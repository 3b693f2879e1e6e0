"""Voicemail store, the mailbox flow action (PIN, lockout) and PIN hashing."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from appliance.ivr.voicemail import (
    LOCK_SECONDS,
    MAX_FAILURES,
    MailboxActions,
    VoicemailError,
    VoicemailStore,
)
from appliance.media import tones
from appliance.media.wav import write_wav
from appliance.passwords import hash_secret, is_hash, verify
from appliance.plan import Plan, PlanError


def test_pin_hash_round_trip_and_malformed() -> None:
    h = hash_secret("1234")
    assert is_hash(h) and "1234" not in h
    assert verify("1234", h) and not verify("1235", h)
    assert hash_secret("1234") != h  # salted
    assert not verify("1234", "plain") and not verify("1234", "scrypt$99999999$8$1$AA==$AA==")


def test_deposit_list_mark_delete(tmp_path: Path) -> None:
    store = VoicemailStore(tmp_path)
    audio = tones.tone(700, 1.5)
    first = store.deposit("acme", "1001", audio, caller="+8613800", call="c1", received=1000.0)
    second = store.deposit("acme", "1001", audio[:8000], caller="555", call="c2",
                           received=2000.0)
    assert [m.id for m in store.list("acme", "1001")] == [first.id, second.id]
    assert first.seconds == 1.5 and first.status == "new"
    assert np.array_equal(store.read_audio("acme", "1001", first.id), audio)
    store.mark("acme", "1001", first.id, "saved")
    assert [m.id for m in store.list("acme", "1001")] == [second.id, first.id]  # new first
    assert store.counts("acme", "1001") == (1, 1)
    store.delete("acme", "1001", second.id)
    assert store.counts("acme", "1001") == (0, 1)
    assert sorted(p.name for p in (tmp_path / "acme/voicemail/1001").iterdir()) == [
        f"{first.id}.json", f"{first.id}.wav"]
    with pytest.raises(VoicemailError, match="no message"):
        store.get("acme", "1001", second.id)
    with pytest.raises(VoicemailError, match="status"):
        store.mark("acme", "1001", first.id, "urgent")


def test_mailbox_full(tmp_path: Path) -> None:
    store = VoicemailStore(tmp_path, max_messages=2)
    for i in range(2):
        store.deposit("acme", "1001", tones.tone(500, 0.1), caller="1", call=str(i))
    with pytest.raises(VoicemailError, match="full"):
        store.deposit("acme", "1001", tones.tone(500, 0.1), caller="1", call="x")


@pytest.mark.parametrize("tenant,box,msg", [
    ("../globex", "1001", None), ("acme", "../1", None), ("acme", "1001", "../../x"),
    ("acme", "1001", "0000000000000-zzzzzz"), ("Acme", "1001", None),
])
def test_names_are_validated(tmp_path: Path, tenant: str, box: str, msg: str | None) -> None:
    store = VoicemailStore(tmp_path)
    with pytest.raises(VoicemailError):
        if msg is None:
            store.list(tenant, box)
        else:
            store.get(tenant, box, msg)


def test_symlink_to_other_tenant_is_refused(tmp_path: Path) -> None:
    store = VoicemailStore(tmp_path)
    store.deposit("globex", "2001", tones.tone(500, 0.5), caller="1", call="c")
    (tmp_path / "acme" / "voicemail").mkdir(parents=True)
    os.symlink(tmp_path / "globex" / "voicemail" / "2001",
               tmp_path / "acme" / "voicemail" / "2001")
    with pytest.raises(VoicemailError, match="outside"):
        store.list("acme", "2001")


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def actions(tmp_path: Path) -> tuple[MailboxActions, VoicemailStore, Clock]:
    store = VoicemailStore(tmp_path)
    pins = {("acme", "1001"): hash_secret("2468")}
    clock = Clock()
    return MailboxActions(store, lambda t, m: pins.get((t, m)), clock), store, clock


def test_login_message_mark_delete(tmp_path: Path) -> None:
    act, store, _ = actions(tmp_path)
    msg = store.deposit("acme", "1001", tones.tone(500, 1.0), caller="555", call="c")
    summary = act.run("acme", {"op": "login", "mailbox": "1001", "pin": "2468"})
    assert summary == {"new": 1, "saved": 0, "total": 1, "ids": [msg.id]}
    detail = act.run("acme", {"op": "message", "mailbox": "1001", "id": msg.id})
    assert detail["path"] == f"voicemail/1001/{msg.id}.wav" and detail["caller"] == "555"
    assert act.run("acme", {"op": "mark", "mailbox": "1001", "id": msg.id,
                            "status": "saved"}) == "saved"
    assert act.run("acme", {"op": "count", "mailbox": "1001"}) == {
        "new": 0, "saved": 1, "total": 1}
    assert act.run("acme", {"op": "delete", "mailbox": "1001", "id": msg.id}) is True
    assert act.run("acme", {"op": "count", "mailbox": "1001"})["total"] == 0


def test_wrong_pins_lock_the_mailbox_for_a_while(tmp_path: Path) -> None:
    act, _, clock = actions(tmp_path)
    for _ in range(MAX_FAILURES):
        with pytest.raises(VoicemailError, match="wrong PIN"):
            act.run("acme", {"op": "login", "mailbox": "1001", "pin": "0000"})
    with pytest.raises(VoicemailError, match="locked"):  # even the right PIN now
        act.run("acme", {"op": "login", "mailbox": "1001", "pin": "2468"})
    clock.now += LOCK_SECONDS + 1
    assert act.run("acme", {"op": "login", "mailbox": "1001", "pin": "2468"})["total"] == 0


def test_other_tenants_mailbox_does_not_exist_for_a_flow(tmp_path: Path) -> None:
    act, store, _ = actions(tmp_path)
    store.deposit("acme", "1001", tones.tone(500, 1.0), caller="555", call="c")
    with pytest.raises(VoicemailError, match="no mailbox 1001"):
        act.run("globex", {"op": "count", "mailbox": "1001"})


def test_plan_mailboxes_need_hashed_pins() -> None:
    base = {"id": "acme", "domain": "acme.example", "caller_id": "+861000",
            "extensions": [{"number": "1001", "password": "secret-1001"}]}
    with pytest.raises(PlanError, match="PIN hash"):
        Plan.from_dict({"version": 1, "tenants": [
            {**base, "mailboxes": [{"number": "1001", "pin": "1234"}]}]})
    with pytest.raises(PlanError, match="not an extension"):
        Plan.from_dict({"version": 1, "tenants": [
            {**base, "mailboxes": [{"number": "80", "pin": hash_secret("1"),
                                    "extension": "1009"}]}]})
    plan = Plan.from_dict({"version": 1, "tenants": [
        {**base, "mailboxes": [{"number": "1001", "pin": hash_secret("1")},
                               {"number": "80", "pin": hash_secret("1")}]}]})
    acme = plan.tenant("acme")
    assert acme.mailbox("1001").extension == "1001"  # the extension of the same number
    assert acme.mailbox("80").extension is None
    again = Plan.from_dict(plan.to_dict())
    assert again.tenant("acme").mailboxes == acme.mailboxes


def test_greeting_moves_a_recording_of_the_tenant(tmp_path: Path) -> None:
    act, _, _ = actions(tmp_path)
    rec = tmp_path / "acme" / "recordings"
    rec.mkdir(parents=True)
    write_wav(rec / "greeting-1001.wav", tones.tone(440, 1.0))
    assert act.run("acme", {"op": "greeting", "mailbox": "1001",
                            "recording": "recordings/greeting-1001.wav"}) is True
    assert not (rec / "greeting-1001.wav").exists()
    assert (tmp_path / "acme/voicemail/1001/greeting.wav").is_file()
    for bad in ("recordings/../../globex/recordings/x.wav", "voicemail/1001/m.wav",
                "recordings/missing.wav"):
        with pytest.raises(VoicemailError):
            act.run("acme", {"op": "greeting", "mailbox": "1001", "recording": bad})
