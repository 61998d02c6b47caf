# SPDX-License-Identifier: GPL-2.0-only
# H:205-H:220 at the C level: virtual interrupts and reflected traps.
from libc.stdint cimport uint32_t
from lgcore.abi cimport *
from lgcore.guestmem cimport lg_ld_get


# Seven traps push an error code: double fault, invalid TSS, segment not
# present, stack fault, general protection, page fault, alignment check.
cdef inline bint lg_has_err(unsigned int trap) noexcept nogil:
    return trap == 8 or (trap >= 10 and trap <= 14) or trap == 17

cdef void lg_push_guest_stack(lg_cpu_t *cpu, uint32_t *gstack, uint32_t val) noexcept nogil
cdef void lg_set_guest_interrupt(lg_cpu_t *cpu, uint32_t lo, uint32_t hi,
                                 bint has_err) noexcept nogil
cdef bint lg_try_deliver_interrupt(lg_cpu_t *cpu, unsigned int irq, bint more) noexcept nogil
cdef int lg_deliver_pending(lg_cpu_t *cpu) noexcept nogil
cdef bint lg_deliver_trap(lg_cpu_t *cpu, unsigned int num) noexcept nogil


# H:205
# Virtual interrupts.  The pending word minus the guest's blocked mask gives
# the candidates; the lowest wins.  Before LGUEST_INIT, or when the mask
# cannot be read, nothing is pending and *more is left alone.
#
# `more` is find_next_bit() of the rest taken as a truth value, and that
# index is never 0, so in the seed `more` is always true and irq_pending is
# never cleared.  The hardened profile asks whether another IRQ is pending.
cdef inline unsigned int lg_interrupt_pending(lg_cpu_t *cpu, bint *more) noexcept nogil:
    cdef uint32_t blocked, blk
    cdef unsigned int irq
    if not cpu.lg.has_lguest_data:
        return LG_IRQS
    if lg_ld_get(cpu.lg, LG_LD_BLOCKED, &blocked) != 0:
        return LG_IRQS
    blk = lg_atomic_load32(&cpu.irqs_pending) & ~blocked
    irq = lg_ffs32(blk)
    if cpu.lg.fixes & LG_FIX_MORE:
        more[0] = irq < LG_IRQS - 1 and (blk >> (irq + 1)) != 0
    else:
        more[0] = True
    return irq


# Raise an IRQ for the vCPU: an atomic OR, safe from any thread.  Waking a
# halted vCPU or kicking a running one is policy (lgcore.wake).  The seed
# trusts its callers with the range; the engine refuses an IRQ it has no
# bit for.
cdef inline void lg_set_interrupt(lg_cpu_t *cpu, unsigned int irq) noexcept nogil:
    if irq < LG_IRQS:
        lg_atomic_or32(&cpu.irqs_pending, 1u << irq)
