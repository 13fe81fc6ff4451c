"""Hostile input, fuzzed with hypothesis: the IDX reader, the layer-spec parser and the web API's request parsing.

The only failures allowed are the documented clear ones: UserError in the library, a 4xx with a
JSON error in the web API. Case counts are set here and reported in the issue note.
"""

from __future__ import annotations

import gzip
import tempfile
from pathlib import Path
from urllib.parse import quote

import numpy as np
import pytest
import torch
from conftest import copy_run
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from convlens.data import read_idx
from convlens.errors import UserError
from convlens.models import build_model
from convlens.web.app import create_app

SPEC_CASES, IDX_CASES, WEB_CASES = 800, 800, 300


def fuzz(cases: int) -> settings:
    """Settings for one fuzz target: a fixed number of cases, derandomised so CI tries the same ones every time."""
    return settings(max_examples=cases, deadline=None, derandomize=True, database=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])

# ---------- layer specs ----------
numbers = st.one_of(st.integers(0, 40), st.integers(0, 10**12))
mods = st.lists(st.sampled_from(["s1", "s2", "s3", "same", "valid", "bn", "relu", "tanh", "selu", "none", "x"]), max_size=3)
token = st.one_of(
    st.builds(lambda f, k, m: f"conv{f}k{k}{''.join(m)}", numbers, numbers, mods),
    st.builds(lambda n, m: f"dense{n}{''.join(m)}", numbers, st.lists(st.sampled_from(["bn", "tanh", "q"]), max_size=2)),
    st.builds(lambda kind, n: f"{kind}pool{n}", st.sampled_from(["", "avg", "max"]), numbers),
    st.builds(lambda p: f"dropout{p}", st.sampled_from(["0.5", ".3", "1.5", "0", "x"])),
    st.just("flatten"),
    st.text("convdenspolfatkbmrhix0123456789.", max_size=12),
)
structured_specs = st.lists(token, min_size=1, max_size=10).map("-".join)
raw_specs = st.text(max_size=80)


def builds_or_refuses(spec: str) -> None:
    try:
        model = build_model(spec)
    except UserError:
        return
    out = model.eval()(torch.zeros(2, 1, 28, 28))
    assert out.shape == (2, 10)


@fuzz(SPEC_CASES)
@given(structured_specs)
def test_layer_specs_build_or_are_refused_clearly(spec):
    builds_or_refuses(spec)


@fuzz(SPEC_CASES // 4)
@given(raw_specs)
def test_any_text_as_a_spec_is_refused_clearly(spec):
    builds_or_refuses(spec)


# ---------- IDX files ----------
def idx_bytes(shape: tuple[int, ...], body: bytes, magic: bytes = b"\x00\x00\x08") -> bytes:
    return magic + bytes([len(shape)]) + b"".join(int(d).to_bytes(4, "big") for d in shape) + body


idx_files = st.one_of(
    st.binary(max_size=300),  # anything at all
    st.builds(idx_bytes, st.lists(st.integers(0, 2**32 - 1), max_size=4).map(tuple), st.binary(max_size=200)),
    st.builds(idx_bytes, st.lists(st.integers(0, 6), min_size=1, max_size=3).map(tuple), st.binary(max_size=300),
              st.sampled_from([b"\x00\x00\x08", b"\x00\x00\x0d", b"\x01\x00\x08"])),
)


@fuzz(IDX_CASES)
@given(idx_files, st.booleans())
def test_idx_reader_reads_or_refuses_clearly(data, compress):
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / ("f-idx3-ubyte.gz" if compress else "f-idx3-ubyte")
        path.write_bytes(gzip.compress(data) if compress else data)
        try:
            array = read_idx(path)
        except UserError:
            return
    assert array.dtype == np.uint8 and array.ndim == data[3] and array.size == len(data) - 4 - 4 * data[3]


def test_a_corrupt_gzip_is_refused_clearly(tmp_path):
    path = tmp_path / "t10k-images-idx3-ubyte.gz"
    path.write_bytes(gzip.compress(idx_bytes((1, 28, 28), bytes(784)))[:-9])
    with pytest.raises(UserError, match="cannot read"):
        read_idx(path)


# ---------- web requests ----------
@pytest.fixture(scope="module")
def client(trained_run, tmp_path_factory):
    folder = tmp_path_factory.mktemp("fuzz-runs")
    copy_run(trained_run, folder / "run")
    return TestClient(create_app(folder, "run"), base_url="http://127.0.0.1")


def answers_clearly(response) -> None:
    assert response.status_code < 500, response.text
    if response.status_code >= 400:
        assert isinstance(response.json()["error"], str) and response.json()["error"]


anything = st.text(max_size=30)
query_value = st.one_of(anything, st.integers(-10**12, 10**12).map(str), st.sampled_from(["index", "random", "class",
                                                                                          "misclassified", "", "1e9"]))


@fuzz(WEB_CASES)
@given(st.dictionaries(st.sampled_from(["pick", "index", "label", "seed", "x"]), query_value, max_size=4),
       st.sampled_from(["run", "..", "run/..", "nope", "%2e%2e", "run%00", "RUN"]))
def test_test_image_queries_are_answered_or_refused_clearly(client, params, name):
    answers_clearly(client.get(f"/api/runs/{name}/test", params=params))


@fuzz(WEB_CASES)
@given(st.one_of(anything, st.sampled_from(["conv1", "pool1", "conv3", "logits", "conv1.conv", "..", "%2F"])),
       st.one_of(anything, st.integers(-5, 10**9).map(str)))
def test_map_detail_paths_are_answered_or_refused_clearly(client, layer, index):
    # Percent-encoded, so any text reaches the server rather than being refused by the client.
    answers_clearly(client.get(f"/api/runs/run/maps/{quote(layer, safe='')}/{quote(index, safe='')}"))


@fuzz(WEB_CASES)
@given(st.binary(max_size=4000), st.sampled_from(["image/png", "image/jpeg", "application/octet-stream", "text/plain",
                                                  "", "image/png; charset=x", "multipart/form-data"]),
       st.sampled_from(["analyse", "drawing?width=20&height=20", "drawing?width=x&height=20",
                        "drawing?width=100000&height=1", "drawing"]))
def test_bodies_are_answered_or_refused_clearly(client, body, kind, endpoint):
    answers_clearly(client.post(f"/api/runs/run/{endpoint}", content=body, headers={"Content-Type": kind}))
