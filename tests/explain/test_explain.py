"""Attributions: exact on a linear model, complete for integrated gradients, sensitive to the weights; the commands."""

from __future__ import annotations

import json

import pytest
import torch

from convlens.cli import main
from convlens.explain import METHODS, attribute, cascading_randomisation, rank_correlation
from convlens.models import build_model
from convlens.runs import load_run


@pytest.fixture
def linear():
    torch.manual_seed(0)
    return build_model("flatten-dense10").eval()  # logits = W x + b, W (10, 784)


def test_saliency_of_a_linear_model_is_its_weights(linear):
    x = torch.rand(3, 1, 28, 28)
    target = torch.tensor([0, 4, 9])
    maps = attribute(linear, x, target, "saliency").maps
    assert torch.allclose(maps, linear.logits.weight[target].view(3, 28, 28), atol=1e-7)


def test_one_pixel_occlusion_of_a_linear_model_is_weight_times_pixel(linear):
    x = torch.rand(2, 1, 28, 28)
    target = torch.tensor([3, 7])
    maps = attribute(linear, x, target, "occlusion", patch=1, stride=1).maps
    assert torch.allclose(maps, linear.logits.weight[target].view(2, 28, 28) * x[:, 0], atol=1e-5)


def test_integrated_gradients_add_up_to_the_logit_gap(trained_run, small_mnist):
    from convlens.data import load_dataset

    model = load_run(trained_run).model
    x = load_dataset(small_mnist).test_images[:8, None].float() / 255
    target = model(x).argmax(1)
    a = attribute(model, x, target, "ig", steps=50)
    gap = model(x)[torch.arange(8), target] - model(torch.zeros_like(x))[torch.arange(8), target]
    assert torch.allclose(a.gap, gap.detach(), atol=1e-5)
    assert torch.allclose(a.maps.sum((1, 2)), gap.detach(), rtol=0.01, atol=0.02)  # completeness, within 1%
    assert (a.delta.abs() <= 0.01 * a.gap.abs()).all()
    assert (a.maps[x[:, 0] == 0] == 0).all()  # a black pixel equals the baseline: it gets nothing


def test_randomising_a_linear_model_changes_its_saliency_beyond_recognition(linear):
    # Saliency of a linear model is its weight row, so re-initialising the weights replaces the map
    # by an independent random one: its rank correlation with the old map must be near zero.
    x = torch.rand(4, 1, 28, 28)
    result = cascading_randomisation(linear, x, torch.tensor([1, 2, 3, 4]), ["saliency"])
    assert result["layers"] == ["logits"]
    assert abs(result["methods"]["saliency"][0]) < 0.15


def test_randomising_a_trained_cnn_changes_saliency_but_not_the_input_bound_ig(trained_run, small_mnist):
    from convlens.data import load_dataset

    model = load_run(trained_run).model
    x = load_dataset(small_mnist).test_images[:6, None].float() / 255
    result = cascading_randomisation(model, x, model(x).argmax(1), ["saliency", "ig"], steps=16)
    assert result["layers"] == ["logits", "conv3", "conv2", "conv1"]
    saliency, ig = result["methods"]["saliency"], result["methods"]["ig"]
    assert saliency[-1] < 0.8  # measured about 0.6: the gradient depends on the weights
    assert ig[-1] > saliency[-1]  # IG is zero on every black pixel whatever the weights: the input shows through


def test_rank_correlation_uses_mean_ranks_for_ties():
    a = torch.tensor([[[0.0, 0.0, 1.0, 2.0]]])
    assert rank_correlation(a, a).item() == pytest.approx(1.0)
    assert rank_correlation(a, -a).item() == pytest.approx(-1.0)


def test_explain_command_writes_figure_and_numbers(trained_run, tmp_path):
    main(["explain", str(trained_run), "--index", "3", "--target", "9", "--methods", "saliency,ig,gradcam",
          "--sanity", "--out", str(tmp_path)])
    report = json.loads((tmp_path / "explain_3.json").read_text())
    assert report["methods"] == ["saliency", "ig", "gradcam"] and len(report["towards"]) in (1, 2)
    ig = next(iter(report["towards"].values()))["ig"]
    assert ig["relative_delta"] < 0.05 and ig["sum"] == pytest.approx(ig["completeness_gap"], rel=0.05)
    assert set(report["sanity"]["rank_correlation"]) == {"saliency", "ig", "gradcam"}
    for method, rho in report["sanity"]["rank_correlation"].items():  # the verdict reads the whole cascade
        assert report["sanity"]["verdicts"][method].startswith("changes" if min(rho) <= 0.5 else "barely")
    assert (tmp_path / "explain_3.png").stat().st_size > 5000 and (tmp_path / "sanity_3.png").is_file()


def test_errors_command_groups_misclassified_images_by_pair(trained_run, small_mnist, tmp_path):
    from convlens.data import load_dataset
    from convlens.training import predict

    main(["errors", str(trained_run), "--method", "saliency", "--out", str(tmp_path)])
    report = json.loads((tmp_path / "errors.json").read_text())
    ds = load_dataset(small_mnist)
    wrong = (predict(load_run(trained_run).model, ds.test_images).argmax(1) != ds.test_labels).sum().item()
    counts = [p["count"] for p in report["pairs"]]
    assert report["misclassified"] == wrong == sum(counts) and counts == sorted(counts, reverse=True)
    first = report["pairs"][0]
    assert all(int(ds.test_labels[i]) == first["true"] for i in first["indices"])
    assert all((tmp_path / p["page"]).is_file() for p in report["pairs"])
    # The index gives each mistake's probabilities: the predicted class beats the true one, as the model says.
    probabilities = predict(load_run(trained_run).model, ds.test_images[first["indices"]]).softmax(1)
    assert first["p_predicted"] == [round(p, 4) for p in probabilities[:, first["predicted"]].tolist()]
    assert all(p > t for p, t in zip(first["p_predicted"], first["p_true"]))
    assert (tmp_path / report["overview"]).is_file()


@pytest.mark.parametrize("args, message", [
    (["explain", "RUN", "--index", "99999"], "test image 99999 is out of range"),
    (["explain", "RUN", "--index", "0", "--methods", "lime"], "unknown method lime"),
    (["explain", "RUN", "--index", "0", "--methods", "gradcam", "--layer", "pool1"], "must be a conv layer"),
    (["explain", "RUN", "--index", "0", "--methods", "occlusion", "--patch", "2", "--stride", "3"], "stride <= patch"),
    (["explain", "RUN", "--index", "0", "--target", "12"], "unknown class '12'"),
    (["errors", "RUN", "--method", "shap"], "unknown method shap"),
])
def test_explain_bad_input_is_one_clear_error(trained_run, tmp_path, capsys, args, message):
    args = [str(trained_run) if a == "RUN" else a for a in args] + ["--out", str(tmp_path)]
    with pytest.raises(SystemExit) as exit_info:
        main(args)
    assert exit_info.value.code == 2 and message in capsys.readouterr().err


def test_a_sanity_verdict_reads_the_whole_cascade_not_its_last_step():
    """Grad-CAM's rho fell to -0.21 on the way and ended at 0.60: it was judged 'barely depends' on the last."""
    from convlens.explain.sanity import verdict

    judged = verdict([0.9, -0.21, 0.6], ["logits", "conv3", "conv2"])
    assert judged.startswith("changes with the weights: rho falls to -0.21 (randomised down to conv3), 0.60")
    assert verdict([0.95, 0.9, 0.85], ["logits", "conv3", "conv2"]).startswith(
        "barely depends on the weights: rho stays at 0.85 or more")


def test_every_listed_method_has_an_adapter():
    from convlens.explain.methods import REGISTRY

    assert tuple(REGISTRY) == METHODS
