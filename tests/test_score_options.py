"""ScoreOptions: one options object for every scoring entry point, its defaults the modules' constants."""

from __future__ import annotations

import dataclasses

import pytest

from hetens.rescore.batches import DEFAULT_BATCH_SIZE, DEFAULT_CHUNK_SIZE, DEFAULT_MAX_BATCH_ATOMS
from hetens.rescore.options import DEFAULT_CLUSTER, ScoreOptions
from hetens.rescore.precomputed import DEFAULT_POSITION_TOL


def test_defaults_are_the_modules_constants():
    options = ScoreOptions()
    assert options.position_tol == DEFAULT_POSITION_TOL
    assert options.batch_size == DEFAULT_BATCH_SIZE
    assert options.max_batch_atoms == DEFAULT_MAX_BATCH_ATOMS
    assert options.chunk_size == DEFAULT_CHUNK_SIZE
    assert options.cluster == DEFAULT_CLUSTER
    assert options.error_reference == "returned"


def test_resolve_applies_overrides_to_the_options_given():
    base = ScoreOptions(batch_size=4, progress="off")
    resolved = ScoreOptions.resolve(base, {"index": "::2"})
    assert (resolved.batch_size, resolved.progress, resolved.index) == (4, "off", "::2")
    assert ScoreOptions.resolve(base, {}) is base
    assert ScoreOptions.resolve(None, {"jobs": 3}) == dataclasses.replace(ScoreOptions(), jobs=3)


def test_resolve_refuses_a_keyword_that_is_no_option():
    with pytest.raises(TypeError, match=r"unknown scoring option\(s\) batchsize; the options are: index, "):
        ScoreOptions.resolve(None, {"batchsize": 4})


def test_bad_values_are_refused_when_the_options_are_made():
    with pytest.raises(ValueError, match="error_reference must be one of returned, member_mean; got 'mean'"):
        ScoreOptions(error_reference="mean")
    with pytest.raises(ValueError, match="batch size must be at least 1; got 0"):
        ScoreOptions.resolve(None, {"batch_size": 0})
