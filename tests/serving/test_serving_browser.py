"""The web page end to end in headless Chromium (Debian's chromium + chromium-driver, Selenium).

Skips with the reason when Selenium, chromium or chromedriver is missing; `.ci/run` installs
them so CI always runs it.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed (pip install selenium)")
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support import expected_conditions as ec  # noqa: E402
from selenium.webdriver.support.ui import Select, WebDriverWait  # noqa: E402

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")


@pytest.fixture
def browser():
    if CHROMIUM is None or CHROMEDRIVER is None:
        pytest.skip("headless browser test needs Debian's chromium and chromium-driver "
                    "(apt-get install -y chromium chromium-driver)")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--no-first-run", "--window-size=1280,1000"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=webdriver.ChromeService(executable_path=CHROMEDRIVER),
                              options=options)
    yield driver
    driver.quit()


def _rec_ids(driver) -> list[str]:
    """Item IDs of the shown recommendations, read in one script (the list may re-render)."""
    return driver.execute_script(
        "return Array.from(document.querySelectorAll('#recs li'), li => li.dataset.itemId)")


def test_page_shows_history_recommendations_similar_and_records_a_rating(
        browser, thread_server, ml100k_model_dir: Path, tmp_path: Path, keys):
    from recforge.serving.app import create_app

    app = create_app(ml100k_model_dir, f"sqlite:///{tmp_path / 'events.db'}", keys.file)
    url = thread_server(app)
    wait = WebDriverWait(browser, 20)
    browser.get(url + "/")

    # the service needs a key: the page asks for it
    wait.until(ec.visibility_of_element_located((By.ID, "api-key")))
    browser.find_element(By.ID, "api-key").send_keys("rfk_wrong")
    browser.find_element(By.ID, "save-key").click()
    wait.until(ec.text_to_be_present_in_element((By.ID, "key-error"), "invalid API key"))
    browser.find_element(By.ID, "api-key").send_keys(keys.read)
    browser.find_element(By.ID, "save-key").click()
    wait.until(lambda d: d.find_element(By.TAG_NAME, "body").get_attribute("data-ready") == "true")
    assert "itemknn" in browser.find_element(By.ID, "model-info").text

    # choose a user: history with titles and ratings, recommendations with scores
    user = browser.find_element(By.ID, "user-input")
    user.clear()
    user.send_keys("1")
    browser.find_element(By.ID, "load-user").click()
    wait.until(lambda d: len(_rec_ids(d)) == 10)
    history_rows = browser.find_elements(By.CSS_SELECTOR, "#history tbody tr")
    assert history_rows and "Toy Story (1995)" in browser.find_element(By.ID, "history").text
    first = browser.find_element(By.CSS_SELECTOR, "#recs li")
    assert first.find_element(By.CSS_SELECTOR, ".item-link").text  # a title
    assert float(first.find_element(By.CSS_SELECTOR, ".score").text) > 0
    assert "because of" in first.find_element(By.CSS_SELECTOR, ".why").text
    top = _rec_ids(browser)[0]

    # click an item: similar items appear, and it becomes the item to rate
    first.find_element(By.CSS_SELECTOR, ".item-link").click()
    wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#similar-list li")) == 10)
    assert browser.find_element(By.ID, "similar-title").text.startswith("Similar to ")
    assert browser.find_element(By.ID, "rate-item").get_attribute("value") == top

    # record a rating: the recommendations change, the history shows the new rating
    Select(browser.find_element(By.ID, "rate-value")).select_by_visible_text("4")
    browser.find_element(By.ID, "rate-submit").click()
    wait.until(lambda d: top not in _rec_ids(d) and len(_rec_ids(d)) == 10)
    wait.until(ec.text_to_be_present_in_element((By.ID, "status"), f"recorded 4 for item {top}"))
    newest = browser.find_element(By.CSS_SELECTOR, "#history tbody tr")
    assert newest.get_attribute("data-item-id") == top and "new (rating)" in newest.text

    # an unknown user gets the popularity fallback, flagged on the page
    user.clear()
    user.send_keys("someone-new")
    browser.find_element(By.ID, "load-user").click()
    wait.until(ec.visibility_of_element_located((By.ID, "fallback")))
    assert "new to the model" in browser.find_element(By.ID, "status").text
