"""The live page and the report in a real browser: Debian's headless Chromium driven by Playwright.

The page's Content-Security-Policy forbids eval, so every wait is written as a function.

Screenshots are kept in the artifacts folder ($CONVLENS_ARTIFACTS, default ./artifacts).
"""

from __future__ import annotations

import json
import shutil
import urllib.request

import pytest
from conftest import untrained_run

from convlens import runs
from convlens.data import load_dataset
from convlens.jobs.report import report
from convlens.training import predict
from harness import (DIGIT_STROKES, DRAW_IN_PAGE, chromium_available, chromium_page, draw_with_mouse, running_server,
                                  wait_until_idle)

pytestmark = pytest.mark.skipif(not chromium_available(), reason="Debian's chromium is not installed (make test installs it)")


@pytest.fixture(scope="module")
def served(mnist_run, tmp_path_factory):
    """A runs folder with the MNIST run and an untrained Fashion-MNIST run, served by `convlens serve`."""
    folder = tmp_path_factory.mktemp("browser-runs")
    shutil.copytree(mnist_run, folder / "fast-mnist")
    untrained_run(folder / "fashion", "fashion-mnist")
    with running_server(folder / "fast-mnist") as url:
        yield url, folder


@pytest.fixture
def page(served):
    url, _ = served
    with chromium_page() as page:
        page.goto(url)
        page.wait_for_selector("body[data-ready='1']", timeout=30000)
        yield page
        assert page.errors == []


def predicted(page) -> int:
    return int(page.get_attribute("#prediction", "data-class"))


def pick_index(page, index: int) -> None:
    """Pick test image `index` and wait for that pick's own answer: the page opens on image #0, and an answer
    still on its way would set #index back after the next fill."""
    shown = page.evaluate("window.convlens.updates")
    page.fill("#index", str(index))
    page.click("#pick-index")
    page.wait_for_function(f"""() => window.convlens.updates > {shown} &&
        document.getElementById('source').textContent.includes('#{index},')""")


@pytest.mark.parametrize("digit", [1, 7])
def test_a_drawn_digit_is_recognised(page, digit, artifacts):
    page.click("#clear")
    draw_with_mouse(page, DIGIT_STROKES[digit])
    wait_until_idle(page)
    assert predicted(page) == digit
    assert page.evaluate("window.convlens.latencies.length") >= 1
    page.screenshot(path=str(artifacts / f"live_drawn_{digit}.png"), full_page=True)


def test_frames_during_a_stroke_leave_out_the_attribution_and_the_lifted_pen_brings_it(page):
    page.click("#clear")  # an empty pad is sent once, with its overlay
    wait_until_idle(page)
    before = page.evaluate("window.convlens.timings.length")
    page.evaluate(DRAW_IN_PAGE, [DIGIT_STROKES[7], 6])
    wait_until_idle(page)
    overlays = page.evaluate(f"window.convlens.timings.slice({before}).map(t => t.overlay)")
    assert overlays[-1] is True and False in overlays  # frames mid-stroke without, the finished digit with
    assert sum(overlays) <= len(DIGIT_STROKES[7])  # at most one overlay per stroke
    lit = """() => { const c = document.getElementById('overlay'), d = c.getContext('2d').getImageData(0, 0, c.width,
        c.height).data; let n = 0; for (let i = 3; i < d.length; i += 4) n += d[i] > 0; return n; }"""
    assert page.evaluate(lit) > 0
    page.uncheck("#show-overlay")
    page.evaluate(DRAW_IN_PAGE, [DIGIT_STROKES[7][:1], 3])
    wait_until_idle(page)
    assert page.evaluate("window.convlens.timings.at(-1).overlay") is False  # a hidden overlay is not computed
    page.check("#show-overlay")
    wait_until_idle(page)
    assert page.evaluate("window.convlens.timings.at(-1).overlay") is True and page.evaluate(lit) > 0


def test_every_layer_renders_its_maps(page, served):
    url, folder = served
    layers = page.evaluate("""() => [...document.querySelectorAll('canvas[data-layer]')].map(c => {
        const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
        let lit = 0;
        for (let i = 0; i < d.length; i += 4) if (d[i] > 0 && d[i] < 255) lit++;
        return {name: c.dataset.layer, updates: Number(c.dataset.updates), lit};
    })""")
    info = page.evaluate("fetch('/api/runs/fast-mnist').then(r => r.json())")
    assert [l["name"] for l in layers] == [l["name"] for l in info["layers"]]
    assert [l["name"] for l in info["layers"] if l["units"]] == ["dense1", "logits"]  # drawn as bars
    for layer in layers:
        assert layer["updates"] >= 1 and layer["lit"] > 0, layer


def test_the_model_graph_opens_a_layers_maps_with_a_click(page):
    page.click("#graph-panel summary")
    nodes = page.evaluate("[...document.querySelectorAll('#graph g[data-node]')].map(g => g.dataset.node)")
    info = page.evaluate("fetch('/api/runs/fast-mnist').then(r => r.json())")
    assert nodes == ["input"] + [layer["name"] for layer in info["graph"][1:]] and "flatten" in nodes
    page.evaluate("window.scrollTo(0, 0)")
    page.click("#graph g[data-node='logits']")
    page.wait_for_function("document.querySelector('canvas[data-layer=\"logits\"]').closest('.layer')"
                           ".classList.contains('flash')")
    box = page.locator("canvas[data-layer='logits']").bounding_box()
    assert 0 <= box["y"] <= page.viewport_size["height"]  # scrolled into view
    assert page.locator("#graph g.shown").count() == len(info["layers"])  # flatten has no maps: not clickable


def test_a_picked_test_image_is_predicted_as_by_eval(page, mnist_run):
    model = runs.load_run(mnist_run).model
    ds = load_dataset("mnist")
    expected = predict(model, ds.test_images).argmax(1)
    wrong = (expected != ds.test_labels).nonzero().flatten().tolist()
    for index in (0, 1234, wrong[0]):
        pick_index(page, index)
        assert predicted(page) == int(expected[index])
    assert "misclassified as" in page.text_content("#source")


def test_an_older_answer_arriving_late_never_overwrites_a_newer_pick(page, mnist_run):
    """Two picks in quick succession can be answered out of order (two connections, one server batch): the
    page shows the newer one. The older request is held back in the page until the newer one is shown."""
    page.evaluate("""() => { const fetch = window.fetch, before = window.convlens.updates;
        const newerShown = () => new Promise((go) => { const t = setInterval(() => {
            if (window.convlens.updates > before) { clearInterval(t); go(); } }, 10); });
        window.fetch = (url, options) => url.endsWith('index=5') ? newerShown().then(() => fetch(url, options))
                                                                  : fetch(url, options); }""")
    for index in (5, 1234):
        page.fill("#index", str(index))
        page.click("#pick-index")
    page.wait_for_function("() => window.convlens.stale === 1")  # the held answer has come, and was dropped
    expected = predict(runs.load_run(mnist_run).model, load_dataset("mnist").test_images[[1234]]).argmax(1)
    assert "#1234," in page.text_content("#source") and page.input_value("#index") == "1234"
    assert predicted(page) == int(expected[0])


def test_uploading_a_non_image_shows_the_error(page, tmp_path):
    notes = tmp_path / "notes.txt"
    notes.write_text("not a picture")
    page.set_input_files("#upload", str(notes))
    page.wait_for_selector("#error:not([hidden])")
    assert "notes.txt" in page.text_content("#error") and "image/png" in page.text_content("#error")
    fake = tmp_path / "fake.png"
    fake.write_bytes(b"\x89PNG but not really")
    page.set_input_files("#upload", str(fake))
    page.wait_for_function("() => document.getElementById('error').textContent.includes('fake.png')")
    assert "not a readable PNG or JPEG" in page.text_content("#error")


def test_an_uploaded_picture_lands_on_the_pad_and_clear_empties_the_maps_too(page, mnist, tmp_path):
    from PIL import Image

    Image.fromarray(mnist.test_images[3].numpy()).resize((112, 112)).save(tmp_path / "zero.png")
    shown = page.evaluate("window.convlens.updates")
    page.set_input_files("#upload", str(tmp_path / "zero.png"))
    page.wait_for_function(f"() => window.convlens.updates > {shown}")
    ink = """(id) => { const c = document.getElementById(id), d = c.getContext('2d')
        .getImageData(0, 0, c.width, c.height).data; let n = 0; for (let i = 0; i < d.length; i += 4) n += d[i] > 128;
        return n; }"""
    assert page.evaluate(ink, "pad") > 500 and "draw on it to edit it" in page.text_content("#source")
    assert predicted(page) == int(mnist.test_labels[3])
    shown = page.evaluate("window.convlens.updates")
    page.click("#clear")
    page.wait_for_function(f"() => window.convlens.updates > {shown}")
    wait_until_idle(page)
    assert page.evaluate(ink, "pad") == 0 and page.evaluate(ink, "model-input") == 0  # the maps are an empty pad's


def test_hovering_a_map_shows_its_top_inputs(page, artifacts):
    page.hover("canvas[data-layer='conv2']", position={"x": 20, "y": 20})
    page.wait_for_selector("#detail .tops figure")
    assert page.locator("#detail .tops figure").count() == 8
    assert "conv2 · map 0" in page.text_content("#detail h2")
    assert page.get_attribute("canvas[data-layer='conv2']", "title") == "conv2 map 0"  # the number at the pointer
    page.screenshot(path=str(artifacts / "live_page.png"), full_page=True)


def test_a_hover_before_the_search_ends_shows_how_far_it_is_and_then_the_images(page):
    answered = []

    def searching_at_first(route):  # the server's answer while its background search is a quarter through
        answered.append(route.request.url)
        if len(answered) == 1:
            route.fulfill(json={"layer": "conv2", "map": 0, "oip": None, "top": None,
                                "searched": {"done": 2500, "total": 10000}})
        else:
            route.continue_()

    page.route("**/maps/conv2/**", searching_at_first)
    page.hover("canvas[data-layer='conv2']", position={"x": 20, "y": 20})
    page.wait_for_selector("#detail progress")
    assert "searching the 10,000 test images for those that drive each map: 25%" in page.text_content("#detail")
    assert page.get_attribute("#detail progress", "value") == "2500"
    page.wait_for_selector("#detail .tops figure")  # asked again, answered by the server
    assert len(answered) >= 2 and page.locator("#detail progress").count() == 0


def test_every_tile_carries_its_readable_map_number_inside_its_own_tile(page):
    shapes = {l["name"]: l for l in page.evaluate("fetch('/api/runs/fast-mnist').then(r => r.json())")["layers"]}
    shapes = {name: layer for name, layer in shapes.items() if not layer["units"]}  # bars carry no numbers
    tiles = page.evaluate("""(shapes) => [...document.querySelectorAll('canvas[data-layer]:not(.units)')].map(c => {
        const r = c.getBoundingClientRect(), layer = shapes[c.dataset.layer];
        const cols = (c.width + 1) / (layer.width + 1), across = r.width / (c.width + 1) * (layer.width + 1);
        const down = r.height / (c.height + 1) * (layer.height + 1);
        const spans = [...c.parentElement.querySelectorAll('.numbers span')];
        return {name: c.dataset.layer, channels: layer.channels, texts: spans.map(s => s.textContent),
                font: Math.min(...spans.map(s => parseFloat(getComputedStyle(s).fontSize))),
                outside: spans.filter((s, m) => { const b = s.getBoundingClientRect();
                    const x0 = r.left + (m % cols) * across, y0 = r.top + Math.floor(m / cols) * down;
                    return b.left < x0 - 1 || b.right > x0 + across + 1 || b.top < y0 - 1 || b.bottom > y0 + down + 1;
                }).map(s => s.textContent)};
    })""", shapes)
    assert [t["name"] for t in tiles] == list(shapes)
    for layer in tiles:
        assert layer["texts"] == [str(m) for m in range(layer["channels"])], layer["name"]
        assert layer["font"] >= 8 and layer["outside"] == [], layer


def test_switching_to_a_fashion_run_shows_its_class_names(page):
    page.select_option("#run", "fashion")
    page.wait_for_function("() => document.getElementById('class').options[9]?.textContent.includes('Ankle boot')")
    assert "fashion-mnist" in page.text_content("#run-info")


def test_the_report_renders_in_chromium(mnist_run, artifacts, tmp_path):
    run = tmp_path / "fast-mnist"
    shutil.copytree(mnist_run, run)
    path = report(run)
    with chromium_page(1400, 900) as page:
        page.goto(path.as_uri())
        page.evaluate("document.querySelectorAll('img').forEach((i) => { i.loading = 'eager'; })")  # lazy ones too
        page.wait_for_function("[...document.images].every((i) => i.complete)")
        images = page.evaluate("[...document.images].map(i => i.naturalWidth)")
        sections = page.evaluate("[...document.querySelectorAll('details h2')].map(h => h.textContent)")
        folded = page.evaluate("[...document.querySelectorAll('details:not([open]) h2')].map(h => h.textContent)")
        height = page.evaluate("document.body.scrollHeight")
        page.screenshot(path=str(artifacts / "report.png"), full_page=True)
        page.click("#model summary")  # a folded section opens with a click
        assert page.evaluate("document.getElementById('model').open")
        assert page.errors == []
    assert images and all(w > 0 for w in images)
    assert {"Training", "Test set", "Feature maps", "First-layer kernels", "Model", "Configuration"} <= set(sections)
    assert folded == ["Model", "Configuration"]  # the reference tables fold; what a reader came for stays open
    assert height < 8000  # a bare run's report, the reference tables folded


def test_first_load_hints_the_pad_a_picked_image_lands_in_it_and_conv1_tiles_are_not_smaller(page, served):
    url, _ = served
    assert page.is_visible("#pad-hint") and page.text_content("#pad-hint") == "draw a digit here"
    pick_index(page, 3)
    assert not page.is_visible("#pad-hint") and "draw on it to edit it" in page.text_content("#source")
    ink = page.evaluate("""() => { const c = document.getElementById('pad');
        const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
        let bright = 0; for (let i = 0; i < d.length; i += 4) if (d[i] > 128) bright++; return bright; }""")
    assert ink > 500  # the 0 of test image 3, scaled up into the 140x140 pad
    page.click("#clear")
    assert page.is_visible("#pad-hint")
    with urllib.request.urlopen(f"{url}/api/runs/fast-mnist") as response:
        widths = {layer["name"]: layer["width"] for layer in json.load(response)["layers"]}
    tile = page.evaluate("""(widths) => Object.fromEntries(Object.entries(widths).map(([name, w]) => {
        const c = document.querySelector(`canvas[data-layer="${name}"]`);
        return [name, c.getBoundingClientRect().width / c.width * w]; }))""", widths)
    assert tile["conv1"] >= tile["pool1"] - 0.5, tile  # on screen, in CSS pixels


def test_an_image_kept_beside_is_compared_with_the_next_one(page):
    pixels = """(selector) => { const c = document.querySelector(selector);
        return Array.from(c.getContext('2d').getImageData(0, 0, c.width, c.height).data.slice(0, 4000)); }"""
    pick_index(page, 4)  # a 4
    four = page.evaluate(pixels, 'canvas[data-layer="conv1"]')
    page.click("#keep")
    assert page.text_content("#keep") == "Stop comparing"
    assert "test image #4" in page.text_content("#layers h2")
    pick_index(page, 7)  # a 9
    assert page.evaluate(pixels, 'canvas[data-layer="conv1"]') != four  # the 9, live
    assert page.locator("canvas[data-beside-layer]").count() == page.locator("canvas[data-layer]").count()
    # One range per layer for both images: each canvas's brightest grey is its peak over the larger of the two.
    brightest = """([selector, name]) => {  // over the tiles only: the gaps between them are white too
        const c = document.querySelector(selector), d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
        const l = state.last.layers.find((l) => l.name === name), cols = columnsFor(l.channels);
        let top = 0;
        for (let m = 0; m < l.channels; m++) for (let y = 0; y < l.height; y++) for (let x = 0; x < l.width; x++) {
          const row = Math.floor(m / cols) * (l.height + 1) + y, col = (m % cols) * (l.width + 1) + x;
          top = Math.max(top, d[(row * c.width + col) * 4]);
        }
        return top; }"""
    for layer in ("conv1", "conv2"):
        kept, live = page.evaluate(f"""() => [state.beside.result, state.last].map((r) =>
            r.layers.find((l) => l.name === '{layer}').peak)""")
        shared = max(kept, live)
        assert page.evaluate(brightest, [f'canvas[data-beside-layer="{layer}"]', layer]) == pytest.approx(
            255 * kept / shared, abs=2)
        assert page.evaluate(brightest, [f'canvas[data-layer="{layer}"]', layer]) == pytest.approx(
            255 * live / shared, abs=2)
    assert "share each layer's range" in page.text_content("#layers .scale")
    page.click("#keep")
    assert page.locator("canvas[data-beside-layer]").count() == 0


def test_two_grids_side_by_side_stay_in_their_panel_and_small_tiles_drop_their_numbers(page):
    """At half size conv3's grid spilled out of its panel, its number overlay slid off, numbers hid the maps."""
    pick_index(page, 4)
    page.click("#keep")
    pick_index(page, 7)
    boxes = page.evaluate("""() => { const panel = document.getElementById('layers').getBoundingClientRect();
        return [...document.querySelectorAll('.tiles')].map((box) => {
            const c = box.querySelector('canvas'), r = c.getBoundingClientRect(), b = box.getBoundingClientRect();
            const numbers = box.querySelector('.numbers'), shown = getComputedStyle(numbers).display !== 'none';
            const tile = r.width / c.width * (state.info.layers.find((l) => l.name === (c.dataset.layer ||
                c.dataset.besideLayer)).width + 1);
            return {inside: r.left >= panel.left && r.right <= panel.right, tile, shown,
                    overlay: [b.width - r.width, b.height - r.height,
                              shown ? numbers.getBoundingClientRect().width - r.width : 0]};
        }); }""")
    maps = page.evaluate("state.info.layers.filter((l) => !l.units).length")
    assert len(boxes) == 2 * maps  # every map layer, kept and live
    for box in boxes:
        assert box["inside"], box
        assert all(abs(d) <= 1 for d in box["overlay"]), box  # the numbers' grid lies on its canvas
        assert box["shown"] == (box["tile"] >= 26), box
    assert any(box["shown"] for box in boxes) and not all(box["shown"] for box in boxes)


def test_the_maps_carry_their_colour_scale_in_the_chosen_colours(page):
    ends = """() => { const c = document.getElementById('scale'), d = c.getContext('2d').getImageData(0, 0, 256, 1).data;
        return [Array.from(d.slice(0, 3)), Array.from(d.slice(255 * 4, 255 * 4 + 3))]; }"""
    assert "largest activation" in page.text_content("#layers .scale")
    assert page.evaluate(ends) == [[0, 0, 0], [255, 255, 255]]  # grey: black to white
    page.select_option("#cmap", "viridis")
    low, high = page.evaluate(ends)
    assert low != high and low != [0, 0, 0]  # viridis runs from dark purple to yellow


def test_a_colour_model_hides_the_grey_pad_with_its_hint(mnist, tmp_path):
    from conftest import mnist_32

    from convlens.config import RunConfig
    from convlens.models import build_model

    run = tmp_path / "runs" / "colour"
    config = RunConfig().replace(data={"dataset": mnist_32(mnist, tmp_path / "c32", 3)},
                                 model={"input_shape": (3, 32, 32)})
    runs.write_json(run / runs.CONFIG, config.to_dict())
    runs.save_weights(run / runs.WEIGHTS, build_model("simple", 10, (3, 32, 32)), config)
    with running_server(run) as url, chromium_page() as page:
        page.goto(url)
        page.wait_for_selector("body[data-ready='1']", timeout=30000)
        assert not page.is_visible("#pad") and not page.is_visible("#pad-hint")  # no hint floating over nothing
        assert page.errors == []
