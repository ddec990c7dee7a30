"""Files that appear only when complete: written under a hidden temporary name, then renamed.

A reader never sees half a file, a failed or interrupted write leaves no file behind, and an
existing file is replaced only when asked (checked again just before the rename). The result gets
the permissions any new file would get (0666 less the umask): the temporary file's private 0600
does not survive the rename.

A process killed outright (SIGKILL, a power cut) cannot remove its temporary file; the next
command writing to that folder does (`remove_stale_parts`). The temporary file stays locked
(`flock`) while it is written, and the lock goes with the process however it ends, so a file
another process is still writing is told apart from a stale one.
"""

from __future__ import annotations

import os
import re
import tempfile
from collections.abc import Callable
from pathlib import Path

try:
    import fcntl
except ImportError:  # Windows: a file open elsewhere cannot be removed there anyway
    fcntl = None

PART_SUFFIX = ".part"
# `.NAME.XXXXXXXX.part`, as `tempfile.mkstemp` names them below (8 characters of [a-z0-9_])
_PART_NAME = re.compile(r"^\..+\.[a-z0-9_]{8}" + re.escape(PART_SUFFIX) + "$")


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _lock(fd: int, blocking: bool = True) -> bool:
    """An exclusive lock on an open file; False if another process holds one (non-blocking)."""
    if fcntl is None:
        return True
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
    except BlockingIOError:
        return False
    return True


class AtomicFile:
    """A temporary path (`.tmp`) beside `path`; `commit()` renames it into place, `discard()` removes it.

    As a context manager it commits when the block ends normally and discards on any error.
    """

    def __init__(self, path: str | Path, overwrite: bool = False):
        self.path, self.overwrite = Path(path), overwrite
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=f".{self.path.name}.", suffix=PART_SUFFIX)
        try:
            _lock(fd)  # held until commit or discard: the mark of a file still being written
        except BaseException:  # Ctrl-C or SIGTERM can land here too: no orphaned temporary file
            os.close(fd)
            Path(tmp).unlink(missing_ok=True)
            raise
        self._fd: int | None = fd
        self.tmp = Path(tmp)

    def _release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def commit(self) -> Path:
        if self.path.exists() and not self.overwrite:
            self.discard()
            raise FileExistsError(f"'{self.path}' appeared while it was being written; not overwritten "
                                  f"(--overwrite to replace)")
        os.chmod(self.tmp, 0o666 & ~_umask())
        os.replace(self.tmp, self.path)
        self._release()
        return self.path

    def discard(self) -> None:
        self.tmp.unlink(missing_ok=True)
        self._release()

    def __enter__(self) -> AtomicFile:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.commit()
        else:
            self.discard()


def remove_stale_parts(folder: str | Path, report: Callable[[str], None] | None = None) -> list[Path]:
    """Remove the temporary files an interrupted `AtomicFile` left in `folder` (not in sub-folders).

    Only names of the form `.NAME.XXXXXXXX.part` that no live process holds locked; a user's own
    `take.wav.part` or hidden `.notes.part` is left alone. Returns the files removed, and tells
    `report` (e.g. `print`) what it removed, if anything.
    """
    folder = Path(folder)
    if not folder.is_dir():
        return []
    removed = []
    for path in sorted(folder.iterdir()):
        if not _PART_NAME.match(path.name) or not path.is_file() or path.is_symlink():
            continue
        try:
            fd = os.open(path, os.O_RDONLY)
        except OSError:
            continue
        try:
            if _lock(fd, blocking=False):
                path.unlink(missing_ok=True)
                removed.append(path)
        except OSError:
            pass
        finally:
            os.close(fd)
    if removed and report is not None:
        report(f"removed {len(removed)} partial file(s) an interrupted run left in '{folder}': "
               f"{', '.join(p.name for p in removed)}")
    return removed
