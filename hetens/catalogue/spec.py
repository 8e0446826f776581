"""Member specs: the strings that name a member, e.g. ``sevenn:7net-mf-0@PBE``.

Grammar::

    FAMILY:MODEL[@HEAD][@KEY=VALUE]...

``MODEL`` is a registry name or a path to a weights file; ``HEAD`` selects a
head, modal or task (``7net-mf-0@PBE``, ``uma-s-1p1@omat``); ``KEY=VALUE``
options are passed on (``level=PBE+U`` to declare the level of theory of a
local file, ``name=...`` for a display name, ``role=witness`` for a member
whose forces enter U only (``role=predictor``, the default, for the usual
member; see docs/witnesses.md), ``dtype=float64``...).

Some options configure the member's worker process rather than the model
(:data:`WORKER_OPTIONS`: ``@python=/envs/x/bin/python@threads=1@timeout=120``);
:func:`pop_worker_options` takes them out and types them (see
:mod:`hetens.workers`).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from typing import Any

from hetens.errors import MemberSpecError

__all__ = ["MemberSpec", "parse_spec", "as_spec", "WORKER_OPTIONS", "pop_worker_options", "as_worker_spec"]

#: Spec options (``@key=value``) that configure the worker process rather
#: than the model, with their types: ``@python=/envs/x/bin/python@threads=1@timeout=120``.
WORKER_OPTIONS: dict[str, type] = {
    "python": str,
    "threads": int,
    "timeout": float,
    "start_timeout": float,
    "lazy": bool,
}


@dataclass(frozen=True)
class MemberSpec:
    """A parsed member spec. ``options`` holds the ``KEY=VALUE`` parts as strings."""

    family: str
    model: str
    head: str | None = None
    options: dict[str, str] = field(default_factory=dict)

    def __str__(self) -> str:
        text = f"{self.family}:{self.model}"
        if self.head:
            text += f"@{self.head}"
        for key, value in self.options.items():
            text += f"@{key}={value}"
        return text

    @property
    def label(self) -> str:
        """Short display name: ``family:model[@head]``, or the ``name=`` option."""
        if "name" in self.options:
            return self.options["name"]
        return f"{self.family}:{self.model}" + (f"@{self.head}" if self.head else "")


def parse_spec(text: str) -> MemberSpec:
    """Parse ``FAMILY:MODEL[@HEAD][@KEY=VALUE]...`` into a :class:`MemberSpec`.

    Raises:
        MemberSpecError: the text has no family, no model, two heads, or an
            option without a key.
    """
    if not isinstance(text, str):
        raise MemberSpecError(f"a member spec must be a string like 'sevenn:7net-0'; got {text!r}")
    stripped = text.strip()
    family, sep, rest = stripped.partition(":")
    if not sep or not family or not rest:
        raise MemberSpecError(
            f"member spec {text!r} must look like FAMILY:MODEL[@HEAD], e.g. 'sevenn:7net-0', "
            "'chgnet:0.3.0' or 'mace:/path/to/model.model'"
        )
    model, *parts = rest.split("@")
    if not model:
        raise MemberSpecError(f"member spec {text!r} names no model after '{family}:'")
    head = None
    options: dict[str, str] = {}
    for part in parts:
        if "=" in part:
            key, _, value = part.partition("=")
            if not key or not value:
                raise MemberSpecError(f"member spec {text!r}: option {part!r} must be KEY=VALUE")
            if key == "role" and value not in ("predictor", "witness"):
                raise MemberSpecError(
                    f"member spec {text!r}: role must be 'predictor' or 'witness'; got {value!r}"
                )
            options[key] = value
        elif head is None and part:
            head = part
        else:
            raise MemberSpecError(
                f"member spec {text!r} has more than one head ({head!r} and {part!r})"
            )
    return MemberSpec(family=family.lower(), model=model, head=head, options=options)


def as_spec(item: Any) -> Any:
    """``item`` parsed when it is spec text (a :class:`MemberSpec`); anything else unchanged.

    The one place a member given as text is parsed: the factory and the
    calculator call it once per member and pass the :class:`MemberSpec` on
    (to the role count, :func:`as_worker_spec` and ``load_member``).
    """
    return parse_spec(item) if isinstance(item, str) else item


def pop_worker_options(options: dict[str, str], spec: str) -> dict[str, Any]:
    """Remove the :data:`WORKER_OPTIONS` from a spec's ``options`` and convert them.

    Args:
        options: the spec's ``KEY=VALUE`` options (modified in place).
        spec: the spec text, for messages.

    Returns:
        The worker options found, typed (``threads`` int, ``timeout`` float or
        ``None`` for ``none``, ``lazy`` bool...).

    Raises:
        MemberSpecError: a value of the wrong form, naming the spec and option.
    """
    found: dict[str, Any] = {}
    for key, kind in WORKER_OPTIONS.items():
        if key in options:
            found[key] = _convert(options.pop(key), kind, key, spec)
    return found


def _convert(text: str, kind: type, key: str, spec: str) -> Any:
    value = text.strip()
    if kind is str:
        return value
    if kind is bool:
        if value.lower() in ("1", "true", "yes", "on"):
            return True
        if value.lower() in ("0", "false", "no", "off"):
            return False
        raise MemberSpecError(f"member spec {spec!r}: option {key}={text!r} must be true or false")
    if kind is float and value.lower() in ("none", "inf"):
        return None
    try:
        number = kind(value)
    except ValueError:
        number = None
    if number is None or number <= 0:
        what = "a positive integer" if kind is int else "a positive number of seconds (or none)"
        raise MemberSpecError(f"member spec {spec!r}: option {key}={text!r} must be {what}")
    return number


def as_worker_spec(item: Any, python: str | None = None) -> Any:
    """A spec that runs in a worker: ``item`` with ``@python=`` added when it has none.

    ``python`` defaults to this interpreter. Anything but a spec (a Member, a
    calculator: already loaded in this process) is returned unchanged: it
    stays in-process.
    """
    if not isinstance(item, (str, MemberSpec)):
        return item
    parsed = item if isinstance(item, MemberSpec) else parse_spec(item)
    if "python" in parsed.options:
        return parsed
    options = {**parsed.options, "python": python or sys.executable}
    return MemberSpec(parsed.family, parsed.model, parsed.head, options)
