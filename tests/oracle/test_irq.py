# SPDX-License-Identifier: GPL-2.0-only
"""External interrupts (the timer is IRQ 0): QEMU's do_interrupt_x86_hardirq
against lgcore's interrupt_pending + try_deliver_interrupt, including the
guest's interrupts off (irq_enabled = 0), where the CPU holds the IRQ."""
import pytest

from . import scenarios as S
from .checks import check

pytestmark = pytest.mark.oracle


@pytest.mark.parametrize("irq", range(32))
def test_irq(oracle, irq):
    for s in S.irq_scenarios(irq):
        comps = check(oracle, s)
        held = s.eflags & 0x200 == 0
        assert comps[0].delivery.kind == ("held" if held else "irq"), s.name
        for c in comps:
            assert c.lg.delivered is (not held)
            if held:
                # still pending in lgcore, and the guest told so
                assert c.lg.irq_pending_word == 0x200
