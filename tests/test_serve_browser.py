"""The web page in a real browser: Debian's headless Chromium driven by Selenium.

Nothing is downloaded: Selenium talks to Debian's ``chromedriver``, which matches its
``chromium`` (``apt-get install chromium chromium-driver``; .ci/run does it). Where either is
missing the tests are skipped, saying so.
"""

from __future__ import annotations

import json
import shutil
import urllib.request

import pytest

pytest.importorskip("fastapi", reason="the serve extra is not installed: pip install -e '.[dev,serve]'")
pytest.importorskip("selenium", reason="selenium is not installed: pip install -e '.[dev,serve]'")

from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from _serving import SlowSteps, running_server, tiny_items_run, tiny_run, wait_until
from charlstm.serve.app import ServeLimits, create_app

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")
pytestmark = pytest.mark.skipif(
    not (CHROMIUM and CHROMEDRIVER),
    reason="no Chromium here: apt-get install chromium chromium-driver (Debian) to run the browser tests",
)

# Headless, and quiet: without the background-networking flags Chromium keeps trying to reach
# its update and sync services, which a machine without the internet answers slowly or never.
CHROMIUM_FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--disable-dev-shm-usage", "--window-size=1100,1000",
]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    models = {"tiny": tiny_run(tmp_path_factory), "sizes": tiny_items_run(tmp_path_factory, labelled=True)}
    app = create_app(models, ServeLimits(max_length=600))
    with running_server(app) as url:
        yield url


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in [*CHROMIUM_FLAGS, f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}"]:
        options.add_argument(flag)
    with pytest.MonkeyPatch.context() as patch:
        # Selenium Manager may look for drivers online; the driver is given, so keep it offline.
        patch.setenv("SE_OFFLINE", "true")
        driver = webdriver.Chrome(options=options, service=Service(executable_path=CHROMEDRIVER))
    yield driver
    driver.quit()


def api(url: str, path: str, body: dict | None = None) -> dict:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url + path, data=data, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())


def set_value(driver, element_id: str, value) -> None:
    """Set a field as a person would leave it, firing the events the page listens to."""
    driver.execute_script(
        "const el = document.getElementById(arguments[0]); el.value = arguments[1];"
        "el.dispatchEvent(new Event('input')); el.dispatchEvent(new Event('change'));",
        element_id, str(value))


def text_of(driver, element_id: str) -> str:
    # textContent, not .text: WebDriver's visible text folds the whitespace the model wrote.
    return driver.find_element(By.ID, element_id).get_property("textContent")


def open_page(driver, url: str) -> WebDriverWait:
    driver.get(url + "/")
    wait = WebDriverWait(driver, 15)
    wait.until(lambda d: text_of(d, "fact-params") not in ("", "…"))
    return wait


def test_page_shows_the_model_and_streams_the_text_it_generates(browser, server):
    wait = open_page(browser, server)
    facts = api(server, "/v1/model")
    assert text_of(browser, "fact-params") == f"{facts['parameters']:,}"
    assert text_of(browser, "fact-vocab") == f"{facts['vocab_size']} characters"
    assert text_of(browser, "fact-bpc").startswith(f"{facts['bits_per_char']['value']:.3f}")

    browser.find_element(By.ID, "prompt").send_keys("the rabbit ")
    set_value(browser, "seed", 7)
    set_value(browser, "length", 200)
    set_value(browser, "temperature", 0.5)
    assert text_of(browser, "length-value") == "200 characters"
    browser.find_element(By.ID, "generate").click()
    wait.until(lambda d: "characters in" in text_of(d, "status"))

    expected = api(server, "/v1/generate", {"prompt": "the rabbit ", "length": 200, "temperature": 0.5,
                                            "seed": 7})
    assert text_of(browser, "output-prompt") == "the rabbit "
    assert text_of(browser, "output-text") == expected["texts"][0]
    assert "(seed 7)" in text_of(browser, "status")
    assert browser.find_element(By.ID, "generate").is_enabled()
    assert not browser.find_element(By.ID, "stop").is_enabled()


def test_min_p_and_the_repetition_control_go_with_the_request(browser, server):
    wait = open_page(browser, server)
    browser.find_element(By.ID, "prompt").send_keys("the ")
    set_value(browser, "seed", 3)
    set_value(browser, "length", 120)
    set_value(browser, "min-p", 0.2)
    set_value(browser, "dry", 1.5)
    assert text_of(browser, "min-p-value") == "0.20" and text_of(browser, "dry-value") == "1.5"
    browser.find_element(By.ID, "generate").click()
    wait.until(lambda d: "characters in" in text_of(d, "status"))
    expected = api(server, "/v1/generate", {"prompt": "the ", "length": 120, "temperature": 0.8, "seed": 3,
                                            "min_p": 0.2, "dry_multiplier": 1.5})
    assert text_of(browser, "output-text") == expected["texts"][0]


def test_stop_ends_the_stream_and_the_server_stops_generating(browser, server, monkeypatch):
    slow = SlowSteps(monkeypatch, delay=0.02)  # 600 characters would take 12 s
    wait = open_page(browser, server)
    set_value(browser, "length", 600)
    browser.find_element(By.ID, "generate").click()
    wait.until(lambda d: len(text_of(d, "output-text")) >= 5)
    browser.find_element(By.ID, "stop").click()
    wait.until(lambda d: text_of(d, "status").startswith("Stopped after"))
    assert wait_until(lambda: api(server, "/healthz")["active_generations"] == 0, timeout=5)
    assert slow.steps < 300
    assert browser.find_element(By.ID, "generate").is_enabled()


def test_unknown_prompt_characters_are_shown_as_an_error(browser, server):
    wait = open_page(browser, server)
    browser.find_element(By.ID, "prompt").send_keys("the ✓")
    browser.find_element(By.ID, "generate").click()
    wait.until(lambda d: d.find_element(By.ID, "error").is_displayed())
    error = text_of(browser, "error")
    assert error.startswith("prompt:") and "'✓'" in error
    assert text_of(browser, "output-text") == ""



def items_shown(driver) -> list[tuple[str, list[str]]]:
    """The New items list: each item's text and its tags (new / in the list, cut, label)."""
    rows = driver.execute_script(
        "return [...document.querySelectorAll('#items li')].map(li => [li.querySelector('.item-text')"
        ".textContent, [...li.querySelectorAll('.tag')].map(t => t.textContent)]);")
    return [(text, tags) for text, tags in rows]


def test_new_items_mode_lists_items_of_a_label_marked_new_or_in_the_list(browser, server):
    wait = open_page(browser, server)
    assert not browser.find_element(By.ID, "items-settings").is_displayed()  # a model of running text
    set_value(browser, "model", "sizes")
    wait.until(lambda d: d.find_element(By.ID, "items-settings").is_displayed())
    assert not browser.find_element(By.ID, "output").is_displayed()
    assert text_of(browser, "controls-heading") == "Generate new items"
    options = [o.get_property("value") for o in browser.find_elements(By.CSS_SELECTOR, "#item-label option")]
    assert options == ["", "big", "small"]
    known = text_of(browser, "fact-chars").split(" ")  # the item symbols shown, not as raw control characters
    assert {"␂", "␃", "<big>", "<small>"} <= set(known) and not {"\x02", "\x03"} & set(known)

    set_value(browser, "item-count", 4)
    set_value(browser, "seed", 3)
    set_value(browser, "item-label", "small")
    browser.find_element(By.ID, "generate").click()
    wait.until(lambda d: "items in" in text_of(d, "status"))
    body = {"model": "sizes", "prompt": "", "length": 300, "temperature": 0.8, "seed": 3, "items": 4,
            "label": "small"}
    expected = api(server, "/v1/generate", body)["items"]
    marks = {True: "new", False: "in the list"}
    tags = [[marks[i["novel"]], *([] if i["complete"] else ["cut"]), "small"] for i in expected]
    assert items_shown(browser) == [(i["text"], t) for i, t in zip(expected, tags, strict=True)]

    browser.find_element(By.ID, "new-only").click()
    browser.find_element(By.ID, "generate").click()
    wait.until(lambda d: "items in" in text_of(d, "status") and "drawn are new" in text_of(d, "status"))
    expected = api(server, "/v1/generate", {**body, "new_only": True})
    assert [text for text, _ in items_shown(browser)] == [i["text"] for i in expected["items"]]
    assert all(tags[0] == "new" for _, tags in items_shown(browser))
    assert f"{expected['new']} of {expected['drawn']} drawn are new" in text_of(browser, "status")

    browser.set_window_size(390, 844)  # a phone: the settings stack, nothing runs off the side
    try:
        assert browser.execute_script("return document.documentElement.scrollWidth <= window.innerWidth")
    finally:
        browser.set_window_size(1100, 1000)
    browser.find_element(By.ID, "new-only").click()
    set_value(browser, "model", "tiny")
    wait.until(lambda d: not d.find_element(By.ID, "items-settings").is_displayed())
