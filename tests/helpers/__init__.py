"""What the project's own tests share: running the suite as a subprocess (suite.py) and reading what a run left in
the sandbox (cloud.py). tests/conftest.py puts tests/ on sys.path: `from helpers.suite import LiveRun`."""
