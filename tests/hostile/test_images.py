"""Hostile and unusual pictures in image folders and live-page uploads: checked from the header, decoded once, scaled right."""

from __future__ import annotations

import io
import os
import struct
import subprocess
import sys
import tracemalloc
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, PngImagePlugin

from convlens import imagefolder
from convlens.errors import UserError
from convlens.imagefolder import read_image_folder
from convlens.web.preprocess import FIT_SIDE, decode_image, mnist_style


def png_bytes(image: Image.Image, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", **options)
    return buffer.getvalue()


def claimed_png(width: int, height: int) -> bytes:
    """A PNG whose header claims width x height grey pixels, with one tiny compressed row of data."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


def digit16(level: int = 60000) -> Image.Image:
    """A 16-bit grey 28x28 picture: a bright bar at `level` of 65535 on black."""
    values = np.zeros((28, 28), dtype=np.uint16)
    values[6:22, 12:16] = level
    return Image.fromarray(values)


def folder_of(tmp_path: Path, files: dict[str, bytes]) -> Path:
    root = tmp_path / "pictures"
    for name, data in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(data)
    return root


def test_sixteen_bit_grey_pngs_are_scaled_to_eight_bits_not_clipped(tmp_path):
    image = digit16(60000)
    assert image.mode.startswith("I")
    root = folder_of(tmp_path, {"four/a.png": png_bytes(image), "nine/b.png": png_bytes(digit16(32768))})
    data = read_image_folder(root, "pictures")
    assert data.train_images.shape == (2, 28, 28)
    assert int(data.train_images[0].max()) == round(60000 / 257) and int(data.train_images[1].max()) == 128
    assert int(data.train_images[0, 0, 0]) == 0  # black stays black (Pillow's own convert made 99.5% of pixels 255)


def test_a_sixteen_bit_upload_reaches_the_model_as_its_digit():
    pixels = decode_image(png_bytes(digit16(60000)))
    assert float(pixels.max()) == pytest.approx(round(60000 / 257) / 255, abs=1e-6) and float(pixels[0, 0]) == 0.0


def test_grey_palette_pngs_are_grey_and_a_gif_named_png_is_refused(tmp_path):
    grey = Image.fromarray(np.tile(np.arange(0, 252, 9, dtype=np.uint8), (28, 1))).convert("P")
    assert grey.mode == "P"
    root = folder_of(tmp_path, {"a/x.png": png_bytes(grey), "b/y.png": png_bytes(grey)})
    assert read_image_folder(root, "pictures").train_images.shape == (2, 28, 28)
    gif = io.BytesIO()
    grey.save(gif, format="GIF")
    (root / "b" / "z.png").write_bytes(gif.getvalue())
    with pytest.raises(UserError, match="z.png is a GIF image, whatever its name"):
        read_image_folder(root, "pictures")


@pytest.mark.parametrize("side", [9000, 30000])
def test_a_huge_picture_is_refused_from_its_header(side, tmp_path):
    root = folder_of(tmp_path, {"a/ok.png": png_bytes(digit16()), "a/huge.png": claimed_png(side, side)})
    tracemalloc.start()
    with pytest.raises(UserError, match="huge.png is .* pixels convlens reads"):
        read_image_folder(root, "pictures")
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 20 * 2**20


def chunk_bomb(kind: str) -> bytes:
    """A 28x28 PNG carrying 16 MB of zlib-compressed text or colour profile (16 kB on disk)."""
    if kind == "icc":
        return png_bytes(digit16(), icc_profile=b"a" * (16 * 2**20))
    info = PngImagePlugin.PngInfo()
    info.add_text("comment", "a" * (16 * 2**20), zip=True)
    return png_bytes(digit16(), pnginfo=info)


@pytest.mark.parametrize("kind", ["text", "icc"])
def test_a_chunk_bomb_is_one_clear_error_in_a_folder_and_an_upload(kind, tmp_path):
    data = chunk_bomb(kind)
    assert len(data) < 64 * 2**10
    root = folder_of(tmp_path, {"a/bomb.png": data})
    with pytest.raises(UserError, match="cannot read image .*bomb.png"):
        read_image_folder(root, "pictures")
    with pytest.raises(UserError, match="not a readable PNG or JPEG image"):
        decode_image(data)


def test_a_fifo_named_png_is_refused_without_waiting(tmp_path):
    root = folder_of(tmp_path, {"a/ok.png": png_bytes(digit16())})
    os.mkfifo(root / "a" / "pipe.png")
    script = (f"from convlens.imagefolder import read_image_folder; from pathlib import Path; "
              f"read_image_folder(Path({str(root)!r}), 'p')")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert "pipe.png is not a regular file" in done.stderr


def test_a_one_folder_set_decodes_each_file_once(tmp_path, monkeypatch):
    root = folder_of(tmp_path, {f"{c}/{k}.png": png_bytes(digit16(1000 * (k + 1))) for c in "ab" for k in range(3)})
    opened = []
    real_open = imagefolder.Image.open
    monkeypatch.setattr(imagefolder.Image, "open", lambda path, *a: opened.append(path) or real_open(path, *a))
    data = read_image_folder(root, "pictures")
    assert len(opened) == 6 and data.train_images.shape == data.test_images.shape == (6, 28, 28)


def test_uploads_of_odd_widths_do_not_grow_the_server():
    """Each 1xN upload of a new width used to leave 53 MB of resampling matrices in a cache that never shrank."""
    tracemalloc.start()
    for k in range(40):
        width = 2048 * 2048 - 7919 * k
        strip = Image.fromarray(np.full((1, width), 255, dtype=np.uint8))
        pixels = decode_image(png_bytes(strip))
        assert max(pixels.shape) <= FIT_SIDE
        mnist_style(pixels)
    current = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    assert current < 100 * 2**20, f"{current / 2**20:.0f} MB still held after 40 uploads"
