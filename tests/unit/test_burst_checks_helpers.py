"""Pure helpers of the dynamic checks: the guest probe's parser and user-data, R6's address classification."""

from __future__ import annotations

import base64
import shutil
import subprocess

import pytest

from conformance.checks.test_public_ip import classify, families_ok
from conformance.dynamic import PROBE_KEYS, parse_probe, probe_complete, probe_user_data_b64

CONSOLE = """[    0.000000] Linux version 6.8
conformance-probe: nproc=8
conformance-probe: memtotal_kb=8123456
cloud-init[812]: conformance-probe: nproc=8
conformance-probe: cpu_model=AMD EPYC 7B13 64-Core Processor
conformance-probe: cpu_mhz=2449.998
conformance-probe: steal_percent=0.4
conformance-probe: bench_score=4120
"""


def test_parse_probe_reads_every_key():
    facts = parse_probe(CONSOLE)
    assert probe_complete(facts)
    assert facts["nproc"] == "8" and facts["cpu_model"] == "AMD EPYC 7B13 64-Core Processor"
    assert facts["cpu_mhz"] == "2449.998" and facts["steal_percent"] == "0.4"
    assert not probe_complete(parse_probe("conformance-probe: nproc=8\n"))
    assert parse_probe("") == {} and parse_probe(None) == {}


def test_user_data_is_a_script_printing_every_key():
    script = base64.b64decode(probe_user_data_b64()).decode()
    assert script.startswith("#!/bin/sh\n") and "conformance-probe" in script
    for key in PROBE_KEYS:
        assert f'"{key}=' in script


@pytest.mark.skipif(not shutil.which("sh"), reason="no sh")
def test_user_data_runs_here(tmp_path):
    """The script is plain POSIX sh over /proc: on this Linux machine it prints a complete probe."""
    script = tmp_path / "probe.sh"
    # A smaller benchmark so the test stays fast; the parsing is what matters.
    script.write_text(base64.b64decode(probe_user_data_b64()).decode().replace("count=512", "count=8"))
    out = subprocess.run(["sh", str(script)], capture_output=True, text=True, timeout=120).stdout
    facts = parse_probe(out)
    assert probe_complete(facts), out
    assert int(facts["nproc"]) >= 1 and int(facts["memtotal_kb"]) > 0
    assert 0.0 <= float(facts["steal_percent"]) <= 100.0


@pytest.mark.parametrize(("addr", "accept", "public", "doc"), [
    ("8.8.8.8", False, True, False),
    ("10.0.0.5", True, False, False),
    ("192.0.2.38", False, False, True),
    ("192.0.2.38", True, True, True),
    ("203.0.113.9", True, True, True),
    ("2001:db8::5", True, True, True),
    ("2001:db8::5", False, False, True),
    ("2a00:1450:4001:81b::200e", False, True, False),
    ("fd00::1", True, False, False),
])
def test_classify(addr, accept, public, doc):
    result = classify(addr, accept)
    assert result["public"] is public and result["documentation"] is doc


def test_families():
    assert families_ok("any", True, False) and families_ok("any", False, True)
    assert not families_ok("any", False, False)
    assert families_ok("both", True, True) and not families_ok("both", True, False)
    assert families_ok("ipv6", False, True) and not families_ok("ipv6", True, False)
