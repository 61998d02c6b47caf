# SPDX-License-Identifier: GPL-2.0-only
"""Run-loop level: a VMM-style loop delivering events (an IRQ raised and
delivered, or a #PF reflected) round robin to 1, 8 and 64 vCPUs: lgcore
from a Python loop, the C original from the same Python loop through cffi,
and lgcore from a Cython loop (what a Cython VMM gets).  The sides of an op
are timed in alternation."""
import pytest

from . import _scenarios as S
from .conftest import Side, run_interleaved

EVENTS_PER_ROUND = 256    # the calibration's start


@pytest.fixture(scope="session")
def loops(ctx):
    rls = {rl.op: rl for rl in S.runloops(ctx)}
    assert list(rls) == S.RUNLOOP_NAMES, "RUNLOOP_NAMES is out of step with runloops()"
    return rls


@pytest.mark.parametrize("op", [pytest.param(op, id=S.ident(op, "rl")) for op in S.RUNLOOP_NAMES])
def test_runloop(benchmark, settings, loops, op):
    rl = loops[op]
    nb = settings.iters(max(1, EVENTS_PER_ROUND // rl.events_per_block))
    fns = {"lgcore": rl.lgcore, "c_original": rl.original, "lgcore_cython": rl.cython}
    run_interleaved(benchmark, settings,
                    {k: Side(f, nb, rl.events_per_block) for k, f in fns.items()},
                    {"tier": "runloop", "op": op, "nvcpu": rl.nvcpu, "event": rl.event})


@pytest.mark.parametrize("op", [pytest.param(op, id=S.ident(op, "rl")) for op in S.RUNLOOP_NAMES])
def test_runloop_same_work(loops, op):
    assert loops[op].check() == []
