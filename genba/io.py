"""Shared file and error helpers: atomic writes, writability checks, JSON of numpy values, one-line errors.

Standard library only (numpy values are recognised by their `tolist`), so the CLI and every leaf module can use it.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

from genba.errors import GenbaError

# Longest file name most file systems take (ext4, xfs, btrfs, APFS: 255 bytes).
NAME_MAX = 255
# Longest path the kernel takes in one call, counting the final NUL (Linux: 4096 bytes).
PATH_MAX = 4096
TMP_SUFFIX = ".tmp"


def one_line(exc: BaseException | str, limit: int = 300) -> str:
    """The first non-empty line of an error's message, or its type's name when the message is empty. Never raises."""
    try:
        text = exc if isinstance(exc, str) else str(exc)
    except Exception:  # a broken __str__ must not hide the real error
        text = ""
    line = next((s.strip() for s in text.splitlines() if s.strip()), "")
    if not line:
        line = type(exc).__name__ if not isinstance(exc, str) else "(no message)"
    return line if len(line) <= limit else line[: limit - 3] + "..."


def json_default(value: Any) -> Any:
    """`json.dumps(..., default=json_default)`: numpy scalars and arrays as lists, paths as strings."""
    if hasattr(value, "tolist"):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON-serializable: {type(value).__name__}")


def dumps(value: Any, indent: int | None = 1) -> str:
    """JSON text (UTF-8 kept as is, numpy values as lists) ending in a newline."""
    return json.dumps(value, indent=indent, ensure_ascii=False, default=json_default) + "\n"


def tmp_path(path: Path) -> Path:
    """The temporary file an atomic write of `path` goes through: beside it (same file system, so the rename is
    atomic), hidden, and per process (two processes writing the same target never share one)."""
    return path.with_name(f".{path.name}.{os.getpid()}{TMP_SUFFIX}")


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """For writers that need a path (a memmap, a recording sink): yields a temporary path, renamed over `path`
    when the block ends normally and removed when it raises (Ctrl-C included)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = tmp_path(path)
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)


def atomic_write(path: str | Path, write: Callable[[IO[bytes]], Any] | bytes | str, *, fsync: bool = True) -> Path:
    """Write `path` so that a reader (or the next run after a kill) sees the old file or the new one, never half.

    `write` is the content (text is UTF-8 encoded) or a function that writes to the open binary file (np.savez,
    DataFrame.to_parquet). fsync: the content is on disk before the rename, so a power cut cannot leave a renamed
    empty file either.
    """
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        if callable(write):
            write(f)
        else:
            f.write(write.encode("utf-8") if isinstance(write, str) else write)
        if fsync:
            f.flush()
            os.fsync(f.fileno())
    return Path(path)


def remove_stale_tmp(folder: str | Path) -> None:
    """Delete what atomic writes killed mid-way left in `folder`. Only for a folder no other process writes to now
    (one under the caller's lock): a live writer's temporary file would go too."""
    folder = Path(folder)
    for path in folder.glob(f".*{TMP_SUFFIX}") if folder.is_dir() else []:
        with contextlib.suppress(OSError):
            path.unlink()


def write_json(path: str | Path, value: Any, indent: int | None = 1) -> Path:
    """Atomic JSON file; an OS refusal becomes a one-line GenbaError naming the path."""
    try:
        return atomic_write(path, dumps(value, indent))
    except OSError as e:
        raise GenbaError(f"cannot write {path}: {e.strerror or one_line(e)}") from None


def check_path(path: str | Path, what: str = "path") -> Path:
    """A path the OS can take: UTF-8 (no stray surrogates from undecodable bytes), no NUL, each name <= NAME_MAX
    bytes, the whole < PATH_MAX bytes. Raises a one-line GenbaError otherwise: checked before any work, so that a
    bad `out=` fails at once instead of deep inside a library that writes the file."""
    text = os.fspath(path)
    if "\x00" in text:
        raise GenbaError(f"{what}={text!r} contains a NUL character")
    try:
        size = len(text.encode("utf-8"))
    except UnicodeEncodeError:
        raise GenbaError(f"{what}={_shown(text)} is not valid UTF-8; use a name in UTF-8") from None
    for part in Path(text).parts:
        if len(part.encode("utf-8")) > NAME_MAX:
            raise GenbaError(f"{what}: the name {part[:40]}... is {len(part.encode())} bytes (at most {NAME_MAX})")
    if size >= PATH_MAX:
        raise GenbaError(f"{what}: the path {text[:40]}... is {size} bytes (at most {PATH_MAX - 1})")
    return Path(text)


def _shown(text: str) -> str:
    """A path that is not UTF-8, printable: the bytes the user typed (Python keeps an undecodable byte of argv as a
    lone surrogate, surrogateescape) with the offending ones as \\xNN."""
    try:
        raw = text.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:  # a surrogate that stands for no byte
        return text.encode("utf-8", "backslashreplace").decode("ascii", "backslashreplace")
    return raw.decode("utf-8", "backslashreplace")


def check_writable(path: str | Path, what: str = "path", *, folder: bool = False) -> Path:
    """Fail before any work when `path` (a file, or a folder when folder=True) could not be written."""
    path = check_path(path, what)
    parent = path if folder else path.parent
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        raise GenbaError(f"cannot write {what}={path}: {parent} is a file")
    if not folder and path.is_dir():
        raise GenbaError(f"cannot write {what}={path}: it is a directory")
    if folder and path.exists() and not path.is_dir():
        raise GenbaError(f"cannot write {what}={path}: it is a file, not a folder")
    if not os.access(parent, os.W_OK | os.X_OK) or (path.exists() and not os.access(path, os.W_OK)):
        raise GenbaError(f"cannot write {what}={path}: permission denied")
    return path
