"""Virtual environments for isolated members: one pinned stack per model family.

``hetens env create NAME --family mace`` (or :func:`create_environment`)
builds a venv holding torch, that family's package with the pins hetens is
tested with, and hetens itself installed without dependencies; it prints the
interpreter to give a member (``mace:...@python=PATH``, or ``python = PATH``
in an ensemble file). Because each family gets its own environment, the pins
that clash in one environment do not matter: MACE keeps its own
``e3nn==0.4.4`` here.

Steps, in order: ``python -m venv``; ``pip install torch==VERSION`` alone
(on a CPU machine with a local wheel this avoids pulling CUDA builds); the
family's packages under a constraints file that holds torch (and the
family's own constraints); hetens ``--no-deps`` (from the same source tree,
editable, when this hetens is an editable install); an import check. A
marker file ``hetens-env.json`` is written last: a folder without it is an
unfinished build. pip honours ``PIP_INDEX_URL`` / ``PIP_EXTRA_INDEX_URL``
for CUDA or private indexes.

Environments live under ``--prefix``, else ``$HETENS_ENV_DIR``, else
``$XDG_DATA_HOME/hetens/envs`` (``~/.local/share/hetens/envs``).
"""

from __future__ import annotations

import collections
import datetime
import importlib.metadata
import json
import os
import subprocess
import sys
import urllib.parse
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from hetens.errors import EnvironmentBuildError

__all__ = [
    "FAMILY_STACKS",
    "DEFAULT_TORCH",
    "FamilyStack",
    "environment_root",
    "create_environment",
    "list_environments",
    "interpreter_of",
]

DEFAULT_TORCH = "2.13.0"
MARKER = "hetens-env.json"


@dataclass(frozen=True)
class FamilyStack:
    """What a family's environment installs.

    Attributes:
        packages: pip requirements of the family (after torch).
        constraints: extra pip constraints while installing them.
        imports: modules that must import at the end (the build's check).
        torch: the torch version the family needs (``None``: :data:`DEFAULT_TORCH`);
            a ``--torch`` given to :func:`create_environment` overrides it.
        with_torch: ``False`` for a family without torch (GRACE: TensorFlow); no torch step.
        no_deps: requirements installed last with ``--no-deps`` (a package whose declared
            dependencies would pull what the family must not have, e.g. CUDA builds).
    """

    packages: tuple[str, ...]
    constraints: tuple[str, ...] = ()
    imports: tuple[str, ...] = ()
    torch: str | None = None
    with_torch: bool = True
    no_deps: tuple[str, ...] = ()
    #: pip index for torch (``--index-url``; ``None``: pip's default index): fairchem 1.x's
    #: CPU torch comes from PyTorch's own index.
    torch_index_url: str | None = None
    #: pages of wheels for the family's packages (``--find-links``): PyG's torch_scatter wheels.
    find_links: tuple[str, ...] = ()


#: Pinned stacks, one per family (the pins of pyproject's extras; MACE with its own e3nn).
FAMILY_STACKS: dict[str, FamilyStack] = {
    "sevenn": FamilyStack(("sevenn==0.13.0",), ("e3nn==0.5.1",), ("sevenn",)),
    "chgnet": FamilyStack(("chgnet==0.4.2",), (), ("chgnet",)),
    "mace": FamilyStack(("mace-torch==0.3.16",), (), ("mace",)),
    "fairchem": FamilyStack(("fairchem-core==2.24.0",), ("lmdb<=1.7.3",), ("fairchem.core",)),
    "matgl": FamilyStack(("matgl>=4.1",), (), ("matgl",)),
    "diep": FamilyStack(("diep==2.0.0",), (), ("diep",)),
    # NequIP / Allegro (own environment only: e3nn 0.6, which sevenn and fairchem
    # in the main environment cannot take). Versions as resolved on torch 2.13.0.
    "nequip": FamilyStack(("nequip==0.19.1", "nequip-allegro==0.8.3"), ("e3nn==0.6.0",),
                          ("nequip.integrations.ase", "allegro")),
    # GRACE (tensorpotential): TensorFlow, no torch. tensorpotential declares
    # tensorflow[and-cuda] (about 6 GB of CUDA libraries) and tf_keras declares tensorflow
    # (which would overwrite tensorflow-cpu's files): both go in with --no-deps after the
    # CPU build of TensorFlow and tensorpotential's pure-Python requirements.
    "grace": FamilyStack(
        ("tensorflow-cpu==2.20.0", "scipy", "matscipy", "numpy<3", "sympy", "pandas<3", "ase",
         "pyyaml>=6.0.2", "tqdm", "requests", "questionary>=2.0", "rich>=13.0", "scikit-learn>=1.1"),
        (), ("tensorpotential.calculator",), with_torch=False,
        no_deps=("tf_keras==2.20.1", "tensorpotential==0.6.2.1"),
    ),
    # deepmd-kit 3.x (DPA3 / DPA-2, PyTorch backend): its compiled ops are built against
    # torch 2.11 exactly (deepmd-kit[torch] requires torch==2.11.0). The registry's torch
    # 2.11 for Linux is the CUDA build (several GB with the nvidia-* libraries). deepmd-kit
    # does not declare ase, which its ASE calculator (and hetens) import.
    "deepmd": FamilyStack(("deepmd-kit[torch]==3.2.0", "ase"), (),
                          ("deepmd.calculator", "deepmd.pt.model.model"), torch="2.11.0"),
    # fairchem-core 1.x (eqV2, eSEN-30M OMat24/OAM, through OCPCalculator): torch 2.4 and
    # torch_scatter, whose wheels come from PyTorch's and PyG's own indexes (fairchem 1.x's
    # install docs); hetens.fairchem1_env gives the index URLs, which the user may change.
    # The recipe of fairchem 1.x's install docs: CPU torch from PyTorch's index, torch_scatter
    # and torch_sparse wheels from PyG's (both URLs are options of `hetens env create`).
    "fairchem1": FamilyStack(
        ("fairchem-core==1.10.0", "torch-geometric", "torch-scatter", "torch-sparse"), ("numpy<2",),
        ("fairchem.core", "fairchem.core.common.relaxation.ase_utils", "torch_scatter"), torch="2.4.1",
        torch_index_url="https://download.pytorch.org/whl/cpu",
        find_links=("https://data.pyg.org/whl/torch-2.4.0+cpu.html",),
    ),
}


def environment_root(prefix: str | os.PathLike | None = None) -> Path:
    """Folder holding the environments: ``prefix``, ``$HETENS_ENV_DIR`` or ``~/.local/share/hetens/envs``."""
    if prefix is not None:
        return Path(prefix).expanduser()
    if os.environ.get("HETENS_ENV_DIR"):
        return Path(os.environ["HETENS_ENV_DIR"]).expanduser()
    data = os.environ.get("XDG_DATA_HOME") or os.path.join(os.path.expanduser("~"), ".local", "share")
    return Path(data) / "hetens" / "envs"


def interpreter_of(folder: str | os.PathLike) -> Path:
    """The Python interpreter of the venv in ``folder``."""
    folder = Path(folder)
    return folder / ("Scripts/python.exe" if os.name == "nt" else "bin/python")


def create_environment(
    name: str,
    family: str,
    *,
    prefix: str | os.PathLike | None = None,
    python: str | None = None,
    torch: str | None = None,
    extra: tuple[str, ...] | list[str] = (),
    torch_index_url: str | None = None,
    find_links: tuple[str, ...] | list[str] | None = None,
    quiet: bool = False,
    compile: bool = True,
    log: IO[str] | None = None,
) -> Path:
    """Build the environment ``NAME`` for one model family; return its interpreter.

    Args:
        name: folder name of the environment under the root (see :func:`environment_root`).
        family: one of :data:`FAMILY_STACKS` (``sevenn``, ``chgnet``, ``mace``,
            ``fairchem``, ``matgl``, ``diep``; own-environment-only: ``nequip``,
            ``grace``, ``deepmd``).
        prefix: root folder (default: ``$HETENS_ENV_DIR`` or ``~/.local/share/hetens/envs``).
        python: base interpreter for ``-m venv`` (default: the one running hetens).
        torch: torch version to install first (default: the family's
            :attr:`FamilyStack.torch`, else :data:`DEFAULT_TORCH`).
        extra: more pip requirements (e.g. ``cuequivariance-torch``).
        torch_index_url: pip index for torch (default: the family's
            :attr:`FamilyStack.torch_index_url`, else pip's default index).
        find_links: wheel pages for the family's packages (default: the family's
            :attr:`FamilyStack.find_links`).
        quiet: pass ``-q`` to pip.
        compile: let pip byte-compile the packages (``False``: ``--no-compile``,
            about twice as fast to build; modules compile on first import instead).
        log: where progress and pip's output go (default: stderr).

    Returns:
        Path of the new environment's ``bin/python``.

    Raises:
        ValueError: unknown family or a name that is not a plain folder name.
        FileExistsError: the folder exists already (complete or from a failed build).
        EnvironmentBuildError: a step failed (names the command and its output).
    """
    if family not in FAMILY_STACKS:
        raise ValueError(f"unknown family {family!r}; environments can be built for: "
                         f"{', '.join(FAMILY_STACKS)}")
    if not name or Path(name).name != name or name.startswith("."):
        raise ValueError(f"environment name {name!r} must be a plain folder name such as 'mace-env'")
    log = log or sys.stderr
    stack = FAMILY_STACKS[family]
    torch = torch or stack.torch or DEFAULT_TORCH
    folder = environment_root(prefix) / name
    if folder.exists():
        state = "exists" if (folder / MARKER).exists() else "is an unfinished build (no hetens-env.json)"
        raise FileExistsError(f"environment {name!r} at {folder} {state}; remove the folder "
                              "or choose another name")
    folder.parent.mkdir(parents=True, exist_ok=True)
    interpreter = interpreter_of(folder)
    base = python or getattr(sys, "_base_executable", None) or sys.executable

    _step(log, f"creating the virtual environment {folder}", [base, "-m", "venv", str(folder)])
    folder.joinpath("hetens-constraints.txt").write_text(
        "\n".join([f"torch=={torch}", *stack.constraints]) + "\n"
    )
    pip = [str(interpreter), "-m", "pip", "install", "--disable-pip-version-check",
           *(["-q"] if quiet else []), *([] if compile else ["--no-compile"])]
    if stack.with_torch:
        index = torch_index_url or stack.torch_index_url
        _step(log, f"installing torch=={torch}" + (f" from {index}" if index else ""),
              [*pip, *(["--index-url", index] if index else []), f"torch=={torch}"])
    links = [arg for url in (stack.find_links if find_links is None else find_links) for arg in ("-f", url)]
    _step(log, f"installing {' '.join(stack.packages + tuple(extra))}",
          [*pip, "-c", str(folder / "hetens-constraints.txt"), *links, *stack.packages, *extra])
    if stack.no_deps:
        _step(log, f"installing {' '.join(stack.no_deps)} without dependencies",
              [*pip, "--no-deps", *stack.no_deps])
    source = hetens_requirement()
    _step(log, f"installing hetens without dependencies ({' '.join(source)})", [*pip, "--no-deps", *source])
    modules = ", ".join(("hetens.workers.worker_main", "hetens.core.calculator", *stack.imports))
    _step(log, "checking that the member's packages import",
          [str(interpreter), "-I", "-c", f"import {modules}"])
    marker = {
        "name": name,
        "family": family,
        "python": str(interpreter),
        "torch": torch if stack.with_torch else None,
        "packages": list(stack.packages) + list(extra) + list(stack.no_deps),
        "hetens": " ".join(source),
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }
    folder.joinpath(MARKER).write_text(json.dumps(marker, indent=2) + "\n")
    print(f"hetens env: done; members of family {family} can use python={interpreter}", file=log, flush=True)
    return interpreter


def list_environments(prefix: str | os.PathLike | None = None) -> list[dict[str, Any]]:
    """The environments under the root, as written in their ``hetens-env.json`` (complete ones only)."""
    root = environment_root(prefix)
    if not root.is_dir():
        return []
    found = []
    for marker in sorted(root.glob(f"*/{MARKER}")):
        try:
            found.append(json.loads(marker.read_text()))
        except (OSError, ValueError):
            continue
    return found


def hetens_requirement() -> list[str]:
    """pip arguments installing this very hetens into another environment.

    A hetens imported from a source tree (an editable install) is installed
    editable from that tree, so the member environment runs the same code; one
    installed from a local folder is installed from that folder again;
    otherwise the same version from the index.
    """
    from hetens._version import __version__

    root = Path(__file__).resolve().parents[2]  # the tree holding hetens/
    if root.joinpath("pyproject.toml").exists() and root.joinpath("hetens", "workers").is_dir() \
            and "site-packages" not in root.parts:
        return ["-e", str(root)]
    for dist in importlib.metadata.distributions(name="hetens"):
        text = dist.read_text("direct_url.json")
        if not text:
            continue
        url = urllib.parse.urlparse(json.loads(text).get("url", ""))
        path = urllib.parse.unquote(url.path)
        if url.scheme == "file" and Path(path, "pyproject.toml").exists():
            return [path]
    return [f"hetens=={__version__}"]


def _step(log: IO[str], what: str, command: list[str]) -> None:
    """Run one build step, its output going to ``log``; raise with the tail on failure."""
    print(f"hetens env: {what}", file=log, flush=True)
    tail: collections.deque[str] = collections.deque(maxlen=15)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}
    with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                          errors="replace", env=env) as proc:
        for line in proc.stdout:
            tail.append(line.rstrip())
            log.write(line)
        log.flush()
        status = proc.wait()
    if status != 0:
        shown = "\n".join(f"    {line}" for line in tail)
        raise EnvironmentBuildError(
            f"hetens env: {what} failed (exit status {status}).\nCommand: {' '.join(command)}\n"
            f"Last output lines:\n{shown}\nThe unfinished environment is left for inspection; "
            "remove its folder before trying again."
        )


# -- Environments named in specs and ensemble files: python = "env:NAME" ---------------------

#: Prefix of an interpreter given by environment name (``@python=env:NAME``, ``python = "env:NAME"``).
ENV_PREFIX = "env:"


def find_environment(name: str, prefix: str | os.PathLike | None = None) -> dict[str, Any] | None:
    """The complete environment called ``name``, or else the first (by name) built for the
    family ``name``, as its ``hetens-env.json`` says; ``None`` when there is neither."""
    found = list_environments(prefix)
    for entry in found:
        if entry.get("name") == name:
            return entry
    return next((e for e in found if e.get("family") == name), None)


def resolve_interpreter(python: str, member: str = "", prefix: str | os.PathLike | None = None) -> str:
    """``python`` itself, or for ``env:NAME`` the interpreter of that environment (see
    :func:`find_environment`: an environment called NAME, or one built for family NAME).

    Raises:
        MissingFamilyError: no such environment; says how to build it.
    """
    from hetens.errors import MissingFamilyError

    if not python.startswith(ENV_PREFIX):
        return python
    name = python[len(ENV_PREFIX):]
    entry = find_environment(name, prefix)
    if entry is None:
        who = f"member {member}: " if member else ""
        family = name if name in FAMILY_STACKS else "FAMILY"
        raise MissingFamilyError(
            f"{who}python = {python!r} names an environment that is not built under "
            f"{environment_root(prefix)}: build it with 'hetens env create {name} --family {family}' "
            "(or set HETENS_ENV_DIR to where it is)"
        )
    return str(entry["python"])
