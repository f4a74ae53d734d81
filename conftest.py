"""Repository root: marks the rootdir for pytest runs from a checkout.

The suite's plugin is the `conformance` pytest11 entry point (conformance/plugin.py) of the installed package;
nothing is configured here. The checks run with `pytest --pyargs conformance.checks`, the project's own tests
with `pytest tests`.
"""

# Service code and benchmarks are not test modules.
collect_ignore = ["sandbox", "bench", "reports"]
