# SPDX-License-Identifier: GPL-2.0-only
"""Guest states and measured operations, shared by the pytest-benchmark
suites (bench/test_*.py) and the callgrind driver (bench/_cg_driver.py).

Every state is built once with lgcore's public API and then handed, field for
field, to the C original through ``kshim_state_in`` over a byte-identical copy
of the RAM, so both sides start from the same guest.  ``Pair.differences()``
checks afterwards that both did the same work (registers, IDT, RAM, pending
word, kill reason).

The guest is a small Linux-like i386 guest: paging on (a two-level page
directory mapping the kernel at 0xC0000000 and the same RAM 1:1 below 4 MiB),
lguest_data at 0x1000 with interrupts enabled and nothing blocked, a no-IRQ
window away from eip, a ring-1 kernel stack per vCPU, and an IDT of trap
gates (interrupt gates for #PF and IRQ 0) loaded through LOAD_IDT_ENTRY.  The
clock is a virtual clock (the same fixed time on both sides), so the numbers
measure the engines and not clock_gettime().

Three kinds of operation:

* ``COp``: a C-level loop (n iterations) on each side: lgcore's nogil engine
  driven from bench/_cloops.pyx vs the C original driven from the
  ``kshim_bench_*`` loops of include/kshim/kshim_glue.c.
* ``PySpec``: one Python-level call, per side (lgcore, the original through
  cffi API mode, through ctypes, and the Cython floor), compiled into a loop
  of blocks of ``UNROLL`` calls.  A per-block ``rearm`` statement puts back
  what the calls consume (the stack pointer, the pending word); its cost and
  the loop's are measured by a twin loop without the calls and subtracted.
* ``RunLoop``: a VMM-style loop delivering events round robin to V vCPUs.
"""
from __future__ import annotations

import ctypes
import os
import struct
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Callable

import lgcore
import lgcore.stacks
from lgcore import reference as _refmod
from lgcore.constants import (EFLAGS_IF, GUEST_DS, LD_BLOCKED, LD_IRQ_ENABLED,
                              LD_NOIRQ_END, LD_NOIRQ_START, USER_CS, USER_DS, GUEST_CS)

from . import _build

# ---- the guest ----

RAM_SIZE = 4 << 20
LD = 0x1000                       # lguest_data (guest-physical)
PGDIR = 0x10000                   # page directory; page tables follow
KBASE = 0xC0000000
KERNEL_EIP = 0xC0100200
NOIRQ = (0xC0100100, 0xC0100110)  # the guest's iret window, away from eip
KERNEL_ESP = 0xC0300000           # + k * STACK_STRIDE for vCPU k
KSTACK_TOP = 0xC0200000           # esp1 (SET_STACK) + k * STACK_STRIDE
STACK_STRIDE = 0x2000
USER_EIP = 0x08048000
USER_ESP = 0xBFFFF000
VIRTUAL_NS = 1_700_000_000_123_456_789
UNROLL = 32                       # Python-level calls per block
ALL_IRQS = 0xFFFFFFFF

IRQ_INT_GATE = 0                  # vector 0x20: interrupt gate (timer)
IRQ_TRAP_GATE = 1                 # vector 0x21: trap gate
TRAP_PF = 14                      # #PF: interrupt gate, error code
PF_ERRCODE = 0x6


def handler(vector: int) -> int:
    return 0xC0400000 + vector * 16


def gate(vector: int, kind: str = "trap", dpl: int = 0) -> tuple[int, int]:
    """(lo, hi) words of a present gate to handler(vector) on __KERNEL_CS."""
    h = handler(vector)
    flags = 0x8000 | (dpl << 13) | (0x0E00 if kind == "int" else 0x0F00)
    return (0x0060 << 16) | (h & 0xFFFF), (h & 0xFFFF0000) | flags


def guest_idt() -> dict[int, tuple[int, int]]:
    idt = {}
    for v in range(20):
        if v in (2, 8, 15):
            continue
        idt[v] = gate(v, "int" if v == TRAP_PF else "trap", 3 if v in (3, 4) else 0)
    idt[0x80] = gate(0x80, "trap", 3)
    for irq in range(32):
        idt[0x20 + irq] = gate(0x20 + irq, "int" if irq == IRQ_INT_GATE else "trap")
    return idt


def defaults_words() -> bytes:
    """The 256 host stub addresses copy_traps/setup_default_idt_entries use."""
    return struct.pack("<256I", *[0xFFC00000 + 32 * i for i in range(256)])


def _page_tables(ram: bytearray) -> None:
    ntables = len(ram) >> 22
    for t in range(ntables):
        table = PGDIR + 0x1000 * (t + 1)
        for i in range(1024):
            struct.pack_into("<I", ram, table + 4 * i, ((t << 22) | (i << 12)) | 0x7)
        struct.pack_into("<I", ram, PGDIR + 4 * t, table | 0x7)                   # 1:1
        struct.pack_into("<I", ram, PGDIR + 4 * ((KBASE >> 22) + t), table | 0x7)  # kernel


# irq_enabled, blocked, cr2, time, irq_pending: what delivery writes.
_LD_VOLATILE = 24


def set_mode(cpu, mode: str, k: int = 0) -> None:
    if mode == "kernel":
        cpu.cs, cpu.ss, cpu.eip, cpu.esp = GUEST_CS, GUEST_DS, KERNEL_EIP, KERNEL_ESP + k * STACK_STRIDE
    elif mode == "user":
        cpu.cs, cpu.ss, cpu.eip, cpu.esp = USER_CS, USER_DS, USER_EIP, USER_ESP
    else:
        raise ValueError(mode)
    cpu.ds = cpu.es = cpu.ss


# ---- the context: lgcore, the original, the compiled loops ----

class Context:
    """Everything loaded once per process."""

    def __init__(self) -> None:
        self.cl = _build.load()
        self.ref = _refmod.load_reference()
        self.ffi, self.lib = self.ref.ffi, self.ref.lib
        self.clock = lgcore.VirtualClock(VIRTUAL_NS)
        self.cdll = _ctypes_lib(self.ref.path)
        self.defaults = defaults_words()
        self.floor = self.cl.Floor()

    def new_pair(self, mode: str = "kernel", nvcpu: int = 1,
                 prep: Callable | None = None, mirrors: int = 1) -> "Pair":
        return Pair(self, mode, nvcpu, prep, mirrors)


_ctx: Context | None = None


def context() -> Context:
    global _ctx
    if _ctx is None:
        _ctx = Context()
    return _ctx


def _ctypes_lib(path) -> ctypes.CDLL:
    """The same shared object the cffi module is (already dlopen'ed: the
    same code and host-global state), with prototypes for ctypes."""
    d = ctypes.CDLL(str(path))
    P, U32, UI, I = ctypes.c_void_p, ctypes.c_uint32, ctypes.c_uint, ctypes.c_int
    protos = {
        "kshim_interrupt_pending": ([P, ctypes.POINTER(I)], UI),
        "kshim_try_deliver_interrupt": ([P, UI, I], I),
        "kshim_set_interrupt": ([P, UI], I),
        "kshim_deliver_trap": ([P, UI], I),
        "kshim_load_guest_idt_entry": ([P, UI, U32, U32], None),
        "kshim_copy_traps": ([P, P, P], None),
        "kshim_setup_default_idt_entries": ([P, P], None),
        "kshim_check_syscall_vector": ([P], I),
        "kshim_guest_pa": ([P, U32], U32),
        "kshim_write_timestamp": ([P], None),
        "kshim_pin_page": ([P, U32], None),
        "kshim_lguest_address_ok": ([P, U32, U32], I),
        "kshim_guest_set_stack": ([P, U32, U32, UI], None),
        "kshim_pin_stack_pages": ([P], None),
        "kshim_state_in": ([P, P, P], None),
    }
    for name, (args, res) in protos.items():
        f = getattr(d, name)
        f.argtypes, f.restype = args, res
    return d


class Pair:
    """One guest with ``nvcpu`` vCPUs in lgcore, and the same guest in the C
    original: one kshim guest per vCPU over one shared RAM copy per mirror
    (mirror 0 for cffi, mirror 1 for ctypes when asked for)."""

    def __init__(self, ctx: Context, mode: str, nvcpu: int, prep, mirrors: int) -> None:
        self.ctx = ctx
        ffi = ctx.ffi
        self.ram = bytearray(RAM_SIZE)
        g = self.guest = lgcore.Guest(self.ram, clock=ctx.clock)
        g.lguest_data = LD
        struct.pack_into("<II", self.ram, LD + LD_IRQ_ENABLED, EFLAGS_IF, 0)
        assert LD_BLOCKED == LD_IRQ_ENABLED + 4
        struct.pack_into("<I", self.ram, LD + LD_NOIRQ_START, NOIRQ[0])
        struct.pack_into("<I", self.ram, LD + LD_NOIRQ_END, NOIRQ[1])
        g.noirq_start, g.noirq_end = NOIRQ
        g.stack_pages = 1
        _page_tables(self.ram)
        self.cpus = []
        idt = guest_idt()
        for k in range(nvcpu):
            cpu = g.add_vcpu()
            cpu.pgdir, cpu.paging = PGDIR, True
            cpu.esp1, cpu.ss1 = KSTACK_TOP + k * STACK_STRIDE, GUEST_DS
            set_mode(cpu, mode, k)
            cpu.eflags = 0x202
            for v, (lo, hi) in idt.items():
                cpu.load_guest_idt_entry(v, lo, hi)
            cpu.changed = 0
            self.cpus.append(cpu)
        self.cpu = self.cpus[0]
        if prep is not None:
            prep(self)
        assert g.dead is None, g.dead
        # The original: the same state, over a copy of the RAM.
        self.mirrors = []
        for _m in range(mirrors):
            ram_o = bytearray(self.ram)
            rgs = []
            for cpu in self.cpus:
                rg = ctx.ref.new_guest(ram_o)
                caddr, gaddr = ctx.cl.state_addresses(cpu)
                rg.state_in(ffi.cast("lg_guest_t *", gaddr), ffi.cast("lg_cpu_t *", caddr))
                rgs.append(rg)
            self.mirrors.append((ram_o, rgs))
        self.ram_o, self.rgs = self.mirrors[0]
        self.rg = self.rgs[0]
        self._saved_lg = [(bytes(c.regs), c.irqs_pending, c.halted) for c in self.cpus]
        self._saved_ld = bytes(self.ram[LD:LD + _LD_VOLATILE])
        self._saved_o = [[rg.state_out()[1] for rg in rgs] for _ram, rgs in self.mirrors]

    def reset_lgcore(self) -> None:
        """Put back the registers, pending word, halted and the volatile
        lguest_data words lgcore's vCPUs had when the pair was made."""
        for cpu, (regs, pend, halted) in zip(self.cpus, self._saved_lg):
            cpu.regs[:] = regs
            cpu.irqs_pending = pend
            cpu.halted = halted
        self.ram[LD:LD + _LD_VOLATILE] = self._saved_ld

    def reset_original(self, mirror: int = 0) -> None:
        """The same for the original's guests of one mirror."""
        ram_o, rgs = self.mirrors[mirror]
        for rg, c in zip(rgs, self._saved_o[mirror]):
            rg.state_in(None, c)
        ram_o[LD:LD + _LD_VOLATILE] = self._saved_ld

    def reset(self) -> None:
        self.reset_lgcore()
        for m in range(len(self.mirrors)):
            self.reset_original(m)

    def snapshot_c(self, rg) -> Any:
        """A cffi lg_cpu_t * holding the original vCPU's current state."""
        _g, c = rg.state_out()
        return c

    def differences(self, mirror: int = 0) -> list[str]:
        """What differs between lgcore's state and the original's (empty when
        both did the same work)."""
        ffi = self.ctx.ffi
        ram_o, rgs = self.mirrors[mirror]
        out = []
        for k, (cpu, rg) in enumerate(zip(self.cpus, rgs)):
            if bytes(cpu.regs) != bytes(ffi.buffer(rg.regs, 72)):
                names = "eax ebx ecx edx esi edi ebp gs fs ds es trapnum errcode eip cs eflags esp ss".split()
                a = struct.unpack("<18I", bytes(cpu.regs))
                b = struct.unpack("<18I", bytes(ffi.buffer(rg.regs, 72)))
                out += [f"vcpu{k}.{n}: lgcore {x:#x} original {y:#x}"
                        for n, x, y in zip(names, a, b) if x != y]
            if bytes(cpu.idt) != bytes(ffi.buffer(rg.idt, 2048)):
                out.append(f"vcpu{k}: guest IDT differs")
            g, c = rg.state_out()
            for name, mine in (("irqs_pending", cpu.irqs_pending), ("halted", cpu.halted),
                               ("changed", cpu.changed), ("esp1", cpu.esp1), ("ss1", cpu.ss1)):
                theirs = getattr(c, name)
                if mine != theirs:
                    out.append(f"vcpu{k}.{name}: lgcore {mine:#x} original {theirs:#x}")
            if k == 0 and (self.guest.dead_code != g.dead or
                           tuple(self.guest.dead_args) != tuple(g.dead_args)):
                out.append(f"dead: lgcore {self.guest.dead!r} original {rg.dead!r}")
        if self.ram != ram_o:
            a, b, step, first = memoryview(self.ram), memoryview(ram_o), 4096, 0
            while a[first:first + step] == b[first:first + step]:
                first += step
            while a[first] == b[first]:
                first += 1
            out.append(f"RAM differs from {first:#x}")
        return out


# ---- C level ----

@dataclass
class COp:
    op: str
    n: int                                   # iterations per timed call
    lgcore: Callable[[int], Any]
    original: Callable[[int], Any]
    extra: dict[str, Callable[[int], Any]] = field(default_factory=dict)
    check: Callable[[], list[str]] = lambda: []
    note: str = ""


class _FromStart:
    """run(n): put the state back as the pair was made, then the C loop.  The
    kshim loops (and ours) snapshot the state they are given and restore that
    before every iteration, so each timed call must start from the
    scenario's state, not from where the previous call left the guest.
    ``reset`` and ``loop`` are also there on their own, so a timer can keep
    the reset out of the timed region."""

    def __init__(self, reset: Callable[[], None], loop: Callable[[int], Any]) -> None:
        self.reset = reset
        self.loop = loop

    def __call__(self, n: int) -> None:
        self.reset()
        self.loop(n)


def _L(p: "Pair", fn, *args):
    return _FromStart(p.reset_lgcore, partial(fn, *args))


def _O(p: "Pair", fn, *args):
    return _FromStart(p.reset_original, partial(fn, *args))


def _fused_check(lib, pf: "Pair", irq: int) -> list[str]:
    # The fused loop's pair: run the original's loop once on its mirror (the
    # loops restore their snapshot first, so once is the same end state).
    pf.reset_original()
    lib.kshim_bench_deliver_irq(pf.rg.ptr, irq, 1)
    return [f"fused: {d}" for d in pf.differences()]


def _idt_buffers(ctx: Context):
    """Host IDT buffers (lgcore bytearray, original cffi array), both set up
    with the default gates, and the stub addresses for each side."""
    idt_l = bytearray(2048)
    lgcore.setup_default_idt_entries(idt_l, ctx.defaults)
    idt_o = ctx.ffi.new("lg_desc_t[256]")
    ctx.ffi.memmove(idt_o, bytes(idt_l), 2048)
    def_o = ctx.ffi.new("uint32_t[256]", list(struct.unpack("<256I", ctx.defaults)))
    return idt_l, idt_o, def_o


C_OP_NAMES: list[tuple[str, tuple[str, ...]]] = [
    ("interrupt_pending (no bit)", ()),
    ("interrupt_pending (first bit)", ()),
    ("interrupt_pending (last bit)", ()),
    ("deliver IRQ (trap gate)", ("lgcore_fused",)),
    ("deliver IRQ (interrupt gate)", ("lgcore_fused",)),
    ("deliver_trap #PF+errcode (user mode, privilege change)", ()),
    ("deliver_trap #PF+errcode (kernel mode)", ()),
    ("load_guest_idt_entry", ()),
    ("copy_traps", ()),
    ("setup_default_idt_entries", ()),
]


def ident(op: str, side: str) -> str:
    """A pytest id: the op with spaces as underscores, then the side."""
    keep = "".join(c if c.isalnum() or c in "._#+-" else "_" for c in op)
    while "__" in keep:
        keep = keep.replace("__", "_")
    return f"{keep.strip('_')}-{side}"


def c_ops(ctx: Context, scale: float = 1.0) -> list[COp]:
    cl, lib, ffi = ctx.cl, ctx.lib, ctx.ffi
    ops: list[COp] = []

    def n(base: int) -> int:
        return max(1, int(base * scale))

    def pending(bits: int):
        def prep(p: Pair) -> None:
            p.cpu.irqs_pending = bits
        return prep

    for label, bits in (("no bit", 0), ("first bit", 1 << 0), ("last bit", 1 << 31)):
        p = ctx.new_pair(prep=pending(bits))
        ops.append(COp(f"interrupt_pending ({label})", n(200_000),
                       _L(p, cl.c_interrupt_pending, p.cpu),
                       _O(p, lib.kshim_bench_interrupt_pending, p.rg.ptr),
                       check=p.differences))

    for label, irq in (("trap gate", IRQ_TRAP_GATE), ("interrupt gate", IRQ_INT_GATE)):
        p = ctx.new_pair()
        pf = ctx.new_pair()
        ops.append(COp(f"deliver IRQ ({label})", n(100_000),
                       _L(p, cl.c_deliver_irq, p.cpu, irq),
                       _O(p, lib.kshim_bench_deliver_irq, p.rg.ptr, irq),
                       extra={"lgcore_fused": _L(pf, cl.c_deliver_irq_fused, pf.cpu, irq)},
                       check=lambda p=p, pf=pf, irq=irq: p.differences() + _fused_check(lib, pf, irq),
                       note="set_interrupt + interrupt_pending + try_deliver_interrupt, "
                            "kernel mode; lgcore_fused: set_interrupt + deliver_pending"))

    def errcode(p: Pair) -> None:
        for cpu in p.cpus:
            cpu.errcode = PF_ERRCODE
            cpu.trapnum = TRAP_PF

    for label, mode in (("user mode, privilege change", "user"), ("kernel mode", "kernel")):
        p = ctx.new_pair(mode=mode, prep=errcode)
        ops.append(COp(f"deliver_trap #PF+errcode ({label})", n(100_000),
                       _L(p, cl.c_deliver_trap, p.cpu, TRAP_PF),
                       _O(p, lib.kshim_bench_deliver_trap, p.rg.ptr, TRAP_PF),
                       check=p.differences))

    lo, hi = gate(0x20, "int")
    p = ctx.new_pair()
    ops.append(COp("load_guest_idt_entry", n(200_000),
                   _L(p, cl.c_load_guest_idt_entry, p.cpu, 0x20, lo, hi),
                   _O(p, lib.kshim_bench_load_guest_idt_entry, p.rg.ptr, 0x20, lo, hi),
                   check=p.differences))

    p = ctx.new_pair()
    idt_l, idt_o, def_o = _idt_buffers(ctx)

    def check_copy(p=p, idt_l=idt_l, idt_o=idt_o):
        d = p.differences()
        if bytes(idt_l) != bytes(ffi.buffer(idt_o, 2048)):
            d.append("host IDT differs")
        return d

    ops.append(COp("copy_traps", n(5_000),
                   _L(p, cl.c_copy_traps, p.cpu, idt_l, ctx.defaults),
                   _O(p, lib.kshim_bench_copy_traps, p.rg.ptr, idt_o, def_o),
                   check=check_copy))

    idt_l2, idt_o2, def_o2 = _idt_buffers(ctx)
    ops.append(COp("setup_default_idt_entries", n(5_000),
                   partial(cl.c_setup_default_idt_entries, idt_l2, ctx.defaults),
                   partial(lib.kshim_bench_setup_default_idt_entries, idt_o2, def_o2),
                   check=lambda: [] if bytes(idt_l2) == bytes(ffi.buffer(idt_o2, 2048))
                   else ["host IDT differs"]))
    return ops


# ---- Python level ----



@dataclass
class PySpec:
    op: str
    side: str
    stmt: str
    env: dict
    rearm: str = ""
    note: str = ""
    kind: str = "engine"          # engine | lgcore-only | module-fn | policy | shim
    keep: Any = field(default=None, repr=False)   # the Pair (RAM, guests) the env points into

    def runner(self) -> Callable[[int], None]:
        """run(nblocks): nblocks x (rearm + UNROLL x stmt)."""
        return _compile(self.stmt, self.rearm, self.env, UNROLL, self.op, self.side)

    def baseline(self) -> Callable[[int], None]:
        """The same loop and rearm without the calls."""
        return _compile("pass", self.rearm, self.env, 1, self.op + " baseline", self.side)


def _compile(stmt: str, rearm: str, env: dict, unroll: int, op: str, side: str):
    names = sorted(env)
    lines = [f"def run(_n, {', '.join(names)}):" if names else "def run(_n):",
             "    for _ in range(_n):"]
    if rearm:
        lines.append("        " + rearm)
    lines += ["        " + stmt] * unroll
    src = "\n".join(lines) + "\n"
    ns: dict = {}
    exec(compile(src, f"<bench {op} [{side}]>", "exec"), ns)
    return partial(ns["run"], **env)


def _floor_call(args: str) -> str:
    n = 0 if not args.strip() else args.count(",") + 1
    return f"fl.noop{n if n else ''}({args})"


def py_specs(ctx: Context) -> list[PySpec]:
    """Every public call of lgcore's engine, each with its counterparts."""
    ffi, lib, cdll, cl = ctx.ffi, ctx.lib, ctx.cdll, ctx.cl
    specs: list[PySpec] = []
    fl = ctx.floor

    def addr(cdata) -> ctypes.c_void_p:
        return ctypes.c_void_p(int(ffi.cast("uintptr_t", cdata)))

    def add(op, lg_stmt, lg_env, cfun=None, cargs="", *, prep=None, mode="kernel",
            lg_rearm="", c_rearm="", floor_args=None, kind="engine", note="", pair=None,
            cenv=None):
        """One op: lgcore ``lg_stmt`` (env ``lg_env(pair)``); the original's
        ``cfun(p, <cargs>)`` through cffi and ctypes (None: no counterpart)."""
        p = pair if pair is not None else ctx.new_pair(mode=mode, prep=prep, mirrors=2)
        env = dict(lg_env(p))
        specs.append(PySpec(op, "lgcore", lg_stmt, env, lg_rearm, note=note, kind=kind, keep=p))
        fargs = floor_args if floor_args is not None else _args_of(lg_stmt)
        specs.append(PySpec(op, "floor", _floor_call(fargs), {**env, "fl": fl}, lg_rearm,
                            note=note, kind=kind, keep=p))
        if cfun is None:
            return p
        extra = dict(cenv(p)) if cenv else {}
        for side, m in (("cffi", 0), ("ctypes", 1)):
            ram_o, rgs = p.mirrors[m]
            rg = rgs[0]
            cst = p.snapshot_c(rg)
            if side == "cffi":
                f = getattr(lib, cfun)
                pp = rg.ptr
                ex = {k: v[0] for k, v in extra.items()}
            else:
                f = getattr(cdll, cfun)
                pp = addr(rg.ptr)
                ex = {k: v[1] for k, v in extra.items()}
            call = f"f(p{', ' if cargs else ''}{cargs})"
            cenv_ = {**{k: v for k, v in env.items() if type(v) is int},
                     "f": f, "p": pp, "rp": rg.ptr, "si": lib.kshim_state_in, "NULL": ffi.NULL,
                     "cst": cst, "regs": rg.regs, "esp0": rg.regs.esp, **ex}
            specs.append(PySpec(op, side, call, cenv_, c_rearm, note=note, kind=kind, keep=p))
        return p

    esp_rearm_lg = "cpu.esp = esp0"
    esp_rearm_c = "regs.esp = esp0"

    def cpu_env(p):
        return {"cpu": p.cpu, "esp0": p.cpu.esp}

    def more_ptr(p):
        m_c = ffi.new("int *")
        m_t = ctypes.c_int(0)
        return {"mp": (m_c, ctypes.pointer(m_t))}

    # -- the engine's calls with a counterpart in the original --
    def pend5(p):
        p.cpu.irqs_pending = 1 << 5
    add("interrupt_pending", "cpu.interrupt_pending()", cpu_env,
        "kshim_interrupt_pending", "mp", prep=pend5, cenv=more_ptr,
        note="IRQ 5 pending; lgcore returns (irq, more), the original irq and *more")
    add("set_interrupt", "cpu.set_interrupt(5)", cpu_env, "kshim_set_interrupt", "5",
        note="no task attached (lgcore) / the shim's wake_up_process (original)")
    add("try_deliver_interrupt", "cpu.try_deliver_interrupt(1, True)", cpu_env,
        "kshim_try_deliver_interrupt", "1, 1", lg_rearm=esp_rearm_lg, c_rearm=esp_rearm_c,
        note="IRQ 1 through its trap gate, kernel mode")

    def all_pending(linear):
        def prep(p):
            for cpu in p.cpus:
                cpu.load_guest_idt_entry(0x20, *gate(0x20, "trap"))
                cpu.changed = 0
                cpu.irqs_pending = ALL_IRQS
                if linear:                    # guest-virtual == guest-physical
                    cpu.paging = False
                    cpu.esp = (cpu.esp - KBASE) & 0xFFFFFFFF
        return prep

    # lgcore: one fused call per IRQ.  The original: interrupt_pending then
    # try_deliver_interrupt (two calls).  All 32 IRQs pending on trap gates;
    # each block of 32 calls delivers each once, then the rearm puts the
    # pending word and esp back (its cost is measured and subtracted).
    for op, linear, note in (
            ("deliver_pending", False,
             "fused call; the original: interrupt_pending + try_deliver_interrupt"),
            ("deliver_pending (paging off)", True,
             "the same in a linear guest (no page walk); for information, not a target")):
        p = ctx.new_pair(prep=all_pending(linear), mirrors=2)
        env = {"cpu": p.cpu, "esp0": p.cpu.esp, "ALL": ALL_IRQS}
        specs.append(PySpec(op, "lgcore", "cpu.deliver_pending()", env,
                            "cpu.irqs_pending = ALL; cpu.esp = esp0", note=note, keep=p))
        specs.append(PySpec(op, "floor", "fl.noop()", {**env, "fl": fl},
                            "cpu.irqs_pending = ALL; cpu.esp = esp0", note=note, keep=p))
        for side, m in (("cffi", 0), ("ctypes", 1)):
            rg = p.mirrors[m][1][0]
            cst = p.snapshot_c(rg)
            if side == "cffi":
                ip, td, pp = lib.kshim_interrupt_pending, lib.kshim_try_deliver_interrupt, rg.ptr
                mp = ffi.new("int *")
            else:
                ip, td, pp = cdll.kshim_interrupt_pending, cdll.kshim_try_deliver_interrupt, addr(rg.ptr)
                mp = ctypes.pointer(ctypes.c_int(0))
            specs.append(PySpec(op, side, "td(p, ip(p, mp), mp[0])",
                                {"ip": ip, "td": td, "p": pp, "mp": mp, "si": lib.kshim_state_in,
                                 "rp": rg.ptr, "NULL": ffi.NULL, "cst": cst},
                                "si(rp, NULL, cst)", note=note, keep=p))

    def trap_env(p):
        return {"cpu": p.cpu, "esp0": p.cpu.esp}

    def errcode(p):
        p.cpu.errcode = PF_ERRCODE
    add("deliver_trap", "cpu.deliver_trap(14)", trap_env, "kshim_deliver_trap", "14",
        prep=errcode, lg_rearm=esp_rearm_lg, c_rearm=esp_rearm_c,
        note="#PF with error code, kernel mode")
    lo, hi = gate(0x20, "int")

    def idt_env(p):
        return {"cpu": p.cpu, "lo": lo, "hi": hi}
    add("load_guest_idt_entry", "cpu.load_guest_idt_entry(32, lo, hi)", idt_env,
        "kshim_load_guest_idt_entry", "32, lo, hi")

    idt_l, idt_o, def_o = _idt_buffers(ctx)
    idt_o2 = ffi.new("lg_desc_t[256]")
    ffi.memmove(idt_o2, idt_o, 2048)

    def copy_env(p):
        return {"cpu": p.cpu, "idt": idt_l, "dflt": ctx.defaults}

    def copy_cenv(p):
        return {"idt_c": (idt_o, addr(idt_o2)), "def_c": (def_o, addr(def_o))}
    add("copy_traps", "cpu.copy_traps(idt, dflt)", copy_env, "kshim_copy_traps", "idt_c, def_c",
        cenv=copy_cenv, note="bytearray host IDT + bytes stubs (lgcore) / cdata arrays (original)")

    def sde_env(p):
        return {"sde": lgcore.setup_default_idt_entries, "idt": idt_l, "dflt": ctx.defaults}
    p_sde = ctx.new_pair(mirrors=2)
    specs.append(PySpec("setup_default_idt_entries", "lgcore", "sde(idt, dflt)", sde_env(p_sde),
                        keep=(idt_o, idt_o2, def_o)))
    specs.append(PySpec("setup_default_idt_entries", "floor", "fl.noop2(idt, dflt)",
                        {**sde_env(p_sde), "fl": fl}))
    specs.append(PySpec("setup_default_idt_entries", "cffi", "f(idt_c, def_c)",
                        {"f": lib.kshim_setup_default_idt_entries, "idt_c": idt_o, "def_c": def_o}))
    specs.append(PySpec("setup_default_idt_entries", "ctypes", "f(idt_c, def_c)",
                        {"f": cdll.kshim_setup_default_idt_entries, "idt_c": addr(idt_o2),
                         "def_c": addr(def_o)}))

    def g_env(p):
        return {"g": p.guest}
    add("check_syscall_vector", "g.check_syscall_vector()", g_env, "kshim_check_syscall_vector",
        prep=lambda p: struct.pack_into("<I", p.ram, LD + 1392, 0x80))

    # -- kernel helpers lgcore re-implements (the original side is kshim's stand-in) --
    shim = "the original side is kshim's stand-in for the kernel helper"

    def va_env(p):
        return {"cpu": p.cpu, "va": KSTACK_TOP - 4}
    add("guest_pa", "cpu.guest_pa(va)", va_env, "kshim_guest_pa", "va", kind="shim",
        note="two-level page walk; " + shim)
    add("write_timestamp", "cpu.write_timestamp()", cpu_env, "kshim_write_timestamp", kind="shim",
        note=shim)
    add("pin_page", "cpu.pin_page(va)", va_env, "kshim_pin_page", "va", kind="shim", note=shim)

    def ok_env(p):
        return {"g": p.guest, "a": 0x1000, "n": 4}
    add("lguest_address_ok", "g.lguest_address_ok(a, n)", ok_env, "kshim_lguest_address_ok",
        "a, n", kind="shim", note=shim)

    # -- policy (Python) with a counterpart in the original --
    def stack_env(p):
        return {"gss": lgcore.stacks.guest_set_stack, "cpu": p.cpu, "sp": KSTACK_TOP}
    add("guest_set_stack", "gss(cpu, 0x69, sp, 1)", stack_env, "kshim_guest_set_stack",
        "0x69, sp, 1", cenv=lambda p: {"sp": (KSTACK_TOP, KSTACK_TOP)}, kind="policy",
        note="lgcore.stacks (Python policy layer)")

    def pin_env(p):
        return {"pss": lgcore.stacks.pin_stack_pages, "cpu": p.cpu}
    add("pin_stack_pages", "pss(cpu)", pin_env, "kshim_pin_stack_pages", kind="policy",
        note="lgcore.stacks (Python policy layer), one stack page")

    # -- module-level forms of the same calls (lgcore.<name>(cpu, ...)) --
    for op, stmt, envf, cfun, cargs, kw in (
        ("interrupt_pending", "fn(cpu)", lambda p: {"fn": lgcore.interrupt_pending, "cpu": p.cpu},
         "kshim_interrupt_pending", "mp", dict(prep=pend5, cenv=more_ptr)),
        ("set_interrupt", "fn(cpu, 5)", lambda p: {"fn": lgcore.set_interrupt, "cpu": p.cpu},
         "kshim_set_interrupt", "5", {}),
        ("deliver_trap", "fn(cpu, 14)",
         lambda p: {"fn": lgcore.deliver_trap, "cpu": p.cpu, "esp0": p.cpu.esp},
         "kshim_deliver_trap", "14", dict(prep=errcode, lg_rearm=esp_rearm_lg, c_rearm=esp_rearm_c)),
        ("load_guest_idt_entry", "fn(cpu, 32, lo, hi)",
         lambda p: {"fn": lgcore.load_guest_idt_entry, "cpu": p.cpu, "lo": lo, "hi": hi},
         "kshim_load_guest_idt_entry", "32, lo, hi", {}),
    ):
        add(f"lgcore.{op}(cpu, ...)", stmt, envf, cfun, cargs, kind="module-fn", **kw)

    # -- engine calls the original keeps static (no counterpart to call) --
    def sgi_env(p):
        return {"cpu": p.cpu, "esp0": p.cpu.esp, "lo": lo, "hi": hi}
    add("set_guest_interrupt", "cpu.set_guest_interrupt(lo, hi, False)", sgi_env,
        lg_rearm=esp_rearm_lg, kind="lgcore-only", note="static in the original")
    add("push_guest_stack", "cpu.push_guest_stack(0x300000, 7)", cpu_env, kind="lgcore-only",
        note="static in the original")
    add("set_trap", "cpu.set_trap(32, lo, hi)", idt_env, kind="lgcore-only",
        note="static in the original")
    add("direct_trap", "g.direct_trap(14)", g_env, kind="lgcore-only", note="static in the original")
    add("could_be_syscall", "g.could_be_syscall(0x80)", g_env, kind="lgcore-only",
        note="static in the original")
    add("lgread", "cpu.lgread(0x1000)", cpu_env, kind="lgcore-only", note="a macro in lguest")
    add("lgwrite", "cpu.lgwrite(0x3000, 7)", cpu_env, kind="lgcore-only", note="a macro in lguest")
    add("idt_address", "fn(lo, hi)", lambda p: {"fn": lgcore.idt_address, "lo": lo, "hi": hi},
        kind="lgcore-only", note="static in the original")
    add("has_err", "fn(14)", lambda p: {"fn": lgcore.has_err}, kind="lgcore-only",
        note="a macro-like test in the original")
    add("default_idt_entry", "fn(14, 0xFFC00000, None)",
        lambda p: {"fn": lgcore.default_idt_entry}, kind="lgcore-only", note="static in the original")
    return specs


_py_specs_cache: list[PySpec] | None = None


def cached_py_specs() -> list[PySpec]:
    global _py_specs_cache
    if _py_specs_cache is None:
        _py_specs_cache = py_specs(context())
    return _py_specs_cache


def _args_of(stmt: str) -> str:
    return stmt[stmt.index("(") + 1: stmt.rindex(")")]


# ---- run-loop level ----

VCPU_COUNTS = (1, 8, 64)
RL_ROUNDS_PER_BLOCK = 32
RL_EVENTS = ("irq", "trap")


def runloop_name(event: str, v: int) -> str:
    what = "IRQ events (set_interrupt + deliver_pending)" if event == "irq" else "#PF events (deliver_trap)"
    return f"{what}, {v} vCPU{'s round robin' if v > 1 else ''}"


RUNLOOP_NAMES = [runloop_name(e, v) for e in RL_EVENTS for v in VCPU_COUNTS]


@dataclass
class RunLoop:
    op: str
    event: str
    nvcpu: int
    lgcore: Callable[[int], None]        # run(nblocks)
    original: Callable[[int], None]
    cython: Callable[[int], None]
    events_per_block: int
    check: Callable[[], list[str]] = lambda: []
    keep: Any = field(default=None, repr=False)


_RL_LG = {
    "irq": "cpu.set_interrupt(irq); cpu.deliver_pending()",
    "trap": "cpu.deliver_trap(num)",
}
_RL_C = {
    "irq": "si(p, irq); td(p, ip(p, mp), mp[0])",
    "trap": "dt(p, num)",
}


def _rl_compile(body: str, reset: tuple[str, str], loopvar: str, name: str):
    """run(nblocks, seq, esps, ...): each block walks ``seq`` (the vCPUs
    round robin, 32 rounds laid out flat, so the loop costs the same per
    event whatever the vCPU count), then puts every vCPU's esp back."""
    lines = [
        "def run(_n, seq, esps, irq, num, si, ip, td, dt, mp):",
        "    for _ in range(_n):",
        f"        for {loopvar} in seq:",
        f"            {body}",
        f"        for {reset[0]}, e in esps:",
        f"            {reset[1]}",
    ]
    ns: dict = {}
    exec(compile("\n".join(lines) + "\n", f"<runloop {name}>", "exec"), ns)
    return ns["run"]


def _rl_check(p: Pair, pc: Pair, lg, orig, cy) -> list[str]:
    """One block on each side from the start state; the Python loop over
    lgcore must match the original, and the Cython loop the Python loop."""
    p.reset()
    pc.reset()
    lg(1)
    orig(1)
    cy(1)
    out = p.differences()
    for k, (a, b) in enumerate(zip(p.cpus, pc.cpus)):
        if bytes(a.regs) != bytes(b.regs) or a.irqs_pending != b.irqs_pending:
            out.append(f"cython loop: vcpu{k} differs from the Python loop")
    if p.ram != pc.ram:
        out.append("cython loop: RAM differs from the Python loop")
    return out


def runloops(ctx: Context) -> list[RunLoop]:
    """A VMM's loop: each round, one event for each vCPU in turn; every 32
    rounds the guest's iret is stood in for by putting esp back."""
    lib, ffi, cl = ctx.lib, ctx.ffi, ctx.cl
    out = []
    for event in RL_EVENTS:
        for v in VCPU_COUNTS:
            def prep(p):
                for cpu in p.cpus:
                    cpu.errcode = PF_ERRCODE
            p = ctx.new_pair(nvcpu=v, prep=prep)
            pc = ctx.new_pair(nvcpu=v, prep=prep)      # for the Cython loop
            lg_run = _rl_compile(_RL_LG[event], ("cpu", "cpu.esp = e"), "cpu",
                                 f"lgcore {event} x{v}")
            c_run = _rl_compile(_RL_C[event], ("regs", "regs.esp = e"), "p",
                                f"cffi {event} x{v}")
            common = dict(irq=IRQ_TRAP_GATE, num=TRAP_PF, si=lib.kshim_set_interrupt,
                          ip=lib.kshim_interrupt_pending, td=lib.kshim_try_deliver_interrupt,
                          dt=lib.kshim_deliver_trap, mp=ffi.new("int *"))
            lg = partial(lg_run, seq=list(p.cpus) * RL_ROUNDS_PER_BLOCK,
                         esps=[(c, c.esp) for c in p.cpus], **common)
            orig = partial(c_run, seq=[rg.ptr for rg in p.rgs] * RL_ROUNDS_PER_BLOCK,
                           esps=[(rg.regs, rg.regs.esp) for rg in p.rgs], **common)
            if event == "irq":
                cy = (lambda n, cpus=list(pc.cpus):
                      cl.c_runloop_irq(cpus, IRQ_TRAP_GATE, n * RL_ROUNDS_PER_BLOCK))
            else:
                cy = (lambda n, cpus=list(pc.cpus):
                      cl.c_runloop_trap(cpus, TRAP_PF, n * RL_ROUNDS_PER_BLOCK))
            out.append(RunLoop(runloop_name(event, v), event, v, lg, orig, cy,
                               RL_ROUNDS_PER_BLOCK * v, check=partial(_rl_check, p, pc, lg, orig, cy),
                               keep=(p, pc)))
    return out


def quick() -> bool:
    return os.environ.get("LGCORE_BENCH_QUICK") == "1"
