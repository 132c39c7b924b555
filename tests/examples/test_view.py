"""The live view in a real headless browser against `tierpipe demo --quick --view`, as a user runs it.

Needs Chromium and its driver from the system's package manager (`apt-get install chromium
chromium-driver`, which `.ci/run` does) and selenium (the test extra); skips, saying so, without them.
"""

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SINGLE = ROOT / "tests" / "data" / "sumo_rl" / "2way-single-intersection" / "2way-single-intersection.sumocfg"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
DRIVER = shutil.which("chromedriver")
# a folder to copy the screenshot to besides the test's own (the README's is one such)
SHOTS = os.environ.get("TIERPIPE_SCREENSHOTS")

pytestmark = pytest.mark.skipif(
    not (CHROMIUM and DRIVER), reason="no Chromium/chromedriver: `apt-get install chromium chromium-driver` (.ci/run installs them)"
)


# installed in the page: every change of the phase, simulated time or delivered count is recorded
RECORD = """
window.__reads = [];
const read = () => window.__reads.push({phase: document.body.dataset.phase,
    sim: document.querySelector('#sim-time').textContent, delivered: document.querySelector('#delivered').textContent});
new MutationObserver(read).observe(document.body, {subtree: true, childList: true, characterData: true, attributes: true,
    attributeFilter: ['data-phase']});
read();
"""


def _browser():
    selenium = pytest.importorskip("selenium", reason="selenium comes with the test extra")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1600,1000"):
        opts.add_argument(flag)
    opts.binary_location = CHROMIUM
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    assert selenium
    return webdriver.Chrome(options=opts, service=Service(DRIVER))


def _until(what, check, timeout_s: float, proc):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        assert proc.poll() is None, f"the demo exited ({proc.returncode}) while waiting for {what}"
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout_s:.0f} s waiting for {what}")


def test_the_live_view_of_the_demo_in_a_real_browser(tmp_path):
    out = tmp_path / "demo"
    env = {**os.environ, "COLUMNS": "200"}
    cmd = [sys.executable, "-m", "runtime.cli", "demo", "--quick", "--view", "--view-port", "0", "--scenario", str(SINGLE)]
    log = tmp_path / "demo.log"  # a file, not a pipe: a pipe nobody reads fills up and stalls the demo
    with log.open("w") as sink:
        # 2 frames per camera per simulated second: the camera-driven run lasts several seconds even on a fast machine
        # (emulation stretches every stage to its tier's predicted time, so the pipeline's rate does not grow with it)
        args = ["--camera-fps", "2", "--end", "60", "--out", str(out)]
        proc = subprocess.Popen([*cmd, *args], stdout=sink, stderr=subprocess.STDOUT, cwd=ROOT, env=env, start_new_session=True)
    driver = None
    try:
        # the URL is printed before anything slow starts
        url = _until("the view's URL", lambda: re.search(r"live view at (http://127\.0\.0\.1:\d+/)", log.read_text()), 60, proc).group(1)
        driver = _browser()
        driver.get(url)
        text = lambda css: driver.find_element("css selector", css).text  # noqa: E731
        phase = lambda: driver.find_element("css selector", "body").get_attribute("data-phase")  # noqa: E731
        # one camera tile per approach, one label per signalised junction: 4 and 1 on this network
        _until("the page's static part", lambda: text("#camera-count") == "4", 60, proc)
        assert len(driver.find_elements("css selector", ".camera-tile")) == 4
        assert text("#junction-count") == "1" and len(driver.find_elements("css selector", ".junction-label")) == 1
        # the page's own record of what it showed, update by update (a run on a fast machine takes seconds)
        driver.execute_script(RECORD)
        _until("the end of the run", lambda: phase() == "done", 240, proc)
        reads = driver.execute_script("return window.__reads")
        live = [(r["sim"], r["delivered"]) for r in reads if r["phase"] == "camera"]
        # while the run went on, simulated time and delivered frames moved on between reads
        assert len({sim for sim, _ in live}) >= 2 and len({n for _, n in live}) >= 2, reads
        _until("the final banner", lambda: driver.find_element("css selector", "#final-banner").is_displayed(), 30, proc)
        errors = [e for e in driver.get_log("browser") if e["level"] == "SEVERE"]
        assert not errors, errors
        shot = tmp_path / "view.png"
        assert driver.save_screenshot(str(shot))
        print(f"screenshot of the live view: {shot}")
        if SHOTS:
            Path(SHOTS).mkdir(parents=True, exist_ok=True)
            shutil.copy(shot, Path(SHOTS) / "view.png")
        # the run is over and the page stays up with the final figures until Ctrl-C
        state = json.loads(urllib.request.urlopen(url + "state", timeout=10).read())
        assert state["update"]["phase"] == "done" and state["update"]["final"]["lines"]
        assert proc.poll() is None
    finally:
        if driver is not None:
            driver.quit()
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)  # Ctrl-C
        try:
            code = proc.wait(timeout=60)
        except subprocess.TimeoutExpired:  # never leave the demo, its Ray and SUMO behind
            os.killpg(proc.pid, signal.SIGKILL)
            raise
    text = log.read_text()
    assert code == 0, text
    assert "view stopped" in text
    report = json.loads((out / "report.json").read_text())
    assert report["pipeline"]["delivered_exactly_once_in_order"]
