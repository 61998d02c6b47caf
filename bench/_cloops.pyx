# cython: language_level=3, boundscheck=False, wraparound=False, initializedcheck=False, cdivision=True, binding=False
# SPDX-License-Identifier: GPL-2.0-only
"""C-level benchmark loops over lgcore's nogil engine, the Python call floor,
and callgrind client requests.

This module is what a Cython VMM that cimports lgcore gets: it is compiled by
bench/_build.py (not setup.py) against lgcore's installed .pxd files and
header, so every engine function below is reached the way an outside module
reaches it, through the function pointer Cython imports from lgcore's
``__pyx_capi__`` (the ``inline`` helpers of the .pxd files are inlined).

Each ``c_*`` loop mirrors, statement for statement, the matching
``kshim_bench_*`` loop in include/kshim/kshim_glue.c that drives the C
original, including the per-iteration restore of the registers, ``halted``
and lguest_data.irq_enabled.
"""
from libc.stdint cimport uint8_t, uint32_t, uint64_t, uintptr_t
from libc.string cimport memcpy
from cpython.mem cimport PyMem_Malloc, PyMem_Free

from lgcore.abi cimport *
from lgcore.vcpu cimport VCpu, Guest
from lgcore.guestmem cimport lg_ld_get
from lgcore.deliver cimport (lg_interrupt_pending, lg_try_deliver_interrupt,
                             lg_set_interrupt, lg_deliver_pending, lg_deliver_trap)
from lgcore.idt cimport (lg_load_guest_idt_entry, lg_copy_traps,
                         lg_setup_default_idt_entries)

cdef extern from *:
    """
    /* Keep a value alive without costing an instruction (as kshim_glue.c). */
    #define LGB_KEEP(v) __asm__ volatile("" : : "r"(v))
    /* Optimisation barriers (no instructions of their own), so that engine
     * code inlined into these loops from the .pxd files is still executed
     * once per iteration: LGB_ESCAPE makes an object's address visible to
     * the compiler's "unknown code", LGB_CLOBBER says that unknown code
     * read and wrote all such memory.  The loop arguments live in an escaped
     * struct and are re-read after every clobber, which costs what moving
     * them into argument registers costs anyway. */
    #define LGB_ESCAPE(p) __asm__ volatile("" : : "g"(p) : "memory")
    #define LGB_CLOBBER() __asm__ volatile("" : : : "memory")

    #if defined(__has_include)
    #  if __has_include(<valgrind/callgrind.h>)
    #    include <valgrind/callgrind.h>
    #    define LGB_HAVE_CALLGRIND 1
    #  endif
    #endif
    #ifdef LGB_HAVE_CALLGRIND
    static void lgb_cg_zero(void) { CALLGRIND_ZERO_STATS; }
    static void lgb_cg_dump(const char *label) { CALLGRIND_DUMP_STATS_AT(label); }
    static int lgb_on_valgrind(void) { return RUNNING_ON_VALGRIND ? 1 : 0; }
    #else
    #  define LGB_HAVE_CALLGRIND 0
    static void lgb_cg_zero(void) { }
    static void lgb_cg_dump(const char *label) { (void)label; }
    static int lgb_on_valgrind(void) { return 0; }
    #endif
    """
    void LGB_KEEP(unsigned int v) nogil
    void LGB_ESCAPE(void *p) nogil
    void LGB_CLOBBER() nogil
    int LGB_HAVE_CALLGRIND
    void lgb_cg_zero() nogil
    void lgb_cg_dump(const char *label) nogil
    int lgb_on_valgrind() nogil


HAVE_CALLGRIND = bool(LGB_HAVE_CALLGRIND)


# ---- callgrind client requests (no-ops outside valgrind) ----

def cg_zero():
    """Zero callgrind's counters."""
    lgb_cg_zero()


def cg_dump(label):
    """Dump callgrind's counters since the last zero/dump under ``label``."""
    cdef bytes b = label.encode()
    lgb_cg_dump(b)


def on_valgrind():
    return bool(lgb_on_valgrind())


# ---- state plumbing ----

def state_addresses(VCpu cpu):
    """(address of the vCPU's lg_cpu_t, address of its guest's lg_guest_t),
    for handing lgcore's state to the C original (kshim_state_in)."""
    return (<uintptr_t>&cpu.c, <uintptr_t>cpu.c.lg)


# ---- the snapshot the kshim loops restore before every iteration ----

cdef struct bargs:
    unsigned int num
    uint32_t lo
    uint32_t hi


cdef struct snapshot:
    lg_regs_t regs
    int halted
    bint have_irq_enabled
    uint32_t irq_enabled


cdef inline void take_snapshot(lg_cpu_t *c, snapshot *s) noexcept nogil:
    s.regs = c.regs
    s.halted = c.halted
    s.have_irq_enabled = lg_ld_get(c.lg, LG_LD_IRQ_ENABLED, &s.irq_enabled) == 0


cdef inline void restore_snapshot(lg_cpu_t *c, const snapshot *s) noexcept nogil:
    c.regs = s.regs
    c.halted = s.halted
    if s.have_irq_enabled:
        memcpy(c.lg.mem + c.lg.lguest_data + LG_LD_IRQ_ENABLED, &s.irq_enabled, 4)


# ---- C-level loops (n iterations, nothing returned) ----

def c_interrupt_pending(VCpu cpu, uint64_t n):
    """kshim_bench_interrupt_pending."""
    cdef lg_cpu_t *c = &cpu.c
    cdef bint more
    cdef unsigned int irq
    cdef uint64_t i
    with nogil:
        for i in range(n):
            irq = lg_interrupt_pending(c, &more)
            LGB_KEEP(irq)
            LGB_CLOBBER()


def c_deliver_irq(VCpu cpu, unsigned int irq, uint64_t n):
    """kshim_bench_deliver_irq: restore, set, pending, try_deliver."""
    cdef lg_cpu_t *c = &cpu.c
    cdef snapshot s
    cdef unsigned int got
    cdef bint more
    cdef uint64_t i
    cdef bargs a
    if irq >= LG_IRQS:
        return
    a.num = irq
    with nogil:
        LGB_ESCAPE(&a)
        take_snapshot(c, &s)
        for i in range(n):
            more = False
            restore_snapshot(c, &s)
            lg_set_interrupt(c, a.num)
            got = lg_interrupt_pending(c, &more)
            if got < LG_IRQS:
                lg_try_deliver_interrupt(c, got, more)
            LGB_CLOBBER()


def c_deliver_irq_fused(VCpu cpu, unsigned int irq, uint64_t n):
    """The same event through lgcore's fused step: restore, set, deliver_pending."""
    cdef lg_cpu_t *c = &cpu.c
    cdef snapshot s
    cdef int got
    cdef uint64_t i
    cdef bargs a
    if irq >= LG_IRQS:
        return
    a.num = irq
    with nogil:
        LGB_ESCAPE(&a)
        take_snapshot(c, &s)
        for i in range(n):
            restore_snapshot(c, &s)
            lg_set_interrupt(c, a.num)
            got = lg_deliver_pending(c)
            LGB_KEEP(got)
            LGB_CLOBBER()


def c_deliver_trap(VCpu cpu, unsigned int num, uint64_t n):
    """kshim_bench_deliver_trap: restore, deliver_trap."""
    cdef lg_cpu_t *c = &cpu.c
    cdef snapshot s
    cdef bint ok
    cdef uint64_t i
    cdef bargs a
    a.num = num
    with nogil:
        LGB_ESCAPE(&a)
        take_snapshot(c, &s)
        for i in range(n):
            restore_snapshot(c, &s)
            ok = lg_deliver_trap(c, a.num)
            LGB_KEEP(ok)
            LGB_CLOBBER()


def c_load_guest_idt_entry(VCpu cpu, unsigned int num, uint32_t lo, uint32_t hi, uint64_t n):
    """kshim_bench_load_guest_idt_entry."""
    cdef lg_cpu_t *c = &cpu.c
    cdef uint64_t i
    cdef bargs a
    a.num, a.lo, a.hi = num, lo, hi
    with nogil:
        LGB_ESCAPE(&a)
        for i in range(n):
            lg_load_guest_idt_entry(c, a.num, a.lo, a.hi)
            LGB_CLOBBER()


def c_copy_traps(VCpu cpu, uint8_t[::1] idt, const uint8_t[::1] deflt, uint64_t n):
    """kshim_bench_copy_traps."""
    cdef lg_cpu_t *c = &cpu.c
    cdef lg_desc_t *out
    cdef const uint32_t *d
    cdef uint64_t i
    if idt.shape[0] < 8 * LG_IDT_ENTRIES or deflt.shape[0] < 4 * LG_IDT_ENTRIES:
        raise ValueError("idt needs 2048 bytes and defaults 1024")
    out = <lg_desc_t *>&idt[0]
    d = <const uint32_t *>&deflt[0]
    with nogil:
        for i in range(n):
            lg_copy_traps(c, out, d)
            LGB_CLOBBER()


def c_setup_default_idt_entries(uint8_t[::1] idt, const uint8_t[::1] deflt, uint64_t n):
    """kshim_bench_setup_default_idt_entries."""
    cdef lg_desc_t *out
    cdef const uint32_t *d
    cdef uint64_t i
    if idt.shape[0] < 8 * LG_IDT_ENTRIES or deflt.shape[0] < 4 * LG_IDT_ENTRIES:
        raise ValueError("idt needs 2048 bytes and defaults 1024")
    out = <lg_desc_t *>&idt[0]
    d = <const uint32_t *>&deflt[0]
    with nogil:
        for i in range(n):
            lg_setup_default_idt_entries(out, d)
            LGB_CLOBBER()


# ---- a Cython VMM's run loop: events round robin over vCPUs ----

cdef struct rl_cpu:
    lg_cpu_t *c
    uint32_t esp0


cdef rl_cpu *_rl_cpus(list cpus) except NULL:
    cdef Py_ssize_t k, ncpu = len(cpus)
    cdef rl_cpu *cs
    cdef VCpu cpu
    for k in range(ncpu):
        if not isinstance(cpus[k], VCpu):
            raise TypeError(f"cpus[{k}] is not an lgcore VCpu")
    cs = <rl_cpu *>PyMem_Malloc((ncpu + 1) * sizeof(rl_cpu))
    if cs == NULL:
        raise MemoryError()
    for k in range(ncpu):
        cpu = <VCpu>cpus[k]
        cs[k].c = &cpu.c
        cs[k].esp0 = cpu.c.regs.esp
    return cs


def c_runloop_irq(list cpus, unsigned int irq, uint64_t rounds):
    """``rounds`` x len(cpus) events: set_interrupt + deliver_pending on each
    vCPU in turn; every 32 rounds each vCPU's esp goes back to where it was
    (the guest's iret, in effect).  Mirrors the Python run loop in
    bench/_scenarios.py.  The caller keeps ``cpus`` alive."""
    cdef Py_ssize_t ncpu = len(cpus), k
    cdef rl_cpu *cs = _rl_cpus(cpus)
    cdef uint64_t r
    cdef int got
    with nogil:
        for r in range(rounds):
            for k in range(ncpu):
                lg_set_interrupt(cs[k].c, irq)
                got = lg_deliver_pending(cs[k].c)
                LGB_KEEP(got)
            if (r & 31) == 31:
                for k in range(ncpu):
                    cs[k].c.regs.esp = cs[k].esp0
    PyMem_Free(cs)


def c_runloop_trap(list cpus, unsigned int num, uint64_t rounds):
    """As c_runloop_irq with deliver_trap(num) as the event."""
    cdef Py_ssize_t ncpu = len(cpus), k
    cdef rl_cpu *cs = _rl_cpus(cpus)
    cdef uint64_t r
    cdef bint ok
    with nogil:
        for r in range(rounds):
            for k in range(ncpu):
                ok = lg_deliver_trap(cs[k].c, num)
                LGB_KEEP(ok)
            if (r & 31) == 31:
                for k in range(ncpu):
                    cs[k].c.regs.esp = cs[k].esp0
    PyMem_Free(cs)


# ---- the Python call floor ----

cdef class Floor:
    """Empty methods of a Cython class, compiled with lgcore's directives
    (binding=False): the cheapest Python call into compiled code, per
    argument count."""

    def noop(self):
        pass

    def noop1(self, a):
        pass

    def noop2(self, a, b):
        pass

    def noop3(self, a, b, c):
        pass

    def noop4(self, a, b, c, d):
        pass
