# SPDX-License-Identifier: GPL-2.0-only
"""Small tools the core tests share: guest RAM with guard bytes around it,
32-bit reads and writes, guest page tables, and a ready-made guest."""
from __future__ import annotations

import struct

import lgcore
from lgcore.constants import GUEST_DS, LD_IRQ_ENABLED, LD_SIZE

U32 = struct.Struct("<I")
PAGE = 4096
CANARY = 0xA5
GUARD = 4096

# The address of lguest_data in most tests (a page of its own).
LD = 0x1000


def rd(ram, addr: int) -> int:
    return U32.unpack_from(ram, addr)[0]


def wr(ram, addr: int, value: int) -> None:
    U32.pack_into(ram, addr, value & 0xFFFFFFFF)


def words(*values: int) -> bytes:
    """Little-endian u32s, lowest address first."""
    return b"".join(U32.pack(v) for v in values)


class GuardedRAM:
    """``size`` bytes of guest RAM inside a larger bytearray whose first and
    last GUARD bytes are canaries: the engine gets only the middle, so any
    access outside the guest's buffer shows up as a changed canary."""

    def __init__(self, size: int):
        self.size = size
        self.backing = bytearray([CANARY]) * (GUARD + size + GUARD)
        self.view = memoryview(self.backing)[GUARD:GUARD + size]
        self.view[:] = bytes(size)

    def intact(self) -> bool:
        guard = bytes([CANARY]) * GUARD
        return self.backing[:GUARD] == guard and self.backing[GUARD + self.size:] == guard

    def snapshot(self) -> bytes:
        return bytes(self.view)


class PageTables:
    """Builds i386 2-level (non-PAE) page tables in guest RAM: the page
    directory at ``pgdir``, page tables taken from ``next_free`` upwards."""

    def __init__(self, ram, pgdir: int, next_free: int):
        self.ram = ram
        self.pgdir = pgdir
        self.next_free = next_free

    def map(self, vaddr: int, paddr: int, flags: int = 0x7) -> None:
        pde_at = self.pgdir + (vaddr >> 22) * 4
        pde = rd(self.ram, pde_at)
        if not pde & 1:
            pde = self.next_free | 0x7
            self.next_free += PAGE
            wr(self.ram, pde_at, pde)
        wr(self.ram, (pde & 0xFFFFF000) + ((vaddr >> 12) & 0x3FF) * 4, (paddr & 0xFFFFF000) | flags)


def make_guest(size: int = 64 * 1024, *, ram=None, profile: str = "seed", ld: int | None = LD,
               irq_enabled: int = 0x200, clock=None, **kw):
    """A guest with one vCPU (ring-1 registers, paging off).  With ``ld`` set
    the guest has done LGUEST_INIT there and has virtual IF on."""
    if ram is None:
        ram = bytearray(size)
    if clock is None:
        clock = lgcore.VirtualClock(0)
    g = lgcore.Guest(ram, profile=profile, clock=clock, **kw)
    cpu = g.add_vcpu()
    if ld is not None:
        assert ld + LD_SIZE <= g.mem_len
        g.lguest_data = ld
        wr(g.ram, ld + LD_IRQ_ENABLED, irq_enabled)
    assert cpu.ss == GUEST_DS
    return g, cpu


# Gates as a Linux guest sends them (selector __KERNEL_CS = 0x60).
def int_gate(handler: int, dpl: int = 0) -> tuple[int, int]:
    return (0x00600000 | (handler & 0xFFFF), (handler & 0xFFFF0000) | 0x8E00 | (dpl << 13))


def trap_gate(handler: int, dpl: int = 0) -> tuple[int, int]:
    return (0x00600000 | (handler & 0xFFFF), (handler & 0xFFFF0000) | 0x8F00 | (dpl << 13))
