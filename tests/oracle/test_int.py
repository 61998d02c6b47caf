# SPDX-License-Identifier: GPL-2.0-only
"""Software INT for every vector, from ring 3 and ring 1, through gates of
DPL 0, 1 and 3 -- the CPU's privilege check decides between the gate and
#GP(vector*8+2)."""
import pytest

from . import scenarios as S
from .checks import check
from .machine import ERR_VECTORS

pytestmark = pytest.mark.oracle


@pytest.mark.parametrize("vector", range(256), ids=[f"int_{v:#04x}" for v in range(256)])
def test_software_int(oracle, vector):
    for s in S.int_scenarios(vector):
        comps = check(oracle, s)
        d = comps[0].delivery
        dpl = s.gate_map()[vector].dpl
        if dpl < s.ring:
            assert (d.vector, d.error_code) == (13, vector * 8 + 2), s.name
        else:
            assert (d.vector, d.kind, d.error_code) == (vector, "int", None), s.name
            if vector in ERR_VECTORS:
                # the quirk shows: lgcore pushed one word more than the CPU
                assert len(comps[0].lg.frame) == len(comps[0].qemu.frame) + 1
