# SPDX-License-Identifier: GPL-2.0-only
"""Sizes for the stress, timer and leak suites.

``make test`` runs them reduced (well under a minute for tests/stress).
LGCORE_STRESS_FULL=1 runs the injection stress at the issue's size (4 device
threads x 1,000,000 raises, 1 and 8 vCPUs); LGCORE_LEAK_FULL=1 runs the leak
suite at 10,000,000 deliveries and 100,000 guests.  Each long test prints a
one-line summary (run pytest with -s to see it).
"""
import os
import sys

import pytest

STRESS_FULL = os.environ.get("LGCORE_STRESS_FULL") == "1"
LEAK_FULL = os.environ.get("LGCORE_LEAK_FULL") == "1"


@pytest.fixture
def fast_switching():
    """Hand the GIL over every 20 us instead of every 5 ms, so Python-level
    threads interleave between almost every pair of engine calls."""
    old = sys.getswitchinterval()
    sys.setswitchinterval(2e-5)
    try:
        yield
    finally:
        sys.setswitchinterval(old)


def summary(line: str) -> None:
    """Print a figure the issue asks to record, visible with pytest -s and
    also kept in LGCORE_STRESS_LOG when that names a file."""
    print(f"\n[stress] {line}")
    path = os.environ.get("LGCORE_STRESS_LOG")
    if path:
        with open(path, "a", encoding="utf-8") as fh:
            fh.write(line + "\n")
