# SPDX-License-Identifier: GPL-2.0-only
"""Build tests/stress/_nogil_stress.pyx against the installed lgcore (its
.pxd files and header), once per source version, into build/stress-ext/."""
from __future__ import annotations

import hashlib
import importlib.util
import os
import sys
from pathlib import Path

import lgcore

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent


def _fingerprint(pyx: Path) -> str:
    h = hashlib.sha256(pyx.read_bytes())
    pkg = Path(lgcore.__file__).resolve().parent
    for dep in sorted(pkg.glob("*.pxd")) + sorted(Path(lgcore.get_include()).rglob("*.h")):
        h.update(dep.name.encode())
        h.update(dep.read_bytes())
    h.update(sys.version.encode())
    h.update(os.environ.get("LGCORE_SANITIZE", "").encode())
    return h.hexdigest()[:16]


def load(name: str = "_nogil_stress"):
    """Import the compiled helper, building it first when needed."""
    pyx = HERE / f"{name}.pyx"
    out = ROOT / "build" / "stress-ext" / _fingerprint(pyx)
    so = next(out.glob(f"{name}*.so"), None) if out.exists() else None
    if so is None:
        out.mkdir(parents=True, exist_ok=True)
        from Cython.Build import cythonize
        from setuptools import Distribution, Extension

        cflags = ["-O2", "-Wno-unused-function"]
        ldflags = []
        if os.environ.get("LGCORE_SANITIZE") == "1":
            cflags += ["-fsanitize=address,undefined", "-fno-omit-frame-pointer", "-g"]
            ldflags += ["-fsanitize=address,undefined"]
        ext = Extension(name, [str(pyx)], include_dirs=[lgcore.get_include()],
                        extra_compile_args=cflags, extra_link_args=ldflags)
        mods = cythonize([ext], include_path=[lgcore.get_pxd_path()], quiet=True,
                         build_dir=str(out / "c"), compiler_directives={"language_level": 3})
        dist = Distribution({"ext_modules": mods})
        cmd = dist.get_command_obj("build_ext")
        cmd.build_lib = str(out)
        cmd.build_temp = str(out / "tmp")
        cmd.ensure_finalized()
        cmd.run()
        so = next(out.glob(f"{name}*.so"))
    spec = importlib.util.spec_from_file_location(name, so)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod
