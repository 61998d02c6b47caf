# SPDX-License-Identifier: GPL-2.0-only
"""C level: lgcore's nogil engine driven from a compiled Cython loop
(bench/_cloops.pyx, cimporting lgcore like an outside VMM) against the C
original driven from its compiled C loops (kshim_bench_* in
include/kshim/kshim_glue.c).  One timed call runs ``n`` iterations; the
summary divides by n.  The sides of an op are timed in alternation."""
import pytest

from . import _scenarios as S
from .conftest import Side, run_interleaved


@pytest.fixture(scope="session")
def c_ops(ctx, settings):
    ops = {o.op: o for o in S.c_ops(ctx)}
    assert [o for o, _ in S.C_OP_NAMES] == list(ops), "C_OP_NAMES is out of step with c_ops()"
    return ops


@pytest.mark.parametrize("op", [pytest.param(op, id=S.ident(op, "c")) for op, _ in S.C_OP_NAMES])
def test_c_level(benchmark, settings, c_ops, op):
    o = c_ops[op]
    n0 = settings.iters(o.n // 100)
    fns = {"lgcore": o.lgcore, "c_original": o.original, **o.extra}
    run_interleaved(benchmark, settings, {k: Side(f, n0, 1) for k, f in fns.items()},
                    {"tier": "c", "op": op, "note": o.note})


@pytest.mark.parametrize("op", [pytest.param(op, id=S.ident(op, "c")) for op, _ in S.C_OP_NAMES])
def test_same_work(c_ops, op):
    """Both sides end in the same state: same registers, IDT, RAM, pending
    word and kill reason (the loops restore their start state before each
    iteration, so any number of iterations ends where one does)."""
    o = c_ops[op]
    o.lgcore(3)
    o.original(3)
    for fn in o.extra.values():
        fn(3)
    assert o.check() == []
