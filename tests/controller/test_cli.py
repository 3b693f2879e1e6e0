"""``python -m controller``: init (schema plus first super-admin, who can then get a
token), import-plan (a standalone node's plan under the controller), claim and purge."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import yaml

from controller.app import create_app
from tests.e2e.conftest import test_plan as e2e_plan

REPO = Path(__file__).resolve().parents[2]


def cli(tmp_path: Path, url: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "controller", args[0], "--db", url,
                           "--state", str(tmp_path / "state"), *args[1:]],
                          capture_output=True, text=True, cwd=REPO, timeout=60)


def test_init_creates_an_admin_who_can_log_in(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'c.sqlite'}"
    out = cli(tmp_path, url, "init", "--admin", "root")
    assert out.returncode == 0, out.stderr
    password = re.search(r"password: (\S+)", out.stdout)
    assert password is not None
    again = cli(tmp_path, url, "init", "--admin", "root")
    assert again.returncode == 1 and "exists" in again.stderr
    app = create_app(url)
    with app.test_client() as c:
        r = c.post("/api/v1/auth/tokens", json={"staff_id": "root",
                                                "password": password.group(1)})
        assert r.status_code == 201 and r.json["role"] == "super_admin"
    app.extensions["branchline.engine"].dispose()


def test_import_plan_then_claim_code_then_purge(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'c.sqlite'}"
    plan_file = tmp_path / "plan.yaml"
    plan_file.write_text(yaml.safe_dump(e2e_plan(5060)))
    out = cli(tmp_path, url, "import-plan", str(plan_file))
    assert out.returncode == 0, out.stderr
    again = cli(tmp_path, url, "import-plan", str(plan_file))
    assert again.returncode == 1 and "exists" in again.stderr
    claim = cli(tmp_path, url, "claim", "e2e")
    assert claim.returncode == 0, claim.stderr
    assert re.search(r"[A-Z2-9]{4}-[A-Z2-9]{4}-[A-Z2-9]{4}", claim.stdout)
    unknown = cli(tmp_path, url, "claim", "nowhere")
    assert unknown.returncode == 1 and "no node nowhere" in unknown.stderr
    purged = cli(tmp_path, url, "purge")
    assert purged.returncode == 0 and "nothing" in purged.stdout
