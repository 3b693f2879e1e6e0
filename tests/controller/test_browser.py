"""The controller's web pages in a real browser: Debian's Chromium driven by Playwright
against the controller served over HTTP (werkzeug, SQLite in tmp_path). A super-admin
logs in, creates a tenant, edits its PSTN quota (a refused value first), and switches
the page to Traditional Chinese."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from werkzeug.serving import make_server

from controller.app import create_app
from controller.passwords import hash_password
from controller.store import User

pytestmark = pytest.mark.e2e
CHROMIUM = "/usr/bin/chromium"
ROOT_PASSWORD = "root password 1"


@pytest.fixture
def controller_url(tmp_path: Path) -> Iterator[str]:
    """The controller app served on a free port of 127.0.0.1 from a thread."""
    app = create_app(f"sqlite:///{tmp_path / 'controller.sqlite'}",
                     key_file=tmp_path / "controller.key", secure_cookies=False)
    with app.extensions["branchline.sessions"]() as s:
        s.add(User(staff_id="root", tenant_id=None, role="super_admin", name="Root",
                   password_hash=hash_password(ROOT_PASSWORD), language="en"))
        s.commit()
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, name="controller-web", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        thread.join(5)
        server.server_close()
        app.extensions["branchline.engine"].dispose()


def test_super_admin_creates_a_tenant_sets_its_quota_and_reads_it_in_chinese(
        controller_url: str) -> None:
    sync_api = pytest.importorskip("playwright.sync_api")
    if not os.access(CHROMIUM, os.X_OK):
        pytest.skip(f"{CHROMIUM} missing: make setup installs Debian's chromium")
    with sync_api.sync_playwright() as p:
        # root (as CI runs) needs --no-sandbox
        browser = p.chromium.launch(executable_path=CHROMIUM,
                                    args=["--no-sandbox", "--disable-gpu"])
        try:
            page = browser.new_page(locale="en-US")
            page.set_default_timeout(10_000)
            expect = sync_api.expect

            page.goto(controller_url + "/")
            expect(page).to_have_url(controller_url + "/login?next=/")
            page.get_by_label("Staff ID").fill("root")
            page.get_by_label("Password").fill(ROOT_PASSWORD)
            page.get_by_role("button", name="Log in").click()
            expect(page.get_by_role("heading", name="Network operations")).to_be_visible()

            page.get_by_role("link", name="Tenants").click()
            form = page.locator("#create-tenant")
            form.get_by_label("Tenant ID").fill("acme")
            form.get_by_label("Name").fill("Acme Trading")
            form.get_by_label("SIP domain").fill("acme.example")
            form.get_by_label("Caller number").fill("+862088880000")
            form.get_by_role("button", name="Create").click()
            expect(page).to_have_url(controller_url + "/noc/tenants/acme")
            expect(page.get_by_role("status")).to_have_text("Tenant created.")
            expect(page.locator("#tenant-status")).to_have_text("active")

            quotas = page.locator("#limits")
            quotas.get_by_label("Concurrent PSTN calls").fill("a dozen")
            quotas.get_by_role("button", name="Save").click()
            expect(page.get_by_role("alert")).to_contain_text("limits.pstn_calls")
            expect(quotas.get_by_label("Concurrent PSTN calls")).to_have_value("a dozen")
            quotas.get_by_label("Concurrent PSTN calls").fill("12")
            quotas.get_by_role("button", name="Save").click()
            expect(page.get_by_role("status")).to_have_text("Saved.")
            page.reload()
            expect(page.locator("#limits").get_by_label("Concurrent PSTN calls")
                   ).to_have_value("12")
            expect(page.locator("table.usage tr", has_text="Concurrent PSTN calls")
                   ).to_contain_text("12")

            page.get_by_role("button", name="繁體中文").click()
            expect(page.locator("html")).to_have_attribute("lang", "zh-Hant")
            expect(page).to_have_url(controller_url + "/noc/tenants/acme")
            expect(page.get_by_role("status")).to_have_text("語言已切換。")
            expect(page.get_by_role("heading", level=1)).to_contain_text("租戶 acme")
            expect(page.get_by_role("link", name="稽核紀錄")).to_be_visible()
            expect(page.get_by_role("heading", name="租戶設定")).to_be_visible()
            expect(page.locator("#limits").get_by_label("同時 PSTN 通話")).to_have_value("12")
            expect(page.locator("#limits").get_by_role("button", name="儲存")).to_be_visible()
            expect(page.locator("#tenant-status")).to_have_text("正常")

            page.get_by_role("button", name="登出").click()
            expect(page).to_have_url(controller_url + "/login")
            page.goto(controller_url + "/noc/tenants")
            expect(page).to_have_url(controller_url + "/login?next=/noc/tenants")
        finally:
            browser.close()
