"""MNIST-style preprocessing of drawings and uploads: exact geometry, decoding rules, and accuracy on real digits."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from convlens.errors import UserError
from convlens.runs import load_run
from convlens.training import predict
from convlens.web.preprocess import MAX_UPLOAD_BYTES, _resize, decode_image, fit_whole, mnist_style, to_uint8


def centre_of_mass(image: torch.Tensor) -> tuple[float, float]:
    mass = image.sum()
    return (float((image.sum(1) * torch.arange(image.shape[0])).sum() / mass),
            float((image.sum(0) * torch.arange(image.shape[1])).sum() / mass))


def png(array: np.ndarray, mode: str | None = None) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array, mode).save(buffer, format="PNG")
    return buffer.getvalue()


def test_a_tall_bar_anywhere_becomes_20_pixels_tall_with_its_mass_at_the_centre():
    canvas = torch.zeros(140, 140)
    canvas[10:90, 100:116] = 1.0  # 80 x 16, far from the centre, top right
    out = mnist_style(canvas)
    rows = torch.nonzero(out.sum(1) > 0).flatten()
    cols = torch.nonzero(out.sum(0) > 0).flatten()
    assert out.shape == (28, 28)
    assert len(rows) == 20 and len(cols) == 4  # 80:16 scaled by 20/80
    cy, cx = centre_of_mass(out)
    assert abs(cy - 14) <= 0.5 and abs(cx - 14) <= 0.5
    assert float(out.max()) == pytest.approx(1.0)


def test_the_centre_of_mass_not_the_box_is_centred():
    canvas = torch.zeros(100, 100)
    canvas[20:80, 40:50] = 1.0  # a heavy left bar ...
    canvas[20:25, 50:70] = 0.2  # ... and a light top bar: 60 x 30, fitted to 20 x 10
    out = mnist_style(canvas)
    cy, cx = centre_of_mass(out)
    assert abs(cy - 14) <= 0.5 and abs(cx - 14) <= 0.5
    cols = torch.nonzero(out.sum(0) > 0).flatten()
    assert len(cols) == 10 and int(cols[0]) > 9  # right of where centring the box would put it (column 9)


@pytest.mark.parametrize("shape, size", [((104, 84), (20, 16)), ((37, 200), (4, 20)), ((20, 20), (20, 20)),
                                         ((7, 3), (20, 9)), ((12, 30), (28, 70)), ((40, 10), (20, 30)), ((1, 1), (20, 20))])
def test_resampling_matches_torch_interpolate_area_when_shrinking_and_bilinear_when_growing(shape, size):
    image = torch.rand(shape, generator=torch.Generator().manual_seed(sum(shape)))
    shrinks = size[0] <= shape[0] and size[1] <= shape[1]
    expected = F.interpolate(image[None, None], size=size, mode="area" if shrinks else "bilinear",
                             **({} if shrinks else {"align_corners": False}))[0, 0].clamp(0, 1)
    torch.testing.assert_close(torch.from_numpy(_resize(image.numpy(), *size)), expected, atol=1e-6, rtol=0)


def test_an_empty_drawing_stays_black():
    assert torch.equal(mnist_style(torch.zeros(50, 50)), torch.zeros(28, 28))
    assert torch.equal(fit_whole(torch.zeros(50, 50)), torch.zeros(28, 28))


def test_fit_whole_fills_the_field_for_fashion_pictures():
    canvas = torch.zeros(60, 60)
    canvas[10:50, 20:40] = 0.5  # 40 x 20
    out = fit_whole(canvas)
    rows = torch.nonzero(out.sum(1) > 0).flatten()
    cols = torch.nonzero(out.sum(0) > 0).flatten()
    assert len(rows) == 28 and len(cols) == 14
    assert int(cols[0]) == 7  # centred: (28 - 14) / 2


def test_dark_ink_on_paper_is_inverted_and_transparency_is_background():
    paper = np.full((60, 60), 255, np.uint8)
    paper[10:50, 25:35] = 0
    grey = decode_image(png(paper))
    assert float(grey[0, 0]) == 0.0 and float(grey[30, 30]) == 1.0
    rgba = np.zeros((60, 60, 4), np.uint8)  # fully transparent canvas ...
    rgba[10:50, 25:35] = (0, 0, 0, 255)  # ... with an opaque black stroke
    grey = decode_image(png(rgba, "RGBA"))
    assert float(grey[0, 0]) == 0.0 and float(grey[30, 30]) == 1.0


@pytest.mark.parametrize("data, message", [
    (b"", "empty"),
    (b"hello, I am text", "not a readable PNG or JPEG"),
    (png(np.zeros((4, 4), np.uint8))[:40], "not a readable PNG or JPEG"),  # truncated
    (b"x" * (MAX_UPLOAD_BYTES + 1), "limit"),
])
def test_what_is_not_a_png_or_jpeg_is_a_user_error(data, message):
    with pytest.raises(UserError, match=message):
        decode_image(data)


def test_other_image_formats_are_refused_by_name():
    buffer = io.BytesIO()
    Image.new("L", (8, 8)).save(buffer, format="GIF")
    with pytest.raises(UserError, match="GIF"):
        decode_image(buffer.getvalue())


def test_huge_dimensions_are_refused_before_decoding():
    buffer = io.BytesIO()
    Image.new("1", (5000, 5000)).save(buffer, format="PNG")  # tiny file, 25 M pixels
    assert len(buffer.getvalue()) < MAX_UPLOAD_BYTES
    with pytest.raises(UserError, match="pixels"):
        decode_image(buffer.getvalue())


def test_drawn_digits_are_classified_as_well_as_test_digits(mnist_run, mnist):
    """Test digits scaled up 5x and moved off-centre, as a user would draw them, then preprocessed."""
    model = load_run(mnist_run).model
    images, labels = mnist.test_images[:1000], mnist.test_labels[:1000]
    big = F.interpolate(images.float()[:, None] / 255, size=(140, 140), mode="bilinear", align_corners=False)[:, 0]
    canvas = torch.zeros(len(images), 200, 200)
    canvas[:, 10:150, 50:190] = big  # top right of a larger pad
    drawn = torch.stack([to_uint8(mnist_style(c)) for c in canvas])
    original = (predict(model, images).argmax(1) == labels).float().mean().item()
    redrawn = (predict(model, drawn).argmax(1) == labels).float().mean().item()
    assert original > 0.97
    assert redrawn >= original - 0.01, (original, redrawn)
