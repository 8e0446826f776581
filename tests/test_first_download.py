"""First downloads, offline: the adapters' real download code against a server on 127.0.0.1.

A threaded ``http.server`` serves a folder laid out by host (``HOST/PATH``); only the base URL
changes (``HETENS_DOWNLOAD_MIRROR``, :mod:`hetens.families._download`), the family's own URL table gives
the rest. ``HOME`` and ``XDG_CACHE_HOME`` point into the test's folder, so every file lands in
the family's own cache there. Each family's served file is a tiny model of its format
(``tests/tiny_models.py``; SevenNet: a shipped checkpoint served as ``7net-omat``).

Checked for each in-process family that hetens downloads for (mattersim, mace, sevenn):
the file lands in the family's cache, loads, passes ``check_member``; a second load does not
download again; a 404, a truncated file and a server that stops mid-transfer each give one
WeightsUnavailableError line naming the model, the URL and what to do, and leave no file in
the cache. The other families are documented in docs/families.md ("First downloads").
"""

from __future__ import annotations

import http.server
import os
import shutil
import threading
from pathlib import Path

import pytest

import hetens
from hetens.errors import WeightsUnavailableError
from hetens.families import FAMILIES
from hetens.testing import check_member


class _Handler(http.server.SimpleHTTPRequestHandler):
    """Serves the mirror folder; a path listed in ``server.broken`` is cut off halfway."""

    def log_message(self, *args) -> None:  # keep the test output clean
        pass

    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        self.server.requests.append(self.path)
        if self.path in self.server.broken:
            body = Path(self.translate_path(self.path)).read_bytes()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body[: len(body) // 2])
            self.wfile.flush()
            self.close_connection = True
            return
        super().do_GET()


@pytest.fixture
def mirror(tmp_path, monkeypatch):
    """(folder served, server) with the mirror variable set and HOME/XDG_CACHE_HOME in tmp_path."""
    root = tmp_path / "mirror"
    root.mkdir()
    handler = lambda *args, **kwargs: _Handler(*args, directory=str(root), **kwargs)  # noqa: E731
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.requests, server.broken = [], set()
    server.timeout = 5
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("XDG_CACHE_HOME", str(home / ".cache"))
    monkeypatch.delenv("HETENS_OFFLINE", raising=False)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setenv("HETENS_DOWNLOAD_MIRROR", f"http://127.0.0.1:{server.server_address[1]}")
    try:
        yield root, server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def _serve(root: Path, url: str, source: Path) -> str:
    """Put ``source`` where ``url`` is mirrored; the request path the server will see."""
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    target = root / parts.netloc / parts.path.lstrip("/")
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(source, target)
    return f"/{parts.netloc}{parts.path}"


def _cases(family: str, tiny_dir: Path):
    """(spec, URL, cache file, the local model served, spec options) of one family."""
    if family == "mattersim":
        from hetens.families.mattersim import RELEASE_URL, checkpoint_folder
        from tiny_models import tiny_mattersim_checkpoint

        name = "mattersim-v1.0.0-1M.pth"
        return ("mattersim:MatterSim-v1.0.0-1M", RELEASE_URL + name, checkpoint_folder() / name,
                tiny_mattersim_checkpoint(tiny_dir))
    if family == "mace":
        from mace.calculators.foundations_models import mace_mp_urls

        from hetens.families.mace import _cache_path
        from tiny_models import tiny_mace_model

        return ("mace:medium-omat-0", mace_mp_urls["medium-omat-0"], _cache_path("medium-omat-0"),
                tiny_mace_model(tiny_dir))
    if family == "sevenn":
        from sevenn import _const

        from hetens.families.sevenn import _download_target

        url, path = _download_target("7net-omat")
        return "sevenn:7net-omat", url, Path(path), Path(_const.SEVENNET_0_11Jul2024)
    raise AssertionError(family)


FAMILIES_TESTED = ("mattersim", "mace", "sevenn")


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("tiny_download")


@pytest.mark.parametrize("family", FAMILIES_TESTED)
def test_first_download_lands_in_the_cache_loads_and_is_not_repeated(family, mirror, tiny_dir):
    if not FAMILIES[family].installed:
        pytest.skip(f"family {family} is not installed here")
    root, server = mirror
    spec, url, cached, served = _cases(family, tiny_dir)
    assert str(cached).startswith(os.environ["HOME"]) and not cached.exists()
    request = _serve(root, url, served)

    member = hetens.load_member(spec, device="cpu")
    assert cached.is_file() and cached.read_bytes() == served.read_bytes()
    assert server.requests == [request]
    assert not [p for p in cached.parent.iterdir() if "partial" in p.name]
    from ase.build import bulk

    atoms = bulk("W", "bcc", a=3.17, cubic=True) * (2, 1, 1)
    atoms.rattle(0.05, seed=3)
    check_member(member, atoms, checks=("force_gradient",))

    hetens.load_member(spec, device="cpu")  # from the cache: no second request
    assert server.requests == [request]


@pytest.mark.parametrize("family", FAMILIES_TESTED)
@pytest.mark.parametrize("failure", ["404", "truncated file", "server stops mid-transfer"])
def test_failed_first_download_says_what_to_do_and_keeps_nothing(family, failure, mirror, tiny_dir):
    if not FAMILIES[family].installed:
        pytest.skip(f"family {family} is not installed here")
    root, server = mirror
    spec, url, cached, served = _cases(family, tiny_dir)
    if failure == "truncated file":  # the server sends it whole: it is the file that is cut
        half = root / "half"
        half.write_bytes(served.read_bytes()[: served.stat().st_size // 2])
        _serve(root, url, half)
    elif failure == "server stops mid-transfer":
        server.broken.add(_serve(root, url, served))

    with pytest.raises(WeightsUnavailableError) as caught:
        hetens.load_member(spec, device="cpu")
    message = str(caught.value).split("\n")[0]
    assert spec in message and url in message and "local file" in message or "Load it once" in message
    assert len(str(caught.value).splitlines()) == 1, str(caught.value)
    if failure == "404":
        assert "HTTP 404" in message
    elif failure == "server stops mid-transfer":
        assert "bytes" in message
    else:
        assert "do not load" in message and "removed" in message
    leftovers = list(cached.parent.iterdir()) if cached.parent.exists() else []
    assert leftovers == [], leftovers
