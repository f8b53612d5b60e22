"""The labelling page end to end in a real headless Chromium (selenium + Debian's chromium-driver).

Labels three pairs with the keyboard, kills the server (SIGKILL, as a crash
would), restarts it and finds all three answers saved and the page resuming
at the fourth; a response carrying HTML/script renders as text. Saves a
screenshot to docs/img/labeling-page.png.

Needs: ``apt-get install -y chromium chromium-driver`` and ``pip install selenium``
(skips with that message otherwise). FRUGALIGN_CHROMIUM / FRUGALIGN_CHROMEDRIVER
override the binary paths.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

import pytest

from frugalign.labeling.export import make_batch, read_labels, write_batch
from frugalign.labeling.merge import import_labels
from frugalign.records import PreferencePair

pytestmark = pytest.mark.slow  # a real browser

REPO = Path(__file__).resolve().parents[1]
SCREENSHOT = REPO / "docs" / "img" / "labeling-page.png"
INSTALL = "apt-get install -y chromium chromium-driver && pip install selenium"
XSS = ('Use the <b> tag: <b>bold</b>.\n<script>window.__xss = 1</script>'
       '<img src=x onerror="window.__xss = 2">')


def _binary(env: str, *names: str) -> str | None:
    if os.environ.get(env):
        return os.environ[env]
    return next((p for p in (shutil.which(n) for n in names) if p), None)


def _skip_or_fail(reason: str):
    # CI sets FRUGALIGN_REQUIRE_BROWSER=1 so a missing browser fails there instead of skipping.
    if os.environ.get("FRUGALIGN_REQUIRE_BROWSER") == "1":
        pytest.fail(f"browser test required but {reason}")
    pytest.skip(reason)


@pytest.fixture(scope="module")
def driver():
    try:
        from selenium import webdriver
    except ImportError:
        _skip_or_fail(f"selenium not installed ({INSTALL})")
    chromium = _binary("FRUGALIGN_CHROMIUM", "chromium", "chromium-browser", "google-chrome")
    chromedriver = _binary("FRUGALIGN_CHROMEDRIVER", "chromedriver")
    if not chromium or not chromedriver:
        _skip_or_fail(f"no chromium/chromedriver found; install them with: {INSTALL}")
    os.environ.setdefault("SE_OFFLINE", "true")  # never let Selenium Manager try to download drivers
    profile = tempfile.mkdtemp(prefix="frugalign-chromium-")
    opts = webdriver.ChromeOptions()
    opts.binary_location = chromium
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-dev-shm-usage", "--window-size=1280,820", f"--user-data-dir={profile}"):
        opts.add_argument(flag)
    drv = webdriver.Chrome(options=opts, service=webdriver.ChromeService(executable_path=chromedriver))
    drv.set_page_load_timeout(30)
    yield drv
    drv.quit()
    shutil.rmtree(profile, ignore_errors=True)


def _pairs() -> list[PreferencePair]:
    pairs = [PreferencePair("html:0-1", "How do I make text bold in HTML?", XSS,
                            "Wrap the text in <strong>...</strong>; CSS font-weight: bold also works.",
                            prompt_id="html")]
    questions = ["Give me two tips for sleeping better.", "What is a black hole?",
                 "Write a haiku about rain.", "How do I boil an egg?"]
    for k, q in enumerate(questions):
        pairs.append(PreferencePair(f"q{k}:0-1", q, f"A short answer to: {q}",
                                    f"A longer, more careful answer to: {q} It has two sentences.",
                                    prompt_id=f"q{k}"))
    return pairs


class Server:
    """``frugalign label serve`` in a subprocess, like a user runs it."""

    def __init__(self, batch: Path, labels: Path):
        cmd = [sys.executable, "-m", "frugalign", "label", "serve", str(batch), f"labels={labels}", "port=0"]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=REPO)
        first = self._first_line(timeout=60)
        if "http://" not in first:
            self.proc.kill()
            raise RuntimeError(f"server did not start: {first!r}")
        self.url = first[first.index("http://"):].strip()

    def _first_line(self, timeout: float) -> str:
        out: list[str] = []
        reader = threading.Thread(target=lambda: out.append(self.proc.stdout.readline()), daemon=True)
        reader.start()
        reader.join(timeout)
        return out[0] if out else ""

    def crash(self) -> None:
        self.proc.send_signal(signal.SIGKILL)  # no clean shutdown: what a crash looks like
        self.proc.wait(timeout=10)


def _open(driver, url: str):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    driver.get(url)
    WebDriverWait(driver, 20).until(lambda d: d.find_element(By.TAG_NAME, "body").get_attribute("data-ready") == "1")


def _press(driver, key: str, expect_done: int, total: int):
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    ActionChains(driver).send_keys(key).perform()
    WebDriverWait(driver, 20).until(
        lambda d: d.find_element(By.ID, "progress-text").text == f"{expect_done} / {total} labelled")


def test_keyboard_labelling_survives_a_crash_and_escapes_html(driver, tmp_path):
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import WebDriverWait

    items = make_batch(_pairs(), "browser", seed=0)
    key, _ = write_batch(items, tmp_path / "browser")
    labels = tmp_path / "labels.jsonl"
    total = len(items)

    server = Server(key, labels)
    try:
        _open(driver, server.url)
        # The first pair's response holds HTML and script: shown as text, never run.
        shown = driver.find_element(By.ID, "resp-a").text + driver.find_element(By.ID, "resp-b").text
        assert "<script>window.__xss = 1</script>" in shown and '<img src=x onerror=' in shown
        assert driver.execute_script("return window.__xss") is None
        assert driver.find_elements(By.CSS_SELECTOR, "#responses img, #responses b, #responses script") == []
        assert driver.find_element(By.ID, "progress-text").text == f"0 / {total} labelled"
        SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
        driver.save_screenshot(str(SCREENSHOT))

        for done, k in enumerate(["1", "b", "t"], 1):  # A, B, tie via shortcuts
            _press(driver, k, done, total)
        assert "#4 of" in driver.find_element(By.ID, "item-id").text
    finally:
        server.crash()

    saved = [r for _, r in read_labels(labels)]
    assert [(r.pair_id, r.label) for r in saved] == [(items[0].pair_id, "A"), (items[1].pair_id, "B"),
                                                     (items[2].pair_id, "tie")]

    server = Server(key, labels)  # restart: continues at the fourth pair
    try:
        _open(driver, server.url)
        assert driver.find_element(By.ID, "progress-text").text == f"3 / {total} labelled"
        assert "#4 of" in driver.find_element(By.ID, "item-id").text
        ActionChains(driver).send_keys(Keys.ARROW_LEFT).perform()  # back to the third: shows its label
        WebDriverWait(driver, 20).until(lambda d: "#3 of" in d.find_element(By.ID, "item-id").text)
        assert "current" in driver.find_element(By.ID, "btn-tie").get_attribute("class")
    finally:
        server.crash()

    anns, _ = import_labels(key, [labels])
    expected = {"A": "B", "B": "A", "tie": "tie"}
    for ann, it, shown_label in zip(anns, items, ["A", "B", "tie"]):
        assert ann.preferred == (expected[shown_label] if it.flipped else shown_label)
