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


# set_trap and load_guest_idt_entry (H:235, H:230) are inline in idt.pxd, so
# a VMM that cimports them pays no call.


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


# A plain host gate for a handler: the hypercall gate's DPL is patched in by
# the caller.
cdef inline void _host_gate(lg_desc_t *e, uint32_t h) noexcept nogil:
    e.a = (<uint32_t>LG_LGUEST_CS << 16) | (h & 0x0000FFFFu)
    e.b = (h & 0xFFFF0000u) | LG_GATE_DEFAULT_FLAGS


# Every host gate starts as a default one, pointing at its Switcher stub.
# C:070 Four gates per step with no branch inside (the loop is the whole
# cost), and the one gate that differs, the hypercall trap's DPL 1, patched
# afterwards: what lg_default_idt_entry(&idt[i], i, deflt[i], NULL) gives.
cdef void lg_setup_default_idt_entries(lg_desc_t *idt, const uint32_t *deflt) noexcept nogil:
    cdef unsigned int i = 0
    while i < LG_IDT_ENTRIES:
        _host_gate(&idt[i], deflt[i])
        _host_gate(&idt[i + 1], deflt[i + 1])
        _host_gate(&idt[i + 2], deflt[i + 2])
        _host_gate(&idt[i + 3], deflt[i + 3])
        i += 4
    idt[LG_TRAP_ENTRY].b |= <uint32_t>LG_GUEST_PL << 13


# C:060 The vectors lg_direct_trap() can allow are the 32 CPU exceptions
# (minus five) and the syscall vectors, so copy_traps below visits only
# those, one at a time here: the same gates written as the full 256-vector
# scan, in a sixth of the work.
cdef inline void _copy_trap(const lg_cpu_t *cpu, lg_desc_t *idt, const uint32_t *deflt,
                            unsigned int i) noexcept nogil:
    cdef const lg_desc_t *gidt = &cpu.idt[i]
    if lg_idt_type(gidt.a, gidt.b) == LG_GATE_TRAP:
        idt[i] = gidt[0]
    else:
        lg_default_idt_entry(&idt[i], i, deflt[i], gidt)


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
    cdef unsigned int sv = cpu.lg.syscall_vector
    for i in range(LG_FIRST_EXTERNAL_VECTOR):
        if lg_direct_trap(cpu.lg, i):
            _copy_trap(cpu, idt, deflt, i)
    _copy_trap(cpu, idt, deflt, LG_SYSCALL_VECTOR)
    if sv >= LG_FIRST_EXTERNAL_VECTOR and sv < LG_IDT_ENTRIES and sv != LG_SYSCALL_VECTOR:
        _copy_trap(cpu, idt, deflt, sv)
# :*
