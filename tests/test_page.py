"""The drawing page in a real browser (Debian's chromium and chromedriver, driven by Selenium):
draw digits with pointer moves, upload a photo, clear, use the keyboard, fit a phone, no console errors."""

from __future__ import annotations

import json
import os
import shutil
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

import imagegen

pytestmark = pytest.mark.slow
CHROMIUM, CHROMEDRIVER = shutil.which("chromium"), shutil.which("chromedriver")
if not (CHROMIUM and CHROMEDRIVER):
    pytest.skip("Debian's chromium and chromium-driver are not installed", allow_module_level=True)
pytest.importorskip("fastapi", reason="the serve extra is not installed")
webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed")
from selenium.webdriver.common.action_chains import ActionChains  # noqa: E402
from selenium.webdriver.common.actions import interaction  # noqa: E402
from selenium.webdriver.common.actions.action_builder import ActionBuilder  # noqa: E402
from selenium.webdriver.common.actions.pointer_input import PointerInput  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.common.keys import Keys  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

# Where the README's screenshot comes from: MNISTCLI_SCREENSHOT=docs/serve-page.png pytest tests/test_page.py
SCREENSHOT = os.environ.get("MNISTCLI_SCREENSHOT")

STROKES = {  # digits as pen strokes, in fractions of the pad
    "1": [[(0.52, 0.15), (0.5, 0.85)]],
    "0": [[(0.5 + 0.2 * np.sin(t), 0.5 - 0.3 * np.cos(t)) for t in np.linspace(0, 2 * np.pi, 28)]],
    "7": [[(0.28, 0.2), (0.72, 0.2), (0.45, 0.85)]],
}


@pytest.fixture(scope="module")
def url(served):
    return served


@pytest.fixture(scope="module")
def browser():
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-quic",
                 "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--window-size=1000,760"):  # fmt: skip
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=webdriver.ChromeService(CHROMEDRIVER), options=options)
    yield driver
    driver.quit()


def by_testid(driver, name: str):
    return driver.find_element(By.CSS_SELECTOR, f'[data-testid="{name}"]')


def draw(driver, strokes, pointer: str = "mouse") -> None:
    """Pointer moves over the pad, in fractions of its size, with a mouse or a finger."""
    pad = by_testid(driver, "pad")
    w, h = pad.rect["width"], pad.rect["height"]
    kind = interaction.POINTER_TOUCH if pointer == "touch" else interaction.POINTER_MOUSE
    for stroke in strokes:
        builder = ActionBuilder(driver, mouse=PointerInput(kind, pointer), duration=15)
        points = [(int((x - 0.5) * w), int((y - 0.5) * h)) for x, y in stroke]
        builder.pointer_action.move_to(pad, *points[0]).pointer_down()
        for x, y in points[1:]:
            builder.pointer_action.move_to(pad, x, y)
        builder.pointer_action.pointer_up()
        builder.perform()


def answer(driver, previous: str = "?") -> str:
    WebDriverWait(driver, 20).until(lambda d: by_testid(d, "prediction").text not in ("", previous))
    return by_testid(driver, "prediction").text


def clear(driver) -> None:
    by_testid(driver, "clear").click()
    WebDriverWait(driver, 5).until(lambda d: by_testid(d, "prediction").text == "?")


def console_errors(driver) -> list[str]:
    return [entry["message"] for entry in driver.get_log("browser") if entry["level"] == "SEVERE"]


def test_drawn_digits_are_read_as_they_are_drawn(browser, url):
    browser.get(url)
    for digit, strokes in STROKES.items():
        draw(browser, strokes, pointer="touch" if digit == "0" else "mouse")
        assert answer(browser) == digit
        assert by_testid(browser, "input").get_attribute("src").startswith("data:image/png")  # what the network saw
        if digit == "7" and SCREENSHOT:
            Path(SCREENSHOT).parent.mkdir(parents=True, exist_ok=True)
            browser.save_screenshot(SCREENSHOT)
        clear(browser)
    assert console_errors(browser) == []


def test_clear_empties_the_pad_and_the_answer(browser, url):
    browser.get(url)
    draw(browser, STROKES["1"])
    answer(browser)
    clear(browser)
    blank = browser.execute_script(
        "const c = document.querySelector('[data-testid=pad]');"
        "const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;"
        "return d.every((v) => v === 255);"
    )
    assert blank and not by_testid(browser, "input").is_displayed()


def _photo(tmp_path: Path) -> Path:
    digit = Image.new("L", (28, 28), 0)
    ImageDraw.Draw(digit).line([(8, 6), (20, 6), (12, 23)], fill=255, width=3)  # a 7
    path = tmp_path / "photo.jpg"
    path.write_bytes(imagegen.make("paper-photo", np.asarray(digit), np.random.default_rng(3)))
    return path


def test_an_uploaded_photo_goes_through_the_same_reading_as_predict(browser, url, tmp_path):
    photo = _photo(tmp_path)
    request = urllib.request.Request(
        url + "/api/predict", data=photo.read_bytes(), headers={"Content-Type": "image/jpeg"}
    )
    expected = json.loads(urllib.request.urlopen(request, timeout=30).read())
    browser.get(url)
    by_testid(browser, "upload").send_keys(str(photo))
    assert answer(browser) == expected["label"] == "7"
    assert "photo.jpg" in browser.find_element(By.ID, "status").text
    clear(browser)
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\n not really")
    by_testid(browser, "upload").send_keys(str(broken))
    WebDriverWait(browser, 20).until(lambda d: "broken.png: not an image" in d.find_element(By.ID, "status").text)
    assert by_testid(browser, "prediction").text == "?"
    assert [e for e in console_errors(browser) if "422" not in e] == []  # the refused upload is the only one


def test_the_keyboard_clears_and_reaches_every_control(browser, url):
    browser.get(url)
    draw(browser, STROKES["7"])
    answer(browser)
    by_testid(browser, "pad").send_keys(Keys.ESCAPE)
    WebDriverWait(browser, 5).until(lambda d: by_testid(d, "prediction").text == "?")
    focusable = browser.execute_script(
        "return [...document.querySelectorAll('canvas[tabindex], button, input')].map((e) => e.dataset.testid)"
    )
    assert focusable == ["pad", "clear", "upload", "explain"]
    ActionChains(browser).send_keys(Keys.TAB).perform()
    assert browser.switch_to.active_element.get_attribute("data-testid") in ("pad", "clear", "upload", "explain")


def _stage_pictures(driver) -> list[tuple[str, str, int]]:
    """(label, src, natural width) of each stage shown, once every picture has loaded."""
    rows = driver.find_elements(By.CSS_SELECTOR, '[data-testid="stages"] li')
    WebDriverWait(driver, 10).until(
        lambda d: all(r.find_element(By.TAG_NAME, "img").get_attribute("complete") for r in rows)
    )
    return [
        (r.find_element(By.TAG_NAME, "span").text, (img := r.find_element(By.TAG_NAME, "img")).get_attribute("src"),
         int(img.get_attribute("naturalWidth")))
        for r in rows
    ]  # fmt: skip


def test_the_insides_of_the_network_are_shown_for_the_digit_drawn(browser, url):
    with urllib.request.urlopen(url + "/api/health", timeout=10) as response:
        assert json.loads(response.read())["model"] == "cnn-wide"
    browser.get(url)
    draw(browser, STROKES["7"])
    assert answer(browser) == "7"
    WebDriverWait(browser, 10).until(lambda d: by_testid(d, "insides").is_displayed())
    seven = _stage_pictures(browser)
    assert len(seven) == 13 and all(width > 0 for _, _, width in seven)  # every stage of the bundled CNN
    assert seven[0][0] == "features.0 convolution (32x28x28)" and "linear" in seven[-1][0]
    maps = browser.find_elements(By.CSS_SELECTOR, "#maps figure")
    assert len(maps) == 2 and maps[0].text.startswith("pixels for 7 (the answer)")
    assert "integrated gradients" in browser.find_element(By.ID, "method").text
    clear(browser)
    assert not by_testid(browser, "insides").is_displayed()
    draw(browser, STROKES["0"])
    assert answer(browser) == "0"
    WebDriverWait(browser, 10).until(lambda d: by_testid(d, "insides").is_displayed())
    assert [src for _, src, _ in _stage_pictures(browser)] != [src for _, src, _ in seven]  # redrawn for the 0
    by_testid(browser, "explain").click()  # off: the next answer comes without them
    WebDriverWait(browser, 10).until(lambda d: not by_testid(d, "insides").is_displayed())
    assert by_testid(browser, "prediction").text == "0" and console_errors(browser) == []


def test_it_fits_a_phone(browser, url):
    browser.set_window_size(390, 844)
    try:
        browser.get(url)
        assert browser.execute_script("return document.documentElement.scrollWidth <= window.innerWidth")
        draw(browser, STROKES["1"], pointer="touch")
        assert answer(browser) == "1"
    finally:
        browser.set_window_size(1000, 760)
    assert console_errors(browser) == []
