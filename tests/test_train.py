"""Training on a small real MNIST subset: learning, determinism, resume, NaN guard, L2 and metrics."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import safe_open
from torch import nn

from convlens import runs
from convlens import training as train_module
from convlens.errors import UserError
from convlens.models import build_model
from convlens.training import evaluate, l2_penalty, most_confused, predict, train


def _weights(model) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _assert_same_weights(a, b):
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


def test_model_overfits_one_batch():
    torch.manual_seed(0)
    model = build_model("simple")
    x, y = torch.rand(32, 1, 28, 28), torch.arange(32) % 10
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    for _ in range(60):
        opt.zero_grad()
        F.cross_entropy(model(x), y).backward()
        opt.step()
    assert (model(x).argmax(1) == y).all()


def test_training_learns_and_writes_the_run_folder(tiny_config, tmp_path):
    result = train(tiny_config, out=tmp_path / "run")
    names = {p.name for p in (tmp_path / "run").iterdir()}
    assert {"config.json", "history.json", "model.safetensors", "checkpoint.safetensors"} <= names
    assert not [n for n in names if n.endswith(".tmp")]
    assert [h["epoch"] for h in result.history] == [1, 2]
    assert set(result.history[0]) == {"epoch", "train_loss", "train_accuracy", "val_loss", "val_accuracy", "lr", "seconds",
                                      "step_loss", "precision", "threads", "device", "cpu_bf16_units"}
    # Every step's loss, in order: 28 full batches of 64, whose mean is the epoch's loss (to the 4 digits kept).
    for entry in runs.read_json(tmp_path / "run" / "history.json"):
        assert len(entry["step_loss"]) == 1792 // 64
        assert sum(entry["step_loss"]) / len(entry["step_loss"]) == pytest.approx(entry["train_loss"], rel=1e-3)
    assert result.history[0]["step_loss"][0] > 2 * result.history[1]["step_loss"][-1]  # it learns within the steps
    assert result.history[0]["precision"] == "fp32" and result.history[0]["threads"] == torch.get_num_threads()
    assert result.history[-1]["val_accuracy"] > 0.8  # 1,792 training images, 56 steps
    assert runs.read_config(tmp_path / "run") == tiny_config


def test_same_seed_gives_identical_weights_and_another_seed_does_not(tiny_config):
    a = _weights(train(tiny_config).model)
    b = _weights(train(tiny_config).model)
    _assert_same_weights(a, b)
    c = _weights(train(tiny_config.replace(train={"seed": 1})).model)
    assert not torch.equal(a["conv1.conv.weight"], c["conv1.conv.weight"])


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_resume_ends_with_the_weights_of_an_uninterrupted_run(tiny_config, tmp_path, monkeypatch, optimizer):
    # Dropout makes the replay of random state matter too.
    config = tiny_config.replace(
        model={"model": "conv16k3-pool2-conv32k3-pool2-flatten-dropout0.3-dense10"},
        train={"epochs": 3, "optimizer": optimizer, "lr": 0.003 if optimizer == "adam" else 0.05},
    )
    full = _weights(train(config, out=tmp_path / "full").model)

    real_write = train_module._write_epoch

    def crash_after_first_epoch(run_dir, model, optimizer, config, history, *args):
        real_write(run_dir, model, optimizer, config, history, *args)
        if len(history) == 1:
            raise KeyboardInterrupt

    monkeypatch.setattr(train_module, "_write_epoch", crash_after_first_epoch)
    with pytest.raises(KeyboardInterrupt):
        train(config, out=tmp_path / "cut")
    monkeypatch.setattr(train_module, "_write_epoch", real_write)
    resumed = train(config, out=tmp_path / "cut", resume=True)
    _assert_same_weights(full, _weights(resumed.model))
    assert [h["epoch"] for h in resumed.history] == [1, 2, 3]


def test_an_existing_run_is_not_overwritten(tiny_config, tmp_path):
    train(tiny_config.replace(train={"epochs": 1}), out=tmp_path / "run")
    before = (tmp_path / "run" / "model.safetensors").read_bytes()
    with pytest.raises(UserError, match="already holds a run; continue it with `convlens train --resume"):
        train(tiny_config, out=tmp_path / "run")
    assert (tmp_path / "run" / "model.safetensors").read_bytes() == before


def test_nan_loss_stops_with_a_message_and_keeps_the_last_good_checkpoint(tiny_config, tmp_path, monkeypatch):
    calls = {"n": 0}
    real_ce = F.cross_entropy

    def ce_that_explodes_in_epoch_two(*args, **kwargs):
        calls["n"] += 1
        loss = real_ce(*args, **kwargs)
        return loss * float("nan") if calls["n"] > 29 else loss  # 28 steps per epoch, then 1 validation batch

    run = tmp_path / "run"
    config = tiny_config.replace(train={"epochs": 3})
    monkeypatch.setattr(train_module.F, "cross_entropy", ce_that_explodes_in_epoch_two)
    with pytest.raises(UserError, match="NaN or infinite at epoch 2, step 1; the checkpoint after epoch 1 .* is kept"):
        train(config, out=run)
    with safe_open(str(run / "checkpoint.safetensors"), "pt") as f:
        assert f.metadata()["epoch"] == "1"
    assert len(runs.read_json(run / "history.json")) == 1
    assert all(torch.isfinite(v).all() for v in runs.load_run(run).model.state_dict().values())


def test_l2_penalises_kernels_but_not_biases():
    model = build_model("simple")
    model.zero_grad()
    l2_penalty(model, 0.01).backward()
    assert torch.allclose(model.conv2.conv.weight.grad, 2 * 0.01 * model.conv2.conv.weight)
    assert torch.allclose(model.logits.weight.grad, 2 * 0.01 * model.logits.weight)
    assert model.conv2.conv.bias.grad is None and model.logits.bias.grad is None  # no penalty reaches biases


def test_decoupled_weight_decay_shrinks_weights_without_gradient(tiny_config):
    # With lr tiny the gradient steps vanish; weight decay alone must shrink every weight by (1 - lr*wd)^steps.
    base = tiny_config.replace(train={"epochs": 1, "lr": 1e-12, "schedule": "constant", "momentum": 0.0,
                                      "nesterov": False, "weight_decay": 1e10})
    torch.manual_seed(base.train.seed)
    init = build_model(base.model.model).logits.weight.detach().clone()
    trained = train(base).model.logits.weight.detach()
    steps = 28  # 1,792 images / 64
    assert torch.allclose(trained, init * (1 - 1e-12 * 1e10) ** steps, rtol=1e-3, atol=1e-7)


class FixedPredictor(nn.Module):
    """Predicts class (label + shift) % 3 for images whose first pixel encodes the label."""

    def __init__(self, shift_for):
        super().__init__()
        self.shift_for = shift_for
        self.dummy = nn.Parameter(torch.zeros(1))

    def forward(self, x):
        label = (x[:, 0, 0, 0] * 255).round().long()
        pred = torch.tensor([(int(t) + self.shift_for.get(int(t), 0)) % 3 for t in label])
        return F.one_hot(pred, 3).float() * 10


def test_evaluate_counts_the_confusion_matrix_with_true_classes_in_rows():
    labels = torch.tensor([0, 0, 0, 1, 1, 2, 2, 2, 2])
    images = torch.zeros(9, 28, 28, dtype=torch.uint8)
    images[:, 0, 0] = labels.to(torch.uint8)
    model = FixedPredictor({2: 1})  # every 2 is called a 0
    r = evaluate(model, images, labels)
    assert r["confusion_matrix"] == [[3, 0, 0], [0, 2, 0], [4, 0, 0]]
    assert r["per_class_accuracy"] == [1.0, 1.0, 0.0]
    assert r["accuracy"] == pytest.approx(5 / 9)
    assert most_confused(r["confusion_matrix"], ("a", "b", "c")) == [{"true": "c", "pred": "a", "count": 4}]


def test_saved_then_loaded_weights_give_identical_logits(tiny_config, tmp_path, mnist):
    result = train(tiny_config.replace(train={"epochs": 1}), out=tmp_path / "run")
    loaded = runs.load_run(tmp_path / "run").model
    _assert_same_weights(_weights(result.model), _weights(loaded))
    # Same weights in the same layout compute bit-identical logits (layouts pick different conv kernels).
    loaded = loaded.to(memory_format=torch.channels_last)
    x = mnist.test_images[:64]
    assert torch.equal(predict(result.model, x, channels_last=True), predict(loaded, x, channels_last=True))


def test_corrupt_or_mismatched_weights_are_reported(tiny_config, tmp_path):
    run = tmp_path / "run"
    train(tiny_config.replace(train={"epochs": 1}), out=run)
    config = runs.read_json(run / "config.json")
    config["model"]["model"] = "conv8k3-flatten-dense10"
    runs.write_json(run / "config.json", config)
    with pytest.raises(UserError, match="does not fit the model in config.json"):
        runs.load_run(run)
    config["model"]["model"] = tiny_config.model.model
    runs.write_json(run / "config.json", config)
    data = (run / "model.safetensors").read_bytes()
    (run / "model.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(UserError, match="corrupt or truncated"):
        runs.load_run(run)
    (run / "model.safetensors").write_bytes(b"\x00" * 10)
    with pytest.raises(UserError, match="corrupt or truncated"):
        runs.load_run(run)
