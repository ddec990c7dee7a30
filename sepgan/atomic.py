"""Files that appear only when complete: written under a hidden temporary name, then renamed.

A reader never sees half a file, a failed or interrupted write leaves no file behind, and an
existing file is replaced only when asked (checked again just before the rename). The result gets
the permissions any new file would get (0666 less the umask): the temporary file's private 0600
does not survive the rename.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

PART_SUFFIX = ".part"


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


class AtomicFile:
    """A temporary path (`.tmp`) beside `path`; `commit()` renames it into place, `discard()` removes it.

    As a context manager it commits when the block ends normally and discards on any error.
    """

    def __init__(self, path: str | Path, overwrite: bool = False):
        self.path, self.overwrite = Path(path), overwrite
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=f".{self.path.name}.", suffix=PART_SUFFIX)
        os.close(fd)
        self.tmp = Path(tmp)

    def commit(self) -> Path:
        if self.path.exists() and not self.overwrite:
            self.discard()
            raise FileExistsError(f"'{self.path}' appeared while it was being written; not overwritten "
                                  f"(--overwrite to replace)")
        os.chmod(self.tmp, 0o666 & ~_umask())
        os.replace(self.tmp, self.path)
        return self.path

    def discard(self) -> None:
        self.tmp.unlink(missing_ok=True)

    def __enter__(self) -> AtomicFile:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.commit()
        else:
            self.discard()
