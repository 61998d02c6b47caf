# SPDX-License-Identifier: GPL-2.0-only
"""The oracle must fail on a wrong frame: two words of lgcore's frame
swapped in guest RAM right after lgcore built it (as a wrong push order
would leave them) must show as frame differences -- and the guest
handler's `iret` must then come back wrong.

(For the same check against a really mis-built engine, see
``mutant_check.py`` in this folder: it builds a copy of lgcore whose
set_guest_interrupt pushes eip before cs and runs ``pytest -m oracle``
against it, which must fail.)
"""
import pytest

from . import scenarios as S
from .oracle import problems

pytestmark = pytest.mark.oracle

CASES = [
    S.Scenario("int $0x80 ring 3", "native", "int80", ring=3, gates=((0x80, S.Gate(0xF, 3)),)),
    S.Scenario("#GP ring 1 (error code)", "native", "load_ds_gp", ring=1),
    S.Scenario("#PF ring 3 (error code)", "native", "write_np", ring=3),
    S.Scenario("timer IRQ ring 1", "irq", "trigger", ring=1, vector=32),
]
# (i, j): swap frame words i and j -- frames read from the handler's esp up
SWAPS = {
    "eip<->cs": lambda f, err: (err + 0, err + 1),
    "cs<->eflags": lambda f, err: (err + 1, err + 2),
    "err<->eip": lambda f, err: (0, 1),
    "esp<->ss": lambda f, err: (len(f) - 2, len(f) - 1),
}


def _swapper(which):
    def tamper(words, err):
        i, j = SWAPS[which](words, err)
        words[i], words[j] = words[j], words[i]
        return words
    return tamper


def _has_err(s):
    return int(s.snippet in ("load_ds_gp", "write_np"))


PAIRS = [(s, w) for s in CASES for w in sorted(SWAPS)
         if (w != "err<->eip" or _has_err(s)) and (w != "esp<->ss" or s.ring == 3)]


@pytest.mark.parametrize("scenario,which", PAIRS, ids=[f"{s.name}: {w}" for s, w in PAIRS])
def test_swapped_frame_words_are_caught(oracle, scenario, which):
    err = _has_err(scenario)
    oracle.tamper_lgcore_frame = lambda words: _swapper(which)(words, err)
    try:
        comps = oracle.compare_profiles(scenario)
    finally:
        oracle.tamper_lgcore_frame = None
    for c in comps:
        assert "frame_word" in c.kinds, c.explain()
        assert problems(c), "a swapped frame was accepted"
        # the guest's own iret consumed the wrong frame
        assert c.kinds & {"after_outcome", "after_reg", "after_cpl", "after_eflags"}, c.explain()
    # and without the tampering the same scenario is clean
    assert not any(problems(c) for c in oracle.compare_profiles(scenario))
