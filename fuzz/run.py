# SPDX-License-Identifier: GPL-2.0-only
"""Coverage-guided differential fuzzing of lgcore against the C original.

    python -m fuzz.run --seconds 60                 # what `make fuzz` runs
    python -m fuzz.run --runs 10000000 --jobs 2 --keep-going
    python -m fuzz.run --replay DIR_OR_FILE...      # each input once, no fuzzing

Each worker is one atheris (libFuzzer) process running ``fuzz.harness`` on
every input.  Coverage is Python coverage of lgcore's run loop and stack
policy (LGCORE_FUZZ_PYCOV), plus native coverage of the compiled C original
and of lgcore's compiled engine when clang is available (``--native``):
both are then rebuilt with ``-fsanitize-coverage=inline-8bit-counters,
pc-table,trace-cmp`` into <workdir>/ (never the in-place build other tools
use), and loaded after libFuzzer's symbols are made global.  Workers share
one corpus directory (<workdir>/corpus) and start from fuzz/corpus/.

A worker stops on a crash (libFuzzer writes the input to
fuzz/corpus_regressions/crash-*), a sanitizer report or a divergence (the
input goes to fuzz/corpus_regressions/new-<signature>-<sha1>.bin with its
trace in the .txt beside it).  With ``--keep-going`` a divergence is
recorded (one input per distinct signature) and the run goes on.
``--strict`` runs the reference model without the switches of the open
findings (fuzz/known.py).  The run exits non-zero if anything was found;
the summary (executions, wall time, findings, the git state of the lgcore
snapshot fuzzed) is printed and written to <workdir>/summary.json.

Environment: LGCORE_FUZZ_TREE names a tree whose lgcore package is used
instead of the in-place one (tools/asan.sh points it at the sanitizer
build); LGCORE_REFERENCE_CACHE picks the C original's build (see
lgcore/reference.py).
"""
from __future__ import annotations

import argparse
import ctypes
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SEEDS = ROOT / "fuzz" / "corpus"
REGRESSIONS = ROOT / "fuzz" / "corpus_regressions"
COV_FLAGS = "-fsanitize-coverage=inline-8bit-counters,pc-table,trace-cmp"
SANITIZER_PATTERNS = (
    re.compile(rb"ERROR: AddressSanitizer"),
    re.compile(rb"ERROR: LeakSanitizer"),
    re.compile(rb"runtime error: "),
    re.compile(rb"UndefinedBehaviorSanitizer"),
)
CRASH_PATTERNS = (
    re.compile(rb"ERROR: libFuzzer: deadly signal"),
    re.compile(rb"ERROR: libFuzzer: timeout"),
    re.compile(rb"ERROR: libFuzzer: out-of-memory"),
    re.compile(rb"ERROR: libFuzzer: fuzz target exited"),
    re.compile(rb"Uncaught Python exception"),
)


# ---- the native-coverage builds ---------------------------------------------

def _run(cmd, env, cwd, log):
    proc = subprocess.run(cmd, env=env, cwd=cwd, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT)
    log.write_bytes(proc.stdout)
    if proc.returncode != 0:
        tail = proc.stdout.decode(errors="replace").splitlines()[-20:]
        raise RuntimeError(f"{' '.join(map(str, cmd))} failed:\n" + "\n".join(tail))


def _sync(src: Path, dst: Path, skip: tuple[str, ...]) -> None:
    """Mirror the source files of src into dst (mtimes kept, so an
    unchanged .pyx is not compiled again); files gone from src go."""
    want = set()
    for p in src.rglob("*"):
        if p.is_dir() or "__pycache__" in p.parts or p.name.endswith(skip):
            continue
        rel = p.relative_to(src)
        want.add(rel)
        q = dst / rel
        st = p.stat()
        if not q.exists() or q.stat().st_mtime_ns != st.st_mtime_ns or q.stat().st_size != st.st_size:
            q.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(p, q)
    for q in list(dst.rglob("*")):
        if q.is_file() and not q.name.endswith(skip + (".so",)) and "__pycache__" not in q.parts \
                and q.relative_to(dst) not in want and not q.name.endswith((".c", ".html")):
            q.unlink()


def build_native(work: Path) -> tuple[Path, Path]:
    """Build lgcore's engine and the C original with clang's coverage
    instrumentation into work/cov-tree and work/reference-cov; returns
    (tree, reference cache).  Incremental: a rerun rebuilds what changed."""
    clang = shutil.which("clang")
    if clang is None:
        raise RuntimeError("clang is not installed")
    tree = work / "cov-tree"
    _sync(ROOT / "lgcore", tree / "lgcore", skip=(".so", ".c", ".html", ".pyc"))
    _sync(ROOT / "include", tree / "include", skip=(".pyc",))
    for f in ("setup.py", "pyproject.toml", "README.md"):
        shutil.copy2(ROOT / f, tree / f)
    env = dict(os.environ, CC=clang, CFLAGS=COV_FLAGS, LGCORE_OPT="2")
    env.pop("LDFLAGS", None)
    _run([sys.executable, "setup.py", "-q", "build_ext", "--inplace"], env, tree,
         work / "cov-tree-build.log")
    # The C original, built by the tree's lgcore/reference.py run as a
    # script (it imports only the standard library: the instrumented engine
    # cannot be imported outside the fuzzer).
    ref_cache = work / "reference-cov"
    env = dict(os.environ, CC=clang, CFLAGS=COV_FLAGS,
               LGCORE_REFERENCE_CACHE=str(ref_cache),
               LGCORE_C_ORIGINAL=str(_c_original()))
    _run([sys.executable, str(tree / "lgcore" / "reference.py")], env, tree,
         work / "reference-cov-build.log")
    return tree, ref_cache


def _c_original() -> Path:
    # lgcore/reference.py by path: importing the lgcore package would load
    # the in-place engine, which need not be built.
    import importlib.util
    spec = importlib.util.spec_from_file_location("_lgcore_reference_py", ROOT / "lgcore" / "reference.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod
    spec.loader.exec_module(mod)
    src = mod.reference_source()
    if src is None:
        raise RuntimeError("the C original is not available (see lgcore/reference.py)")
    return src


# ---- one worker ---------------------------------------------------------------

def _promote_libfuzzer() -> None:
    """Make the libFuzzer inside atheris's core module global, so that
    extensions compiled with coverage callbacks can be loaded (atheris loads
    it RTLD_LOCAL).  Called once the fuzzer runs, i.e. once it is loaded."""
    with open("/proc/self/maps") as maps:
        for line in maps:
            if "core_with_libfuzzer" in line:
                path = line.split()[-1]
                break
        else:
            raise RuntimeError("atheris' libFuzzer core is not loaded")
    ctypes.CDLL(path, mode=os.RTLD_NOW | os.RTLD_GLOBAL | getattr(os, "RTLD_NOLOAD", 4))


class Worker:
    def __init__(self, args):
        self.args = args
        self.stats_path = Path(args.workdir) / f"worker-{args.worker}.json"
        self.execs = 0
        self.divergences: dict[str, int] = {}
        self.saved: dict[str, str] = {}
        self.harness = None
        self.t0 = time.time()
        self.last_write = 0.0

    def _load(self):
        import atheris
        if self.args.native_loaded:
            _promote_libfuzzer()
        tree = os.environ.get("LGCORE_FUZZ_TREE")
        if tree:
            sys.path.insert(0, tree)
        # Python coverage where lgcore's own decisions are: its run loop and
        # stack policy (LGCORE_FUZZ_PYCOV, comma-separated module prefixes;
        # "model" means fuzz.model).  Instrumenting the harness and the model
        # as well triples the cost of an execution for little more coverage;
        # the C original's and the engine's native coverage do the rest.
        pycov = os.environ.get("LGCORE_FUZZ_PYCOV", "lgcore.runloop,lgcore.stacks")
        if pycov:
            with atheris.instrument_imports(include=[m if m.startswith("lgcore") else "fuzz." + m
                                                     for m in pycov.split(",")]):
                from fuzz import harness
        else:
            from fuzz import harness
        import lgcore
        if tree and not Path(lgcore.__file__).resolve().is_relative_to(Path(tree).resolve()):
            raise RuntimeError(f"lgcore came from {lgcore.__file__}, not {tree}")
        harness.reference()
        self.harness = harness
        self.compat = frozenset() if self.args.strict else harness.DEFAULT_COMPAT

    def write_stats(self, final: bool = False) -> None:
        data = {
            "worker": self.args.worker,
            "execs": self.execs,
            "seconds": time.time() - self.t0,
            "cpu_seconds": time.process_time(),
            "divergences": self.divergences,
            "saved": self.saved,
            "final": final,
        }
        tmp = self.stats_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(data, indent=1))
        os.replace(tmp, self.stats_path)
        self.last_write = time.time()

    def record(self, d, data: bytes) -> None:
        sig = d.signature
        self.divergences[sig] = self.divergences.get(sig, 0) + 1
        if sig in self.saved or not self.args.save:
            return
        slug = re.sub(r"[^A-Za-z0-9_.-]+", "_", sig)[:60]
        sha = hashlib.sha1(data).hexdigest()
        out = Path(self.args.save) / f"new-{slug}-{sha[:12]}.bin"
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_bytes(data)
        out.with_suffix(".txt").write_text(self.harness.explain(data, self.compat) + "\n")
        self.saved[sig] = str(out)
        self.write_stats()

    def test_one_input(self, data: bytes) -> None:
        if self.harness is None:
            self._load()
        self.execs += 1
        try:
            self.harness.run_one(data, compat=self.compat)
        except self.harness.Divergence as d:
            self.record(d, data)
            if not self.args.keep_going:
                self.write_stats(final=True)
                sys.stderr.write(f"fuzz: DIVERGENCE\n{d.describe()}\n")
                sys.stderr.flush()
                os._exit(1)
        if self.execs & 1023 == 0 and time.time() - self.last_write > 2.0:
            self.write_stats()


def worker_main(args) -> int:
    import atheris
    Path(args.workdir).mkdir(parents=True, exist_ok=True)
    w = Worker(args)
    w.write_stats()
    corpus = Path(args.workdir) / "corpus"       # shared: -reload picks up the others' finds
    corpus.mkdir(parents=True, exist_ok=True)
    lf = [sys.argv[0],
          f"-max_len={args.max_len}",
          "-print_final_stats=1",
          f"-artifact_prefix={REGRESSIONS}/crash-" if args.save else
          f"-artifact_prefix={args.workdir}/crash-",
          f"-seed={args.seed + args.worker if args.seed else 0}",
          "-timeout=60",
          "-rss_limit_mb=4096",
          "-reload=30",
          str(corpus)]
    if SEEDS.is_dir():
        lf.append(str(SEEDS))
    if args.seconds:
        lf.append(f"-max_total_time={int(max(1, args.seconds))}")
    if args.runs:
        lf.append(f"-runs={args.runs}")
    (REGRESSIONS if args.save else Path(args.workdir)).mkdir(parents=True, exist_ok=True)
    atheris.Setup(lf, w.test_one_input)
    import atexit
    atexit.register(lambda: w.write_stats(final=True))
    atheris.Fuzz()
    return 0


# ---- replay ---------------------------------------------------------------------

def replay_main(paths, strict: bool) -> int:
    """Run every input once; print each divergence; exit 1 if any."""
    tree = os.environ.get("LGCORE_FUZZ_TREE")
    if tree:
        sys.path.insert(0, tree)
    from fuzz import harness
    compat = frozenset() if strict else harness.DEFAULT_COMPAT
    files = []
    for p in map(Path, paths):
        if p.is_dir():
            files += sorted(q for q in p.rglob("*") if q.is_file()
                            and q.suffix not in (".txt", ".md", ".json"))
        elif p.is_file():
            files.append(p)
    t0 = time.time()
    bad = 0
    ran = 0
    for f in files:
        try:
            data = f.read_bytes()
        except FileNotFoundError:       # a live corpus: libFuzzer replaced it
            continue
        ran += 1
        try:
            harness.run_one(data, compat=compat)
        except harness.Divergence:
            bad += 1
            print(f"== {f}\n{harness.explain(data, compat)}", flush=True)
    import lgcore
    print(f"fuzz replay: {ran} inputs in {time.time() - t0:.0f} s, {bad} diverging "
          f"(lgcore from {Path(lgcore.__file__).parent})", flush=True)
    return 1 if bad else 0


# ---- the parent ---------------------------------------------------------------

def _scan(log: bytes):
    execs = None
    m = re.findall(rb"stat::number_of_executed_units:\s*(\d+)", log)
    if m:
        execs = int(m[-1])
    else:
        m = re.findall(rb"Done (\d+) runs in", log)
        if m:
            execs = int(m[-1])
    sanitizer = [p.pattern.decode() for p in SANITIZER_PATTERNS if p.search(log)]
    crash = [p.pattern.decode() for p in CRASH_PATTERNS if p.search(log)]
    return execs, sanitizer, crash


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m fuzz.run", description=__doc__.split("\n\n")[0])
    p.add_argument("--seconds", type=float, default=0,
                   help="stop each worker after this long (default: 60 unless --runs)")
    p.add_argument("--runs", type=int, default=0,
                   help="total executions, split over the workers (0: time only)")
    p.add_argument("--jobs", type=int, default=1, help="worker processes")
    p.add_argument("--keep-going", action="store_true",
                   help="record divergences and go on instead of stopping at the first")
    p.add_argument("--native", choices=("auto", "on", "off"), default="auto",
                   help="native coverage of the C original and the engine (needs clang)")
    p.add_argument("--strict", action="store_true",
                   help="reference model without the known-findings switches (fuzz/known.py)")
    p.add_argument("--max-len", type=int, default=600)
    p.add_argument("--workdir", default=str(ROOT / "build" / "fuzz"))
    p.add_argument("--save", default=str(REGRESSIONS),
                   help="where diverging and crashing inputs go ('' keeps them in --workdir)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--summary", default=None, help="summary JSON (default: <workdir>/summary.json)")
    p.add_argument("--replay", nargs="+", metavar="PATH", default=None,
                   help="no fuzzing: run every input in these files/directories once "
                        "(tools/asan.sh replays the corpora under the sanitizers)")
    p.add_argument("--worker", type=int, default=None, help=argparse.SUPPRESS)
    p.add_argument("--native-loaded", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if not args.seconds and not args.runs:
        args.seconds = 60
    if args.worker is not None:
        return worker_main(args)
    if args.replay:
        return replay_main(args.replay, args.strict)

    work = Path(args.workdir).resolve()
    args.workdir = str(work)
    if args.save:
        args.save = str(Path(args.save).resolve())
    work.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT)] + [x for x in env.get("PYTHONPATH", "").split(os.pathsep) if x])
    native = False
    if args.native != "off" and not env.get("LGCORE_FUZZ_TREE"):
        try:
            tree, refc = build_native(work)
            env["LGCORE_FUZZ_TREE"] = str(tree)
            env["LGCORE_REFERENCE_CACHE"] = str(refc)
            env["LGCORE_C_ORIGINAL"] = str(_c_original())
            native = True
        except Exception as exc:
            if args.native == "on":
                print(f"fuzz: native coverage build failed: {exc}", file=sys.stderr)
                return 2
            print(f"fuzz: no native coverage ({exc}); Python coverage only", file=sys.stderr)
    git_at_start = _git_state()          # what the workers' snapshot of lgcore is
    for old in work.glob("worker-*.json"):
        old.unlink()
    per_runs = -(-args.runs // args.jobs) if args.runs else 0
    procs = []
    t0 = time.time()
    for k in range(args.jobs):
        cmd = [sys.executable, "-m", "fuzz.run", "--worker", str(k), "--workdir", str(work),
               "--max-len", str(args.max_len), "--save", args.save, "--seed", str(args.seed)]
        if args.seconds:
            cmd += ["--seconds", str(args.seconds)]
        if per_runs:
            cmd += ["--runs", str(per_runs)]
        if args.keep_going:
            cmd.append("--keep-going")
        if args.strict:
            cmd.append("--strict")
        if native:
            cmd.append("--native-loaded")
        log = open(work / f"worker-{k}.log", "wb")
        procs.append((subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT), log))
    print(f"fuzz: {args.jobs} worker(s), native coverage {'on' if native else 'off'}, "
          f"logs in {work}/worker-*.log", flush=True)
    try:
        codes = [proc.wait() for proc, _ in procs]
    except KeyboardInterrupt:
        for proc, _ in procs:
            proc.terminate()
        codes = [proc.wait() for proc, _ in procs]
    wall = time.time() - t0
    for _, log in procs:
        log.close()

    total = 0
    workers = []
    divergences: dict[str, int] = {}
    saved: dict[str, str] = {}
    sanitizer: list[str] = []
    crashes: list[str] = []
    for k, code in enumerate(codes):
        log = (work / f"worker-{k}.log").read_bytes()
        execs, san, crash = _scan(log)
        st = {}
        sp = work / f"worker-{k}.json"
        if sp.exists():
            st = json.loads(sp.read_text())
        own = st.get("execs", 0)
        n = execs if execs is not None else own
        total += n
        for sig, c in st.get("divergences", {}).items():
            divergences[sig] = divergences.get(sig, 0) + c
        saved.update(st.get("saved", {}))
        sanitizer += [f"worker {k}: {s}" for s in san]
        if code != 0 and not st.get("divergences"):
            crashes += [f"worker {k}: exit {code}: {c}" for c in crash] or [f"worker {k}: exit {code}"]
        workers.append({"worker": k, "exit": code, "execs": n, "harness_execs": own})
    summary = {
        "command": " ".join([sys.executable, "-m", "fuzz.run"] + (argv if argv is not None else sys.argv[1:])),
        "executions": total,
        "wall_seconds": round(wall, 1),
        "execs_per_second": round(total / wall, 1) if wall else None,
        "jobs": args.jobs,
        "native_coverage": native,
        "workers": workers,
        "divergences": divergences,
        "saved": saved,
        "sanitizer_reports": sanitizer,
        "crashes": crashes,
        "known_findings_masked": [] if args.strict else sorted(_known()),
        "lgcore_tree": env.get("LGCORE_FUZZ_TREE") or str(ROOT),
        "git_at_start": git_at_start,
    }
    out = Path(args.summary) if args.summary else work / "summary.json"
    out.write_text(json.dumps(summary, indent=1) + "\n")
    print(json.dumps(summary, indent=1))
    bad = bool(divergences or sanitizer or crashes)
    print(f"fuzz: {total} executions in {wall:.0f} s: "
          f"{sum(divergences.values())} divergences ({len(divergences)} distinct), "
          f"{len(sanitizer)} sanitizer reports, {len(crashes)} crashes"
          + (" -- FAILED" if bad else " -- ok"))
    return 1 if bad else 0


def _git_state() -> str:
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, text=True,
                              capture_output=True).stdout.strip()
        diff = subprocess.run(["git", "diff", "HEAD", "--", "lgcore", "include"], cwd=ROOT,
                              capture_output=True).stdout
        return head + (f"+dirty:{hashlib.sha1(diff).hexdigest()[:10]}" if diff else "")
    except OSError:
        return "unknown"


def _known():
    sys.path.insert(0, str(ROOT))
    try:
        from fuzz.known import DEFAULT_COMPAT
    finally:
        sys.path.pop(0)
    return DEFAULT_COMPAT


if __name__ == "__main__":
    sys.exit(main())
