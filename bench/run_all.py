# SPDX-License-Identifier: GPL-2.0-only
"""Run every benchmark tier and write bench/results/summary.{json,md} and
bench/results/ratios.png (``make bench`` calls this).

  python bench/run_all.py                 full run (timings, then callgrind)
  python bench/run_all.py --quick         every benchmark once, tiny counts,
                                          no callgrind (checks the plumbing)
  python bench/run_all.py --no-callgrind  timings only
  python bench/run_all.py --rounds 50 --scale 2 --out /tmp/results

Steps: build bench/_cloops.pyx into build/bench/ (bench/_build.py) and the C
original (lgcore.reference); run ``pytest bench`` with pytest-benchmark in a
subprocess (JSON to build/bench/pytest-benchmark.json); run each tier under
valgrind's callgrind (bench/callgrind.py) when valgrind is installed; write
the summary.  The timing run comes first and alone, the callgrind runs (three
processes, one per tier) after it.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.append(str(REPO))      # after PYTHONPATH: see run_pytest's env

from bench import _build, callgrind, summary  # noqa: E402


def _load() -> str:
    try:
        return "/".join(f"{x:.1f}" for x in os.getloadavg())
    except OSError:
        return "?"


def run_pytest(json_path: Path, env: dict, extra: list[str], log) -> int:
    cmd = [sys.executable, "-P", "-m", "pytest", str(REPO / "bench"), "-p", "no:cacheprovider",
           "--import-mode=append",
           "-q", f"--benchmark-json={json_path}", "--benchmark-disable-gc",
           "--benchmark-sort=name", "--benchmark-columns=min,median,rounds", *extra]
    log("$ " + " ".join(cmd))
    proc = subprocess.run(cmd, cwd=REPO, env=env)
    return proc.returncode


def op_order() -> dict[str, list[str]]:
    from bench import _scenarios as S
    return {"c": [o for o, _ in S.C_OP_NAMES], "runloop": list(S.RUNLOOP_NAMES)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="one round of tiny counts, no callgrind")
    ap.add_argument("--no-callgrind", action="store_true", help="skip the valgrind runs")
    ap.add_argument("--rounds", type=int, default=None, help="timed rounds per benchmark (default 100)")
    ap.add_argument("--scale", type=float, default=None, help="iterations per round multiplier")
    ap.add_argument("--out", type=Path, default=REPO / "bench" / "results", help="output directory")
    ap.add_argument("--json", type=Path, default=None,
                    help="pytest-benchmark JSON path (default build/bench/pytest-benchmark.json)")
    ap.add_argument("--reuse-json", action="store_true",
                    help="do not run pytest; summarise the existing --json file")
    ap.add_argument("--cg-n", type=int, default=None, help="callgrind iterations (per tier default)")
    ap.add_argument("-k", default=None, help="pytest -k expression (partial runs)")
    args = ap.parse_args(argv)

    def log(msg: str) -> None:
        print(f"[bench] {msg}", flush=True)

    t0 = time.time()
    load0 = _load()
    log(f"building the benchmark loops and the C original (load {load0})")
    _build.build()
    from lgcore import reference
    reference.build_reference()

    env = dict(os.environ)
    # The repository goes after any PYTHONPATH the caller set (so a scratch
    # copy of lgcore can be measured with this bench: PYTHONPATH=/its/root).
    env["PYTHONPATH"] = os.pathsep.join(p for p in (env.get("PYTHONPATH", ""), str(REPO)) if p)
    if args.quick:
        env["LGCORE_BENCH_QUICK"] = "1"
    if args.rounds:
        env["LGCORE_BENCH_ROUNDS"] = str(args.rounds)
    if args.scale:
        env["LGCORE_BENCH_SCALE"] = str(args.scale)
    json_path = args.json or (_build.build_dir() / ("pytest-benchmark-quick.json" if args.quick
                                                    else "pytest-benchmark.json"))
    json_path.parent.mkdir(parents=True, exist_ok=True)
    if not args.reuse_json:
        extra = ["-k", args.k] if args.k else []
        rc = run_pytest(json_path, env, extra, log)
        if rc != 0:
            log(f"pytest failed (exit {rc}); not writing a summary")
            return rc
    t1 = time.time()

    instr: dict = {}
    cg_note = "not run"
    if args.quick or args.no_callgrind:
        cg_note = "skipped (--quick)" if args.quick else "skipped (--no-callgrind)"
    else:
        why = callgrind.available()
        if why:
            cg_note = f"unavailable: {why}"
            log(f"callgrind {cg_note}")
        else:
            log("callgrind: one valgrind process per tier")
            with ThreadPoolExecutor(max_workers=3) as pool:
                futs = {t: pool.submit(callgrind.run_tier, t, args.cg_n, None, None, None)
                        for t in summary.TIERS}
                for t, f in futs.items():
                    instr.update(f.result())
            cg_note = f"valgrind callgrind, n = {args.cg_n or callgrind.DEFAULT_N}"
            (_build.build_dir() / "callgrind.json").write_text(
                json.dumps(summary.instr_to_json(instr), indent=0))
    t2 = time.time()

    meta = summary.machine_meta()
    import lgcore
    meta["lgcore"] = os.path.dirname(os.path.abspath(lgcore.__file__))
    meta["load"] = f"{load0} / {_load()}"
    meta["mode"] = ("quick (1 round, 2 iterations: plumbing only, numbers meaningless)" if args.quick
                    else f"{env.get('LGCORE_BENCH_ROUNDS', '100')} rounds per benchmark (sides interleaved), "
                         f"scale {env.get('LGCORE_BENCH_SCALE', '1')}; instructions: {cg_note}; "
                         "guest clock: lgcore.VirtualClock on both sides")
    meta["timing_s"] = round(t1 - t0, 1)
    meta["callgrind_s"] = round(t2 - t1, 1)
    paths = summary.from_files(json_path, instr, args.out, meta, op_order())
    log(f"timings {t1 - t0:.0f} s, callgrind {t2 - t1:.0f} s")
    for p in paths.values():
        log(f"wrote {p}")
    print()
    print(paths["md"].read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
