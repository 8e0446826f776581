"""First downloads, offline: the adapters' real download code against servers on 127.0.0.1.

Two servers, one per download protocol; in both only the base URL changes, the family's own
tables give the rest, and every cache lands in the test's folder:

- files by URL (mattersim, mace, sevenn: hetens fetches the file into the family's cache;
  orb: orb-models' own ``cached_path`` fetches it): a threaded ``http.server`` serves a folder
  laid out by host (``HOST/PATH``) and ``HETENS_DOWNLOAD_MIRROR`` points there
  (:mod:`hetens.families._download`). ``HOME``, ``XDG_CACHE_HOME`` and cached_path's cache
  folder point into the test's folder.
- the Hugging Face hub (fairchem 2.x UMA, matgl, pet/upet: the family's own loader calls
  huggingface_hub's ``hf_hub_download``): ``tests/hf_hub_server.py`` speaks the hub's protocol
  (``X-Repo-Commit``, ``ETag``/``X-Linked-Etag``, ``X-Linked-Size``, the 302 to a CDN on another
  host name, 404 with ``X-Error-Code``, the repository tree). huggingface_hub read ``HF_ENDPOINT``
  and ``HF_HUB_OFFLINE`` at import (conftest set the latter), so the constants it reads at call
  time are set: ``ENDPOINT``, ``HUGGINGFACE_CO_URL_TEMPLATE``, ``HF_HUB_OFFLINE``,
  ``HF_HUB_CACHE``, ``HF_TOKEN_PATH`` (no token); fairchem's and matgl's own cache folders too.

Each served file is a model of the family's format: the tiny models of ``tests/tiny_models.py``;
SevenNet: a shipped checkpoint served as ``7net-omat``; orb: a randomly initialised
``orb-v3-conservative-inf-omat`` (a name fixes orb's architecture, so the file is full size,
about 100 MB, built once per module).

Checked for each: the first load downloads into the family's cache, loads and passes
``check_member``; a second load downloads nothing (mattersim, mace, sevenn, orb, matgl, pet
make no request at all; fairchem's loader asks the hub for the file's metadata, a HEAD, on
every load); a 404, a truncated file, a short body (hub families: the size announced but
half sent) and a server that stops mid-transfer each give one WeightsUnavailableError line
naming the model, the URL and what to do, and leave the cache as it was (no file, no blob,
no snapshot link; for the hub families the next good attempt then downloads and loads).
The families with their own environments (fairchem1, nequip, grace, deepmd) are not built
here: docs/families.md ("First downloads").
"""

from __future__ import annotations

import http.server
import os
import shutil
import threading
from pathlib import Path

import numpy as np
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
    """(folder served, server) with the mirror variable set and HOME/XDG_CACHE_HOME (and
    cached_path's cache folder, read at its import) in tmp_path."""
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
    if FAMILIES["orb"].installed:
        from hetens.families.orb import _orb_loading

        with _orb_loading():  # cached_path's import warns about google-cloud's extras
            import cached_path.common
        monkeypatch.setattr(cached_path.common, "CACHE_DIRECTORY", home / ".cache" / "cached_path")
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
    if family == "orb":
        from cached_path import get_cache_dir, resource_to_filename

        from hetens.families._download import source_url
        from hetens.families.orb import _default_url

        url = _default_url(ORB_NAME)
        return (f"orb:{ORB_NAME}", url, get_cache_dir() / resource_to_filename(source_url(url)),
                _random_orb_checkpoint(tiny_dir))
    raise AssertionError(family)


FAMILIES_TESTED = ("mattersim", "mace", "sevenn", "orb")
#: The orb name downloaded (a registry name; conservative with all neighbours, so the energy is smooth
#: and check_member's force gradient holds: with 20 neighbours it is not).
ORB_NAME = "orb-v3-conservative-inf-omat"


def _random_orb_checkpoint(folder: Path) -> Path:
    """A randomly initialised network of :data:`ORB_NAME`'s architecture (orb's own builder, as
    its loader calls it), saved as orb's checkpoint format (the ``state_dict``)."""
    path = folder / f"random-{ORB_NAME}.ckpt"
    if path.exists():
        return path
    from hetens.families.orb import _orb_loading

    with _orb_loading():
        import torch
        from orb_models.forcefield import pretrained
        from orb_models.forcefield.atomic_system import SystemConfig

        with torch.random.fork_rng():
            torch.manual_seed(0)
            model = pretrained.orb_v3_conservative_architecture(
                device="cpu", system_config=SystemConfig(radius=6.0, max_num_neighbors=120))
        torch.save(model.state_dict(), path)
    return path


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

    # orb's full-size network is the slow part: 2 atoms (3.5 s for the check here, 9.7 s with 4)
    atoms = bulk("W", "bcc", a=3.17, cubic=True) * ((1, 1, 1) if family == "orb" else (2, 1, 1))
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


# ------------------------------------------------------------------ the Hugging Face hub

HUB_FAMILIES = ("fairchem", "matgl", "pet")
_REFERENCES_YAML = b"omat_elem_refs: {74: -12.9}\nrefs: {omat: {W: -12.9}}\n"


@pytest.fixture
def hub(tmp_path, monkeypatch):
    """A local Hugging Face hub (``tests/hf_hub_server.py``) that huggingface_hub downloads from,
    with its cache in tmp_path, online, and no token."""
    from huggingface_hub import constants

    from hf_hub_server import HubServer

    with HubServer() as server:
        monkeypatch.setenv("HF_ENDPOINT", server.endpoint)  # for what reads it later (subprocesses)
        monkeypatch.setattr(constants, "ENDPOINT", server.endpoint)
        monkeypatch.setattr(constants, "HUGGINGFACE_CO_URL_TEMPLATE",
                            server.endpoint + "/{repo_id}/resolve/{revision}/{filename}")
        monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
        monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hf" / "hub"))
        monkeypatch.setattr(constants, "HF_TOKEN_PATH", str(tmp_path / "hf" / "no-token"))
        for variable in ("HF_HUB_OFFLINE", "HETENS_OFFLINE", "HF_TOKEN", "HUGGING_FACE_HUB_TOKEN"):
            monkeypatch.delenv(variable, raising=False)
        yield server


def _hub_case(family: str, hub, tmp_path: Path, monkeypatch, tiny_dir: Path):
    """Publish ``family``'s tiny model on ``hub`` where the family's loader looks for a registry
    name; (spec, repo, weights file in the repo, the cache folder the loader writes to)."""
    from hetens.families._common import preserved_torch_state, without_upstream_noise

    if family == "fairchem":
        from tiny_models import tiny_fairchem_checkpoint

        with without_upstream_noise(), preserved_torch_state():
            from fairchem.core.calculate import pretrained_mlip

        cache = tmp_path / "fairchem"
        monkeypatch.setattr(pretrained_mlip, "CACHE_DIR", str(cache))
        entry = pretrained_mlip._MODEL_CKPTS.checkpoints["uma-s-1p1"]
        weights = f"{entry.subfolder}/{entry.filename}"
        hub.add(entry.repo_id, weights, tiny_fairchem_checkpoint(tiny_dir).read_bytes())
        for refs in (entry.atom_refs, entry.form_elem_refs):
            hub.add(entry.repo_id, f"{refs['subfolder']}/{refs['filename']}", _REFERENCES_YAML, lfs=False)
        return "fairchem:uma-s-1p1", entry.repo_id, weights, cache
    if family == "matgl":
        from tiny_models import tiny_matgl_model

        with without_upstream_noise(), preserved_torch_state():
            from matgl.utils import io as matgl_io

        cache = tmp_path / "matgl"
        monkeypatch.setattr(matgl_io, "MATGL_CACHE", cache)
        name = "TensorNet-PES-MatPES-PBE-2025.2"
        repo = f"{matgl_io.HF_MATGL_ORG}/{name}"
        folder = tiny_matgl_model(tiny_dir)
        for file in ("model.pt", "state.pt", "model.json"):
            hub.add(repo, file, (folder / file).read_bytes(), lfs=file != "model.json")
        return f"matgl:{name}", repo, "model.pt", cache
    if family == "pet":
        from huggingface_hub import constants

        from hetens.families.pet import _contained
        from tiny_models import tiny_pet_checkpoint

        with _contained():
            from upet import _models

        _models._get_upet_repo_files.cache_clear()  # upet lists the repository once per process
        name = "pet-mad-xs-v1.6.0"
        hub.add("lab-cosmo/upet", f"models/{name}.ckpt", tiny_pet_checkpoint(tiny_dir).read_bytes())
        return f"pet:{name}", "lab-cosmo/upet", f"models/{name}.ckpt", Path(constants.HF_HUB_CACHE)
    raise AssertionError(family)


def _cache_files(cache: Path) -> list[str]:
    """Files (and links) in a huggingface_hub cache, without its lock files and CACHEDIR.TAG."""
    if not cache.exists():
        return []
    return sorted(str(p.relative_to(cache)) for p in cache.rglob("*")
                  if not p.is_dir() and ".locks" not in p.parts and p.name != "CACHEDIR.TAG")


def _w_cell():
    from ase.build import bulk

    atoms = bulk("W", "bcc", a=3.17, cubic=True) * (2, 1, 1)
    atoms.rattle(0.05, seed=3)
    return atoms


@pytest.mark.parametrize("family", HUB_FAMILIES)
def test_hub_first_download_lands_in_the_cache_loads_and_is_not_repeated(family, hub, tmp_path, monkeypatch,
                                                                           tiny_dir):
    if not FAMILIES[family].installed:
        pytest.skip(f"family {family} is not installed here")
    from huggingface_hub import try_to_load_from_cache

    spec, repo, weights, cache = _hub_case(family, hub, tmp_path, monkeypatch, tiny_dir)
    adapter = FAMILIES[family].adapter()
    model = spec.split(":", 1)[1]
    assert adapter.weights_status(model) == "download" and _cache_files(cache) == []

    member = hetens.load_member(spec, device="cpu")
    served = hub.files[(repo, weights)]
    cached = try_to_load_from_cache(repo, weights, cache_dir=cache)
    assert isinstance(cached, str) and Path(cached).read_bytes() == served.data
    assert Path(cached).resolve().name == served.sha256  # the blob is named by the LFS SHA-256
    assert hub.downloads().count(f"/cdn/{served.sha256}") == 1
    assert {host for method, host, path in hub.requests if path.startswith("/cdn/")} == {"localhost"}
    assert not [f for f in _cache_files(cache) if f.endswith(".incomplete")]
    assert adapter.weights_status(model) == "cached"
    check_member(member, _w_cell(), checks=("force_gradient",))

    seen = len(hub.requests)
    hetens.load_member(spec, device="cpu")  # from the cache
    again = hub.requests[seen:]
    assert not [r for r in again if r[0] == "GET"], again
    if family != "fairchem":  # fairchem's loader asks for the file's metadata (HEAD) on every load
        assert again == []


@pytest.mark.parametrize("family", HUB_FAMILIES)
@pytest.mark.parametrize("failure", ["404", "truncated file", "short body", "server stops mid-transfer"])
def test_hub_failed_first_download_says_what_to_do_and_keeps_nothing(family, failure, hub, tmp_path,
                                                                       monkeypatch, tiny_dir):
    """One WeightsUnavailableError line; the cache as it was (no blob, no snapshot link, no
    ref), so the next load, with the hub serving the file whole, downloads and loads it.
    "truncated file": the hub holds a cut upload (its metadata describe the cut file, so it
    arrives whole and fails to load); "short body": the hub announces the whole size, the CDN
    sends half of it (huggingface_hub's size check); "server stops mid-transfer": the CDN
    closes the connection halfway and the server answers nothing more (huggingface_hub
    retries five times, a second apart)."""
    if not FAMILIES[family].installed:
        pytest.skip(f"family {family} is not installed here")
    spec, repo, weights, cache = _hub_case(family, hub, tmp_path, monkeypatch, tiny_dir)
    whole = hub.files[(repo, weights)].data
    if failure == "404":
        hub.missing.add((repo, weights))
    elif failure == "truncated file":  # the hub holds a cut upload, and describes it as it is
        hub.add(repo, weights, whole[: len(whole) // 2])
    elif failure == "short body":
        hub.short_in.add((repo, weights))
    else:
        hub.stop_in.add((repo, weights))

    with pytest.raises(WeightsUnavailableError) as caught:
        hetens.load_member(spec, device="cpu")
    message = str(caught.value)
    assert len(message.splitlines()) == 1, message
    assert spec in message and f"{hub.endpoint}/{repo}" in message
    assert "Load it once" in message
    if failure == "404":
        assert "HTTP 404 (the file is not in the repository)" in message and "nothing was kept" in message
    elif failure == "truncated file":
        assert "do not load" in message and "removed" in message
    elif failure == "short body":
        assert "only part of the file arrived" in message and "nothing was kept" in message
    else:  # the first loss is reported, with what arrived, then that the retries failed too
        assert "connection failed" in message and "bytes" in message and "retried" in message
        assert "nothing was kept" in message
    assert _cache_files(cache) == []
    assert FAMILIES[family].adapter().weights_status(spec.split(":", 1)[1]) == "download"

    hub.missing.clear()
    hub.short_in.clear()
    hub.stop_in.clear()
    hub.stopped = False  # the hub is back, serving the whole file
    hub.add(repo, weights, whole)
    member = hetens.load_member(spec, device="cpu")
    assert np.isfinite(member.calculator.get_potential_energy(_w_cell()))
