"""Dynamic batching of the live page's analyses: a batch answers each request as a lone analysis would, and a
bad request fails alone."""

from __future__ import annotations

import asyncio
import base64
import dataclasses
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from conftest import copy_run

from convlens.errors import UserError
from convlens.web.batching import Batcher
from convlens.web.live import LiveRun


@pytest.fixture(scope="module")
def live(trained_run, tmp_path_factory):
    return LiveRun(copy_run(trained_run, tmp_path_factory.mktemp("batching") / "digits"))


def maps_of(result: dict) -> list[np.ndarray]:
    """Each layer's values as sent: maps as uint8, a dense layer's or the logits' units as int8."""
    return [np.frombuffer(base64.b64decode(layer["data"]), np.int8 if layer.get("units") else np.uint8).astype(int)
            for layer in result["layers"]]


def assert_same_analysis(batched: dict, alone: dict) -> None:
    assert batched["predicted"] == alone["predicted"]
    assert batched["image"] == alone["image"]
    np.testing.assert_allclose(batched["probabilities"], alone["probabilities"], atol=1e-4)
    for got, expected in zip(maps_of(batched), maps_of(alone)):
        assert np.abs(got - expected).max() <= 1  # a float sum in another order may cross a rounding edge
    for got, expected in zip(batched["layers"], alone["layers"]):
        np.testing.assert_allclose(got.get("map_peaks", got["peak"]), expected.get("map_peaks", expected["peak"]),
                                   atol=2e-4)
    attribution = [np.frombuffer(base64.b64decode(r["attribution"]["data"]), np.int8).astype(int)
                   for r in (batched, alone)]
    assert np.abs(attribution[0] - attribution[1]).max() <= 1


def test_one_batch_answers_each_image_as_alone(live):
    indices = [3, 0, 7, 42, 5]
    batched = live.analyse([live.prepare_test_image(i) for i in indices])
    for index, result in zip(indices, batched):
        alone = live.analyse_test_image(index)
        assert result["index"] == index and result["label"] == alone["label"]
        assert_same_analysis(result, alone)


def test_frames_without_attribution_skip_only_the_overlay_in_a_mixed_batch(live):
    frames = [live.prepare_test_image(i) for i in (3, 0, 7)]
    frames[1] = dataclasses.replace(frames[1], attribution=False)  # a frame sent mid-stroke
    batched = live.analyse(frames)
    assert batched[1]["attribution"] is None
    for index, result in zip((3, 0, 7), batched):
        alone = live.analyse_test_image(index)
        if result["attribution"] is None:
            result = result | {"attribution": alone["attribution"]}  # all else must be the full analysis
        assert_same_analysis(result, alone)


def test_requests_that_arrive_together_share_a_forward_pass_and_a_bad_one_fails_alone(live, monkeypatch):
    batch_sizes = []
    analyse = live.analyse
    monkeypatch.setattr(live, "analyse", lambda images: batch_sizes.append(len(images)) or analyse(images))
    thread = ThreadPoolExecutor(max_workers=1)

    async def in_thread(function, *args):
        return await asyncio.get_running_loop().run_in_executor(thread, function, *args)

    async def requests():
        batcher = Batcher(in_thread, max_batch=4)
        calls = [batcher.analyse(live, live.prepare_test_image, i) for i in (1, 2)]
        calls.append(batcher.analyse(live, live.prepare_drawing, b"\0" * 10, 8, 8))  # 10 bytes for 64 pixels
        calls += [batcher.analyse(live, live.prepare_test_image, i) for i in (3, 4, 5, 6)]
        return await asyncio.gather(*calls, return_exceptions=True)

    results = asyncio.run(requests())
    thread.shutdown()
    assert isinstance(results[2], UserError) and "8x8 drawing is 64 bytes; the body has 10" in str(results[2])
    # All seven arrive before the model thread is free: batches of four requests at most, the bad one dropped.
    assert batch_sizes == [3, 3]  # [1, 2, bad, 3] and [4, 5, 6]
    monkeypatch.undo()
    for index, result in zip((1, 2, 3, 4, 5, 6), results[:2] + results[3:]):
        assert result["index"] == index
        assert_same_analysis(result, live.analyse_test_image(index))
