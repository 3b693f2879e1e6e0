"""The flow tools: lint reports the field and line; deploy installs a flow for a tenant
and number, or changes nothing when the flow or the resulting plan is invalid."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from appliance.plan import Plan
from tests.test_plan import DOC

SAMPLE = Path(__file__).resolve().parents[2] / "appliance" / "ivr" / "samples" / "acme-main.yaml"


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "appliance.ivr", *args], capture_output=True, text=True, timeout=60
    )


def test_lint_ok_and_error_with_line(tmp_path: Path) -> None:
    ok = run("lint", str(SAMPLE))
    assert ok.returncode == 0 and ok.stdout.startswith("ok acme-main v1:")
    bad = tmp_path / "bad.yaml"
    text = SAMPLE.read_text().replace("variable: account", "variable: 9account")
    bad.write_text(text)
    out = run("lint", str(bad))
    line = next(i for i, t in enumerate(text.splitlines(), 1) if "variable: 9account" in t)
    assert out.returncode == 1
    assert f"nodes.account.variable (line {line}): variable names are identifiers" in out.stderr


def test_deploy_installs_flow_and_refuses_bad_ones(tmp_path: Path) -> None:
    plan_path = tmp_path / "plan.yaml"
    plan_path.write_text(yaml.safe_dump(DOC))
    flow = tmp_path / "flow.yaml"
    flow.write_text(SAMPLE.read_text().replace('extension: "1002"', 'extension: "1001"'))
    out = run(
        "deploy",
        str(flow),
        "--plan",
        str(plan_path),
        "--tenant",
        "acme",
        "--number",
        "+862088880077",
    )
    assert out.returncode == 0, out.stderr
    plan = Plan.from_dict(yaml.safe_load(plan_path.read_text()))
    assert plan.version == DOC["version"] + 1
    acme = plan.tenant("acme")
    assert acme is not None and "acme-main" in acme.flows
    from appliance.plan import Origin

    route = plan.route(Origin("trunk", trunk="carrier"), "+862088880077")
    assert route.kind == "flow" and route.flow is not None and route.flow.id == "acme-main"
    before = plan_path.read_text()
    # an invalid flow, and a flow for another tenant's number, change nothing
    bad = tmp_path / "bad.yaml"
    bad.write_text(SAMPLE.read_text().replace("next: main", "next: nowhere"))
    assert (
        run(
            "deploy",
            str(bad),
            "--plan",
            str(plan_path),
            "--tenant",
            "acme",
            "--number",
            "+862088880078",
        ).returncode
        == 1
    )
    taken = run(
        "deploy",
        str(flow),
        "--plan",
        str(plan_path),
        "--tenant",
        "globex",
        "--number",
        "+862088880001",
    )
    assert taken.returncode == 1 and "tenants.dids" in taken.stderr
    assert plan_path.read_text() == before


def test_pin_prints_a_hash_the_plan_accepts(capsys: pytest.CaptureFixture[str]) -> None:
    from appliance.ivr.__main__ import main
    from appliance.passwords import verify

    assert main(["pin", "4321"]) == 0
    hashed = capsys.readouterr().out.strip()
    assert verify("4321", hashed) and "4321" not in hashed
    assert main(["pin", "12"]) == 2
