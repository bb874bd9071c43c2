"""Atomic file writes and safe checkpoint reads.

A report or checkpoint is either the old file or the complete new one, never a
half-written file: write to a temporary name in the same folder, then rename.
"""
from __future__ import annotations

import json
import os
import pickle
import re
import tempfile
import threading
from pathlib import Path
from typing import Any, Callable, Optional

import torch
from lightning_fabric.plugins.io.torch_io import TorchCheckpointIO

from framework.errors import UserError


_umask_lock = threading.Lock()


def _current_umask() -> int:
    """The process umask, read without changing it where the OS allows (Linux: /proc/self/status)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    with _umask_lock:  # elsewhere: the usual read-and-restore
        umask = os.umask(0o022)
        os.umask(umask)
    return umask


def absolute(path: Optional[str | os.PathLike]) -> Optional[str]:
    """The absolute form of a path for a report (None stays None): a report is read from anywhere."""
    return None if path is None else str(Path(path).expanduser().resolve())


def atomic_write(path: str | os.PathLike, write: Callable[[Any], None], mode: str = "wb") -> Path:
    """Call ``write(fileobj)`` on a temporary file beside ``path``, then rename it into place.

    The file gets the permissions a plain ``open(path, "w")`` would give it (0666 less the umask),
    not the 0600 of ``tempfile.mkstemp``.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, mode) as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_current_umask())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def write_json(path: str | os.PathLike, data: Any) -> Path:
    return atomic_write(path, lambda f: json.dump(data, f, indent=2, sort_keys=False), mode="w")


def write_text(path: str | os.PathLike, text: str) -> Path:
    return atomic_write(path, lambda f: f.write(text), mode="w")


def save_torch(path: str | os.PathLike, obj: Any) -> Path:
    return atomic_write(path, lambda f: torch.save(obj, f))


def _folder_hint(folder: Path) -> str:
    """``; did you mean X?`` for a checkpoint inside ``folder``, or ''."""
    candidates = [folder / "checkpoints" / "last.ckpt", folder / "last.ckpt"]
    try:
        candidates += sorted(folder.glob("*.ckpt")) + sorted((folder / "checkpoints").glob("*.ckpt"))
    except OSError:
        pass
    for c in candidates:
        if c.is_file():
            return f"; did you mean {c}?"
    return ""


def _short(text: str, limit: int = 120) -> str:
    """The first sentence of the first non-empty line of ``text``, at most ``limit`` characters."""
    line = next((ln.strip() for ln in text.splitlines() if ln.strip()), "")
    line = re.split(r"(?<=[^.])\.(\s|$)", line, maxsplit=1)[0].strip()
    return line if len(line) <= limit else line[:limit - 3] + "..."


def _reason(e: BaseException) -> str:
    """A short cause for a failed load, never torch's advice about ``weights_only``."""
    if isinstance(e, EOFError):
        return "unexpected end of file"
    text = str(e)
    if "weights_only" in text and e.__context__ is not None:  # torch wraps the unpickler's own error
        text = str(e.__context__)
    if "weights_only" in text or "WeightsUnpickler" in text:
        text = ""
    text = _short(text)
    if isinstance(e, LookupError) and text:  # a bare "101" says nothing without its type
        text = f"{type(e).__name__} {text}"
    return text or type(e).__name__


def _unsafe_message(path: Path, e: BaseException) -> str | None:
    """The message for a well-formed pickle holding objects weights_only=True refuses, or None (then
    the file is corrupt, not unsafe): torch names the refused global when it parsed a checkpoint;
    a plain pickle (protocol marker first) it cannot even walk."""
    m = re.search(r"Unsupported global: GLOBAL (\S+)", f"{e}\n{e.__context__ or ''}")
    if m is not None:
        what = f"Python objects that cannot be loaded safely (such as {m.group(1)})"
    else:
        with open(path, "rb") as f:
            if f.read(1) != b"\x80":  # pickle's PROTO opcode
                return None
        what = "a plain pickle, not a PyTorch checkpoint, whose objects cannot be loaded safely"
    return (f"checkpoint {path} could not be read safely (weights_only=True): it holds {what}; "
            f"use a checkpoint written by this framework")


def load_checkpoint(path: str | os.PathLike, map_location: Any = "cpu") -> dict:
    """Read a checkpoint with ``weights_only=True``; a missing or unreadable file is one clear error."""
    path = Path(path)
    if path.is_dir():
        raise UserError(f"checkpoint {path} is a folder, not a file{_folder_hint(path)}")
    if not path.exists():
        raise UserError(f"checkpoint not found: {path}")
    if not path.is_file():
        raise UserError(f"checkpoint {path} is not a regular file")
    try:
        size = path.stat().st_size
    except OSError as e:
        raise UserError(f"checkpoint {path} could not be read: {e.strerror or e}") from None
    if size == 0:
        raise UserError(f"checkpoint {path} is empty (0 bytes): the run that wrote it was probably "
                        f"interrupted; use another checkpoint")
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except OSError as e:
        raise UserError(f"checkpoint {path} could not be read: {e.strerror or _reason(e)}") from None
    except Exception as e:
        unsafe = _unsafe_message(path, e) if isinstance(e, pickle.UnpicklingError) else None
        if unsafe is not None:
            raise UserError(unsafe) from None
        raise UserError(f"checkpoint {path} is not a readable PyTorch checkpoint (corrupt or truncated?): "
                        f"{_reason(e)}") from None
    if not isinstance(ckpt, dict):
        raise UserError(f"checkpoint {path} holds a {type(ckpt).__name__}, expected a dict")
    return ckpt


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning's checkpoint writer, but through a temporary file and a rename."""

    def save_checkpoint(self, checkpoint: dict, path, storage_options=None) -> None:
        if storage_options is not None:
            raise TypeError("AtomicCheckpointIO takes no storage_options")
        save_torch(path, checkpoint)

    def load_checkpoint(self, path, map_location=None, weights_only=None) -> dict:
        return load_checkpoint(path, map_location=map_location or "cpu")
