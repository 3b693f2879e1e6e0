"""``python -m controller init``: schema plus first super-admin, who can then get a token."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from controller.app import create_app

REPO = Path(__file__).resolve().parents[2]


def test_init_creates_an_admin_who_can_log_in(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'c.sqlite'}"
    out = subprocess.run([sys.executable, "-m", "controller", "init", "--db", url,
                          "--admin", "root"], capture_output=True, text=True, cwd=REPO,
                         timeout=60, check=True).stdout
    password = re.search(r"password: (\S+)", out)
    assert password is not None
    again = subprocess.run([sys.executable, "-m", "controller", "init", "--db", url,
                            "--admin", "root"], capture_output=True, text=True, cwd=REPO,
                           timeout=60)
    assert again.returncode == 1 and "exists" in again.stderr
    app = create_app(url)
    with app.test_client() as c:
        r = c.post("/api/v1/auth/tokens", json={"staff_id": "root",
                                                "password": password.group(1)})
        assert r.status_code == 201 and r.json["role"] == "super_admin"
    app.extensions["branchline.engine"].dispose()
