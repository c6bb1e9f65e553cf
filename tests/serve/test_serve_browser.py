"""End to end in a real browser: `python -m vitlab serve RUN` on a free local port, the page opened in
headless Chromium (Debian's chromium + chromium-driver, driven by Selenium), an image uploaded, the
predicted class read from the page and compared with the API's, a bad file's error shown on the page,
and a screenshot saved."""
from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

pytest.importorskip("starlette", reason="the 'serve' extra is not installed (pip install 'vitlab[serve]')")
pytest.importorskip("uvicorn", reason="the 'serve' extra is not installed (pip install 'vitlab[serve]')")
pytest.importorskip("selenium", reason="selenium is not installed (pip install selenium)")

from vitlab.serve.app import MAX_BYTES  # noqa: E402

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(CHROMIUM is None or CHROMEDRIVER is None,
                       reason="needs Chromium and its WebDriver: apt-get install chromium chromium-driver "
                              "(scripts/setup.sh test does it when run as root)"),
]
ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def server(tiny_run, tmp_path):
    """The real command, as a user runs it; yields its base URL once it answers."""
    port = free_port()
    env = dict(os.environ, PYTHONPATH=str(ROOT / "src"), OMP_NUM_THREADS="1")
    log = tmp_path / "serve.log"
    with open(log, "w") as out:  # a file, not a pipe: the access log can never fill a buffer and block
        proc = subprocess.Popen([sys.executable, "-m", "vitlab", "serve", str(tiny_run), "--port", str(port),
                                 "--device", "cpu"], env=env, stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/"
    try:
        deadline = time.monotonic() + 120
        while True:  # the URL is printed once the model and its figures are ready, then uvicorn starts
            if url in log.read_text():
                try:
                    urllib.request.urlopen(url + "model", timeout=2).read()
                    break
                except OSError:
                    pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError("vitlab serve did not come up:\n" + log.read_text())
            time.sleep(0.2)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture
def browser():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu", "--window-size=1400,1500"):
        opts.add_argument(arg)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=opts)  # no Selenium Manager download
    driver.set_page_load_timeout(60)
    yield driver
    driver.quit()


def api_predict(url: str, path: Path) -> dict:
    boundary = "vitlab-test-boundary"
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"image\"; filename=\"{path.name}\"\r\n"
            "Content-Type: image/png\r\n\r\n").encode() + path.read_bytes() + f"\r\n--{boundary}--\r\n".encode()
    req = urllib.request.Request(url + "predict", data=body, method="POST",
                                 headers={"Content-Type": f"multipart/form-data; boundary={boundary}"})
    return json.loads(urllib.request.urlopen(req, timeout=30).read())


def test_upload_in_chromium_shows_the_prediction(server, browser, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    wait = WebDriverWait(browser, 30)
    browser.get(server)
    wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#examples button"))
    assert "digits" in browser.find_element(By.ID, "card-table").text  # the model card arrived

    image = tmp_path / "seven.png"
    image.write_bytes(urllib.request.urlopen(server + "examples/7.png").read())
    browser.find_element(By.ID, "file-input").send_keys(str(image))
    wait.until(lambda d: d.find_element(By.ID, "predicted").text.strip())
    shown = browser.find_element(By.ID, "predicted").text.strip()
    assert shown == api_predict(server, image)["predicted"]
    tiles = browser.find_elements(By.CSS_SELECTOR, "#heads canvas")
    assert len(tiles) == 3  # the mean of the 2 heads, then each head
    assert browser.find_element(By.ID, "error").get_attribute("hidden") is not None
    shot = tmp_path / "serve.png"
    assert browser.save_screenshot(str(shot)) and shot.read_bytes().startswith(b"\x89PNG")

    # A picked example goes through the same path.
    browser.find_element(By.ID, "example-2").click()
    wait.until(ec.text_to_be_present_in_element((By.ID, "status"), "example 3 (2).png: done"))

    # A file that is no image: the page says why and keeps working.
    bad = tmp_path / "notes.txt"
    bad.write_text("not an image")
    browser.find_element(By.ID, "file-input").send_keys(str(bad))
    wait.until(ec.visibility_of_element_located((By.ID, "error")))
    assert "not an image" in browser.find_element(By.ID, "error").text

    # A file over the server's limit: the page says so, shows the limit, and sends nothing.
    assert browser.find_element(By.ID, "limit").text == "(at most 20 MiB)"
    sent = (tmp_path / "serve.log").read_text().count("POST /predict")
    huge = tmp_path / "huge.png"
    huge.write_bytes(bytes(MAX_BYTES + 5 * 2**20 // 2))
    browser.find_element(By.ID, "file-input").send_keys(str(huge))
    wait.until(ec.text_to_be_present_in_element((By.ID, "error"), "huge.png is 22.5 MiB; the server takes images "
                                                                  "of at most 20 MiB"))
    assert (tmp_path / "serve.log").read_text().count("POST /predict") == sent
