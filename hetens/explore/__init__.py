"""Exploration campaigns: ``hetens explore``.

One monitored MD per (structure, condition), locally one after another or on
a Dask cluster, resumable; candidates of all runs collected into one
deduplicated ``candidates.extxyz`` with provenance. See docs/exploration.md.

- :func:`run_campaign`: run or resume a campaign.
- :class:`Condition`, :func:`condition_grid`, :func:`conditions_from_list`: the conditions.
- :class:`ExploreSettings`: the MD and monitoring every run shares.
- :func:`select_distinct`, :func:`rdf_fingerprint`: near-duplicate removal.
"""

from __future__ import annotations

from hetens.explore.campaign import CampaignResult, ExploreSettings, read_structures, run_campaign
from hetens.explore.conditions import Condition, condition_grid, conditions_from_list
from hetens.explore.dedup import rdf_fingerprint, select_distinct

__all__ = [
    "CampaignResult",
    "Condition",
    "ExploreSettings",
    "condition_grid",
    "conditions_from_list",
    "rdf_fingerprint",
    "read_structures",
    "run_campaign",
    "select_distinct",
]
