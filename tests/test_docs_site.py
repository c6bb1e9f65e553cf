"""The documentation site (mkdocs.yml, docs/) builds with warnings as errors (a broken link, a missing
page or API reference fails), the README's links lead somewhere, and a built page, looked at in headless
Chromium, renders with its figures loaded."""
from __future__ import annotations

import functools
import os
import re
import shutil
import subprocess
import sys
import threading
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")


def test_readme_links_lead_to_files():
    text = (ROOT / "README.md").read_text()
    targets = re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", text)
    local = [t for t in targets if not re.match(r"[a-z]+:", t)]
    assert len(local) >= 10
    missing = [t for t in local if not (ROOT / t).exists()]
    assert not missing, f"README.md links to files that do not exist: {missing}"


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    for mod in ("mkdocs", "material", "mkdocstrings_handlers.python"):
        pytest.importorskip(mod, reason="the 'docs' extra is not installed (pip install -e '.[docs]')")
    out = tmp_path_factory.mktemp("site")
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "NO_MKDOCS_2_WARNING": "1"}
    r = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "-d", str(out)], cwd=ROOT, env=env,
                       capture_output=True, text=True, timeout=300)
    log = r.stdout + r.stderr
    assert r.returncode == 0 and "WARNING" not in log, log[-5000:]
    return out


@pytest.mark.slow
def test_site_builds_strictly_with_every_section(site):
    for page in ("guides/setup", "guides/own-images", "guides/data", "guides/training", "guides/evaluate",
                 "guides/deploy", "guides/experiments", "reference/models", "reference/cli", "reference/recipe",
                 "reference/api", "design/exactness", "design/streaming", "design/fsdp", "design/speed",
                 "design/benchmarks", "results/main-job", "results/experiments"):
        assert (site / page / "index.html").is_file(), page
    api = (site / "reference" / "api" / "index.html").read_text()
    assert "load_model" in api and "checkpoint" in api  # signatures and docstrings came from the code


@pytest.mark.slow
@pytest.mark.skipif(CHROMIUM is None or CHROMEDRIVER is None,
                    reason="needs Chromium and its WebDriver: apt-get install chromium chromium-driver "
                           "(scripts/setup.sh test does it when run as root)")
def test_results_page_renders_with_its_figures_in_chromium(site, tmp_path):
    pytest.importorskip("selenium", reason="selenium is not installed (pip install selenium)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_QuietHandler, directory=str(site)))
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu", "--window-size=1200,1600"):
        opts.add_argument(arg)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=opts)
    try:
        driver.set_page_load_timeout(60)
        driver.get(f"http://127.0.0.1:{httpd.server_address[1]}/results/main-job/")
        assert driver.find_element(By.TAG_NAME, "h1").text.startswith("The main job")
        assert "Exactness" in driver.find_element(By.CSS_SELECTOR, "nav.md-nav").get_attribute("textContent")
        figures = driver.execute_script(
            "return Array.from(document.querySelectorAll('article img')).map(i => [i.getAttribute('src'), "
            "i.complete && i.naturalWidth > 0]);")
        assert len(figures) >= 6, figures
        assert all(ok for _, ok in figures), [src for src, ok in figures if not ok]
        assert driver.save_screenshot(str(tmp_path / "main-job.png"))
    finally:
        driver.quit()
        httpd.shutdown()


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:  # the test's output is the assertions, not an access log
        pass
