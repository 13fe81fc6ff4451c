"""A run folder someone else made: `convlens report` inlines only regular PNG files inside the run.

The report runs in a second process with a time limit, since a FIFO named .png hung it forever.
"""

from __future__ import annotations

import base64
import io
import os
import subprocess
import sys
from pathlib import Path

from conftest import copy_run
from PIL import Image

SECRET = b"api-token: 8d0f1c2b-secret-do-not-mail\n" * 8


def a_png() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (40, 30), (200, 30, 30)).save(buffer, format="PNG")
    return buffer.getvalue()


def convlens_report(run: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "convlens", "report", str(run)], capture_output=True, text=True,
                          timeout=240)


def test_links_devices_fifos_and_fakes_are_left_out_and_named(trained_run, tmp_path):
    run = copy_run(trained_run, tmp_path / "runs" / "r1")
    secret = tmp_path / "secret.txt"
    secret.write_bytes(SECRET)
    real = a_png()
    maps = run / "maps"
    maps.mkdir()
    (maps / "maps_real.png").write_bytes(real)
    (maps / "maps_secret.png").symlink_to(secret)
    (maps / "maps_passwd.png").symlink_to("/etc/passwd")
    (maps / "maps_zero.png").symlink_to("/dev/zero")
    os.mkfifo(maps / "maps_fifo.png")
    (maps / "maps_text.png").write_bytes(SECRET)  # a regular file inside the run, but not a PNG
    (maps / "maps_inside_link.png").symlink_to(maps / "maps_real.png")  # a link even inside the run is not followed
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "oip_layer.png").write_bytes(real[:-4] + SECRET[:4])
    (run / "oip").symlink_to(outside, target_is_directory=True)  # a whole linked inspection folder
    (run / "plots").mkdir(exist_ok=True)
    (run / "plots" / "curves.png").symlink_to(secret)

    done = convlens_report(run)
    assert done.returncode == 0, done.stderr
    page = (run / "report.html").read_text()
    for leaked in (SECRET, Path("/etc/passwd").read_bytes()[:24]):
        assert base64.b64encode(leaked[:24]).decode()[:24] not in page and leaked[:24].decode() not in page
    left_out = page[page.index("Files left out"):]
    for name in ("maps_secret.png", "maps_passwd.png", "maps_zero.png", "maps_fifo.png", "maps_text.png",
                 "maps_inside_link.png", "oip_layer.png", "curves.png"):
        assert name in left_out, name
    assert "not a regular file" in left_out and "not the file type its name says" in left_out
    assert "left out 8 file(s)" in done.stdout
    # The real figure is still inlined, and the training curves are drawn afresh in place of the link.
    assert base64.b64encode(real).decode() in page
    assert page.count("data:image/png;base64,") >= 4
