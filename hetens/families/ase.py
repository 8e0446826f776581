"""Any ASE calculator by import path: ``ase:package.module:ClassName@kwarg=value@level=PBE``.

For calculators hetens has no adapter for (as mlipx's ``generic ASE``
entries do). The model part is ``MODULE:ATTRIBUTE``: ``MODULE`` a dotted
module path, ``ATTRIBUTE`` a class (or a factory function returning a
calculator) in it, dotted for a nested attribute (``mod:Outer.Inner``).
The spec's remaining ``KEY=VALUE`` options are the constructor's keyword
arguments, each read as a Python literal where it parses (``2.5``, ``3``,
``True``, ``None``, ``'x'``, ``[1, 2]``; also lower-case ``true``,
``false``, ``none``) and as a plain string otherwise (``cpu``).

The options hetens itself takes are not passed on: ``level``, ``name``,
``role``, ``device`` and the worker options (``python``, ``threads``...).
Without ``@level=`` the member's level of theory is ``unknown``; such a
member is not compared by label, but its energy must pass the ensemble's
energy-reference check (:func:`hetens.core.calculator.check_energy_reference`).

Side effects: the adapter cannot know what a user's package changes, so
it restores what hetens' members share: ``os.environ``, Python's and
NumPy's global random states and, when torch is loaded, torch's default
dtype, float32 matmul precision and random state.
"""

from __future__ import annotations

import ast
import contextlib
import importlib
import importlib.util
import inspect
import os
import sys
from collections.abc import Iterator
from typing import Any

from hetens.errors import MemberSpecError, MissingFamilyError, UnknownModelError

__all__ = ["parse_import_path", "parse_kwargs", "load", "weights_status", "versions", "elements"]

_LITERAL_WORDS = {"true": True, "false": False, "none": None}


def parse_import_path(model: str) -> tuple[str, str]:
    """``"package.module:ClassName"`` -> ``("package.module", "ClassName")``; imports nothing.

    Raises:
        MemberSpecError: not of the form ``MODULE:ATTRIBUTE`` with identifiers.
    """
    module, sep, attribute = model.partition(":")
    parts_ok = all(p.isidentifier() for p in module.split(".")) and all(
        p.isidentifier() for p in attribute.split(".")
    )
    if not sep or not module or not attribute or not parts_ok:
        raise MemberSpecError(
            f"ase member 'ase:{model}': the model must be an import path MODULE:CLASS, e.g. "
            "'ase:ase.calculators.emt:EMT' or 'ase:mypackage.calc:MyCalculator@level=PBE'"
        )
    return module, attribute


def parse_value(text: str) -> Any:
    """One option value: a Python literal where it parses (``2.5``, ``True``, ``None``,
    ``[1, 2]``; lower-case ``true``/``false``/``none`` too), else the string itself."""
    stripped = text.strip()
    if stripped.lower() in _LITERAL_WORDS:
        return _LITERAL_WORDS[stripped.lower()]
    try:
        return ast.literal_eval(stripped)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        return text


def parse_kwargs(options: dict[str, str]) -> dict[str, Any]:
    """The constructor's keyword arguments from the spec's ``KEY=VALUE`` options (see :func:`parse_value`).

    Raises:
        MemberSpecError: a key that is not a Python identifier.
    """
    bad = [k for k in options if not k.isidentifier()]
    if bad:
        raise MemberSpecError(f"ase member option(s) {', '.join(map(repr, bad))} are not Python "
                              "keyword-argument names")
    return {key: parse_value(value) for key, value in options.items()}


def resolve(model: str) -> Any:
    """Import ``MODULE`` and return ``ATTRIBUTE`` (the calculator class or factory).

    Raises:
        MissingFamilyError: the module (or a package it needs) cannot be imported; names it.
        UnknownModelError: the module has no such attribute; lists its calculator classes.
        MemberSpecError: the attribute is not an ASE calculator class nor callable.
    """
    module_name, attribute = parse_import_path(model)
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        missing = getattr(exc, "name", None)
        cause = f"it needs {missing!r}, which is not installed" if missing and missing != module_name \
            else f"{type(exc).__name__}: {exc}"
        raise MissingFamilyError(
            f"ase member 'ase:{model}': cannot import module {module_name!r} ({cause}); install the "
            "package that provides it here, or run the member in an environment that has it "
            "(@python=ENV/bin/python)"
        ) from exc
    target: Any = module
    for part in attribute.split("."):
        if not hasattr(target, part):
            found = ", ".join(calculator_classes(module)) or "none"
            raise UnknownModelError(
                f"ase member 'ase:{model}': module {module_name!r} has no attribute {attribute!r}; "
                f"ASE calculator classes defined there: {found}"
            )
        target = getattr(target, part)
    if inspect.isclass(target):
        if not _is_calculator_class(target):
            raise MemberSpecError(
                f"ase member 'ase:{model}': {module_name}.{attribute} is not an ASE calculator (a "
                "subclass of ase.calculators.calculator.BaseCalculator, or a class with "
                "get_property or implemented_properties and get_forces)"
            )
    elif not callable(target):
        raise MemberSpecError(
            f"ase member 'ase:{model}': {module_name}.{attribute} is a {type(target).__name__}, "
            "not an ASE calculator class or a function returning one"
        )
    return target


def calculator_classes(module) -> list[str]:
    """Names of the ASE calculator classes defined in ``module`` (not merely imported there)."""
    return sorted(
        name for name, value in vars(module).items()
        if inspect.isclass(value) and value.__module__ == module.__name__ and _is_calculator_class(value)
    )


def _is_calculator_class(cls: type) -> bool:
    from ase.calculators.calculator import BaseCalculator

    if issubclass(cls, BaseCalculator):
        return True
    return callable(getattr(cls, "get_property", None)) or (
        hasattr(cls, "implemented_properties") and callable(getattr(cls, "get_forces", None))
    )


def _is_calculator(obj: Any) -> bool:
    return not inspect.isclass(obj) and _is_calculator_class(type(obj))


def accepted_parameters(target: Any) -> set[str] | None:
    """Keyword arguments ``target`` (a class or function) takes; ``None`` when it takes any.

    A class whose constructor takes ``**kwargs`` accepts, by ASE's convention,
    the keys of its ``default_parameters`` plus the named parameters of the
    constructors up its MRO (``label``, ``directory``...). Without
    ``default_parameters`` nothing is known: ``None``.
    """
    try:
        signature = inspect.signature(target)
    except (TypeError, ValueError):
        return None
    named = {p.name for p in signature.parameters.values()
             if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
    if not any(p.kind == p.VAR_KEYWORD for p in signature.parameters.values()):
        return named
    defaults = getattr(target, "default_parameters", None) if inspect.isclass(target) else None
    if not defaults:
        return None
    named |= set(defaults)
    for base in target.__mro__:
        init = vars(base).get("__init__")
        if init is None:
            continue
        try:
            params = inspect.signature(init).parameters.values()
        except (TypeError, ValueError):
            continue
        named |= {p.name for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
    named.discard("self")
    return named


def load(model: str, *, head: str | None, device: str, options: dict[str, str]):
    """The calculator ``MODULE:ATTRIBUTE(**options)`` (options read by :func:`parse_kwargs`).

    ``device`` is not passed on (hetens takes the ``device`` option itself).

    Raises:
        MemberSpecError: a head was given, a malformed import path, an option
            the constructor does not take (listing those it takes), or the
            result is not an ASE calculator.
        MissingFamilyError: the module cannot be imported (named).
        UnknownModelError: no such class in the module.
    """
    if head:
        raise MemberSpecError(f"ase member 'ase:{model}': ASE calculators have no heads; remove "
                              f"'@{head}' (options are KEY=VALUE)")
    kwargs = parse_kwargs(options)
    with contained_side_effects():
        target = resolve(model)
        accepted = accepted_parameters(target)
        unknown = sorted(set(kwargs) - accepted) if accepted is not None else []
        if unknown:
            raise MemberSpecError(
                f"ase member 'ase:{model}': {', '.join(unknown)} "
                f"{'is not a parameter' if len(unknown) == 1 else 'are not parameters'} of "
                f"{model.partition(':')[2]}; it takes: {', '.join(sorted(accepted)) or 'none'}"
            )
        try:
            calculator = target(**kwargs)
        except TypeError as exc:
            raise MemberSpecError(f"ase member 'ase:{model}': {model.partition(':')[2]}"
                                  f"(**{kwargs!r}) failed: {exc}") from exc
    if not _is_calculator(calculator):
        raise MemberSpecError(
            f"ase member 'ase:{model}': calling it returned a {type(calculator).__name__}, not an "
            "ASE calculator"
        )
    return calculator


@contextlib.contextmanager
def contained_side_effects() -> Iterator[None]:
    """Restore ``os.environ``, Python's and NumPy's random states and, when torch is loaded
    (before or during the block), torch's default dtype, float32 matmul precision and random
    state. Torch imported during the block is reset to its import-time defaults
    (float32, ``"highest"``); its random state cannot be known from before its import."""
    import random

    import numpy as np

    environ = dict(os.environ)
    python_random = random.getstate()
    numpy_random = np.random.get_state()
    torch = sys.modules.get("torch")
    torch_state = None
    if torch is not None:
        torch_state = (torch.get_default_dtype(), torch.get_float32_matmul_precision(),
                       torch.random.get_rng_state())
    try:
        yield
    finally:
        for key in set(os.environ) - set(environ):
            del os.environ[key]
        for key, value in environ.items():
            if os.environ.get(key) != value:
                os.environ[key] = value
        random.setstate(python_random)
        np.random.set_state(numpy_random)
        torch = sys.modules.get("torch")
        if torch is not None:
            if torch_state is not None:
                dtype, precision, rng = torch_state
                torch.random.set_rng_state(rng)
            else:
                dtype, precision = torch.float32, "highest"
            torch.set_default_dtype(dtype)
            torch.set_float32_matmul_precision(precision)


def weights_status(model: str) -> str:
    """``shipped`` when the module's top-level package is installed here (the calculator
    brings whatever parameters it has), else ``missing``; imports nothing."""
    module_name, _ = parse_import_path(model)
    top = module_name.split(".")[0]
    return "shipped" if importlib.util.find_spec(top) is not None else "missing"


def versions() -> dict[str, str]:
    """ASE's version."""
    from hetens.families._common import package_versions

    return package_versions("ase")


def elements(calculator) -> frozenset[int] | None:
    """``None``: a generic calculator does not say which elements it supports (unless it has a
    ``supported_elements`` attribute of atomic numbers)."""
    reported = getattr(calculator, "supported_elements", None)
    if reported is None or callable(reported):
        return None
    try:
        return frozenset(int(z) for z in reported)
    except (TypeError, ValueError):
        return None
