"""Record, voicemail, recognise and sub-flow nodes of the interpreter (fake clock)."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from appliance.ivr.flow import FlowError, flow_from_dict
from appliance.ivr.interpreter import (
    VOICEMAIL_GREETING,
    HangupCall,
    Interpreter,
    PlayPrompt,
    RunAction,
    StartCapture,
    StopCapture,
    StopPrompt,
    TransferCall,
)
from appliance.ivr.system import SYSTEM_FLOWS
from tests.ivr.test_interpreter import Run


def flow(text: str) -> Any:
    return flow_from_dict(yaml.safe_load(text))


RECORD = flow("""
flow: rec
version: 1
start: rec
nodes:
  rec:
    type: record
    prompt: "Say your name after the tone"
    file: "concat('name-', caller)"
    max_seconds: 30
    silence_seconds: 3
    end_keys: "#*"
    result: name
    next: thanks
    on_error: failed
  thanks: {type: play, prompt: {recording: "name.path"}}
  failed: {type: hangup, prompt: "Sorry"}
""")


def said(r: Run) -> str:
    """The last prompt's English text (system flows speak three languages)."""
    [ref] = [c for c in r.out if isinstance(c, PlayPrompt)][-1].prompts
    return str(ref.get("en-us", ref).get("tts", ref))


def captures(r: Run) -> list[StartCapture]:
    return [c for c in r.out if isinstance(c, StartCapture)]


def test_record_plays_prompt_then_captures_with_evaluated_name() -> None:
    r = Run(RECORD, variables={"caller": "8613800000000"})
    assert r.last_prompt() == "Say your name after the tone"
    assert captures(r) == []  # the capture waits for the prompt
    r.prompt_done()
    [cap] = captures(r)
    assert (cap.kind, cap.target, cap.max_seconds, cap.silence_seconds, cap.beep) == (
        "record", "name-8613800000000", 30.0, 3.0, True)
    r.keys("5")  # not an end key: ignored
    assert not [c for c in r.out if isinstance(c, StopCapture)]
    r.keys("*")
    assert [c for c in r.out if isinstance(c, StopCapture)] == [StopCapture(cap.seq)]
    r.ivr.capture_done(cap.seq, True, {"path": "recordings/name-1.wav", "seconds": 2.5},
                       None, r.now)
    r._drain()
    # the next node plays what was recorded, its path computed from the result
    assert r.out[-1] == PlayPrompt(({"recording": "recordings/name-1.wav"},), "en-us", True)
    assert r.ivr.variables["name"]["seconds"] == 2.5
    assert r.steps("captured")[0]["ok"] == "true"


def test_key_during_prompt_skips_to_capture_and_stale_results_are_ignored() -> None:
    r = Run(RECORD, variables={"caller": "1"})
    r.keys("9")
    assert any(isinstance(c, StopPrompt) for c in r.out)
    [cap] = captures(r)
    r.ivr.capture_done(cap.seq + 1, True, {}, None, r.now)  # not this capture's
    assert r.ivr.mode == "capturing"
    r.ivr.capture_done(cap.seq, False, None, "disk full", r.now)
    r._drain()
    assert r.ivr.variables["name_error"] == "disk full"
    assert r.last_prompt() == "Sorry"


def test_voicemail_plays_the_owners_greeting_or_the_default() -> None:
    vm = flow("""
flow: vm
version: 1
start: leave
nodes:
  leave: {type: voicemail, mailbox: 1001, next: bye}
  bye: {type: hangup}
""")
    r = Run(vm, language="yue")
    # the owner's recorded greeting, else the default in the call's language
    assert r.out[-1] == PlayPrompt(({"recording": "voicemail/1001/greeting.wav",
                                     "otherwise": VOICEMAIL_GREETING},), "yue", True)
    r.prompt_done()
    [cap] = captures(r)
    assert (cap.kind, cap.target, cap.max_seconds) == ("voicemail", "1001", 120.0)
    r.ivr.capture_done(cap.seq, True, {"mailbox": "1001", "id": "x"}, None, r.now)
    r._drain()
    assert isinstance(r.out[-1], HangupCall)


YESNO = flow("""
flow: asr
version: 1
start: ask
nodes:
  ask:
    type: recognise
    grammar: yesno
    prompt: "Is that right? Say yes or no."
    no_input_prompt: "I did not hear you."
    invalid_prompt: "Sorry, I did not understand."
    variable: answer
    retries: 1
    next: done
    on_failure: failed
  done: {type: hangup}
  failed: {type: hangup, prompt: "Goodbye"}
""")


def test_recognise_speech_sets_the_choice() -> None:
    r = Run(YESNO)
    r.prompt_done()
    [cap] = captures(r)
    assert (cap.kind, cap.grammar, cap.silence_seconds) == ("recognise", "yesno", 5.0)
    r.ivr.capture_done(cap.seq, True, {"speech": True, "choice": "yes", "text": "yes"},
                       None, r.now)
    r._drain()
    assert r.ivr.variables["answer"] == "yes"
    assert r.steps("set")[-1]["by"] == "speech"


def test_recognise_dtmf_fallback_and_retries() -> None:
    r = Run(YESNO)
    r.prompt_done()
    first = captures(r)[-1]
    # nothing recognised: the invalid prompt, then the question again, then listen again
    r.ivr.capture_done(first.seq, True, {"speech": True, "choice": None, "text": ""},
                       None, r.now)
    r._drain()
    assert r.last_prompt() == "Sorry, I did not understand. | Is that right? Say yes or no."
    r.prompt_done()
    second = captures(r)[-1]
    assert second.seq != first.seq
    r.keys("2")  # the keypad answers for the caller: 2 is "no" for yesno
    assert StopCapture(second.seq) in r.out
    assert r.ivr.variables["answer"] == "no"
    assert r.steps("set")[-1]["by"] == "dtmf"


def test_recognise_no_speech_exhausts_retries_to_failure() -> None:
    r = Run(YESNO)
    for _ in range(2):
        r.prompt_done()
        cap = captures(r)[-1]
        r.ivr.capture_done(cap.seq, True, {"speech": False, "choice": None}, None, r.now)
        r._drain()
    assert r.last_prompt() == "Goodbye"
    assert [s["reason"] for s in r.steps("failed")] == ["no input"]


def test_recognise_validation() -> None:
    with pytest.raises(FlowError, match="no choice 'billing'"):
        flow("""
flow: a
version: 1
start: q
nodes:
  q: {type: recognise, variable: v, choices: {sales: [sales]}, dtmf: {"1": billing}}
""")
    with pytest.raises(FlowError, match="lower-case phrases"):
        flow("""
flow: a
version: 1
start: q
nodes:
  q: {type: recognise, variable: v, choices: {sales: ["SALES!"]}}
""")


MAIN = flow("""
flow: main
version: 1
start: hello
shortcuts: {"99": top}
nodes:
  hello: {type: subflow, flow: helper, params: {who: "'world'"}, next: after}
  after: {type: play, prompt: "back in main"}
  top: {type: play, prompt: "top"}
""")
HELPER = flow("""
flow: helper
version: 1
start: greet
variables: {who: "nobody", count: 7}
nodes:
  greet: {type: set, variables: {greeting: "concat('hello ', who)"}, next: wait}
  wait: {type: menu, prompt: "press 1", options: {"1": done}}
  done: {type: set, variables: {count: "count + 1"}}
""")


def test_subflow_shares_variables_and_returns_to_next() -> None:
    r = Run(MAIN, flows={"helper": HELPER})
    assert r.ivr.variables["greeting"] == "hello world"  # params win over defaults
    assert r.last_prompt() == "press 1"
    r.prompt_done()
    r.keys("1")
    assert r.ivr.variables["count"] == 8
    assert r.last_prompt() == "back in main"
    assert [s.flow for s in r.ivr.trace if s.event == "enter"] == [
        "main", "helper", "helper", "helper", "main"]


def test_shortcut_inside_a_subflow_unwinds_to_the_top_flow() -> None:
    r = Run(MAIN, flows={"helper": HELPER})
    r.keys("99")
    r.advance(3)
    assert r.last_prompt() == "top"
    r.prompt_done()
    assert isinstance(r.out[-1], HangupCall)  # top ends the main flow: no return


def test_missing_subflow_and_recursion_end_the_call() -> None:
    r = Run(MAIN, flows={})
    assert "sub-flow helper unavailable" in r.out[-1].reason
    loop = flow("""
flow: loop
version: 1
start: again
nodes:
  again: {type: subflow, flow: loop}
""")
    r = Run(loop, flows={"loop": loop})
    assert "deeper than" in r.out[-1].reason


def test_system_voicemail_flow_logs_in_and_walks_messages() -> None:
    r = Run(SYSTEM_FLOWS["sys-voicemail"], variables={"mailbox": "1001"})
    assert said(r).startswith("Please enter your PIN")
    r.prompt_done()
    r.keys("1234#")
    [login] = [c for c in r.out if isinstance(c, RunAction)]
    assert (login.kind, dict(login.params)) == (
        "mailbox", {"op": "login", "mailbox": "1001", "pin": "1234"})
    r.ivr.action_done(True, {"new": 1, "saved": 0, "total": 1, "ids": ["m1"]}, None, r.now)
    r._drain()
    r.prompt_done()  # "You have"
    r.prompt_done()  # the count
    r.prompt_done()  # "new messages"
    fetch = [c for c in r.out if isinstance(c, RunAction)][-1]
    assert dict(fetch.params) == {"op": "message", "mailbox": "1001", "id": "m1"}
    r.ivr.action_done(True, {"id": "m1", "caller": "555", "path": "voicemail/1001/m1.wav"},
                      None, r.now)
    r._drain()
    r.prompt_done()  # "Message from"
    r.prompt_done()  # the caller's number
    assert r.out[-1] == PlayPrompt(({"recording": "voicemail/1001/m1.wav"},), "en-us", True)
    r.prompt_done()
    r.prompt_done()  # the message menu prompt
    r.keys("3")
    delete = [c for c in r.out if isinstance(c, RunAction)][-1]
    assert dict(delete.params) == {"op": "delete", "mailbox": "1001", "id": "m1"}


def test_system_voicemail_wrong_pin_three_times_hangs_up() -> None:
    r = Run(SYSTEM_FLOWS["sys-voicemail"])
    assert said(r).startswith("Please enter your mailbox")
    for _ in range(3):
        r.prompt_done()
        if r.ivr.node_id == "ask_box":
            r.keys("1001#")
            r.prompt_done()
        r.keys("0000#")
        r.ivr.action_done(False, None, "wrong PIN", r.now)
        r._drain()
    r.prompt_done()
    assert isinstance(r.out[-1], HangupCall)
    assert r.ivr.variables["vm_tries"] == 3


def test_interpreter_requires_known_subflow_in_plan() -> None:
    from appliance.plan import Plan, PlanError

    doc = {"version": 1, "tenants": [{
        "id": "acme", "domain": "acme.example", "caller_id": "+861000",
        "flows": {"main": MAIN.source}}]}
    with pytest.raises(PlanError, match="has no flow 'helper'"):
        Plan.from_dict(doc)
    doc["tenants"][0]["flows"]["helper"] = HELPER.source
    plan = Plan.from_dict(doc)
    assert set(plan.tenant("acme").flows) == {"main", "helper", "sys-voicemail"}
    assert isinstance(Interpreter(MAIN), Interpreter)


def test_secret_collect_is_masked_in_the_trace() -> None:
    r = Run(SYSTEM_FLOWS["sys-voicemail"], variables={"mailbox": "1001"})
    assert not r.ivr.secret_input or r.ivr.mode == "prompting"
    r.prompt_done()
    assert r.ivr.secret_input
    r.keys("9753#")
    r.ivr.action_done(False, None, "wrong PIN", r.now)  # login_failed clears vm_pin
    r._drain()
    text = repr(r.ivr.trace)
    assert "9753" not in text and "****" in text
    assert [s["key"] for s in r.steps("key")] == ["*"] * 5
    assert r.ivr.variables["vm_tries"] == 1


def test_transfer_to_a_number_with_caller_id_and_ring_timeout() -> None:
    out = flow("""
flow: out
version: 1
start: go
nodes:
  go: {type: transfer, number: "'0' + target", caller_id: "+862088880077", ring_timeout: 12}
""")
    r = Run(out, variables={"target": "13800000000"})
    [t] = [c for c in r.out if isinstance(c, TransferCall)]
    assert (t.kind, t.target, t.caller_id, t.ring_seconds) == (
        "number", "013800000000", "+862088880077", 12.0)


def test_two_calls_of_one_flow_never_share_variables() -> None:
    """The same Flow object serves every call (and tenant copies of system flows):
    each interpreter has its own variables, the flow's defaults are copied."""
    a = Run(SYSTEM_FLOWS["sys-voicemail"], variables={"mailbox": "1001", "tenant": "acme"})
    b = Run(SYSTEM_FLOWS["sys-voicemail"], variables={"tenant": "globex"})
    a.prompt_done()
    a.keys("1234#")
    assert a.ivr.variables["vm_pin"] == "1234"
    assert b.ivr.variables["vm_pin"] == "" and b.ivr.variables["mailbox"] == ""
    assert SYSTEM_FLOWS["sys-voicemail"].variables["vm_pin"] == ""
