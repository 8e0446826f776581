"""Member specs: the strings that name a member, e.g. ``sevenn:7net-mf-0@PBE``.

Grammar::

    FAMILY:MODEL[@HEAD][@KEY=VALUE]...

``MODEL`` is a registry name or a path to a weights file; ``HEAD`` selects a
head, modal or task (``7net-mf-0@PBE``, ``uma-s-1p1@omat``); ``KEY=VALUE``
options are passed on (``level=PBE+U`` to declare the level of theory of a
local file, ``name=...`` for a display name, ``role=witness`` for a member
whose forces enter U only (``role=predictor``, the default, for the usual
member; see docs/witnesses.md), ``dtype=float64``...).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from hetens.errors import MemberSpecError

__all__ = ["MemberSpec", "parse_spec"]


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
