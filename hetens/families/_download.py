"""First downloads of hub weights: atomic, checked, and with one clear error.

Several families' own downloaders write straight into the cache file
(MatterSim's ``download_file`` keeps a truncated file that its loader then
trusts), or into the package's install folder (SevenNet). For the families
whose weights are one file at a known URL, hetens fetches the file itself,
into the family's own cache where the family's loader looks for it, and then
lets the family's loader read it from there:

- the file is written under a temporary name and renamed into place only when
  the whole body arrived (the ``Content-Length`` the server announced, and the
  SHA-256 where the family publishes one);
- a download that fails (HTTP error, connection lost, short body) leaves
  nothing in the cache and raises :class:`~hetens.errors.WeightsUnavailableError`
  naming the model, the URL and what to do;
- a file that arrived whole but does not load (:func:`fresh_download`) is
  removed again, so a later run does not trust it.

``HETENS_DOWNLOAD_MIRROR`` (a base URL) fetches ``https://HOST/PATH`` from
``MIRROR/HOST/PATH`` instead: a local mirror laid out by host (the tests serve
one on 127.0.0.1). ``HETENS_OFFLINE`` or ``HF_HUB_OFFLINE`` set: no attempt,
the error at once.

The Hugging Face families (fairchem, matgl, pet) download with huggingface_hub,
which is atomic itself (a unique ``.incomplete`` file renamed into ``blobs/``
only when the announced size arrived, removed otherwise). Around their loaders
:func:`hub_download` adds what it lacks: one :class:`WeightsUnavailableError`
line for a failed download, and a repository cache folder put back as it was
when the download or the load fails (so a file that arrived whole but does not
load is not trusted by the next run). :func:`require_hub` checks the endpoint
huggingface_hub really uses (``HF_ENDPOINT``, a mirror) before trying.

orb-models downloads with ``cached_path`` (atomic too: a temporary file renamed
into ``~/.cache/cached_path`` when the body ended). hetens hands orb's loader
the URL under ``HETENS_DOWNLOAD_MIRROR`` when it is set (:func:`source_url`)
and wraps the load in :func:`cached_path_download`: one error line, and a file
that arrived but does not load is removed.
"""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import os
import shutil
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path

from hetens.errors import WeightsUnavailableError
from hetens.families._common import hub_reachable, require_download

__all__ = ["MIRROR_VARIABLE", "source_url", "fetch", "fresh_download", "hub_endpoint", "require_hub",
           "hub_download", "cached_path_download"]

#: Environment variable holding a mirror's base URL (files under ``MIRROR/HOST/PATH``).
MIRROR_VARIABLE = "HETENS_DOWNLOAD_MIRROR"
_OFFLINE_VARIABLES = ("HETENS_OFFLINE", "HF_HUB_OFFLINE")
_CHUNK = 1 << 20


def source_url(url: str) -> str:
    """Where ``url`` is fetched from: itself, or its place under :data:`MIRROR_VARIABLE`."""
    mirror = os.environ.get(MIRROR_VARIABLE, "").strip()
    if not mirror:
        return url
    parsed = urllib.parse.urlsplit(url)
    return f"{mirror.rstrip('/')}/{parsed.netloc}{parsed.path}" + (f"?{parsed.query}" if parsed.query else "")


class _Incomplete(Exception):
    """The body that arrived is not the file."""


def fetch(url: str, destination: str | os.PathLike, *, spec: str, how: str,
          sha256: str | None = None, timeout: float = 60.0) -> Path:
    """``destination``, downloading ``url`` there first when it is not a file yet.

    Args:
        url: the file's published URL (the family's own table).
        destination: the path in the family's cache where its loader looks.
        spec: the member spec, for the message (``mattersim:MatterSim-v1.0.0-1M``).
        how: what to do instead, one sentence (load once online, give a local file).
        sha256: the published checksum, when the family has one.
        timeout: seconds without progress before giving up.

    Raises:
        WeightsUnavailableError: offline, or the download failed; nothing is left behind.
    """
    destination = Path(destination)
    if destination.is_file():
        return destination
    family = spec.split(":", 1)[0]
    advice = f"{how} Or give a local file: {family}:/path/to/weights."
    source = source_url(url)
    via = f" (via {source})" if source != url else ""
    host = urllib.parse.urlsplit(url).hostname or ""
    if source == url and not hub_reachable(host):  # fail at once offline, not after a timeout
        raise WeightsUnavailableError(
            f"the weights of {spec} are not on this machine ({destination}) and {host} cannot be "
            f"reached (or {' / '.join(_OFFLINE_VARIABLES)} is set): {url}. {advice}")
    destination.parent.mkdir(parents=True, exist_ok=True)
    partial = destination.with_name(f".{destination.name}.hetens-partial-{os.getpid()}")
    try:
        digest = hashlib.sha256()
        received = 0
        with urllib.request.urlopen(source, timeout=timeout) as response, open(partial, "wb") as out:
            announced = response.headers.get("Content-Length")
            while chunk := response.read(_CHUNK):
                out.write(chunk)
                digest.update(chunk)
                received += len(chunk)
        if announced is not None and received != int(announced):
            raise _Incomplete(f"the transfer stopped after {received} of {announced} bytes")
        if received == 0:
            raise _Incomplete("the server sent an empty file")
        if sha256 and digest.hexdigest() != sha256.lower():
            raise _Incomplete(f"its SHA-256 is {digest.hexdigest()}, not the published {sha256}")
        os.replace(partial, destination)
    except urllib.error.HTTPError as exc:
        exc.close()
        _discard(partial)
        raise WeightsUnavailableError(
            f"could not download the weights of {spec} from {url}{via}: HTTP {exc.code} {exc.reason}; "
            f"nothing was kept. {advice}") from None
    except (urllib.error.URLError, http.client.HTTPException, OSError, _Incomplete) as exc:
        _discard(partial)
        reason = getattr(exc, "reason", None) or exc
        if isinstance(exc, http.client.IncompleteRead):
            reason = f"the connection closed after {len(exc.partial)} more bytes, {exc.expected} missing"
        raise WeightsUnavailableError(
            f"could not download the weights of {spec} from {url}{via}: {reason}; nothing was kept. "
            f"{advice}") from None
    return destination


@contextlib.contextmanager
def fresh_download(url: str, destination: str | os.PathLike, *, spec: str, how: str,
                   sha256: str | None = None) -> Iterator[Path]:
    """:func:`fetch`, then the block loads the file; a file this call downloaded that does not
    load is removed and reported as :class:`WeightsUnavailableError` (a cached file that does
    not load is the loader's error, left as it is)."""
    destination = Path(destination)
    existed = destination.is_file()
    path = fetch(url, destination, spec=spec, how=how, sha256=sha256)
    try:
        yield path
    except Exception as exc:
        if existed:
            raise
        _discard(destination)
        raise WeightsUnavailableError(
            f"the weights of {spec} downloaded from {url} do not load ({type(exc).__name__}: {exc}); "
            f"the file was removed from {destination.parent}. {how}") from exc


def _discard(path: Path) -> None:
    with contextlib.suppress(OSError):
        path.unlink()


# ------------------------------------------------------------------ Hugging Face hub downloads


def hub_endpoint() -> str:
    """The hub URL huggingface_hub downloads from: ``HF_ENDPOINT`` as huggingface_hub read it at
    import (``huggingface_hub.constants.ENDPOINT``), ``https://huggingface.co`` by default."""
    from huggingface_hub import constants

    return constants.ENDPOINT


def require_hub(spec: str, how: str) -> None:
    """:func:`~hetens.families._common.require_download` for the hub endpoint huggingface_hub uses
    (a mirror set with ``HF_ENDPOINT`` is checked, not huggingface.co)."""
    parts = urllib.parse.urlsplit(hub_endpoint())
    require_download(spec, parts.hostname or "huggingface.co", how,
                     port=parts.port or (80 if parts.scheme == "http" else 443))


@contextlib.contextmanager
def hub_download(spec: str, url: str, how: str, *, cache_dir: str | os.PathLike, repo_id: str) -> Iterator[None]:
    """Run a family's download-and-load from the Hugging Face hub in the block; if it fails,
    ``repo_id``'s folder in ``cache_dir`` is put back as it was and the error is one line.

    Args:
        spec: the member spec, for the message (``fairchem:uma-s-1p1``).
        url: where the weights are (the file's ``resolve`` URL, or the repository's).
        how: what to do instead, one sentence.
        cache_dir: the huggingface_hub cache the family's loader writes to.
        repo_id: the repository (``facebook/UMA``).

    Raises:
        WeightsUnavailableError: the download failed (HTTP error, connection lost, short file,
            offline), or files it brought do not load; whatever the block added to the
            repository's cache folder (snapshot links, blobs, refs, ``.no_exist`` markers) is
            removed again, the whole folder when it was new (a ref it changed stays).
        Exception: the block's own error, unchanged, when it fails without downloading
            anything (a cached file that does not load, an unknown name).
    """
    folder = Path(cache_dir) / f"models--{repo_id.replace('/', '--')}"
    existed = folder.exists()
    before = set(folder.rglob("*")) if existed else set()
    try:
        yield
    except Exception as exc:
        added = (set(folder.rglob("*")) - before) if folder.exists() else set()
        if not existed:
            shutil.rmtree(folder, ignore_errors=True)
        else:
            for path in sorted(added, key=lambda p: len(p.parts), reverse=True):
                with contextlib.suppress(OSError):
                    path.rmdir() if path.is_dir() and not path.is_symlink() else path.unlink()
        failure = _hub_failure(exc)
        family = spec.split(":", 1)[0]
        if failure is not None:
            reason, failed_url = failure
            raise WeightsUnavailableError(
                f"could not download the weights of {spec} from {failed_url or url}: {reason}; nothing was kept. "
                f"{how} Or give a local file: {family}:/path/to/weights.") from exc
        if not added:
            raise
        first = (str(exc).strip().splitlines() or [""])[0]
        raise WeightsUnavailableError(
            f"the weights of {spec} downloaded from {url} do not load ({type(exc).__name__}: {first}); "
            f"they were removed from {folder}. {how}") from exc


#: What a hub answer's ``X-Error-Code`` means for the user.
_HUB_ERROR_CODES = {
    "EntryNotFound": "the file is not in the repository",
    "RepoNotFound": "no such repository, or it is private or gated and you are not logged in (`hf auth login`)",
    "GatedRepo": "the repository is gated: accept its license on its page and log in (`hf auth login`)",
    "RevisionNotFound": "the repository has no such revision",
}


def _hub_failure(exc: BaseException) -> tuple[str, str | None] | None:
    """(why, the URL that failed or ``None``) when ``exc`` or an exception it came from is a failed
    download (huggingface_hub's HTTP errors, httpx's transport errors, the size check); else ``None``."""
    import httpx
    from huggingface_hub import errors

    seen, pending, fallback = set(), [exc], None
    while pending:
        current = pending.pop(0)
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        response = getattr(current, "response", None)
        if isinstance(current, errors.HfHubHTTPError) and response is not None:
            code = response.headers.get("X-Error-Code")
            why = _HUB_ERROR_CODES.get(code, response.reason_phrase or "")
            return f"HTTP {response.status_code} ({why})" if why else f"HTTP {response.status_code}", str(response.url)
        if isinstance(current, errors.OfflineModeIsEnabled):
            return "HF_HUB_OFFLINE is set", None
        if isinstance(current, httpx.TransportError):
            first, earlier = current, current.__context__  # huggingface_hub retries a lost
            for _ in range(50):  # transfer inside its handler: the first loss says most
                if earlier is None:
                    break
                if isinstance(earlier, httpx.TransportError):
                    first = earlier
                earlier = earlier.__context__
            retried = "" if first is current else f"; retried, then {type(current).__name__}: {current}"
            return f"the connection failed ({type(first).__name__}: {first}{retried})", None
        if isinstance(current, OSError) and "Consistency check failed" in str(current):
            return f"only part of the file arrived ({str(current).splitlines()[0]})", None
        if fallback is None and isinstance(current, (errors.LocalEntryNotFoundError, errors.FileMetadataError)):
            fallback = ((str(current).strip().splitlines() or [type(current).__name__])[0], None)
        pending += [current.__cause__, current.__context__]
    return fallback


# ------------------------------------------------------------------ cached_path downloads (orb)


@contextlib.contextmanager
def cached_path_download(spec: str, url: str, source: str, how: str) -> Iterator[None]:
    """Run a loader that downloads ``source`` with ``cached_path`` (orb-models) in the block; if it
    fails, what the block added to cached_path's cache for ``source`` is removed (the file, its
    ``.json`` metadata and ``.lock``) and the error is one line.

    Args:
        spec: the member spec, for the message (``orb:orb-v3-conservative-20-omat``).
        url: the weights' published URL.
        source: where they are fetched from (``url``, or its place under the mirror).
        how: what to do instead, one sentence.

    Raises:
        WeightsUnavailableError: the download failed, or the file it brought does not load.
        Exception: the block's own error, unchanged, when nothing was downloaded.
    """
    from cached_path import get_cache_dir, resource_to_filename

    folder = Path(get_cache_dir())
    pattern = resource_to_filename(source) + "*"
    before = set(folder.glob(pattern))
    try:
        yield
    except Exception as exc:
        added = set(folder.glob(pattern)) - before
        for path in added:
            shutil.rmtree(path, ignore_errors=True) if path.is_dir() else _discard(path)
        via = f" (via {source})" if source != url else ""
        advice = f"{how} Or give a local file: {spec.split(':', 1)[0]}:/path/to/weights."
        reason = _requests_failure(exc, source)
        if reason is not None:
            raise WeightsUnavailableError(
                f"could not download the weights of {spec} from {url}{via}: {reason}; nothing was kept. "
                f"{advice}") from exc
        if not any(p.suffix not in (".json", ".lock") for p in added):
            raise
        first = (str(exc).strip().splitlines() or [""])[0]
        raise WeightsUnavailableError(
            f"the weights of {spec} downloaded from {url}{via} do not load ({type(exc).__name__}: {first}); "
            f"the file was removed from {folder}. {how}") from exc


def _requests_failure(exc: BaseException, source: str) -> str | None:
    """Why a ``cached_path`` download over HTTP failed, when ``exc`` (or its cause) says so."""
    import requests

    seen, pending = set(), [exc]
    while pending:
        current = pending.pop(0)
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        if isinstance(current, FileNotFoundError) and str(current) == source:  # cached_path's 404
            return "HTTP 404 (not found)"
        if isinstance(current, requests.HTTPError) and current.response is not None:
            return f"HTTP {current.response.status_code} {current.response.reason}"
        if isinstance(current, requests.RequestException):
            return f"the connection failed ({type(current).__name__}: {(str(current).splitlines() or [''])[0]})"
        pending += [current.__cause__, current.__context__]
    return None
