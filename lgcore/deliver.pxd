# SPDX-License-Identifier: GPL-2.0-only
# H:205-H:220 at the C level: virtual interrupts and reflected traps.
from libc.stdint cimport uint32_t
from lgcore.abi cimport lg_cpu_t


# Seven traps push an error code: double fault, invalid TSS, segment not
# present, stack fault, general protection, page fault, alignment check.
cdef inline bint lg_has_err(unsigned int trap) noexcept nogil:
    return trap == 8 or (trap >= 10 and trap <= 14) or trap == 17

cdef void lg_push_guest_stack(lg_cpu_t *cpu, uint32_t *gstack, uint32_t val) noexcept nogil
cdef void lg_set_guest_interrupt(lg_cpu_t *cpu, uint32_t lo, uint32_t hi,
                                 bint has_err) noexcept nogil
cdef unsigned int lg_interrupt_pending(lg_cpu_t *cpu, bint *more) noexcept nogil
cdef bint lg_try_deliver_interrupt(lg_cpu_t *cpu, unsigned int irq, bint more) noexcept nogil
cdef void lg_set_interrupt(lg_cpu_t *cpu, unsigned int irq) noexcept nogil
cdef int lg_deliver_pending(lg_cpu_t *cpu) noexcept nogil
cdef bint lg_deliver_trap(lg_cpu_t *cpu, unsigned int num) noexcept nogil
