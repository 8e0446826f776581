"""Members of an ensemble: an ASE calculator plus what is known about it.

:func:`load_member` turns a spec (``sevenn:7net-0``) into a :class:`Member`
through the family's adapter; :meth:`Member.wrap` adopts any ASE calculator.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hetens.core.device import resolve_device
from hetens.errors import MemberSpecError, UnknownModelError, WeightsUnavailableError
from hetens.families import get_family
from hetens.catalogue.registry import find_model, models_of_family
from hetens.catalogue.spec import MemberSpec, parse_spec, pop_worker_options

__all__ = ["Member", "load_member", "as_member", "ROLES", "check_role"]

#: The roles a member can have: predictors make the returned energy, forces and
#: stress and enter U; witnesses enter U only.
ROLES = ("predictor", "witness")


def check_role(role: str, name: str | None = None) -> str:
    """``role`` itself when it is ``"predictor"`` or ``"witness"``; else a :class:`MemberSpecError`."""
    if role not in ROLES:
        who = f"member {name}: " if name else ""
        raise MemberSpecError(f"{who}role must be 'predictor' or 'witness'; got {role!r}")
    return role


@dataclass
class Member:
    """One member of a heterogeneous ensemble.

    Attributes:
        calculator: the member's ASE calculator.
        name: display name, unique within an ensemble (``sevenn:7net-0``).
        family: adapter family, or ``"ase"`` for a user's own calculator.
        level_of_theory: DFT reference label (``PBE+U``, ``r2SCAN``...; see
            :mod:`hetens.catalogue.registry`), ``"unknown"`` when not declared.
        training_data: data set(s) the model was trained on.
        spec: the spec it was loaded from, ``None`` for a wrapped calculator.
        device: torch device it runs on, ``None`` when not applicable.
        versions: package name -> version, for provenance.
        elements: atomic numbers the model was trained on, ``None`` when not
            known (then not checked). See :meth:`supported_elements`.
        role: ``"predictor"`` (default: enters the returned energy, forces,
            stress and U) or ``"witness"`` (its forces enter U only; see
            docs/witnesses.md).
    """

    calculator: Any
    name: str
    family: str = "ase"
    level_of_theory: str = "unknown"
    training_data: str = "unknown"
    spec: str | None = None
    device: str | None = None
    versions: dict[str, str] = field(default_factory=dict)
    elements: frozenset[int] | None = None
    role: str = "predictor"

    def __post_init__(self) -> None:
        check_role(self.role, self.name)

    @classmethod
    def wrap(
        cls,
        calculator: Any,
        name: str | None = None,
        level_of_theory: str = "unknown",
        training_data: str = "unknown",
        role: str = "predictor",
    ) -> "Member":
        """Adopt any ASE calculator as a member, declaring its level of theory."""
        if not hasattr(calculator, "get_forces") and not hasattr(calculator, "get_property"):
            raise TypeError(
                f"a member must be an ASE calculator (with get_property/get_forces); "
                f"got {type(calculator).__name__}"
            )
        return cls(
            calculator=calculator,
            name=name or type(calculator).__name__,
            level_of_theory=level_of_theory,
            training_data=training_data,
            role=role,
        )

    def supported_elements(self) -> frozenset[int] | None:
        """Atomic numbers the model was trained on, ``None`` when unknown.

        A member in a worker process reports them once its worker runs.
        """
        if self.elements is not None:
            return self.elements
        reported = getattr(self.calculator, "supported_elements", None)
        return frozenset(reported) if reported is not None else None

    def provenance(self) -> dict[str, Any]:
        """JSON-serialisable description, written into output files."""
        return {
            "name": self.name,
            "family": self.family,
            "spec": self.spec,
            "level_of_theory": self.level_of_theory,
            "training_data": self.training_data,
            "versions": dict(self.versions),
            "role": self.role,
        }


def load_member(
    spec: str | MemberSpec, device: str = "auto", *, python: str | None = None, **worker_options: Any
) -> Member:
    """Load a pretrained model as an ensemble member through its family's official loader.

    Args:
        spec: ``FAMILY:MODEL[@HEAD][@KEY=VALUE]`` (see :mod:`hetens.catalogue.spec`), e.g.
            ``sevenn:7net-0``, ``sevenn:7net-mf-0@PBE``, ``chgnet:0.3.0``,
            ``mace:/path/model.model@level=PBE+U``, ``fairchem:uma-s-1p1@omat``;
            ``@role=witness`` makes it a witness (its forces enter U only).
        device: ``"auto"`` (CUDA when available), ``"cpu"``, ``"cuda"``... A
            ``device=`` option in the spec wins.
        python: run the member in its own worker process under this interpreter
            (another virtual environment's ``bin/python``, say); the spec option
            ``@python=PATH`` does the same. See :mod:`hetens.workers`.
        **worker_options: options of :class:`hetens.workers.IsolatedCalculator`
            (``threads``, ``timeout``, ``start_timeout``, ``env``, ``lazy``); any
            of them runs the member in a worker, under this interpreter unless
            ``python`` is given.

    Returns:
        A :class:`Member` with the calculator and its metadata. A member in a
        worker has an :class:`~hetens.workers.IsolatedCalculator`; its
        ``versions`` are those of its environment, filled once the worker runs.

    Raises:
        MemberSpecError: the spec is malformed.
        UnknownModelError: unknown family, model or head.
        MissingFamilyError: the family's package is not installed (names the extra).
        WeightsUnavailableError: hub weights not on this machine and no network.
    """
    parsed = spec if isinstance(spec, MemberSpec) else parse_spec(spec)
    family = get_family(parsed.family)
    known = find_model(parsed.family, parsed.model)
    options = dict(parsed.options)
    level = options.pop("level", None)
    role = check_role(options.pop("role", "predictor"), str(parsed))
    display_name = options.pop("name", None) or parsed.label
    requested_device = options.pop("device", device)
    worker = _pop_worker_options(options, parsed, python, worker_options)
    # A worker resolves "auto" itself: its environment may see a GPU this one does not.
    resolved_device = "auto" if worker and requested_device in (None, "auto") else resolve_device(requested_device)

    if known is None:
        _check_model_name(parsed)
    if level is None:
        level = known.level_for(parsed.head) if known else "unknown"
    model_name = known.name if known else parsed.model
    head = parsed.head or (known.default_head if known else None)

    if worker:
        from hetens.workers.isolated import IsolatedCalculator

        worker_spec = str(MemberSpec(parsed.family, parsed.model, parsed.head, options))
        calculator = IsolatedCalculator(worker_spec, device=resolved_device, member_name=display_name, **worker)
        elements = None  # the worker reports them (Member.supported_elements)
        versions = calculator.versions  # the same dict, filled when the worker is ready
        # Provenance names the interpreter, however it was given.
        parsed = MemberSpec(parsed.family, parsed.model, parsed.head,
                            {**parsed.options, "python": calculator.python})
    else:
        adapter = family.adapter()
        calculator = adapter.load(model_name, head=head, device=resolved_device, options=options)
        versions = adapter.versions()
        elements = adapter.elements(calculator)
    return Member(
        calculator=calculator,
        name=display_name,
        family=parsed.family,
        level_of_theory=level,
        training_data=known.training_data if known else "unknown",
        spec=str(parsed),
        device=resolved_device,
        versions=versions,
        elements=elements,
        role=role,
    )


def _pop_worker_options(
    options: dict[str, str], parsed: MemberSpec, python: str | None, given: dict[str, Any]
) -> dict[str, Any]:
    """Worker settings from the spec's options (removed from ``options``) and the arguments.

    Empty when the member runs in this process.
    """
    found = pop_worker_options(options, str(parsed))
    found.update(given)
    if python is not None:
        found["python"] = python
    if "python" in found:
        from hetens.catalogue.envs import resolve_interpreter

        found["python"] = resolve_interpreter(found["python"], str(parsed))
    return found


def _check_model_name(parsed: MemberSpec) -> None:
    """A model that is not in the registry must be an existing local file or folder, or for
    the ``ase`` family an import path ``MODULE:CLASS`` (its syntax checked here; importing it
    is the loader's job, in the member's own process)."""
    if parsed.family == "ase":
        from hetens.families.ase import parse_import_path

        parse_import_path(parsed.model)
        return
    path = Path(parsed.model).expanduser()
    if path.exists():
        return
    if "/" in parsed.model or path.suffix in (".model", ".pt", ".pth", ".ckpt", ".json"):
        raise WeightsUnavailableError(f"member {parsed}: no file or folder at {path}")
    names = ", ".join(m.name for m in models_of_family(parsed.family))
    raise UnknownModelError(
        f"{parsed.family} has no model {parsed.model!r} and no file of that name exists; "
        f"known {parsed.family} models: {names}; or give a path to a weights file"
    )


def as_member(item: Any, device: str = "auto") -> Member:
    """A :class:`Member` from a Member, a spec string or a plain ASE calculator."""
    if isinstance(item, Member):
        return item
    if isinstance(item, (str, MemberSpec)):
        return load_member(item, device=device)
    return Member.wrap(item)
