"""The live page's JSON API through FastAPI's test client: answers checked against the library, and hostile requests."""

from __future__ import annotations

import base64
import io
import json
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import copy_run, untrained_run
from fastapi.testclient import TestClient
from PIL import Image

from convlens import runs
from convlens.data import load_dataset
from convlens.inspection.maps import feature_maps, top_activations
from convlens.oip import Ascent
from convlens.jobs.oip import layer_oip
from convlens.speed import images_to_device
from convlens.training import predict
from convlens.web.app import create_app, resolve_folder
from convlens.web.live import LiveRun
from convlens.web.preprocess import MAX_UPLOAD_BYTES

FASHION_NAMES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]


@pytest.fixture(scope="module")
def runs_folder(trained_run, tmp_path_factory):
    """A folder with the small trained run (plus OIPs of two conv1 maps), an untrained Fashion run and a non-run."""
    folder = tmp_path_factory.mktemp("served")
    copy_run(trained_run, folder / "digits")
    layer_oip(folder / "digits", layers=["conv1"], maps=[0, 1], ascent=Ascent(steps=8), log=lambda *a: None)
    untrained_run(folder / "fashion", "fashion-mnist")
    (folder / "notes").mkdir()  # not a run: no config, no weights
    return folder


@pytest.fixture(scope="module")
def client(runs_folder):
    return TestClient(create_app(runs_folder, "digits"), base_url="http://127.0.0.1")


@pytest.fixture(scope="module")
def digits(runs_folder):
    run = runs.load_run(runs_folder / "digits")
    return run.model, load_dataset(run.config.data.dataset)


def decode(data: str, dtype=np.uint8) -> np.ndarray:
    return np.frombuffer(base64.b64decode(data), dtype=dtype)


def test_the_listing_holds_only_runs_and_names_the_first(client):
    assert client.get("/api/runs").json() == {"runs": ["digits", "fashion"], "default": "digits"}


def test_info_gives_the_layers_their_shapes_and_the_class_names(client, digits):
    model, ds = digits
    info = client.get("/api/runs/digits").json()
    shapes = {n: list(m.shape[1:]) for n, m in feature_maps(model, torch.zeros(1, 1, 28, 28)).items()}
    shapes["logits"] = [10, 1, 1]  # the units of a dense layer or the logits, drawn as bars
    assert {l["name"]: [l["channels"], l["height"], l["width"]] for l in info["layers"]} == shapes
    assert [l["units"] for l in info["layers"]] == [l["name"] == "logits" for l in info["layers"]]
    graph = {node["name"]: node for node in info["graph"]}  # the layer graph: a chain here, one row per layer
    assert list(graph)[:3] == ["input", "conv1", "pool1"] and graph["conv1"]["inputs"] == ["input"]
    assert [graph[n]["row"] for n in graph] == list(range(len(graph))) and graph["pool1"]["inputs"] == ["conv1"]
    assert info["classes"] == [str(d) for d in range(10)] and info["test_size"] == len(ds.test_labels)
    assert [l["has_oips"] for l in info["layers"]] == [l["name"] == "conv1" for l in info["layers"]]
    fashion = client.get("/api/runs/fashion").json()
    assert fashion["classes"] == FASHION_NAMES and fashion["preprocess"] == "fit"


def test_a_test_image_gets_the_prediction_and_maps_of_the_library(client, digits):
    model, ds = digits
    index = 7
    result = client.get("/api/runs/digits/test", params={"pick": "index", "index": index}).json()
    logits = predict(model, ds.test_images[index : index + 1])[0]
    assert result["predicted"] == int(logits.argmax()) and result["label"] == int(ds.test_labels[index])
    assert result["probabilities"] == pytest.approx(torch.softmax(logits, 0).tolist(), abs=1e-4)
    assert np.array_equal(decode(result["image"]), ds.test_images[index].flatten().numpy())
    maps = feature_maps(model, images_to_device(ds.test_images[index : index + 1], torch.device("cpu")))
    units = result["layers"].pop()  # the logits, as bars: int8 scaled by their largest magnitude
    assert units["name"] == "logits" and units["peak"] == pytest.approx(float(logits.abs().max()), rel=1e-4)
    assert decode(units["data"], np.int8) / 127 * units["peak"] == pytest.approx(logits.numpy(), abs=units["peak"] / 250)
    for layer in result["layers"]:
        expected = maps[layer["name"]][0]
        got = decode(layer["data"]).reshape(expected.shape).astype(np.float32) / 255 * layer["peak"]
        assert layer["peak"] == pytest.approx(float(expected.max()), rel=1e-4)
        assert np.abs(got - expected.numpy()).max() <= layer["peak"] / 255 * 0.51  # one quantisation step
    attribution = decode(result["attribution"]["data"], np.int8)
    assert attribution.shape == (784,) and np.abs(attribution).max() == 127


def test_picks_by_class_misclassified_and_seed(client, digits):
    model, ds = digits
    wrong = set(torch.nonzero(predict(model, ds.test_images).argmax(1) != ds.test_labels).flatten().tolist())
    for seed in range(5):
        by_class = client.get("/api/runs/digits/test", params={"pick": "class", "label": 3, "seed": seed}).json()
        assert by_class["label"] == 3
        missed = client.get("/api/runs/digits/test", params={"pick": "misclassified", "seed": seed}).json()
        assert missed["index"] in wrong and missed["predicted"] != missed["label"]
    same = [client.get("/api/runs/digits/test", params={"pick": "random", "seed": 11}).json()["index"] for _ in range(2)]
    assert same[0] == same[1]


def test_a_drawing_and_an_upload_of_the_same_digit_agree_with_the_model(client, digits):
    model, ds = digits
    index = int(torch.nonzero(ds.test_labels == 7).flatten()[0])
    digit = ds.test_images[index]
    big = digit.repeat_interleave(4, 0).repeat_interleave(4, 1)  # (112, 112)
    pad = torch.zeros(140, 140, dtype=torch.uint8)
    pad[20:132, 0:112] = big  # drawn off-centre
    drawn = client.post("/api/runs/digits/drawing?width=140&height=140", content=pad.numpy().tobytes(),
                        headers={"Content-Type": "application/octet-stream"}).json()
    buffer = io.BytesIO()
    Image.fromarray(255 - pad.numpy()).save(buffer, format="PNG")  # dark ink on white paper
    uploaded = client.post("/api/runs/digits/analyse", content=buffer.getvalue(),
                           headers={"Content-Type": "image/png"}).json()
    expected = int(predict(model, digit[None]).argmax())
    assert drawn["predicted"] == uploaded["predicted"] == expected
    assert drawn["image"] == uploaded["image"]  # the same 28x28 after preprocessing


def searched_detail(client, path: str) -> dict:
    """Ask for a map's detail until the background search of the test set has found its top images."""
    for _ in range(600):
        detail = client.get(path).json()
        if detail["top"] is not None:
            return detail
        time.sleep(0.1)
    raise AssertionError(f"{path}: the top test images were still being searched after a minute")


def test_map_detail_gives_the_top_test_images_and_the_stored_oip(client, digits, runs_folder):
    model, ds = digits
    x = images_to_device(ds.test_images, torch.device("cpu"))
    top = top_activations(model, x, "conv2", k=8)
    detail = searched_detail(client, "/api/runs/digits/maps/conv2/5")
    assert detail["searched"] == {"done": len(x), "total": len(x)}
    assert [t["index"] for t in detail["top"]] == top.indices[5].tolist()
    assert [t["activation"] for t in detail["top"]] == pytest.approx(top.values[5].tolist(), abs=1e-3)
    assert detail["oip"] is None
    stored, _ = runs.load_tensors(runs_folder / "digits" / "oip" / "oip_conv1.safetensors")
    oip = client.get("/api/runs/digits/maps/conv1/1").json()["oip"]
    png = Image.open(io.BytesIO(base64.b64decode(oip["image"].split(",", 1)[1])))
    assert np.abs(np.asarray(png, np.float32) / 255 - stored["images"][1, 0].numpy()).max() <= 0.5 / 255 + 1e-6


def test_the_top_images_are_searched_in_the_background_a_batch_per_hold_of_the_lock(runs_folder, digits):
    model, ds = digits
    live = LiveRun(runs_folder / "digits")
    with live.lock:  # a request has the model: the search cannot take its first batch, and the hover is answered
        waiting = live.map_detail("conv3", 7)
        time.sleep(0.3)
        assert live.top_inputs.done == 0
    assert waiting["top"] is None and waiting["searched"] == {"done": 0, "total": len(ds.test_labels)}
    live.top_inputs.join(timeout=60)
    x = images_to_device(ds.test_images, torch.device("cpu"))
    expected = {layer: top_activations(model, x, layer, k=8) for layer in live.run.layers.map_layers}
    for layer, top in expected.items():  # one pass found every layer's, as top_activations finds each
        found = live.top_inputs.of(layer)
        assert torch.equal(found.indices, top.indices) and torch.equal(found.values, top.values)
        assert torch.equal(found.positions, top.positions)
    assert [t["index"] for t in live.map_detail("conv3", 7)["top"]] == expected["conv3"].indices[7].tolist()


@pytest.mark.parametrize("method, url, kwargs, status, message", [
    ("post", "/api/runs/digits/analyse", {"content": b"hello", "headers": {"Content-Type": "text/plain"}}, 415, "image/png"),
    ("post", "/api/runs/digits/analyse", {"content": b"hello", "headers": {"Content-Type": "image/png"}}, 400,
     "not a readable PNG or JPEG"),
    ("post", "/api/runs/digits/drawing?width=140&height=140", {"content": b"\0" * 10,
     "headers": {"Content-Type": "application/octet-stream"}}, 400, "19600 bytes"),
    ("post", "/api/runs/digits/drawing?width=2&height=140", {"content": b"\0" * 280,
     "headers": {"Content-Type": "application/octet-stream"}}, 422, "width"),
    ("post", "/api/runs/digits/analyse", {"content": b"\0" * (MAX_UPLOAD_BYTES + 1),
     "headers": {"Content-Type": "image/png"}}, 413, "limited"),
    ("get", "/api/runs/nope", {}, 404, "no run named"),
    ("get", "/api/runs/notes", {}, 404, "no run named"),
    ("get", "/api/runs/..%2F..%2Fetc/test", {}, 404, ""),
    ("get", "/api/runs/%2e%2e/test", {}, 404, ""),
    ("get", "/api/runs/digits/test?pick=all", {}, 422, "pick"),
    ("get", "/api/runs/digits/test?pick=index&index=-1", {}, 422, "index"),
    ("get", "/api/runs/digits/test?pick=index&index=99999", {}, 400, "test image 99999 is out of range"),
    ("get", "/api/runs/digits/test?pick=class&label=12", {}, 400, "unknown class '12'"),
    ("get", "/api/runs/digits/maps/conv1/32", {}, 400, "map must be between 0 and 31"),
    ("get", "/api/runs/digits/maps/dense1/0", {}, 400, "unknown map layer"),
    ("get", "/api/runs/digits/maps/..%2Fx/0", {}, 404, ""),
])
def test_bad_requests_get_one_clear_4xx(client, method, url, kwargs, status, message):
    response = getattr(client, method)(url, **kwargs)
    assert response.status_code == status, response.text
    assert message in response.json()["error"]


def test_a_body_growing_past_the_limit_without_a_length_is_refused():
    def chunks():
        for _ in range(3):
            yield b"\0" * (MAX_UPLOAD_BYTES // 2)

    response = TestClient(create_app(Path(".")), base_url="http://127.0.0.1").post(
        "/api/runs/x/analyse", content=chunks(), headers={"Content-Type": "image/png"})
    assert response.status_code == 413 and "limited" in response.json()["error"]


def test_foreign_host_headers_are_refused_and_answers_carry_security_headers(client):
    assert client.get("/api/runs", headers={"Host": "evil.example"}).status_code == 400
    response = client.get("/")
    assert response.status_code == 200 and "<canvas id=\"pad\"" in response.text
    assert "default-src 'self'" in response.headers["content-security-policy"]
    assert response.headers["x-content-type-options"] == "nosniff"


def test_serving_a_run_folder_opens_its_siblings(runs_folder):
    assert resolve_folder(runs_folder / "digits") == (runs_folder, "digits")
    assert resolve_folder(runs_folder) == (runs_folder, None)
    with pytest.raises(Exception, match="neither a run folder"):
        resolve_folder(runs_folder / "notes")
    assert json.loads((runs_folder / "digits" / "config.json").read_text())  # untouched by serving
