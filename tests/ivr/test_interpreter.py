"""The flow interpreter with a fake clock: every node type, R-4.4 digit rules through
flows, retries, type-ahead, shortcuts (R-4.6), and the trace."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from appliance.ivr.flow import Flow, FlowError, flow_from_dict, load_flow
from appliance.ivr.interpreter import (
    HangupCall,
    Interpreter,
    PlayPrompt,
    StopPrompt,
    TransferCall,
)

DEMO = Path(__file__).resolve().parents[2] / "appliance" / "ivr" / "samples" / "acme-main.yaml"


def demo() -> Flow:
    return load_flow(DEMO.read_text())


class Run:
    """Drives an interpreter like the call control does; prompts end on request."""

    def __init__(self, flow: Flow, **kw: Any) -> None:
        self.ivr = Interpreter(flow, **kw)
        self.now = 0.0
        self.out: list[Any] = []
        self.ivr.start(self.now)
        self._drain()

    def _drain(self) -> list[Any]:
        cmds = self.ivr.commands()
        self.out += cmds
        return cmds

    def prompt_done(self) -> list[Any]:
        self.ivr.prompt_done(self.now)
        return self._drain()

    def keys(self, keys: str, gap: float = 0.2) -> list[Any]:
        got = []
        for k in keys:
            self.advance(gap)
            self.ivr.digit(k, self.now)
            got += self._drain()
        return got

    def advance(self, seconds: float) -> list[Any]:
        end = self.now + seconds
        got = []
        while True:
            deadline = self.ivr.next_deadline()
            if deadline is None or deadline > end:
                break
            self.now = max(self.now, deadline)
            self.ivr.tick(self.now)
            got += self._drain()
        self.now = end
        return got

    def last_prompt(self) -> str:
        plays = [c for c in self.out if isinstance(c, PlayPrompt)]
        return " | ".join(str(p.get("tts", p)) for p in plays[-1].prompts)

    def transfer(self) -> TransferCall:
        [t] = [c for c in self.out if isinstance(c, TransferCall)]
        return t

    def steps(self, event: str) -> list[dict[str, str]]:
        return [dict(s.detail) | {"node": s.node} for s in self.ivr.trace if s.event == event]


def test_three_level_menu_then_collect_then_transfer_with_data() -> None:
    r = Run(demo())
    assert r.last_prompt() == "Welcome to Acme."
    r.prompt_done()
    assert r.last_prompt().startswith("For sales press 1")
    r.prompt_done()
    r.keys("3")
    assert r.last_prompt().startswith("To pay a bill")
    r.prompt_done()
    r.keys("1")
    r.prompt_done()
    r.keys("1")
    assert r.last_prompt().startswith("Enter your account number")
    r.prompt_done()
    r.keys("12345#")
    r.prompt_done()  # the say node
    t = r.transfer()
    assert (t.kind, t.target) == ("extension", "1001")
    assert dict(t.data) == {"account": "12345", "reason": "billing", "length": "5"}
    assert r.ivr.finished
    assert [s["to"] for s in r.steps("branch")] == []
    assert r.steps("set")[-1] == {"variable": "account", "old": "", "new": "12345",
                                  "node": "account"}


def test_star_clears_entry_and_timeout_ends_variable_entry() -> None:
    r = Run(demo())
    r.prompt_done()
    r.keys("311")  # typed ahead through three menus during their prompts
    assert r.last_prompt().startswith("Enter your account number")
    r.prompt_done()
    r.keys("99*")  # star: start again
    r.keys("4321")
    r.advance(3.1)  # inter-digit timeout ends variable-length entry
    r.prompt_done()
    assert dict(r.transfer().data)["account"] == "4321"
    collected = r.steps("collected")
    assert collected[-1]["ended_by"] == "timeout"


def test_shortcut_code_jumps_to_a_deep_node() -> None:
    r = Run(demo())
    r.keys("*0")  # during the welcome prompt (barge-in)
    assert any(isinstance(c, StopPrompt) for c in r.out)
    assert r.last_prompt().startswith("Enter your account number")
    assert r.steps("shortcut") == [{"to": "account", "node": "welcome"}]


def test_menu_path_typed_ahead_with_star_separators() -> None:
    r = Run(demo())
    r.keys("3*1*1")  # R-4.6: three menu levels in one go, during the welcome prompt
    assert r.last_prompt().startswith("Enter your account number")
    assert [s["value"] for s in r.steps("collected")] == ["3", "1", "1"]
    assert len(r.steps("separator")) == 2 and not r.steps("shortcut")


def test_menu_invalid_and_no_input_retries_then_failure_branch() -> None:
    r = Run(demo())
    r.prompt_done()
    r.prompt_done()
    r.keys("7")  # not an option
    assert r.last_prompt().startswith("That is not a valid choice. | For sales")
    r.prompt_done()
    r.advance(5.1)  # no input
    assert r.last_prompt().startswith("Sorry, I did not hear a choice. | For sales")
    r.prompt_done()
    r.advance(5.1)  # third failure: retries (2) exhausted
    assert r.last_prompt() == "Goodbye."
    r.prompt_done()
    assert isinstance(r.out[-1], HangupCall) and r.ivr.finished
    assert [s["reason"] for s in r.steps("failed")] == ["no input"]


def test_collect_too_short_is_invalid_and_retried() -> None:
    r = Run(demo())
    r.keys("311")
    r.prompt_done()
    r.keys("12#")
    assert r.last_prompt().startswith("An account number has four to ten digits. | Enter")
    assert r.steps("invalid")[-1]["value"] == "12"


def flow_of(nodes: dict[str, Any], **top: Any) -> Flow:
    return flow_from_dict({"flow": "t", "version": 1, "start": next(iter(nodes)),
                           "nodes": nodes, **top})


def test_fixed_length_completes_on_last_digit_and_branch_on_expression() -> None:
    f = flow_of({
        "pin": {"type": "collect", "variable": "pin", "mode": "fixed", "length": 4,
                "prompt": "PIN", "next": "check"},
        "check": {"type": "branch", "conditions": [
            {"when": "number(pin) % 2 == 0", "goto": "even"}], "else": "odd"},
        "even": {"type": "transfer", "number": "013800138000", "data": {"pin": "pin"}},
        "odd": {"type": "hangup"},
    })
    r = Run(f)
    r.prompt_done()
    r.keys("1234")  # no # needed
    t = r.transfer()
    assert (t.kind, t.target, dict(t.data)) == ("number", "013800138000", {"pin": "1234"})
    r = Run(f)
    r.prompt_done()
    r.keys("1235")
    assert isinstance(r.out[-1], HangupCall)


def test_set_variables_and_expression_error_ends_the_call() -> None:
    f = flow_of({
        "a": {"type": "set", "variables": {"n": "tries + 1", "msg": "concat('n=', n)"},
              "next": "b"},
        "b": {"type": "set", "variables": {"bad": "number('abc')"}, "next": "c"},
        "c": {"type": "hangup"},
    }, variables={"tries": 2})
    r = Run(f)
    assert r.ivr.variables["n"] == 3 and r.ivr.variables["msg"] == "n=3"
    assert isinstance(r.out[-1], HangupCall)
    assert "expression error at b" in r.out[-1].reason


def test_a_loop_without_input_is_stopped() -> None:
    f = flow_of({"a": {"type": "set", "variables": {"x": "1"}, "next": "b"},
                 "b": {"type": "set", "variables": {"x": "2"}, "next": "a"}})
    r = Run(f)
    assert isinstance(r.out[-1], HangupCall) and "loop" in r.out[-1].reason


def test_call_variables_are_visible_to_the_flow() -> None:
    f = flow_of({"t": {"type": "transfer", "extension": "caller"}})
    r = Run(f, variables={"caller": "1002"})
    assert r.transfer().target == "1002"


@pytest.mark.parametrize(("mutate", "path", "line"), [
    (lambda d: d["nodes"]["main"]["options"].update({"1": "nowhere"}),
     "nodes.main.options.1", None),
    (lambda d: d["nodes"]["account"].update(mode="sometimes"), "nodes.account.mode", None),
    (lambda d: d["nodes"]["to_agent"]["data"].update(account="length(account"),
     "nodes.to_agent.data.account", None),
    (lambda d: d.update(start="missing"), "start", None),
    (lambda d: d["shortcuts"].update({"3*x": "account"}), "shortcuts.3*x", None),
    (lambda d: d["nodes"]["welcome"].update(colour="blue"), "nodes.welcome.colour", None),
])
def test_invalid_flows_are_refused_with_the_field(mutate: Any, path: str,
                                                  line: int | None) -> None:
    doc = yaml.safe_load(DEMO.read_text())
    mutate(doc)
    with pytest.raises(FlowError) as err:
        flow_from_dict(doc)
    assert err.value.path == path


def test_yaml_errors_name_the_line() -> None:
    text = DEMO.read_text().replace('options: {"1": sales,', 'options: {"1": nowhere,')
    with pytest.raises(FlowError) as err:
        load_flow(text)
    line = next(i for i, t in enumerate(text.splitlines(), 1) if '"1": nowhere' in t)
    assert err.value.path == "nodes.main.options.1" and err.value.line == line
    assert f"line {line}" in str(err.value)
    with pytest.raises(FlowError) as err:
        load_flow("flow: x\nnodes: [unclosed\n")
    assert err.value.line == 3 or err.value.line == 2


def test_shortcut_after_an_invalid_key() -> None:
    r = Run(demo())
    r.prompt_done()
    r.prompt_done()
    r.keys("7")  # not an option: asked again
    r.keys("*0")
    assert r.steps("shortcut") == [{"to": "account", "node": "main"}]


def test_data_action_result_and_error_branch() -> None:
    from appliance.ivr.interpreter import RunAction

    f = flow_of({
        "lookup": {"type": "http", "method": "POST", "url": "concat('http://h/acct/', id)",
                   "body": {"id": "id", "twice": "number(id) * 2"}, "result": "acct",
                   "timeout": 2, "next": "ok", "on_error": "failed"},
        "ok": {"type": "transfer", "extension": "1001", "data": {"name": "acct.json.name"}},
        "failed": {"type": "hangup"},
    }, variables={"id": "42"})
    r = Run(f)
    [action] = [c for c in r.out if isinstance(c, RunAction)]
    assert action.kind == "http" and action.timeout == 2.0
    assert action.params == {"method": "POST", "url": "http://h/acct/42",
                             "body": {"id": "42", "twice": 84}}
    r.keys("5")  # typed while the action runs: kept for later
    assert r.ivr.typeahead == ["5"]
    r.ivr.action_done(True, {"status": 200, "json": {"name": "Ada"}}, None, r.now)
    r._drain()
    assert dict(r.transfer().data) == {"name": "Ada"}
    # failure goes to on_error, with the error text in <result>_error
    r = Run(f)
    r.ivr.action_done(False, None, "timeout after 2.0 s", r.now)
    r._drain()
    assert isinstance(r.out[-1], HangupCall)
    assert r.ivr.variables["acct_error"] == "timeout after 2.0 s"
    assert r.steps("action_done")[-1]["ok"] == "false"


def test_action_nodes_are_validated() -> None:
    with pytest.raises(FlowError) as err:
        flow_of({"q": {"type": "sql", "database": "crm", "statement": "select 1",
                       "procedure": "p"}})
    assert "exactly one of statement, procedure" in str(err.value)
    with pytest.raises(FlowError) as err:
        flow_of({"f": {"type": "file", "op": "chmod", "path": "'x'"}})
    assert err.value.path == "nodes.f.op"
    with pytest.raises(FlowError) as err:
        flow_of({"s": {"type": "socket", "host": "h", "port": "80", "payload": "'x'"}})
    assert err.value.path == "nodes.s.port"
