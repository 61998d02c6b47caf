# SPDX-License-Identifier: GPL-2.0-only
"""Runs under ``valgrind --tool=callgrind`` (started by bench/callgrind.py):
every measured operation n and 2n times, each run bracketed by callgrind
client requests (zero, then dump under a label), so that
``(count(2n) - count(n)) / n`` is the instructions of one operation with the
fixed costs (the Python call that starts the loop, the dump itself)
cancelled.  For the Python tier the loop-and-rearm twin is counted the same
way and subtracted, exactly as for the timings.

Usage: python -m bench._cg_driver TIER N  (TIER: c, python, runloop)
Prints one JSON line per label to stdout ({"label", "n" blocks, "per" ops
per block}) so the parent knows
what to expect; the counts themselves are in callgrind's dump files.
"""
from __future__ import annotations

import json
import sys

from . import _scenarios as S


def _measure(cl, label: str, fn, n: int, per: int = 1) -> None:
    fn(n)                         # warm: the specialising interpreter settles
    for mult in (1, 2):
        tag = f"{label}|{mult}"
        cl.cg_zero()
        fn(n * mult)
        cl.cg_dump(tag)
        print(json.dumps({"label": tag, "n": n * mult, "per": per}), flush=True)


def main(argv: list[str]) -> int:
    tier, n = argv[0], int(argv[1])
    only = set(argv[2:])
    ctx = S.context()
    cl = ctx.cl
    if tier == "c":
        for op in S.c_ops(ctx, scale=0.0):
            if only and op.op not in only:
                continue
            _measure(cl, f"c|{op.op}|lgcore", op.lgcore, n)
            _measure(cl, f"c|{op.op}|c_original", op.original, n)
            for name, fn in op.extra.items():
                _measure(cl, f"c|{op.op}|{name}", fn, n)
    elif tier == "python":
        nb = max(1, n // S.UNROLL)
        for spec in S.py_specs(ctx):
            if only and spec.op not in only:
                continue
            _measure(cl, f"python|{spec.op}|{spec.side}", spec.runner(), nb, S.UNROLL)
            _measure(cl, f"python|{spec.op}|{spec.side}|baseline", spec.baseline(), nb, S.UNROLL)
    elif tier == "runloop":
        for rl in S.runloops(ctx):
            if only and rl.op not in only:
                continue
            nb = max(1, n // rl.events_per_block)
            per = rl.events_per_block
            _measure(cl, f"runloop|{rl.op}|lgcore", rl.lgcore, nb, per)
            _measure(cl, f"runloop|{rl.op}|c_original", rl.original, nb, per)
            _measure(cl, f"runloop|{rl.op}|lgcore_cython", rl.cython, nb, per)
    else:
        raise SystemExit(f"unknown tier {tier!r}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
