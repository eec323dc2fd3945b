"""The report page as a reader sees it: index.html, built from the committed results, opened in headless
Chromium at 1400 x 900 px (Debian's `chromium` and `chromium-driver`, driven by Selenium)."""
import base64
import re
import shutil
import subprocess

import pytest

from common.papers import PAPERS
from tests.test_report import committed_report_in

CHROMIUM, CHROMEDRIVER = shutil.which("chromium"), shutil.which("chromedriver")
STATUS_WORDS = r"(\d+ )?(reproduced|not reproduced|not run|not implemented yet|expected\.yaml unreadable)"


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed: pip install -e '.[dev]'")
    if not (CHROMIUM and CHROMEDRIVER):
        pytest.skip("no headless browser to render the report page in: install Debian's chromium and "
                    "chromium-driver (apt-get install chromium chromium-driver; .ci/run does)")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--hide-scrollbars", f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=webdriver.ChromeService(CHROMEDRIVER), options=options)
    driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride",
                           {"width": 1400, "height": 900, "deviceScaleFactor": 1, "mobile": False})
    yield driver
    driver.quit()


@pytest.fixture(scope="module")
def page(browser, tmp_path_factory):
    """The committed report's index.html, loaded (its images included) in the browser."""
    browser.get((committed_report_in(tmp_path_factory.getbasetemp()) / "index.html").as_uri())
    return browser


def test_every_image_loads_and_every_internal_link_resolves(page):
    images = page.execute_script("return [...document.images].map(i => [i.getAttribute('src'), i.naturalWidth])")
    assert images and [src for src, width in images if not width] == []
    targets = page.execute_script("return [...document.querySelectorAll('a[href^=\"#\"]')]"
                                  ".map(a => decodeURIComponent(a.getAttribute('href').slice(1)))")
    missing = page.execute_script("return arguments[0].filter(id => !document.getElementById(id))", targets)
    assert targets and missing == []
    errors = [entry["message"] for entry in page.get_log("browser") if entry["level"] == "SEVERE"]
    assert errors == []  # no file failed to load, no script failed


def test_the_first_screen_is_the_summary_one_row_per_paper(page, tmp_path):
    page.execute_script("window.scrollTo(0, 0)")
    top, height = page.execute_script("const r = document.querySelector('#summary-table tbody tr')"
                                      ".getBoundingClientRect(); return [r.top, r.height]")
    assert top + height <= page.execute_script("return window.innerHeight")  # its first row, whole, above the fold
    rows = page.execute_script("return [...document.querySelectorAll('#summary-table tbody tr')]"
                               ".map(r => r.cells[0].dataset.sort)")
    assert rows == list(PAPERS)
    shot = tmp_path / "first_screen.png"  # to look at: pytest keeps the last runs' tmp_path
    shot.write_bytes(base64.b64decode(page.execute_cdp_cmd("Page.captureScreenshot", {"format": "png"})["data"]))


def test_statuses_are_words_and_every_character_has_a_font(page):
    badges = page.execute_script("return [...document.querySelectorAll('.status')].map(b => b.textContent)")
    assert badges and [b for b in badges if not re.fullmatch(STATUS_WORDS, b)] == []
    if not shutil.which("fc-list"):
        pytest.skip("fc-list (fontconfig) is missing: cannot ask which characters the installed fonts draw")
    text = page.execute_script("return document.body.innerText")
    lacking = [c for c in sorted(set(text) - set(map(chr, range(128))))
               if c.isprintable() and not subprocess.run(["fc-list", f":charset={ord(c):x}"], capture_output=True,
                                                         text=True, check=True).stdout.strip()]
    assert lacking == []  # each would be an empty box


def test_a_table_sorts_by_the_column_whose_header_is_clicked(page):
    def papers():
        return page.execute_script("return [...document.querySelectorAll('#summary-table tbody tr')]"
                                   ".map(r => r.cells[0].dataset.sort)")
    header = page.find_element("css selector", "#summary-table th")
    header.click()
    assert papers() == sorted(PAPERS)
    header.click()
    assert papers() == sorted(PAPERS, reverse=True)
