# SPDX-License-Identifier: GPL-2.0-only
"""pytest-benchmark set-up for the three tiers (outside the default test run:
pyproject's testpaths is tests/; run with ``pytest bench`` or
``python bench/run_all.py``).

Each benchmark's work per round is calibrated to about LGCORE_BENCH_ROUND_MS
(1 ms): short rounds are rarely preempted on a busy machine, so their
median is the undisturbed cost.

Environment:
  LGCORE_BENCH_ROUNDS   timed rounds per benchmark (default 100)
  LGCORE_BENCH_ROUND_MS target duration of one round in ms (default 1)
  LGCORE_BENCH_SCALE    multiplier on the work per round (default 1)
  LGCORE_BENCH_QUICK=1  one round of a few iterations: checks that every
                        benchmark runs, measures nothing (CI)
  LGCORE_BENCH_CPU      pin the process to this CPU (default: the last one
                        on machines with 4 or more CPUs, none on smaller
                        ones, where the scheduler's choice beats a busy CPU;
                        "none" to leave it alone)
"""
from __future__ import annotations

import gc
import os
import time

import pytest

from . import _scenarios as S


def pytest_configure(config):
    cpu = os.environ.get("LGCORE_BENCH_CPU", "")
    if cpu.lower() != "none" and hasattr(os, "sched_setaffinity"):
        try:
            allowed = sorted(os.sched_getaffinity(0))
            if not cpu and len(allowed) < 4:
                return
            target = int(cpu) if cpu else allowed[-1]
            if target in allowed:
                os.sched_setaffinity(0, {target})
        except (OSError, ValueError):
            pass


class Settings:
    def __init__(self) -> None:
        self.quick = S.quick()
        self.rounds = 1 if self.quick else int(os.environ.get("LGCORE_BENCH_ROUNDS", "100"))
        self.warmup = 0 if self.quick else 3
        self.scale = float(os.environ.get("LGCORE_BENCH_SCALE", "1"))
        self.round_s = float(os.environ.get("LGCORE_BENCH_ROUND_MS", "1")) / 1000 * self.scale

    def iters(self, n: int) -> int:
        """A starting argument for calibration (2 in quick mode)."""
        return 2 if self.quick else max(1, n)

    def calibrate(self, fn, arg: int) -> int:
        """The argument that makes one call of fn last about round_s."""
        if self.quick:
            return arg
        fn(arg)
        for _ in range(20):
            t = min(_time(fn, arg) for _ in range(3))
            if t >= self.round_s * 0.5:
                break
            arg = max(arg + 1, int(arg * min(16.0, self.round_s / max(t, 1e-7))))
        t = min(_time(fn, arg) for _ in range(3))
        return max(1, int(arg * self.round_s / max(t, 1e-7)))


def _time(fn, arg) -> float:
    t0 = time.perf_counter()
    fn(arg)
    return time.perf_counter() - t0


@pytest.fixture(scope="session")
def settings() -> Settings:
    return Settings()


def _context():
    try:
        return S.context()
    except Exception as exc:  # the original or the loops could not be built
        if os.environ.get("LGCORE_REQUIRE_C_ORIGINAL") == "1":
            pytest.fail(f"LGCORE_REQUIRE_C_ORIGINAL=1 but the bench context failed: {exc}",
                        pytrace=False)
        pytest.skip(f"benchmarks unavailable: {exc}")


@pytest.fixture(scope="session")
def ctx():
    return _context()


class Side:
    """One side of a comparison: ``fn(arg)`` does ``arg * per_arg``
    operations; ``baseline(arg)`` (optional) is its loop twin without the
    operations, subtracted by the summary; ``fn.reset`` (optional) is called
    before each timed call, outside the timed region."""

    def __init__(self, fn, arg: int, per_arg: int, baseline=None) -> None:
        self.fn, self.arg, self.per_arg, self.baseline = fn, arg, per_arg, baseline
        self.reset = getattr(fn, "reset", None)
        self.loop = getattr(fn, "loop", fn)
        self.times: list[float] = []
        self.base_times: list[float] = []


def run_interleaved(benchmark, settings: Settings, sides: dict[str, Side], info: dict) -> None:
    """Time every side of one op in alternation, round after round (the
    order rotating), so that a change in the machine's load hits all sides
    alike; the ratios come from these interleaved rounds.  pytest-benchmark
    drives the rounds (warm-up, GC off) and its own figure for the test is
    the whole round; the per-side medians and minimums go into extra_info
    ("sides"), which the summary reads."""
    gc.collect()
    for sd in sides.values():
        sd.arg = settings.calibrate(sd.fn, sd.arg)
        if sd.baseline is not None:
            sd.baseline(sd.arg)
    names = list(sides)
    turn = [0]

    def one_round() -> None:
        k = turn[0]
        turn[0] += 1
        for name in names[k % len(names):] + names[:k % len(names)]:
            sd = sides[name]
            if sd.reset is not None:
                sd.reset()
            t0 = time.perf_counter()
            sd.loop(sd.arg)
            sd.times.append(time.perf_counter() - t0)
            if sd.baseline is not None:
                t0 = time.perf_counter()
                sd.baseline(sd.arg)
                sd.base_times.append(time.perf_counter() - t0)

    benchmark.extra_info.update(info)
    benchmark.pedantic(one_round, rounds=settings.rounds, warmup_rounds=settings.warmup,
                       iterations=1)
    skip = settings.warmup           # the warm-up rounds ran one_round too
    out = {}
    for name, sd in sides.items():
        ts = sorted(sd.times[skip:] or sd.times)
        bs = sorted(sd.base_times[skip:] or sd.base_times)
        out[name] = {
            "median_s": ts[len(ts) // 2], "min_s": ts[0], "rounds": len(ts),
            "per": sd.arg * sd.per_arg, "arg": sd.arg,
            "baseline_s": bs[len(bs) // 2] if bs else 0.0,
        }
    benchmark.extra_info["sides"] = out
