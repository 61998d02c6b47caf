# SPDX-License-Identifier: GPL-2.0-only
"""A small simulated guest for the stress suites: RAM laid out as an lguest
guest would lay it out, one interrupt gate per IRQ line whose handler
address names the line, and a "guest handler" that checks the frame lgcore
built and undoes it the way the guest's ``iret`` would.

Layout (paging off, so guest-virtual == guest-physical):

    0x1000              struct lguest_data (irq_enabled, blocked, ...)
    0x10000 + 0x2000*i  ring-1 kernel stack top of vCPU i (frames from ring 3)
    0x08000 + 0x0400*i  ring-1 stack of vCPU i while in the guest kernel
    HANDLER_BASE+16*L   handler of IRQ line L (vector 32+L), never executed
    NOIRQ_START..END    the guest's no-IRQ window (its iret path)
"""
from __future__ import annotations

import struct

import lgcore
from lgcore.constants import (
    EFLAGS_IF, FIRST_EXTERNAL_VECTOR, GUEST_CS, GUEST_DS, IRQS, LD_BLOCKED,
    LD_HCALL_STATUS, LD_IRQ_ENABLED, LD_IRQ_PENDING, LD_NOIRQ_END,
    LD_NOIRQ_START, USER_CS, USER_DS, HCALL_RING_SIZE,
)

RAM_SIZE = 1 << 20
LGUEST_DATA = 0x1000
HANDLER_BASE = 0xC1000000
HANDLER_END = HANDLER_BASE + 16 * IRQS
KERNEL_EIP = 0xC0100000          # where the guest kernel "runs"
USER_EIP = 0x08048000
USER_ESP = 0xBFFFF000
NOIRQ_START = 0xC0200000
NOIRQ_END = 0xC0200010

_U32 = struct.Struct("<I")
_FRAME3 = struct.Struct("<3I")   # eip, cs, eflags (kernel-mode frame)
_FRAME5 = struct.Struct("<5I")   # eip, cs, eflags, esp, ss (from ring 3)


def kstack_top(i: int) -> int:
    return 0x10000 + 0x2000 * (i + 1)


def kesp(i: int) -> int:
    return 0x80000 + 0x400 * (i + 1)


def gate(line: int) -> tuple[int, int]:
    """An interrupt gate (present, DPL 1 is not needed: DPL 0) for vector
    32+line whose handler address encodes the line."""
    addr = HANDLER_BASE + 16 * line
    lo = (0x0060 << 16) | (addr & 0xFFFF)
    hi = (addr & 0xFFFF0000) | 0x8E00
    return lo, hi


def make_guest(ncpus: int = 1, *, clock=None, ram=None, profile: str = "seed"):
    """A guest after LGUEST_INIT with a gate for every IRQ line, interrupts
    enabled, nothing blocked, the async hypercall ring empty."""
    if ram is None:
        ram = bytearray(RAM_SIZE)
    guest = lgcore.Guest(ram, clock=clock, profile=profile)
    mem = guest.ram
    guest.lguest_data = LGUEST_DATA
    _U32.pack_into(mem, LGUEST_DATA + LD_IRQ_ENABLED, EFLAGS_IF)
    _U32.pack_into(mem, LGUEST_DATA + LD_BLOCKED, 0)
    _U32.pack_into(mem, LGUEST_DATA + LD_NOIRQ_START, NOIRQ_START)
    _U32.pack_into(mem, LGUEST_DATA + LD_NOIRQ_END, NOIRQ_END)
    mem[LGUEST_DATA + LD_HCALL_STATUS:LGUEST_DATA + LD_HCALL_STATUS + HCALL_RING_SIZE] = \
        b"\xff" * HCALL_RING_SIZE
    guest.noirq_start, guest.noirq_end = NOIRQ_START, NOIRQ_END
    for i in range(ncpus):
        cpu = guest.add_vcpu()
        lgcore.guest_set_stack(cpu, GUEST_DS, kstack_top(i), 1)
        for line in range(IRQS):
            cpu.load_guest_idt_entry(FIRST_EXTERNAL_VECTOR + line, *gate(line))
        to_kernel(cpu)
    del mem
    assert guest.dead is None, guest.dead
    return guest


def to_kernel(cpu) -> None:
    cpu.cs, cpu.ss, cpu.eip, cpu.esp, cpu.eflags = GUEST_CS, GUEST_DS, KERNEL_EIP, kesp(cpu.index), 0x202


def to_user(cpu) -> None:
    cpu.cs, cpu.ss, cpu.eip, cpu.esp, cpu.eflags = USER_CS, USER_DS, USER_EIP, USER_ESP, 0x202


def ld_get(mem, off: int) -> int:
    return _U32.unpack_from(mem, LGUEST_DATA + off)[0]


def ld_put(mem, off: int, val: int) -> None:
    _U32.pack_into(mem, LGUEST_DATA + off, val)


class FrameError(AssertionError):
    pass


def handle_and_iret(cpu, mem, line: int, *, from_user: bool, virt_if: int | None) -> None:
    """The guest's handler for ``line``: check the frame lgcore just built
    (handler address, saved cs:eip, eflags carrying the virtual IF the guest
    had, ss:esp from ring 3) and return from it as ``iret`` would, restoring
    the virtual IF from the saved eflags.  ``virt_if`` None skips the IF
    check (vCPUs sharing one lguest_data race on it, as the guest's own
    business)."""
    if cpu.eip != HANDLER_BASE + 16 * line or cpu.cs != GUEST_CS:
        raise FrameError(f"vCPU {cpu.index}: IRQ {line} entered {cpu.cs:#x}:{cpu.eip:#x}")
    esp = cpu.esp
    if from_user:
        eip, cs, eflags, uesp, uss = _FRAME5.unpack_from(mem, esp)
        if esp != kstack_top(cpu.index) - 20 or cpu.ss != GUEST_DS:
            raise FrameError(f"vCPU {cpu.index}: ring-3 frame at {cpu.ss:#x}:{esp:#x}")
        if (eip, cs, uesp, uss) != (USER_EIP, USER_CS, USER_ESP, USER_DS):
            raise FrameError(f"vCPU {cpu.index}: ring-3 frame {eip:#x} {cs:#x} {uesp:#x} {uss:#x}")
    else:
        eip, cs, eflags = _FRAME3.unpack_from(mem, esp)
        if esp != kesp(cpu.index) - 12 or cpu.ss != GUEST_DS:
            raise FrameError(f"vCPU {cpu.index}: ring-1 frame at {cpu.ss:#x}:{esp:#x}")
        if (eip, cs) != (KERNEL_EIP, GUEST_CS):
            raise FrameError(f"vCPU {cpu.index}: ring-1 frame {eip:#x} {cs:#x}")
    if virt_if is not None and (eflags & EFLAGS_IF) != virt_if:
        raise FrameError(f"vCPU {cpu.index}: saved eflags {eflags:#x}, virtual IF was {virt_if:#x}")
    # iret: back where the guest was, virtual IF from the saved eflags.
    if from_user:
        to_user(cpu)
    else:
        to_kernel(cpu)
    ld_put(mem, LD_IRQ_ENABLED, eflags & EFLAGS_IF)


def line_of(cpu) -> int | None:
    """The IRQ line whose handler the vCPU sits at, or None."""
    eip = cpu.eip
    if HANDLER_BASE <= eip < HANDLER_END and cpu.cs == GUEST_CS:
        return (eip - HANDLER_BASE) // 16
    return None


__all__ = [
    "RAM_SIZE", "LGUEST_DATA", "HANDLER_BASE", "KERNEL_EIP", "USER_EIP", "USER_ESP",
    "NOIRQ_START", "NOIRQ_END", "make_guest", "to_kernel", "to_user", "ld_get",
    "ld_put", "handle_and_iret", "line_of", "FrameError", "gate", "kstack_top",
    "kesp", "LD_BLOCKED", "LD_IRQ_ENABLED", "LD_IRQ_PENDING", "EFLAGS_IF", "IRQS",
]
