# SPDX-License-Identifier: GPL-2.0-only
"""Turn a pytest-benchmark JSON file (bench/test_*.py) and callgrind counts
(bench/callgrind.py) into the three outputs:

  summary.json  one record per (tier, op): {"tier", "op", "lgcore_ns",
                "c_original_ns", "ratio", "lgcore_instr", "c_original_instr"}
                (null where not measured) plus extra keys per tier
  summary.md    the same as Markdown tables, with the targets
  ratios.png    a bar chart of the ratios (matplotlib, Agg)

ns are medians over the timed rounds, per operation (per event for the
run-loop tier); for the Python tier the loop-and-rearm twin is subtracted.
ratio = lgcore / C original (below 1: lgcore is faster); ratio_instr the same
on instructions.  For the Python tier the C original is the cffi (API mode)
build; ctypes and the floor are extra keys.
"""
from __future__ import annotations

import json
import math
import platform
import time
from pathlib import Path
from typing import Any, Iterable

C_TARGET = 0.8            # C level: lgcore <= 0.8x the original (time and instructions)
FLOOR_TARGET = 2.0        # Python: deliver_pending <= 2x the floor
CFFI_SPEEDUP_TARGET = 8.0  # Python: deliver_pending >= 8x faster than cffi
FUSED_OP = "deliver_pending"
TIERS = ("c", "python", "runloop")
TIER_TITLES = {
    "c": "C level: nogil engine from a compiled loop vs the C original from a C loop",
    "python": "Python level: one call from Python",
    "runloop": "Run-loop level: VMM loop, ns per event",
}


def _r(x: float | None, nd: int = 2) -> float | None:
    if x is None or (isinstance(x, float) and (math.isnan(x) or math.isinf(x))):
        return None
    return round(x, nd)


def _div(a: float | None, b: float | None) -> float | None:
    if a is None or b is None or b <= 0:
        return None
    return a / b


# ---- collecting the per-side numbers ----

def per_op_ns(bench_json: dict) -> dict[tuple[str, str, str], dict[str, float]]:
    """{(tier, op, side): {"median": ns/op, "min": ns/op}} from pytest-benchmark's
    JSON: each test's extra_info holds its op's sides, timed in alternation
    (bench/conftest.py run_interleaved)."""
    out: dict[tuple[str, str, str], dict[str, float]] = {}
    for b in bench_json.get("benchmarks", []):
        info = b.get("extra_info", {})
        if "tier" not in info or "sides" not in info:
            continue
        for side, st in info["sides"].items():
            per, base = st["per"], st.get("baseline_s", 0.0)
            out[(info["tier"], info["op"], side)] = {
                "median": (st["median_s"] - base) * 1e9 / per,
                "min": (st["min_s"] - base) * 1e9 / per,
                "rounds": st.get("rounds"), "info": info,
            }
    return out


def build_records(bench_json: dict, instr: dict[tuple[str, str, str], float] | None,
                  order: dict[str, list[str]] | None = None) -> list[dict[str, Any]]:
    ns = per_op_ns(bench_json)
    instr = instr or {}
    ops: dict[str, list[str]] = {t: [] for t in TIERS}
    for (t, op, _side) in list(ns) + list(instr):
        if t in ops and op not in ops[t]:
            ops[t].append(op)
    if order:
        for t, names in order.items():
            rest = [o for o in ops.get(t, []) if o not in names]
            ops[t] = [o for o in names if o in ops.get(t, [])] + rest

    def t_(tier, op, side, key="median"):
        v = ns.get((tier, op, side))
        return None if v is None else v[key]

    def i_(tier, op, side):
        return instr.get((tier, op, side))

    def info(tier, op):
        for side in ("lgcore", "c_original", "cffi"):
            v = ns.get((tier, op, side))
            if v:
                return v["info"]
        return {}

    records: list[dict[str, Any]] = []
    for op in ops["c"]:
        lg, co = t_("c", op, "lgcore"), t_("c", op, "c_original")
        li, ci = i_("c", op, "lgcore"), i_("c", op, "c_original")
        rec = _base("c", op, lg, co, li, ci)
        lmin, cmin = t_("c", op, "lgcore", "min"), t_("c", op, "c_original", "min")
        rec.update({"lgcore_min_ns": _r(lmin), "c_original_min_ns": _r(cmin),
                    "ratio_min": _r(_div(lmin, cmin), 3)})
        if ("c", op, "lgcore_fused") in ns or ("c", op, "lgcore_fused") in instr:
            rec["lgcore_fused_ns"] = _r(t_("c", op, "lgcore_fused"))
            rec["lgcore_fused_instr"] = _r(i_("c", op, "lgcore_fused"), 1)
            rec["ratio_fused"] = _r(_div(t_("c", op, "lgcore_fused"), co), 3)
        rec["target"] = f"time and instructions <= {C_TARGET}x the original"
        rec["meets_target_time"] = _le(rec["ratio"], C_TARGET)
        rec["meets_target_instr"] = _le(rec["ratio_instr"], C_TARGET)
        rec["note"] = info("c", op).get("note", "")
        records.append(rec)

    for op in ops["python"]:
        lg, cf = t_("python", op, "lgcore"), t_("python", op, "cffi")
        li, ci = i_("python", op, "lgcore"), i_("python", op, "cffi")
        rec = _base("python", op, lg, cf, li, ci)
        fl, ct = t_("python", op, "floor"), t_("python", op, "ctypes")
        fli, cti = i_("python", op, "floor"), i_("python", op, "ctypes")
        inf = info("python", op)
        rec.update({
            "cffi_ns": _r(cf), "ctypes_ns": _r(ct), "floor_ns": _r(fl),
            "cffi_instr": _r(ci, 1), "ctypes_instr": _r(cti, 1), "floor_instr": _r(fli, 1),
            "ratio_floor": _r(_div(lg, fl), 3), "ratio_floor_instr": _r(_div(li, fli), 3),
            "ratio_ctypes": _r(_div(lg, ct), 3),
            "speedup_vs_cffi": _r(_div(cf, lg), 2), "speedup_vs_cffi_instr": _r(_div(ci, li), 2),
            "kind": inf.get("kind", ""), "note": inf.get("note", ""),
        })
        if op == FUSED_OP:
            rec["target"] = (f"<= {FLOOR_TARGET}x the floor and >= {CFFI_SPEEDUP_TARGET}x faster "
                             "than the original through cffi")
            rec["meets_target_time"] = _and(_le(rec["ratio_floor"], FLOOR_TARGET),
                                            _ge(rec["speedup_vs_cffi"], CFFI_SPEEDUP_TARGET))
            rec["meets_target_instr"] = _and(_le(rec["ratio_floor_instr"], FLOOR_TARGET),
                                             _ge(rec["speedup_vs_cffi_instr"], CFFI_SPEEDUP_TARGET))
        elif cf is not None or ci is not None:
            rec["target"] = "not slower than the original through cffi"
            rec["meets_target_time"] = _le(rec["ratio"], 1.0)
            rec["meets_target_instr"] = _le(rec["ratio_instr"], 1.0)
        else:
            rec["target"] = None
            rec["meets_target_time"] = rec["meets_target_instr"] = None
        records.append(rec)

    base_ns: dict[str, float | None] = {}
    for op in ops["runloop"]:
        lg, co = t_("runloop", op, "lgcore"), t_("runloop", op, "c_original")
        li, ci = i_("runloop", op, "lgcore"), i_("runloop", op, "c_original")
        rec = _base("runloop", op, lg, co, li, ci)
        inf = info("runloop", op)
        cy, cyi = t_("runloop", op, "lgcore_cython"), i_("runloop", op, "lgcore_cython")
        rec.update({"lgcore_cython_ns": _r(cy), "lgcore_cython_instr": _r(cyi, 1),
                    "ratio_min": _r(_div(t_("runloop", op, "lgcore", "min"),
                                         t_("runloop", op, "c_original", "min")), 3),
                    "nvcpu": inf.get("nvcpu"), "event": inf.get("event")})
        ev = inf.get("event")
        if inf.get("nvcpu") == 1:
            base_ns[ev] = lg
            base_ns[ev + "/c"] = co
            base_ns[ev + "/cy"] = cy
        rec["growth_vs_1vcpu"] = _r(_div(lg, base_ns.get(ev)), 3)
        rec["c_original_growth_vs_1vcpu"] = _r(_div(co, base_ns.get(f"{ev}/c")), 3)
        rec["lgcore_cython_growth_vs_1vcpu"] = _r(_div(cy, base_ns.get(f"{ev}/cy")), 3)
        rec["target"] = None
        records.append(rec)
    return records


def _base(tier, op, lg, co, li, ci) -> dict[str, Any]:
    return {
        "tier": tier, "op": op,
        "lgcore_ns": _r(lg), "c_original_ns": _r(co), "ratio": _r(_div(lg, co), 3),
        "lgcore_instr": _r(li, 1), "c_original_instr": _r(ci, 1),
        "ratio_instr": _r(_div(li, ci), 3),
    }


def _le(x, lim):
    return None if x is None else bool(x <= lim)


def _ge(x, lim):
    return None if x is None else bool(x >= lim)


def _and(a, b):
    if a is None or b is None:
        return None
    return a and b


# ---- verdicts ----

def verdicts(records: list[dict]) -> list[str]:
    """One line per target that is missed (empty: all met)."""
    out = []
    for r in records:
        if r.get("target") is None:
            continue
        for what in ("time", "instr"):
            if r.get(f"meets_target_{what}") is False:
                out.append(f"{r['tier']} / {r['op']}: {r['target']} — missed on "
                           f"{'time' if what == 'time' else 'instructions'} ({_explain(r, what)})")
    return out


def _explain(r: dict, what: str) -> str:
    sfx = "" if what == "time" else "_instr"
    if r["tier"] == "python" and r["op"] == FUSED_OP:
        return (f"{r.get('ratio_floor' + sfx)}x the floor, "
                f"{r.get('speedup_vs_cffi' + sfx)}x faster than cffi")
    return f"ratio {r.get('ratio' + sfx)}"


# ---- writing ----

def _fmt(x, nd=1) -> str:
    if x is None:
        return "—"
    if isinstance(x, bool):
        return "yes" if x else "**no**"
    if isinstance(x, float):
        if abs(x) >= 1000:
            return f"{x:,.0f}"
        return f"{x:.{nd}f}"
    return str(x)


def _x(x, nd=2) -> str:
    return "—" if x is None else f"{_fmt(x, nd)}x"


def _mark(ok) -> str:
    return "" if ok is None else (" ✓" if ok else " ✗")


def _python_marks(r: dict) -> tuple[str, str, str, str]:
    """The marks of a Python-level row, each in the column it judges:
    (vs floor, vs cffi) on time, then on instructions.  The fused op's
    target has a floor half and a cffi half; every other op's target is
    on cffi alone."""
    if r["op"] != FUSED_OP:
        return "", _mark(r.get("meets_target_time")), "", _mark(r.get("meets_target_instr"))
    return (_mark(_le(r["ratio_floor"], FLOOR_TARGET)),
            _mark(_ge(r["speedup_vs_cffi"], CFFI_SPEEDUP_TARGET)),
            _mark(_le(r["ratio_floor_instr"], FLOOR_TARGET)),
            _mark(_ge(r["speedup_vs_cffi_instr"], CFFI_SPEEDUP_TARGET)))


def markdown(records: list[dict], meta: dict) -> str:
    L = ["# lgcore benchmarks", ""]
    L.append(f"Run {meta.get('date', '')} on {meta.get('machine', '')}; "
             f"{meta.get('python', '')}, Cython {meta.get('cython', '')}, "
             f"{meta.get('cc', '')}. Load average at start/end: {meta.get('load', '')}.")
    L.append("")
    L.append("ns: median per operation over the timed rounds (the C loops and Python loops are "
             "amortised and subtracted as described in bench/README.md); instr: callgrind "
             "instructions per operation (exact, independent of load). ratio = lgcore / C "
             "original; below 1 lgcore is faster. ✓/✗: the issue's target on time / on "
             "instructions.")
    if meta.get("mode"):
        L.append("")
        L.append(f"Mode: {meta['mode']}.")
    if meta.get("lgcore"):
        L.append(f"lgcore measured: `{meta['lgcore']}`.")
    if meta.get("chart"):
        L.append(f"Chart: {meta['chart']}.")
    L.append("")
    c = [r for r in records if r["tier"] == "c"]
    if c:
        L += [f"## {TIER_TITLES['c']}", "",
              "| op | lgcore ns | original ns | ratio | lgcore instr | original instr | ratio instr |"
              " lgcore fused ns / instr |",
              "|---|---:|---:|---:|---:|---:|---:|---:|"]
        for r in c:
            fused = (f"{_fmt(r.get('lgcore_fused_ns'), 2)} / {_fmt(r.get('lgcore_fused_instr'), 0)}"
                     if "lgcore_fused_ns" in r else "")
            L.append(f"| {r['op']} | {_fmt(r['lgcore_ns'], 2)} | {_fmt(r['c_original_ns'], 2)} | "
                     f"{_fmt(r['ratio'], 2)}{_mark(r.get('meets_target_time'))} | "
                     f"{_fmt(r['lgcore_instr'], 0)} | {_fmt(r['c_original_instr'], 0)} | "
                     f"{_fmt(r['ratio_instr'], 2)}{_mark(r.get('meets_target_instr'))} | {fused} |")
        L += ["", f"Target: every op <= {C_TARGET}x the original, on time and on instructions.", ""]
    py = [r for r in records if r["tier"] == "python"]
    if py:
        L += [f"## {TIER_TITLES['python']}", "",
              "| op | kind | lgcore ns | floor ns | cffi ns | ctypes ns | vs floor | vs cffi |"
              " lgcore instr | floor instr | cffi instr | ctypes instr | vs floor instr | vs cffi instr |",
              "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
        for r in py:
            fl_t, cf_t, fl_i, cf_i = _python_marks(r)
            L.append(
                f"| {r['op']} | {r.get('kind', '')} | {_fmt(r['lgcore_ns'])} | {_fmt(r['floor_ns'])} | "
                f"{_fmt(r['cffi_ns'])} | {_fmt(r['ctypes_ns'])} | "
                f"{_x(r['ratio_floor'])}{fl_t} | {_fmt(r['ratio'], 3)}{cf_t} | "
                f"{_fmt(r['lgcore_instr'], 0)} | {_fmt(r['floor_instr'], 0)} | "
                f"{_fmt(r['cffi_instr'], 0)} | {_fmt(r['ctypes_instr'], 0)} | "
                f"{_x(r['ratio_floor_instr'])}{fl_i} | {_fmt(r['ratio_instr'], 3)}{cf_i} |")
        L += ["", "vs floor = lgcore / the empty Cython method with as many arguments; vs cffi = "
              "lgcore / the original through cffi (below 1: lgcore faster). Kinds: engine (the "
              "seed's functions), module-fn (the same through `lgcore.<name>(cpu, ...)`), "
              "policy (Python policy modules), shim (the original side is kshim's stand-in for "
              "a kernel helper), lgcore-only (static in the original: nothing to compare).", "",
              f"Targets: `{FUSED_OP}` <= {FLOOR_TARGET}x the floor and >= {CFFI_SPEEDUP_TARGET}x "
              "faster than cffi; no op slower than cffi.", ""]
        fr = next((r for r in py if r["op"] == FUSED_OP), None)
        if fr:
            L += [f"`{FUSED_OP}`: {_x(fr['ratio_floor'])} the floor "
                  f"({_x(fr['ratio_floor_instr'])} on instructions), "
                  f"{_x(fr['speedup_vs_cffi'], 1)} faster than cffi "
                  f"({_x(fr['speedup_vs_cffi_instr'], 1)} on instructions).", ""]
    rl = [r for r in records if r["tier"] == "runloop"]
    if rl:
        L += [f"## {TIER_TITLES['runloop']}", "",
              "| events | lgcore (Python loop) ns | original (cffi, Python loop) ns | ratio |"
              " lgcore (Cython loop) ns | growth vs 1 vCPU (lgcore / original / Cython) |"
              " lgcore instr | original instr | Cython instr |",
              "|---|---:|---:|---:|---:|---|---:|---:|---:|"]
        for r in rl:
            L.append(f"| {r['op']} | {_fmt(r['lgcore_ns'])} | {_fmt(r['c_original_ns'])} | "
                     f"{_fmt(r['ratio'], 3)} | {_fmt(r['lgcore_cython_ns'], 1)} | "
                     f"{_fmt(r['growth_vs_1vcpu'], 2)} / {_fmt(r['c_original_growth_vs_1vcpu'], 2)} / "
                     f"{_fmt(r['lgcore_cython_growth_vs_1vcpu'], 2)} | "
                     f"{_fmt(r['lgcore_instr'], 0)} | {_fmt(r['c_original_instr'], 0)} | "
                     f"{_fmt(r['lgcore_cython_instr'], 0)} |")
        L.append("")
    miss = verdicts(records)
    L += ["## Targets", ""]
    if miss:
        L += ["Missed:", ""] + [f"- {m}" for m in miss]
    else:
        L.append("All targets met.")
    L.append("")
    return "\n".join(L)


def chart(records: list[dict], path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    c = [r for r in records if r["tier"] == "c"]
    py = [r for r in records if r["tier"] == "python" and
          (r.get("c_original_ns") is not None or r.get("c_original_instr") is not None)]
    pyf = [r for r in records if r["tier"] == "python" and
           (r.get("ratio_floor") is not None or r.get("ratio_floor_instr") is not None)]
    rl = [r for r in records if r["tier"] == "runloop"]
    panels = [(c, "ratio", "ratio_instr", "C level: lgcore / C original", [C_TARGET, 1.0], False),
              (py, "ratio", "ratio_instr", "Python level: lgcore / original via cffi", [1.0], True),
              (pyf, "ratio_floor", "ratio_floor_instr", "Python level: lgcore / floor (empty Cython method)",
               [FLOOR_TARGET], True),
              (rl, "ratio", "ratio_instr", "Run loop (Python VMM): lgcore / original via cffi", [1.0], True)]
    panels = [p for p in panels if p[0]]
    heights = [max(2.0, 0.32 * len(p[0]) + 1.2) for p in panels]
    fig, axes = plt.subplots(len(panels), 1, figsize=(11, sum(heights)),
                             gridspec_kw={"height_ratios": heights}, squeeze=False)
    for ax, (rows, kt, ki, title, lines, logx) in zip(axes[:, 0], panels):
        names = [r["op"] for r in rows]
        y = list(range(len(rows)))
        vt = [r.get(kt) or 0 for r in rows]
        vi = [r.get(ki) or 0 for r in rows]
        ax.barh([v - 0.2 for v in y], vt, height=0.4, label="time", color="#4c72b0")
        ax.barh([v + 0.2 for v in y], vi, height=0.4, label="instructions", color="#dd8452")
        ax.set_yticks(y)
        ax.set_yticklabels(names, fontsize=7)
        ax.invert_yaxis()
        for x in lines:
            ax.axvline(x, color="red" if x != 1.0 else "black", lw=0.8, ls="--")
        if logx:
            ax.set_xscale("log")
        ax.set_title(title, fontsize=10)
        ax.legend(fontsize=7, loc="best")
        ax.tick_params(axis="x", labelsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def machine_meta() -> dict[str, str]:
    import os
    import subprocess
    import sys
    cpu = platform.processor() or ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        cc = subprocess.run(["gcc", "--version"], capture_output=True, text=True).stdout.splitlines()[0]
    except (OSError, IndexError):
        cc = "gcc ?"
    try:
        import Cython
        cyv = Cython.__version__
    except ImportError:
        cyv = "?"
    return {
        "date": time.strftime("%Y-%m-%d %H:%M %Z"),
        "machine": f"{cpu}, {os.cpu_count()} CPUs, {platform.system()} {platform.release()}",
        "python": f"Python {sys.version.split()[0]}",
        "cython": cyv,
        "cc": cc,
    }


def write(records: list[dict], meta: dict, out_dir: Path, chart_png: bool = True) -> dict[str, Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {"json": out_dir / "summary.json", "md": out_dir / "summary.md",
             "png": out_dir / "ratios.png"}
    paths["json"].write_text(json.dumps(records, indent=1) + "\n")
    if chart_png:
        try:
            chart(records, paths["png"])
        except ImportError as exc:     # matplotlib is in the "bench" extra
            meta = {**meta, "chart": f"not drawn: {exc}"}
            del paths["png"]
    paths["md"].write_text(markdown(records, meta))
    (out_dir / "meta.json").write_text(json.dumps({**meta, "missed": verdicts(records)}, indent=1) + "\n")
    return paths


def from_files(bench_json_path: Path, instr: dict | None, out_dir: Path, meta: dict,
               order: dict | None = None) -> dict[str, Path]:
    data = json.loads(Path(bench_json_path).read_text())
    return write(build_records(data, instr, order), meta, out_dir)


def instr_to_json(instr: dict[tuple[str, str, str], float]) -> list:
    return [[t, o, s, v] for (t, o, s), v in instr.items()]


def instr_from_json(rows: Iterable) -> dict[tuple[str, str, str], float]:
    return {(t, o, s): v for t, o, s, v in rows}
