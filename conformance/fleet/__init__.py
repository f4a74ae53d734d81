"""`python -m conformance fleet`: many runs' bundles as one static site, every cloud and region over time."""
