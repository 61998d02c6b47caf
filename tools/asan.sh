#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0-only
#
# make asan: lgcore's engine and the C original under AddressSanitizer and
# UndefinedBehaviorSanitizer, running the differential and fuzz suites.
#
#   ./tools/asan.sh                  # what `make asan` runs
#   ASAN_FUZZ_SECONDS=600 ./tools/asan.sh      # a longer fuzz leg
#   ASAN_SUITES="tests/diff" ./tools/asan.sh   # other suites
#   ASAN_DIFF_EXAMPLES=20000 ./tools/asan.sh   # differential budget (default 5000)
#
# Nothing is built in place: the sources are mirrored into build/asan-tree
# (other tools keep using the normal in-place build meanwhile), the
# extension is built there with LGCORE_SANITIZE=1 (setup.py:
# -fsanitize=address,undefined), and the C original is built with the same
# flags into build/asan-tree/reference (LGCORE_REFERENCE_CACHE: its build
# key does not cover CFLAGS, so it needs a cache of its own).  Python is
# not instrumented, so the gcc sanitizer runtimes are preloaded into it.
#
# Steps, all with the runtimes preloaded:
#   1. pytest tests/diff tests/fuzz   (differential suite, regression replay,
#                                      a short fuzz run)
#   2. python -m fuzz.run --replay    (the seed corpus, the regressions and
#                                      every corpus a fuzz run left in build/)
#   3. python -m fuzz.run --seconds ASAN_FUZZ_SECONDS (default 60)
#      (with the gcc runtimes preloaded, atheris's coverage callbacks bind to
#      libasan's stubs -- atheris warns -- so this leg mutates the seeds
#      without coverage feedback; the coverage-guided search is the
#      uninstrumented `make fuzz`, whose corpus step 2 replays here)
# Reports go to build/asan/logs/ (ASAN_OPTIONS/UBSAN_OPTIONS log_path); the
# script exits non-zero if any step fails or any report was written.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PY=${PY:-$ROOT/.venv/bin/python}
TREE=$ROOT/build/asan-tree
OUT=$ROOT/build/asan
LOGS=$OUT/logs
SUITES=${ASAN_SUITES:-tests/diff tests/fuzz}
FUZZ_SECONDS=${ASAN_FUZZ_SECONDS:-60}
CC=${CC:-gcc}

say() { printf '\n== asan: %s\n' "$*"; }

# ---- 1. mirror the sources ---------------------------------------------------
say "mirroring the sources into $TREE"
mkdir -p "$TREE" "$OUT"
rm -rf "$LOGS"
mkdir -p "$LOGS"
"$PY" - "$ROOT" "$TREE" <<'EOF'
import shutil, sys
from pathlib import Path
root, tree = map(Path, sys.argv[1:3])
# Sources only; the extensions, Cython's C output and caches stay behind.
SKIP_SUFFIX = (".so", ".html", ".pyc")
def sync(rel, generated_c=False):
    src, dst = root / rel, tree / rel
    if src.is_file():
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src, dst)
        return
    want = set()
    for p in src.rglob("*"):
        if p.is_dir() or "__pycache__" in p.parts or p.name.endswith(SKIP_SUFFIX):
            continue
        if generated_c and p.suffix == ".c":
            continue
        r = p.relative_to(src)
        want.add(r)
        q = dst / r
        if not q.exists() or q.stat().st_mtime_ns != p.stat().st_mtime_ns:
            q.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(p, q)
    if dst.exists():
        for q in dst.rglob("*"):
            if q.is_file() and "__pycache__" not in q.parts and not q.name.endswith(SKIP_SUFFIX) \
                    and not (generated_c and q.suffix == ".c") and q.relative_to(dst) not in want:
                q.unlink()
sync("lgcore", generated_c=True)
for rel in ("include", "tests", "fuzz", "examples", "setup.py", "pyproject.toml", "README.md"):
    if (root / rel).exists():
        sync(rel)
EOF
SEED_C=$("$PY" -c 'import importlib.util,sys; s=importlib.util.spec_from_file_location("r",sys.argv[1]); m=importlib.util.module_from_spec(s); sys.modules["r"]=m; s.loader.exec_module(m); p=m.reference_source(); print(p or "")' "$ROOT/lgcore/reference.py")
if [ -z "$SEED_C" ]; then
    echo "asan: the C original is not available (see lgcore/reference.py)" >&2
    exit 2
fi

# ---- 2. build both under the sanitizers -------------------------------------
SAN_FLAGS="-fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=all -g"
# The C original reaches lguest_data's fields as &lguest_data->field and
# hands that to get_user/put_user: in the kernel a user pointer, never
# dereferenced by C, that is NULL before LGUEST_INIT and may be unaligned
# (LGUEST_INIT checks only the range).  Forming it is a "null"/"alignment"
# report for UBSan, though no memory is touched (the shim's uaccess does
# the access, under ASan).  The original is kernel code we compile, not the
# code under test, so those two checks are off for it alone; lgcore's engine
# keeps the full -fsanitize=undefined.
REF_SAN_FLAGS="$SAN_FLAGS -fno-sanitize=null,alignment"
say "building lgcore's extensions with LGCORE_SANITIZE=1"
(cd "$TREE" && CC="$CC" LGCORE_SANITIZE=1 CFLAGS="-fno-sanitize-recover=all" \
    "$PY" setup.py -q build_ext --inplace > "$OUT/build-lgcore.log" 2>&1) \
    || { tail -30 "$OUT/build-lgcore.log"; exit 2; }
say "building the C original ($SEED_C) with $REF_SAN_FLAGS"
export LGCORE_REFERENCE_CACHE=$TREE/reference
export LGCORE_C_ORIGINAL=$SEED_C
(cd "$TREE" && CC="$CC" CFLAGS="$REF_SAN_FLAGS" LDFLAGS="-fsanitize=address,undefined" \
    "$PY" lgcore/reference.py > "$OUT/build-reference.log" 2>&1) \
    || { tail -30 "$OUT/build-reference.log"; exit 2; }
REF_SO=$(tail -1 "$OUT/build-reference.log")
for so in "$TREE"/lgcore/*.so "$REF_SO"; do
    if ! ldd "$so" | grep -q libasan; then
        echo "asan: $so is not linked against libasan" >&2
        exit 2
    fi
done

# ---- 3. run with the runtimes preloaded -------------------------------------
LIBASAN=$("$CC" -print-file-name=libasan.so)
LIBUBSAN=$("$CC" -print-file-name=libubsan.so)
export LD_PRELOAD="$LIBASAN $LIBUBSAN"
# CPython's own allocations are not all freed at exit: no leak checking.
# Any report ends the process (halt/abort) and is also written to $LOGS.
export ASAN_OPTIONS="detect_leaks=0:halt_on_error=1:abort_on_error=1:print_stacktrace=1:log_path=$LOGS/asan:strict_string_checks=1:detect_stack_use_after_return=1:check_initialization_order=1"
export UBSAN_OPTIONS="halt_on_error=1:abort_on_error=1:print_stacktrace=1:log_path=$LOGS/ubsan"
# Every Python object through malloc, so ASan sees each buffer's bounds.
export PYTHONMALLOC=malloc
export PYTHONPATH=$TREE
export LGCORE_FUZZ_TREE=$TREE
export LGCORE_REQUIRE_C_ORIGINAL=1
export LGCORE_FUZZ_SECONDS=${LGCORE_FUZZ_SECONDS:-30}
# The differential suite's budget under the sanitizers (default 20,000
# sequences outside them; ASan and PYTHONMALLOC=malloc cost ~3x).
export LGCORE_DIFF_EXAMPLES=${ASAN_DIFF_EXAMPLES:-${LGCORE_DIFF_EXAMPLES:-5000}}

cd "$TREE"
"$PY" -c 'import lgcore, sys; from pathlib import Path; p = Path(lgcore.__file__).resolve(); sys.exit(0 if str(p).startswith(sys.argv[1]) else f"lgcore imported from {p}, not the sanitizer tree")' "$TREE"

status=0
say "pytest $SUITES"
"$PY" -m pytest -q -p no:cacheprovider $SUITES || status=1

say "replaying the corpora"
CORPORA=("$TREE/fuzz/corpus" "$TREE/fuzz/corpus_regressions")
for d in "$ROOT"/build/fuzz*/corpus; do
    [ -d "$d" ] && CORPORA+=("$d")
done
"$PY" -m fuzz.run --replay "${CORPORA[@]}" || status=1

say "fuzzing for $FUZZ_SECONDS s"
"$PY" -m fuzz.run --seconds "$FUZZ_SECONDS" --jobs 1 --native off \
    --workdir "$OUT/fuzz" --save "$OUT/found" --summary "$OUT/fuzz-summary.json" || status=1

reports=$(find "$LOGS" -type f | wc -l)
if [ "$reports" -ne 0 ]; then
    say "$reports sanitizer report(s):"
    for f in "$LOGS"/*; do echo "--- $f"; head -60 "$f"; done
    status=1
fi
if [ "$status" -eq 0 ]; then
    say "clean: no sanitizer report, every suite passed"
else
    say "FAILED"
fi
exit "$status"
