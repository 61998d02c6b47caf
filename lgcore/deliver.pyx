# SPDX-License-Identifier: GPL-2.0-only
"""Delivering interrupts and traps into a guest (H:205-H:220): the pending
bitmap, the guest's virtual interrupt flag and no-IRQ window, and the x86
interrupt frame built on the guest's stack in guest RAM.  Typed Cython over
raw pointers taken once when the RAM was attached; every function is
``noexcept nogil``, and a misbehaving guest is killed (first reason sticks),
never raised on."""
from libc.stdint cimport uint8_t, uint32_t, uint64_t
from libc.string cimport memcpy
from lgcore.abi cimport *
from lgcore.guestmem cimport (lg_kill, lg_lgwrite, lg_ld_get, lg_ld_put, lg_access_bound,
                              lg_guest_pa, lg_frame_fits, lg_write_timestamp)
from lgcore.idt cimport lg_idt_address, lg_idt_type, lg_idt_present


# The stack grows down: step the (guest-physical) pointer, then store.  Each
# push passes lguest's address check on its own, so a frame can land in part.
cdef void lg_push_guest_stack(lg_cpu_t *cpu, uint32_t *gstack, uint32_t val) noexcept nogil:
    gstack[0] -= 4
    lg_lgwrite(cpu, gstack[0], val)


# C:080 The common case goes without a check per word: when the page walk
# kills nobody and the whole frame passes lguest's address check, so does
# every push (the check is monotone over a range that does not wrap), so the
# words are stored directly: the same bytes in the same order, with the
# irq_enabled read between the two halves of a user-mode frame as in the
# seed.  Anything else takes the push-by-push path.
cdef inline void _set_guest_interrupt(lg_cpu_t *cpu, uint32_t lo, uint32_t hi,
                                      bint has_err) noexcept nogil:
    cdef lg_guest_t *lg = cpu.lg
    cdef lg_regs_t *regs = &cpu.regs
    cdef uint32_t gstack, origstack, virtstack, eflags, ss, irq_enable, nbytes
    cdef uint32_t r_ss = regs.ss, r_esp = regs.esp, r_cs = regs.cs
    cdef uint32_t r_eip = regs.eip, r_err = regs.errcode
    cdef bint user = (r_ss & 3) != LG_GUEST_PL
    cdef uint64_t bound = lg_access_bound(lg)
    cdef uint8_t *top
    if user:
        virtstack = cpu.esp1
        ss = cpu.ss1
    else:
        virtstack = r_esp
        ss = r_ss
    eflags = regs.eflags
    nbytes = 12 + (8 if user else 0) + (4 if has_err else 0)
    if lg_frame_fits(cpu, virtstack, nbytes, bound, &gstack):
        top = lg.mem + gstack
        if user:
            memcpy(top - 4, &r_ss, 4)
            memcpy(top - 8, &r_esp, 4)
            top -= 8
        if lg_ld_get(lg, LG_LD_IRQ_ENABLED, &irq_enable) == 0 and not (irq_enable & LG_EFLAGS_IF):
            eflags &= ~LG_EFLAGS_IF
        memcpy(top - 4, &eflags, 4)
        memcpy(top - 8, &r_cs, 4)
        memcpy(top - 12, &r_eip, 4)
        if has_err:
            memcpy(top - 16, &r_err, 4)
        regs.esp = virtstack - nbytes
    else:
        gstack = lg_guest_pa(cpu, virtstack)
        origstack = gstack
        if user:
            lg_push_guest_stack(cpu, &gstack, r_ss)
            lg_push_guest_stack(cpu, &gstack, r_esp)
        if lg_ld_get(lg, LG_LD_IRQ_ENABLED, &irq_enable) == 0 and not (irq_enable & LG_EFLAGS_IF):
            eflags &= ~LG_EFLAGS_IF
        lg_push_guest_stack(cpu, &gstack, eflags)
        lg_push_guest_stack(cpu, &gstack, r_cs)
        lg_push_guest_stack(cpu, &gstack, r_eip)
        if has_err:
            lg_push_guest_stack(cpu, &gstack, r_err)
        regs.esp = virtstack + (gstack - origstack)

    regs.ss = ss
    regs.cs = LG_GUEST_CS
    regs.eip = lg_idt_address(lo, hi)
    # C:020 hardened profile: the later lguest also clears single-step,
    # nested-task, resume and VM86 for the handler, as the CPU does.
    if lg.fixes & LG_FIX_EFLAGS:
        regs.eflags &= ~(LG_EFLAGS_TF | LG_EFLAGS_NT | LG_EFLAGS_RF | LG_EFLAGS_VM)

    if lg_idt_type(lo, hi) == LG_GATE_INTERRUPT:
        if lg_ld_put(lg, LG_LD_IRQ_ENABLED, 0) != 0:
            lg_kill(lg, LG_KILL_DISABLING_INTERRUPTS, 0, 0, 0)


# H:210
# Building the frame the CPU would build, so the guest's ordinary `iret`
# undoes it.  Interrupts and traps differ only in the optional error code.
#
# Whether the guest was in its kernel is read from the RPL of the stack
# segment.  From userspace the frame goes on the kernel stack the guest named
# with SET_STACK, and starts with the old ss:esp so `iret` can return across
# privilege levels.  The stack address is translated once and then only
# decremented, so a frame crossing a page boundary continues in the
# physically preceding page (guest kernel stacks are contiguous).
#
# The guest never really runs with IF clear, so the eflags we push carry its
# virtual IF from lguest_data.irq_enabled instead; an unreadable field leaves
# IF set.  The new esp is the virtual stack moved by however far the physical
# pointer went, in 32-bit arithmetic.  An interrupt gate then disables the
# guest's virtual interrupts, after the pushes.
cdef void lg_set_guest_interrupt(lg_cpu_t *cpu, uint32_t lo, uint32_t hi,
                                 bint has_err) noexcept nogil:
    _set_guest_interrupt(cpu, lo, hi, has_err)


# Virtual interrupts (H:205): lg_interrupt_pending() and lg_set_interrupt()
# are inline in deliver.pxd, so a VMM's run loop pays no call for them.
#
# Divert the guest into the handler of one IRQ.  Nothing happens while the
# guest sits in its no-IRQ window (the instructions of its `iret` path).  A
# halted guest always takes the IRQ and gets its virtual IF back; a running
# one with virtual interrupts off only learns, through irq_pending, that one
# waits.  An IRQ whose gate is absent stays pending.  The timestamp is
# refreshed on every attempt that got this far.  Returns whether a frame was
# built (the seed returns nothing; the fused step below uses it).
cdef inline bint _try_deliver_interrupt(lg_cpu_t *cpu, unsigned int irq, bint more) noexcept nogil:
    cdef lg_guest_t *lg = cpu.lg
    cdef lg_desc_t *idt
    cdef uint32_t irq_enabled
    cdef bint delivered = False
    if irq >= LG_IRQS:
        return False
    if cpu.regs.eip >= lg.noirq_start and cpu.regs.eip < lg.noirq_end:
        return False
    if cpu.halted:
        if lg_ld_put(lg, LG_LD_IRQ_ENABLED, LG_EFLAGS_IF) != 0:
            lg_kill(lg, LG_KILL_REENABLING_INTERRUPTS, 0, 0, 0)
        cpu.halted = 0
    else:
        if lg_ld_get(lg, LG_LD_IRQ_ENABLED, &irq_enabled) != 0:
            irq_enabled = 0
        if irq_enabled == 0:
            lg_ld_put(lg, LG_LD_IRQ_PENDING, LG_EFLAGS_IF)
            return False

    idt = &cpu.idt[LG_FIRST_EXTERNAL_VECTOR + irq]
    if lg_idt_present(idt.a, idt.b):
        lg_atomic_andnot32(&cpu.irqs_pending, 1u << irq)
        _set_guest_interrupt(cpu, idt.a, idt.b, False)
        delivered = True

    lg_write_timestamp(cpu)
    if not more:
        lg_ld_put(lg, LG_LD_IRQ_PENDING, 0)
    return delivered


cdef bint lg_try_deliver_interrupt(lg_cpu_t *cpu, unsigned int irq, bint more) noexcept nogil:
    return _try_deliver_interrupt(cpu, irq, more)
# :*


# C:030 One run-loop step 4 in one call.  The common step is
# lg_deliver_pending_fast(), inline in deliver.pxd; this is the rest.
cdef int lg_deliver_pending(lg_cpu_t *cpu) noexcept nogil:
    cdef int irq = lg_deliver_pending_fast(cpu)
    if irq == LG_DELIVER_GENERAL:
        return lg_deliver_pending_general(cpu)
    return irq


# The general path, from the start (the fast path wrote nothing of the
# guest's): find the first unblocked pending IRQ and try it.  A vCPU without
# derived fields (zeroed by its maker, or made before LGUEST_INIT) gets them
# here, so that the next call can take the fast path.
cdef int lg_deliver_pending_general(lg_cpu_t *cpu) noexcept nogil:
    cdef bint more
    cdef unsigned int irq
    if cpu.fast_ld == NULL:
        lg_cpu_sync(cpu)
    irq = lg_interrupt_pending(cpu, &more)
    if irq >= LG_IRQS:
        return -1
    if _try_deliver_interrupt(cpu, irq, more):
        return <int>irq
    return -1


# H:220
# Reflecting a trap uses the same frame builder, with the error code for the
# traps that have one.  A number past the table (the Switcher's own-fault
# sentinel 256) or a gate the guest never set cannot be delivered; the
# caller kills the guest then.  Type and DPL were vetted by set_trap.
cdef bint lg_deliver_trap(lg_cpu_t *cpu, unsigned int num) noexcept nogil:
    if num >= LG_IDT_ENTRIES:
        return False
    if not lg_idt_present(cpu.idt[num].a, cpu.idt[num].b):
        return False
    _set_guest_interrupt(cpu, cpu.idt[num].a, cpu.idt[num].b, lg_has_err(num))
    return True
# :*
