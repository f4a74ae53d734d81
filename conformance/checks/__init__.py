"""The conformance checks, collected with `pytest --pyargs conformance.checks`."""
