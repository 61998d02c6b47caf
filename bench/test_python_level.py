# SPDX-License-Identifier: GPL-2.0-only
"""Python level: each public call of lgcore against the C original called
from Python through cffi (API mode) and through ctypes, and against an empty
method of a Cython class (the floor).  One timed call runs ``nblocks``
blocks of UNROLL calls; the twin loop without the calls (loop step + rearm)
is timed too (same nblocks) and subtracted by the summary.  The sides of an
op are timed in alternation."""
from . import _scenarios as S
from .conftest import Side, run_interleaved

NBLOCKS = 4           # x UNROLL (32) calls: the calibration's start


def _ops():
    try:
        specs = S.cached_py_specs()
    except Exception:      # reported by the ctx fixture as a skip/failure
        return {}
    ops: dict[str, list] = {}
    for spec in specs:
        ops.setdefault(spec.op, []).append(spec)
    return ops


def pytest_generate_tests(metafunc):
    if "py_op" in metafunc.fixturenames:
        ops = _ops()
        metafunc.parametrize("py_op", list(ops), ids=[S.ident(op, "py") for op in ops])


def test_python_level(benchmark, settings, ctx, py_op):
    specs = _ops()[py_op]
    sides = {s.side: Side(s.runner(), settings.iters(NBLOCKS), S.UNROLL, baseline=s.baseline())
             for s in specs}
    lg = next(s for s in specs if s.side == "lgcore")
    run_interleaved(benchmark, settings, sides,
                    {"tier": "python", "op": py_op, "kind": lg.kind, "note": lg.note})
