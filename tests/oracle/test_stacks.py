# SPDX-License-Identifier: GPL-2.0-only
"""Frames on, across and at page boundaries; and lguest's assumptions about
guest stacks that a CPU does not share (each must show as a difference)."""
import pytest

from . import scenarios as S
from .checks import check

pytestmark = pytest.mark.oracle

STACKS = S.stack_scenarios()


@pytest.mark.parametrize("scenario", STACKS, ids=[s.name for s in STACKS])
def test_stack_near_page_boundary(oracle, scenario):
    check(oracle, scenario)


QUIRKS = S.quirk_scenarios()


@pytest.mark.parametrize("scenario", QUIRKS, ids=[s.quirk for s in QUIRKS])
def test_known_lguest_stack_assumptions_show(oracle, scenario):
    comps = check(oracle, scenario)          # problems() demands the difference
    assert any(c.diffs for c in comps)
    if scenario.quirk == "address_check":
        seed, hardened = comps
        assert seed.lg.dead and "bad write address" in seed.lg.dead
        assert not hardened.diffs, hardened.explain()
