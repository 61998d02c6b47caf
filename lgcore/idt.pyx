# SPDX-License-Identifier: GPL-2.0-only
"""The guest's interrupt descriptor table: how lguest vets the gates a guest
asks for (H:230, H:235), which traps it lets the CPU deliver straight into the
guest (H:250), and the host gates that bring every other trap back to the host
(H:240).  Typed Cython over the C state in ``include/lgcore/lgcore.h``; every
function is ``noexcept nogil`` and never touches a Python object."""
from libc.stdint cimport uint32_t
from lgcore.abi cimport *
from lgcore.guestmem cimport lg_ld_get, lg_kill


# Linux's syscall trap is 0x80; a guest may also reserve another one (Plan 9
# uses 0x40) through the syscall_vector parameter, held per guest here.
cdef bint lg_could_be_syscall(const lg_guest_t *lg, unsigned int num) noexcept nogil:
    return num == LG_SYSCALL_VECTOR or num == lg.syscall_vector


# At LGUEST_INIT the guest's lguest_data.syscall_vec must name a vector the
# host could let through; an unreadable field counts as a refusal.
cdef bint lg_check_syscall_vector(const lg_guest_t *lg) noexcept nogil:
    cdef uint32_t vector
    if lg_ld_get(lg, LG_LD_SYSCALL_VEC, &vector) != 0:
        return False
    return lg_could_be_syscall(lg, vector)


# H:250
# Bouncing each trap through the host and back costs a round trip, so lguest
# lets the CPU deliver most traps straight into the guest through a trap
# gate.  Not all of them: external vectors belong to the host (a syscall
# vector is the exception), and the host must see page faults (to record
# cr2), general protection faults (port I/O), device-not-available (lazy FPU),
# invalid opcode (this era patches the guest's vmcall into int $0x1f), and
# the hypercall vector itself must always come back to us.
cdef bint lg_direct_trap(const lg_guest_t *lg, unsigned int num) noexcept nogil:
    if num >= LG_FIRST_EXTERNAL_VECTOR and not lg_could_be_syscall(lg, num):
        return False
    return (num != 14 and num != 13 and num != 7 and num != 6
            and num != LG_TRAP_ENTRY)
# :*


# H:235
# Vetting one gate.  A gate without its present bit is stored as all-zero.
# Only interrupt and trap gates make sense for a guest: anything else kills
# it, yet the entry is still stored, as lguest does.  We keep the handler
# offset, present bit, DPL and type, force the selector to the guest kernel's
# ring-1 code segment, and clear the S bit and the reserved byte.  The DPL
# stays as the guest gave it: it decides who may reach the gate with INT.
cdef void lg_set_trap(lg_cpu_t *cpu, lg_desc_t *trap, unsigned int num,
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
cdef void lg_load_guest_idt_entry(lg_cpu_t *cpu, unsigned int num,
                                  uint32_t lo, uint32_t hi) noexcept nogil:
    if num == 2 or num == 8 or num == 15 or num == LG_TRAP_ENTRY:
        return
    cpu.changed |= LG_CHANGED_IDT
    if num >= LG_IDT_ENTRIES:
        lg_kill(cpu.lg, LG_KILL_SETTING_IDT_ENTRY, num, 0, 0)
    else:
        lg_set_trap(cpu, &cpu.idt[num], num, lo, hi)


# A host gate that returns to the host: a present ring-0 interrupt gate on
# the Switcher's code segment.  The hypercall gate gets DPL 1 so the ring-1
# guest kernel can `int $0x1f` (guest userspace cannot).  Given the guest's
# own gate, the DPL is copied from it, so a DPL-3 `int3` from guest
# userspace still reaches the host and can be reflected.
cdef void lg_default_idt_entry(lg_desc_t *idt, int trap, uint32_t handler,
                               const lg_desc_t *base) noexcept nogil:
    cdef uint32_t flags = LG_GATE_DEFAULT_FLAGS
    if trap == LG_TRAP_ENTRY:
        flags |= <uint32_t>LG_GUEST_PL << 13
    elif base != NULL:
        flags |= base.b & LG_GATE_DPL_MASK
    idt.a = (<uint32_t>LG_LGUEST_CS << 16) | (handler & 0x0000FFFFu)
    idt.b = (handler & 0xFFFF0000u) | flags


# Every host gate starts as a default one, pointing at its Switcher stub.
cdef void lg_setup_default_idt_entries(lg_desc_t *idt, const uint32_t *deflt) noexcept nogil:
    cdef unsigned int i
    for i in range(LG_IDT_ENTRIES):
        lg_default_idt_entry(&idt[i], i, deflt[i], NULL)


# H:240
# Before the guest runs, its vetted gates go into the IDT the CPU will use.
# Only vectors that may go direct are touched.  A trap gate is copied whole
# (the CPU will enter the guest by itself); anything else becomes a default
# gate that keeps the guest's DPL.  Only the type is tested here: a type-0xF
# entry without its present bit would be copied, which set_trap never
# produces.
cdef void lg_copy_traps(const lg_cpu_t *cpu, lg_desc_t *idt,
                        const uint32_t *deflt) noexcept nogil:
    cdef unsigned int i
    cdef const lg_desc_t *gidt
    for i in range(LG_IDT_ENTRIES):
        if not lg_direct_trap(cpu.lg, i):
            continue
        gidt = &cpu.idt[i]
        if lg_idt_type(gidt.a, gidt.b) == LG_GATE_TRAP:
            idt[i] = gidt[0]
        else:
            lg_default_idt_entry(&idt[i], i, deflt[i], gidt)
# :*
