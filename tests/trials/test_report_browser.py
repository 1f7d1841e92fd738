"""The HTML report in a real browser (issue 13 item 4): headless Chromium from Debian's `chromium`
package, driven by Selenium through Debian's `chromium-driver` (.ci/run installs both).

Skipped, saying so, where they are not installed (`make test` on a fresh machine without apt).
The screenshot goes to $ADF_REPORT_SCREENSHOT when set, for a person to look at.
"""

import json
import os
import re
import shutil
from pathlib import Path

import pytest
from test_report import job_rows, write_job

from trials.job_report import write_report

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")

pytestmark = pytest.mark.skipif(
    not (CHROMIUM and CHROMEDRIVER),
    reason="needs Debian's chromium and chromium-driver (apt-get install chromium chromium-driver; .ci/run does)",
)


def _epochs(job: Path, rows: list[dict]) -> None:
    """A result.json per search trial, as Tune writes them, so the report has search curves."""
    for r in rows:
        if r["stage"] != "search" or r["status"] != "succeeded":
            continue
        trial = job / r["trial_key"]
        trial.mkdir()
        lines = [{"phase": "search", "stage": "search", "trial_key": r["trial_key"], "trial_id": r["trial_id"],
                  "epoch": e, "epochs": 4, "train_loss": 1.5 - e / 10, "val_loss": 1.6 - e / 10, "val_top1": 30 + e,
                  "test_top1": None, "lr": 0.1, "epoch_seconds": 1.0, "alpha_entropy": 1.9 - e / 20,
                  "beta_entropy": 0.7, "timestamp": 1000 + e} for e in range(1, 5)]
        (trial / "result.json").write_text("".join(json.dumps(line) + "\n" for line in lines))


@pytest.fixture(scope="module")
def browser():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--window-size=1400,1000", "--blink-settings=imagesEnabled=true"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(60)
    yield driver
    driver.quit()


def test_every_table_figure_and_genotype_of_the_report_renders_in_chromium(browser, tmp_path):
    from selenium.webdriver.common.by import By

    rows = job_rows()
    job = Path(write_job(tmp_path, rows))
    _epochs(job, rows)
    written = write_report(job)
    page = next(Path(w) for w in written if w.endswith("report.html"))
    text = page.read_text()
    # nothing external: no URL to load (the SVGs' namespace and metadata URIs are names, not loads)
    assert not re.search(r"""(src|href)\s*=\s*["']?\s*(https?:|//)|url\(\s*["']?(https?:|//)|@import""", text)
    assert "<script" not in text and "<link" not in text and "<img" not in text

    browser.get(page.as_uri())
    assert browser.title == "Report of job job"
    tables = browser.find_elements(By.CSS_SELECTOR, "table[id^='table-']")
    assert [t.get_attribute("id") for t in tables] == [
        "table-table3_baselines", "table-table4_searched_vs_random", "table-table4_per_setting",
        "table-table5_bohb", "table-operator_choice", "table-trial_status"]
    assert all(t.find_elements(By.CSS_SELECTOR, "tbody tr") for t in tables)
    figures = browser.find_elements(By.CSS_SELECTOR, "#figures figure")
    figure_files = sorted(Path(w).stem for w in written if w.endswith(".svg") and "/figures/" in w)
    assert sorted(f.get_attribute("id") for f in figures) == figure_files and len(figures) >= 5
    genotypes = browser.find_elements(By.CSS_SELECTOR, "#genotypes figure")
    assert len(genotypes) >= 2  # the best searched genotype and another setting's best
    for graphic in [*figures, *genotypes]:
        svg = graphic.find_element(By.TAG_NAME, "svg")
        size = svg.size
        assert size["width"] > 200 and size["height"] > 100, graphic.get_attribute("id")  # laid out, not empty
        assert svg.find_elements(By.TAG_NAME, "text"), graphic.get_attribute("id")  # labels kept as text
    links = browser.find_elements(By.CSS_SELECTOR, "nav a")
    targets = {a.get_attribute("href").rsplit("#", 1)[1] for a in links}
    for target in targets:  # every link of the contents lands on something
        assert browser.find_elements(By.ID, target), target
    shot = os.environ.get("ADF_REPORT_SCREENSHOT") or str(tmp_path / "report.png")
    browser.set_window_size(1400, 1000)
    height = browser.execute_script("return document.body.scrollHeight")
    browser.set_window_size(1400, min(int(height) + 100, 12000))
    assert browser.save_screenshot(shot) and Path(shot).stat().st_size > 10_000
