"""Names -> local files: the cache, downloads users can trust, the offline rules. Knows URLs, not formats.

    name --catalog--> URL --download (progress, resume, size + checksum, atomic move)--> cached file

* The cache is ``$VITLAB_CACHE`` (default ``$XDG_CACHE_HOME/vitlab``, else ``~/.cache/vitlab``); an official
  file lives at ``<cache>/official/<its path in the bucket>``. A file there is used without any request,
  including one put there by hand.
* A download writes ``<file>.part`` (resumed with an HTTP range request after an interruption), checks the
  size and the checksum the server publishes (Google Cloud Storage: ``x-goog-hash: md5=<base64>``), and
  only then renames it into place; a mismatch deletes the part and names URL, expected and got.
* Server errors (5xx), dropped connections and truncated bodies are retried ``RETRIES`` times, resuming.
* ``VITLAB_OFFLINE=1``, or no network, ends in an error naming the URL and the path to put the file at.
* Processes that want the same file at once (torchrun) take a lock: one downloads, the others wait and
  find it in the cache.
* ``hf-hub:ORG/NAME[@REVISION]`` goes through ``huggingface_hub`` (its cache, ``HF_HUB_OFFLINE``,
  ``HF_ENDPOINT``); the weights file is checked once against the sha256 the hub published for it. ``VITLAB_OFFICIAL_URL`` replaces the official bucket's base URL (mirrors, tests).
"""
from __future__ import annotations

import base64
import contextlib
import hashlib
import http.client
import json
import logging
import os
import re
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

from ..errors import VitlabError
from ..models.pretrained import CONFIG_NAME
from ..utils.io import fsync_dir
from .catalog import OFFICIAL_URL, PACKAGE_DIR, Pretrained, get_pretrained, is_pretrained_name

log = logging.getLogger("vitlab.weights")

RETRIES = 3  # attempts after the first, for 5xx, dropped connections and truncated bodies
BACKOFF_S = 1.0  # wait before retry k: BACKOFF_S * 2**k
TIMEOUT_S = 60.0  # per socket operation
CHUNK = 1 << 20
HF_PREFIX = "hf-hub:"


class DownloadError(VitlabError, OSError):
    """A file could not be fetched or failed its check; the message names the URL and what to do."""


def cache_dir() -> Path:
    """Where downloaded weights live: $VITLAB_CACHE, else $XDG_CACHE_HOME/vitlab, else ~/.cache/vitlab."""
    if os.environ.get("VITLAB_CACHE"):
        return Path(os.environ["VITLAB_CACHE"]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base).expanduser() / "vitlab"


def offline() -> bool:
    return os.environ.get("VITLAB_OFFLINE", "").strip().lower() not in ("", "0", "false", "no")


def is_hub_name(name: str | os.PathLike) -> bool:
    """A catalog name or alias, or ``hf-hub:ORG/NAME``: what ``fetch`` resolves."""
    return isinstance(name, (str, os.PathLike)) and (os.fspath(name).startswith(HF_PREFIX) or is_pretrained_name(name))


def official_url(entry: Pretrained) -> str:
    base = os.environ.get("VITLAB_OFFICIAL_URL") or OFFICIAL_URL
    return base.rstrip("/") + "/" + urllib.request.quote(entry.file)


def local_path(entry: Pretrained) -> Path:
    """Where the entry's file is (or will be) on this machine."""
    if entry.source == "vitlab":
        return PACKAGE_DIR / entry.file
    if entry.source == "official":
        return cache_dir() / "official" / entry.file
    raise ValueError(f"{entry.name} is kept in huggingface_hub's cache, not vitlab's")


def shipped_path(name: str) -> str:
    """The package directory of weights shipped with vitlab (a run directory: its recipe, test result and
    model/), so commands that use a run's data and card see them; any other name or path unchanged."""
    if is_pretrained_name(name) and get_pretrained(os.fspath(name)).source == "vitlab":
        return str(local_path(get_pretrained(os.fspath(name))))
    return name


def fetch(name: str, progress: bool = True) -> Path:
    """The local file (or directory) of a catalog name, alias or ``hf-hub:ORG/NAME``, downloaded once."""
    if name.startswith(HF_PREFIX):
        return hf_hub_snapshot(name[len(HF_PREFIX):])
    entry = get_pretrained(name)
    if entry.source == "hf-hub":
        return hf_hub_snapshot(entry.hub_repo)
    path = local_path(entry)
    if entry.source == "vitlab":
        if not path.exists():
            raise DownloadError(f"{entry.name}: {path} is missing from this vitlab installation; reinstall vitlab")
        return path
    return download(official_url(entry), path, progress=progress)


def download(url: str, dest: str | os.PathLike, progress: bool = True) -> Path:
    """``dest``, downloaded from ``url`` unless it is already there (then no request is made)."""
    dest = Path(dest)
    if dest.is_file():
        return dest
    if offline():
        raise DownloadError(f"VITLAB_OFFLINE is set and {dest} is not in the cache. Download {url} on a machine "
                            f"with a network and put it at {dest} (or unset VITLAB_OFFLINE)")
    dest.parent.mkdir(parents=True, exist_ok=True)
    with _lock(dest.with_name(dest.name + ".lock")):
        if dest.is_file():  # another process finished it while this one waited
            return dest
        part = dest.with_name(dest.name + ".part")
        last: Exception | None = None
        for attempt in range(RETRIES + 1):
            if attempt:
                time.sleep(BACKOFF_S * 2 ** (attempt - 1))
                log.warning("retrying %s (attempt %d of %d) after: %s", url, attempt + 1, RETRIES + 1, last)
            try:
                _transfer(url, part, progress)
                break
            except urllib.error.HTTPError as e:
                if e.code < 500:
                    raise DownloadError(f"{url}: HTTP {e.code} {e.reason}") from None
                last = e
            except (urllib.error.URLError, http.client.HTTPException, ConnectionError, TimeoutError, _Truncated) as e:
                last = e
        else:
            raise DownloadError(f"could not download {url} ({RETRIES + 1} attempts; last: {_describe(last)}). "
                                f"Without a network, download it elsewhere and put it at {dest}; a partial "
                                f"download is kept at {part} and resumed next time") from None
        os.replace(part, dest)
        _meta(part).unlink(missing_ok=True)
        fsync_dir(dest.parent)
    return dest


class _Truncated(Exception):
    """The connection ended before the announced length."""


def _describe(e: Exception | None) -> str:
    if isinstance(e, urllib.error.HTTPError):
        return f"HTTP {e.code} {e.reason}"
    if isinstance(e, urllib.error.URLError):
        return f"cannot reach the server ({e.reason})"
    return f"{type(e).__name__}: {e}"


def _meta(part: Path) -> Path:
    return part.with_name(part.name + ".json")


def _transfer(url: str, part: Path, progress: bool) -> None:
    """One attempt: append to ``part`` from where it ends, then check the whole file. Raises to retry."""
    from tqdm import tqdm

    have = part.stat().st_size if part.exists() else 0
    meta = json.loads(_meta(part).read_text()) if have and _meta(part).is_file() else {}
    if meta.get("url") != url:
        have, meta = 0, {}
    req = urllib.request.Request(url, headers={"User-Agent": "vitlab", "Accept-Encoding": "identity"})
    if have:
        req.add_header("Range", f"bytes={have}-")
        if meta.get("etag"):
            req.add_header("If-Range", meta["etag"])  # the object changed: the server sends it whole (200)
    with urllib.request.urlopen(req, timeout=TIMEOUT_S) as r:
        if r.status == 206:
            total = int(r.headers["Content-Range"].rsplit("/", 1)[1])
        else:  # 200: from the start (a first attempt, or a server that ignored the range)
            have, total = 0, int(r.headers.get("Content-Length", -1))
            meta = {"url": url, "size": total, "etag": r.headers.get("ETag"), "md5": _gcs_md5(r.headers)}
            _meta(part).write_text(json.dumps(meta))
        with open(part, "ab" if have else "wb") as f, tqdm(
                total=total if total >= 0 else None, initial=have, unit="B", unit_scale=True, unit_divisor=1024,
                desc=Path(url).name[:40], disable=not progress, leave=False) as bar:
            while chunk := r.read(CHUNK):
                f.write(chunk)
                bar.update(len(chunk))
    got = part.stat().st_size
    if total >= 0 and got < total:
        raise _Truncated(f"{got} of {total} bytes received")
    _verify(url, part, meta.get("size", total), meta.get("md5"))


def _gcs_md5(headers) -> str | None:
    """The md5 Google Cloud Storage publishes (``x-goog-hash: crc32c=...,md5=<base64>``), hex, or None."""
    for value in headers.get_all("x-goog-hash") or []:
        for item in value.split(","):
            key, _, b64 = item.strip().partition("=")
            if key == "md5":
                return base64.b64decode(b64).hex()
    return None


def _verify(url: str, part: Path, size: int, md5: str | None) -> None:
    """Size and md5 of the finished file against what the server announced; a mismatch is deleted."""
    got_size = part.stat().st_size
    problem = None
    if size >= 0 and got_size != size:
        problem = f"size: expected {size} bytes, got {got_size}"
    elif md5 is not None:
        h = hashlib.md5()
        with open(part, "rb") as f:
            while block := f.read(CHUNK):
                h.update(block)
        if h.hexdigest() != md5:
            problem = f"md5: expected {md5}, got {h.hexdigest()}"
    if problem:
        part.unlink()
        _meta(part).unlink(missing_ok=True)
        raise DownloadError(f"downloaded {url} does not match what the server published ({problem}); the file "
                            "was deleted, not loaded. Try again; if it persists, the server's copy is damaged")
    if md5 is None:
        log.warning("%s: the server published no md5; only the size (%d bytes) was checked", url, got_size)


@contextlib.contextmanager
def _lock(path: Path) -> Iterator[None]:
    """An exclusive lock on ``path`` across processes (fcntl; where it is missing, no lock)."""
    try:
        import fcntl
    except ImportError:  # Windows: one process at a time is the user's affair
        yield
        return
    with open(path, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


# -- the Hugging Face hub ---------------------------------------------------------------------------------

HF_WEIGHTS = ("model.safetensors", "pytorch_model.bin")  # the first the repository has is fetched
HF_OPTIONAL = ("preprocessor_config.json",)


def hf_hub_snapshot(repo: str) -> Path:
    """A local directory holding a hub repository's config and weights (``ORG/NAME[@REVISION]``), through
    huggingface_hub and its cache: config.json, preprocessor_config.json when there is one, and
    model.safetensors (else pytorch_model.bin, read with torch's weights-only unpickler as any .bin)."""
    from ..errors import require

    hf = require("huggingface_hub", "hub", needed_by="hf-hub: names")
    from huggingface_hub import constants, errors

    repo_id, _, revision = repo.partition("@")
    missing = getattr(errors, "RemoteEntryNotFoundError", errors.EntryNotFoundError)  # on the server

    not_cached: list[str] = []  # files asked for offline (or unreachable) and not in the hub cache

    def get(filename: str) -> Path | None:
        """The cached file, or None when the repository lacks it or it cannot be fetched."""
        try:
            return Path(hf.hf_hub_download(repo_id, filename, revision=revision or None))
        except missing:
            return None
        except errors.LocalEntryNotFoundError:
            not_cached.append(filename)
            return None
        except errors.RepositoryNotFoundError:
            raise DownloadError(f"hf-hub:{repo}: no such repository on {constants.ENDPOINT}") from None

    def fail(what: str) -> DownloadError:
        if not_cached:
            return DownloadError(f"hf-hub:{repo}: {', '.join(not_cached)} not in the Hugging Face cache "
                                 f"({constants.HF_HUB_CACHE}) and not downloadable now (offline: HF_HUB_OFFLINE "
                                 "set, or no network); connect once, or pass a local path")
        return DownloadError(f"hf-hub:{repo} has {what}")

    config = get(CONFIG_NAME)
    if config is None:
        raise fail(f"no {CONFIG_NAME}")
    for name in HF_OPTIONAL:
        get(name)
    for name in HF_WEIGHTS:
        weights = get(name)
        if weights is not None:
            _check_lfs_sha256(weights, f"hf-hub:{repo}/{name}")
            return config.parent
    raise fail(f"none of {', '.join(HF_WEIGHTS)}")


def _check_lfs_sha256(path: Path, what: str) -> None:
    """huggingface_hub names an LFS file's blob by its sha256 (the hub's ETag) but checks only the size: hash
    the blob once (a marker in vitlab's cache remembers it), and delete it on a mismatch."""
    blob = path.resolve()
    if not re.fullmatch(r"[0-9a-f]{64}", blob.name):
        return  # not an LFS blob: no published sha256
    marker = cache_dir() / "hub-verified" / blob.parent.parent.name / blob.name  # models--ORG--NAME/<sha256>
    if marker.exists():
        return
    h = hashlib.sha256()
    with open(blob, "rb") as f:
        while block := f.read(CHUNK):
            h.update(block)
    if h.hexdigest() != blob.name:
        blob.unlink()
        path.unlink(missing_ok=True)
        raise DownloadError(f"{what} does not match the sha256 the hub published (expected {blob.name}, got "
                            f"{h.hexdigest()}); the file was deleted, not loaded")
    marker.parent.mkdir(parents=True, exist_ok=True)
    marker.touch()


def is_cached(entry: Pretrained) -> bool:
    """Whether ``entry`` needs no download (hub entries: whatever huggingface_hub's cache holds counts as no)."""
    return entry.source != "hf-hub" and local_path(entry).exists()


def describe_pretrained(pattern: str = "*") -> str:
    """`vitlab pretrained`: one row per catalog entry matching ``pattern``; aliases underneath."""
    from .catalog import catalog, list_pretrained

    entries = [e for e in catalog() if e.name in set(list_pretrained(pattern))]
    if not entries:
        raise ValueError(f"no pretrained weights match {pattern!r}; `vitlab pretrained` lists them all")
    wn, wa = max(34, *(len(e.name) for e in entries)), max(12, *(len(e.arch) for e in entries))
    head = (f"{'name':<{wn}} {'architecture':<{wa}} {'pretrained on (fine-tuned on)':<30} {'res':>4} {'classes':>7} "
            f"{'size':>9} {'top-1 (source)':<28} {'license':<11} here")
    rows = [head, "-" * len(head)]
    for e in entries:
        data = e.pretrain + (f" ({e.finetune})" if e.finetune else "")
        size = f"{e.size_mib:,.0f} MiB" if e.size_mib is not None else "unknown"
        top1 = f"{e.top1:.2f}% ({e.top1_source.split(' ')[0]})" if e.top1 is not None else "not published"
        here = "yes" if is_cached(e) else ("hub" if e.source == "hf-hub" else "no")
        rows.append(f"{e.name:<{wn}} {e.arch:<{wa}} {data:<30} {e.img_size:>4} {e.num_classes:>7} {size:>9} "
                    f"{top1:<28} {e.license.split(' ')[0]:<11} {here}")
        if e.aliases:
            rows.append(f"{'':<4}also: {', '.join(e.aliases)}")
    rows.append(f"\ncache: {cache_dir()} (VITLAB_CACHE); classes 0: features only (no head released, or the release "
                "zeroed it); the CLIP towers' 512 / 768: OpenAI's projection into the image-text embedding space; "
                "size: as published; top-1: ImageNet-1k for *_ft_in1k, at the entry's resolution.")
    return "\n".join(rows)
