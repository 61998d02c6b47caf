# SPDX-License-Identifier: GPL-2.0-only
# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""The injection stress of test_injection_nogil.py at the C level: device
threads call lg_set_interrupt and vCPU threads lg_deliver_pending without
the GIL, truly in parallel, as a Cython VMM would (through the public
lgcore.vcpu / lgcore.deliver / lgcore.abi .pxd files).  The accounting is
the one test_injection.py explains: a claim word per (vCPU, line) for the
device lines, a sequence word for the clockevent's IRQ 0."""
from libc.stdint cimport uint32_t, uint64_t, int64_t
from libc.string cimport memcpy, memset

from lgcore.abi cimport lg_cpu_t, lg_atomic_load32
from lgcore.deliver cimport lg_set_interrupt, lg_deliver_pending
from lgcore.vcpu cimport VCpu

cdef extern from "sched.h" nogil:
    int sched_yield()

cdef extern from *:
    """
    #include <stdint.h>
    static inline int st_claim(uint32_t *p) {
        uint32_t expect = 0;
        return __atomic_compare_exchange_n(p, &expect, 1u, 0, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST);
    }
    static inline uint32_t st_xchg(uint32_t *p, uint32_t v) { return __atomic_exchange_n(p, v, __ATOMIC_SEQ_CST); }
    static inline uint32_t st_load(const uint32_t *p) { return __atomic_load_n(p, __ATOMIC_SEQ_CST); }
    static inline void st_store(uint32_t *p, uint32_t v) { __atomic_store_n(p, v, __ATOMIC_SEQ_CST); }
    static inline uint32_t st_xor(uint32_t *p, uint32_t v) { return __atomic_fetch_xor(p, v, __ATOMIC_SEQ_CST); }
    static inline uint32_t st_add(uint32_t *p, uint32_t v) { return __atomic_add_fetch(p, v, __ATOMIC_SEQ_CST); }
    static inline uint64_t st_rand(uint64_t *s) {          /* xorshift64* */
        uint64_t x = *s; x ^= x >> 12; x ^= x << 25; x ^= x >> 27; *s = x;
        return x * 0x2545F4914F6CDD1DULL;
    }
    """
    int st_claim(uint32_t *p) nogil
    uint32_t st_xchg(uint32_t *p, uint32_t v) nogil
    uint32_t st_load(const uint32_t *p) nogil
    void st_store(uint32_t *p, uint32_t v) nogil
    uint32_t st_xor(uint32_t *p, uint32_t v) nogil
    uint32_t st_add(uint32_t *p, uint32_t v) nogil
    uint64_t st_rand(uint64_t *s) nogil

cdef enum:
    MAXCPU = 8
    NDEV = 4
    IRQS = 32

cdef enum:
    LGUEST_DATA = 0x1000
    LD_IRQ_ENABLED = 0
    LD_BLOCKED = 4
    LD_IRQ_PENDING = 20
    EFLAGS_IF = 0x200
    GUEST_CS = 0x61
    GUEST_DS = 0x69
    USER_CS = 0x73
    USER_DS = 0x7B

cdef uint32_t HANDLER_BASE = 0xC1000000u
cdef uint32_t KERNEL_EIP = 0xC0100000u
cdef uint32_t USER_EIP = 0x08048000u
cdef uint32_t USER_ESP = 0xBFFFF000u
cdef uint32_t NOIRQ_START = 0xC0200000u


cdef inline uint32_t kstack_top(int i) noexcept nogil:
    return 0x10000 + 0x2000 * (i + 1)


cdef inline uint32_t kesp(int i) noexcept nogil:
    return 0x80000 + 0x400 * (i + 1)


cdef inline uint32_t *ld(lg_cpu_t *c, uint32_t off) noexcept nogil:
    return <uint32_t *>(c.lg.mem + LGUEST_DATA + off)


cdef inline uint32_t rd(lg_cpu_t *c, uint32_t addr) noexcept nogil:
    cdef uint32_t v
    memcpy(&v, c.lg.mem + addr, 4)
    return v


cdef inline void to_kernel(lg_cpu_t *c, int i) noexcept nogil:
    c.regs.cs = GUEST_CS
    c.regs.ss = GUEST_DS
    c.regs.eip = KERNEL_EIP
    c.regs.esp = kesp(i)
    c.regs.eflags = 0x202


cdef inline void to_user(lg_cpu_t *c) noexcept nogil:
    c.regs.cs = USER_CS
    c.regs.ss = USER_DS
    c.regs.eip = USER_EIP
    c.regs.esp = USER_ESP
    c.regs.eflags = 0x202


cdef class Board:
    """Claims, counters and flags shared by the device and vCPU threads."""
    cdef uint32_t claims[MAXCPU][IRQS]
    cdef uint64_t raised[NDEV][MAXCPU][IRQS]
    cdef uint64_t delivered[MAXCPU][IRQS]
    cdef uint32_t seq[MAXCPU]          # clockevent expiries, bumped before the raise
    cdef uint32_t seen[MAXCPU]         # seq seen by the last IRQ 0 handler
    cdef uint64_t doubled, frame_errors, rule_errors, halts
    cdef uint32_t stop
    cdef uint32_t stalled
    cdef int ncpus
    cdef lg_cpu_t *cpus[MAXCPU]
    cdef list _keep
    cdef public list errors
    # Fault injection, to show the accounting catches what it claims to:
    # drop device 0's raise number `drop_every`, 2*drop_every, ... / raise
    # the line again after every `double_every`-th delivery.
    cdef public uint64_t drop_every, double_every

    def __init__(self, list cpus):
        cdef VCpu cpu
        if not 0 < len(cpus) <= MAXCPU:
            raise ValueError("1..8 vCPUs")
        memset(self.claims, 0, sizeof(self.claims))
        memset(self.raised, 0, sizeof(self.raised))
        memset(self.delivered, 0, sizeof(self.delivered))
        memset(self.seq, 0, sizeof(self.seq))
        memset(self.seen, 0, sizeof(self.seen))
        self.doubled = self.frame_errors = self.rule_errors = self.halts = 0
        self.stop = 0
        self.stalled = 0
        self.drop_every = self.double_every = 0
        self.ncpus = len(cpus)
        self._keep = list(cpus)
        self.errors = []
        for i, cpu in enumerate(cpus):
            self.cpus[i] = &cpu.c

    # -- the clockevent callback's half (called with the GIL by the timer thread) --

    cdef int _ix(self, int i, int line) except -1:
        if not (0 <= i < self.ncpus and 0 <= line < IRQS):
            raise IndexError(f"vCPU {i} / line {line} out of range")
        return 0

    def expiry(self, int i):
        self._ix(i, 0)
        st_add(&self.seq[i], 1)

    # -- device threads --

    def device(self, int t, uint64_t n, uint64_t seed, uint32_t mix):
        """Raise ``n`` interrupts on the lines of bitmask ``mix``, spread over
        the vCPUs, each only once its claim is free."""
        if not (0 <= t < NDEV and mix):
            raise ValueError("device 0..3 with a non-empty line mask")
        cdef uint64_t s = seed * 0x9E3779B97F4A7C15ULL + 1
        cdef uint64_t done = 0, misses = 0
        cdef int lines[IRQS]
        cdef int nlines = 0, line, i, k
        for k in range(IRQS):
            if mix >> k & 1:
                lines[nlines] = k
                nlines += 1
        with nogil:
            while done < n:
                i = <int>(st_rand(&s) % <uint64_t>self.ncpus)
                line = lines[st_rand(&s) % <uint64_t>nlines]
                if not st_claim(&self.claims[i][line]):
                    misses += 1
                    if misses % 64 == 0:
                        if st_load(&self.stop):
                            break
                        sched_yield()
                    continue
                self.raised[t][i][line] += 1
                done += 1
                if t == 0 and self.drop_every and done % self.drop_every == 0:
                    continue
                lg_set_interrupt(self.cpus[i], line)
        return done

    # -- vCPU threads --

    def vcpu(self, int i, uint64_t iters, uint64_t seed, bint solo):
        """Run the guest on vCPU ``i`` for up to ``iters`` deliver calls
        without the GIL.  Returns True when it stopped on an IRQ 0 delivery
        (the caller re-arms the clockevent), False otherwise."""
        self._ix(i, 0)
        cdef lg_cpu_t *c = self.cpus[i]
        cdef uint64_t s = seed * 0x9E3779B97F4A7C15ULL + 7
        cdef uint64_t k, r
        cdef uint32_t blocked, ien, pre, bit, eflags, esp, virt_if
        cdef bint halt, halted, in_noirq, user, timer = False
        cdef int line
        user = c.regs.cs == USER_CS
        with nogil:
            for k in range(iters):
                if st_load(&self.stop):
                    break
                r = st_rand(&s) % 1000
                halt = False
                if r < 60:
                    st_xor(ld(c, LD_BLOCKED), 1u << (1 + st_rand(&s) % 31))
                elif r < 120:
                    st_xor(ld(c, LD_IRQ_ENABLED), EFLAGS_IF)
                elif r < 140:
                    user = not user
                    if user:
                        to_user(c)
                    else:
                        to_kernel(c, i)
                elif r < 150:
                    halt = True
                    c.halted = 1
                    self.halts += 1
                in_noirq = r >= 990
                if in_noirq:
                    c.regs.eip = NOIRQ_START + 4
                blocked = st_load(ld(c, LD_BLOCKED))
                ien = st_load(ld(c, LD_IRQ_ENABLED))
                halted = c.halted != 0
                pre = lg_atomic_load32(&c.irqs_pending)
                line = lg_deliver_pending(c)
                if line >= 0:
                    bit = 1u << line
                    if solo and (blocked & bit or in_noirq or not (halted or ien)):
                        self.rule_errors += 1
                    # the frame, then iret
                    esp = c.regs.esp
                    if c.regs.eip != HANDLER_BASE + 16 * <uint32_t>line or c.regs.cs != GUEST_CS \
                            or c.regs.ss != GUEST_DS:
                        self.frame_errors += 1
                    if user:
                        if (esp != kstack_top(i) - 20 or rd(c, esp) != USER_EIP
                                or rd(c, esp + 4) != USER_CS or rd(c, esp + 12) != USER_ESP
                                or rd(c, esp + 16) != USER_DS):
                            self.frame_errors += 1
                    else:
                        if esp != kesp(i) - 12 or rd(c, esp) != KERNEL_EIP or rd(c, esp + 4) != GUEST_CS:
                            self.frame_errors += 1
                    eflags = rd(c, esp + 8)
                    virt_if = EFLAGS_IF if halted else (ien & EFLAGS_IF)
                    if solo and (eflags & EFLAGS_IF) != virt_if:
                        self.frame_errors += 1
                    if user:
                        to_user(c)
                    else:
                        to_kernel(c, i)
                    st_store(ld(c, LD_IRQ_ENABLED), eflags & EFLAGS_IF)
                    self.delivered[i][line] += 1
                    if line == 0:
                        st_store(&self.seen[i], st_load(&self.seq[i]))
                        timer = True
                        break
                    if st_xchg(&self.claims[i][line], 0) == 0:
                        self.doubled += 1
                    if self.double_every and self.delivered[i][line] % self.double_every == 0:
                        lg_set_interrupt(c, line)
                else:
                    if in_noirq:
                        c.regs.eip = USER_EIP if user else KERNEL_EIP
                    elif solo and pre & ~blocked and (halted or ien):
                        self.rule_errors += 1        # a deliverable IRQ stayed pending
                    elif solo and pre & ~blocked and not halted and not ien:
                        if st_load(ld(c, LD_IRQ_PENDING)) != EFLAGS_IF:
                            self.rule_errors += 1
                    if c.halted:
                        # The halted "sleep": spin until something deliverable is
                        # pending (or the run stops); the next call delivers it.
                        while not st_load(&self.stop):
                            if lg_atomic_load32(&c.irqs_pending) & ~st_load(ld(c, LD_BLOCKED)):
                                break
                            sched_yield()
        return timer

    def set_stop(self):
        st_store(&self.stop, 1)

    # -- accounting (with the GIL, threads joined) --

    def raised_count(self, int i, int line):
        self._ix(i, line)
        cdef uint64_t n = 0
        for t in range(NDEV):
            n += self.raised[t][i][line]
        return n

    def delivered_count(self, int i, int line):
        self._ix(i, line)
        return self.delivered[i][line]

    def claim_held(self, int i, int line):
        self._ix(i, line)
        return st_load(&self.claims[i][line]) != 0

    def drained(self, int i, int line):
        self._ix(i, line)
        """The final drain delivered (i, line) through the Python face."""
        self.delivered[i][line] += 1
        if line == 0:
            self.seen[i] = self.seq[i]
        elif st_xchg(&self.claims[i][line], 0) == 0:
            self.doubled += 1

    def seq_of(self, int i):
        self._ix(i, 0)
        return self.seq[i], self.seen[i]

    @property
    def counters(self):
        return {"doubled": self.doubled, "frame_errors": self.frame_errors,
                "rule_errors": self.rule_errors, "halts": self.halts}
