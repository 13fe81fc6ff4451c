"""Comparing runs: self-comparison is perfect, a consistently permuted copy is recovered exactly, CKA is exact."""

from __future__ import annotations

import json

import pytest
import torch

from convlens.cli import main
from convlens.compare import compare_models, kernel_similarity, linear_cka, map_correlation, match, permute_maps
from convlens.compare.runs_compare import agreement
from convlens.compare.similarity import gram
from convlens.runs import load_run
from convlens.speed import images_to_device


@pytest.fixture(scope="module")
def model_and_images(trained_run, small_mnist):
    from convlens.data import load_dataset

    ds = load_dataset(small_mnist)
    return load_run(trained_run).model, images_to_device(ds.test_images, torch.device("cpu")), ds


def test_a_run_compared_with_itself_matches_in_order_with_correlation_and_cka_one(model_and_images):
    model, x, _ = model_and_images
    c = compare_models(model, model, x)
    for m in c.layers:
        assert torch.equal(m.matched, torch.arange(len(m.matched))), m.layer
        live = torch.ones(len(m.matched), dtype=torch.bool)
        live[torch.tensor(m.silent_a, dtype=torch.long)] = False  # a map constant on every image has no correlation to speak of
        assert torch.allclose(m.matched_correlation[live], torch.ones(int(live.sum())), atol=1e-5), m.layer
        assert m.summary()["same_order"]
    assert torch.allclose(c.cka.diagonal(), torch.ones(len(c.cka_layers)), atol=1e-5)
    assert torch.equal(c.layers[0].kernel_matched, torch.arange(32))


def test_a_consistently_permuted_copy_is_recovered_exactly_and_predicts_the_same(model_and_images):
    model, x, ds = model_and_images
    g = torch.Generator().manual_seed(0)
    orders = {"conv1": torch.randperm(32, generator=g), "conv2": torch.randperm(64, generator=g),
              "conv3": torch.randperm(128, generator=g)}
    copy = model
    for layer, order in orders.items():
        copy = permute_maps(copy, layer, order)
    share, differ, _, _ = agreement(model, copy, ds.test_images)
    assert share == 1.0 and len(differ) == 0
    c = compare_models(model, copy, x)
    for m in c.layers:
        # Map i of the copy is map order[i] of the original, so original map k is found at argsort(order)[k].
        expected = torch.argsort(orders[m.layer])
        live = torch.ones(len(expected), dtype=torch.bool)
        live[torch.tensor(m.silent_a, dtype=torch.long)] = False
        assert torch.equal(m.matched[live], expected[live]), m.layer
        assert not m.summary()["same_order"]
    assert torch.equal(c.layers[0].kernel_matched, torch.argsort(orders["conv1"]))
    assert torch.allclose(c.cka.diagonal(), torch.ones(len(c.cka_layers)), atol=1e-4)  # CKA ignores the order


def test_hungarian_matching_beats_greedy_on_a_known_case():
    # Greedy takes 0.9 for row 0 and leaves row 1 with 0.1; the best one-to-one total is 0.8 + 0.8.
    s = torch.tensor([[0.9, 0.8], [0.8, 0.1]])
    assert match(s).tolist() == [1, 0]


def test_kernel_similarity_keeps_the_sign():
    w = torch.randn(3, 1, 3, 3)
    cos = kernel_similarity(w, -w)
    assert torch.allclose(cos.diagonal(), -torch.ones(3))


def test_map_correlation_is_pearson():
    a = torch.randn(50, 2, 3, 3)
    b = torch.stack([3 * a[:, 1] + 1, -a[:, 0]], 1)
    corr = map_correlation(a, b)  # (maps of a, maps of b)
    assert corr[1, 0].item() == pytest.approx(1.0, abs=1e-5)  # an affine copy correlates 1
    assert corr[0, 1].item() == pytest.approx(-1.0, abs=1e-5)  # a negated copy correlates -1
    assert abs(corr[0, 0].item()) < 0.2 and abs(corr[1, 1].item()) < 0.2  # independent noise, 450 samples


def test_linear_cka_is_one_under_rotation_and_scale_and_low_for_independent_features():
    x = torch.randn(200, 20)
    q, _ = torch.linalg.qr(torch.randn(20, 20))
    unrelated = torch.randn(200, 20)
    cka = linear_cka([gram(x)], [gram(3 * x @ q), gram(unrelated)])
    assert cka[0, 0].item() == pytest.approx(1.0, abs=1e-6)
    assert cka[0, 1].item() < 0.2  # about 20/200 for independent Gaussian features


def test_compare_command_writes_json_and_figures_with_baselines(trained_run, tmp_path):
    out = tmp_path / "cmp"
    main(["compare", str(trained_run), str(trained_run), "--test-images", "200", "--oips", "conv1", "--out", str(out)])
    report = json.loads((out / "compare.json").read_text())
    (pair,) = report["pairs"].values()
    assert pair["prediction_agreement"] == 1.0 and pair["layers"]["conv2"]["same_order"]
    assert report["baselines"]["self"]["layers"]["conv3"]["same_order"]
    untrained = report["baselines"]["untrained"]["layers"]
    assert untrained["conv3"]["mean_matched_correlation"] < pair["layers"]["conv3"]["mean_matched_correlation"]
    assert report["baselines"]["untrained"]["prediction_agreement"] < 0.5
    names = sorted(p.name for p in out.glob("*.png"))
    assert len(names) == 4 and any(n.startswith("cka_") for n in names) and any(n.startswith("oips_conv1") for n in names)


@pytest.mark.parametrize("args, message", [
    (["compare", "RUN"], "compare needs two or more run folders, or --study 'GLOB'"),
    (["compare", "RUN", "RUN", "--test-images", "5"], "compare uses between 10 and"),
    (["compare", "RUN", "RUN", "--test-images", "50", "--oips", "pool1"], "OIPs of matched maps are drawn for a conv layer"),
])
def test_compare_bad_input_is_one_clear_error(trained_run, tmp_path, capsys, args, message):
    args = [str(trained_run) if a == "RUN" else a for a in args] + ["--out", str(tmp_path / "o")]
    with pytest.raises(SystemExit) as exit_info:
        main(args)
    assert exit_info.value.code == 2 and message in capsys.readouterr().err


def test_compare_refuses_different_architectures(trained_run, tmp_path, tiny_config, capsys):
    from convlens.training import train

    other = tmp_path / "other"
    train(tiny_config.replace(model={"model": "fast"}, train={"epochs": 1}), out=other)
    with pytest.raises(SystemExit):
        main(["compare", str(trained_run), str(other), "--out", str(tmp_path / "o")])
    assert "different architectures" in capsys.readouterr().err


def test_nested_models_compare_through_their_layer_table():
    """A model whose convolution sits inside a nested Sequential used to fail with KeyError: '0.0'."""
    torch.manual_seed(0)
    make = lambda: torch.nn.Sequential(torch.nn.Sequential(torch.nn.Conv2d(1, 8, 3), torch.nn.ReLU()),  # noqa: E731
                                       torch.nn.Flatten(), torch.nn.Linear(8 * 26 * 26, 10)).eval()
    a, b = make(), make()
    images = torch.rand(40, 1, 28, 28)
    c = compare_models(a, b, images)
    assert [m.layer for m in c.layers] == ["0.0"] and c.cka_layers == ["0.0", "2"]
    assert compare_models(a, a, images).layers[0].matched.tolist() == list(range(8))


def test_the_table_the_json_and_the_histogram_give_one_number_at_one_threshold():
    from convlens.compare.runs_compare import PARTNER_R, LayerMatch
    from convlens.draw.compare_figures import matched_correlation_figure

    correlation = torch.tensor([[0.95, 0.1, 0.0], [0.2, 0.85, 0.0], [0.0, 0.3, 0.0]])  # map 2 of B is silent
    m = LayerMatch("conv1", "conv1", correlation, torch.tensor([0, 1, 2]), torch.tensor([0.95, 0.85, 0.0]),
                   silent_b=[2])
    s = m.summary()
    assert PARTNER_R == 0.8 and s["partner_threshold"] == 0.8 and s["live_pairs"] == 2
    assert s["mean_matched_correlation"] == pytest.approx(0.9) and s["share_with_partner"] == 1.0
    assert "share_at_least_0.9" not in s  # one threshold, not two
    fig = matched_correlation_figure({"conv1": m.live_correlation}, {})
    assert fig.axes[0].get_title() == "conv1\nmean r 0.90, 100% with a partner"
    assert [line.get_xdata()[0] for line in fig.axes[0].lines] == [PARTNER_R]
