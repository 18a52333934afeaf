"""Settings shared by the fuzz tests (test_fuzz_*.py).

Each test runs a modest number of examples so the whole set stays a few seconds; set
FUZZ_N (e.g. FUZZ_N=2000) to search deeper by hand.  No deadline: a slow example on a
busy machine is not a failure.
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

FUZZ = settings(max_examples=int(os.environ.get("FUZZ_N", 100)), deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
