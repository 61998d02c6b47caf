# SPDX-License-Identifier: GPL-2.0-only
"""Build bench/_cloops.pyx the way an outside Cython VMM would build against
lgcore: cythonize with lgcore's .pxd files on the include path
(``lgcore.get_pxd_path()``) and its header directory (``lgcore.get_include()``),
compile -O2, and load the extension from ``build/bench/``.

Not part of the installed package and not in setup.py.  The build is cached
under a key made of every input (the .pyx, lgcore's .pxd files and header,
the Cython version, the flags), so a rerun is a file lookup; a build goes to
a scratch directory first and is moved into place atomically, so two bench
runs at once do not trip over each other.
"""
from __future__ import annotations

import hashlib
import importlib.machinery
import importlib.util
import json
import os
import subprocess
import sys
import sysconfig
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
PYX = HERE / "_cloops.pyx"
MODULE = "_lgcore_bench_cloops"
CFLAGS = ["-O2", "-std=gnu11", "-Wno-unused-function"]
# lgcore's own directives (setup.py) plus the ones a benchmark loop wants;
# the file's header comment sets the same, this is the belt to its braces.
DIRECTIVES = {
    "language_level": 3,
    "boundscheck": False,
    "wraparound": False,
    "initializedcheck": False,
    "cdivision": True,
    "binding": False,
}


class BuildError(RuntimeError):
    pass


def build_dir() -> Path:
    env = os.environ.get("LGCORE_BENCH_BUILD")
    return Path(env) if env else REPO / "build" / "bench"


def _inputs():
    import lgcore
    import Cython

    pxd_root = Path(lgcore.get_pxd_path())
    inc = Path(lgcore.get_include())
    files = [PYX] + sorted((pxd_root / "lgcore").glob("*.pxd")) + sorted(inc.glob("lgcore/*.h"))
    return pxd_root, inc, files, Cython.__version__


def _key() -> str:
    pxd_root, inc, files, cyver = _inputs()
    h = hashlib.sha256()
    for p in files:
        h.update(p.name.encode() + b"\0" + p.read_bytes())
    h.update(cyver.encode())
    h.update(json.dumps([CFLAGS, DIRECTIVES, sys.version, sysconfig.get_config_var("EXT_SUFFIX")]).encode())
    h.update(Path(__file__).read_bytes())
    return h.hexdigest()[:16]


def _child(job_file: str) -> None:
    """Runs in a subprocess: cythonize + compile into job['tmp']."""
    from Cython.Build import cythonize
    from setuptools import Distribution, Extension

    job = json.loads(Path(job_file).read_text())
    tmp = Path(job["tmp"])
    # Compile a copy outside the repository: next to bench/ (a package)
    # Cython would look for lgcore's .pxd files in the repository root
    # first, not in the lgcore being measured (lgcore.get_pxd_path()).
    src = tmp / f"{job['module']}.pyx"
    src.write_text(Path(job["pyx"]).read_text())
    ext = Extension(job["module"], [str(src)], include_dirs=job["include_dirs"],
                    extra_compile_args=job["cflags"])
    exts = cythonize([ext], include_path=job["include_path"], build_dir=str(tmp / "c"),
                     compiler_directives=job["directives"], quiet=True, force=True)
    dist = Distribution({"ext_modules": exts, "script_name": "bench-build"})
    cmd = dist.get_command_obj("build_ext")
    cmd.build_lib = str(tmp / "lib")
    cmd.build_temp = str(tmp / "temp")
    cmd.inplace = False
    cmd.ensure_finalized()
    cmd.run()
    outs = cmd.get_outputs()
    (tmp / "result.txt").write_text(outs[0])


def build(force: bool = False) -> Path:
    """Compile (if needed) and return the path of the extension module."""
    out = build_dir()
    key = _key()
    suffix = sysconfig.get_config_var("EXT_SUFFIX") or ".so"
    target = out / f"{MODULE}{suffix}"
    stamp = out / f"{MODULE}.key"
    if not force and target.is_file() and stamp.is_file() and stamp.read_text().strip() == key:
        return target
    pxd_root, inc, _files, _ = _inputs()
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="cloops-", dir=out) as tmp:
        job = {
            "tmp": tmp,
            "module": MODULE,
            "pyx": str(PYX),
            "include_dirs": [str(inc)],
            "include_path": [str(pxd_root)],
            "cflags": CFLAGS,
            "directives": DIRECTIVES,
        }
        jf = Path(tmp) / "job.json"
        jf.write_text(json.dumps(job))
        runner = (f"import runpy, sys; sys.argv = ['b', '--child', {str(jf)!r}]; "
                  f"runpy.run_path({str(Path(__file__))!r}, run_name='__main__')")
        proc = subprocess.run([sys.executable, "-c", runner], cwd=tmp,
                              capture_output=True, text=True)
        res = Path(tmp) / "result.txt"
        if proc.returncode != 0 or not res.is_file():
            tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-40:])
            raise BuildError(f"building {PYX.name} failed (exit {proc.returncode}):\n{tail}")
        built = Path(res.read_text().strip())
        # Keep the generated C beside the module, for reading the inner loops.
        gen = list(Path(tmp, "c").rglob("*.c"))
        if gen:
            os.replace(gen[0], out / f"{MODULE}.c")
        os.replace(built, target)
        stamp.write_text(key + "\n")
    return target


_loaded = None


def load(force: bool = False):
    """Build if needed and import the compiled loops module."""
    global _loaded
    if _loaded is not None and not force:
        return _loaded
    path = build(force=force)
    loader = importlib.machinery.ExtensionFileLoader(MODULE, str(path))
    spec = importlib.util.spec_from_file_location(MODULE, str(path), loader=loader)
    mod = importlib.util.module_from_spec(spec)
    loader.exec_module(mod)
    sys.modules[MODULE] = mod
    _loaded = mod
    return mod


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--child":
        _child(sys.argv[2])
    else:
        print(build(force="--force" in sys.argv))
