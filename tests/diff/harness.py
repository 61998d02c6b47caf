# SPDX-License-Identifier: GPL-2.0-only
"""The differential harness: one lgcore guest (profile "seed") and one guest
of the C original (lgcore.reference), loaded with the same state, driven with
the same operations, and compared in full after every operation.

A ``GuestState`` is a plain, printable description of everything either side
holds: guest RAM (a background pattern plus overlay writes), lguest's
per-guest fields, the vCPU, the guest IDT, the host IDT and Switcher stub
addresses that copy_traps() works on, the host's vector bookkeeping, the
virtual clock and the wake result of the vCPU's task.  ``Pair.load()`` puts
it into both implementations; ``Pair.run(op)`` runs one operation on both and
raises ``Mismatch`` (naming every field that differs) unless the return
values and the whole state agree.

An operation is a tuple ``(name, *args)``; ``OPS`` lists the names.  Every
entry point of the seed is one, plus "guest" operations that stand for the
guest running between hypercalls (it writes its RAM and registers, halts,
time passes).
"""
from __future__ import annotations

import random
import struct
from dataclasses import dataclass, field, replace
from typing import Any

import lgcore
from lgcore import clock as lgclock
from lgcore import stacks as lgstacks
from lgcore import syscalls as lgsyscalls

PAGE = 4096
REGS_SIZE = 72
IDT_BYTES = 8 * 256
LD_SIZE = 1396
# The RAM sizes a state may have: 16 whole pages, and one that ends two bytes
# short of a page boundary so the RAM limit and pfn_limit disagree.
RAM_SIZES = (0x10000, 0x6FFE)
MAX_RAM = max(RAM_SIZES)

REG_NAMES = ("eax", "ebx", "ecx", "edx", "esi", "edi", "ebp", "gs", "fs", "ds",
             "es", "trapnum", "errcode", "eip", "cs", "eflags", "esp", "ss")
REG_INDEX = {name: i for i, name in enumerate(REG_NAMES)}

# lguest_data fields (byte offsets) the seed reads or writes.
LD_IRQ_ENABLED, LD_BLOCKED, LD_TIME, LD_IRQ_PENDING, LD_SYSCALL_VEC = 0, 4, 12, 20, 1392


def _pattern_pte_like(seed: int) -> bytes:
    # Every word is a plausible page-table entry into the first 16 pages,
    # with random low flag bits: page walks through it mostly succeed.
    rnd = random.Random(seed)
    return b"".join(struct.pack("<I", (rnd.randrange(16) << 12) | rnd.randrange(8)
                                | (rnd.randrange(4) << 9))
                    for _ in range(MAX_RAM // 4))


def _pattern_small(seed: int) -> bytes:
    rnd = random.Random(seed)
    return bytes(rnd.choice((0, 0, 0, 1, 2, 0x80, 0xFF)) for _ in range(MAX_RAM))


# RAM backgrounds, chosen by index (so a failing example prints small).
BACKGROUNDS: tuple[bytes, ...] = (
    bytes(MAX_RAM),                                  # 0: zeroes
    b"\xff" * MAX_RAM,                               # 1: ones
    random.Random(1).randbytes(MAX_RAM),             # 2: noise
    _pattern_pte_like(2),                            # 3: page-table-like words
    _pattern_small(3),                               # 4: mostly small bytes
)

# Switcher stub address tables (copy_traps' def[]), chosen by index.
DEFAULTS: tuple[bytes, ...] = (
    struct.pack("<256I", *(0xC0400000 + 16 * i for i in range(256))),
    struct.pack("<256I", *(random.Random(4).getrandbits(32) for _ in range(256))),
    struct.pack("<256I", *((i * 0x01010101) & 0xFFFFFFFF for i in range(256))),
)

# Initial guest-IDT fillings, chosen by index; entries are overlaid on them.
IDT_FILLS: tuple[bytes, ...] = (
    bytes(IDT_BYTES),
    random.Random(5).randbytes(IDT_BYTES),
    # every gate a vetted present interrupt/trap gate with varying DPL
    b"".join(struct.pack("<II", 0x00610000 | (i * 0x111 & 0xFFFF),
                         0xC0100000 | (0x8E00 + ((i & 1) << 8)) | ((i % 4) << 13))
             for i in range(256)),
)

# Initial host IDTs: 0 zeroes, 1 noise, 2 "whatever setup_default_idt_entries
# leaves for the chosen defaults" (filled in by Pair.load).
HOST_IDT_FILLS = 3

DEFAULT_USED_VECTORS = sum(1 << v for v in range(32)) | (1 << 0x80)


@dataclass(frozen=True)
class GuestState:
    """Everything lgcore and the original hold, in printable form."""
    ram_size: int = 0x10000
    background: int = 0
    writes: tuple[tuple[int, bytes], ...] = ()     # (gpa, bytes), clipped to RAM
    pfn_limit: int | None = None                    # None: the whole RAM
    lguest_data: int | None = 0x1000
    noirq_start: int = 0
    noirq_end: int = 0
    stack_pages: int = 0
    syscall_vector: int = 0x80
    regs: tuple[int, ...] = (0,) * 7 + (0, 0, 0x69, 0x69, 0, 0, 0, 0x61, 0x202, 0, 0x69)
    idt_fill: int = 0
    idt_entries: tuple[tuple[int, int, int], ...] = ()
    irqs_pending: int = 0
    esp1: int = 0
    ss1: int = 0
    changed: int = 0
    halted: bool = False
    pgdir: int = 0
    paging: bool = False
    tables: tuple[int, ...] = ()                    # where the page-table entries went
    clock_ns: int = 0
    dead: str | None = None
    host_idt_fill: int = 2
    defaults: int = 0
    used_vectors: int = DEFAULT_USED_VECTORS
    percpu_vectors: int = 0
    wake_result: int = 1

    def ram_bytes(self) -> bytes:
        ram = bytearray(BACKGROUNDS[self.background][:self.ram_size])
        for gpa, data in self.writes:
            if gpa < self.ram_size:
                chunk = data[:self.ram_size - gpa]
                ram[gpa:gpa + len(chunk)] = chunk
        return bytes(ram)

    def idt_bytes(self) -> bytes:
        idt = bytearray(IDT_FILLS[self.idt_fill])
        for vec, a, b in self.idt_entries:
            struct.pack_into("<II", idt, 8 * vec, a, b)
        return bytes(idt)

    def regs_bytes(self) -> bytes:
        return struct.pack("<18I", *self.regs)

    def with_regs(self, **kw: int) -> "GuestState":
        regs = list(self.regs)
        for name, value in kw.items():
            regs[REG_INDEX[name]] = value
        return replace(self, regs=tuple(regs))


class Mismatch(AssertionError):
    """lgcore and the original disagree."""


class expected_mismatch:
    """Inside, a Mismatch counts as known (an xfail regression test waiting
    for its fix, a deliberately broken lgcore), not as a finding."""

    def __enter__(self):
        STATS.expecting += 1
        return self

    def __exit__(self, exc_type, exc, tb):
        STATS.expecting -= 1
        return False


class CountingTask:
    """The vCPU's task as set_interrupt() sees it: wake_up_process() returns
    the configured result; both calls are counted (as kshim_sched.h does)."""
    __slots__ = ("wake_result", "wakes", "kicks")

    def __init__(self, wake_result: int):
        self.wake_result = wake_result
        self.wakes = 0
        self.kicks = 0

    def wake_up_process(self) -> bool:
        self.wakes += 1
        return bool(self.wake_result)

    def kick_process(self) -> None:
        self.kicks += 1


@dataclass
class Stats:
    sequences: int = 0
    operations: int = 0
    comparisons: int = 0
    mismatches: int = 0
    known_mismatches: int = 0      # inside expected_mismatch()
    expecting: int = 0
    by_op: dict[str, int] = field(default_factory=dict)


#: Totals for the whole session (the conftest prints them).
STATS = Stats()


def _signed32(v: int) -> int:
    return v - (1 << 32) if v & 0x80000000 else v


def _bits(mask: int) -> set[int]:
    return {v for v, bit in enumerate(reversed(bin(mask)[2:])) if bit == "1"}


class Pair:
    """One lgcore guest and one original guest, kept in lockstep."""

    def __init__(self, ref: Any):
        self.ref = ref
        self.ffi = ffi = ref.ffi
        self.lib = ref.lib
        # Buffers live as long as the Pair; each example refills them.
        self._rams = {}
        for size in RAM_SIZES:
            ram_l, ram_r = bytearray(size), bytearray(size)
            self._rams[size] = (ram_l, ram_r, ref.new_guest(ram_r))
        self.g_in = ffi.new("lg_guest_t *")
        self.c_in = ffi.new("lg_cpu_t *")
        self.g_out = ffi.new("lg_guest_t *")
        self.c_out = ffi.new("lg_cpu_t *")
        self.hidt_r = ffi.new("lg_desc_t[256]")
        self.hidt_r_buf = ffi.buffer(self.hidt_r)
        self.def_r = ffi.new("uint32_t[256]")
        self.hidt_l = bytearray(IDT_BYTES)
        self.more_r = ffi.new("int *")
        self.exp_r = ffi.new("int64_t *")
        self.vec_r = ffi.new("uint32_t[8]")
        self.vec_r_buf = ffi.buffer(self.vec_r)
        self.wakes_r = ffi.new("uint64_t *")
        self.kicks_r = ffi.new("uint64_t *")
        self._used_cache: tuple[frozenset, int] = (frozenset(), 0)
        self.state: GuestState | None = None
        self.history: list[tuple] = []

    # ---- loading ----

    def load(self, st: GuestState) -> None:
        ffi, lib = self.ffi, self.lib
        ram_l, ram_r, rg = self._rams[st.ram_size]
        self.state = st
        self.history = []
        ram = st.ram_bytes()
        ram_l[:] = ram
        ram_r[:] = ram
        self.ram_l, self.ram_r, self.rg, self.rptr = ram_l, ram_r, rg, rg.ptr

        regs = st.regs_bytes()
        idt = st.idt_bytes()
        defaults = DEFAULTS[st.defaults]
        self.defaults_l = defaults

        # -- lgcore --
        clk = lgcore.VirtualClock(st.clock_ns)
        guest = lgcore.Guest(ram_l, profile="seed", syscall_vector=st.syscall_vector,
                             clock=clk, pfn_limit=st.pfn_limit)
        guest.lguest_data = st.lguest_data
        guest.noirq_start = st.noirq_start
        guest.noirq_end = st.noirq_end
        guest.stack_pages = st.stack_pages
        if st.dead is not None:
            guest.kill_guest(st.dead)
        cpu = guest.add_vcpu()
        self.regs_l = cpu.regs
        self.idt_l = cpu.idt
        self.regs_l[:] = regs
        self.idt_l[:] = idt
        cpu.irqs_pending = st.irqs_pending
        cpu.esp1 = st.esp1
        cpu.ss1 = st.ss1
        cpu.changed = st.changed
        cpu.halted = st.halted
        cpu.pgdir = st.pgdir
        cpu.paging = st.paging
        cpu.task = self.task = CountingTask(st.wake_result)
        self.events = lgclock.ClockEvents(clk)
        lgclock.init_clockdev(cpu, self.events)
        self.host = lgsyscalls.HostVectors(syscall_vector=st.syscall_vector,
                                           used_vectors=_bits(st.used_vectors),
                                           percpu_irq_vectors=_bits(st.percpu_vectors))
        self.clock, self.guest, self.cpu = clk, guest, cpu
        if st.host_idt_fill == 0:
            self.hidt_l[:] = bytes(IDT_BYTES)
        elif st.host_idt_fill == 1:
            self.hidt_l[:] = random.Random(6).randbytes(IDT_BYTES)
        else:
            lgcore.setup_default_idt_entries(self.hidt_l, defaults)

        # -- the original --
        lib.kshim_host_reset()
        g, c = self.g_in, self.c_in
        g.pfn_limit = st.pfn_limit if st.pfn_limit is not None else st.ram_size // PAGE
        g.has_lguest_data = st.lguest_data is not None
        g.lguest_data = st.lguest_data or 0
        g.noirq_start = st.noirq_start
        g.noirq_end = st.noirq_end
        g.stack_pages = st.stack_pages
        g.syscall_vector = st.syscall_vector
        g.fixes = 0
        g.clock = ffi.NULL
        g.dead = 0
        ffi.memmove(ffi.addressof(c, "regs"), regs, REGS_SIZE)
        ffi.memmove(c.idt, idt, IDT_BYTES)
        c.irqs_pending = st.irqs_pending
        c.esp1 = st.esp1
        c.ss1 = st.ss1
        c.changed = _signed32(st.changed)
        c.halted = int(st.halted)
        c.pgdir = st.pgdir
        c.paging = int(st.paging)
        rg.state_in(g, c)
        lib.kshim_clock_set(lib.LG_CLOCK_VIRTUAL, st.clock_ns)
        if st.dead is not None:
            lib.kshim_kill_text(self.rptr, st.dead.encode())
        lib.kshim_timer_set(self.rptr, 0, 0)
        lib.kshim_init_clockdev(self.rptr)
        lib.kshim_task_set_wake_result(self.rptr, st.wake_result)
        lib.kshim_task_reset_counts(self.rptr)
        lib.kshim_set_used_vectors(list(struct.unpack("<8I", st.used_vectors.to_bytes(32, "little"))))
        lib.kshim_set_percpu_vectors(list(struct.unpack("<8I", st.percpu_vectors.to_bytes(32, "little"))))
        ffi.memmove(self.def_r, defaults, 4 * 256)
        if st.host_idt_fill == 2:
            lib.kshim_setup_default_idt_entries(self.hidt_r, self.def_r)
        else:
            ffi.memmove(self.hidt_r, bytes(self.hidt_l), IDT_BYTES)

        STATS.sequences += 1
        self.check(("load",))

    # ---- comparing ----

    # The per-guest and per-vCPU fields besides RAM, registers and IDTs.
    SCALARS = ("dead", "irqs_pending", "halted", "changed", "esp1", "ss1", "stack_pages",
               "pfn_limit", "lguest_data", "noirq", "pgdir", "paging", "syscall_vector",
               "timer", "wake/kick", "used_vectors", "last_error")

    def _scalars_l(self) -> tuple:
        g, c = self.guest, self.cpu
        return (
            g.dead,
            c.irqs_pending,
            bool(c.halted),
            c.changed,
            c.esp1,
            c.ss1,
            g.stack_pages,
            g.pfn_limit,
            g.lguest_data,
            (g.noirq_start, g.noirq_end),
            c.pgdir,
            bool(c.paging),
            g.syscall_vector,
            c.hrt.expires,
            (self.task.wakes, self.task.kicks),
            self._used_l(),
            self.host.last_error,
        )

    def _used_l(self) -> int:
        used = frozenset(self.host.used_vectors)
        if used != self._used_cache[0]:
            self._used_cache = (used, sum(1 << v for v in used))
        return self._used_cache[1]

    def _scalars_r(self) -> tuple:
        ffi, lib, p = self.ffi, self.lib, self.rptr
        g, c = self.g_out, self.c_out
        reason = lib.kshim_dead_reason(p)
        armed = lib.kshim_timer_armed(p, self.exp_r)
        wakes, kicks = self.wakes_r, self.kicks_r
        lib.kshim_task_counts(p, wakes, kicks)
        lib.kshim_get_used_vectors(self.vec_r)
        printk = None
        if lib.kshim_printk_count():
            printk = ffi.string(lib.kshim_last_printk(ffi.NULL)).decode().rstrip("\n")
        return (
            None if reason == ffi.NULL else ffi.string(reason).decode(),
            c.irqs_pending,
            bool(c.halted),
            c.changed,
            c.esp1,
            c.ss1,
            g.stack_pages,
            g.pfn_limit,
            g.lguest_data if g.has_lguest_data else None,
            (g.noirq_start, g.noirq_end),
            c.pgdir,
            bool(c.paging),
            g.syscall_vector,
            self.exp_r[0] if armed else None,
            (wakes[0], kicks[0]),
            int.from_bytes(self.vec_r_buf[:], "little"),
            printk,
        )

    def check(self, op: tuple, res_l: Any = None, res_r: Any = None) -> None:
        """Raise Mismatch unless both sides agree on everything."""
        ffi = self.ffi
        STATS.comparisons += 1
        self.lib.kshim_state_out(self.rptr, self.g_out, self.c_out)
        problems = []
        if res_l != res_r:
            problems.append(f"return value: lgcore {res_l!r}, original {res_r!r}")
        if self.ram_l != self.ram_r:
            problems.append(self._ram_diff())
        regs_r = ffi.buffer(ffi.addressof(self.c_out, "regs"))[:]
        regs_l = self.regs_l.tobytes()
        if regs_l != regs_r:
            rl, rr = struct.unpack("<18I", regs_l), struct.unpack("<18I", regs_r)
            problems.append("registers: " + ", ".join(
                f"{n} lgcore {a:#x} original {b:#x}"
                for n, a, b in zip(REG_NAMES, rl, rr) if a != b))
        idt_r = ffi.buffer(self.c_out.idt)[:]
        if self.idt_l.tobytes() != idt_r:
            problems.append("guest IDT: " + self._idt_diff(self.idt_l.tobytes(), idt_r))
        hidt_r = self.hidt_r_buf[:]
        if bytes(self.hidt_l) != hidt_r:
            problems.append("host IDT: " + self._idt_diff(bytes(self.hidt_l), hidt_r))
        sl, sr = self._scalars_l(), self._scalars_r()
        if sl != sr:
            for name, a, b in zip(self.SCALARS, sl, sr):
                if a != b:
                    problems.append(f"{name}: lgcore {a!r}, original {b!r}")
        if problems:
            if STATS.expecting:
                STATS.known_mismatches += 1
            else:
                STATS.mismatches += 1
            raise Mismatch(f"after {op!r} (operation {len(self.history)} of the sequence):\n  "
                           + "\n  ".join(problems)
                           + f"\nstate: {self.state!r}\nops so far: {self.history!r}")

    def _ram_diff(self) -> str:
        a, b = self.ram_l, self.ram_r
        offs = [i for i in range(len(a)) if a[i] != b[i]]
        lo, hi = offs[0], offs[-1]
        return (f"guest RAM differs at {len(offs)} byte(s) in {lo:#x}..{hi:#x}: "
                f"lgcore {bytes(a[lo:min(hi + 1, lo + 32)]).hex()} "
                f"original {bytes(b[lo:min(hi + 1, lo + 32)]).hex()}")

    @staticmethod
    def _idt_diff(a: bytes, b: bytes) -> str:
        out = []
        for v in range(256):
            ea, eb = a[8 * v:8 * v + 8], b[8 * v:8 * v + 8]
            if ea != eb:
                out.append(f"vector {v:#x} lgcore {struct.unpack('<II', ea)} "
                           f"original {struct.unpack('<II', eb)}")
        return "; ".join(out[:8]) + (f" (+{len(out) - 8} more)" if len(out) > 8 else "")

    # ---- running ----

    def run(self, op: tuple) -> Any:
        name, args = op[0], op[1:]
        self.history.append(op)
        res_l, res_r = getattr(self, "op_" + name)(*args)
        STATS.operations += 1
        STATS.by_op[name] = STATS.by_op.get(name, 0) + 1
        self.check(op, res_l, res_r)
        return res_l

    def run_all(self, ops) -> None:
        for op in ops:
            self.run(op)

    # -- the seed's entry points --

    def op_load_guest_idt_entry(self, num: int, lo: int, hi: int):
        self.cpu.load_guest_idt_entry(num, lo, hi)
        self.lib.kshim_load_guest_idt_entry(self.rptr, num, lo, hi)
        return None, None

    def op_guest_set_stack(self, seg: int, esp: int, pages: int):
        lgstacks.guest_set_stack(self.cpu, seg, esp, pages)
        self.lib.kshim_guest_set_stack(self.rptr, seg, esp, pages)
        return None, None

    def op_pin_stack_pages(self):
        lgstacks.pin_stack_pages(self.cpu)
        self.lib.kshim_pin_stack_pages(self.rptr)
        return None, None

    def op_deliver_trap(self, num: int):
        return (bool(self.cpu.deliver_trap(num)),
                bool(self.lib.kshim_deliver_trap(self.rptr, num)))

    def op_copy_traps(self):
        self.cpu.copy_traps(self.hidt_l, self.defaults_l)
        self.lib.kshim_copy_traps(self.rptr, self.hidt_r, self.def_r)
        return None, None

    def op_setup_default_idt_entries(self):
        lgcore.setup_default_idt_entries(self.hidt_l, self.defaults_l)
        self.lib.kshim_setup_default_idt_entries(self.hidt_r, self.def_r)
        return None, None

    def op_set_interrupt(self, irq: int):
        self.cpu.set_interrupt(irq)
        return None, self.lib.kshim_set_interrupt(self.rptr, irq) or None

    def op_interrupt_pending(self):
        irq, more = self.cpu.interrupt_pending()
        self.more_r[0] = 0
        irq_r = self.lib.kshim_interrupt_pending(self.rptr, self.more_r)
        return (irq, bool(more)), (irq_r, bool(self.more_r[0]))

    def op_try_deliver_interrupt(self, irq: int, more: bool):
        self.cpu.try_deliver_interrupt(irq, more)
        return None, self.lib.kshim_try_deliver_interrupt(self.rptr, irq, int(more)) or None

    def op_run_loop_irq(self):
        """Run-loop step 4 as lguest's run_guest() wrote it."""
        irq, more = self.cpu.interrupt_pending()
        if irq < 32:
            self.cpu.try_deliver_interrupt(irq, more)
        self.more_r[0] = 0
        irq_r = self.lib.kshim_interrupt_pending(self.rptr, self.more_r)
        if irq_r < 32:
            self.lib.kshim_try_deliver_interrupt(self.rptr, irq_r, self.more_r[0])
        return irq, irq_r

    def op_deliver_pending(self):
        """lgcore's fused step (C:030) against the same two calls in C."""
        self.cpu.deliver_pending()
        self.more_r[0] = 0
        irq_r = self.lib.kshim_interrupt_pending(self.rptr, self.more_r)
        if irq_r < 32:
            self.lib.kshim_try_deliver_interrupt(self.rptr, irq_r, self.more_r[0])
        return None, None

    def op_check_syscall_vector(self):
        return (bool(self.guest.check_syscall_vector()),
                bool(self.lib.kshim_check_syscall_vector(self.rptr)))

    def op_init_interrupts(self):
        return lgsyscalls.init_interrupts(self.host), self.lib.kshim_init_interrupts()

    def op_free_interrupts(self):
        lgsyscalls.free_interrupts(self.host)
        return None, self.lib.kshim_free_interrupts() or None

    def op_guest_set_clockevent(self, delta: int):
        lgclock.guest_set_clockevent(self.cpu, delta)
        self.lib.kshim_guest_set_clockevent(self.rptr, delta)
        # The shim's hrtimer is passive; a real one armed at or before now
        # fires at once, as lgcore's ClockEvents does on a virtual clock.
        self.lib.kshim_timer_run_expired(self.rptr)
        return None, None

    def op_write_timestamp(self):
        self.cpu.write_timestamp()
        self.lib.kshim_write_timestamp(self.rptr)
        return None, None

    def op_guest_pa(self, vaddr: int):
        return self.cpu.guest_pa(vaddr), self.lib.kshim_guest_pa(self.rptr, vaddr)

    def op_lguest_address_ok(self, addr: int, length: int):
        """lgcore's check is what lgread/lgwrite demand: the seed-era rule
        and the RAM bound (the original's helper is the rule alone; the two
        differ only when pfn_limit reaches past the RAM buffer)."""
        return (bool(self.guest.lguest_address_ok(addr, length)),
                bool(self.lib.kshim_range_ok(self.rptr, addr, length)))

    def op_pin_page(self, vaddr: int):
        self.cpu.pin_page(vaddr)
        self.lib.kshim_pin_page(self.rptr, vaddr)
        return None, None

    # -- the world between hypercalls --

    def op_advance_clock(self, ns: int):
        """Time passes: an expired clockevent raises IRQ 0 on both sides.
        The clock stops at 2**63 - 1 (VirtualClock's limit)."""
        now = min(self.clock.now_ns() + ns, 2**63 - 1)
        self.clock.set_ns(now)
        self.lib.kshim_clock_set(self.lib.LG_CLOCK_VIRTUAL, now)
        self.lib.kshim_timer_run_expired(self.rptr)
        return None, None

    def op_poke(self, gpa: int, value: int):
        """The guest stores a u32 (clipped at the end of RAM)."""
        data = struct.pack("<I", value)[:max(0, len(self.ram_l) - gpa)]
        self.ram_l[gpa:gpa + len(data)] = data
        self.ram_r[gpa:gpa + len(data)] = data
        return None, None

    def op_set_reg(self, name: str, value: int):
        """The guest ran and changed a register."""
        setattr(self.cpu, name, value)
        setattr(self.lib.kshim_regs(self.rptr), name, value)
        return None, None

    def op_halt(self, halted: bool):
        """LHCALL_HALT (or a wake-up through another path)."""
        self.cpu.halted = halted
        self.lib.kshim_state_out(self.rptr, self.g_out, self.c_out)
        self.c_out.halted = int(halted)
        self.rg.state_in(None, self.c_out)
        return None, None


#: The operations a sequence may contain.
OPS = tuple(name[3:] for name in dir(Pair) if name.startswith("op_"))
