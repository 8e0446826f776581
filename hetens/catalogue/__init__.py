"""What models exist and where they run: the catalogue, read before any model is loaded.

- :mod:`~hetens.catalogue.spec`: the member spec grammar (``family:model@k=v``), parsed once.
- :mod:`~hetens.catalogue.registry`: the known models (family, level of theory, elements).
- :mod:`~hetens.catalogue.availability`: which families and models can run here.
- :mod:`~hetens.catalogue.envs`: per-family Python environments (``hetens env``).
- :mod:`~hetens.catalogue.models_table`: the rows ``hetens models`` prints.
- :mod:`~hetens.catalogue.presets`: the shipped ensemble files (package data).

This package imports nothing at import time; see docs/architecture.md.
"""
