# SPDX-License-Identifier: GPL-2.0-only
"""Exceptions: raised by real instructions, and every vector 0-31 (with and
without an error code) raised at an instruction boundary; page faults with
every error-code combination."""
import pytest

from . import scenarios as S
from .checks import check

pytestmark = pytest.mark.oracle

NATIVE = S.native_scenarios()


@pytest.mark.parametrize("scenario,vector", NATIVE, ids=[s.name for s, _ in NATIVE])
def test_real_exception(oracle, scenario, vector):
    comps = check(oracle, scenario)
    d = comps[0].delivery
    # the snippet raised what it is there for (a wrong machine would still
    # compare equal on the wrong event)
    assert (d.vector, d.kind) == (vector, "int" if vector in (3, 4) else "exception")


PF = S.pf_genuine_scenarios()


@pytest.mark.parametrize("scenario,err", PF, ids=[s.name for s, _ in PF])
def test_page_fault_from_the_mmu(oracle, scenario, err):
    comps = check(oracle, scenario)
    d = comps[0].delivery
    assert (d.vector, d.error_code) == (14, err)
    assert comps[0].qemu.frame[0] == err          # the word the CPU pushed


@pytest.mark.parametrize("ring", S.RINGS)
def test_page_fault_every_error_code(oracle, ring):
    for s in S.pf_every_error_code():
        if s.ring == ring:
            comps = check(oracle, s)
            assert comps[0].qemu.frame[0] == s.error_code


@pytest.mark.parametrize("vector", range(32))
def test_every_exception_vector(oracle, vector):
    for s in S.injected_scenarios():
        if s.vector == vector:
            comps = check(oracle, s)
            d = comps[0].delivery
            words = 3 + (d.error_code is not None) + (2 if s.ring == 3 else 0)
            assert len(comps[0].qemu.frame) == words
