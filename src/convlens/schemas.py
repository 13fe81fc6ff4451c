"""The shape of a run folder's JSON files, checked on reading: a tampered file is one line, not a traceback.

Unknown keys are kept (older and newer convlens write more or less); a wrong type, a missing key
or a NaN (not JSON, and not a number any page can show) is refused.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, NonNegativeInt, PositiveInt


class _Checked(BaseModel):
    model_config = ConfigDict(extra="allow", allow_inf_nan=False, strict=False)


class Epoch(_Checked):
    """One entry of history.json: a finished epoch."""

    epoch: PositiveInt
    train_loss: float
    train_accuracy: float
    lr: float
    seconds: float
    val_loss: float | None = None
    val_accuracy: float | None = None


class ConfusedPair(_Checked):
    true: str
    pred: str
    count: PositiveInt


class Metrics(_Checked):
    """metrics.json: a test-set evaluation, stamped with the weights it measured."""

    dataset: str
    test_accuracy: float
    test_loss: float
    per_class_accuracy: dict[str, float]
    confusion_matrix: list[list[NonNegativeInt]]
    most_confused: list[ConfusedPair]
    weights_sha256: str | None = None  # None in runs written before evaluations were stamped


class Source(_Checked):
    """source.json in an inspection's folder: the weights its files came from."""

    weights_sha256: str


HISTORY = list[Epoch]
