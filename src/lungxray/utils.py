"""Small shared helpers: atomic writes, seeding, JSON."""

from __future__ import annotations

import json
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


# Read once at import: flipping the umask on every write would race with other threads creating files
# (predict decodes in worker threads, the server answers requests in threads).
_FILE_MODE = 0o666 & ~_umask()


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    """Write to a temporary file beside `path`, fsync, then rename: readers never see half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        # mkstemp makes owner-only files; outputs are meant to be shared like any file open() creates.
        os.chmod(tmp, _FILE_MODE)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    return path


def atomic_write_text(path: str | Path, text: str) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"))


def write_json(path: str | Path, obj: Any) -> Path:
    return atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")


def read_json(path: str | Path) -> Any:
    return json.loads(Path(path).read_text(encoding="utf-8"))


def file_identity(path: str | Path) -> tuple[int, int]:
    """(device, inode): the same file under another path, a hard link or another letter case (macOS, Windows)
    has the same identity. Outputs are compared with inputs by it, so no output ever replaces an input."""
    st = os.stat(path)
    return st.st_dev, st.st_ino


def next_free_folder(base: str | Path) -> Path:
    """`base` if it does not exist or is empty, else the first of `base-2`, `base-3`, ... that is.

    Commands whose output folder has a default use this, so running one twice never overwrites (nor refuses):
    each run gets its own folder, printed at the end."""
    base = Path(base)
    candidate, n = base, 1
    while candidate.exists() and (not candidate.is_dir() or any(candidate.iterdir())):
        n += 1
        candidate = base.with_name(f"{base.name}-{n}")
    return candidate


def refuse_taken_folder(out: Path, overwrite: bool, writes: str) -> None:
    """Refuse an `out=` that is a file, or a non-empty folder without `overwrite` (`writes` says what the command
    puts there, for the message), before any work."""
    from .errors import ConfigError

    if out.exists() and not out.is_dir():
        raise ConfigError(f"{out} is a file; out= must be a folder ({writes} into it)")
    if out.exists() and any(out.iterdir()) and not overwrite:
        raise ConfigError(f"{out} exists; pass overwrite=True or choose another out=")


def check_output_folder(out: str | Path) -> Path:
    """Make sure `out` can hold outputs before any work starts: it is created, and a probe file is written and
    removed (the one test that also holds for root, read-only mounts and pseudo file systems).

    Raises:
        ConfigError: `out` is a file, or cannot be created or written; the message says which.
    """
    from .errors import ConfigError

    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ConfigError(f"{out} is a file, not a folder; choose another output folder")
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / f".lungxray-probe-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise ConfigError(f"{out}: cannot write there ({exc.strerror or exc}); choose another output folder") from None
    return out


@contextmanager
def output_lock(out: str | Path, what: str):
    """Hold an exclusive lock on output folder `out` while a command writes it; a second command that wants the
    same folder is refused at once with a clear message instead of silently mixing its rows with ours.

    The lock file sits beside the folder (`.NAME.lungxray-lock`), so the folder's own contents are untouched, and is
    removed when the command ends."""
    import fcntl

    from .errors import ConfigError

    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    lock = out.with_name(f".{out.name}.lungxray-lock")
    for _ in range(3):
        fh = open(lock, "a+")
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            fh.close()
            raise ConfigError(f"{out} is being written by another lungxray {what} right now; wait for it to finish, "
                              "or choose another output folder") from None
        try:  # the holder before us may have removed the file between our open and our lock: lock the new one
            if os.stat(lock).st_ino == os.fstat(fh.fileno()).st_ino:
                break
        except FileNotFoundError:
            pass
        fh.close()
    else:
        raise ConfigError(f"{out}: could not take its lock file {lock.name}; try again")
    try:
        yield out
    finally:
        lock.unlink(missing_ok=True)  # while still held: a later command creates and locks a fresh file
        fh.close()  # closing releases the lock
