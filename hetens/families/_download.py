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
"""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import os
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path

from hetens.errors import WeightsUnavailableError
from hetens.families._common import hub_reachable

__all__ = ["MIRROR_VARIABLE", "source_url", "fetch", "fresh_download"]

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
