# SPDX-License-Identifier: GPL-2.0-only
# H:230-H:250 at the C level: vetting the guest's gates, the host's default
# gates, and which traps may go straight to the guest.
from libc.stdint cimport uint32_t
from lgcore.abi cimport *
from lgcore.guestmem cimport lg_kill


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
cdef void lg_default_idt_entry(lg_desc_t *idt, int trap, uint32_t handler,
                               const lg_desc_t *base) noexcept nogil
cdef void lg_setup_default_idt_entries(lg_desc_t *idt, const uint32_t *deflt) noexcept nogil
cdef void lg_copy_traps(const lg_cpu_t *cpu, lg_desc_t *idt,
                        const uint32_t *deflt) noexcept nogil


# H:235
# Vetting one gate.  A gate without its present bit is stored as all-zero.
# Only interrupt and trap gates make sense for a guest: anything else kills
# it, yet the entry is still stored, as lguest does.  We keep the handler
# offset, present bit, DPL and type, force the selector to the guest kernel's
# ring-1 code segment, and clear the S bit and the reserved byte.  The DPL
# stays as the guest gave it: it decides who may reach the gate with INT.
cdef inline void lg_set_trap(lg_cpu_t *cpu, lg_desc_t *trap, unsigned int num,
                      uint32_t lo, uint32_t hi) noexcept nogil:
    cdef int gate_type = lg_idt_type(lo, hi)
    if not lg_idt_present(lo, hi):
        trap.a = 0
        trap.b = 0
        return
    if gate_type != LG_GATE_INTERRUPT and gate_type != LG_GATE_TRAP:
        lg_kill(cpu.lg, LG_KILL_BAD_IDT_TYPE, <uint32_t>gate_type, 0, 0)
    trap.a = (<uint32_t>LG_GUEST_CS << 16) | (lo & 0x0000FFFFu)
    trap.b = hi & LG_GATE_KEEP_MASK


# H:230
# The guest sets a gate with the LOAD_IDT_ENTRY hypercall.  Four vectors are
# never the guest's business (NMI, double fault, the spurious vector 15 and
# the hypercall trap) and are ignored without marking the IDT changed.  Any
# other request marks it changed first, then a vector past the table kills.
cdef inline void lg_load_guest_idt_entry(lg_cpu_t *cpu, unsigned int num,
                                  uint32_t lo, uint32_t hi) noexcept nogil:
    if num == 2 or num == 8 or num == 15 or num == LG_TRAP_ENTRY:
        return
    cpu.changed |= LG_CHANGED_IDT
    if num >= LG_IDT_ENTRIES:
        lg_kill(cpu.lg, LG_KILL_SETTING_IDT_ENTRY, num, 0, 0)
    else:
        lg_set_trap(cpu, &cpu.idt[num], num, lo, hi)
