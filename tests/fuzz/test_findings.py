# SPDX-License-Identifier: GPL-2.0-only
"""Findings of the fuzzing work that are not divergences (fuzz/known.py).

F1 (fixed): SET_STACK with a bad page count (anything above 2 kills the
guest) went on to pin every one of the pages, as lguest did: up to
2**32 - 1 calls of pin_page() from Python, a guest-made hang of the host
thread found as a libFuzzer timeout.  lgcore now stops once the guest is
dead (what a further pin_page() does cannot be seen: the first kill reason
sticks).  The hypercall must return within a few seconds, paging on or off.
"""
from __future__ import annotations

import subprocess
import sys

import pytest

from .conftest import ROOT

BOUND_S = 20


@pytest.mark.parametrize("paging", [False, True])
def test_set_stack_with_a_huge_page_count_returns(paging):
    code = f"""
import lgcore
from lgcore import runloop
g = lgcore.Guest(bytearray(1 << 16))
cpu = g.add_vcpu()
cpu.paging = {paging}
cpu.pgdir = 0x1000
g.lguest_data = 0x2000
cpu.eax, cpu.ebx, cpu.ecx, cpu.edx = 7, 0x69, 0x8000, 0xFFFFFFFF   # SET_STACK
runloop.do_hypercalls(cpu)
assert g.dead == "bad stack pages 4294967295", g.dead
assert g.stack_pages == 0xFFFFFFFF and cpu.esp1 == 0x8000
"""
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                          text=True, timeout=BOUND_S)
    assert proc.returncode == 0, proc.stderr
