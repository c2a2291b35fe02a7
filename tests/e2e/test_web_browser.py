"""The dashboard in a real headless browser: Debian's chromium driven by Selenium through
chromedriver (scripts/test.sh installs both when missing), over a real daemon and web process.

Screenshots of each page are saved in the test's tmp dir (and copied to
$CRON_SCHEDULER_SCREENSHOTS when set: docs/dashboard.png was made that way)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from harness import wait_until
from webtools import start_web

JOB = "import time\nfor i in range(3):\n    print('backup step', i, flush=True)\n    time.sleep(0.2)\n"


def chrome(tmp_path: Path):
    for tool in ("chromium", "chromedriver"):
        if shutil.which(tool) is None:
            pytest.fail(f"{tool} is not installed: run the tests through scripts/test.sh (it installs Debian's "
                        "chromium and chromium-driver) or apt-get install chromium chromium-driver")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium")
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--window-size=1280,860", f"--user-data-dir={tmp_path / 'chrome-profile'}"):
        options.add_argument(arg)
    return webdriver.Chrome(service=Service(shutil.which("chromedriver")), options=options)


def shoot(driver, tmp_path: Path, name: str) -> None:
    shots = tmp_path / "screenshots"
    shots.mkdir(exist_ok=True)
    assert driver.save_screenshot(str(shots / f"{name}.png"))
    extra = os.environ.get("CRON_SCHEDULER_SCREENSHOTS")
    if extra:
        shutil.copy(shots / f"{name}.png", Path(extra) / f"{name}.png")


def test_dashboard_in_chromium_lists_jobs_shows_a_log_and_runs_a_job_live(e2e, daemon, tmp_path):
    from selenium.webdriver.common.by import By
    e2e.create_cron("backup", "--description", "nightly backup", "30 2 * * *", str(e2e.script("backup.py", JOB)))
    e2e.create_cron("report", "--depends-on", "backup", "@after",
                    str(e2e.script("report.py", "import sys\nprint('no data')\nsys.exit(2)\n")))
    e2e.create_cron("sync", "*/15 * * * *", str(e2e.script("sync.py", "print('synced')\n")))
    daemon()
    for n in (1, 2):
        e2e.cli("run", "backup")
        e2e.wait_status("report", "failed", n)
    e2e.cli("run", "sync")
    e2e.wait_status("sync", "succeeded")
    run_id = e2e.history("backup")[-1]["run_id"]
    server = start_web(e2e)
    driver = chrome(tmp_path)
    try:
        driver.get(server.base + "/")
        rows = wait_until("the job list", lambda: driver.find_elements(By.CSS_SELECTOR, "#jobs tr.job"))
        assert [r.get_attribute("data-job") for r in rows] == ["backup", "report", "sync"]
        backup = driver.find_element(By.CSS_SELECTOR, 'tr.job[data-job="backup"]')
        assert "every day at 02:30" in backup.text and "succeeded" in backup.text and "100%" in backup.text
        assert driver.find_element(By.CSS_SELECTOR, 'tr.job[data-job="report"]').get_attribute("data-status") == "failed"
        wait_until("the live stream connected",
                   lambda: "on" in driver.find_element(By.ID, "live").get_attribute("class"))
        shoot(driver, tmp_path, "jobs")

        driver.get(f"{server.base}/runs/{run_id}")
        log = wait_until("the run log", lambda: driver.find_element(By.ID, "log").text)
        assert log.splitlines() == [f"backup step {i}" for i in range(3)]
        assert "succeeded" in driver.find_element(By.ID, "run-status").text
        shoot(driver, tmp_path, "run")

        driver.get(server.base + "/jobs/backup")
        driver.find_element(By.ID, "token").send_keys(server.token)
        driver.find_element(By.ID, "token-save").click()
        wait_until("the token kept", lambda: driver.find_element(By.ID, "token-state").text == "token set")
        wait_until("the live stream connected",
                   lambda: "on" in driver.find_element(By.ID, "live").get_attribute("class"))
        before = set(driver.execute_script(
            "return [...document.querySelectorAll('#history tr.run')].map(r => r.getAttribute('data-run'))"))
        driver.execute_script("window.__sameDocument = 'yes'")
        driver.find_element(By.CSS_SELECTOR, 'button.act[data-action="/api/jobs/backup/run"]').click()

        def new_row():
            # read the rows in one script: the live history is re-rendered under our feet, so an
            # element found in one call may be gone (stale) in the next
            rows = driver.execute_script(
                "return [...document.querySelectorAll('#history tr.run')]"
                ".map(r => [r.getAttribute('data-run'), r.getAttribute('data-status')])")
            fresh = [(run, status) for run, status in rows if run not in before]
            return fresh and fresh[0][1] == "succeeded" and fresh[0][0]

        new_id = int(wait_until("the new run in the history, succeeded, without a reload", new_row, 60, 0.2))
        assert driver.execute_script("return window.__sameDocument") == "yes"
        assert new_id not in map(int, before) and e2e.history("backup")[-1]["run_id"] == new_id
        assert driver.find_element(By.ID, "flash").text.startswith("run: runs ")
        shoot(driver, tmp_path, "job")

        driver.get(server.base + "/timeline?hours=1")
        bars = wait_until("timeline bars", lambda: driver.find_elements(By.CSS_SELECTOR, "svg.gantt g.run"))
        assert len(bars) >= 5
        shoot(driver, tmp_path, "timeline")
    finally:
        driver.quit()
        server.stop()
    assert sorted(p.name for p in (tmp_path / "screenshots").iterdir()) == ["job.png", "jobs.png", "run.png",
                                                                           "timeline.png"]
