"""The shape of a run folder's JSON files, checked on reading: a tampered file is one line, not a traceback.

Unknown keys are kept (older and newer convlens write more or less); a wrong type, a missing key
or a NaN (not JSON, and not a number any page can show) is refused.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, NonNegativeInt, PositiveInt


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
    step_loss: list[float] | None = None  # each step's training loss, in order (runs from before 2026-12 lack it)


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

# graph.json: every number bounded before a module is built from it (10^9 channels asked for 36 GB).
Width = Annotated[int, Field(gt=0, le=2**16)]  # channels or features of one layer
Side = Annotated[int, Field(gt=0, le=4096)]  # a kernel, stride or image side
Pad = Annotated[int, Field(ge=0, le=4096)]
Name = Annotated[str, Field(pattern=r"^[A-Za-z][A-Za-z0-9_]{0,127}$")]  # a child module's name: no dots, no "_x"


class GraphNode(_Checked):
    """One layer of graph.json (importers/graph.py says what each op means)."""

    name: Name
    op: Literal["conv", "dense", "maxpool", "avgpool", "pad", "global_avgpool", "global_maxpool", "reshape",
                "flatten", "identity", "activation", "batchnorm", "groupnorm", "add", "mul", "concat", "affine",
                "convtranspose", "upsample", "layernorm", "scale", "prelu"]
    inputs: list[str] = Field(min_length=1, max_length=4096)
    in_: Width | None = Field(None, alias="in")
    out: Width | None = None
    kernel: list[Side] | None = Field(None, min_length=2, max_length=2)
    stride: list[Side] | None = Field(None, min_length=2, max_length=2)
    padding: Literal["same", "valid"] | Annotated[list[Pad], Field(min_length=2, max_length=2)] | None = None
    groups: Width | None = None
    dilation: list[Side] | None = Field(None, min_length=2, max_length=2)
    ceil_mode: bool | None = None
    keepdims: bool | None = None
    shape: list[Width] | None = Field(None, min_length=1, max_length=3)
    count_include_pad: bool | None = None
    factor: list[Side] | None = Field(None, min_length=2, max_length=2)
    mode: Literal["nearest", "bilinear"] | None = None
    align_corners: bool | None = None
    pads: list[Annotated[int, Field(ge=-4096, le=4096)]] | None = Field(None, min_length=4, max_length=4)
    bias: bool | None = None
    bn: float | None = None
    activation: str | None = None
    function: str | None = None
    features: Width | None = None
    eps: float | None = None
    dims: Literal[1, 2] | None = None
    scale: float | Annotated[list[float], Field(max_length=4)] | None = None
    offset: float | Annotated[list[float], Field(max_length=4)] | None = None


class Graph(_Checked):
    """graph.json: an imported model's layers."""

    format: Literal["convlens-graph"]
    version: Literal[1]
    input_shape: list[Side] = Field(min_length=3, max_length=3)
    nodes: list[GraphNode] = Field(min_length=1, max_length=4096)
