"""The coordinator dashboard in a real browser (headless Chromium driven by Playwright).

Run by services/dsr/tests/dashboard.rs against a `dsr up` it started and filled; the
environment gives the base URL, two identities' API keys, the district to cover, and where
to save a screenshot of each step. Exits non-zero (with the step that failed) on any
mismatch.
"""

import os
import sys
from pathlib import Path

from playwright.sync_api import expect, sync_playwright

BASE = os.environ["DSR_BASE"]
COORDINATOR = ("coordinator-amina", os.environ["DSR_COORDINATOR_KEY"])
APPROVER = ("approver-joseph", os.environ["DSR_APPROVER_KEY"])
DISTRICT = os.environ["DSR_DISTRICT"]
SHOTS = Path(os.environ["DSR_SCREENSHOTS"])
CHROMIUM = os.environ.get("DSR_CHROMIUM", "/usr/bin/chromium")
RULE = "browser-drought-topup"

SHOTS.mkdir(parents=True, exist_ok=True)
step_no = 0


def shot(page, name):
    global step_no
    step_no += 1
    path = SHOTS / f"{step_no:02d}-{name}.png"
    page.screenshot(path=str(path), full_page=True)
    print(f"screenshot {path}", flush=True)


def sign_in(page, who, use_keyboard=False):
    client_id, key = who
    page.fill("#client-id", client_id)
    page.fill("#api-key", key)
    if use_keyboard:
        page.press("#api-key", "Enter")
    else:
        page.click("#signin-form button[type=submit]")
    expect(page.locator("#rules")).to_be_visible()
    expect(page.locator("#who")).to_have_text(f"signed in as {client_id}")


def row(page):
    return page.locator(f"tr[data-rule='{RULE}']")


def confirm(page, reason):
    expect(page.locator("#confirm")).to_be_visible()
    page.fill("#confirm-reason", reason)
    page.click("#confirm-yes")


def main():
    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=CHROMIUM,
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
            ],
        )
        # A laptop screen.
        page = browser.new_page(viewport={"width": 1366, "height": 768})
        page.set_default_timeout(20_000)
        page.goto(f"{BASE}/dashboard")
        expect(page.locator("#signin")).to_be_visible()
        shot(page, "sign-in")

        # A wrong key is refused in words.
        page.fill("#client-id", "nobody")
        page.fill("#api-key", "dsr_not-a-key")
        page.click("#signin-form button[type=submit]")
        expect(page.locator("#signin-error")).to_contain_text("401")

        # The coordinator drafts a rule with the form.
        sign_in(page, COORDINATOR)
        shot(page, "signed-in-coordinator")
        page.fill("#f-id", RULE)
        page.fill("#f-name", "Drought top-up (browser)")
        page.select_option("#f-program", "food-aid")
        page.select_option("#f-trigger", "shock")
        page.fill("#f-areas", DISTRICT)
        page.select_option("#f-hazard", "drought")
        page.fill("#f-indicator", "vci")
        page.fill("#f-below", "10")
        page.select_option("#f-mode", "vertical")
        page.fill("#f-extra", "25")
        page.fill("#f-days", "30")
        page.click("#save-draft")
        expect(row(page)).to_contain_text("draft")
        expect(page.locator("#message")).to_contain_text("saved")
        shot(page, "drafted")

        # The preview: counts, cost and the per-area table with its bars.
        row(page).get_by_role("button", name="Preview").click()
        expect(page.locator("#preview-summary")).to_contain_text("top-ups")
        expect(page.locator("#preview-body table tbody tr")).to_have_count(1)
        expect(row(page)).to_contain_text("previewed")
        summary = page.locator("#preview-summary").inner_text()
        print(f"preview: {summary}", flush=True)
        shot(page, "previewed")

        # The coordinator cannot approve: the error is shown in words.
        row(page).get_by_role("button", name="Approve").click()
        confirm(page, "my own rule")
        expect(page.locator("#error")).to_contain_text("403")
        expect(row(page)).to_contain_text("previewed")
        shot(page, "own-approval-refused")

        # The approver signs in (with the keyboard), approves, arms and triggers.
        page.click("#signout")
        expect(page.locator("#signin")).to_be_visible()
        sign_in(page, APPROVER, use_keyboard=True)
        row(page).get_by_role("button", name="Approve").click()
        confirm(page, "as agreed with the drought committee")
        expect(row(page)).to_contain_text("approved")
        shot(page, "approved")
        row(page).get_by_role("button", name="Arm").click()
        confirm(page, "")
        expect(row(page)).to_contain_text("armed")
        shot(page, "armed")

        before = int(page.locator("#counter").inner_text())
        row(page).get_by_role("button", name="Trigger").click()
        confirm(page, "drought declared in the district")
        expect(row(page)).to_contain_text("active")
        page.wait_for_function(
            "before => Number(document.getElementById('counter').textContent) > before",
            arg=before,
        )
        after = int(page.locator("#counter").inner_text())
        print(f"counter: {before} -> {after}", flush=True)
        shot(page, "triggered-counter-moved")
        browser.close()


if __name__ == "__main__":
    try:
        main()
    except Exception as e:  # the Rust test prints this and fails
        print(f"browser test failed at step {step_no + 1}: {e}", file=sys.stderr)
        sys.exit(1)
