"""Files derived from a data set so it is not read again (decoded images, folder and shard indexes): one
.npz each, written atomically, valid while the key saved in it matches the data it was made from."""
from __future__ import annotations

import sys
import zipfile
from pathlib import Path

import numpy as np

from ...utils.io import atomic_write


def write_cached(path: Path, arrays: dict[str, np.ndarray], key: str) -> None:
    def write(tmp: Path) -> None:
        with open(tmp, "wb") as f:  # a file object: np.savez would append '.npz' to a path
            np.savez(f, key=np.array(key), **arrays)

    atomic_write(path, write)


def read_cached(path: Path, key: str, what: str) -> dict[str, np.ndarray] | None:
    """The arrays saved in `path` with `key`, or None when there is no such file, it was made from other data,
    or it cannot be read (then with a note naming `what`: it is made again, never fatal)."""
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as z:
            if "key" not in z.files or str(z["key"]) != key:
                return None
            return {k: z[k] for k in z.files if k != "key"}
    except (OSError, ValueError, zipfile.BadZipFile) as e:
        print(f"note: ignoring unreadable {what} {path} ({e}); making it again", file=sys.stderr)
        return None
