"""Downloads: cached under ``$LLMCLF_HOME``, written atomically, checked against sha256.

With ``LLMCLF_OFFLINE=1``, or when a download fails, the error names the file, the URL and the
path where a local copy can be put.

An `Asset` is one file of the cache, declared by whoever needs it (a dataset, a backbone, the
tokenizer): its place under ``$LLMCLF_HOME``, its upstream URL and its pinned hash. `fetch`
gets it from the right place: a Hugging Face URL from ``LLMCLF_HF_ENDPOINT`` / ``HF_ENDPOINT``
when set, any asset from ``LLMCLF_MIRROR`` (a copy of a populated ``$LLMCLF_HOME`` on a web
server) when set, otherwise from upstream. Requests to the Hugging Face hub (or its endpoint)
send ``$HF_TOKEN`` as a bearer token when it is set (gated models need it).
"""

from __future__ import annotations

import hashlib
import os
import stat
import tempfile
import urllib.error
import urllib.parse
import urllib.request
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from . import settings
from .errors import AssetError

CHUNK = 1 << 20
HF_HUB = "huggingface.co"


@dataclass(frozen=True)
class Asset:
    """One downloadable file, at a fixed place under ``$LLMCLF_HOME`` (and on a mirror).

    Args:
        relpath: where the file lives under ``$LLMCLF_HOME``, with ``/`` separators
            (``"sms_spam/SMSSpamCollection"``); a mirror serves it at the same path.
        url: the upstream URL.
        sha256: the pinned hash of the file at ``relpath``, if known.
        size: its size in bytes, if known (shown before it is downloaded).
        member: when the upstream URL is a zip archive, the name of the file inside it that
            becomes ``relpath`` (a mirror serves that file itself).
        what: how messages name it; defaults to ``relpath``.
        refused: what to do when the server refuses access (HTTP 401/403), e.g. for a gated
            model "accept the licence on <page> and set HF_TOKEN".
    """

    relpath: str
    url: str
    sha256: str | None = None
    size: int | None = None
    member: str | None = None
    what: str = ""
    refused: str = ""

    @property
    def title(self) -> str:
        """How messages name this asset."""
        return self.what or self.relpath

    def path(self, home: Path | None = None) -> Path:
        """Where the asset lives under ``home`` (default ``$LLMCLF_HOME``)."""
        return (settings.home() if home is None else Path(home).expanduser()) / self.relpath

    def source(self) -> str:
        """The URL `fetch` downloads from, once the mirror settings are applied."""
        parsed = urllib.parse.urlsplit(self.url)
        endpoint = settings.hf_endpoint()
        if parsed.netloc == HF_HUB and endpoint:
            return endpoint.rstrip("/") + urllib.parse.urlunsplit(("", "", *parsed[2:]))
        mirror = settings.mirror()
        if mirror:
            return mirror.rstrip("/") + "/" + urllib.parse.quote(self.relpath)
        return self.url


def fetch(asset: Asset, home: Path | None = None, *, alternative: str = "") -> Path:
    """The local copy of ``asset`` under ``home``, downloaded (see `download`) if absent.

    A present file is checked against the pinned hash. An upstream zip is downloaded, its
    ``member`` extracted and checked, and the zip deleted; a mirror serves the member itself.
    """
    dest = asset.path(home)
    url = asset.source()
    with _removing_new_folders(dest.parent):
        if asset.member is None or url != asset.url or dest.is_file():
            return download(
                url,
                dest,
                what=asset.title,
                sha256=asset.sha256,
                alternative=alternative,
                refused=asset.refused,
            )
        return _fetch_member(asset, dest, alternative)


@contextmanager
def _removing_new_folders(folder: Path) -> Iterator[None]:
    """On an error, remove the folders up to ``folder`` that the block created, if empty."""
    new = []
    while not folder.exists() and folder != folder.parent:
        new.append(folder)
        folder = folder.parent
    try:
        yield
    except BaseException:
        for created in new:  # deepest first
            try:
                created.rmdir()
            except OSError:  # not empty, or gone
                break
        raise


def _fetch_member(asset: Asset, dest: Path, alternative: str) -> Path:
    name = urllib.parse.unquote(asset.url.rsplit("/", 1)[-1]) or "archive.zip"
    archive = dest.parent / name
    if settings.offline() and not archive.is_file():
        raise missing_asset_error(
            asset.title,
            asset.url,
            archive,
            "LLMCLF_OFFLINE is set",
            f"or put the {asset.member} file inside it at {dest}",
        )
    download(asset.url, archive, what=asset.title, alternative=alternative)
    try:
        data = _zip_member(archive, str(asset.member))
        actual = hashlib.sha256(data).hexdigest()
        if asset.sha256 is not None and actual != asset.sha256:
            raise AssetError(
                f"{asset.member} in {asset.url} has sha256 {actual}, expected {asset.sha256}; "
                "the download was deleted, try again"
            )
        atomic_write_bytes(dest, data)
    finally:
        archive.unlink(missing_ok=True)
    return dest


def _zip_member(archive: Path, member: str) -> bytes:
    try:
        with zipfile.ZipFile(archive) as opened:
            names = [n for n in opened.namelist() if n.rsplit("/", 1)[-1] == member]
            if not names:
                raise AssetError(f"{archive} holds no {member}; try again")
            return opened.read(names[0])
    except zipfile.BadZipFile:
        raise AssetError(f"{archive} is not a valid zip file; try again") from None


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


@contextmanager
def atomic_path(dest: Path) -> Iterator[Path]:
    """Yield a temporary path beside ``dest``; on success rename it over ``dest``.

    An exception (or a killed process) leaves ``dest`` as it was. A symlink is followed: the
    file it points to is replaced and the link kept. An existing ``dest`` that is neither a
    regular file nor a folder (a FIFO, a device such as ``/dev/stdout``) cannot be replaced:
    ``dest`` itself is yielded, to be written in place.
    """
    dest = Path(dest)
    if _is_special(dest):
        yield dest
        return
    if dest.is_symlink():  # replace the link's target, not the link
        dest = Path(os.path.realpath(dest))
    dest.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".tmp", dir=dest.parent)
    except OSError as exc:  # name the user's path, and why it cannot be replaced
        reason = exc.strerror or type(exc).__name__
        raise _about(
            exc, dest, f"cannot create a temporary file in {dest.parent} to replace it ({reason})"
        ) from None
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        # mkstemp makes the file private, and a writer may re-create it (safetensors does):
        # set the usual mode on whatever is there now, just before it takes dest's place
        os.chmod(tmp_path, 0o666 & ~_umask())
        try:
            os.replace(tmp_path, dest)
        except OSError as exc:
            raise _about(exc, dest) from None
    finally:
        tmp_path.unlink(missing_ok=True)


def _is_special(path: Path) -> bool:
    """Whether ``path`` (or what its link points to) exists and is no regular file or folder."""
    try:
        mode = os.stat(path).st_mode
    except OSError:  # missing, a dangling link, or unreadable: the atomic route reports it
        return False
    return not (stat.S_ISREG(mode) or stat.S_ISDIR(mode))


def _about(exc: OSError, dest: Path, reason: str = "") -> OSError:
    """The same error (same class and errno) about ``dest`` instead of a temporary file."""
    return type(exc)(exc.errno, reason or exc.strerror or str(exc), str(dest))


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
    url: str,
    dest: Path,
    *,
    what: str,
    sha256: str | None = None,
    alternative: str = "",
    refused: str = "",
) -> Path:
    """Download ``url`` to ``dest`` (atomically, with a progress bar) unless already there.

    An existing ``dest`` is trusted when its hash matches (or no hash is pinned). Raises
    `AssetError` offline, on a network failure, or on a hash mismatch; ``alternative`` ends the
    message when the caller offers another way (e.g. "or pass --weights PATH"). When the server
    refuses access (HTTP 401/403) the message says ``refused`` (how to get access), or to set
    ``HF_TOKEN``.
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
                    f"{what} downloaded from {url} has sha256 {actual}, expected {sha256}; "
                    "nothing was saved"
                )
    except AssetError:
        raise
    except urllib.error.HTTPError as exc:
        if exc.code not in (401, 403):
            raise missing_asset_error(
                what, url, dest, f"download failed: {exc}", alternative
            ) from exc
        fix = refused or "set HF_TOKEN to a token that may read it"
        state = "with the HF_TOKEN sent" if _hf_token() else "HF_TOKEN is not set"
        raise AssetError(
            f"cannot get {what}: {url} refused access (HTTP {exc.code}, {state}); {fix}"
        ) from exc
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

    headers = {"User-Agent": "llmclf"}
    token = _hf_token()
    if token and _is_hub(url):
        headers["Authorization"] = f"Bearer {token}"
    request = urllib.request.Request(url, headers=headers)
    with urllib.request.urlopen(request, timeout=60) as response, open(dest, "wb") as out:
        total = int(response.headers.get("Content-Length") or 0) or None
        columns = (BarColumn(), DownloadColumn(), TransferSpeedColumn(), TimeRemainingColumn())
        with Progress("[bold]{task.description}", *columns, transient=True) as progress:
            task = progress.add_task(escape(what), total=total)  # a name may hold [brackets]
            for block in iter(lambda: response.read(CHUNK), b""):
                out.write(block)
                progress.advance(task, len(block))


def _hf_token() -> str:
    return os.environ.get("HF_TOKEN", "").strip()


def _is_hub(url: str) -> bool:
    """Whether ``url`` is on the Hugging Face hub or the endpoint that replaces it."""
    endpoint = settings.hf_endpoint()
    return urllib.parse.urlsplit(url).netloc == HF_HUB or bool(
        endpoint and url.startswith(endpoint.rstrip("/") + "/")
    )
