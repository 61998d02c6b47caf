# SPDX-License-Identifier: GPL-2.0-only
"""One fuzz case: bytes -> a guest state and a sequence of guest-facing
operations, run on lgcore (profile "seed") and on the C original from the
same state, compared after every operation.

Input format (``Input``; a short input reads as zeroes, so every byte
string is a valid case and replays the same forever):

  header   RAM size, flags (lguest_data set, paging, halted, user mode),
           lguest_data address, pfn_limit, syscall vector, virtual clock,
           noirq window, kernel stack (esp1/ss1/pages), pgdir,
           irqs_pending, changed, the 18 registers
  idt      up to 7 raw gates (any words, as a VMM could store them)
  ram      up to 15 u32 stores (lguest_data fields, page tables, stack)
  ops      up to MAX_OPS operations (OPS below): engine entry points with
           any arguments, the guest changing its RAM or registers, and the
           run-loop entries (a hypercall with its arguments, the async
           hypercall ring, a trap with its number, error code and cr2, one
           run_guest pass, the timer)

Every engine operation is compared in full afterwards.  A run-loop
operation that kills the guest compares the kill reason and ends the case
(run_guest stops a dead guest in lguest and in lgcore alike, and what each
does after the first kill is unobservable).
"""
from __future__ import annotations

import re
import struct
import sys

import lgcore
from lgcore import runloop
from lgcore.clock import init_clockdev
from lgcore.constants import (
    IDT_ENTRIES, LD_BLOCKED, LD_CR2, LD_HCALL_STATUS, LD_HCALLS,
    LD_IRQ_ENABLED, LD_IRQ_PENDING, LD_KERNEL_ADDRESS, LD_NOIRQ_END,
    LD_NOIRQ_START, LD_SIZE, LD_SYSCALL_VEC, LD_TIME, LHCALL_FLUSH_ASYNC,
    LHCALL_FLUSH_TLB, LHCALL_HALT, LHCALL_LGUEST_INIT, LHCALL_LOAD_IDT_ENTRY,
    LHCALL_NOTIFY, LHCALL_SEND_INTERRUPTS, LHCALL_SET_CLOCKEVENT,
    LHCALL_SET_PMD, LHCALL_SET_STACK, LHCALL_SHUTDOWN, LHCALL_TS,
)
from lgcore.reference import load_reference

from fuzz.known import DEFAULT_COMPAT
from fuzz.model import RefRunLoop, hexk

MAX_OPS = 24
MAX_CLOCK = 1 << 62            # keeps now + delta inside ktime_t (s64)
# SET_STACK page counts are kept below 64: the C original pins every page
# of a bad count, up to 2**32 - 1 of them (lgcore did too until F1 in
# fuzz/known.py was fixed), which would turn one case into minutes.
PAGES_CAP = 0x3F

# RAM sizes: below a page (nothing passes lguest's address check), odd
# sizes (an access may straddle the end of RAM) and a few pages.
RAM_SIZES = (0x600, 0x1000, 0x1804, 0x2000, 0x3000, 0x4000, 0x8000, 0x10000)

# Hypercalls generated; the shadow-MMU and GDT ones are left out (see
# fuzz.model).  SET_PMD (13) and the numbers after it are unknown to a
# non-PAE lguest.
HCALLS = (LHCALL_LGUEST_INIT, LHCALL_LOAD_IDT_ENTRY, LHCALL_SET_STACK,
          LHCALL_SET_CLOCKEVENT, LHCALL_SEND_INTERRUPTS, LHCALL_HALT,
          LHCALL_FLUSH_ASYNC, LHCALL_SHUTDOWN, LHCALL_FLUSH_TLB, LHCALL_TS,
          LHCALL_NOTIFY, LHCALL_SET_PMD, 3, 11, 12, 20, 0x7FFFFFFF, 0xFFFFFFFF)

INTERESTING = (
    0, 1, 2, 3, 4, 7, 8, 0xC, 0xD, 0xE, 0xF, 0x10, 0x1F, 0x20, 0x21, 0x3F,
    0x40, 0x7F, 0x80, 0x81, 0xFF, 0x100, 0x101, 0x1FF, 0x200, 0x202, 0x302,
    0x4202, 0x10202, 0x20202, 0x61, 0x69, 0x68, 0x6B, 0x73, 0x7B, 0x10069,
    0xFFFF0069, 0x8E00, 0x8F00, 0xEE00, 0xEF00, 0x8C00, 0x0E00, 0xFFFF,
    0x10000, 0xC1008E00, 0xC100EF00, 0xC100EE00, 0xC1008F00, 0xC1008C00,
    0x00600530, 0x00601234, 0x0000FFFF, 0xFFFF8E00, 0x1000, 0xFFF, 0xFFC,
    0x2000, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFF, 0xFFFFFFFE, 0xFFFFFFFC,
    0xFFFFFFF8, 0xFFFFF000, 0xC0000000, 0xC0001000, 0xFFC00000, 0xFFBFFFFF,
    0xBFFFF000, 0x08048000, 0x3B9ACA00, 0x0F01C1, 0xC1010F, 0x90C1010F,
    0xE4, 0xE5, 0xEC, 0xED, 0xE6, 0xEE, 0x66, 0xEC66, 0xE466, 0xED66,
)


_NUM = re.compile(r"0x[0-9a-fA-F]+|-?\d+")


class Divergence(AssertionError):
    """lgcore and the C original disagree (or one of them raised)."""

    def __init__(self, op_index: int, op: str, diffs: list[str], trace: list[str]):
        self.op_index = op_index
        self.op = op
        self.diffs = diffs
        self.trace = trace
        super().__init__(self.describe())

    @property
    def signature(self) -> str:
        """Op name, the fields that differ and, for kill reasons, results and
        exceptions, their wording with the numbers taken out: one bug, one
        signature, whatever the values."""
        parts = set()
        for d in self.diffs:
            field, _, rest = d.partition(":")
            if field in ("dead", "result", "exception", "notify"):
                parts.add(field + "=" + _NUM.sub("#", rest.strip()))
            else:
                parts.add(_NUM.sub("#", field))
        return f"{self.op.split('(', 1)[0]}|{';'.join(sorted(parts))}"

    def describe(self) -> str:
        lines = [f"divergence after op #{self.op_index}: {self.op}"]
        lines += [f"  {d}" for d in self.diffs]
        if self.trace:
            lines.append("  trace:")
            lines += [f"    {t}" for t in self.trace]
        return "\n".join(lines)


class Input:
    """A cursor over the fuzz input; reads past the end give zeroes."""
    __slots__ = ("data", "pos", "n")

    def __init__(self, data: bytes):
        self.data = data
        self.pos = 0
        self.n = len(data)

    def u8(self) -> int:
        p = self.pos
        if p < self.n:
            self.pos = p + 1
            return self.data[p]
        return 0

    def u16(self) -> int:
        return self.u8() | (self.u8() << 8)

    def u32(self) -> int:
        p = self.pos
        if p + 4 <= self.n:
            self.pos = p + 4
            return int.from_bytes(self.data[p:p + 4], "little")
        return self.u16() | (self.u16() << 16)

    def left(self) -> int:
        return self.n - self.pos


_REGS = struct.Struct("<18I")
_U32 = struct.Struct("<I")
_ARGS5 = struct.Struct("<5I")
_REG_NAMES = lgcore.REGS
_CPU_FIELDS = ("irqs_pending", "halted", "changed", "esp1", "ss1", "pgdir")


class Case:
    """Both sides of one fuzz case."""

    def __init__(self, data: bytes, ref, *, trace: bool = False, compat=DEFAULT_COMPAT):
        self.compat = compat
        self.inp = Input(data)
        self.ref = ref
        self.ffi = ref.ffi
        self.lib = ref.lib
        self.tracing = trace
        self.trace: list[str] = []
        self.gout = self.ffi.new("lg_guest_t *")
        self.cout = self.ffi.new("lg_cpu_t *")
        self.more = self.ffi.new("int *")
        self.expires = self.ffi.new("int64_t *")
        self.op_index = -1
        self.op = "setup"
        self._setup()

    # ---- value choosers ----

    def v32(self) -> int:
        """A u32 biased towards values that matter to lguest."""
        inp = self.inp
        sel = inp.u8()
        if sel < 0x60:
            return INTERESTING[sel % len(INTERESTING)]
        if sel < 0x70:
            return inp.u8()
        if sel < 0x80:                                   # near the RAM end
            return (self.mem_len - inp.u8()) & 0xFFFFFFFF
        if sel < 0x90:                                   # inside lguest_data
            return (self.ld_base + inp.u16() % (LD_SIZE + 8)) & 0xFFFFFFFF
        if sel < 0xA0:                                   # near the kernel stack
            return (self.esp1_0 - inp.u8() * 4 + 8) & 0xFFFFFFFF
        if sel < 0xA8:                                   # a page boundary in RAM
            return ((inp.u8() % (self.pages + 2)) << 12) & 0xFFFFFFFF
        return inp.u32()

    def addr(self) -> int:
        """A guest-physical address for a store: lguest_data fields, page
        tables, the stack, anywhere."""
        inp = self.inp
        sel = inp.u8() & 7
        if sel == 0:
            return self.ld_base + (LD_IRQ_ENABLED, LD_BLOCKED, LD_CR2, LD_TIME,
                                   LD_IRQ_PENDING, LD_NOIRQ_START, LD_NOIRQ_END,
                                   LD_KERNEL_ADDRESS, LD_SYSCALL_VEC,
                                   LD_HCALL_STATUS)[inp.u8() % 10]
        if sel == 1:
            return self.pgdir0 + (inp.u16() & 0x3FF) * 4
        if sel == 2:
            return ((inp.u8() % max(self.pages, 1)) << 12) + (inp.u16() & 0x3FF) * 4
        if sel == 3:
            return (self.esp1_0 - 4 * inp.u8()) & 0xFFFFFFFF
        if sel == 4:
            return (self.mem_len - 1 - inp.u8()) & 0xFFFFFFFF
        return inp.u16() % self.mem_len

    def irq(self) -> int:
        return self.inp.u8() & 31

    # ---- setup ----

    def _setup(self) -> None:
        inp = self.inp
        ffi, lib = self.ffi, self.lib
        self.mem_len = RAM_SIZES[inp.u8() & 7]
        self.pages = self.mem_len >> 12
        flags = inp.u8()
        # lguest_data: where LGUEST_INIT would accept it, or (flag 0x10)
        # anywhere, as a VMM may set it.
        ld_raw = inp.u16()
        if flags & 0x10:
            self.ld_base = self.mem_len - (ld_raw & 0x7FF)
        else:
            room = max((self.pages << 12) - LD_SIZE - 4, 0)
            self.ld_base = (ld_raw * 4) % (room + 1) if room else 0
        self.ld_base &= 0xFFFFFFFF
        pfn_sel = inp.u8()
        pfn_limit = self.pages - (pfn_sel & 1) if pfn_sel < 0xC0 else pfn_sel % (self.pages + 1)
        pfn_limit = max(pfn_limit, 0)
        sv = inp.u8()
        syscall_vector = 0x80 if sv < 0xA0 else (0x40 if sv < 0xC0 else sv)
        now = (inp.u32() << 28 | inp.u32()) % MAX_CLOCK
        noirq = (inp.u32(), inp.u32()) if flags & 0x20 else (0, 0)
        self.esp1_0 = self.mem_len - 0x100
        self.esp1_0 = self.v32() if flags & 0x40 else (self.mem_len - 0x100 - 16 * (inp.u8() & 7))
        ss1 = self.v32() & 0xFFFF if flags & 0x80 else 0x69
        stack_pages = inp.u8() % 4
        self.pgdir0 = ((inp.u8() % max(self.pages, 1)) << 12) | (inp.u8() & 3 if flags & 0x08 else 0)
        irqs_pending = inp.u32()
        changed = inp.u8()
        if flags & 0x04:                                  # guest userspace
            regs = [0] * 18
            regs[13:] = [0x08048000, 0x73, 0x202, 0xBFFFF000, 0x7B]
        else:                                             # guest kernel
            regs = [0] * 18
            regs[13:] = [0xC0001000, 0x61, 0x202, (self.ld_base + 0x800) & 0xFFFFFFFF, 0x69]
        for _ in range(inp.u8() & 7):
            i = inp.u8() % 18
            regs[i] = self.v32()
        # The guest IDT: raw words.
        idt = bytearray(8 * IDT_ENTRIES)
        for _ in range(inp.u8() & 7):
            n = inp.u8()
            lo = self.v32()
            hi = self.v32()
            struct.pack_into("<II", idt, 8 * n, lo, hi)
        # RAM: the same bytes on both sides.
        ram = bytearray(self.mem_len)
        has_ld = bool(flags & 0x01)
        if has_ld and self.ld_base + 4 <= self.mem_len:
            _U32.pack_into(ram, self.ld_base, 0x200)      # irq_enabled
        if has_ld and self.ld_base + LD_SYSCALL_VEC + 4 <= self.mem_len:
            _U32.pack_into(ram, self.ld_base + LD_SYSCALL_VEC, syscall_vector)
            ram[self.ld_base + LD_HCALL_STATUS:self.ld_base + LD_HCALLS] = b"\xff" * 64
        for _ in range(inp.u8() & 15):
            a = self.addr()
            v = self.v32()
            if a + 4 <= self.mem_len:
                _U32.pack_into(ram, a, v)
        self.ram_l = ram
        self.ram_r = bytearray(ram)

        # lgcore
        self.clock = lgcore.VirtualClock(now)
        g = lgcore.Guest(self.ram_l, profile="seed", syscall_vector=syscall_vector,
                         clock=self.clock, pfn_limit=pfn_limit)
        cpu = g.add_vcpu()
        cpu.regs[:] = _REGS.pack(*regs)
        cpu.idt[:] = idt
        cpu.irqs_pending = irqs_pending
        cpu.halted = bool(flags & 0x02)
        cpu.changed = changed
        cpu.esp1 = self.esp1_0
        cpu.ss1 = ss1
        cpu.pgdir = self.pgdir0
        cpu.paging = bool(flags & 0x08)
        g.lguest_data = self.ld_base if has_ld else None
        g.noirq_start, g.noirq_end = noirq
        g.stack_pages = stack_pages
        init_clockdev(cpu)
        self.guest, self.cpu = g, cpu

        # the C original
        rg = self.ref.new_guest(self.ram_r)
        self.rg = rg
        self.ptr = rg.ptr
        G, C = self.gout, self.cout
        G.pfn_limit = pfn_limit
        G.lguest_data = self.ld_base
        G.has_lguest_data = int(has_ld)
        G.noirq_start, G.noirq_end = noirq
        G.stack_pages = stack_pages
        G.syscall_vector = syscall_vector
        G.fixes = 0
        G.clock = ffi.NULL
        G.dead = 0
        ffi.memmove(ffi.addressof(C, "regs"), _REGS.pack(*regs), 72)
        ffi.memmove(C.idt, bytes(idt), 8 * IDT_ENTRIES)
        C.irqs_pending = irqs_pending
        C.halted = int(bool(flags & 0x02))
        C.changed = changed
        C.esp1 = self.esp1_0
        C.ss1 = ss1
        C.pgdir = self.pgdir0
        C.paging = int(bool(flags & 0x08))
        lib.kshim_state_in(self.ptr, G, C)
        lib.kshim_clock_set(lib.LG_CLOCK_VIRTUAL, now)
        lib.kshim_init_clockdev(self.ptr)
        self.model = RefRunLoop(self.ref, rg, self.ram_r, self.gout, self.cout, self.compat)
        self.now = now
        # The run loop only ever sees an lguest_data LGUEST_INIT accepted
        # (wholly inside RAM); one a VMM put elsewhere gets engine ops only.
        self.loop_ok = not has_ld or self.ld_base + LD_SIZE <= self.mem_len
        if self.tracing:
            self.trace.append(
                f"setup ram={self.mem_len:#x} flags={flags:#04x} ld={hexk(self.ld_base)}"
                f"{'' if has_ld else '(unset)'} pfn_limit={pfn_limit} sv={syscall_vector:#x} "
                f"now={now} noirq={noirq[0]:#x}..{noirq[1]:#x} esp1={self.esp1_0:#x} "
                f"ss1={ss1:#x} pages={stack_pages} pgdir={self.pgdir0:#x} "
                f"paging={bool(flags & 0x08)} halted={bool(flags & 2)} pending={irqs_pending:#x} "
                f"changed={changed} regs={[hex(r) for r in regs]}")
            for n in range(IDT_ENTRIES):
                lo, hi = struct.unpack_from("<II", idt, 8 * n)
                if lo or hi:
                    self.trace.append(f"  idt[{n:#x}] = {lo:#010x} {hi:#010x}")

    def dispose(self) -> None:
        """Break the reference cycles (guest <-> vCPU <-> timer <-> clock)
        so both guests are freed at once, not by the cyclic collector
        (which costs more than the whole case)."""
        cpu, g = self.cpu, self.guest
        events = g.__dict__.get("clockevents")
        if events is not None:
            events.close()
        cpu.__dict__.clear()
        g.__dict__.clear()
        g.vcpus.clear()
        self.model = None

    # ---- comparison ----

    def compare(self) -> list[str]:
        cpu, g, lib, ffi, ptr = self.cpu, self.guest, self.lib, self.ffi, self.ptr
        diffs = []
        dl = g.dead
        dr = lib.kshim_dead_reason(ptr)
        dr = None if dr == ffi.NULL else ffi.string(dr).decode("latin-1")
        if dl != dr:
            diffs.append(f"dead: lgcore={dl!r} original={dr!r}")
        if self.ram_l != self.ram_r:
            a, b = self.ram_l, self.ram_r
            offs = [i for i in range(len(a)) if a[i] != b[i]]
            diffs.append(f"ram: {len(offs)} bytes differ, first at {offs[0]:#x}: "
                         f"lgcore={bytes(a[offs[0]:offs[0] + 8]).hex()} "
                         f"original={bytes(b[offs[0]:offs[0] + 8]).hex()}")
        rl = bytes(cpu.regs)
        rr = ffi.buffer(lib.kshim_regs(ptr), 72)[:]
        if rl != rr:
            vl, vr = _REGS.unpack(rl), _REGS.unpack(rr)
            for name, x, y in zip(_REG_NAMES, vl, vr):
                if x != y:
                    diffs.append(f"regs.{name}: lgcore={x:#x} original={y:#x}")
        il = bytes(cpu.idt)
        ir = ffi.buffer(lib.kshim_idt(ptr), 8 * IDT_ENTRIES)[:]
        if il != ir:
            for n in range(IDT_ENTRIES):
                if il[8 * n:8 * n + 8] != ir[8 * n:8 * n + 8]:
                    diffs.append(f"idt[{n:#x}]: lgcore={il[8 * n:8 * n + 8].hex()} "
                                 f"original={ir[8 * n:8 * n + 8].hex()}")
        G, C = self.gout, self.cout
        lib.kshim_state_out(ptr, G, C)
        for f, x, y in (("irqs_pending", cpu.irqs_pending, C.irqs_pending),
                        ("halted", cpu.halted, C.halted),
                        ("changed", cpu.changed, C.changed),
                        ("esp1", cpu.esp1, C.esp1),
                        ("ss1", cpu.ss1, C.ss1),
                        ("pgdir", cpu.pgdir, C.pgdir),
                        ("paging", int(cpu.paging), C.paging),
                        ("lguest_data", g.lguest_data,
                         G.lguest_data if G.has_lguest_data else None),
                        ("noirq_start", g.noirq_start, G.noirq_start),
                        ("noirq_end", g.noirq_end, G.noirq_end),
                        ("stack_pages", g.stack_pages, G.stack_pages),
                        ("pfn_limit", g.pfn_limit, G.pfn_limit)):
            if x != y:
                diffs.append(f"{f}: lgcore={x!r} original={y!r}")
        el = cpu.hrt.expires
        er = self.expires
        armed = lib.kshim_timer_armed(ptr, er)
        er = er[0] if armed else None
        if el != er:
            diffs.append(f"timer: lgcore={el!r} original={er!r}")
        return diffs

    def check(self, what: str, diffs: list[str] | None = None) -> None:
        d = self.compare()
        if diffs:
            d = diffs + d
        if d:
            raise Divergence(self.op_index, what, d, self.trace)

    # ---- operations ----

    def _t(self, text: str) -> str:
        if self.tracing:
            self.trace.append(f"#{self.op_index}: {text}")
        return text

    def op_set_interrupt(self):
        irq = self.irq()
        self.cpu.set_interrupt(irq)
        self.lib.kshim_set_interrupt(self.ptr, irq)
        return f"set_interrupt({irq})", None

    def op_deliver_pending(self):
        self.cpu.deliver_pending()
        self.more[0] = 0
        irq = self.lib.kshim_interrupt_pending(self.ptr, self.more)
        if irq < 32:
            self.lib.kshim_try_deliver_interrupt(self.ptr, irq, self.more[0])
        return "deliver_pending()", None

    def op_interrupt_pending(self):
        irq_l, more_l = self.cpu.interrupt_pending()
        self.more[0] = 0
        irq_r = self.lib.kshim_interrupt_pending(self.ptr, self.more)
        res = []
        if (irq_l, bool(more_l)) != (irq_r, bool(self.more[0])):
            res.append(f"result: lgcore={(irq_l, bool(more_l))} original={(irq_r, bool(self.more[0]))}")
        return "interrupt_pending()", res

    def op_try_deliver(self):
        irq = self.irq()
        more = self.inp.u8() & 1
        self.cpu.try_deliver_interrupt(irq, bool(more))
        self.lib.kshim_try_deliver_interrupt(self.ptr, irq, more)
        return f"try_deliver_interrupt({irq}, {bool(more)})", None

    def op_deliver_trap(self):
        sel = self.inp.u8()
        num = self.v32() if sel >= 0xF0 else sel
        a = self.cpu.deliver_trap(num)
        b = self.lib.kshim_deliver_trap(self.ptr, num)
        res = [] if bool(a) == bool(b) else [f"result: lgcore={a} original={bool(b)}"]
        return f"deliver_trap({num:#x})", res

    def op_load_idt_entry(self):
        sel = self.inp.u8()
        num = self.v32() if sel >= 0xF8 else sel
        lo, hi = self.v32(), self.v32()
        self.cpu.load_guest_idt_entry(num, lo, hi)
        self.lib.kshim_load_guest_idt_entry(self.ptr, num, lo, hi)
        return f"load_guest_idt_entry({num:#x}, {lo:#x}, {hi:#x})", None

    def op_set_stack(self):
        seg, esp = self.v32(), self.v32()
        sel = self.inp.u8()
        pages = sel % 4 if sel < 0xF0 else self.v32() & PAGES_CAP
        lgcore.guest_set_stack(self.cpu, seg, esp, pages)
        self.lib.kshim_guest_set_stack(self.ptr, seg, esp, pages)
        return f"guest_set_stack({seg:#x}, {esp:#x}, {pages})", None

    def op_set_clockevent(self):
        delta = self.v32()
        lgcore.guest_set_clockevent(self.cpu, delta)
        self.lib.kshim_guest_set_clockevent(self.ptr, delta)
        return f"guest_set_clockevent({delta})", None

    def op_advance(self):
        sel = self.inp.u8()
        ns = self.v32() if sel >= 0x80 else sel * 1000
        self.now = min(self.now + ns, MAX_CLOCK)
        self.clock.set_ns(self.now)       # lgcore fires due timers synchronously
        self.lib.kshim_clock_set(self.lib.LG_CLOCK_VIRTUAL, self.now)
        self.lib.kshim_timer_run_expired(self.ptr)
        return f"advance({ns}) -> {self.now}", None

    def op_copy_traps(self):
        inp = self.inp
        base = self.v32()
        stride = inp.u8()
        defaults = struct.pack("<256I", *[(base + stride * i) & 0xFFFFFFFF for i in range(256)])
        start = bytearray(8 * IDT_ENTRIES)
        res = []
        if inp.u8() & 1:
            # setup_default_idt_entries() on both sides first.
            lgcore.setup_default_idt_entries(start, defaults)
            ref_start = self.ffi.new("lg_desc_t[256]")
            self.lib.kshim_setup_default_idt_entries(
                ref_start, self.ffi.from_buffer("uint32_t[]", defaults))
            if bytes(start) != self.ffi.buffer(ref_start)[:]:
                res.append("setup_default_idt_entries: host IDTs differ")
        host_l = bytearray(start)
        host_r = self.ffi.new("lg_desc_t[256]")
        self.ffi.memmove(host_r, bytes(start), len(start))
        self.cpu.copy_traps(host_l, defaults)
        self.lib.kshim_copy_traps(self.ptr, host_r, self.ffi.from_buffer("uint32_t[]", defaults))
        hr = self.ffi.buffer(host_r)[:]
        if bytes(host_l) != hr:
            for n in range(256):
                if host_l[8 * n:8 * n + 8] != hr[8 * n:8 * n + 8]:
                    res.append(f"host_idt[{n:#x}]: lgcore={bytes(host_l[8 * n:8 * n + 8]).hex()} "
                               f"original={hr[8 * n:8 * n + 8].hex()}")
        return f"copy_traps(base={base:#x}, stride={stride})", res

    def op_check_syscall_vector(self):
        a = self.guest.check_syscall_vector()
        b = self.lib.kshim_check_syscall_vector(self.ptr)
        res = [] if bool(a) == bool(b) else [f"result: lgcore={a} original={bool(b)}"]
        return "check_syscall_vector()", res

    def op_pin_stack_pages(self):
        lgcore.pin_stack_pages(self.cpu)
        self.lib.kshim_pin_stack_pages(self.ptr)
        return "pin_stack_pages()", None

    def op_write_timestamp(self):
        self.cpu.write_timestamp()
        self.lib.kshim_write_timestamp(self.ptr)
        return "write_timestamp()", None

    def op_guest_pa(self):
        va = self.v32()
        a = self.cpu.guest_pa(va)
        b = self.lib.kshim_guest_pa(self.ptr, va)
        res = [] if a == b else [f"result: lgcore={a:#x} original={b:#x}"]
        return f"guest_pa({va:#x})", res

    def op_poke(self):
        a = self.addr()
        v = self.v32()
        if a + 4 <= self.mem_len:
            _U32.pack_into(self.ram_l, a, v)
            _U32.pack_into(self.ram_r, a, v)
        return f"poke({a:#x}, {v:#x})", None

    def op_setreg(self):
        i = self.inp.u8() % 18
        v = self.v32()
        setattr(self.cpu, _REG_NAMES[i], v)
        setattr(self.lib.kshim_regs(self.ptr), _REG_NAMES[i], v)
        return f"{_REG_NAMES[i]} = {v:#x}", None

    def op_map(self):
        """The guest maps a page: directory entry (a page table is taken
        from RAM if absent) and table entry, any flags."""
        inp = self.inp
        va = self.v32()
        pa = self.v32() & 0xFFFFF000
        f1, f2 = inp.u8(), inp.u8()
        pde_at = (self.cpu.pgdir + (va >> 22) * 4) & 0xFFFFFFFF
        if pde_at + 4 > self.mem_len:
            return f"map({va:#x}) no directory", None
        pde = _U32.unpack_from(self.ram_l, pde_at)[0]
        if not pde & 1:
            pde = ((inp.u8() % max(self.pages, 1)) << 12) | (f1 & 7) | 1
            _U32.pack_into(self.ram_l, pde_at, pde)
            _U32.pack_into(self.ram_r, pde_at, pde)
        pte_at = (pde & 0xFFFFF000) + ((va >> 12) & 0x3FF) * 4
        pte = pa | (f2 & 7)
        if pte_at + 4 <= self.mem_len:
            _U32.pack_into(self.ram_l, pte_at, pte)
            _U32.pack_into(self.ram_r, pte_at, pte)
        return f"map({va:#x} -> {pte:#x} via pde {pde:#x})", None

    def op_raw_idt(self):
        n = self.inp.u8()
        a, b = self.v32(), self.v32()
        self.cpu.set_idt_entry(n, a, b)
        e = self.lib.kshim_idt(self.ptr)[n]
        e.a, e.b = a, b
        return f"idt[{n:#x}] = {a:#x} {b:#x}", None

    # -- the run loop --

    def _hcall_args(self):
        inp = self.inp
        sel = inp.u8()
        call = HCALLS[sel % len(HCALLS)] if sel < 0xF0 else self.v32()
        args = [call, self.v32(), self.v32(), self.v32(), self.v32()]
        if call == LHCALL_LGUEST_INIT and inp.u8() < 0xC0:
            args[1] = self.ld_base                       # a plausible struct
        elif call == LHCALL_LOAD_IDT_ENTRY and inp.u8() < 0xC0:
            args[1] &= 0xFF
        elif call == LHCALL_SET_STACK:
            args[3] &= PAGES_CAP
        return args

    def op_hypercall(self):
        """The guest traps with int $0x1F and arguments in eax..esi; one
        run_guest pass handles it."""
        args = self._hcall_args()
        for name, v in zip(("eax", "ebx", "ecx", "edx", "esi"), args):
            setattr(self.cpu, name, v)
            setattr(self.lib.kshim_regs(self.ptr), name, v)
        runloop.lguest_arch_handle_trap(self.cpu, 0x1F, 0, 0)
        self.model.handle_trap(0x1F, 0, 0)
        return f"hypercall({', '.join(hex(a) for a in args)})", None

    def op_queue_async(self):
        """The guest queues a hypercall in lguest_data's ring."""
        slot = self.inp.u8() & 63
        args = self._hcall_args()
        base = self.ld_base
        a = base + LD_HCALLS + 20 * slot
        s = base + LD_HCALL_STATUS + slot
        if a + 20 <= self.mem_len and s < self.mem_len:
            for ram in (self.ram_l, self.ram_r):
                struct.pack_into("<5I", ram, a, *args)
                ram[s] = 0
        return f"queue_async[{slot}]({', '.join(hex(x) for x in args)})", None

    def op_trap(self):
        inp = self.inp
        sel = inp.u8()
        trapnum = (0, 1, 3, 6, 7, 8, 12, 13, 13, 13, 14, 14, 14, 0x1F, 0x20, 0x80,
                   0x40, 0xFF, 0x100, 17)[sel % 20] if sel < 0xE0 else self.v32()
        errcode = 0 if inp.u8() < 0x80 else self.v32()
        cr2 = self.v32() if trapnum == 14 else 0
        runloop.lguest_arch_handle_trap(self.cpu, trapnum, errcode, cr2)
        self.model.handle_trap(trapnum, errcode, cr2)
        return f"trap({trapnum:#x}, err={errcode:#x}, cr2={cr2:#x})", None

    def op_step(self):
        notes = []
        a = runloop.step(self.cpu, on_notify=lambda c, n: notes.append(n))
        b = self.model.step()
        res = [] if a == b else [f"result: lgcore={a} original={b}"]
        if notes != self.model.notified:
            res.append(f"notify: lgcore={notes} original={self.model.notified}")
        self.model.notified = []
        return "step()", res

    ENGINE = ("set_interrupt", "deliver_pending", "interrupt_pending", "try_deliver",
              "deliver_trap", "load_idt_entry", "set_stack", "set_clockevent",
              "advance", "copy_traps", "check_syscall_vector", "pin_stack_pages",
              "write_timestamp", "guest_pa", "poke", "setreg", "map", "raw_idt")
    RUNLOOP = ("hypercall", "hypercall", "queue_async", "trap", "trap", "step", "step")

    def _clamp_set_stack(self) -> None:
        """Keep SET_STACK page counts under PAGES_CAP wherever the run loop
        will read them (the registers of a pending hypercall, the async
        ring): F1, a bad count makes both sides pin up to 2**32 pages."""
        cpu, regs = self.cpu, self.lib.kshim_regs(self.ptr)
        if cpu.eax == LHCALL_SET_STACK and cpu.edx > PAGES_CAP:
            cpu.edx &= PAGES_CAP
            regs.edx = cpu.edx
        base = self.guest.lguest_data
        if base is None:
            return
        ring = base + LD_HCALLS
        end = min(ring + 20 * 64, self.mem_len)
        if end <= ring:
            return
        ram_l = self.ram_l
        for n, (call, _, _, pages, _) in enumerate(_ARGS5.iter_unpack(bytes(ram_l[ring:ring + (end - ring) // 20 * 20]))):
            if call == LHCALL_SET_STACK and pages > PAGES_CAP:
                p = ring + 20 * n + 12
                _U32.pack_into(ram_l, p, pages & PAGES_CAP)
                _U32.pack_into(self.ram_r, p, pages & PAGES_CAP)

    def run(self) -> int:
        """Run the operations; returns how many ran.  Raises Divergence."""
        engine = [getattr(self, "op_" + n) for n in self.ENGINE]
        loop = [getattr(self, "op_" + n) for n in self.RUNLOOP]
        table = engine + loop
        n_engine = len(engine)
        inp = self.inp
        ops = 0
        while inp.left() > 0 and ops < MAX_OPS:
            self.op_index = ops
            k = inp.u8() % len(table)
            policy = k >= n_engine
            if policy and not self.loop_ok:
                k %= n_engine
                policy = False
            if policy:
                if self.guest.dead is not None or self.model.dead():
                    break
                self._clamp_set_stack()
            try:
                what, res = table[k]()
            except Divergence:
                raise
            except Exception as exc:          # either side raised: a finding
                raise Divergence(ops, table[k].__name__[3:],
                                 [f"exception: {type(exc).__name__}: {exc}"], self.trace) from exc
            self._t(what)
            ops += 1
            if policy and (self.guest.dead is not None or self.model.dead()):
                dl = self.guest.dead
                dr = self.lib.kshim_dead_reason(self.ptr)
                dr = None if dr == self.ffi.NULL else self.ffi.string(dr).decode("latin-1")
                if dl != dr:
                    raise Divergence(ops - 1, what, (res or []) + [f"dead: lgcore={dl!r} original={dr!r}"],
                                     self.trace)
                break
            self.check(what, res)
        return ops


_REF = None


def reference():
    global _REF
    if _REF is None:
        _REF = load_reference()
    return _REF


def run_one(data: bytes, *, trace: bool = False, compat=DEFAULT_COMPAT) -> int:
    """Run one case; raises Divergence.  Returns the number of operations.
    ``compat``: the known findings (fuzz.known) the reference copies
    lgcore on."""
    ref = reference()
    try:
        case = Case(data, ref, trace=trace, compat=compat)
    except Exception as exc:
        raise Divergence(-1, "setup", [f"exception: {type(exc).__name__}: {exc}"], []) from exc
    try:
        return case.run()
    finally:
        case.dispose()


def explain(data: bytes, compat=DEFAULT_COMPAT) -> str:
    """The trace of a case and its verdict, for humans."""
    ref = reference()
    case = Case(data, ref, trace=True, compat=compat)
    try:
        n = case.run()
    except Divergence as d:
        return d.describe()
    finally:
        case.dispose()
    lines = [f"no divergence ({n} operations); lgcore dead={case.guest.dead!r}", "  trace:"]
    return "\n".join(lines + [f"    {t}" for t in case.trace])


if __name__ == "__main__":
    for path in sys.argv[1:]:
        with open(path, "rb") as fh:
            print(f"== {path}")
            print(explain(fh.read()))
