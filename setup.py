# SPDX-License-Identifier: GPL-2.0-only
"""Build of lgcore's compiled engine.  Every extension and every compiler
directive is listed here and nowhere else.

Environment switches:
  LGCORE_DEBUG=1     line tracing, C asserts, -O0 -g, annotate reports
  LGCORE_ANNOTATE=1  write Cython's annotate HTML beside each .pyx
  LGCORE_SANITIZE=1  build with -fsanitize=address,undefined
  LGCORE_OPT=0       compile at -O0 instead of -O2: a quick build where the
                     speed of the result does not matter (tests/packaging's
                     wheel build)
"""
import os

from setuptools import Extension, find_packages, setup
from Cython.Build import cythonize

DEBUG = os.environ.get("LGCORE_DEBUG") == "1"
ANNOTATE = DEBUG or os.environ.get("LGCORE_ANNOTATE") == "1"
SANITIZE = os.environ.get("LGCORE_SANITIZE") == "1"
OPT = os.environ.get("LGCORE_OPT", "2")
if OPT not in ("0", "1", "2", "3"):
    raise SystemExit(f"LGCORE_OPT={OPT!r}: use 0, 1, 2 or 3")

DIRECTIVES = {
    "language_level": 3,
    "embedsignature": True,
    "cdivision": True,
    # The engine works on raw pointers after explicit validation, so the
    # memoryview checks only guard the Python face; keep them on there.
    "boundscheck": True,
    "wraparound": False,
    "initializedcheck": True,
    "binding": False,
}
MACROS = []
CFLAGS = [f"-O{OPT}", "-std=gnu11", "-Wno-unused-function"]
LDFLAGS = []
if DEBUG:
    DIRECTIVES.update(linetrace=True, profile=False)
    MACROS += [("CYTHON_TRACE_NOGIL", "1"), ("LG_DEBUG", "1")]
    CFLAGS = ["-O0", "-g", "-std=gnu11"]
if SANITIZE:
    CFLAGS += ["-fsanitize=address,undefined", "-fno-omit-frame-pointer", "-g"]
    LDFLAGS += ["-fsanitize=address,undefined"]

INCLUDE = [os.path.join(os.path.dirname(os.path.abspath(__file__)), "include")]


def ext(name):
    return Extension(
        f"lgcore.{name}",
        [f"lgcore/{name}.pyx"],
        include_dirs=INCLUDE,
        define_macros=MACROS,
        extra_compile_args=CFLAGS,
        extra_link_args=LDFLAGS,
    )


# The headers ship inside the package (lgcore.get_include() finds them), and
# so do the demo guest's sources.  Data-only folders are listed as packages
# too, so setuptools knows they are meant to ship (pyproject.toml names
# their files).
PACKAGE_DIR = {
    "lgcore.include.lgcore": "include/lgcore",
    "lgcore.include.kshim": "include/kshim",
    "lgcore.include.kshim.linux": "include/kshim/linux",
}
PACKAGES = find_packages(include=["lgcore", "lgcore.*"]) + ["lgcore.launcher.guest", *PACKAGE_DIR]

setup(
    packages=PACKAGES,
    package_dir=PACKAGE_DIR,
    ext_modules=cythonize(
        [ext("idt"), ext("deliver"), ext("vcpu")],
        compiler_directives=DIRECTIVES,
        annotate=ANNOTATE,
        # An annotate run must rewrite the reports even when the .c files
        # are up to date (cythonize skips those otherwise).
        force=ANNOTATE,
        include_path=["."],
    ),
    # Compile the extensions side by side (make build, pip wheel).
    options={"build_ext": {"parallel": os.cpu_count() or 1}},
    zip_safe=False,
)
