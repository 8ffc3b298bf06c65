"""The painter page (serving/painter/) in headless Chromium, against the REST API.

A ModelManager and a RestServer (static_dir=serving/painter) serve a tiny VAE model with
instance edges and a don't-care id on 127.0.0.1; the page is driven with real pointer
events (mouse, pen, touch) and keys through Selenium. The label map the page holds is
compared with the same strokes replayed here (discs along Bresenham lines, 4-connected
fills: the painter's rules, written again in Python), and the image it shows with the
server's answer to the same request sent from here.

Needs Debian's ``chromium`` and ``chromium-driver`` and Selenium (``make setup``); without
them the tests fail with that message, never skip.
"""

from __future__ import annotations

import base64
import http.client
import importlib.util
import io
import json
import math
import os
import shutil
import time
from collections import deque
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from serving.model_manager import ModelManager
from serving.rest import RestServer
from spade_tf.classes import class_table
from spade_tf.config import ModelConfig

ROOT = Path(__file__).resolve().parents[2]
PAINTER_DIR = ROOT / "serving" / "painter"
DOCS_SCREENSHOT = ROOT / "docs" / "painter.png"
MODEL = "spade"
# The demo's classes (sky, ground, water, road, tree, building, car, person), a don't-care
# id, instance edges and a VAE: every input the painter sends.
CONFIG = ModelConfig(num_classes=8, classes="synthetic", use_dontcare_label=True,
                     dontcare_label=255, use_instance_edges=True, crop_size=64,
                     base_filters=4, spade_hidden_filters=8, use_vae=True, latent_dim=8,
                     encoder_filters=4, encoder_input_size=128)
SKY, GROUND, WATER, ROAD, TREE, BUILDING, CAR = range(7)
DONTCARE = 255
WAIT = 20.0  # seconds, for anything the page does
HTTP_TIMEOUT = 30.0
WINDOW = (1360, 860)
INSTALL_HINT = ("run `make browser` (it installs Debian's chromium and chromium-driver with "
                "apt-get; `make setup` puts selenium into .venv)")
# In the end-to-end tier (tests/conftest.py): `make test-slow` runs them.
pytestmark = pytest.mark.browser


# -- the browser --------------------------------------------------------------------------


def _browser_paths() -> tuple[str, str]:
    missing = []
    if importlib.util.find_spec("selenium") is None:
        missing.append("the selenium package")
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    if chromium is None:
        missing.append("chromium")
    if driver is None:
        missing.append("chromedriver (Debian package chromium-driver)")
    if missing:
        pytest.fail(f"the painter tests need {', '.join(missing)}: {INSTALL_HINT}",
                    pytrace=False)
    return chromium, driver


@pytest.fixture(scope="module")
def downloads(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("painter_downloads")


@pytest.fixture(scope="module")
def driver(downloads):
    chromium, chromedriver = _browser_paths()
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage",
                     "--disable-gpu", "--force-device-scale-factor=1",
                     f"--window-size={WINDOW[0]},{WINDOW[1]}", "--no-first-run",
                     "--disable-extensions", "--disable-background-networking"):
        options.add_argument(argument)
    options.add_experimental_option("prefs", {
        "download.default_directory": str(downloads), "download.prompt_for_download": False})
    browser = webdriver.Chrome(options=options, service=Service(chromedriver))
    try:
        browser.set_page_load_timeout(WAIT)
        browser.set_script_timeout(WAIT)
        # The same CSS viewport everywhere, so the screenshot is reproducible.
        browser.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", {
            "width": WINDOW[0], "height": WINDOW[1], "deviceScaleFactor": 1, "mobile": False})
        browser.execute_cdp_cmd("Browser.setDownloadBehavior", {
            "behavior": "allow", "downloadPath": str(downloads)})
        yield browser
    finally:
        browser.quit()


# -- the model and the servers -------------------------------------------------------------


@pytest.fixture(scope="module")
def rest(exports):
    """The REST server of the painter's model (the session's export), with the page at /."""
    export = exports("painter")
    assert (export.model, export.name) == (CONFIG, MODEL)
    manager = ModelManager(export.base, MODEL, poll_seconds=0)
    manager.poll()
    assert manager.current is not None, "the export did not load"
    missing = {"model_info", "synthesize_png", "synthesize_png_seeded",
               "synthesize_png_with_style"} - set(manager.current.signature_defs)
    assert not missing, f"the export lacks the painter's signatures {sorted(missing)}"
    server = RestServer(manager, port=0, static_dir=PAINTER_DIR)
    server.start()
    yield server
    assert server.stop(timeout=10)


def _url(server: RestServer, query: str = "") -> str:
    return f"http://127.0.0.1:{server.port}/{query}"


def _predict(server: RestServer, document: dict) -> tuple[int, dict]:
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=HTTP_TIMEOUT)
    try:
        connection.request("POST", f"/v1/models/{MODEL}:predict", json.dumps(document),
                           {"Content-Type": "application/json"})
        response = connection.getresponse()
        return response.status, json.loads(response.read())
    finally:
        connection.close()


# -- the painter's rules, written again ---------------------------------------------------


def disc(size: int) -> list[tuple[int, int]]:
    radius = (size - 1) / 2
    centre = radius - math.floor(radius)
    limit = radius * radius + radius / 2 + 1e-9
    span = range(-math.floor(radius), math.ceil(radius) + 1)
    return [(dx, dy) for dy in span for dx in span
            if (dx - centre) ** 2 + (dy - centre) ** 2 <= limit]


def line(x0: int, y0: int, x1: int, y1: int) -> list[tuple[int, int]]:
    points, dx, dy = [], abs(x1 - x0), -abs(y1 - y0)
    sx, sy = (1 if x0 < x1 else -1), (1 if y0 < y1 else -1)
    error = dx + dy
    while True:
        points.append((x0, y0))
        if (x0, y0) == (x1, y1):
            return points
        if 2 * error >= dy:
            error += dy
            x0 += sx
        if 2 * error <= dx:
            error += dx
            y0 += sy


def paint(labels: np.ndarray, points: list[tuple[int, int]], size: int, class_id: int) -> None:
    """A stroke through ``points``: the brush disc at the first point, then along a
    Bresenham line to each next point (pointermove events)."""
    height, width = labels.shape
    centres = [points[0]]
    for start, end in zip(points, points[1:], strict=False):
        centres += line(*start, *end)
    for cx, cy in centres:
        for dx, dy in disc(size):
            if 0 <= cx + dx < width and 0 <= cy + dy < height:
                labels[cy + dy, cx + dx] = class_id


def fill(labels: np.ndarray, x: int, y: int, class_id: int) -> None:
    """The 4-connected region of (x, y)'s id becomes ``class_id``."""
    height, width = labels.shape
    target = labels[y, x]
    if target == class_id:
        return
    queue = deque([(x, y)])
    labels[y, x] = class_id
    while queue:
        px, py = queue.popleft()
        for nx, ny in ((px - 1, py), (px + 1, py), (px, py - 1), (px, py + 1)):
            if 0 <= nx < width and 0 <= ny < height and labels[ny, nx] == target:
                labels[ny, nx] = class_id
                queue.append((nx, ny))


# -- driving the page -----------------------------------------------------------------------


class Page:
    def __init__(self, driver, server: RestServer, query: str = ""):
        self.driver = driver
        driver.get(_url(server, query))

    def js(self, script: str, *args):
        return self.driver.execute_script(script, *args)

    def state(self) -> dict:
        return self.js("return window.painter ? window.painter.state() : null;")

    def wait(self, predicate, what: str, timeout: float = WAIT):
        deadline = time.monotonic() + timeout
        while True:
            value = predicate()
            if value:
                return value
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out after {timeout} s waiting for {what}; page "
                                     f"state {self.state()}, message {self.message()!r}")
            time.sleep(0.05)

    def ready(self) -> dict:
        return self.wait(lambda: (self.state() or {}).get("ready") and self.state(),
                         "the page to load the model")

    def element(self, css: str):
        from selenium.webdriver.common.by import By

        return self.driver.find_element(By.CSS_SELECTOR, css)

    def elements(self, css: str):
        from selenium.webdriver.common.by import By

        return self.driver.find_elements(By.CSS_SELECTOR, css)

    def message(self) -> str:
        return self.js("const m = document.getElementById('message');"
                       "return m.hidden ? '' : m.className + ': ' + m.innerText;")

    def labels(self) -> np.ndarray:
        height, width = self.js("return [window.painter.height, window.painter.width];")
        return np.array(self.js("return window.painter.labels();"), np.int32).reshape(
            height, width)

    def pick_class(self, query: str, name: str) -> None:
        """Search the palette and click the class called ``name``."""
        search = self.element("#class-search")
        search.clear()
        search.send_keys(query)
        shown = self.elements("#palette li:not([hidden]) .class-item")
        names = [item.find_element("css selector", ".name").text for item in shown]
        assert name in names, f"searching {query!r} shows {names}, not {name!r}"
        shown[names.index(name)].click()

    def tool(self, name: str) -> None:
        self.element(f'.tool[data-tool="{name}"]').click()

    def brush(self, size: int) -> None:
        self.element(f'.size[data-size="{size}"]').click()

    def viewport(self, point: tuple[int, int]) -> tuple[int, int]:
        """Viewport coordinates of a label pixel's centre."""
        left, top, width, pixels = self.js(
            "const r = document.getElementById('labels').getBoundingClientRect();"
            "return [r.left, r.top, r.width, window.painter.width];")
        scale = width / pixels
        return (round(left + (point[0] + 0.5) * scale), round(top + (point[1] + 0.5) * scale))

    def stroke(self, points: list[tuple[int, int]], kind: str = "mouse") -> None:
        """Press at the first point, jump to each next one (one pointermove each), release."""
        from selenium.webdriver.common.actions import interaction
        from selenium.webdriver.common.actions.action_builder import ActionBuilder
        from selenium.webdriver.common.actions.pointer_input import PointerInput

        kinds = {"mouse": interaction.POINTER_MOUSE, "pen": interaction.POINTER_PEN,
                 "touch": interaction.POINTER_TOUCH}
        builder = ActionBuilder(self.driver, mouse=PointerInput(kinds[kind], kind), duration=0)
        builder.pointer_action.move_to_location(*self.viewport(points[0]))
        builder.pointer_action.pointer_down()
        for point in points[1:]:
            builder.pointer_action.move_to_location(*self.viewport(point))
        builder.pointer_action.pointer_up()
        builder.perform()

    def keys(self, *keys: str, modifiers: tuple[str, ...] = ()) -> None:
        from selenium.webdriver.common.action_chains import ActionChains

        chain = ActionChains(self.driver)
        for modifier in modifiers:
            chain.key_down(modifier)
        chain.send_keys(*keys)
        for modifier in reversed(modifiers):
            chain.key_up(modifier)
        chain.perform()

    def synthesize(self) -> dict:
        before = self.state()["completed"]
        self.element("#synthesize").click()
        return self.wait_synthesis(before)

    def wait_synthesis(self, before: int) -> dict:
        return self.wait(lambda: (state := self.state())["completed"] > before
                         and not state["busy"] and state, "a synthesis to finish")

    def open_file(self, css: str, path: Path) -> None:
        self.element(css).send_keys(str(path))

    def wait_labels_shown(self, labels: np.ndarray, what: str) -> None:
        """Until the image shown is the answer for ``labels`` and nothing is pending."""
        def done() -> bool:
            request = self.js("return window.painter.lastRequest();")
            return (request is not None and not self.state()["busy"]
                    and np.array_equal(decode_png(request["labelPng"]), labels))
        self.wait(done, what)


def png_b64(labels: np.ndarray) -> str:
    image = Image.fromarray(labels.astype(np.uint8 if labels.max() <= 255 else np.uint16))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode()


def decode_png(b64: str) -> np.ndarray:
    return np.array(Image.open(io.BytesIO(base64.b64decode(b64))))


def server_image(server: RestServer, signature: str, labels: np.ndarray, **extra) -> str:
    """The server's image for this map (PNG by PIL) and these other inputs, asked here."""
    label_png = png_b64(labels)
    inputs = {"label_png_bytes": [{"b64": label_png}],
              "instance_png_bytes": [{"b64": label_png}], **extra}
    status, answer = _predict(server, {"signature_name": signature, "inputs": inputs})
    assert status == 200, answer
    outputs = answer["outputs"]
    images = outputs["image_png_bytes"] if "image_png_bytes" in outputs else outputs
    assert len(images) == 1
    return images[0]["b64"]


def check_shown_image(page: Page, server: RestServer, labels: np.ndarray,
                      style: bytes | None = None) -> None:
    """The image shown is the server's answer for ``labels`` (and the seed or photo)."""
    shown = page.js("return window.painter.lastImage();")
    request = page.js("return window.painter.lastRequest();")
    # The page's own PNG encoder wrote exactly its map.
    np.testing.assert_array_equal(decode_png(request["labelPng"]), labels)
    if style is None:
        assert request["signature"] == "synthesize_png_seeded"
        expected = server_image(server, request["signature"], labels,
                                seed=[int(request["seed"])])
    else:
        assert request["signature"] == "synthesize_png_with_style"
        expected = server_image(server, request["signature"], labels,
                                style_png_bytes=[{"b64": base64.b64encode(style).decode()}])
    np.testing.assert_array_equal(decode_png(shown), decode_png(expected))
    assert base64.b64decode(shown) == base64.b64decode(expected)
    # The <img> shows it at the model's size (scaled up by CSS only).
    natural = page.js("const r = document.getElementById('result');"
                      "return r.complete ? [r.naturalWidth, r.naturalHeight] : null;")
    height, width = CONFIG.image_size
    assert natural == [width, height]


# -- tests ----------------------------------------------------------------------------------


def test_paint_fill_undo_synthesize(driver, rest, tmp_path):
    from selenium.webdriver.common.keys import Keys

    page = Page(driver, rest, f"?model={MODEL}")
    state = page.ready()
    height, width = CONFIG.image_size
    assert (page.js("return window.painter.width;"), page.js("return window.painter.height;")) \
        == (width, height)
    assert state["scale"] >= 4, "the 64 px map should be shown scaled up"
    # The palette: the 8 classes and the don't-care id, with names and colours.
    items = page.elements("#palette .class-item")
    assert [int(item.get_attribute("data-id")) for item in items] == [*range(8), DONTCARE]
    assert "water" in items[WATER].text and "2" in items[WATER].text
    assert state["eraser"] == SKY  # "sky" is the background when the classes have one
    expected = np.full((height, width), SKY, np.int32)
    np.testing.assert_array_equal(page.labels(), expected)

    # A horizontal band across the whole map (one jump: interpolated, no gaps).
    page.pick_class("wat", "water")
    assert page.state()["current"] == WATER
    assert len(page.elements("#palette li:not([hidden])")) == 1
    page.brush(5)
    band = [(0, 40), (63, 40)]
    page.stroke(band)
    paint(expected, band, 5, WATER)
    # Fill the part below the band with ground.
    page.pick_class("grou", "ground")
    page.keys("f")
    assert page.state()["tool"] == "fill"
    page.stroke([(10, 55)])
    fill(expected, 10, 55, GROUND)
    # A tree drawn with touch, a road with a pen (a diagonal: Bresenham between samples).
    page.keys("b")
    page.pick_class("tree", "tree")
    page.brush(3)
    trunk = [(20, 6), (20, 20), (22, 34)]
    page.stroke(trunk, kind="touch")
    paint(expected, trunk, 3, TREE)
    page.pick_class("ro", "road")
    page.brush(1)
    road = [(34, 4), (58, 29)]
    page.stroke(road, kind="pen")
    paint(expected, road, 1, ROAD)
    # The eraser paints the background class (sky) over part of the trunk.
    page.keys("e")
    page.brush(3)
    erased = [(18, 8), (24, 8)]
    page.stroke(erased)
    paint(expected, erased, 3, SKY)
    np.testing.assert_array_equal(page.labels(), expected)

    # A car stroke, undone with Ctrl+Z, redone, undone again.
    page.tool("brush")
    page.pick_class("car", "car")
    page.brush(9)
    page.stroke([(45, 50), (56, 52)])
    assert CAR in page.labels()
    page.element("#palette .class-item.selected").click()  # focus off the search field
    page.keys("z", modifiers=(Keys.CONTROL,))
    np.testing.assert_array_equal(page.labels(), expected)
    assert page.state()["canRedo"]
    page.keys("z", modifiers=(Keys.CONTROL, Keys.SHIFT))
    assert CAR in page.labels()
    page.element("#undo").click()
    np.testing.assert_array_equal(page.labels(), expected)

    # The eyedropper picks ground and goes back to the brush.
    page.keys("i")
    page.stroke([(5, 60)])
    assert (page.state()["current"], page.state()["tool"]) == (GROUND, "brush")

    labels = page.labels()
    np.testing.assert_array_equal(labels, expected)
    # Never an id in between: exactly the classes painted, and the band's edge rows hold
    # only the band or its neighbours.
    assert set(np.unique(labels)) == {SKY, GROUND, WATER, ROAD, TREE}
    assert set(np.unique(labels[37:44])) <= {SKY, GROUND, WATER}
    assert set(np.unique(labels[38:43])) == {WATER}

    # Synthesize with the seed shown; the page shows the server's image for its map.
    state = page.synthesize()
    assert state["lastError"] is None, page.message()
    assert page.element("#timing").text.split()[0].isdigit()  # "123 ms · seed N"
    assert f"seed {state['seed']}" in page.element("#timing").text
    check_shown_image(page, rest, labels)

    # A typed seed, then "random" twice at once: the later request wins.
    seed = page.element("#seed")
    seed.clear()
    seed.send_keys("1234", Keys.ENTER)
    page.wait_synthesis(state["completed"])
    assert page.js("return window.painter.lastRequest().seed;") == 1234
    check_shown_image(page, rest, labels)
    before = page.state()["completed"]
    page.js("document.getElementById('random-seed').click();"
            "document.getElementById('random-seed').click();")
    state = page.wait_synthesis(before)
    assert page.js("return window.painter.lastRequest().seed;") == int(state["seed"])
    check_shown_image(page, rest, labels)

    # Live: a stroke is synthesized on its own shortly after (a fixed seed, for the
    # screenshot).
    seed.clear()
    seed.send_keys("2024")
    before = page.state()["completed"]
    page.element("#live").click()
    state = page.wait_synthesis(before)
    page.pick_class("build", "building")
    page.brush(15)
    page.stroke([(48, 14), (52, 18)])
    paint(expected, [(48, 14), (52, 18)], 15, BUILDING)
    np.testing.assert_array_equal(page.labels(), expected)
    page.wait_labels_shown(expected, "the live synthesis of the last stroke")
    check_shown_image(page, rest, expected)
    page.element("#live").click()

    screenshot = tmp_path / "painter.png"
    page.js("document.getElementById('class-search').value = '';"
            "document.getElementById('class-search').dispatchEvent(new Event('input'));")
    page.js("document.activeElement.blur();")
    driver.save_screenshot(str(screenshot))
    assert Image.open(screenshot).size == WINDOW
    # The README's picture: written when missing, or on request (it differs a little on
    # every run, e.g. the time shown, and is a tracked file).
    if not DOCS_SCREENSHOT.exists() or os.environ.get("SPADE_UPDATE_SCREENSHOT") == "1":
        DOCS_SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(screenshot, DOCS_SCREENSHOT)


def _wait_file(path: Path, timeout: float = WAIT) -> bytes:
    deadline = time.monotonic() + timeout
    while not (path.is_file() and path.stat().st_size):
        if time.monotonic() > deadline:
            raise AssertionError(f"{path.name} was not downloaded within {timeout} s; the "
                                 f"folder has {sorted(p.name for p in path.parent.iterdir())}")
        time.sleep(0.05)
    time.sleep(0.2)  # let Chromium finish writing it
    return path.read_bytes()


def test_open_save_style_and_errors(driver, rest, downloads, tmp_path):
    height, width = CONFIG.image_size
    page = Page(driver, rest, f"?model={MODEL}&api=http://127.0.0.1:{rest.port}")
    page.ready()
    palette = class_table(CONFIG.classes, CONFIG.num_classes, DONTCARE).palette

    # An 8-bit grayscale map of ids, the don't-care id included.
    blocks = np.random.default_rng(3).integers(0, CONFIG.num_classes, (8, 8))
    ids = np.kron(blocks, np.ones((8, 8), np.int64)).astype(np.uint8)
    ids[:4, :4] = DONTCARE
    gray8 = tmp_path / "gray8.png"
    Image.fromarray(ids).save(gray8)
    page.open_file("#open-file", gray8)
    page.wait(lambda: np.array_equal(page.labels(), ids), "the 8-bit map to open")
    assert "8-bit grayscale" in page.message()

    # A 16-bit grayscale map at half the size: resized with nearest neighbour.
    half = np.random.default_rng(4).integers(0, CONFIG.num_classes, (height // 2, width // 2))
    gray16 = tmp_path / "gray16.png"
    Image.fromarray(half.astype(np.uint16)).save(gray16)
    assert Image.open(gray16).mode == "I;16"
    page.open_file("#open-file", gray16)
    doubled = np.kron(half, np.ones((2, 2), np.int64))
    page.wait(lambda: np.array_equal(page.labels(), doubled), "the 16-bit map to open")
    assert "16-bit grayscale" in page.message() and "resized from 32×32" in page.message()

    # A map in the classes' colours, with one colour of no class (reported, painted as sky).
    colours = palette[ids.clip(0, CONFIG.num_classes - 1)].astype(np.uint8)
    colours[60:, 60:] = (1, 2, 3)
    coloured = tmp_path / "colours.png"
    Image.fromarray(colours).save(coloured)
    page.open_file("#open-file", coloured)
    expected = ids.clip(0, CONFIG.num_classes - 1).astype(np.int32)
    expected[60:, 60:] = SKY
    page.wait(lambda: np.array_equal(page.labels(), expected), "the colour map to open")
    assert "warning" in page.message() and "#010203 (16 px)" in page.message()
    page.element("#undo").click()  # opening is undoable
    np.testing.assert_array_equal(page.labels(), doubled)
    page.element("#redo").click()

    # Save the label map: a grayscale PNG of exactly the page's ids.
    page.element("#save-labels").click()
    saved = Image.open(io.BytesIO(_wait_file(downloads / f"{MODEL}-labels.png")))
    assert saved.mode == "L"
    np.testing.assert_array_equal(np.array(saved), expected)

    # A style photo (VAE): the style signature, the same image as asked from here.
    photo = np.zeros((40, 56, 3), np.uint8)
    photo[..., 0], photo[..., 2] = 220, 90
    photo_file = tmp_path / "style.jpg"
    Image.fromarray(photo).save(photo_file, quality=90)
    before = page.state()["completed"]
    page.open_file("#style-file", photo_file)
    state = page.wait_synthesis(before)
    assert state["lastError"] is None and state["styleMode"] == "photo", page.message()
    check_shown_image(page, rest, expected, style=photo_file.read_bytes())
    assert page.element("#seed").get_attribute("disabled") is not None
    assert "photo style" in page.element("#timing").text

    # Save the image: the PNG the server sent.
    page.element("#save-image").click()
    image = _wait_file(downloads / f"{MODEL}.png")
    assert image == base64.b64decode(page.js("return window.painter.lastImage();"))

    # An id of no class: opened with a warning, refused by the server, shown in the page.
    bad = ids.copy()
    bad[20:30, 20:30] = 9
    bad_file = tmp_path / "bad.png"
    Image.fromarray(bad).save(bad_file)
    page.open_file("#open-file", bad_file)
    page.wait(lambda: "ids of no class" in page.message(), "the warning about id 9")
    state = page.synthesize()
    assert state["lastError"].startswith("Synthesis failed: HTTP 400: "), state
    assert page.message().startswith("message error: Synthesis failed: HTTP 400")
    assert page.element("#message").get_attribute("role") == "alert"

    # A client-side mistake: a seed that is not a number.
    page.element("#undo").click()
    page.js("document.querySelector('input[value=\"seed\"]').click();")
    seed = page.element("#seed")
    seed.clear()
    seed.send_keys("12x")
    state = page.synthesize()
    assert 'Seed "12x"' in state["lastError"], state


def test_missing_model_and_wrong_api_are_shown(driver, rest):
    page = Page(driver, rest, "?model=nope")
    page.wait(lambda: "error" in page.message(), "the error about the missing model")
    message = page.message()
    assert "nope" in message and "HTTP 404" in message, message
    assert "not available" in page.element("#model-status").text
    assert not page.state()["ready"]
    assert page.element("#synthesize").get_attribute("disabled") is not None

    page = Page(driver, rest, f"?model={MODEL}&api=/not-the-proxy")
    page.wait(lambda: "error" in page.message(), "the error about the wrong API base")
    assert "/not-the-proxy/v1/models/spade" in page.message() or "HTTP 404" in page.message()


def test_the_page_at_root_paints_with_the_served_model_whatever_its_name(driver, rest):
    """No ?model=: the page asks the server which model it serves (here "coco")."""
    manager = ModelManager(rest.manager.base_path, "coco", poll_seconds=0)
    manager.poll()
    server = RestServer(manager, port=0, static_dir=PAINTER_DIR)
    server.start()
    try:
        page = Page(driver, server)
        page.ready()
        assert page.element("#model-status").text.startswith("coco · version "), \
            page.element("#model-status").text
        assert "error" not in page.message()
        connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=HTTP_TIMEOUT)
        connection.request("GET", "/painter/models.json")
        assert json.loads(connection.getresponse().read()) == {"models": ["coco"]}
        connection.close()
    finally:
        assert server.stop(timeout=10)


def test_the_placeholder_keeps_the_spaces_around_its_bold_words(driver, rest, tmp_path):
    page = Page(driver, rest, f"?model={MODEL}")
    page.ready()
    placeholder = page.element("#result-placeholder")
    # innerText is the text as laid out: a flex box trims each run around <b> on its own.
    assert placeholder.get_attribute("innerText") == \
        "Paint, then press Synthesize\nor turn on Live."
    placeholder.screenshot(str(tmp_path / "placeholder.png"))
    if os.environ.get("SPADE_PLACEHOLDER_SCREENSHOT"):  # to look at it
        shutil.copyfile(tmp_path / "placeholder.png", os.environ["SPADE_PLACEHOLDER_SCREENSHOT"])


def test_a_coco_stuff_canvas_starts_as_sky_not_person(driver, exports):
    """COCO-Stuff has no "sky" (class 0 is "person"): its sky is "sky-other"; never the
    don't-care id, which the model saw only on thin unlabelled seams."""
    export = exports("coco_stuff")
    assert (export.model.num_classes, export.model.classes, export.name) == (
        182, "coco_stuff", "coco")
    manager = ModelManager(export.base, "coco", poll_seconds=0)
    manager.poll()
    server = RestServer(manager, port=0, static_dir=PAINTER_DIR)
    server.start()
    try:
        table = class_table("coco_stuff", 182, 255)
        sky, grass = (table.names.index(name) for name in ("sky-other", "grass"))
        page = Page(driver, server, "?model=coco")
        state = page.ready()
        assert (state["eraser"], state["current"]) == (sky, grass), state
        np.testing.assert_array_equal(page.labels(), np.full((32, 32), sky, np.int32))
        assert page.element("#eraser-class").get_attribute("value") == str(sky)
    finally:
        assert server.stop(timeout=10)
