# SPDX-License-Identifier: GPL-2.0-only
# cython: language_level=3
# An outside Cython extension, as a Cython VMM would write one: it cimports
# lgcore's public .pxd API and drives the engine on the C state behind a
# VCpu, without the GIL.  tests/packaging/test_cimport.py compiles it.
from libc.stdint cimport uint32_t
from lgcore.abi cimport (lg_cpu_t, lg_desc_t, lg_regs_t, LG_IRQS,
                         LG_LD_SIZE, LG_REGS_SIZE, LG_FIRST_EXTERNAL_VECTOR,
                         LG_CHANGED_IDT, lg_atomic_load32)
from lgcore.vcpu cimport VCpu
from lgcore.idt cimport lg_load_guest_idt_entry, lg_idt_address, lg_direct_trap
from lgcore.deliver cimport (lg_set_interrupt, lg_interrupt_pending,
                             lg_try_deliver_interrupt, lg_deliver_pending,
                             lg_deliver_trap)
from lgcore.guestmem cimport lg_lgread


def layout():
    """sizeof of the shared structs as this module was compiled."""
    return sizeof(lg_regs_t), sizeof(lg_desc_t), LG_LD_SIZE, LG_REGS_SIZE


def gate_and_irq(VCpu cpu, unsigned int irq, uint32_t lo, uint32_t hi):
    """Load the gate for ``irq`` and raise it, then deliver whatever is
    pending, all inside one nogil block.  Returns (delivered irq or -1,
    pending word after, changed, handler as decoded)."""
    cdef lg_cpu_t *c = &cpu.c
    cdef int got
    cdef uint32_t pending, handler
    with nogil:
        lg_load_guest_idt_entry(c, LG_FIRST_EXTERNAL_VECTOR + irq, lo, hi)
        lg_set_interrupt(c, irq)
        got = lg_deliver_pending(c)
        pending = lg_atomic_load32(&c.irqs_pending)
        handler = lg_idt_address(c.idt[LG_FIRST_EXTERNAL_VECTOR + irq].a,
                                 c.idt[LG_FIRST_EXTERNAL_VECTOR + irq].b)
    return got, pending, c.changed & LG_CHANGED_IDT, handler


def pending_then_try(VCpu cpu, unsigned int irq):
    """The unfused pair, nogil: interrupt_pending, then try_deliver."""
    cdef lg_cpu_t *c = &cpu.c
    cdef bint more = False
    cdef unsigned int first
    with nogil:
        lg_set_interrupt(c, irq)
        first = lg_interrupt_pending(c, &more)
        if first < LG_IRQS:
            lg_try_deliver_interrupt(c, first, more)
    return first, more


def trap(VCpu cpu, unsigned int num):
    cdef lg_cpu_t *c = &cpu.c
    cdef bint ok, direct
    with nogil:
        ok = lg_deliver_trap(c, num)
        direct = lg_direct_trap(c.lg, num)
    return ok, direct


def read_u32(VCpu cpu, uint32_t addr):
    cdef uint32_t v
    with nogil:
        v = lg_lgread(&cpu.c, addr)
    return v
