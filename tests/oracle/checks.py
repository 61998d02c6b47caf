# SPDX-License-Identifier: GPL-2.0-only
"""Shared assertions and the session's counters (reported by conftest's
terminal summary)."""
from __future__ import annotations

from dataclasses import dataclass

from .oracle import Comparison, problems


@dataclass
class Stats:
    scenarios: int = 0        # fixed scenarios: one QEMU delivery each
    random: int = 0           # random (hypothesis) cases: one QEMU delivery each
    lgcore_runs: int = 0      # lgcore deliveries compared (one per profile)
    with_diffs: int = 0       # comparisons that showed an explained difference


STATS = Stats()


def check(oracle, scenario, *, random: bool = False, profiles=("seed", "hardened")) -> list[Comparison]:
    """Compare ``scenario`` in every profile; fail with the full story if
    anything differs that is not explained."""
    comps = oracle.compare_profiles(scenario, profiles)
    if random:
        STATS.random += 1
    else:
        STATS.scenarios += 1
    STATS.lgcore_runs += len(comps)
    bad = []
    for c in comps:
        p = problems(c)
        if c.diffs and not p:
            STATS.with_diffs += 1
        if p:
            bad.append(c.explain() + "\n  unexplained or missing:" + "".join(f"\n    * {x}" for x in p))
    assert not bad, "\n".join(bad)
    return comps
