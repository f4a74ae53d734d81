"""The report bundle's file names: what the writer (bundle.py), the signer (sign.py), the checker (verify.py)
and the fleet agree on.

Layout of `<report-dir>/<cloud>-<UTC timestamp>/`:
    report.html  results.json  metrics.prom  junit.xml  onboarding/*.yaml  [comparison.txt comparison.json]
    MANIFEST.sha256                         sha256sum format over every other file
    MANIFEST.sha256.sig | MANIFEST.sha256.asc   detached SSH or OpenPGP signature of the manifest
"""

from __future__ import annotations

MANIFEST = "MANIFEST.sha256"
SIGNATURE_FILES = {"ssh": MANIFEST + ".sig", "gpg": MANIFEST + ".asc"}
NOT_HASHED = frozenset({MANIFEST, *SIGNATURE_FILES.values()})
RESULTS = "results.json"
HTML = "report.html"
JUNIT = "junit.xml"
METRICS = "metrics.prom"  # conformance.metrics.prometheus: OpenMetrics text of results.json
ONBOARDING = "onboarding"
