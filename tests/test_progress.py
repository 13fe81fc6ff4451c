"""Long loops show a bar with an ETA on a terminal, weighted by each item's share of the work, and nothing elsewhere."""

from __future__ import annotations

import io

from rich.console import Console

from convlens import progress


def test_off_a_terminal_the_items_pass_through_and_nothing_is_drawn(capsys):
    assert list(progress.track(iter([3, 1, 2]), "work")) == [3, 1, 2]
    assert capsys.readouterr().err == ""


def test_on_a_terminal_the_bar_counts_the_items_weights_and_shows_an_eta(monkeypatch):
    screen = io.StringIO()
    monkeypatch.setattr(progress, "console", Console(file=screen, force_terminal=True, width=120))
    seen = []
    for item in progress.track([("4→9", 30), ("7→2", 10)], "explaining errors", weight=lambda kv: kv[1]):
        seen.append(item[0])
    text = screen.getvalue()
    assert seen == ["4→9", "7→2"]
    assert "explaining errors" in text and "40/40" in text and "0:00:00" in text  # count of weights, elapsed/ETA


def test_items_that_come_as_they_are_ready_are_not_waited_for_all_at_once(monkeypatch):
    monkeypatch.setattr(progress, "console", Console(file=io.StringIO(), force_terminal=True))
    handed = []

    def arriving():
        for k in range(3):
            handed.append(k)
            yield k

    for k in progress.track(arriving(), "runs", total=3):
        assert handed == list(range(k + 1))  # the next item is not asked for before this one is used


def test_every_epoch_line_names_its_run(monkeypatch):
    screen = io.StringIO()
    monkeypatch.setattr(progress, "console", Console(file=screen, force_terminal=True, width=150, color_system=None))
    entry = {"epoch": 1, "train_loss": 0.5, "train_accuracy": 0.9, "val_accuracy": 0.95, "lr": 0.1, "seconds": 1.0}
    with progress.EpochProgress(2, 10, label="simple-mnist-s1") as bar:
        bar.end_epoch(entry)
    assert "simple-mnist-s1  epoch 1/2  train_loss 0.5000" in screen.getvalue()


def test_a_loop_inside_a_tracked_loop_adds_its_line_under_the_outer_bar(monkeypatch):
    screen = io.StringIO()
    monkeypatch.setattr(progress, "console", Console(file=screen, force_terminal=True, width=120))
    seen = [(layer, batch) for layer in progress.track(["conv1", "conv2"], "probing layers")
            for batch in progress.track(range(3), f"{layer} maps")]  # rich allows one live display: this must not raise
    assert len(seen) == 6
    text = screen.getvalue()
    assert "probing layers" in text and "conv1 maps" in text and "conv2 maps" in text
    assert progress._live is None  # the bar is gone with the outer loop; the next command starts a fresh one


def test_off_a_terminal_training_writes_its_epoch_lines_and_no_bar(monkeypatch):
    """A redirected `train` ended with a cut frame of the bar ('epoch 5/5 ━━ 43… loss 0.0577 … 0:0…')."""
    import torch

    screen = io.StringIO()
    monkeypatch.setattr(progress, "console", Console(file=screen, force_terminal=False, width=150))
    entry = {"epoch": 1, "train_loss": 0.25, "train_accuracy": 0.5, "val_accuracy": None, "lr": 0.1, "seconds": 1.0}
    with progress.EpochProgress(1, 2) as bar:
        bar.step(0, torch.tensor(0.5), torch.tensor(1), 2, 0.1)
        bar.end_epoch(entry)
    assert screen.getvalue() == "epoch 1/1  train_loss 0.2500  train_acc 0.5000  lr 1.00e-01  1.0s\n"


def test_the_bar_shows_the_epochs_running_means_as_its_epoch_line_will(monkeypatch):
    import torch

    screen = io.StringIO()
    monkeypatch.setattr(progress, "console", Console(file=screen, force_terminal=True, width=150, color_system=None))
    with progress.EpochProgress(1, 2) as bar:
        bar.step(0, torch.tensor(0.6), torch.tensor(2), 4, 0.1)  # a sum of 0.6 over 4 images: a mean of 0.15
        bar.progress.refresh()
        assert "loss 0.1500  acc 0.5000" in screen.getvalue()


def test_the_sanity_cascade_and_a_comparison_show_their_stages(monkeypatch):
    """explain --sanity (64 s) and compare (73 s) were silent after their first line."""
    import torch

    from convlens.compare import compare_models
    from convlens.explain import cascading_randomisation
    from convlens.models import build_model

    screen = io.StringIO()
    monkeypatch.setattr(progress, "console", Console(file=screen, force_terminal=True, width=120, color_system=None))
    torch.manual_seed(0)
    a, b, x = build_model("simple").eval(), build_model("simple").eval(), torch.rand(12, 1, 28, 28)
    cascading_randomisation(a, x[:1], torch.tensor([3]), ["saliency"])
    compare_models(a, b, x)
    text = screen.getvalue()
    assert "randomising 4 layers from the top" in text and "4/4" in text  # conv1-3 and the logits
    assert "matching maps, layer by layer" in text and "3/3" in text


def test_an_oip_search_moves_its_bar_every_step_of_every_batch(monkeypatch):
    """64 ResNet50 maps are one batch of 96 steps of 11 s: a bar per batch sat at 0 for 17 minutes."""
    import torch

    from convlens.models import build_model
    from convlens.oip import Ascent, class_oips, layer_oips
    from convlens.oip import search

    screen = io.StringIO()
    monkeypatch.setattr(progress, "console", Console(file=screen, force_terminal=True, width=120, color_system=None))
    monkeypatch.setattr(search, "MEMORY_BUDGET", 1)  # one map a batch: 3 batches
    torch.manual_seed(0)
    model = build_model("simple").eval()
    layer_oips(model, "conv1", [0, 1, 2], ascent=Ascent(steps=5), progress="conv1: OIPs")
    class_oips(model, [4, 9], ascent=Ascent(steps=4), progress="class OIPs")
    text = screen.getvalue()
    assert "conv1: OIPs" in text and "15/15" in text and "class OIPs" in text and "4/4" in text
    assert progress._live is None
