"""Files written atomically and read with one clear error: JSON, safetensors, and the Ctrl-C guard.

Every file is written to a temporary name in the same folder and renamed into place, so a crash,
a full disk or Ctrl-C never leaves a half-written file where a good one was.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import signal
import stat
import tempfile
import threading
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, safe_open, save_file

from .errors import UserError


class WriteError(UserError):
    """A file could not be written (disk full, permission denied); the previous version is intact."""


def atomic_write(path: Path, write) -> None:
    """Call write(tmp_path), then rename tmp_path over path; on any failure path is left as it was.

    Any failure of the write (an OSError of a full disk or a missing permission, or a writer library's
    own error around one, as safetensors raises) becomes a WriteError naming the file and the reason.
    """
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        os.close(fd)
        write(Path(tmp))
        os.chmod(tmp, 0o644)  # mkstemp makes files private (0600); run files are meant to be shared
        os.replace(tmp, path)
    except (OSError, SafetensorError) as e:
        raise _cannot_write(path, e) from None
    finally:
        if tmp is not None and os.path.exists(tmp):
            os.unlink(tmp)


def remove_stale_temporaries(folder: Path) -> list[Path]:
    """Delete what a killed writer left in a folder and its sub-folders (never a finished file); return it.

    Temporary files (.NAME.XXXX.tmp) and staged folders (.NAME.XXXX.new) go; a folder replaced
    halfway (.NAME.XXXX.old with no NAME beside it) is put back. Call it only while holding the
    folder's lock: another writer's temporaries are in flight, not stale.
    """
    stale = [p for p in Path(folder).rglob(".*")  # one walk for the three kinds
             if (p.suffix == ".tmp" and p.is_file()) or (p.suffix in (".new", ".old") and p.is_dir())]
    for p in stale:
        if p.suffix == ".tmp" or p.is_symlink():  # a link is never put back: what it points to is not the run's
            p.unlink(missing_ok=True)  # gone already if it was inside a staged folder removed before it
        elif p.suffix == ".new":
            shutil.rmtree(p, ignore_errors=True)
        elif p.is_dir():
            name = p.parent / p.name[1:].rsplit(".", 2)[0]  # .NAME.XXXX.old -> NAME
            shutil.rmtree(p) if os.path.lexists(name) else os.replace(p, name)
    return stale


@contextlib.contextmanager
def replaced_folder(folder: Path, keep=lambda old: True):
    """Yield a new folder to write a multi-file result into; when the block ends, it replaces `folder` whole.

    A kill mid-write leaves `folder` as it was, never half old and half new. The new folder starts
    with hard links to the files of the old one when keep(old folder) says so (results this write
    does not redo: other layers' OIPs); every write goes through atomic_write, which replaces a
    file rather than writing into it, so a link never changes the old folder's files.
    """
    folder = Path(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    stage = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", suffix=".new", dir=folder.parent))
    try:
        # A folder that is a link (to anywhere) is replaced, never followed: its files are not the run's to keep.
        if folder.is_dir() and not folder.is_symlink() and keep(folder):
            shutil.copytree(folder, stage, symlinks=True, copy_function=os.link, dirs_exist_ok=True)
        yield stage
        os.chmod(stage, 0o755)  # mkdtemp makes folders private
        old = Path(str(stage)[: -len(".new")] + ".old")
        if os.path.lexists(folder):
            os.replace(folder, old)
        os.replace(stage, folder)  # between the two renames a kill leaves .old, which the next writer puts back
        old.unlink() if old.is_symlink() else shutil.rmtree(old, ignore_errors=True)
    except OSError as e:
        raise _cannot_write(folder, e) from None
    finally:
        shutil.rmtree(stage, ignore_errors=True)


def _cannot_write(path: Path, e: Exception) -> WriteError:
    # safetensors' error carries the OS's words after "I/O error: "; an OSError has them as strerror.
    reason = getattr(e, "strerror", None) or str(e).split("I/O error: ")[-1]
    return WriteError(f"cannot write {path}: {reason}; the previous version, if any, is intact")


class Refused(ValueError):
    """A file inside a folder was not read: it is a link, not a regular file, too large or not what it claims."""


PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def read_inside(root: Path, path: Path, max_bytes: int, signature: bytes = b"") -> bytes:
    """Return the bytes of a regular file inside `root`, reached without following any link; raise Refused why not.

    A run folder comes from anyone: a `*.png` there may be a symlink to a secret, /dev/zero or a
    FIFO. The path must resolve to itself below `root`, the file is opened without following a
    link and without blocking, and must be a regular file of at most `max_bytes` opening with `signature`.
    """
    try:
        relative = Path(path).relative_to(root)
    except ValueError:
        raise Refused("outside the folder") from None
    root = Path(root).resolve()  # the folder itself may be a link: the user named it
    if Path(os.path.realpath(root / relative)) != root / relative:
        raise Refused("a symbolic link, or inside a linked folder")
    try:
        fd = os.open(root / relative, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError as e:
        raise Refused(e.strerror or type(e).__name__) from None
    with os.fdopen(fd, "rb") as f:
        info = os.fstat(f.fileno())
        if not stat.S_ISREG(info.st_mode):
            raise Refused("not a regular file")
        if info.st_size > max_bytes:
            raise Refused(f"{info.st_size:,} bytes, over the {max_bytes:,} allowed")
        data = f.read(max_bytes + 1)
    if len(data) > max_bytes or not data.startswith(signature):
        raise Refused("over the size allowed" if len(data) > max_bytes else "not the file type its name says")
    return data


def file_sha256(path: Path) -> str:
    """Return the sha256 of a file's bytes, in hex."""
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


@contextlib.contextmanager
def interrupts_deferred():
    """Hold Ctrl-C (SIGINT) until the block is done, then raise KeyboardInterrupt: a checkpoint is never cut short.

    Outside the main thread signals cannot be caught, and a process started with SIGINT ignored
    (nohup, a background job) keeps ignoring it: in both cases the block runs as it is.
    """
    if threading.current_thread() is not threading.main_thread() or signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
        yield
        return
    caught = []
    previous = signal.signal(signal.SIGINT, lambda signum, frame: caught.append(signum))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
    if caught:
        raise KeyboardInterrupt


def write_json(path: Path, data) -> None:
    """Write data as indented JSON, atomically."""
    atomic_write(path, lambda tmp: tmp.write_text(json.dumps(data, indent=2) + "\n"))


def read_json(path: Path, schema=None):
    """Return the JSON a file holds, checked against a schema (schemas.py) if given; a bad file is a UserError.

    The data comes back as it was read (dicts and lists): the schema only checks it.
    """
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise UserError(f"{path} does not exist; is {path.parent} a convlens run folder?") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise UserError(f"{path} is not valid JSON ({e}); restore it or train again") from None
    except OSError as e:  # a symlink loop, a folder where a file should be, no permission
        raise UserError(f"cannot read {path}: {e.strerror}") from None
    return data if schema is None else checked(data, schema, path)


def checked(data, schema, source):
    """Return data after checking it against a schema (schemas.py); a mismatch is a UserError naming the place."""
    from pydantic import TypeAdapter, ValidationError

    try:
        TypeAdapter(schema).validate_python(data)
    except ValidationError as e:
        first = e.errors()[0]
        where = "".join(f"[{k}]" if isinstance(k, int) else f".{k}" for k in first["loc"]).lstrip(".")
        raise UserError(f"{source} is not what convlens wrote: at {where or 'the top level'}, "
                        f"{first['msg'].lower()}; restore it or run the command that writes it again") from None
    return data


def _tensors(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    # safetensors stores dense row-major tensors; channels_last weights must be made contiguous.
    return {k: v.detach().to("cpu").contiguous() for k, v in state.items()}


def save_tensors(path: Path, tensors: dict[str, torch.Tensor], metadata: dict[str, str] | None = None) -> None:
    """Write named tensors to a safetensors file, atomically."""
    atomic_write(path, lambda tmp: save_file(_tensors(tensors), str(tmp), metadata=metadata))


def load_tensors(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Return (tensors, metadata) of a safetensors file; missing, truncated or corrupt files are a UserError."""
    with _safetensors(path) as f:
        meta = f.metadata() or {}
    with _safetensors(path):
        return load_file(str(path)), meta


def tensor_shapes(path: Path) -> dict[str, tuple[int, ...]]:
    """Return the shape of every tensor in a safetensors file, read from its header alone."""
    with _safetensors(path) as f:
        return {key: tuple(f.get_slice(key).get_shape()) for key in f.keys()}


@contextlib.contextmanager
def _safetensors(path: Path):
    if not path.is_file():
        if path.is_symlink():
            raise UserError(f"cannot read {path}: it is a broken link or a link loop")
        raise UserError(f"{path} does not exist; train the run first")
    try:
        with safe_open(str(path), framework="pt") as f:
            yield f
    except (SafetensorError, OSError, ValueError) as e:
        raise UserError(f"{path} is corrupt or truncated ({e}); train again or restore it") from None


LOCK = ".lock"  # inside a run folder: who is writing it now
_held: dict[str, int] = {}  # lock paths this process holds, with their nesting depth


@contextlib.contextmanager
def folder_lock(folder: Path, what: str, create: bool = False):
    """Hold a run folder's write lock for the block; a second writer gets one line naming the holder's PID.

    An flock: the kernel drops it when its process dies, so a lock left by kill -9 is taken over at
    once, with nothing to clean. Re-entrant within a process (training, then its evaluation). A
    folder that does not exist is created only with `create`; else the block runs unlocked and
    reports the missing folder in its own words.
    """
    import fcntl

    folder = Path(folder)
    key = str(folder.resolve())
    if not create and not folder.is_dir():
        yield
        return
    if key in _held:
        _held[key] += 1
        try:
            yield
        finally:
            _held[key] -= 1
        return
    path = folder / LOCK
    while True:
        try:
            folder.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as e:
            raise WriteError(f"cannot write {folder}: {e.strerror or e}; choose another run folder") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 200, 0).decode(errors="replace").strip() or "another process"
            os.close(fd)
            raise UserError(f"{folder} is being written by {holder}; wait for it to finish, or write elsewhere") from None
        if path.exists() and os.fstat(fd).st_ino == os.stat(path).st_ino:
            break  # else the holder removed the file between our open and our lock: take the new one
        os.close(fd)
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"PID {os.getpid()} ({what})\n".encode(), 0)
        _held[key] = 1
        remove_stale_temporaries(folder)  # ours now: whatever a killed writer left is stale
        yield
    finally:
        _held.pop(key, None)
        path.unlink(missing_ok=True)  # removed while still held, so the folder holds only the run's files
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)
