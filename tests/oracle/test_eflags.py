# SPDX-License-Identifier: GPL-2.0-only
"""The guest's interrupt flag, the seed's eflags divergence (TF/NT/RF/VM
left set for the handler: a difference in profile seed, none in hardened),
and the forced handler CS."""
import pytest

from . import scenarios as S
from .checks import check
from .machine import EFLAGS_IF

pytestmark = pytest.mark.oracle

VIF = S.virtual_if_scenarios()


@pytest.mark.parametrize("scenario", VIF, ids=[s.name for s in VIF])
def test_virtual_interrupt_flag(oracle, scenario):
    comps = check(oracle, scenario)
    for c in comps:
        frame_eflags = c.qemu.frame[2 + (c.delivery.error_code is not None)]
        assert frame_eflags & EFLAGS_IF == scenario.eflags & EFLAGS_IF
        interrupt_gate = scenario.gate_map()[c.delivery.vector].gate_type == 0xE
        assert c.lg.virtual_if == (0 if interrupt_gate else scenario.eflags & EFLAGS_IF)
        assert c.lg.real_if == EFLAGS_IF


DIV = S.seed_divergence_scenarios()


@pytest.mark.parametrize("scenario", DIV, ids=[s.name for s in DIV])
def test_seed_divergence_shows_and_hardened_fixes_it(oracle, scenario):
    seed, hardened = check(oracle, scenario)   # problems() demands the exact bits in seed
    assert seed.diffs and "entry_eflags" in seed.kinds, seed.explain()
    assert not hardened.diffs, hardened.explain()


SEL = S.selector_scenarios()


@pytest.mark.parametrize("scenario", SEL, ids=[s.name for s in SEL])
def test_handler_cs_forced(oracle, scenario):
    for c in check(oracle, scenario):
        assert c.lg.entry["cs"] == 0x61 == c.qemu.entry["cs"]
