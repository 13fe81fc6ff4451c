"""Frozen dataclasses that describe a run completely, their round trip through plain dicts, the model presets
and the recipes. No torch: the command line reads these for its flags and --help.

The resolved config is written into every run folder and every weights file, so a run can be
reproduced from its folder alone.
"""

from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass, field, fields

from .errors import UserError

MNIST_SIZE = 28  # the side of MNIST and Fashion-MNIST images, in pixels
MNIST_SHAPE = (1, MNIST_SIZE, MNIST_SIZE)  # (C, H, W) of one image, what convlens nets are built for by default

PRESETS: dict[str, str] = {
    # The convnet of the articles: 104,202 parameters, conv3 outputs 3x3x128.
    "simple": "conv32k3-pool2-conv64k3-pool2-conv128k3-flatten-dense10",
    # simple plus a hidden dense layer: the "MLP part" whose role the articles discuss.
    "simple-mlp": "conv32k3-pool2-conv64k3-pool2-conv128k3-flatten-dense64-dense10",
    # Keras' MNIST example style: same padding, Dense 64, Dropout 0.5; 220,234 parameters.
    "same-pad": "conv32k3same-pool2-conv64k3same-pool2-flatten-dense64-dropout0.5-dense10",
    # The TensorFlow tutorial net: 5x5 convs, Dense 1024; 3,274,634 parameters.
    "deep5x5": "conv32k5same-pool2-conv64k5same-pool2-flatten-dense1024-dropout0.4-dense10",
    # Dense-only baseline for "CNN 99.1% vs dense 97.8%": 101,770 parameters.
    "mlp": "flatten-dense128-dense10",
    # Speed first: a strided 5x5 first conv does a third of simple's work; 99% in two epochs.
    "fast": "conv16k5s2bn-conv32k3bn-pool2-flatten-dense10",
    # fast plus a hidden dense layer with batch norm: 99.13-99.23% in one epoch over 5 seeds (the `fast`
    # recipe), where fast itself plateaued at 98.9% whatever the optimizer; 0.1-0.2 s more per epoch.
    "fast-mlp": "conv16k5s2bn-conv32k3bn-pool2-flatten-dense64bn-dense10",
    # Accuracy first (the best-* recipes): VGG-style pairs of 3x3 convs with batch norm.
    "vgg-mnist": "conv32k3bn-conv32k3bn-pool2-conv64k3bn-conv64k3bn-pool2-flatten-dense10",
    "vgg-fashion": "conv32k3samebn-conv32k3samebn-pool2-conv64k3samebn-conv64k3samebn-pool2-conv128k3samebn-conv128k3bn"
                   "-flatten-dropout0.3-dense10",
    # One conv per stage and a wide dense layer: a third of vgg-fashion's work per image, so 15 minutes
    # on 2 cores fit 30 epochs instead of 6 (the best-fashion recipe: 93.75% against 92.56%).
    "fashion-cnn3": "conv32k3samebn-pool2-conv64k3samebn-pool2-conv128k3samebn-pool2-flatten-dense256bn-dropout0.3-dense10",
    # LeCun et al. 1998 on 28x28 input (padding 2 in the first conv), average pooling, tanh.
    "lenet5": "conv6k5sametanh-avgpool2-conv16k5tanh-avgpool2-flatten-dense120tanh-dense84tanh-dense10",
}

OPTIMIZERS = ("sgd", "adam", "rmsprop")
SCHEDULES = ("constant", "step", "exponential", "cosine", "onecycle")
PRECISIONS = ("auto", "fp32", "bf16")
DEVICES = ("auto", "cpu", "cuda")
AUGMENTS = ("none", "shift", "flip", "affine", "elastic")
CHOICES = {"optimizer": OPTIMIZERS, "schedule": SCHEDULES, "precision": PRECISIONS, "device": DEVICES,
           "augment": AUGMENTS}


@dataclass(frozen=True)
class DataConfig:
    dataset: str = "mnist"  # registry name (mnist, fashion-mnist) or idx:DIR
    val_size: int = 5000  # the last N training images are held out for validation; 0 = none


@dataclass(frozen=True)
class ModelConfig:
    model: str = "simple"  # preset name or layer spec such as conv32k3-pool2-flatten-dense10
    input_shape: tuple[int, int, int] = MNIST_SHAPE  # (channels, height, width) of one image; set from the data set


@dataclass(frozen=True)
class TrainConfig:
    """Training hyper-parameters; the defaults are the `default` recipe (98.8% on MNIST in one epoch)."""

    epochs: int = 2  # full passes over the training split
    batch_size: int = 128  # images per optimizer step
    optimizer: str = "sgd"  # sgd | adam | rmsprop
    lr: float = 0.1  # peak learning rate, per batch of batch_size images
    momentum: float = 0.9  # sgd and rmsprop momentum
    beta1: float = 0.9  # adam: decay of the running mean of the gradient
    beta2: float = 0.999  # adam: decay of the running mean of the squared gradient
    nesterov: bool = True  # Nesterov momentum (sgd only)
    l2: float = 0.0  # Keras-style kernel regulariser: adds l2 * sum(w**2) of conv/dense kernels, not biases
    weight_decay: float = 0.0  # decoupled weight decay: each step shrinks all weights by lr * weight_decay
    schedule: str = "onecycle"  # constant | step | exponential | cosine | onecycle
    step_every: float = 2.0  # step: epochs between decays
    gamma: float = 0.5  # step: factor per decay; exponential: factor per epoch
    min_lr: float = 0.0  # cosine: lr at the end
    warmup: float = 0.2  # onecycle: share of the run spent rising from lr/25 to lr, then falling to 0
    label_smoothing: float = 0.0  # cross-entropy label smoothing
    cutout: int = 0  # erase one random square of this side (pixels) per training image; 0 = off
    augment: str = "none"  # none | shift (2 px) | flip (shift + mirror, for clothes) | affine (shift, 10 degrees, 0.9-1.1x) | elastic (affine + smooth warps)
    seed: int = 0  # one seed drives init, shuffling and dropout; the same seed gives bit-identical weights with the same precision, thread count and CPU kind, which history.json records per epoch
    precision: str = "auto"  # auto (bf16 only where the hardware has it) | fp32 | bf16
    channels_last: bool = True  # NHWC memory layout; measured 1.2-1.9x faster on an AVX2 CPU
    retain_memory: bool = True  # keep freed memory in the process instead of returning it page by page: 1.2-1.5x on CPU
    device: str = "auto"  # auto | cpu | cuda
    compile: bool = False  # torch.compile: ~30 s of compilation, pays off only for long runs


@dataclass(frozen=True)
class RunConfig:
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    def to_dict(self) -> dict:
        """Return the config as nested plain dicts, ready for JSON."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "RunConfig":
        """Return the config a dict describes; unknown keys and values of the wrong type are an error, missing keys
        take defaults."""
        if not isinstance(d, dict):
            raise UserError(f"a config is an object of sections, not {type(d).__name__}")
        parts = {}
        for f in fields(cls):
            part_cls = f.default_factory
            part = d.get(f.name, {})
            if not isinstance(part, dict):
                raise UserError(f"config section '{f.name}' must be an object, not {type(part).__name__}")
            unknown = set(part) - {pf.name for pf in fields(part_cls)}
            if unknown:
                raise UserError(f"config section '{f.name}' has unknown keys {sorted(unknown)}")
            types = typing.get_type_hints(part_cls)
            parts[f.name] = part_cls(**{k: _typed(f"{f.name}.{k}", v, types[k]) for k, v in part.items()})
        return cls(**parts).validated()

    def validated(self) -> "RunConfig":
        """Return self after checking every value a user can set; raise UserError naming the setting."""
        t, d = self.train, self.data
        _check(t.epochs >= 1, "epochs must be at least 1")
        _check(t.batch_size >= 1, "batch_size must be at least 1")
        _check(t.optimizer in OPTIMIZERS, f"optimizer must be one of {', '.join(OPTIMIZERS)}")
        _check(t.schedule in SCHEDULES, f"schedule must be one of {', '.join(SCHEDULES)}")
        _check(t.precision in PRECISIONS, f"precision must be one of {', '.join(PRECISIONS)}")
        _check(t.device in DEVICES, f"device must be one of {', '.join(DEVICES)}")
        _check(t.lr > 0, "lr must be positive")
        _check(0 <= t.momentum < 1, "momentum must be in [0, 1)")
        _check(0 <= t.beta1 < 1 and 0 <= t.beta2 < 1, "beta1 and beta2 must be in [0, 1)")
        _check(t.l2 >= 0 and t.weight_decay >= 0, "l2 and weight_decay must be >= 0")
        _check(0 < t.gamma <= 1, "gamma must be in (0, 1]")
        _check(t.step_every > 0, "step_every must be positive")
        _check(0 <= t.warmup < 1, "warmup must be in [0, 1)")
        _check(0 <= t.label_smoothing < 1, "label_smoothing must be in [0, 1)")
        _check(t.augment in AUGMENTS, f"augment must be one of {', '.join(AUGMENTS)}")
        _check(t.cutout >= 0, "cutout must be 0 (off) or a square side in pixels")
        shape = self.model.input_shape
        _check(isinstance(shape, tuple) and len(shape) == 3 and all(isinstance(v, int) and v >= 1 for v in shape),
               f"model.input_shape must be three positive integers (channels, height, width), not {shape!r}")
        _check(d.val_size >= 0, "val_size must be >= 0")
        return self

    def replace(self, **sections) -> "RunConfig":
        """Return a copy with fields of each named section replaced, e.g. replace(train={'lr': 0.1})."""
        parts = {name: dataclasses.replace(getattr(self, name), **changes) for name, changes in sections.items()}
        return dataclasses.replace(self, **parts).validated()


def _typed(name: str, value, kind):
    """Return a config value as its field's type (an int is a float too; JSON's list is the tuple written), else raise."""
    if typing.get_origin(kind) is tuple and isinstance(value, list):
        value = tuple(value)
    expected = typing.get_origin(kind) or kind
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if not isinstance(value, expected) or (expected is int and isinstance(value, bool)):
        raise UserError(f"config value {name} must be {expected.__name__}, not {value!r}")
    return value


def _check(ok: bool, message: str) -> None:
    if not ok:
        raise UserError(message)


# Named recipes: each sets fields of any config section over the defaults; flags given on top win.
# The trained figures are measured by bench/train_speed.py on a 2-core CPU; see the README.
RECIPES: dict[str, dict[str, dict]] = {
    # The defaults: big batches, Nesterov SGD and OneCycle, so one epoch is enough for any model.
    "default": {},
    # The articles' recipe: SGD with momentum, batch 64, a step schedule, Keras-style L2, fp32.
    "seed": {"train": dict(
        epochs=5, batch_size=64, optimizer="sgd", lr=0.01, momentum=0.9, nesterov=False, l2=5e-4,
        schedule="step", step_every=2.0, gamma=0.5, precision="fp32",
    )},
    # Speed first: 99% in one epoch. The fast-mlp net (a strided 5x5 first conv cuts the work 3x) with
    # the one-epoch settings of the public MNIST record: Adam betas (0.7, 0.9), OneCycle, batch 256, plus
    # label smoothing. 5 seeds: 99.13-99.23% test, 2.4-3.0 s each on a 2-core Xeon (AVX-512, no bf16);
    # 99.12-99.25%, 3.9-5.2 s each on a 2-core AMD EPYC (AVX2 only) over three runs of the 5 seeds.
    # Tried and dropped (3 seeds each): fast itself with Adam or SGD, any lr (98.6-98.96%), batch 512
    # (one seed at 98.99%), wider convs (twice the time, 98.9-99.0%).
    "fast": {"model": {"model": "fast-mlp"}, "train": dict(
        epochs=1, batch_size=256, optimizer="adam", lr=0.02, beta1=0.7, beta2=0.9, label_smoothing=0.1)},
    # Accuracy first, within 15 minutes on 2 cores: batch norm, warped digits, label smoothing.
    # Elastic warps scored lower than affine ones (99.19% against 99.63% on an H100, 12 epochs).
    # 12 epochs: 99.60-99.68% over 3 seeds on an H100, about 11 minutes on 2 cores (10: 99.55-99.64%).
    "best-mnist": {"model": {"model": "vgg-mnist"}, "train": dict(
        epochs=12, batch_size=128, lr=0.1, augment="affine", label_smoothing=0.1)},
    # Clothes may be mirrored. Within 15 minutes on 2 cores, many cheap epochs beat few costly ones
    # (seed 0, 2-core Xeon): vgg-fashion with cutout, 6 epochs, 710 s: 92.56%; fashion-cnn3 with
    # cutout, 27 epochs, 617 s: 93.07%; at 1.5x its widths, 16 epochs, 589 s: 92.99%; fashion-cnn3
    # without cutout (its train accuracy stayed below validation: too much regularisation), 30
    # epochs, 690 s: 93.75%; 38 epochs, 835 s: 93.82%. 94% was not reached.
    "best-fashion": {"data": {"dataset": "fashion-mnist"}, "model": {"model": "fashion-cnn3"}, "train": dict(
        epochs=30, batch_size=128, lr=0.1, augment="flip", label_smoothing=0.1)},
}
