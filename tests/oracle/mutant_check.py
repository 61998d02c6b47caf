# SPDX-License-Identifier: GPL-2.0-only
"""Manual check that the oracle fails on a really mis-built engine.

    .venv/bin/python tests/oracle/mutant_check.py [--keep]

Copies the working tree to a temporary directory, edits the copy's
lgcore/deliver.pyx so that set_guest_interrupt pushes eip before cs (a
wrong frame order), builds that copy in place, and runs part of the oracle
layer against it.  Exits 0 when the oracle *fails* there (as it must) and
when the same tests pass on the unmodified copy; 1 otherwise.  The real
tree is never touched.  (Not collected by pytest: the build takes a
minute.)
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PUSHES = ("    lg_push_guest_stack(cpu, &gstack, regs.cs)\n"
          "    lg_push_guest_stack(cpu, &gstack, regs.eip)\n")
SWAPPED = ("    lg_push_guest_stack(cpu, &gstack, regs.eip)\n"
           "    lg_push_guest_stack(cpu, &gstack, regs.cs)\n")
TESTS = ["tests/oracle/test_exceptions.py", "tests/oracle/test_irq.py", "-k",
         "real_exception or test_irq[0]"]


def _copy(dst: Path) -> None:
    ignore = shutil.ignore_patterns(".venv", ".git", "build", "__pycache__", ".pytest_cache",
                                    ".hypothesis", "*.so", "*.html")
    shutil.copytree(ROOT, dst, ignore=ignore)


def _build_and_test(tree: Path) -> int:
    env = dict(os.environ, PYTHONPATH=str(tree), LGCORE_REQUIRE_UNICORN="1")
    build = subprocess.run([sys.executable, "setup.py", "-q", "build_ext", "--inplace"], cwd=tree,
                           env=env, capture_output=True, text=True)
    if build.returncode != 0:
        print(build.stdout, build.stderr)
        raise SystemExit(f"building {tree} failed")
    where = subprocess.run([sys.executable, "-c", "import lgcore, sys; print(lgcore.__file__)"],
                           cwd=tree, env=env, check=True, capture_output=True, text=True).stdout
    if not where.startswith(str(tree)):
        raise SystemExit(f"the copy's lgcore is not the one imported ({where.strip()})")
    run = subprocess.run([sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider",
                          "-m", "oracle", *TESTS], cwd=tree, env=env, capture_output=True, text=True)
    tail = "\n".join(run.stdout.splitlines()[-25:])
    print(tail)
    return run.returncode


def main() -> int:
    keep = "--keep" in sys.argv
    tmp = Path(tempfile.mkdtemp(prefix="lgcore-mutant-"))
    try:
        good, bad = tmp / "good", tmp / "mutant"
        _copy(good)
        _copy(bad)
        src = bad / "lgcore" / "deliver.pyx"
        text = src.read_text()
        if PUSHES not in text:
            print("deliver.pyx no longer has the cs/eip pushes this check swaps; update PUSHES")
            return 1
        src.write_text(text.replace(PUSHES, SWAPPED, 1))
        print("== unmodified copy ==")
        rc_good = _build_and_test(good)
        print("== mutant: eip pushed before cs ==")
        rc_bad = _build_and_test(bad)
        ok = rc_good == 0 and rc_bad != 0
        print(f"unmodified: pytest exit {rc_good}; mutant: pytest exit {rc_bad} -> "
              f"{'the oracle catches the wrong frame order' if ok else 'CHECK FAILED'}")
        return 0 if ok else 1
    finally:
        if keep:
            print(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
