"""The console in a real headless Chromium (Debian's chromium + chromium-driver,
driven by Selenium): a campaign dialing a simulated Asterisk changes on the
wallboard without a reload, is paused with the button and places no call a
second later, a CSV with bad rows shows its rejects, and a viewer finds no
control. Screenshots go to $DIALER_SCREENSHOTS (else the test's tmp folder)."""

from __future__ import annotations

import os
import shutil
import threading
import time
from pathlib import Path

import pytest
import sqlalchemy as sa

from dialer import db
from dialer.models import Campaign, SupervisorCommand
from tests.engine_harness import business_zone, make_campaign, numbers
from tests.sim_thread import SimThread
from tests.web_harness import PASSWORDS, Process, add_users, start_web, write_engine_config

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"


def _require_browser() -> None:
    missing = [p for p in (CHROMIUM, CHROMEDRIVER) if not Path(p).exists()]
    try:
        import selenium  # noqa: F401
    except ImportError:
        missing.append("selenium")
    if missing:
        message = f"no browser to test with: {', '.join(missing)} missing (apt-get install chromium chromium-driver)"
        if os.environ.get("CI") == "true":
            pytest.fail(message, pytrace=False)
        pytest.skip(message)


@pytest.fixture(scope="module")
def console(tmp_path_factory, _sqlite_template):
    """One database, simulator, engine and console for the module's tests."""
    _require_browser()
    tmp = tmp_path_factory.mktemp("web")
    path = tmp / "dialer.db"
    shutil.copyfile(_sqlite_template, path)
    url = f"sqlite:///{path}"
    engine = db.create_engine(url)
    sessions = db.session_factory(engine)
    add_users(sessions)
    make_campaign(sessions, "spring", numbers(3000), tz=business_zone(), max_concurrent=6)
    make_campaign(sessions, "uploads", (), state="stopped")
    with SimThread(speed=1) as sim:
        config = write_engine_config(tmp / "dialer.toml", sim.port, rate=4)
        run = Process(["--config", str(config), "--db", url, "run", "--campaign", "spring"], tmp / "engine.log")
        web, base = start_web(url, tmp / "web.log")
        try:
            yield {"url": base, "sessions": sessions, "sim": sim, "tmp": tmp}
        finally:
            web.stop()
            run.stop()
    engine.dispose()


@pytest.fixture
def browser(console):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--window-size=1920,1080", "--force-device-scale-factor=1"):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()


def shots_dir(console) -> Path:
    folder = Path(os.environ.get("DIALER_SCREENSHOTS") or console["tmp"] / "screenshots")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def wait(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        threading.Event().wait(0.05)


def log_in(driver, base: str, name: str) -> None:
    from selenium.webdriver.common.by import By

    driver.get(base + "/login")
    driver.find_element(By.NAME, "name").send_keys(name)
    driver.find_element(By.NAME, "password").send_keys(PASSWORDS[name][1])
    driver.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
    wait(lambda: driver.current_url.rstrip("/") == base, 10, "the wallboard after login")


def click(driver, css: str) -> None:
    """Click the element now matching ``css`` (the wallboard redraws its cards on each change)."""
    from selenium.common.exceptions import StaleElementReferenceException
    from selenium.webdriver.common.by import By

    for _ in range(20):
        try:
            driver.find_element(By.CSS_SELECTOR, css).click()
            return
        except StaleElementReferenceException:
            continue
    raise AssertionError(f"{css}: kept being redrawn")


def card_text(driver, campaign: str, selector: str) -> str:
    return driver.execute_script(
        "const c = document.querySelector(`article[data-campaign='${arguments[0]}']`);"
        "const e = c && c.querySelector(arguments[1]); return e ? e.textContent : null;", campaign, selector)


def test_wallboard_follows_the_campaign_and_the_pause_button_stops_its_calls(console, browser):
    from selenium.webdriver.common.by import By

    base = console["url"]
    log_in(browser, base, "sam")
    # A marker that a page reload would wipe.
    browser.execute_script("window.__noReload = 42;")
    wait(lambda: card_text(browser, "spring", "[data-k=in_flight] .v") not in (None, "–", "0"), 60,
         "calls in flight on the wallboard")
    first = card_text(browser, "spring", "[data-field=progress]")
    version = int(browser.execute_script("return document.body.dataset.version"))
    wait(lambda: card_text(browser, "spring", "[data-field=progress]") != first, 60,
         "the campaign's progress to change")
    assert int(browser.execute_script("return document.body.dataset.version")) > version
    assert browser.execute_script("return window.__noReload") == 42
    agents = card_text(browser, "spring", ".row2 .muted")
    assert agents.startswith("agents:") and "free" in agents
    browser.save_screenshot(str(shots_dir(console) / "wallboard-1920x1080.png"))

    # Pause with the button, giving a reason in the confirmation dialog.
    click(browser, "article[data-campaign=spring] button[data-cmd=pause]")
    dialog = browser.find_element(By.ID, "confirm")
    wait(lambda: dialog.is_displayed(), 5, "the confirmation dialog")
    browser.find_element(By.ID, "confirm-reason").send_keys("team meeting")
    browser.find_element(By.ID, "confirm-ok").click()
    clicked = time.monotonic()
    wait(lambda: card_text(browser, "spring", "[data-field=state]") == "paused", 5, "the card to show paused")
    with console["sessions"].begin() as s:
        assert s.scalar(sa.select(Campaign.state).where(Campaign.name == "spring")) == "paused"
        cmd = s.scalars(sa.select(SupervisorCommand).order_by(SupervisorCommand.id.desc())).first()
        assert (cmd.command, cmd.reason, cmd.issued_by) == ("pause", "team meeting", "web:sam")
    threading.Event().wait(max(0.0, clicked + 1.0 - time.monotonic()))
    sent = len(console["sim"].originated_channels())
    threading.Event().wait(2.0)
    assert len(console["sim"].originated_channels()) == sent, "an Originate left more than 1 s after the pause"

    click(browser, "article[data-campaign=spring] button[data-cmd=resume]")
    wait(lambda: browser.find_element(By.ID, "confirm").is_displayed(), 5, "the confirmation dialog")
    browser.find_element(By.ID, "confirm-ok").click()
    wait(lambda: card_text(browser, "spring", "[data-field=state]") == "running", 5, "the card to show running")
    wait(lambda: len(console["sim"].originated_channels()) > sent, 10, "calls to leave again after resume")


@pytest.mark.parametrize("size", [(1920, 1080), (1280, 720)])
def test_wallboard_fits_a_wall_screen_and_a_laptop(console, browser, size):
    base = console["url"]
    browser.set_window_size(*size)
    log_in(browser, base, "vic")
    wait(lambda: card_text(browser, "spring", "[data-field=state]"), 30, "the campaign card")
    width = browser.execute_script("return [document.documentElement.scrollWidth, window.innerWidth]")
    assert width[0] <= width[1], f"the wallboard scrolls sideways at {size}: {width}"
    px = browser.execute_script(
        "return parseFloat(getComputedStyle(document.querySelector('.tile .v')).fontSize)")
    assert px >= 24, f"figures {px}px high at {size}"
    small = browser.execute_script("return parseFloat(getComputedStyle(document.body).fontSize)")
    assert small >= 13
    browser.save_screenshot(str(shots_dir(console) / f"wallboard-{size[0]}x{size[1]}-viewer.png"))


def test_a_viewer_finds_no_control_and_cannot_pause(console, browser):
    from selenium.webdriver.common.by import By

    base = console["url"]
    log_in(browser, base, "vic")
    wait(lambda: card_text(browser, "spring", "[data-field=state]"), 30, "the campaign card")
    assert browser.find_elements(By.CSS_SELECTOR, "button[data-cmd]") == []
    assert browser.find_elements(By.ID, "stop-all") == []
    assert browser.find_elements(By.ID, "dnc-form") == []
    browser.get(base + "/campaigns/uploads")
    assert browser.find_elements(By.ID, "upload-form") == []
    assert browser.find_elements(By.CSS_SELECTOR, "#settings-form input") == []
    status = browser.execute_async_script(
        "const done = arguments[0];"
        "fetch('/api/v1/campaigns/spring/state', {method: 'POST', headers: {'Content-Type': 'application/json',"
        " 'X-CSRF-Token': document.querySelector('meta[name=csrf-token]').content},"
        " body: JSON.stringify({command: 'pause'})}).then(r => done(r.status));")
    assert status == 403


def test_upload_with_bad_rows_shows_the_rejects_report(console, browser):
    from selenium.webdriver.common.by import By

    base = console["url"]
    csv_path = console["tmp"] / "new-leads.csv"
    csv_path.write_text("phone,first_name\n+12125550100,Ann\nnot-a-number,Bob\n+12125550101,Cy\n"
                        "+12125550100,Ann again\n", encoding="utf-8")
    log_in(browser, base, "sam")
    browser.get(base + "/campaigns/uploads")
    browser.find_element(By.ID, "upload-file").send_keys(str(csv_path))
    browser.find_element(By.CSS_SELECTOR, "#upload-form button[type=submit]").click()
    result = browser.find_element(By.ID, "upload-result")
    wait(lambda: "loaded" in result.text, 30, "the upload's result")
    assert result.text.startswith("2 loaded, 2 rejected (1 invalid, 1 duplicate, 0 do-not-call) of 4 rows")
    link = browser.find_element(By.ID, "rejects-link").get_attribute("href")
    body = browser.execute_async_script(
        "const done = arguments[arguments.length - 1]; fetch(arguments[0]).then(r => r.text()).then(done);", link)
    lines = body.strip().splitlines()
    assert len(lines) == 3 and "not-a-number" in lines[1] and "Ann again" in lines[2]
    browser.save_screenshot(str(shots_dir(console) / "upload.png"))


def test_every_page_runs_under_the_content_security_policy_without_errors(console, browser):
    """No script error and no CSP violation (inline script, outside resource) on any page."""
    from selenium.webdriver.common.by import By

    base = console["url"]
    log_in(browser, base, "ada")
    wait(lambda: card_text(browser, "spring", "[data-field=state]"), 30, "the campaign card")
    for path, ready in (("/campaigns/spring", "#settings-form input"), ("/admin", "#user-form"),
                        ("/audit", "table.audit"), ("/", "article[data-campaign]")):
        browser.get(base + path)
        wait(lambda: browser.find_elements(By.CSS_SELECTOR, ready), 30, f"{path} to render")
    threading.Event().wait(1.0)
    errors = [e for e in browser.get_log("browser") if e["level"] == "SEVERE"]
    assert errors == []
    rows = browser.find_elements(By.CSS_SELECTOR, "#engines tbody tr")
    assert rows and "ago" in rows[0].text
