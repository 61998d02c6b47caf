# SPDX-License-Identifier: GPL-2.0-only
"""Deliberately broken lgcore builds, to prove the differential suite
catches a wrong engine.

``build_mutant()`` copies the package (sources, headers, the compiled
extensions, setup.py) into a scratch directory, applies one textual
mutation to an engine source, and rebuilds there the extensions the edit
affects (one for a .pyx edit, every one that cimports an edited .pxd) with
the Extension objects, directives and flags of the project's own setup.py,
at -O0 (LGCORE_OPT=0) since only the behaviour of the result matters.
``run_driver()`` then runs the sequence test (tests/diff/runner.py, no
shrinking) in a child process whose ``lgcore`` is the scratch copy, against
the same cached build of the C original, and returns what it reported.

The working tree is never touched.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class Mutation:
    name: str
    path: str          # relative to the repository
    old: str           # must occur exactly once
    new: str
    why: str
    rebuild: tuple[str, ...] = ()   # extensions to rebuild; default: the .pyx's own
    sequences: int = 400            # random sequences the driver may need to catch it
    scenario: str = "sequences"     # the driver's test: mutant_driver.SCENARIOS


MUTATIONS = {m.name: m for m in (
    Mutation(
        "push-order", "lgcore/deliver.pyx",
        "        memcpy(top - 8, &r_cs, 4)\n"
        "        memcpy(top - 12, &r_eip, 4)\n"
        "        if has_err:\n",
        "        memcpy(top - 8, &r_eip, 4)\n"
        "        memcpy(top - 12, &r_cs, 4)\n"
        "        if has_err:\n",
        "H:210 pushes eip before cs: the frame an iret pops is wrong"),
    Mutation(
        "fused-push-order", "lgcore/deliver.pxd",
        "    memcpy(top - 8, &cpu.regs.cs, 4)\n"
        "    memcpy(top - 12, &cpu.regs.eip, 4)\n",
        "    memcpy(top - 8, &cpu.regs.eip, 4)\n"
        "    memcpy(top - 12, &cpu.regs.cs, 4)\n",
        "the fused deliver-pending path pushes eip before cs",
        rebuild=("deliver", "vcpu"), sequences=5000),
    Mutation(
        "more-cleared", "lgcore/deliver.pxd",
        "        more[0] = True\n",
        "        more[0] = False\n",
        "H:205 treats `more` as 'another IRQ waits' in the seed profile",
        rebuild=("deliver", "vcpu")),
    Mutation(
        "direct-invalid-opcode", "lgcore/idt.pyx",
        "    return (num != 14 and num != 13 and num != 7 and num != 6\n",
        "    return (num != 14 and num != 13 and num != 7\n",
        "H:250 lets invalid-opcode traps go straight to the guest"),
    Mutation(
        "gate-keeps-s-bit", "lgcore/idt.pxd",
        "    trap.b = hi & LG_GATE_KEEP_MASK\n",
        "    trap.b = hi & 0xFFFFFF00u\n",
        "H:235 keeps the S bit of the guest's gate",
        rebuild=("idt", "deliver", "vcpu")),
    Mutation(
        "address-check-later-rule", "lgcore/guestmem.pxd",
        "    return (end >> LG_PAGE_SHIFT) < lg.pfn_limit\n",
        "    return (end >> LG_PAGE_SHIFT) <= lg.pfn_limit\n",
        "the seed-era address check lets an access end exactly at pfn_limit",
        rebuild=("idt", "deliver", "vcpu")),
    Mutation(
        "kept-walk-skips-table-entry", "lgcore/guestmem.pxd",
        "        if pgd == cpu.walk_pde and pte == cpu.walk_pte:\n",
        "        if pgd == cpu.walk_pde:\n",
        "the fused path's kept stack walk trusts a page-table entry the guest rewrote",
        rebuild=("idt", "deliver", "vcpu"), scenario="kept_walk"),
)}

#: Built and checked in the default run (one extension at -O0: seconds).
DEFAULT_MUTATIONS = ("push-order",)

_IGNORE = shutil.ignore_patterns("__pycache__", "*.html", "*.pyc", "build")


def copy_package(dest: Path) -> Path:
    """A scratch copy of what building and importing lgcore needs."""
    dest.mkdir(parents=True, exist_ok=True)
    # copy2 keeps modification times, so the copied .c and .so files stay
    # up to date and only what the mutation touches is rebuilt.
    shutil.copytree(REPO / "lgcore", dest / "lgcore", ignore=_IGNORE, copy_function=shutil.copy2)
    shutil.copytree(REPO / "include", dest / "include", ignore=_IGNORE, copy_function=shutil.copy2)
    shutil.copy2(REPO / "setup.py", dest / "setup.py")
    return dest


def apply(mutation: Mutation, root: Path) -> None:
    path = root / mutation.path
    text = path.read_text()
    count = text.count(mutation.old)
    if count != 1:
        raise AssertionError(
            f"mutation {mutation.name!r}: the text to replace occurs {count} times in "
            f"{mutation.path} (the source changed; update tests/diff/mutants.py)")
    path.write_text(text.replace(mutation.old, mutation.new))


# Run setup.py with setuptools.setup() captured, then build only the wanted
# extensions from what it passed (already cythonized, with its flags).
_BUILD_SCRIPT = """
import runpy, sys, setuptools
want = set(sys.argv[1:])
captured = {}
real_setup = setuptools.setup
setuptools.setup = lambda **kw: captured.update(kw)
sys.argv = ["setup.py"]
runpy.run_path("setup.py", run_name="__main__")
exts = [e for e in captured["ext_modules"] if e.name.rsplit(".", 1)[-1] in want]
assert len(exts) == len(want), (want, [e.name for e in captured["ext_modules"]])
real_setup(name="lgcore-mutant", ext_modules=exts,
           script_args=["-q", "build_ext", "--inplace", "--force"])
"""


def build(root: Path, extensions: tuple[str, ...]) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    for var in ("LGCORE_ANNOTATE", "LGCORE_DEBUG", "LGCORE_SANITIZE"):
        env.pop(var, None)
    env["LGCORE_OPT"] = "0"
    return subprocess.run([sys.executable, "-c", _BUILD_SCRIPT, *extensions],
                          cwd=root, env=env, capture_output=True, text=True)


def extensions_for(mutation: Mutation) -> tuple[str, ...]:
    if mutation.rebuild:
        return mutation.rebuild
    path = Path(mutation.path)
    assert path.suffix == ".pyx", f"{mutation.name}: say which extensions a {path.suffix} edit rebuilds"
    return (path.stem,)


def build_mutant(mutation: Mutation | None, root: Path) -> Path:
    """Copy, mutate and rebuild; returns root.  ``None`` (the control) only
    copies."""
    copy_package(root)
    if mutation is None:
        return root
    apply(mutation, root)
    proc = build(root, extensions_for(mutation))
    if proc.returncode != 0:
        raise RuntimeError(f"building the mutant failed:\n{proc.stdout}\n{proc.stderr}"[-4000:])
    return root


def run_driver(root: Path, examples: int, reference, scenario: str = "sequences") -> dict:
    """Run a differential test (``scenario``, one of mutant_driver.SCENARIOS)
    on the package in ``root``; returns the driver's JSON report
    ({"caught": bool, ...})."""
    env = dict(os.environ)
    env["LGCORE_C_ORIGINAL"] = str(reference.source)
    env["LGCORE_REFERENCE_CACHE"] = str(reference.path.parent)
    env.pop("LGCORE_DIFF_SEED", None)
    env.pop("PYTHONPATH", None)
    code = ("import sys; sys.path.append(%r); "
            "from tests.diff.mutant_driver import main; main(%d, %r)"
            % (str(REPO), examples, scenario))
    proc = subprocess.run([sys.executable, "-c", code], cwd=root, env=env,
                          capture_output=True, text=True)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if proc.returncode != 0 or not lines:
        raise RuntimeError(f"the mutant driver failed (exit {proc.returncode}):\n"
                           f"{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return json.loads(lines[-1])
