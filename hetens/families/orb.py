"""ORB adapter (orb-models 0.5.x): ``orb_models.forcefield.calculator.ORBCalculator``.

Models load through orb-models' own loaders in
``orb_models.forcefield.pretrained``, always with ``compile=False`` (the
default, ``compile=None``, runs ``torch.compile`` on CPU: a minute-long first
call):

- a registry name (``orb:orb-v3-conservative-inf-omat``) is a key of
  ``pretrained.ORB_PRETRAINED_MODELS``; its loader downloads the checkpoint
  with ``cached_path`` into ``~/.cache/cached_path`` on first use (a cached
  file is then given to the loader as a local path, so no network is tried).
  With ``HETENS_DOWNLOAD_MIRROR`` set, the loader is given the checkpoint's URL
  under the mirror instead (``MIRROR/HOST/PATH``); a failed download, or a file
  that arrived and does not load, is one ``WeightsUnavailableError`` line and
  leaves nothing in the cache (:func:`hetens.families._download.cached_path_download`);
- a local checkpoint (a ``state_dict`` saved with ``torch.save``, orb's own
  format) needs its architecture, which the file does not record::

      orb:/models/ckpt.ckpt@architecture=orb-v3-conservative-inf-omat@level=PBE+U

  ``architecture`` is either a registry name (that model's loader, with the
  file as ``weights_path``: same network and neighbour settings) or one of
  orb's architecture builders, :data:`BUILDERS` (``orb_v3_conservative_architecture``,
  ``orb_v3_direct_architecture``, ``orb_v2_architecture``), which take the
  size options of :data:`SIZE_OPTIONS` (``latent_dim=32@num_message_passing_steps=2``...)
  and are loaded with ``pretrained.load_model``. A file named like orb's own
  downloads (``orb-v3-conservative-inf-omat-20250404.ckpt``) needs no
  ``architecture``: it is read from the name.

Option ``precision``: ``float32-high`` (orb's default), ``float32-highest`` or
``float64``. orb's loaders apply it process-wide (``torch.set_default_dtype``,
``torch.set_float32_matmul_precision``) and its featurisation builds tensors
in the *current* default dtype; here the load restores both, and the
calculator applies the model's own dtype and matmul precision for the
duration of each call only, so other members never see them.

Stress is ORB's (6,) Voigt vector in eV/Å³ with ASE's sign (for conservative
models the strain derivative of the energy). A structure without a 3D
periodic cell (a molecule, ``pbc=False``) gets energy and forces, no stress.
ORB models have no heads.
"""

from __future__ import annotations

import contextlib
import functools
import warnings
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlparse

from hetens.errors import UnknownModelError
from hetens.families._common import (
    refuse_head_and_options,
    deterministic_torch,
    is_local_path,
    package_versions,
    preserved_torch_state,
    require_download,
    without_upstream_noise,
)
from hetens.families._download import cached_path_download, source_url

_PRECISIONS = ("float32-high", "float32-highest", "float64")
#: Architecture builders of ``orb_models.forcefield.pretrained`` a local file may name.
BUILDERS = ("orb_v3_conservative_architecture", "orb_v3_direct_architecture", "orb_v2_architecture")
#: Options of a builder architecture: name -> type. ``radius`` (Å) and
#: ``max_num_neighbors`` make the ``SystemConfig`` (defaults 6.0 and 120; 20 for orb-v2).
SIZE_OPTIONS: dict[str, type] = {
    "latent_dim": int,
    "base_mlp_hidden_dim": int,
    "base_mlp_depth": int,
    "head_mlp_hidden_dim": int,
    "head_mlp_depth": int,
    "num_message_passing_steps": int,
    "activation": str,
    "radius": float,
    "max_num_neighbors": int,
}
_V2_OPTIONS = ("num_message_passing_steps", "radius", "max_num_neighbors")
_OPTIONS = ("architecture", "precision", *SIZE_OPTIONS)


def pretrained_names() -> list[str]:
    """The names orb-models' ``ORB_PRETRAINED_MODELS`` knows (without the deprecated v1 models)."""
    with _orb_loading():
        from orb_models.forcefield import pretrained
    return [name for name in pretrained.ORB_PRETRAINED_MODELS if "-v1" not in name]


def weights_status(model: str) -> str:
    """``local file``, ``cached`` (in cached_path's cache), ``download`` or ``missing`` (unknown name)."""
    if is_local_path(model):
        return "local file"
    url = _default_url(model)
    if url is None:
        return "missing"
    return "cached" if _cached_file(url) is not None else "download"


def load(model: str, *, head: str | None, device: str, options: dict[str, str]):
    """An ``ORBCalculator`` for a registry name or a local checkpoint (see the module docstring).

    Raises:
        UnknownModelError: a head, an unknown registry name or architecture.
        ValueError: an unknown option or precision, a local file without its
            architecture, a checkpoint that does not fit the architecture.
        WeightsUnavailableError: weights not cached and the host unreachable.
    """
    refuse_head_and_options("orb", model, head, options, _OPTIONS)
    precision = options.get("precision", "float32-high")
    if precision not in _PRECISIONS:
        raise ValueError(f"orb member {model}: precision must be one of {', '.join(_PRECISIONS)}; got {precision!r}")
    with _orb_loading():
        if is_local_path(model):
            network = _load_local(Path(model).expanduser(), options, precision, device)
        else:
            network = _load_pretrained(model, options, precision, device)
        dtype = next(network.parameters()).dtype
        calculator = _calculator_class()(network, device=device)
    calculator.model_dtype = dtype
    calculator.matmul_precision = "highest" if precision == "float32-highest" else "high"
    calculator.member_label = f"orb:{model}"
    return calculator


def versions() -> dict[str, str]:
    return package_versions("orb-models", "torch", "cached-path")


def elements(calculator) -> frozenset[int] | None:
    """Atomic numbers 1..n of the model's atom embedding table (n = 118 for orb's models)."""
    embedding = getattr(getattr(calculator.model.model, "atom_emb", None), "embeddings", None)
    if embedding is None:
        return None
    return frozenset(range(1, embedding.num_embeddings))


def _load_pretrained(model: str, options: dict[str, str], precision: str, device: str):
    from orb_models.forcefield import pretrained

    names = pretrained_names()
    name = next((n for n in names if n.lower() == model.lower()), None)
    if name is None:
        raise UnknownModelError(f"orb has no pretrained model {model!r}; known: {', '.join(names)}")
    extra = sorted(set(options) - {"precision"})
    if extra:
        raise ValueError(
            f"orb member {model}: {', '.join(extra)} apply to local files only (orb:/path.ckpt@architecture=...)"
        )
    url = _default_url(name)
    cached = _cached_file(url) if url else None
    if cached is None and url is not None:
        source = source_url(url)  # the mirror's copy when HETENS_DOWNLOAD_MIRROR is set
        how = (f"Load it once with orb_models.forcefield.pretrained.ORB_PRETRAINED_MODELS[{name!r}]() on a "
               f"connected machine, or download {url} yourself and give it as "
               f"orb:/path/to/file.ckpt@architecture={name}@level=LEVEL.")
        if source == url:
            require_download(f"orb:{name}", urlparse(url).netloc, how)
        with cached_path_download(f"orb:{name}", url, source, how):
            return pretrained.ORB_PRETRAINED_MODELS[name](
                weights_path=source, device=device, precision=precision, compile=False
            )
    if cached is None:  # a loader without a URL default: its own download
        return pretrained.ORB_PRETRAINED_MODELS[name](device=device, precision=precision, compile=False)
    return pretrained.ORB_PRETRAINED_MODELS[name](
        weights_path=str(cached), device=device, precision=precision, compile=False
    )


def _load_local(path: Path, options: dict[str, str], precision: str, device: str):
    from orb_models.forcefield import pretrained

    names = pretrained_names()
    architecture = options.get("architecture") or next(
        (n for n in sorted(names, key=len, reverse=True) if path.name.lower().startswith(n.lower())), None
    )
    if architecture is None:
        raise ValueError(
            f"orb member {path}: an ORB checkpoint does not record its architecture; name it with "
            f"@architecture=NAME, one of the pretrained models ({', '.join(names)}) or a builder "
            f"({', '.join(BUILDERS)}) with its size options"
        )
    sizes = {k: v for k, v in options.items() if k in SIZE_OPTIONS}
    try:
        if architecture in BUILDERS:
            network = _build(architecture, sizes, str(path), device)
            return pretrained.load_model(network, str(path), device, precision=precision, compile=False)
        name = next((n for n in names if n.lower() == architecture.lower()), None)
        if name is None:
            raise UnknownModelError(
                f"orb member {path}: unknown architecture {architecture!r}; one of the pretrained models "
                f"({', '.join(names)}) or a builder ({', '.join(BUILDERS)})"
            )
        if sizes:
            raise ValueError(
                f"orb member {path}: {', '.join(sorted(sizes))} apply to the builders ({', '.join(BUILDERS)}) only; "
                f"architecture {name} fixes its sizes"
            )
        return pretrained.ORB_PRETRAINED_MODELS[name](
            weights_path=str(path), device=device, precision=precision, compile=False
        )
    except RuntimeError as exc:  # load_state_dict(strict=True): keys or shapes do not match
        raise ValueError(
            f"orb member {path}: the checkpoint does not fit architecture {architecture} "
            f"({str(exc).splitlines()[0]}); check @architecture= and the size options"
        ) from exc


def _build(builder: str, sizes: dict[str, str], path: str, device: str):
    """The untrained network of ``builder`` with the spec's size options (strings, converted)."""
    from orb_models.forcefield import pretrained
    from orb_models.forcefield.atomic_system import SystemConfig

    allowed = _V2_OPTIONS if builder == "orb_v2_architecture" else tuple(SIZE_OPTIONS)
    wrong = sorted(set(sizes) - set(allowed))
    if wrong:
        raise ValueError(f"orb member {path}: {builder} takes no option(s) {', '.join(wrong)}; "
                         f"it takes {', '.join(allowed)}")
    kwargs = {}
    for key, text in sizes.items():
        try:
            kwargs[key] = SIZE_OPTIONS[key](text)
        except ValueError:
            raise ValueError(f"orb member {path}: option {key}={text!r} must be "
                             f"{SIZE_OPTIONS[key].__name__}") from None
    system = SystemConfig(
        radius=kwargs.pop("radius", 6.0),
        max_num_neighbors=kwargs.pop("max_num_neighbors", 20 if builder == "orb_v2_architecture" else 120),
    )
    return getattr(pretrained, builder)(device=device, system_config=system, **kwargs)


def _default_url(model: str) -> str | None:
    """The checkpoint URL orb's loader for ``model`` downloads (its ``weights_path`` default)."""
    import inspect

    with _orb_loading():
        from orb_models.forcefield import pretrained

    loader = next((f for n, f in pretrained.ORB_PRETRAINED_MODELS.items() if n.lower() == model.lower()), None)
    if loader is None:
        return None
    default = inspect.signature(loader).parameters.get("weights_path")
    return default.default if default is not None and isinstance(default.default, str) else None


def _cached_file(url: str) -> Path | None:
    """cached_path's local copy of ``url`` or of its mirror copy (:func:`source_url`, when
    ``HETENS_DOWNLOAD_MIRROR`` is set), in cached_path's own cache folder, or ``None``;
    never downloads."""
    with _orb_loading():
        from cached_path import find_latest_cached

    mirror = source_url(url)
    return find_latest_cached(url) or (find_latest_cached(mirror) if mirror != url else None)


@contextlib.contextmanager
def _orb_loading() -> Iterator[None]:
    """Import and load orb-models with nothing process-wide left changed: the default dtype and
    float32 matmul precision its loaders set, the TF32 flags, the environment, the random states;
    its "Setting global torch default dtype" warnings are not shown (undone here)."""
    with without_upstream_noise(), preserved_torch_state(), warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Setting global torch default dtype", category=UserWarning)
        warnings.filterwarnings("ignore", message="Consider passing 'precision=float32-high'", category=UserWarning)
        # cached_path imports google-cloud-storage, whose api_core asks for grpcio-status at import.
        warnings.filterwarnings("ignore", message="Please install grpcio-status", category=ImportWarning)
        yield


@contextlib.contextmanager
def _model_precision(dtype, matmul_precision: str) -> Iterator[None]:
    """The model's default dtype and float32 matmul precision for one call, then the caller's."""
    import torch

    saved_dtype = torch.get_default_dtype()
    saved_precision = torch.get_float32_matmul_precision()
    saved_tf32 = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
    torch.set_default_dtype(dtype)
    torch.set_float32_matmul_precision(matmul_precision)
    try:
        yield
    finally:
        torch.set_default_dtype(saved_dtype)
        torch.set_float32_matmul_precision(saved_precision)
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved_tf32


@functools.cache
def _calculator_class():
    from orb_models.forcefield.calculator import ORBCalculator

    class ScopedORBCalculator(ORBCalculator):
        """orb's calculator, run under the model's own dtype and matmul precision (see the module
        docstring) and torch's deterministic kernels on CPU (with two threads, ORB's forces
        otherwise differed in the 9th digit from load to load; no slower, measured); no stress
        for a structure without a 3D periodic cell."""

        model_dtype = None
        matmul_precision = "high"
        member_label = "orb"

        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            # ORBCalculator appends to the model's own ``properties`` list; keep a list of our own.
            self.implemented_properties = list(dict.fromkeys(self.implemented_properties))

        def calculate(self, atoms=None, properties=None, system_changes=None) -> None:
            import torch
            from ase.calculators.calculator import all_changes

            dtype = self.model_dtype or torch.get_default_dtype()
            with _model_precision(dtype, self.matmul_precision), deterministic_torch(str(self.device)):
                super().calculate(atoms, properties, all_changes if system_changes is None else system_changes)
            if not (self.atoms.pbc.all() and self.atoms.cell.rank == 3):
                self.results.pop("stress", None)  # a molecule has no stress

    return ScopedORBCalculator
