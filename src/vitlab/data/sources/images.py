"""Reading image files with Pillow: what it opens, why a file is unusable, the one image reader (open_image /
open_upright / decode_image: one pixel limit, one EXIF orientation rule, one error wording) and any PIL mode
to a uint8 array."""
from __future__ import annotations

import os
import stat
from pathlib import Path
from contextlib import contextmanager
from typing import BinaryIO, Callable, Iterator, Sequence

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

PathLike = str | os.PathLike
_GRAY_MODES = ("1", "L", "LA", "La", "I", "F", "I;16", "I;16B", "I;16L", "I;16N")


class ImageTooLargeError(ValueError):
    """An image over a pixel limit, or one Pillow refuses as a decompression bomb."""


def image_extensions() -> tuple[str, ...]:
    """Every file extension the installed Pillow can open (.png, .jpg, .tif, .webp, .ppm, ...), lower case."""
    Image.init()
    return tuple(sorted({ext.lower() for ext, fmt in Image.registered_extensions().items() if fmt in Image.OPEN}))


def unusable_reason(path: PathLike) -> str | None:
    """Why `path` cannot be read as a file (dangling symlink, missing, not a file, empty), or None.

    Checked before decoding so a folder scan reports such files by name instead of stopping at the
    first ``[Errno 2]``; permission and format problems show up when the file is opened."""
    path = Path(path)
    if path.is_symlink() and not path.exists():
        return f"dangling symlink (points to {os.readlink(path)}, which does not exist)"
    try:
        st = path.stat()
    except PermissionError:
        return "permission denied (cannot stat the file)"
    except OSError as e:
        return f"cannot access the file ({e.strerror or e})"
    if not stat.S_ISREG(st.st_mode):
        return "not a regular file"
    if st.st_size == 0:
        return "the file is empty"
    return None


def load_image(path: PathLike) -> Image.Image:
    """Open and fully decode one image file (decode_image), so truncated files fail here with a message
    naming them; the file is closed on return (no handle leaks over large folders)."""
    path = Path(path)
    if not path.exists() and not path.is_symlink():
        raise FileNotFoundError(f"image file not found: {path}")
    why = unusable_reason(path)
    if why is not None:
        raise cannot_read(path, why)
    try:
        with open(path, "rb") as f:
            return decode_image(f, str(path))
    except PermissionError as e:
        raise cannot_read(path, f"permission denied ({e.strerror or e})") from e


# The one image reader: every caller (folders decoded into memory, the pipeline's workers, predict, serve)
# opens encoded data with open_image, turns it upright with open_upright and maps Pillow's errors with reading.
def cannot_read(name: object, why: str, error: type[ValueError] = ValueError) -> ValueError:
    """The error for an image that cannot be read, in the one wording every source and reader uses."""
    return error(f"cannot read image {name}: {why}")


UNREADABLE = (UnidentifiedImageError, OSError, SyntaxError, ValueError)  # what Pillow raises for bad image data


def unreadable(name: str, e: Exception) -> ValueError:
    """The error for image ``name`` that Pillow could not read (``e``, one of UNREADABLE), in words: Pillow's
    own text for data it cannot identify names a file object (``<_io.BytesIO object at 0x...>``)."""
    if isinstance(e, UnidentifiedImageError):
        return cannot_read(name, "not a recognised image format (PNG, JPEG, WebP, GIF, BMP, TIFF, ...)")
    return cannot_read(name, f"corrupt or truncated ({e})")


@contextmanager
def reading(name: str) -> Iterator[None]:
    """Pillow's errors inside the block as vitlab's: a decompression bomb as ImageTooLargeError, bad data as
    the ValueError of `unreadable`."""
    try:
        yield
    except ImageTooLargeError:
        raise
    except Image.DecompressionBombError as e:
        raise cannot_read(name, f"refused as a possible decompression bomb ({e})", ImageTooLargeError) from e
    except UNREADABLE as e:
        raise unreadable(name, e) from e


def open_image(fp: BinaryIO, name: str, max_pixels: int | None = None) -> Image.Image:
    """Open an image from a binary stream without decoding its pixels (Pillow decodes on first use).

    Images with more pixels than ``max_pixels`` (default ``PIL.Image.MAX_IMAGE_PIXELS``, Pillow's
    decompression-bomb limit, ~89 megapixels, read at each call so raising it takes effect) are refused from
    the header alone, so a small file that declares a huge canvas costs nothing: ImageTooLargeError."""
    limit = Image.MAX_IMAGE_PIXELS if max_pixels is None else max_pixels
    with reading(name):
        im = Image.open(fp)
        w, h = im.size
    if limit and w * h > limit:
        im.close()
        raise cannot_read(name, f"{w}x{h} = {w * h:,} pixels, refused as a possible decompression bomb; the limit is "
                                f"{limit:,} (PIL.Image.MAX_IMAGE_PIXELS for files: raise it if the file is trusted)",
                          ImageTooLargeError)
    return im


def open_upright(fp: BinaryIO, name: str, max_pixels: int | None = None) -> tuple[Image.Image, bool]:
    """open_image, then the one orientation rule: an EXIF orientation tag other than 1 is applied (the image
    comes back decoded and turned, flag False); an upright image comes back not decoded yet (flag True: only
    then may a JPEG be decoded at reduced size), so phone photos always come out upright."""
    im = open_image(fp, name, max_pixels)
    with reading(name):
        if im.getexif().get(0x0112, 1) == 1:
            return im, True
        return ImageOps.exif_transpose(im), False


def decode_image(fp: BinaryIO, name: str, max_pixels: int | None = None) -> Image.Image:
    """Fully decode an image from an open binary stream (a file, uploaded bytes in a BytesIO), upright, as a
    standalone image (animated GIFs give their first frame): open_upright, then decode.

    Unreadable or truncated data raise ValueError naming ``name``; too many pixels ImageTooLargeError."""
    im, upright = open_upright(fp, name, max_pixels)
    with reading(name):
        if not upright:
            return im
        with im:
            im.load()
            return im.copy()


def image_to_array(img: Image.Image, channels: int | None = None) -> np.ndarray:
    """Any PIL mode -> uint8 array (H, W) for grayscale or (H, W, 3) for colour (see to_l_or_rgb)."""
    return np.asarray(to_l_or_rgb(img, channels), dtype=np.uint8)


def guess_channels(open_sample: Callable[[int], PathLike | BinaryIO], n: int, samples: int = 64) -> int:
    """1 when the headers of up to `samples` of the `n` images, spread over the set, are all grayscale, else 3.

    `open_sample(i)` gives a path or a binary file for sample i; only headers are read, and unreadable
    samples are passed over (they are reported when the pipeline reads them)."""
    picks = np.unique(np.linspace(0, n - 1, num=min(samples, n)).round().astype(np.int64)) if n else []
    for i in picks:
        try:
            with Image.open(open_sample(int(i))) as im:
                if im.mode not in _GRAY_MODES:
                    return 3
        except (OSError, ValueError, SyntaxError, Image.DecompressionBombError):
            continue
    return 1


def to_l_or_rgb(img: Image.Image, channels: int | None = None) -> Image.Image:
    """Any PIL mode -> an "L" or "RGB" image.

    Alpha (RGBA, LA, P with transparency) is composited on white, which is how viewers show it; CMYK,
    YCbCr etc. are converted to RGB; 16/32-bit integer images (I;16, I: 16-bit PNG/TIFF) are scaled by
    1/257 (65535 -> 255); float images (F: float TIFF) in [0, 1] are scaled by 255, any other float range
    is stretched from its own min..max to 0..255 (NaN -> 0). `channels` 1 or 3 forces the output; None keeps
    grayscale as grayscale and everything else as RGB.
    """
    if channels not in (None, 1, 3):
        raise ValueError(f"channels must be None, 1 or 3, got {channels}")
    mode = img.mode
    if mode in ("I", "F") or mode.startswith("I;"):
        arr = np.asarray(img).astype(np.float64)
        if mode != "F":
            arr = arr / 257.0
        else:
            arr = np.nan_to_num(arr, nan=0.0, posinf=0.0, neginf=0.0)
            lo, hi = (float(arr.min()), float(arr.max())) if arr.size else (0.0, 1.0)
            arr = arr * 255.0 if lo >= 0.0 and hi <= 1.0 else (arr - lo) * (255.0 / max(hi - lo, 1e-12))
        img = Image.fromarray(np.clip(np.rint(arr), 0, 255).astype(np.uint8), "L")
    elif mode == "P" or mode == "PA":
        img = img.convert("RGBA")
    if img.mode in ("RGBA", "LA", "RGBa", "La"):
        rgba = img.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        img = Image.alpha_composite(white, rgba).convert("L" if img.mode in ("LA", "La") else "RGB")
    if img.mode == "1":
        img = img.convert("L")
    if img.mode not in ("L", "RGB"):
        img = img.convert("RGB")
    if channels == 1 and img.mode != "L":
        img = img.convert("L")
    elif channels == 3 and img.mode != "RGB":
        img = img.convert("RGB")
    return img


def find_images(inputs: Sequence[PathLike]) -> tuple[list[Path], list[tuple[str, str]]]:
    """Image files named by `inputs` (files, folders searched recursively, shell globs such as
    ``"photos/*.jpg"``), in order without repeats, and (input, reason) for what matched nothing usable.

    Inside folders only extensions Pillow opens are taken (hidden files skipped); a file named directly
    is taken whatever its extension, so its own read error names the problem."""
    import glob

    extensions = image_extensions()
    found: dict[Path, None] = {}
    problems: list[tuple[str, str]] = []
    for item in map(str, inputs):
        p = Path(item).expanduser()
        if p.is_dir():
            n = len(found)
            for dirpath, dirnames, filenames in os.walk(p):
                dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
                for fn in sorted(filenames):
                    if not fn.startswith(".") and Path(fn).suffix.lower() in extensions:
                        found.setdefault(Path(dirpath) / fn)
            if len(found) == n:
                problems.append((item, "folder without image files"))
        elif p.exists() or p.is_symlink():
            found.setdefault(p)
        elif glob.has_magic(item):
            matches = sorted(Path(m) for m in glob.glob(os.path.expanduser(item), recursive=True))
            files = [m for m in matches if not m.is_dir()]
            for m in files:
                found.setdefault(m)
            if not files:
                problems.append((item, "pattern matched no files"))
        else:
            problems.append((item, "not found (no such file or folder)"))
    return list(found), problems
