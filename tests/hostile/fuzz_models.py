"""Damaged model files, seeded: truncated, bit-flipped and smashed copies of real Keras, ONNX and .pt2 files.

Each case is imported in a forked child (torch already loaded in the parent) under a 30 s alarm;
the parent reads the child's outcome and peak memory (wait4's ru_maxrss). The only outcomes
allowed are an import and a UserError: a traceback, a hang or a crash is a finding.

    python tests/hostile/fuzz_models.py --cases 500      # per format; prints a table and every finding
"""

from __future__ import annotations

import argparse
import io
import os
import random
import signal
import sys
import tempfile
import time
import traceback
import warnings
import zipfile
from pathlib import Path

import torch
from torch import nn

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "keras"
TIME_LIMIT_S = 30
OUTCOMES = {0: "imported", 2: "refused", 3: "traceback", 4: "hang"}


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1, self.bn = nn.Conv2d(1, 8, 3), nn.BatchNorm2d(8)
        self.conv2, self.fc = nn.Conv2d(8, 16, 3, stride=2), nn.Linear(16 * 12 * 12, 10)

    def forward(self, x):
        x = torch.relu(self.bn(self.conv1(x)))
        return self.fc(torch.flatten(torch.relu(self.conv2(x)), 1))


def seeds(folder: Path) -> dict[str, bytes]:
    """Return {format: the bytes of one real, importable model file}."""
    torch.manual_seed(0)
    net = Net().eval()
    x = torch.zeros(1, 1, 28, 28)
    torch.export.save(torch.export.export(net, (x,)), str(folder / "net.pt2"))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(net, (x,), str(folder / "net.onnx"), dynamo=False)
    return {"keras": (FIXTURES / "articles.keras").read_bytes(), "h5": (FIXTURES / "articles.h5").read_bytes(),
            "onnx": (folder / "net.onnx").read_bytes(), "pt2": (folder / "net.pt2").read_bytes()}


def damaged(data: bytes, rng: random.Random) -> tuple[str, bytes]:
    """Return (what was done, a damaged copy): a truncation, bit flips, or a smashed run of bytes.

    Half the damage to a zip (.keras, .pt2) goes into one member, zipped again with a right checksum,
    so that the parsers behind zipfile's CRC check are reached too.
    """
    if data.startswith(b"PK") and rng.random() < 0.5:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            members = {info.filename: archive.read(info) for info in archive.infolist()}
        name = rng.choice(sorted(members))
        how, members[name] = damaged(members[name] or b"\0", rng)
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w") as archive:
            for member, content in members.items():
                archive.writestr(member, content)
        return f"{how} {name}", buffer.getvalue()
    kind = rng.choice(["truncate", "flip", "smash"])
    if kind == "truncate":
        return kind, data[:rng.randrange(len(data))]
    copy = bytearray(data)
    if kind == "flip":
        for _ in range(rng.choice([1, 2, 8, 64])):
            copy[rng.randrange(len(copy))] ^= 1 << rng.randrange(8)
        return kind, bytes(copy)
    start, length = rng.randrange(len(copy)), rng.choice([4, 16, 256, 4096])
    copy[start:start + length] = bytes(rng.choice([0, 0xFF, rng.randrange(256)]) for _ in range(length))
    return kind, bytes(copy[:len(data)])


def run_case(path: Path) -> tuple[int, int, str]:
    """Import `path` in a forked child; return (exit code, peak memory in MB, a traceback's last line or '')."""
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(read)
        code, note = 0, ""
        signal.alarm(TIME_LIMIT_S)
        try:
            from convlens.errors import UserError
            from convlens.importers import import_file
            try:
                import_file(path)
            except UserError:
                code = 2
        except BaseException as e:  # noqa: BLE001 - anything else is the finding
            code = 4 if isinstance(e, TimeoutError) else 3
            frame = traceback.extract_tb(e.__traceback__)[-1]
            note = f"{type(e).__name__}: {str(e)[:120]} at {Path(frame.filename).name}:{frame.lineno}"
        os.write(write, note.encode()[:4000])
        os._exit(code)
    os.close(write)
    _, status, usage = os.wait4(pid, 0)
    note = os.read(read, 4000).decode(errors="replace")
    os.close(read)
    code = os.waitstatus_to_exitcode(status)
    if code < 0:
        code, note = 3, f"killed by signal {-code}"
    return code, usage.ru_maxrss // 1024, note


def fuzz(cases: int, seed: int = 0, log=print, formats: tuple[str, ...] = ()) -> dict[str, dict]:
    """Run `cases` damaged files per format; return {format: {outcome: count, 'peak_mb': .., 'findings': [..]}}."""
    alarm = signal.signal(signal.SIGALRM, lambda *a: (_ for _ in ()).throw(TimeoutError("no answer in 30 s")))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # forked children must not inherit a busy thread pool
    try:
        return _fuzz_formats(cases, seed, log, formats)
    finally:  # the caller (pytest's own process) gets its state back: later tests train with its threads
        torch.set_num_threads(threads)
        signal.signal(signal.SIGALRM, alarm)


def _fuzz_formats(cases: int, seed: int, log, formats: tuple[str, ...]) -> dict[str, dict]:
    results = {}
    with tempfile.TemporaryDirectory() as folder:
        originals = seeds(Path(folder))
        for fmt, data in originals.items():
            if formats and fmt not in formats:
                continue
            rng = random.Random(f"{seed}-{fmt}")
            tally = {name: 0 for name in OUTCOMES.values()} | {"peak_mb": 0, "findings": [], "seconds": 0.0}
            start = time.perf_counter()
            for k in range(cases):
                how, copy = damaged(data, rng)
                path = Path(folder) / f"case{k}.{'keras' if fmt == 'keras' else fmt}"
                path.write_bytes(copy)
                code, peak, note = run_case(path)
                tally[OUTCOMES.get(code, "traceback")] += 1
                tally["peak_mb"] = max(tally["peak_mb"], peak)
                if code not in (0, 2):
                    tally["findings"].append(f"{fmt} case {k} ({how}): {note}")
                path.unlink()
            tally["seconds"] = time.perf_counter() - start
            results[fmt] = tally
            log(f"{fmt:6} {cases} cases: " + ", ".join(f"{tally[n]} {n}" for n in OUTCOMES.values())
                + f"; peak {tally['peak_mb']} MB; {tally['seconds']:.0f} s")
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=500, help="damaged files per format (default 500)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--formats", default="", help="comma-separated, of keras, h5, onnx, pt2 (default: all); "
                        "each format's cases are seeded on their own, so one format alone gives the same cases")
    args = parser.parse_args()
    results = fuzz(args.cases, args.seed, formats=tuple(f for f in args.formats.split(",") if f))
    findings = [f for r in results.values() for f in r["findings"]]
    print("\n".join(findings) or "no tracebacks, no hangs")
    sys.exit(1 if findings else 0)


if __name__ == "__main__":
    main()
