# SPDX-License-Identifier: GPL-2.0-only
# H:230-H:250 at the C level: vetting the guest's gates, the host's default
# gates, and which traps may go straight to the guest.
from libc.stdint cimport uint32_t
from lgcore.abi cimport lg_cpu_t, lg_guest_t, lg_desc_t


# The handler address is split across the two words of a gate.
cdef inline uint32_t lg_idt_address(uint32_t lo, uint32_t hi) noexcept nogil:
    return (lo & 0x0000FFFFu) | (hi & 0xFFFF0000u)

# Four bits of gate type; only 0xE (interrupt) and 0xF (trap) are accepted.
cdef inline int lg_idt_type(uint32_t lo, uint32_t hi) noexcept nogil:
    return (hi >> 8) & 0xF

# A gate is usable only with its present bit.
cdef inline bint lg_idt_present(uint32_t lo, uint32_t hi) noexcept nogil:
    return (hi & 0x8000u) != 0

cdef bint lg_could_be_syscall(const lg_guest_t *lg, unsigned int num) noexcept nogil
cdef bint lg_check_syscall_vector(const lg_guest_t *lg) noexcept nogil
cdef bint lg_direct_trap(const lg_guest_t *lg, unsigned int num) noexcept nogil
cdef void lg_set_trap(lg_cpu_t *cpu, lg_desc_t *trap, unsigned int num,
                      uint32_t lo, uint32_t hi) noexcept nogil
cdef void lg_load_guest_idt_entry(lg_cpu_t *cpu, unsigned int num,
                                  uint32_t lo, uint32_t hi) noexcept nogil
cdef void lg_default_idt_entry(lg_desc_t *idt, int trap, uint32_t handler,
                               const lg_desc_t *base) noexcept nogil
cdef void lg_setup_default_idt_entries(lg_desc_t *idt, const uint32_t *deflt) noexcept nogil
cdef void lg_copy_traps(const lg_cpu_t *cpu, lg_desc_t *idt,
                        const uint32_t *deflt) noexcept nogil
