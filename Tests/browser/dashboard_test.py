#!/usr/bin/env python3
"""The dashboard in a real browser (headless Chromium driven by selenium), on the lab: a
person signs in, installs the add-on on a layer, presses Backup Now and watches it, damages
the data, restores it through the dialog (the plan, then the layer's name) and sees it back;
the audit trail shows each change; a request without the page's CSRF token is refused; the
pages fit a phone's width. Screenshots of the main pages go to $SHOTS.

Run by Tests/LabTests/DashboardTests.swift, which starts the scheduler and passes:
BASE, USER, PASSWORD_FILE, LAYER, REDIS_HOST, REDIS_PASSWORD_FILE, SHOTS."""
import os
import subprocess
import sys

from selenium import webdriver
from selenium.common.exceptions import TimeoutException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

BASE, USER, LAYER = os.environ["BASE"], os.environ["USER"], os.environ["LAYER"]
PASSWORD = open(os.environ["PASSWORD_FILE"]).read().strip()
SHOTS = os.environ["SHOTS"]
os.makedirs(SHOTS, exist_ok=True)


def redis(*args):
    env = dict(os.environ, REDISCLI_AUTH=open(os.environ["REDIS_PASSWORD_FILE"]).read().strip())
    out = subprocess.run(["redis-cli", "-h", os.environ["REDIS_HOST"], "-p", "6379", *args], env=env, capture_output=True, text=True, check=True)
    return out.stdout.strip()


def step(text):
    print("step:", text, flush=True)


options = webdriver.ChromeOptions()
for a in ["--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1280,1000"]:
    options.add_argument(a)
driver = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)
wait = WebDriverWait(driver, 180, poll_frequency=0.2)


def shot(name):
    driver.save_screenshot(os.path.join(SHOTS, name + ".png"))


def job_ended():
    """The job box's state once the job has ended (the page follows it by SSE)."""
    box = driver.find_element(By.ID, "job")
    state = box.get_attribute("data-state")
    return state if state and state != "running" else False


def layer_page():
    driver.get(BASE + "/ui/layers/" + LAYER)


try:
    step("an anonymous visitor is sent to the sign-in page")
    driver.get(BASE + "/ui/")
    assert driver.current_url.endswith("/ui/login"), driver.current_url
    shot("sign-in")

    step("a wrong password is refused")
    driver.find_element(By.ID, "name").send_keys(USER)
    driver.find_element(By.ID, "password").send_keys("not the password")
    driver.find_element(By.ID, "signin-password").click()
    # The answer is a new page after a password check of its own (scrypt): wait for it, the
    # click may return before it has loaded (it did once in CI).
    error = wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "p.error"))[0]
    assert "wrong name or password" in error.text, error.text

    step("signed in, the fleet: each layer with its topology, the primary marked")
    driver.find_element(By.ID, "name").send_keys(USER)
    driver.find_element(By.ID, "password").send_keys(PASSWORD)
    driver.find_element(By.ID, "signin-password").click()
    wait.until(lambda d: d.current_url.endswith("/ui/"))
    cookie = driver.get_cookie("stowage_session")
    assert cookie and cookie["httpOnly"] and cookie.get("sameSite") == "Strict", cookie
    row = driver.find_element(By.CSS_SELECTOR, f'tr[data-layer="{LAYER}"]')
    assert "add-on not installed" in row.text, row.text
    assert row.find_elements(By.CSS_SELECTOR, "li.primary"), row.get_attribute("innerHTML")
    shot("fleet")

    step("the layer's page: Install the add-on")
    row.find_element(By.TAG_NAME, "a").click()
    wait.until(lambda d: d.find_element(By.ID, "configure").text == "Install")
    driver.find_element(By.ID, "configure").click()
    form = driver.find_element(By.CSS_SELECTOR, "form[data-addon]")
    keep = form.find_element(By.NAME, "keep")
    keep.clear()
    keep.send_keys("3")
    shot("install-dialog")
    driver.find_element(By.ID, "policy-save").click()
    wait.until(lambda d: "Scheduled backups" in d.find_element(By.CSS_SELECTOR, "dl.policy").text)
    assert "3" in driver.find_element(By.CSS_SELECTOR, "dl.policy").text
    assert driver.find_element(By.ID, "configure").text == "Configure"

    step("Backup Now, followed to its end")
    redis("FLUSHALL")
    redis("SET", "order:1", "shipped")
    driver.find_element(By.ID, "backup-now").click()
    wait.until(lambda d: d.find_element(By.ID, "job").get_attribute("data-job"))
    shot("backup-running")
    state = wait.until(lambda d: job_ended())
    assert state == "ok", (state, driver.find_element(By.ID, "job").text)
    shot("backup-done")

    step("the data damaged, then restored through the dialog")
    redis("SET", "order:1", "lost")
    layer_page()
    restore = wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "button[data-restore]"))
    restore[0].click()
    wait.until(lambda d: d.find_element(By.CSS_SELECTOR, "#restore-dialog .plan").get_attribute("data-ready"))
    plan = driver.find_element(By.CSS_SELECTOR, "#restore-dialog .plan").text
    assert LAYER in plan and os.environ["REDIS_NODE"] in plan, plan
    go = driver.find_element(By.ID, "restore-go")
    driver.find_element(By.ID, "restore-confirm").send_keys("not/the-layer")
    assert not go.is_enabled(), "the restore button is enabled before the layer is named"
    shot("restore-dialog")
    confirm = driver.find_element(By.ID, "restore-confirm")
    confirm.clear()
    confirm.send_keys(LAYER)
    assert go.is_enabled()
    go.click()
    state = wait.until(lambda d: job_ended())
    assert state == "ok", (state, driver.find_element(By.ID, "job").text)
    assert redis("GET", "order:1") == "shipped", redis("GET", "order:1")
    shot("restore-done")

    step("a request without the page's CSRF token is refused, and changes nothing")
    status = driver.execute_async_script(
        "const done = arguments[arguments.length - 1];"
        f"fetch('/api/v1/layers/{LAYER}/backup', {{method: 'POST', credentials: 'same-origin'}}).then(r => done(r.status));"
    )
    assert status == 403, status

    step("the history and the audit trail")
    driver.get(BASE + "/ui/runs")
    assert "ok" in driver.find_element(By.CSS_SELECTOR, "table.runs").text
    shot("runs")
    driver.get(BASE + "/ui/audit")
    audit = driver.find_element(By.ID, "audit").text
    for needle in [f"addon install {LAYER}", f"backup {LAYER}", f"restore {LAYER}", "signIn", "CSRF"]:
        assert needle in audit, (needle, audit)
    shot("audit")

    step("on a phone's width nothing runs off the side")
    driver.set_window_size(390, 844)
    for path, name in [("/ui/", "phone-fleet"), ("/ui/layers/" + LAYER, "phone-layer")]:
        driver.get(BASE + path)
        over = driver.execute_script("return document.documentElement.scrollWidth - window.innerWidth")
        assert over <= 1, (path, over)
        shot(name)

    step("signed out, the pages need a sign-in again")
    driver.find_element(By.CSS_SELECTOR, "form.signout button").click()
    wait.until(lambda d: d.current_url.endswith("/ui/login"))
    driver.get(BASE + "/ui/audit")
    assert driver.current_url.endswith("/ui/login"), driver.current_url
    print("browser: 1 passed, 0 failed")
except (AssertionError, TimeoutException) as e:
    shot("failure")
    print("FAILED:", repr(e), file=sys.stderr)
    print("page:", driver.current_url, driver.find_element(By.TAG_NAME, "body").text[:3000], file=sys.stderr)
    sys.exit(1)
finally:
    driver.quit()
