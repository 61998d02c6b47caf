# SPDX-License-Identifier: GPL-2.0-only
# H:205-H:220 at the C level: virtual interrupts and reflected traps.
from libc.stdint cimport uint8_t, uint32_t, uint64_t
from libc.string cimport memcpy
from lgcore.abi cimport *
from lgcore.guestmem cimport lg_ld_get, lg_stack_fits, lg_timespec32
from lgcore.idt cimport lg_idt_address, lg_idt_type, lg_idt_present

# lg_deliver_pending_fast() could not decide: take lg_deliver_pending_general().
cdef enum:
    LG_DELIVER_GENERAL = -2


# Seven traps push an error code: double fault, invalid TSS, segment not
# present, stack fault, general protection, page fault, alignment check.
cdef inline bint lg_has_err(unsigned int trap) noexcept nogil:
    return trap == 8 or (trap >= 10 and trap <= 14) or trap == 17

cdef void lg_push_guest_stack(lg_cpu_t *cpu, uint32_t *gstack, uint32_t val) noexcept nogil
cdef void lg_set_guest_interrupt(lg_cpu_t *cpu, uint32_t lo, uint32_t hi,
                                 bint has_err) noexcept nogil
cdef bint lg_try_deliver_interrupt(lg_cpu_t *cpu, unsigned int irq, bint more) noexcept nogil
cdef int lg_deliver_pending(lg_cpu_t *cpu) noexcept nogil
cdef int lg_deliver_pending_general(lg_cpu_t *cpu) noexcept nogil
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
    if lg_ld_get(cpu.lg, LG_LD_BLOCKED, &blocked) != 0:      # also before LGUEST_INIT
        return LG_IRQS
    blk = lg_atomic_peek32(&cpu.irqs_pending) & ~blocked
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


# C:030 Run-loop step 4 in one call, the common case: find the first
# deliverable IRQ and build its frame in one pass.  Returns the IRQ, -1 when
# no frame is due, or LG_DELIVER_GENERAL when lg_deliver_pending_general()
# must decide.  Inline so that a VMM's loop (and VCpu.deliver_pending) pays
# no call for it.
#
# When lguest_data lies wholly in RAM every get_user/put_user on it
# succeeds, so its fields are read and written directly.  When, besides,
# the vCPU is not halted, its virtual interrupts are on, the gate is
# present and the whole frame passes the address check, every test of the
# general path has an outcome known before anything is written; the same
# writes are then made in the same order (the pending bit, the frame, the
# registers, irq_enabled for an interrupt gate, the timestamp,
# irq_pending).  Anything else returns LG_DELIVER_GENERAL with nothing of
# the guest's written (at most the vCPU's derived walk), so the general path
# starts from scratch.  The guest values come from the vCPU's derived
# fields (lg_cpu_sync()): a vCPU without them, before LGUEST_INIT or of a
# closed guest, always goes the general way.
cdef inline int lg_deliver_pending_fast(lg_cpu_t *cpu) noexcept nogil:
    cdef lg_guest_t *lg = cpu.lg
    cdef uint8_t *ld = cpu.fast_ld
    cdef uint8_t *top
    cdef lg_desc_t *gate
    cdef uint32_t blk, word, gstack, virtstack, ss, eflags, zero = 0
    cdef uint64_t bound, ts
    cdef unsigned int irq
    cdef bint user
    if ld == NULL:
        return LG_DELIVER_GENERAL
    memcpy(&word, ld + LG_LD_BLOCKED, 4)
    blk = lg_atomic_peek32(&cpu.irqs_pending) & ~word
    if blk == 0:
        return -1
    irq = lg_ffs32(blk)
    if cpu.regs.eip >= lg.noirq_start and cpu.regs.eip < lg.noirq_end:
        return -1
    memcpy(&word, ld + LG_LD_IRQ_ENABLED, 4)
    gate = &cpu.idt[LG_FIRST_EXTERNAL_VECTOR + irq]
    if cpu.halted or word == 0 or not lg_idt_present(gate.a, gate.b):
        return LG_DELIVER_GENERAL
    bound = cpu.fast_bound
    user = (cpu.regs.ss & 3) != LG_GUEST_PL
    # Two calls, so that each sees its frame size as a constant.
    if user:
        virtstack = cpu.esp1
        if not lg_stack_fits(cpu, cpu.fast_mem, virtstack, 20, bound, &gstack):
            return LG_DELIVER_GENERAL
    else:
        virtstack = cpu.regs.esp
        if not lg_stack_fits(cpu, cpu.fast_mem, virtstack, 12, bound, &gstack):
            return LG_DELIVER_GENERAL

    # Every outcome is known: write.  The registers are read after the
    # atomic, which no load crosses, so they are not held across the walk.
    lg_atomic_andnot32(&cpu.irqs_pending, 1u << irq)
    top = cpu.fast_mem + gstack
    if user:
        memcpy(top - 4, &cpu.regs.ss, 4)
        memcpy(top - 8, &cpu.regs.esp, 4)
        top -= 8
        memcpy(&word, ld + LG_LD_IRQ_ENABLED, 4)    # the pushes may have hit it
        ss = cpu.ss1
        cpu.regs.esp = virtstack - 20
    else:
        ss = cpu.regs.ss
        cpu.regs.esp = virtstack - 12
    eflags = cpu.regs.eflags
    if not (word & LG_EFLAGS_IF):
        eflags &= ~LG_EFLAGS_IF
    memcpy(top - 4, &eflags, 4)
    memcpy(top - 8, &cpu.regs.cs, 4)
    memcpy(top - 12, &cpu.regs.eip, 4)
    cpu.regs.ss = ss
    cpu.regs.cs = LG_GUEST_CS
    cpu.regs.eip = lg_idt_address(gate.a, gate.b)
    if lg.fixes & LG_FIX_EFLAGS:
        cpu.regs.eflags &= ~(LG_EFLAGS_TF | LG_EFLAGS_NT | LG_EFLAGS_RF | LG_EFLAGS_VM)
    if lg_idt_type(gate.a, gate.b) == LG_GATE_INTERRUPT:
        memcpy(ld + LG_LD_IRQ_ENABLED, &zero, 4)
    if cpu.fast_ts != NULL:                          # a virtual clock's image
        ts = <uint64_t>lg_atomic_load64(cpu.fast_ts)
    else:
        ts = lg_timespec32(lg.clock)
    memcpy(ld + LG_LD_TIME, &ts, 8)
    # `more` (see lg_interrupt_pending) is always true in the seed.
    if (lg.fixes & LG_FIX_MORE) and (irq == LG_IRQS - 1 or (blk >> (irq + 1)) == 0):
        memcpy(ld + LG_LD_IRQ_PENDING, &zero, 4)
    return <int>irq
