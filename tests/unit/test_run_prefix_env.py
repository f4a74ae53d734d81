"""CONFORMANCE_RUN_PREFIX: a caller (the Zuul job) names the run, so its cleanup can find the run's resources."""

from __future__ import annotations

import pytest

from conformance.parts import dynamic
from conformance.resources import prefix_of


def test_given_prefix_names_the_run(monkeypatch):
    monkeypatch.setenv("CONFORMANCE_RUN_PREFIX", "conformance-20261129T040000Z-9f3a0c")
    assert dynamic._chosen_run_prefix() == "conformance-20261129T040000Z-9f3a0c"


def test_without_it_every_run_gets_a_new_prefix(monkeypatch):
    monkeypatch.delenv("CONFORMANCE_RUN_PREFIX", raising=False)
    first, second = dynamic._chosen_run_prefix(), dynamic._chosen_run_prefix()
    assert prefix_of(first) == first and first != second


@pytest.mark.parametrize(
    "value", ["conformance-tomorrow", "conformance-20261129T040000Z-9f3a0c-extra", "other-20261129T040000Z-9f3a0c"]
)
def test_anything_else_is_a_usage_error(monkeypatch, value):
    monkeypatch.setenv("CONFORMANCE_RUN_PREFIX", value)
    with pytest.raises(pytest.UsageError, match="is not a run prefix"):
        dynamic._chosen_run_prefix()
