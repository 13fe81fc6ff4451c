"""Turn a drawing or an uploaded picture into a 28x28 input the way the data set was made.

MNIST's digits were fitted into a 20x20 box (aspect kept, anti-aliased) and then moved so that
their centre of mass sits at pixel (14, 14) of the 28x28 field: measured on the test set, the mean
centre of mass is (13.99, 14.01) and 99.8% of digits are exactly 20 pixels on their longer side.
A digit drawn anywhere on a canvas, at any size, must look like that before the model sees it.
Fashion-MNIST's pictures fill the field instead, so they are fitted into the whole image. Models of
another input size get the same geometry scaled to their side.
"""

from __future__ import annotations

import functools
import io
import warnings

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from ..config import MNIST_SIZE
from ..errors import UserError
from ..imagefolder import eight_bit

MAX_UPLOAD_BYTES = 2 * 1024 * 1024  # a photo of one digit needs far less; bounds decoding work
# Checked from the header, before decoding: a 16 KB PNG can hold 4096x4096 pixels, and decoding
# and fitting those held the model thread for 0.2-2.7 s; 2048x2048 stays under 0.06 s.
MAX_PIXELS = 2048 * 2048
FIT_SIDE = 1024  # pixels; larger uploads are box-filtered down first (a digit needs far fewer)
JPEG_DRAFT_SIDE = 1024  # a larger photo is decoded at 1/2, 1/4 or 1/8 scale by libjpeg itself, at no cost
MNIST_INK_BOX = 20  # side of the square MNIST's digits were fitted into, inside the 28x28 image
INK_THRESHOLD = 0.1  # share of the brightest pixel below which a pixel counts as background


def decode_image(data: bytes) -> torch.Tensor:
    """Return a PNG/JPEG (any mode) as grey levels (H, W) in [0, 1] with bright ink on a dark ground.

    A light background (paper, a white canvas) is inverted, judged by the image's border.
    Anything that is not a decodable PNG or JPEG within the size limits is a UserError.
    """
    pixels = torch.from_numpy(np.asarray(_decoded(data, _grey_and_small), dtype=np.float32) / 255.0)  # (H, W)
    border = torch.cat([pixels[0], pixels[-1], pixels[:, 0], pixels[:, -1]])
    return 1.0 - pixels if border.mean() > 0.5 else pixels


def decode_colour(data: bytes, size: tuple[int, int]) -> torch.Tensor:
    """Return a PNG/JPEG as colour uint8 (3, H, W) resized to `size` (H, W), for models that take colour images."""
    image = _decoded(data, lambda im: eight_bit(im).convert("RGB").resize((size[1], size[0]), Image.Resampling.BILINEAR))
    return torch.from_numpy(np.asarray(image).copy()).permute(2, 0, 1).contiguous()


def _decoded(data: bytes, convert) -> Image.Image:
    """Return convert(image) of an upload after checking its size, format and pixel count; else a UserError."""
    if not data:
        raise UserError("the upload is empty; send a PNG or JPEG image")
    if len(data) > MAX_UPLOAD_BYTES:
        raise UserError(f"the upload is {len(data):,} bytes; the limit is {MAX_UPLOAD_BYTES:,}")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
            if image.format not in ("PNG", "JPEG"):
                raise UserError(f"the upload is a {image.format} image; send a PNG or JPEG")
            if image.format == "JPEG":  # a phone photo of a digit: shrink while decoding
                image.draft(image.mode, (JPEG_DRAFT_SIDE, JPEG_DRAFT_SIDE))
            if image.width * image.height > MAX_PIXELS:
                raise UserError(f"the image is {image.width}x{image.height}; the limit is {MAX_PIXELS:,} pixels "
                                "(2048x2048): scale it down")
            return convert(image)
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombWarning,
            Image.DecompressionBombError) as e:
        raise UserError(f"the upload is not a readable PNG or JPEG image ({type(e).__name__})") from None


def _grey_and_small(image: Image.Image) -> Image.Image:
    """Return the image as 8-bit grey with no side over FIT_SIDE: a 1x4,000,000 upload must not reach the fitting,
    whose resampling matrices (one per input side, cached) grew the server by 53 MB each."""
    grey = _flatten_alpha(image)
    factor = -(-max(grey.size) // FIT_SIDE)
    return grey.reduce(factor) if factor > 1 else grey


def _flatten_alpha(image: Image.Image) -> Image.Image:
    """Return the image as 8-bit grey; transparent pixels become background (black ink on a clear canvas stays ink)."""
    image = eight_bit(image)
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        gray = np.asarray(rgba.convert("L"), dtype=np.float32)
        alpha = np.asarray(rgba.getchannel("A"), dtype=np.float32) / 255.0
        # Paint on white: a dark stroke on a see-through canvas reads as dark ink on paper.
        return Image.fromarray((gray * alpha + 255.0 * (1.0 - alpha)).astype(np.uint8))
    return image.convert("L")


def mnist_style(pixels: torch.Tensor, size: int = MNIST_SIZE) -> torch.Tensor:
    """Return grey levels (H, W) as (size, size): ink fitted into MNIST_INK_BOX / MNIST_SIZE of the side (MNIST's 20x20
    box in 28x28), centre of mass centred. An image without ink comes back black.
    """
    fitted = _fit_ink(pixels.numpy(), round(size * MNIST_INK_BOX / MNIST_SIZE))
    return torch.zeros(size, size) if fitted is None else torch.from_numpy(_place_by_centre_of_mass(fitted, size))


def fit_whole(pixels: torch.Tensor, size: int = MNIST_SIZE) -> torch.Tensor:
    """Return grey levels (H, W) as (size, size): the picture fitted into the field, centred, aspect kept."""
    fitted = _fit_ink(pixels.numpy(), size)
    out = torch.zeros(size, size)
    if fitted is None:
        return out
    top, left = (size - fitted.shape[0]) // 2, (size - fitted.shape[1]) // 2
    out[top : top + fitted.shape[0], left : left + fitted.shape[1]] = torch.from_numpy(fitted)
    return out


PREPROCESSORS = {"mnist": mnist_style, "fit": fit_whole}


def preprocessor_for(dataset: str) -> str:
    """Return the preprocessing that matches how a data set's images were made."""
    return "fit" if "fashion" in dataset else "mnist"


def to_uint8(pixels: torch.Tensor) -> torch.Tensor:
    """Return grey levels in [0, 1] as uint8, the data sets' own type."""
    return (pixels.clamp(0, 1) * 255).round().to(torch.uint8)


# The steps below run in numpy on arrays of a few thousand pixels, every frame of a stroke: there
# torch's per-call overhead was most of the time (fitting a digit drawn on the 140x140 pad: 200 us in
# torch calls, 90 us in numpy; 2-core AMD EPYC, AVX2).

def _fit_ink(pixels: np.ndarray, box: int) -> np.ndarray | None:
    """Return the ink cropped and resized so its longer side is `box` pixels, aspect kept; None without ink."""
    ink = _crop_to_ink(pixels)
    if ink is None:
        return None
    h, w = ink.shape
    scale = box / max(h, w)
    return _resize(ink, max(1, round(h * scale)), max(1, round(w * scale)))


def _crop_to_ink(pixels: np.ndarray) -> np.ndarray | None:
    peak = float(pixels.max()) if pixels.size else 0.0
    if peak <= 0.0:
        return None
    ink = pixels > INK_THRESHOLD * peak
    rows, cols = np.flatnonzero(ink.any(1)), np.flatnonzero(ink.any(0))
    crop = pixels[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]
    return crop / np.float32(peak)  # the strongest stroke is full ink, as in the data sets


def _resize(image: np.ndarray, h: int, w: int) -> np.ndarray:
    """Return the image (H, W) resampled to (h, w) as torch's interpolate would: "area" when it shrinks (the NIST
    digits were anti-aliased), else bilinear; one product with a resampling matrix per axis."""
    weights = _area_weights if h <= image.shape[0] and w <= image.shape[1] else _bilinear_weights
    return np.clip(weights(image.shape[0], h) @ image @ weights(image.shape[1], w).T, 0, 1)


# Frames of one stroke mostly share their sizes. Bounded in bytes: a matrix is (out, in) floats with in <= FIT_SIDE
# after the shrink, 0.9 MB for a 224-pixel model, so each cache holds at most about 60 MB.
@functools.lru_cache(maxsize=64)
def _area_weights(size_in: int, size_out: int) -> np.ndarray:
    """(out, in): output i averages inputs floor(i * in / out) to ceil((i + 1) * in / out), as adaptive_avg_pool does."""
    weights = np.zeros((size_out, size_in), dtype=np.float32)
    for i in range(size_out):
        start, end = (i * size_in) // size_out, -(-((i + 1) * size_in) // size_out)
        weights[i, start:end] = 1.0 / (end - start)
    weights.flags.writeable = False  # shared through the cache
    return weights


@functools.lru_cache(maxsize=64)
def _bilinear_weights(size_in: int, size_out: int) -> np.ndarray:
    """(out, in): linear interpolation at the pixel centres (align_corners=False), as torch's bilinear mode."""
    weights = np.zeros((size_out, size_in), dtype=np.float32)
    for i in range(size_out):
        source = max((i + 0.5) * size_in / size_out - 0.5, 0.0)
        low = min(int(source), size_in - 1)
        high, frac = min(low + 1, size_in - 1), source - low
        weights[i, low] += 1.0 - frac
        weights[i, high] += frac
    weights.flags.writeable = False  # shared through the cache
    return weights


def _place_by_centre_of_mass(fitted: np.ndarray, size: int) -> np.ndarray:
    h, w = fitted.shape
    mass = float(fitted.sum())
    cy = float(fitted.sum(1) @ np.arange(h, dtype=np.float32)) / mass
    cx = float(fitted.sum(0) @ np.arange(w, dtype=np.float32)) / mass
    centre = size // 2
    top = min(max(round(centre - cy), 0), size - h)  # never push ink off the field
    left = min(max(round(centre - cx), 0), size - w)
    out = np.zeros((size, size), dtype=np.float32)
    out[top : top + h, left : left + w] = fitted
    return out
