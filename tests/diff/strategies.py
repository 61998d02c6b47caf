# SPDX-License-Identifier: GPL-2.0-only
"""What the differential tests feed both implementations: random guest
states and random operation sequences, decoded from hypothesis-drawn bytes.

Hypothesis costs about as much per draw (and about a microsecond per byte
of a drawn byte string) as a whole operation costs to run and compare, so a
scenario is drawn as two values: a short, fixed-size string of *selector*
bytes and a 64-bit *noise* seed.  Every choice the decoder makes (which
special value, which kind of address, which operation, how many) reads one
selector byte at a fixed position; only a field whose selector asks for a
raw value takes 32 bits from a PRNG seeded with the noise seed.  So the
decoder biases values towards the places where the seed's arithmetic has
edges -- lguest_data straddling the end of RAM, stacks at page boundaries
and at guest-physical 0, page tables with missing or read-only entries, the
no-IRQ window around eip, 32-bit wrap -- and hypothesis's shrinker, which
pulls selector bytes towards zero, shrinks a failure towards a plain state:
a zero selector always means the first, plainest choice (never a raw
value), and a zero count byte one operation.

``scenarios()`` is the strategy; ``decode()`` is the pure function under it
(the soak, the regression file and the mutant check call it directly).
"""
from __future__ import annotations

import random
import struct

from hypothesis import strategies as st

from .harness import (BACKGROUNDS, DEFAULT_USED_VECTORS, DEFAULTS, HOST_IDT_FILLS,
                      LD_BLOCKED, LD_IRQ_ENABLED, LD_IRQ_PENDING, LD_SIZE,
                      LD_SYSCALL_VEC, LD_TIME, PAGE, RAM_SIZES, REG_INDEX, REG_NAMES,
                      GuestState)

M32 = 0xFFFFFFFF
MAX_OPS = 24          # operations per sequence: 1 + count byte % MAX_OPS
OP_BYTES = 8          # selector bytes per operation slot
STATE_BYTES = 144     # selector bytes the state decoder may read
SCENARIO_BYTES = STATE_BYTES + 1 + MAX_OPS * OP_BYTES
MAX_MAPPINGS = 6
MAX_IDT_ENTRIES = 10


class Reader:
    """Selector bytes at fixed positions (past the end: 0), and raw values
    from a PRNG seeded with the noise seed."""
    __slots__ = ("data", "pos", "rng")

    def __init__(self, data: bytes, noise: int = 0):
        self.data = data
        self.pos = 0
        self.rng = random.Random(noise)

    def byte(self) -> int:
        p = self.pos
        self.pos = p + 1
        return self.data[p] if p < len(self.data) else 0

    def raw(self, bits: int = 32) -> int:
        return self.rng.getrandbits(bits)

    def pick(self, seq):
        return seq[self.byte() % len(seq)]

    def flag(self, one_in: int = 2) -> bool:
        return self.byte() % one_in == one_in - 1

    def biased(self, specials, raw_mask: int = M32, raw_mod: int | None = None) -> int:
        """One of ``specials`` (selector < 160), else a raw value."""
        sel = self.byte()
        if sel < 160:
            return specials[sel % len(specials)]
        raw = self.raw(64 if raw_mod else 32)
        return raw % raw_mod if raw_mod else raw & raw_mask


# ---- value tables (the first entry is what a zero selector decodes to) ----

PTE_FLAGS = (0x7, 0x7, 0x3, 0x67, 0x1, 0x5, 0x2, 0x0)
VIRTUAL_PAGES = (0xC0000, 0x0, 0x1, 0x3FF, 0x400, 0xBFFFF, 0xC0001, 0xC0010, 0xFFFFF)
OFFSETS = (0, 0, 0, 4, 8, 12, 16, 20, 24, 0x800, 0xFF8, 0xFFC, -4, -8, -12, -20, -24)
SEGMENTS = (0x69, 0x69, 0x7B, 0x61, 0x6B, 0x73, 0x68, 0x0, 0x10069, 0x80000001, M32)
EFLAGS = (0x202, 0x200, 0x2, 0x246, 0x3202, 0x14302, 0x20302, M32)
IRQ_ENABLED = (0x200, 0, 0x202, 1, 0xFFFFFDFF, M32)
BLOCKED = (0, M32, 0xFFFFFFFE, 1, 0x80000000)
SYSCALL_VECTORS = (0x80, 0x40, 0x20, 0x1F, 0x0E, 0x06, 0x00, 0xFF)
CLOCKS = (0, 1, 999_999_999, 1_000_000_000, 2**31 * 10**9 - 1, 2**31 * 10**9,
          2**32 * 10**9 + 5, 1_700_000_000_123_456_789, 2**63 - 10**6, 2**63 - 1)
GATE_OFFSETS = (0xC0100530, 0x00000000, 0xFFFFFFFF, 0x08048000)
GATE_SELECTORS = (0x60, 0x61, 0x10, 0x73)
GATE_TYPES = (0xE, 0xF, 0xE, 0xF, 0x5, 0xC, 0x0, 0x6, 0x7)
PENDING = (0, 1, 0x80000000, M32, 0x3, 0x10001)
DELTAS = (0, 1, 100, 10**6, M32)
ADVANCES = (0, 1, 10**6, 2**32, 2**32 - 1)
TRAPS = (14, 0, 3, 8, 13, 17, 0x80, 0x40, 256, M32, 6, 7, 0x1F, 32)
LOAD_VECTORS = (32, 0x80, 0, 2, 8, 15, 0x1F, 256, M32, 3, 14, 0x40)


def _pack(v: int) -> bytes:
    return struct.pack("<I", v & M32)


def _gate(r: Reader) -> tuple[int, int]:
    """A gate's (lo, hi) words: mostly well formed, of any type; 5 selectors."""
    sel = r.byte()
    if sel >= 200:
        r.pos += 4
        return r.raw(), r.raw()
    offset = r.biased(GATE_OFFSETS)
    selector = r.biased(GATE_SELECTORS, raw_mask=0xFFFF)
    bits = r.byte()
    gtype = r.biased(GATE_TYPES, raw_mod=16)
    present = 0 if bits & 0x30 == 0x30 else 0x8000
    dpl = bits & 3
    low = (0, 0x1F, 0xFF, 0)[(bits >> 6) & 3]
    s_bit = 0x1000 if bits & 0x0C == 0x0C else 0
    lo = (selector << 16) | (offset & 0xFFFF)
    hi = (offset & 0xFFFF0000) | present | (dpl << 13) | s_bit | (gtype << 8) | low
    return lo, hi


def _vector(r: Reader, specials=LOAD_VECTORS) -> int:
    """Any vector: an IRQ gate, a trap, a special, 0..255 or any u32; 2 selectors."""
    sel, sub = r.byte(), r.byte()
    if sel < 80:
        return 32 + sub % 32
    if sel < 120:
        return sub % 32
    if sel < 180:
        return specials[sub % len(specials)]
    if sel < 235:
        return sub
    return r.raw()


class Addresses:
    """Draws addresses aimed at the interesting ones of a state; 3 selectors."""
    __slots__ = ("interesting", "limit")

    def __init__(self, interesting: tuple[int, ...], size: int):
        self.interesting = interesting
        self.limit = size + 9

    def __call__(self, r: Reader) -> int:
        sel, which, off = r.byte(), r.byte(), r.pick(OFFSETS)
        if sel < 160:
            return (self.interesting[which % len(self.interesting)] + off) & M32
        if sel < 210:
            return r.raw() % self.limit
        return r.raw()


def decode_state(r: Reader) -> tuple[GuestState, Addresses]:
    size = r.pick(RAM_SIZES)
    pages = size // PAGE
    background = r.byte() % len(BACKGROUNDS)
    writes: list[tuple[int, bytes]] = []

    # -- page tables --
    paging = r.flag()
    sel = r.byte()
    pgdir = (sel % pages) * PAGE if sel < 160 else (
        r.raw() % (size + 1) if sel < 210 else r.raw())
    nmap = r.byte() % (MAX_MAPPINGS + 1)
    vaddrs = [0xC0000000, 0xBFFFF000]
    pde_of: dict[int, int] = {}
    tables: list[int] = []
    for k in range(MAX_MAPPINGS):
        if k >= nmap:
            r.pos += 5
            continue
        vpage = r.biased(VIRTUAL_PAGES, raw_mask=0xFFFFF)
        ppage = r.byte() % (pages + 2)
        flags = r.pick(PTE_FLAGS)
        pt_page = r.byte() % (pages + 1)
        pde_flags = r.pick(PTE_FLAGS)
        di = vpage >> 10
        if di not in pde_of:
            pde_of[di] = (pt_page * PAGE) | pde_flags
            writes.append(((pgdir + 4 * di) & M32, _pack(pde_of[di])))
            tables.append((pgdir + 4 * di) & M32)
        pte_at = ((pde_of[di] & 0xFFFFF000) + 4 * (vpage & 0x3FF)) & M32
        writes.append((pte_at, _pack(ppage * PAGE | flags)))
        tables.append(pte_at)
        vaddrs.append(vpage << 12)

    # -- lguest_data --
    sel, sub = r.byte(), r.byte()
    if sel < 120:
        lguest_data = (sub % pages) * PAGE
    elif sel < 140:
        lguest_data = None
    elif sel < 190:
        lguest_data = size - r.raw() % (LD_SIZE + 9)
    elif sel < 230:
        lguest_data = r.raw() % (size + 1)
    else:
        lguest_data = r.raw()
    syscall_vector = r.biased(SYSCALL_VECTORS, raw_mod=256)
    fields = ((LD_IRQ_ENABLED, r.biased(IRQ_ENABLED)),
              (LD_BLOCKED, r.biased(BLOCKED)),
              (LD_IRQ_PENDING, r.biased((0, 0x200))),
              (LD_SYSCALL_VEC, r.biased((0x80, syscall_vector, 0x40, 0))))
    if lguest_data is not None:
        writes += [(lguest_data + off, _pack(v)) for off, v in fields]

    physical = {0, 4, 8, 12, 16, 20, 24, PAGE, 2 * PAGE, size - 4, size,
                size & ~0xFFF, pages * PAGE, (pages - 1) * PAGE, M32 & ~3}
    if lguest_data is not None:
        physical.add(lguest_data + LD_TIME)
    addresses = Addresses(tuple(vaddrs + sorted(physical)), size)

    # -- registers: zero or noise, then the ones that matter aimed --
    regs = [r.raw() for _ in range(18)] if r.flag() else [0] * 18
    regs[REG_INDEX["ss"]] = r.biased(SEGMENTS)
    regs[REG_INDEX["esp"]] = addresses(r)
    regs[REG_INDEX["cs"]] = r.biased((0x61, 0x73, 0x60))
    regs[REG_INDEX["eflags"]] = r.biased(EFLAGS)
    eip = regs[REG_INDEX["eip"]] = r.biased((0xC0100000, 0x08048000, 0, M32))

    kind, d1, d2 = r.byte() % 5, r.byte() % 17, r.byte() % 17
    if kind == 0:
        noirq = (0, 0)
    elif kind in (1, 2):
        noirq = ((eip - d1) & M32, (eip + d2) & M32)
    elif kind == 3:
        noirq = (eip, (eip + 1) & M32) if d1 & 1 else ((eip + 1) & M32, eip)
    else:
        noirq = (r.raw(), r.raw())

    sel = r.byte()
    pfn_limit = None if sel < 120 else (sel % (pages + 3) if sel < 200 else r.raw())

    idt_entries = []
    n_idt = r.byte() % (MAX_IDT_ENTRIES + 1)
    for k in range(MAX_IDT_ENTRIES):
        if k >= n_idt:
            r.pos += 7
            continue
        start = r.pos
        vec = _vector(r) & 0xFF
        lo, hi = _gate(r)
        r.pos = start + 7
        idt_entries.append((vec, lo, hi))

    sel = r.byte()
    irqs_pending = PENDING[sel % len(PENDING)] if sel < 100 else (
        1 << (sel % 32) if sel < 180 else r.raw())
    sel = r.byte()
    used = (DEFAULT_USED_VECTORS if sel < 160 else
            DEFAULT_USED_VECTORS | 1 << r.raw(8) if sel < 220 else r.raw(256))
    sel = r.byte()
    percpu = 0 if sel < 160 else (1 << r.raw(8) if sel < 220 else r.raw(256))

    state = GuestState(
        ram_size=size,
        background=background,
        writes=tuple(writes),
        pfn_limit=pfn_limit,
        lguest_data=lguest_data,
        noirq_start=noirq[0],
        noirq_end=noirq[1],
        stack_pages=r.byte() % 4,
        syscall_vector=syscall_vector,
        regs=tuple(regs),
        idt_fill=r.pick((0, 0, 0, 1, 2)),
        idt_entries=tuple(idt_entries),
        irqs_pending=irqs_pending,
        esp1=addresses(r),
        ss1=r.biased((0x69, 0x61, 0x7B, 0x68, 0), raw_mask=0xFFFF),
        changed=r.biased((0, 1, 2, 3, 4, 7)),
        halted=r.flag(),
        pgdir=pgdir,
        paging=paging,
        tables=tuple(tables),
        clock_ns=r.biased(CLOCKS, raw_mod=2**62),
        dead="killed earlier" if r.flag(5) else None,
        host_idt_fill=r.byte() % HOST_IDT_FILLS,
        defaults=r.byte() % len(DEFAULTS),
        used_vectors=used,
        percpu_vectors=percpu,
        wake_result=1 - (r.byte() & 1),
    )
    return state, addresses


# Operation kinds by selector byte, weighted: delivery is the hot path.
_KINDS = (
    ("interrupt_pending", 2), ("set_interrupt", 4), ("try_deliver_interrupt", 4),
    ("run_loop_irq", 4), ("deliver_pending", 2), ("deliver_trap", 4),
    ("load_guest_idt_entry", 3), ("guest_set_stack", 2), ("pin_stack_pages", 1),
    ("copy_traps", 2), ("setup_default_idt_entries", 1), ("check_syscall_vector", 1),
    ("init_interrupts", 1), ("free_interrupts", 1), ("guest_set_clockevent", 2),
    ("advance_clock", 2), ("write_timestamp", 1), ("guest_pa", 2), ("pin_page", 2),
    ("lguest_address_ok", 1), ("poke", 3), ("set_reg", 4), ("halt", 2),
)
KIND_TABLE = tuple(name for name, weight in _KINDS for _ in range(weight))
_REG_TARGETS = ("ss", "esp", "eip", "eflags", "cs")


def decode_op(r: Reader, state: GuestState, addresses: Addresses) -> tuple:
    """One operation from at most 1 + 7 selectors."""
    kind = KIND_TABLE[r.byte() % len(KIND_TABLE)]
    if kind == "set_interrupt":
        return (kind, r.byte() % 32)
    if kind == "try_deliver_interrupt":
        return (kind, r.byte() % 32, r.flag())
    if kind == "deliver_trap":
        return (kind, _vector(r, TRAPS))
    if kind == "load_guest_idt_entry":
        return (kind, _vector(r)) + _gate(r)
    if kind == "guest_set_stack":
        seg = r.biased(SEGMENTS)
        esp = addresses(r)
        sel = r.byte()
        pages = sel % 4 if sel < 180 else (sel % 41 if sel < 250 else (0x100, 1100)[sel & 1])
        return (kind, seg, esp, pages)
    if kind == "guest_set_clockevent":
        return (kind, r.biased(DELTAS))
    if kind == "advance_clock":
        return (kind, r.biased(ADVANCES, raw_mod=2**33))
    if kind in ("guest_pa", "pin_page"):
        return (kind, addresses(r))
    if kind == "lguest_address_ok":
        return (kind, addresses(r), r.biased((4, 0, 8, LD_SIZE, M32, 0x1000)))
    if kind == "poke":
        sel = r.byte()
        if sel < 140 and state.lguest_data is not None:
            at = state.lguest_data + (LD_IRQ_ENABLED, LD_BLOCKED, LD_IRQ_PENDING,
                                      LD_SYSCALL_VEC)[sel % 4]
        elif sel < 170 and state.tables:
            # Rewrite a page-table entry: the guest remaps (or unmaps) a page
            # between two deliveries, which a kept walk must notice.
            at = r.pick(state.tables)
            return (kind, at, (r.byte() % (state.ram_size // PAGE + 2)) * PAGE
                    | r.pick(PTE_FLAGS))
        else:
            at = r.raw() % state.ram_size
        return (kind, at, r.biased(IRQ_ENABLED))
    if kind == "set_reg":
        sel = r.byte()
        name = _REG_TARGETS[sel % 5] if sel < 200 else REG_NAMES[sel % 18]
        if name == "ss":
            value = r.biased(SEGMENTS)
        elif name == "esp":
            value = addresses(r)
        elif name == "eip":
            value = r.biased((state.noirq_start, state.noirq_end,
                              (state.noirq_end - 1) & M32, 0xC0100000))
        elif name == "eflags":
            value = r.biased(EFLAGS)
        else:
            value = r.biased((0x61, 0x73))
        return (kind, name, value)
    if kind == "halt":
        return (kind, r.flag())
    return (kind,)


def decode(selectors: bytes, noise: int = 0) -> tuple[GuestState, tuple[tuple, ...]]:
    """A scenario (state, operations) from SCENARIO_BYTES selector bytes and
    a noise seed."""
    r = Reader(selectors[:STATE_BYTES], noise)
    state, addresses = decode_state(r)
    count = 1 + (selectors[STATE_BYTES] if len(selectors) > STATE_BYTES else 0) % MAX_OPS
    ops = []
    base = STATE_BYTES + 1
    for k in range(count):
        r.data = selectors[base + k * OP_BYTES: base + (k + 1) * OP_BYTES]
        r.pos = 0
        ops.append(decode_op(r, state, addresses))
    return state, tuple(ops)


selector_bytes = st.binary(min_size=SCENARIO_BYTES, max_size=SCENARIO_BYTES)
noise_seeds = st.integers(0, 2**64 - 1)


def scenarios():
    """The strategy: (GuestState, ops) decoded from selectors and noise."""
    return st.builds(decode, selector_bytes, noise_seeds)
