"""Downloads: cached under ``$LLMCLF_HOME``, written atomically, checked against sha256.

With ``LLMCLF_OFFLINE=1``, or when a download fails, the error names the file, the URL and the
path where a local copy can be put.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from . import settings
from .errors import AssetError

CHUNK = 1 << 20


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


@contextmanager
def atomic_path(dest: Path) -> Iterator[Path]:
    """Yield a temporary path beside ``dest``; on success rename it over ``dest``.

    An exception (or a killed process) leaves ``dest`` as it was.
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".tmp", dir=dest.parent)
    except OSError as exc:  # name the user's path, not our temporary file
        raise _about(exc, dest) from None
    os.close(fd)
    tmp_path = Path(tmp)
    os.chmod(tmp_path, 0o666 & ~_umask())  # mkstemp makes it private; files get the usual mode
    try:
        yield tmp_path
        try:
            os.replace(tmp_path, dest)
        except OSError as exc:
            raise _about(exc, dest) from None
    finally:
        tmp_path.unlink(missing_ok=True)


def _about(exc: OSError, dest: Path) -> OSError:
    """The same error (same class, errno and reason) about ``dest`` instead of a temporary file."""
    return type(exc)(exc.errno, exc.strerror or str(exc), str(dest))


def _umask() -> int:
    mask = os.umask(0)  # reading the umask means setting it; put it straight back
    os.umask(mask)
    return mask


def atomic_write_bytes(dest: Path, data: bytes) -> None:
    with atomic_path(dest) as tmp:
        tmp.write_bytes(data)


def atomic_write_text(dest: Path, text: str) -> None:
    atomic_write_bytes(dest, text.encode("utf-8"))


def missing_asset_error(
    what: str, url: str, dest: Path, reason: str, alternative: str = ""
) -> AssetError:
    suffix = f", {alternative}" if alternative else ""
    return AssetError(f"cannot get {what} ({reason}); download {url} and put it at {dest}{suffix}")


def download(
    url: str, dest: Path, *, what: str, sha256: str | None = None, alternative: str = ""
) -> Path:
    """Download ``url`` to ``dest`` (atomically, with a progress bar) unless already there.

    An existing ``dest`` is trusted when its hash matches (or no hash is pinned). Raises
    `AssetError` offline, on a network failure, or on a hash mismatch; ``alternative`` ends the
    message when the caller offers another way (e.g. "or pass --weights PATH").
    """
    dest = Path(dest)
    if dest.is_file() and (sha256 is None or sha256_of(dest) == sha256):
        return dest
    if dest.is_file():
        raise AssetError(
            f"{what} at {dest} does not match its pinned sha256 {sha256}; delete it to download "
            f"it again from {url}"
        )
    if settings.offline():
        raise missing_asset_error(what, url, dest, "LLMCLF_OFFLINE is set", alternative)
    try:
        with atomic_path(dest) as tmp:
            _fetch(url, tmp, what)
            if sha256 is not None and (actual := sha256_of(tmp)) != sha256:
                raise AssetError(
                    f"{what} downloaded from {url} has sha256 {actual}, expected {sha256}"
                )
    except AssetError:
        raise
    except (OSError, ValueError) as exc:  # URLError is an OSError
        raise missing_asset_error(what, url, dest, f"download failed: {exc}", alternative) from exc
    return dest


def _fetch(url: str, dest: Path, what: str) -> None:
    from rich.markup import escape
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        Progress,
        TimeRemainingColumn,
        TransferSpeedColumn,
    )

    request = urllib.request.Request(url, headers={"User-Agent": "llmclf"})
    with urllib.request.urlopen(request, timeout=60) as response, open(dest, "wb") as out:
        total = int(response.headers.get("Content-Length") or 0) or None
        columns = (BarColumn(), DownloadColumn(), TransferSpeedColumn(), TimeRemainingColumn())
        with Progress("[bold]{task.description}", *columns, transient=True) as progress:
            task = progress.add_task(escape(what), total=total)  # a name may hold [brackets]
            for block in iter(lambda: response.read(CHUNK), b""):
                out.write(block)
                progress.advance(task, len(block))
