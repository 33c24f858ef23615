#!/usr/bin/env python3
"""The operator console (SPEC §13) in a real browser: Debian's chromium, headless, driven by
Selenium through chromium-driver.

    scripts/console-check.py --admin http://127.0.0.1:PORT --intake http://127.0.0.1:PORT --token TOKEN

Against a running `waypost serve` whose configuration has the route `orders` (path /orders)
whose upstream answers 503 to a message's first attempt and 200 to the next, with
`max_attempts: 1`, and the route `notes` (path /notes) whose upstream answers 200. ConsoleBrowserTests
starts both. The script signs in, pauses `orders` and watches its depth grow as messages
arrive (no reload), resumes it and sees the messages fail, opens a failed message, replays it
and watches it turn `delivered`, bulk-replays the rest by filter, checks that a hostile body and
header are shown as text with no script run, that `/` focuses the search box, and that the
pages fit a 375 px wide screen. With --screenshots DIR it saves the overview and a message page.

Prints one line per step; exits 0 when every check holds, 1 with the failing check otherwise,
and prints SKIPPED (exit 0) when chromium, chromium-driver or Selenium is missing, unless
CONSOLE_BROWSER_REQUIRED is set.
"""

import argparse
import json
import os
import shutil
import sys
import time
import urllib.request

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
DRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"


def skip(why):
    if os.environ.get("CONSOLE_BROWSER_REQUIRED"):
        print(f"console-check: {why}, and CONSOLE_BROWSER_REQUIRED is set", file=sys.stderr)
        sys.exit(1)
    print(f"console-check: SKIPPED: {why}")
    sys.exit(0)


try:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
except ImportError:
    skip("Selenium is not installed (pip install selenium)")
if not (os.path.exists(CHROMIUM) and os.path.exists(DRIVER)):
    skip("chromium and chromium-driver are not installed (apt-get install chromium chromium-driver)")


class Failed(Exception):
    pass


def check(condition, what):
    if not condition:
        raise Failed(what)
    print(f"ok: {what}", flush=True)


def eventually(what, probe, seconds=20):
    """Waits until probe() is truthy (at most `seconds`), returning its value."""
    deadline = time.monotonic() + seconds
    last = None
    while time.monotonic() < deadline:
        try:
            last = probe()
        except Exception as error:  # an element replaced while it was read: look again
            last = None
            if "stale" not in str(error).lower() and "no such element" not in str(error).lower():
                raise
        if last:
            print(f"ok: {what}", flush=True)
            return last
        time.sleep(0.2)
    raise Failed(f"not within {seconds} s: {what}")


def post(intake, path, body, headers=None):
    request = urllib.request.Request(intake + path, data=body.encode(), method="POST")
    request.add_header("Content-Type", "application/json")
    for name, value in (headers or {}).items():
        request.add_header(name, value)
    with urllib.request.urlopen(request, timeout=10) as answer:
        return answer.headers["X-Correlation-ID"]


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--admin", required=True)
    parser.add_argument("--intake", required=True)
    parser.add_argument("--token", required=True)
    parser.add_argument("--screenshots")
    args = parser.parse_args()

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu", "--window-size=1280,900",
                 "--no-first-run", "--disable-extensions"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(DRIVER), options=options)
    driver.set_page_load_timeout(30)
    admin = args.admin.rstrip("/")
    try:
        run(driver, admin, args.intake.rstrip("/"), args.token, args.screenshots)
    except Failed as failure:
        print(f"FAILED: {failure}", file=sys.stderr)
        print(f"at {driver.current_url}:\n{driver.find_element(By.TAG_NAME, 'body').text[:3000]}", file=sys.stderr)
        sys.exit(1)
    finally:
        driver.quit()
    print("console-check: every check holds")


def depth(driver, destination):
    cell = driver.find_element(By.CSS_SELECTOR, f'tr[data-key="{destination}"] a.depth')
    return cell.text.strip()


def run(driver, admin, intake, token, screenshots):
    # Sign in.
    driver.get(admin + "/")
    check(driver.current_url.endswith("/console/sign-in"), "the console sends a new visitor to the sign-in")
    field = driver.find_element(By.ID, "token")
    field.send_keys("not the token")
    field.submit()
    check("not the admin token" in driver.page_source, "a wrong token is refused")
    driver.find_element(By.ID, "token").send_keys(token + Keys.ENTER)
    eventually("signed in, the overview shows", lambda: driver.find_element(By.TAG_NAME, "h1").text == "Overview")
    cookies = {cookie["name"]: cookie for cookie in driver.get_cookies()}
    session = cookies.get("waypost_console")
    check(session is not None and session.get("httpOnly") and session.get("sameSite") == "Strict",
          "the session cookie is HttpOnly and SameSite=Strict")

    # Pause `orders`; messages arrive; the depth grows without a reload.
    driver.find_element(By.CSS_SELECTOR, 'tr[data-key="orders/orders"] button').click()
    eventually("orders is paused", lambda: "paused" in driver.find_element(By.CSS_SELECTOR, 'tr[data-key="orders/orders"]').text)
    driver.execute_script("window.__sameDocument = true;")
    before = depth(driver, "orders/orders")
    ids = [post(intake, "/orders", json.dumps({"order": n})) for n in range(3)]
    eventually("the queue depth grows to 3 as the messages arrive",
               lambda: depth(driver, "orders/orders") == "3", seconds=20)
    check(before == "0" and driver.execute_script("return window.__sameDocument === true;"),
          "the page updated itself, without a reload")
    if screenshots:
        driver.save_screenshot(os.path.join(screenshots, "console-overview.png"))

    # Resume: the first attempt of each gets 503 and, with max_attempts 1, fails.
    driver.find_element(By.CSS_SELECTOR, 'tr[data-key="orders/orders"] button').click()
    eventually("three failed", lambda: driver.find_element(By.CSS_SELECTOR, 'tr[data-key="orders/orders"] td:nth-of-type(7) a').text == "3")

    # Open a failed message from the failed list, replay it, watch it turn delivered.
    driver.find_element(By.LINK_TEXT, "Failed").click()
    driver.find_element(By.LINK_TEXT, ids[0]).click()
    eventually("the failed message's page shows its failed attempt",
               lambda: "failed" in driver.find_element(By.CSS_SELECTOR, "section.delivery h3").text
               and "503" in driver.find_element(By.CSS_SELECTOR, "ol.timeline").text)
    if screenshots:
        driver.save_screenshot(os.path.join(screenshots, "console-message.png"))
    driver.find_element(By.XPATH, "//button[normalize-space()='Replay']").click()
    eventually("the replay is confirmed", lambda: "Replayed: the message is queued again." in driver.page_source)
    eventually("the replayed message turns delivered, on the page, by itself",
               lambda: "delivered" in driver.find_element(By.CSS_SELECTOR, "section.delivery h3").text)

    # Bulk replay by filter: the count first, then the replay.
    driver.find_element(By.LINK_TEXT, "Bulk replay").click()
    driver.find_element(By.CSS_SELECTOR, 'select[name="route"] option[value="orders"]').click()
    driver.find_element(By.XPATH, "//button[normalize-space()='Count']").click()
    eventually("the bulk replay counts the two failed messages first",
               lambda: driver.find_element(By.CSS_SELECTOR, "strong.count").text == "2")
    driver.find_element(By.XPATH, "//button[normalize-space()='Replay 2']").click()
    eventually("the bulk replay is confirmed", lambda: "Replayed 2 messages" in driver.page_source)
    driver.get(admin + "/console/messages?state=delivered&route=orders")
    eventually("all three delivered",
               lambda: len(driver.find_elements(By.CSS_SELECTOR, "#live tbody tr")) == 3, seconds=20)

    # A hostile body and header: text, never markup, and no script runs.
    hostile = post(intake, "/notes", json.dumps({"note": "<script>window.__pwned = 1</script>",
                                                 "x": "\"><img src=x onerror=\"window.__pwned=2\">"}),
                   {"X-Evil": "\"><script>window.__pwned=3</script>"})
    driver.get(admin + "/console/messages/" + hostile)
    body = driver.find_element(By.CSS_SELECTOR, "#request pre.body").text
    check("<script>window.__pwned = 1</script>" in body and "onerror" in body, "the hostile body is shown as text")
    check("<script>window.__pwned=3</script>" in driver.find_element(By.CSS_SELECTOR, "#request table.headers").text,
          "the hostile header is shown as text")
    time.sleep(0.5)
    check(driver.execute_script("return typeof window.__pwned === 'undefined';"), "no script of the message ran")
    check(not driver.find_elements(By.CSS_SELECTOR, "main img"), "no element of the message was made")

    # Keyboard: `/` focuses the search box; the search finds a message.
    driver.find_element(By.TAG_NAME, "body").send_keys("/")
    check(driver.execute_script("return document.activeElement.id;") == "find", "/ focuses the search box")
    driver.switch_to.active_element.send_keys(ids[1] + Keys.ENTER)
    eventually("the search box finds the message", lambda: ids[1] in driver.find_element(By.TAG_NAME, "h1").text)

    # A phone-sized screen: nothing wider than the window.
    driver.set_window_size(375, 800)
    for path in ("/", "/console/messages", "/console/messages/" + ids[1]):
        driver.get(admin + path)
        width = driver.execute_script("return document.documentElement.scrollWidth;")
        inner = driver.execute_script("return window.innerWidth;")
        check(width <= inner, f"{path} fits a 375 px screen ({width} <= {inner})")


if __name__ == "__main__":
    main()
