# SPDX-License-Identifier: GPL-2.0-only
"""Build the unmodified C original as a cffi extension, for differential
tests and benchmarks.

The original is lguest's ``drivers/lguest/interrupts_and_traps.c``: by
default the copy in ``../shared/seed/`` next to the repository, or whatever
file the ``LGCORE_C_ORIGINAL`` environment variable names (a Linux 2.6.3x
tree's copy works too).  It is compiled as it is, against the stand-in
kernel headers in ``include/kshim/``, together with ``kshim.c`` (the lguest
helpers it calls) and ``kshim_glue.c`` (the harness API declared in
``kshim_glue.h``).  The original is never copied into the repository.

Builds are cached in ``<repo>/build/reference/`` (or ``LGCORE_REFERENCE_CACHE``)
under a name keyed by a hash of every input, so a rerun is a file lookup.

This module imports only the standard library (cffi is needed to build, not
to import), and does not depend on the compiled lgcore engine, so it can be
loaded on its own with importlib before anything else is built.

Typical use::

    ref = load_reference()          # raises ReferenceUnavailable with a reason
    ffi, lib = ref.ffi, ref.lib
    g = ref.new_guest(bytearray(1 << 20))
    lib.kshim_load_guest_idt_entry(g.ptr, 0x20, 0x00600530, 0xC1008E00)
"""
from __future__ import annotations

import hashlib
import importlib.machinery
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import sysconfig
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = [
    "ReferenceUnavailable",
    "Reference",
    "RefGuest",
    "repo_root",
    "reference_source",
    "cache_dir",
    "build_reference",
    "load_reference",
    "ENV_SOURCE",
    "ENV_CACHE",
    "ENV_REQUIRE",
]

ENV_SOURCE = "LGCORE_C_ORIGINAL"
ENV_CACHE = "LGCORE_REFERENCE_CACHE"
#: Tests turn "reference unavailable" from a skip into a failure when set to 1.
ENV_REQUIRE = "LGCORE_REQUIRE_C_ORIGINAL"

#: Compiler flags.  -O2 as the benchmarks assume; the -fno-* flags are the
#: kernel's own (it builds with them), so the original is compiled under the
#: assumptions it was written for.
CFLAGS = [
    "-O2",
    "-std=gnu11",
    "-fno-strict-aliasing",
    "-fno-delete-null-pointer-checks",
    "-fno-strict-overflow",
]

_SHIM_SOURCES = ("kshim.c", "kshim_glue.c")


class ReferenceUnavailable(RuntimeError):
    """The C original cannot be built or loaded; the message says why."""


def repo_root() -> Path:
    return Path(__file__).resolve().parent.parent


def _include_dir() -> Path:
    """The headers: inside the package when installed from a wheel
    (lgcore/include/), at the repository's top in a checkout."""
    packaged = Path(__file__).resolve().parent / "include"
    if (packaged / "lgcore" / "lgcore.h").is_file():
        return packaged
    return repo_root() / "include"


def _shim_dir() -> Path:
    return _include_dir() / "kshim"


def reference_source() -> Path | None:
    """The C original to build, or None when there is none.

    ``LGCORE_C_ORIGINAL`` wins when set (None if it names no file);
    otherwise ``../shared/seed/interrupts_and_traps.c`` beside the repo.
    """
    env = os.environ.get(ENV_SOURCE)
    if env:
        p = Path(env).expanduser()
        return p.resolve() if p.is_file() else None
    p = repo_root().parent / "shared" / "seed" / "interrupts_and_traps.c"
    return p.resolve() if p.is_file() else None


def cache_dir() -> Path:
    env = os.environ.get(ENV_CACHE)
    if env:
        return Path(env).expanduser().resolve()
    if (repo_root() / "setup.py").is_file():
        return repo_root() / "build" / "reference"
    # installed: never write into site-packages
    xdg = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(xdg) / "lgcore" / "reference"


# ---- the cffi interface -------------------------------------------------

# lgcore.h's guest ABI (fixed layouts, declared in full so cffi checks every
# offset at build time) and its engine state (declared with "...;" so fields
# lgcore may add later do not break the build; kshim_glue.c's state transfer
# must learn any new field).
_CDEF_TYPES = """
typedef struct { uint32_t arg0, arg1, arg2, arg3, arg4; } lg_hcall_args_t;
typedef struct {
    uint32_t irq_enabled;
    uint32_t blocked_interrupts[1];
    uint32_t cr2;
    int32_t  time_sec;
    int32_t  time_nsec;
    int32_t  irq_pending;
    uint8_t  hcall_status[64];
    lg_hcall_args_t hcalls[64];
    uint32_t reserve_mem;
    uint32_t tsc_khz;
    uint32_t pgdir;
    uint32_t noirq_start;
    uint32_t noirq_end;
    uint32_t kernel_address;
    uint32_t syscall_vec;
} lg_lguest_data_t;
typedef struct {
    uint32_t eax, ebx, ecx, edx;
    uint32_t esi, edi, ebp;
    uint32_t gs, fs, ds, es;
    uint32_t trapnum, errcode;
    uint32_t eip, cs, eflags, esp, ss;
} lg_regs_t;
typedef struct { uint32_t a, b; } lg_desc_t;
typedef struct {
    int32_t mode;
    int64_t virtual_ns;
    int64_t virtual_ts32;
    ...;
} lg_clock_t;
typedef struct {
    uint8_t *mem;
    uint64_t mem_len;
    uint32_t pfn_limit;
    uint32_t lguest_data;
    int32_t  has_lguest_data;
    uint32_t noirq_start;
    uint32_t noirq_end;
    uint32_t stack_pages;
    uint32_t syscall_vector;
    uint32_t fixes;
    lg_clock_t *clock;
    int32_t  dead;
    uint32_t dead_args[3];
    ...;
} lg_guest_t;
typedef struct {
    lg_regs_t regs;
    lg_desc_t idt[256];
    lg_guest_t *lg;
    uint32_t irqs_pending;
    uint32_t esp1;
    uint16_t ss1;
    int32_t  changed;
    int32_t  halted;
    uint32_t pgdir;
    int32_t  paging;
    ...;
} lg_cpu_t;
"""

_CONSTANTS = """
LG_IRQS LG_IDT_ENTRIES LG_FIRST_EXTERNAL_VECTOR LG_SYSCALL_VECTOR LG_TRAP_ENTRY
LG_NO_TRAP LG_GUEST_PL LG_LGUEST_CS LG_KERNEL_CS LG_KERNEL_DS LG_USER_CS
LG_USER_DS LG_GUEST_CS LG_GUEST_DS LG_PAGE_SHIFT LG_GATE_INTERRUPT LG_GATE_TRAP
LG_CHANGED_IDT LG_CHANGED_GDT LG_CHANGED_GDT_TLS LG_CHANGED_ALL
LG_PTE_PRESENT LG_PTE_RW LG_PTE_USER
LG_LD_IRQ_ENABLED LG_LD_BLOCKED LG_LD_CR2 LG_LD_TIME LG_LD_IRQ_PENDING
LG_LD_PGDIR LG_LD_NOIRQ_START LG_LD_NOIRQ_END LG_LD_KERNEL_ADDRESS
LG_LD_SYSCALL_VEC LG_LD_SIZE LG_REGS_SIZE
LG_KILL_NONE LG_KILL_DISABLING_INTERRUPTS LG_KILL_REENABLING_INTERRUPTS
LG_KILL_BAD_STACK_SEGMENT LG_KILL_BAD_STACK_PAGES LG_KILL_BAD_IDT_TYPE
LG_KILL_SETTING_IDT_ENTRY LG_KILL_BAD_READ LG_KILL_BAD_WRITE
LG_KILL_BAD_ADDRESS LG_KILL_WRITING_TIMESTAMP LG_KILL_BAD_STACK_PAGE
LG_KILL_TEXT LG_CLOCK_REALTIME LG_CLOCK_VIRTUAL KSHIM_EREFUSED
""".split()

_PREAMBLE = '#include "kshim_glue.h"\n'


def _glue_cdef() -> str:
    text = (_shim_dir() / "kshim_glue.h").read_text()
    begin, end = "/* KSHIM_CDEF_BEGIN */", "/* KSHIM_CDEF_END */"
    try:
        body = text.split(begin, 1)[1].split(end, 1)[0]
    except IndexError:
        raise ReferenceUnavailable(
            "include/kshim/kshim_glue.h lacks its KSHIM_CDEF markers") from None
    return body


def _cdef() -> str:
    consts = "".join(f"static const int {name};\n" for name in _CONSTANTS)
    return _CDEF_TYPES + consts + _glue_cdef()


# ---- building -----------------------------------------------------------

def _shim_files() -> list[Path]:
    files = sorted(p for p in _shim_dir().rglob("*") if p.is_file()
                   and p.suffix in (".h", ".c"))
    return files + [_include_dir() / "lgcore" / "lgcore.h"]


def _build_key(source: Path) -> str:
    h = hashlib.sha256()

    def add(label: str, data: bytes) -> None:
        h.update(label.encode() + b"\0" + len(data).to_bytes(8, "little") + data)

    add("original", source.read_bytes())
    for p in _shim_files():
        add(str(p.relative_to(_include_dir())), p.read_bytes())
    add("cdef", _cdef().encode())
    add("preamble", _PREAMBLE.encode())
    add("cflags", " ".join(CFLAGS).encode())
    # the compiler environment the build honours: a sanitizer or coverage
    # build must not be reused as the plain one
    for var in ("CC", "CFLAGS", "CPPFLAGS", "LDFLAGS"):
        add("env " + var, os.environ.get(var, "").encode())
    add("python", (sysconfig.get_config_var("EXT_SUFFIX") or "").encode())
    add("builder", Path(__file__).read_bytes())
    try:
        import cffi
        add("cffi", cffi.__version__.encode())
    except ImportError:
        pass
    return h.hexdigest()[:20]


def _module_name(key: str) -> str:
    return f"_lgcore_reference_{key}"


def _ext_suffix() -> str:
    return sysconfig.get_config_var("EXT_SUFFIX") or ".so"


def _require_source() -> Path:
    src = reference_source()
    if src is not None:
        return src
    env = os.environ.get(ENV_SOURCE)
    if env:
        raise ReferenceUnavailable(f"{ENV_SOURCE}={env!r} is not a file")
    raise ReferenceUnavailable(
        "no C original: ../shared/seed/interrupts_and_traps.c does not exist "
        f"beside the repository and {ENV_SOURCE} is not set")


def build_reference(force: bool = False) -> Path:
    """Compile the original (if the cache lacks this exact build) and
    return the path of the extension module.  Raises ReferenceUnavailable."""
    source = _require_source()
    for p in _shim_files():
        if not p.is_file():
            raise ReferenceUnavailable(f"missing shim file {p}")
    key = _build_key(source)
    name = _module_name(key)
    out_dir = cache_dir()
    target = out_dir / f"{name}{_ext_suffix()}"
    if target.is_file() and not force:
        return target
    try:
        import cffi  # noqa: F401
    except ImportError as exc:
        raise ReferenceUnavailable(f"cffi is not installed: {exc}") from None
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ReferenceUnavailable(f"cannot create cache dir {out_dir}: {exc}") from None

    # The compiler runs in a child process so its output can be captured
    # and reported, and setuptools state stays out of this interpreter.
    job = {
        "name": name,
        "source": str(source),
        "shim_dir": str(_shim_dir()),
        "include_dir": str(_include_dir()),
        "cdef": _cdef(),
        "preamble": _PREAMBLE,
        "cflags": CFLAGS,
    }
    with tempfile.TemporaryDirectory(prefix="build-", dir=out_dir) as tmp:
        job["tmpdir"] = tmp
        job_file = Path(tmp) / "job.json"
        job_file.write_text(json.dumps(job))
        # Run this file by path (not as a script, which would put lgcore/ on
        # sys.path) from the scratch directory.
        runner = ("import runpy, sys; sys.argv = ['reference', '--build-job', "
                  f"{str(job_file)!r}]; runpy.run_path({str(Path(__file__).resolve())!r}, "
                  "run_name='__main__')")
        proc = subprocess.run([sys.executable, "-c", runner], cwd=tmp,
                              capture_output=True, text=True)
        built = Path(tmp) / "result.txt"
        if proc.returncode != 0 or not built.is_file():
            log = (proc.stdout + proc.stderr).strip().splitlines()
            tail = "\n".join(log[-40:])
            raise ReferenceUnavailable(
                f"building the C original {source} failed "
                f"(exit {proc.returncode}):\n{tail}")
        so = Path(built.read_text().strip())
        os.replace(so, target)
    (out_dir / f"{name}.json").write_text(json.dumps(
        {"source": str(source), "cflags": CFLAGS, "module": target.name}, indent=1))
    return target


def _run_build_job(job_file: str) -> None:
    """Child-process half of build_reference()."""
    import cffi

    job = json.loads(Path(job_file).read_text())
    tmp = Path(job["tmpdir"])
    source = Path(job["source"])
    # A kernel tree keeps its own lg.h beside the original, and #include
    # "lg.h" searches the includer's directory first.  Compile a private
    # copy, in a system temporary directory, so the shim's lg.h is used.
    stage = None
    if (source.parent / "lg.h").exists():
        stage = Path(tempfile.mkdtemp(prefix="lgcore-original-"))
        staged = stage / source.name
        shutil.copyfile(source, staged)
        source = staged
    try:
        ffi = cffi.FFI()
        ffi.cdef(job["cdef"])
        shim = Path(job["shim_dir"])
        ffi.set_source(
            job["name"], job["preamble"],
            sources=[str(source)] + [str(shim / s) for s in _SHIM_SOURCES],
            include_dirs=[str(shim), job["include_dir"]],
            extra_compile_args=list(job["cflags"]),
        )
        so = ffi.compile(tmpdir=str(tmp), verbose=True)
    finally:
        if stage is not None:
            shutil.rmtree(stage, ignore_errors=True)
    (tmp / "result.txt").write_text(str(Path(so).resolve()))


# ---- loading ------------------------------------------------------------

@dataclass
class RefGuest:
    """One guest + vCPU of the original over a Python-owned RAM buffer."""
    ref: "Reference"
    ptr: Any                      # kshim_ref_t *, freed when collected
    ram: Any                      # the buffer (kept alive)
    ram_c: Any                    # cffi view of it

    @property
    def dead(self) -> str | None:
        p = self.ref.lib.kshim_dead_reason(self.ptr)
        return None if p == self.ref.ffi.NULL else self.ref.ffi.string(p).decode()

    @property
    def regs(self) -> Any:
        return self.ref.lib.kshim_regs(self.ptr)

    @property
    def idt(self) -> Any:
        return self.ref.lib.kshim_idt(self.ptr)

    def state_out(self) -> tuple[Any, Any]:
        """Fresh (lg_guest_t *, lg_cpu_t *) holding the original's state."""
        g = self.ref.ffi.new("lg_guest_t *")
        c = self.ref.ffi.new("lg_cpu_t *")
        self.ref.lib.kshim_state_out(self.ptr, g, c)
        return g, c

    def state_in(self, g: Any = None, c: Any = None) -> None:
        ffi = self.ref.ffi
        self.ref.lib.kshim_state_in(self.ptr, g if g is not None else ffi.NULL,
                                    c if c is not None else ffi.NULL)


@dataclass
class Reference:
    """The loaded original: cffi's ``ffi`` and ``lib`` plus where they came from."""
    ffi: Any
    lib: Any
    source: Path
    path: Path
    module: Any = field(repr=False, default=None)

    def new_guest(self, ram: Any, mem_len: int | None = None) -> RefGuest:
        """A guest + vCPU over ``ram`` (any writable buffer; kept alive).
        pfn_limit starts as len(ram) // 4096."""
        ram_c = self.ffi.from_buffer("uint8_t[]", ram, require_writable=True)
        n = len(ram_c) if mem_len is None else mem_len
        ptr = self.lib.kshim_new(ram_c, n)
        if ptr == self.ffi.NULL:
            raise MemoryError("kshim_new")
        ptr = self.ffi.gc(ptr, self.lib.kshim_free)
        return RefGuest(self, ptr, ram, ram_c)

    def defaults(self, values: Any) -> Any:
        """A uint32_t[256] of Switcher stub addresses."""
        return self.ffi.new("uint32_t[256]", list(values))


_loaded: dict[Path, Reference] = {}


def load_reference(force: bool = False) -> Reference:
    """Build if needed, import, and return the original.  The host-global
    shim state (used vectors, syscall_vector parameter, clock, printk log)
    is reset on first load.  Raises ReferenceUnavailable."""
    path = build_reference(force=force)
    if path in _loaded and not force:
        return _loaded[path]
    name = path.name.split(".", 1)[0]
    try:
        loader = importlib.machinery.ExtensionFileLoader(name, str(path))
        spec = importlib.util.spec_from_file_location(name, str(path), loader=loader)
        assert spec is not None
        module = importlib.util.module_from_spec(spec)
        loader.exec_module(module)
    except Exception as exc:  # a stale or foreign-ABI cache file
        raise ReferenceUnavailable(f"cannot load {path}: {exc}") from exc
    ref = Reference(module.ffi, module.lib, _require_source(), path, module)
    ref.lib.kshim_host_reset()
    _loaded[path] = ref
    return ref


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--build-job":
        _run_build_job(sys.argv[2])
    else:
        try:
            print(build_reference(force="--force" in sys.argv))
        except ReferenceUnavailable as exc:
            print(f"reference unavailable: {exc}", file=sys.stderr)
            sys.exit(1)
