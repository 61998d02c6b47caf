# SPDX-License-Identifier: GPL-2.0-only
"""Instructions per operation from valgrind's callgrind.

``measure(tier, n)`` runs bench/_cg_driver.py under
``valgrind --tool=callgrind`` and returns ``{(tier, op, side): instr/op}``.
The driver brackets each run of n and of 2n iterations with callgrind's
client requests (zero, dump under a label); the difference of the two
counts, divided by n, is one operation with every fixed cost cancelled.
For the Python tier the twin loop without the calls (loop + rearm) is
differenced the same way and subtracted.

Counts are of the whole process between the requests (the Python loop
included), exact and repeatable: they do not move with the machine's load.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
#: Iterations per tier: enough that the per-op difference is exact to well
#: under one instruction, small enough for valgrind's ~50x slowdown.
DEFAULT_N = {"c": 4000, "python": 2048, "runloop": 2048}


def available() -> str | None:
    """None when valgrind can be used, else why not."""
    if shutil.which("valgrind") is None:
        return "valgrind is not installed"
    try:
        from . import _build
        if not _build.load().HAVE_CALLGRIND:
            return "valgrind/callgrind.h was not found when the loops were compiled"
    except Exception as exc:  # pragma: no cover - reported, not raised
        return f"the benchmark loops did not build: {exc}"
    return None


_TRIGGER = "desc: Trigger: Client Request: "


def _parse(out_dir: Path) -> dict[str, int]:
    counts: dict[str, int] = {}
    for f in sorted(out_dir.glob("cg.out*")):
        label = None
        for line in f.read_text(errors="replace").splitlines():
            if line.startswith(_TRIGGER):
                label = line[len(_TRIGGER):].strip()
            elif line.startswith("summary:") and label is not None:
                counts[label] = int(line.split()[1])
                label = None
    return counts


def run_tier(tier: str, n: int | None = None, only: list[str] | None = None,
             python: str | None = None, log=None) -> dict[tuple[str, str, str], float]:
    """{(tier, op, side): instructions per op}."""
    n = n or DEFAULT_N[tier]
    with tempfile.TemporaryDirectory(prefix="lgcore-cg-") as tmp:
        tmpd = Path(tmp)
        cmd = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={tmpd / 'cg.out'}",
               "--combine-dumps=yes", "--dump-instr=no", "--compress-strings=no",
               python or sys.executable, "-P", "-m", "bench._cg_driver", tier, str(n), *(only or [])]
        env = dict(os.environ, PYTHONHASHSEED="0")
        # The repository goes after any PYTHONPATH the caller set, and -P
        # keeps the working directory off sys.path, so a scratch copy of
        # lgcore can be measured with this bench.
        env["PYTHONPATH"] = os.pathsep.join(p for p in (env.get("PYTHONPATH", ""), str(REPO)) if p)
        proc = subprocess.run(cmd, cwd=tmpd, env=env, capture_output=True, text=True)
        if proc.returncode != 0:
            tail = "\n".join(proc.stderr.strip().splitlines()[-30:])
            raise RuntimeError(f"callgrind run for tier {tier} failed:\n{tail}")
        expected = [json.loads(l) for l in proc.stdout.splitlines() if l.startswith("{")]
        counts = _parse(tmpd)
    iters = {e["label"]: (e["n"], e["per"]) for e in expected}
    res = per_op(counts, iters)
    if log:
        for (t, op, side), v in res.items():
            log(f"  callgrind {t:8s} {op:50s} {side:14s} {v:10.1f} instr/op")
    return res


def per_op(counts: dict[str, int], iters: dict[str, tuple[int, int]]) -> dict[tuple[str, str, str], float]:
    """Instructions per operation from the dumps.

    ``counts``: label -> instructions of that dump; ``iters``: label ->
    (blocks run, operations per block).  Labels are
    ``tier|op|side[|baseline]|1`` (n blocks) and ``...|2`` (2n blocks); a
    ``baseline`` twin, when present, is subtracted per block."""
    missing = [l for l in iters if l not in counts]
    if missing:
        raise RuntimeError(f"callgrind dumps missing for {missing[:5]}")
    per_block: dict[tuple[str, ...], tuple[float, int]] = {}
    for label, (n1, per) in iters.items():
        parts = label.split("|")
        if parts[-1] != "1":
            continue
        l2 = "|".join(parts[:-1] + ["2"])
        n2 = iters[l2][0]
        per_block[tuple(parts[:-1])] = ((counts[l2] - counts[label]) / (n2 - n1), per)
    out: dict[tuple[str, str, str], float] = {}
    for key, (v, per) in per_block.items():
        if key[-1] == "baseline":
            continue
        base = per_block.get(key + ("baseline",), (0.0, per))[0]
        out[(key[0], key[1], key[2])] = (v - base) / per
    return out


if __name__ == "__main__":
    sys.path.insert(0, str(REPO))
    tier = sys.argv[1] if len(sys.argv) > 1 else "c"
    res = run_tier(tier, int(sys.argv[2]) if len(sys.argv) > 2 else None, sys.argv[3:] or None,
                   log=print)
