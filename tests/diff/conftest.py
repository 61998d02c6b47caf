# SPDX-License-Identifier: GPL-2.0-only
"""Fixtures of the differential suite, and its session-end summary line:
how many random sequences and operations ran and how many full-state
comparisons found lgcore and the C original different.

``LGCORE_DIFF_STATS=path`` also writes the numbers to ``path`` as JSON.
"""
from __future__ import annotations

import json
import os
import time

import pytest

from .harness import STATS, Pair

_T0 = time.monotonic()


@pytest.fixture(scope="session")
def pair(reference):
    """One lgcore guest and one guest of the C original, kept in lockstep."""
    return Pair(reference)


def pytest_terminal_summary(terminalreporter):
    if not STATS.comparisons:
        return
    line = (f"lgcore differential: {STATS.sequences:,} sequences, "
            f"{STATS.operations:,} operations, {STATS.comparisons:,} full-state "
            f"comparisons, {STATS.mismatches:,} mismatching"
            + (f" (+{STATS.known_mismatches:,} expected: deliberately broken lgcore)"
               if STATS.known_mismatches else ""))
    terminalreporter.write_sep("-", "lgcore vs the C original")
    terminalreporter.write_line(line)
    if STATS.by_op:
        terminalreporter.write_line("  per operation: " + ", ".join(
            f"{name} {count:,}" for name, count in sorted(STATS.by_op.items())))
    path = os.environ.get("LGCORE_DIFF_STATS")
    if path:
        with open(path, "w") as f:
            json.dump({"sequences": STATS.sequences, "operations": STATS.operations,
                       "comparisons": STATS.comparisons, "mismatches": STATS.mismatches,
                       "known_mismatches": STATS.known_mismatches,
                       "by_op": STATS.by_op,
                       "examples_setting": os.environ.get("LGCORE_DIFF_EXAMPLES"),
                       "seed": os.environ.get("LGCORE_DIFF_SEED"),
                       "wall_seconds": round(time.monotonic() - _T0, 1)}, f, indent=1)
