"""compare --study: every pair of N runs from one pass of maps, checked against known answers and against compare."""

from __future__ import annotations

import json

import pytest
import torch
from conftest import copy_run, untrained_run
from test_figures import assert_legible

from convlens import runs
from convlens.cli import main
from convlens.compare import compare_models, permute_maps
from convlens.compare.study import study
from convlens.draw import compare_figures as views
from convlens.jobs.study import seed_study


def permuted_copy(source, destination, seed: int):
    """Write a copy of a run whose conv maps are shuffled: the same network, its maps in another order."""
    copy_run(source, destination)
    run = runs.load_run(destination)
    model, generator = run.model, torch.Generator().manual_seed(seed)
    for layer in run.layers.convs:
        model = permute_maps(model, layer, torch.randperm(run.layers[layer].channels, generator=generator))
    runs.save_weights(destination / runs.WEIGHTS, model, run.config)
    return destination


def test_a_study_of_shuffled_copies_finds_every_live_map_universal(trained_run, tmp_path):
    copy_run(trained_run, tmp_path / "s0")
    for seed in (1, 2):
        permuted_copy(trained_run, tmp_path / f"s{seed}", seed)
    result = seed_study(str(tmp_path / "s*"), images=300, log=lambda *a: None)
    report = json.loads((tmp_path / "study-3-runs" / "study.json").read_text())
    assert report == json.loads(json.dumps(result.data))
    assert report["reference"] == "s0" and list(report["runs"]) == ["s0", "s1", "s2"]
    for layer, s in report["layers"].items():
        live = set(range(len(s["partners_per_map"]))) - set(s["silent_maps"])
        assert set(s["universal_maps"]) == live and s["maps_without_partner"] == []
        assert s["matched_correlation"]["p10"] > 0.9999 and s["share_with_partner"]["min"] == 1.0
        assert s["untrained"]["matched_correlation"]["mean"] < 0.9  # the baseline is far from it
    assert min(report["cka"]["mean"]) > 0.9999 and max(report["cka"]["std"]) < 1e-4
    assert max(report["cka"]["untrained_mean"]) < 0.999  # conv1 of any net is close to its input: 0.99 untrained
    assert {p.name for p in result.files} == {"study.json", "matched_all_pairs.png", "partners.png", "cka_spread.png"}


def test_each_pair_of_a_study_equals_compare_of_that_pair(trained_run, tmp_path):
    a = runs.load_run(trained_run).model
    b = runs.load_run(untrained_run(tmp_path / "untrained", runs.load_run(trained_run).config.data.dataset)).model
    x = runs.load_run(trained_run).test_inputs[:300]
    table = runs.load_run(trained_run).layers
    s = study([a, b], x, table.convs, ["conv1", "conv2", "conv3"], batch=128)
    pair = compare_models(a, b, x)
    for m in pair.layers:
        torch.testing.assert_close(s.correlations[m.layer][0, 1], m.correlation, atol=1e-4, rtol=0)
        torch.testing.assert_close(s.matched_correlation(m.layer, 0, 1), m.live_correlation, atol=1e-4, rtol=0)
    torch.testing.assert_close(s.cka[0, 0], torch.ones(3), atol=1e-6, rtol=0)


@pytest.mark.parametrize("args, message", [
    (["--study", "{tmp}/nothing*"], "a study needs at least two run folders; '{tmp}/nothing*' matches 0"),
    (["{run}", "--study", "{tmp}/*"], "give run folders or --study"),
])
def test_study_bad_input_is_one_clear_error(trained_run, tmp_path, capsys, args, message):
    with pytest.raises(SystemExit) as exit_:
        main(["compare", *(a.format(tmp=tmp_path, run=trained_run) for a in args)])
    assert exit_.value.code == 2
    assert message.format(tmp=tmp_path) in capsys.readouterr().err


def test_the_study_figures_are_legible():
    assert_legible(views.partners_figure({"conv1": [3, 3, 0, 1] * 8, "conv2": [2] * 64}, 3, "simple-s0"))
    assert_legible(views.cka_spread_figure(["conv1", "pool1", "conv2", "pool2", "conv3", "logits"], [0.9] * 6,
                                           [0.02] * 6, [0.5] * 6, 16))
