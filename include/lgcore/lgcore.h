/*
 * lgcore.h - the guest ABI of lguest's interrupt and trap engine, and the
 * engine's own per-guest and per-vCPU state.
 *
 * SPDX-License-Identifier: GPL-2.0-only
 *
 * This header is the single source of every layout lgcore shares with a
 * guest (struct lguest_data of the 2.6.32-3.0 era, the saved registers, the
 * 8-byte gate words) and with other code (the engine state that Cython, C
 * and the userspace build of the C original all use).  Everything a guest
 * sees is 32 bits wide and little-endian: the engine runs on a 64-bit host
 * but computes as an i386 kernel would.
 */
#ifndef LGCORE_LGCORE_H
#define LGCORE_LGCORE_H

#include <stddef.h>
#include <stdint.h>

/* ---- x86 and lguest constants (lguest-facts.md section 2) ---- */
#define LG_IRQS                  32      /* LGUEST_IRQS with an IO-APIC */
#define LG_IDT_ENTRIES           256
#define LG_FIRST_EXTERNAL_VECTOR 0x20
#define LG_SYSCALL_VECTOR        0x80
#define LG_TRAP_ENTRY            0x1F    /* the hypercall trap */
#define LG_NO_TRAP               256     /* trapnum sentinel: faulted in the Switcher */
#define LG_GUEST_PL              1
#define LG_LGUEST_CS             0x50
#define LG_LGUEST_DS             0x58
#define LG_KERNEL_CS             0x60
#define LG_KERNEL_DS             0x68
#define LG_USER_CS               0x73
#define LG_USER_DS               0x7B
#define LG_GUEST_CS              0x61    /* __KERNEL_CS | GUEST_PL */
#define LG_GUEST_DS              0x69    /* __KERNEL_DS | GUEST_PL */
#define LG_PAGE_SIZE             4096u
#define LG_PAGE_SHIFT            12

#define LG_EFLAGS_TF             0x00000100u
#define LG_EFLAGS_IF             0x00000200u
#define LG_EFLAGS_NT             0x00004000u
#define LG_EFLAGS_RF             0x00010000u
#define LG_EFLAGS_VM             0x00020000u

#define LG_GATE_TASK             0x5
#define LG_GATE_CALL             0xC
#define LG_GATE_INTERRUPT        0xE
#define LG_GATE_TRAP             0xF
#define LG_GATE_PRESENT          0x8000u
#define LG_GATE_DPL_MASK         0x6000u
#define LG_GATE_KEEP_MASK        0xFFFFEF00u  /* offset hi, P, DPL, type */
#define LG_GATE_DEFAULT_FLAGS    0x8E00u      /* present int gate, DPL 0 */

#define LG_CHANGED_IDT           1
#define LG_CHANGED_GDT           2
#define LG_CHANGED_GDT_TLS       4
#define LG_CHANGED_ALL           3

#define LG_PTE_PRESENT           0x001u
#define LG_PTE_RW                0x002u
#define LG_PTE_USER              0x004u

/* Hypercall numbers of the seed era (asm/lguest_hcall.h). */
#define LG_LHCALL_FLUSH_ASYNC      0
#define LG_LHCALL_LGUEST_INIT      1
#define LG_LHCALL_SHUTDOWN         2
#define LG_LHCALL_NEW_PGTABLE      4
#define LG_LHCALL_FLUSH_TLB        5
#define LG_LHCALL_LOAD_IDT_ENTRY   6
#define LG_LHCALL_SET_STACK        7
#define LG_LHCALL_TS               8
#define LG_LHCALL_SET_CLOCKEVENT   9
#define LG_LHCALL_HALT             10
#define LG_LHCALL_SET_PMD          13
#define LG_LHCALL_SET_PTE          14
#define LG_LHCALL_SET_PGD          15
#define LG_LHCALL_LOAD_TLS         16
#define LG_LHCALL_NOTIFY           17
#define LG_LHCALL_LOAD_GDT_ENTRY   18
#define LG_LHCALL_SEND_INTERRUPTS  19
#define LG_SHUTDOWN_POWEROFF       1
#define LG_SHUTDOWN_RESTART        2
#define LG_HCALL_RING_SIZE         64
#define LG_CLOCK_MIN_DELTA         100

/* ---- guest-visible layouts (facts section 3) ---- */

/* struct lguest_data, 2.6.32-3.0 era: with pgdir, 1396 bytes. */
typedef struct lg_hcall_args {
    uint32_t arg0, arg1, arg2, arg3, arg4;
} lg_hcall_args_t;

typedef struct lg_lguest_data {
    uint32_t irq_enabled;                /*    0: 0x200 = enabled */
    uint32_t blocked_interrupts[1];      /*    4: bit n blocks IRQ n */
    uint32_t cr2;                        /*    8 */
    int32_t  time_sec;                   /*   12: struct timespec, i386 */
    int32_t  time_nsec;                  /*   16 */
    int32_t  irq_pending;                /*   20: 0x200 = pending */
    uint8_t  hcall_status[LG_HCALL_RING_SIZE];   /* 24 */
    lg_hcall_args_t hcalls[LG_HCALL_RING_SIZE];  /* 88 */
    uint32_t reserve_mem;                /* 1368 */
    uint32_t tsc_khz;                    /* 1372 */
    uint32_t pgdir;                      /* 1376: seed era only */
    uint32_t noirq_start;                /* 1380 */
    uint32_t noirq_end;                  /* 1384 */
    uint32_t kernel_address;             /* 1388 */
    uint32_t syscall_vec;                /* 1392 */
} lg_lguest_data_t;                      /* 1396 */

#define LG_LD_IRQ_ENABLED        0
#define LG_LD_BLOCKED            4
#define LG_LD_CR2                8
#define LG_LD_TIME               12
#define LG_LD_IRQ_PENDING        20
#define LG_LD_HCALL_STATUS       24
#define LG_LD_HCALLS             88
#define LG_LD_RESERVE_MEM        1368
#define LG_LD_TSC_KHZ            1372
#define LG_LD_PGDIR              1376
#define LG_LD_NOIRQ_START        1380
#define LG_LD_NOIRQ_END          1384
#define LG_LD_KERNEL_ADDRESS     1388
#define LG_LD_SYSCALL_VEC        1392
#define LG_LD_SIZE               1396

/* struct lguest_regs: what the Switcher saves, 72 bytes. */
typedef struct lg_regs {
    uint32_t eax, ebx, ecx, edx;
    uint32_t esi, edi, ebp;
    uint32_t gs, fs, ds, es;
    uint32_t trapnum, errcode;
    uint32_t eip, cs, eflags, esp, ss;
} lg_regs_t;
#define LG_REGS_SIZE             72

/* One 8-byte gate: a = selector:offset_lo, b = offset_hi:P:DPL:type. */
typedef struct lg_desc {
    uint32_t a, b;
} lg_desc_t;

/* ---- engine state ---- */

/* Why a guest died: the first reason sticks (lguest's kill_guest()).
 * The code picks lguest's message text, args fill its conversions. */
enum lg_kill {
    LG_KILL_NONE = 0,
    LG_KILL_DISABLING_INTERRUPTS = 1,   /* "Disabling interrupts" */
    LG_KILL_REENABLING_INTERRUPTS = 2,  /* "Re-enabling interrupts" */
    LG_KILL_BAD_STACK_SEGMENT = 3,      /* "bad stack segment %i" */
    LG_KILL_BAD_STACK_PAGES = 4,        /* "bad stack pages %u" */
    LG_KILL_BAD_IDT_TYPE = 5,           /* "bad IDT type %i" */
    LG_KILL_SETTING_IDT_ENTRY = 6,      /* "Setting idt entry %u" */
    LG_KILL_BAD_READ = 7,               /* "bad read address %#lx len %u" */
    LG_KILL_BAD_WRITE = 8,              /* "bad write address %#lx len %u" */
    LG_KILL_BAD_ADDRESS = 9,            /* "Bad address %#lx" */
    LG_KILL_WRITING_TIMESTAMP = 10,     /* "Writing timestamp" */
    LG_KILL_BAD_STACK_PAGE = 11,        /* "bad stack page %#lx" */
    LG_KILL_TEXT = 12                   /* a message set by the policy layer */
};

/* Fidelity switches (design section 4).  Profile "seed" is 0. */
#define LG_FIX_MORE           0x1u  /* `more` means another IRQ is pending */
#define LG_FIX_EFLAGS         0x2u  /* clear TF/NT/RF/VM on delivery */
#define LG_FIX_ADDRESS_CHECK  0x4u  /* an access may end at the RAM limit */
#define LG_FIX_SYSCALL_REFLECT 0x8u /* reflect a syscall vector reaching the host */
#define LG_PROFILE_SEED       0x0u
#define LG_PROFILE_HARDENED   0xFu

/* The clock write_timestamp() reads and the clockevent is measured on. */
#define LG_CLOCK_REALTIME     0
#define LG_CLOCK_VIRTUAL      1
typedef struct lg_clock {
    int32_t mode;
    int32_t reserved;
    int64_t virtual_ns;   /* the virtual clock's now, in ns since the epoch */
    int64_t virtual_ts32; /* the same instant as lguest_data.time holds it:
                           * the i386 timespec {sec, nsec}, sec in the low
                           * word; kept by lg_clock_set_virtual() */
} lg_clock_t;

/* Per guest: struct lguest's fields the engine uses. */
typedef struct lg_guest {
    uint8_t *mem;             /* guest-physical 0 in host memory */
    uint64_t mem_len;         /* bytes of RAM behind mem */
    uint32_t pfn_limit;       /* pages the address check allows */
    uint32_t lguest_data;     /* guest-physical address of lguest_data */
    int32_t  has_lguest_data; /* 0 until LGUEST_INIT */
    uint32_t noirq_start;
    uint32_t noirq_end;
    uint32_t stack_pages;
    uint32_t syscall_vector;  /* the syscall_vector parameter */
    uint32_t fixes;           /* LG_FIX_* bits of the profile */
    lg_clock_t *clock;        /* never NULL once attached */
    int32_t  dead;            /* enum lg_kill, first reason */
    uint32_t dead_args[3];
    uint64_t pfn_bound;       /* derived by lg_guest_sync(): see there */
} lg_guest_t;

/* Per vCPU: struct lg_cpu's fields the engine uses. */
typedef struct lg_cpu {
    lg_regs_t regs;
    lg_desc_t idt[LG_IDT_ENTRIES];   /* the guest's vetted IDT (arch.idt) */
    lg_guest_t *lg;
    uint32_t irqs_pending;           /* atomic: set from any thread */
    uint32_t esp1;
    uint16_t ss1;
    uint16_t reserved;
    int32_t  changed;
    int32_t  halted;
    uint32_t pgdir;                  /* guest-physical page directory */
    int32_t  paging;                 /* 0: guest-virtual == guest-physical */
    /* Derived, for lg_deliver_pending_fast() alone: the guest values it
     * needs, kept here so that each is one load from the vCPU, and the last
     * stack walk it made.  All zero is valid (the fast path then steps
     * aside).  lg_cpu_sync() refreshes them: call it for every vCPU of a
     * guest after lg_guest_sync(), and after the guest's RAM, lguest_data,
     * has_lguest_data or clock change; lgcore.Guest does both. */
    uint8_t *fast_ld;                /* lguest_data in host memory, or NULL */
    uint8_t *fast_mem;               /* the guest's RAM, when fast_ld is set */
    uint64_t fast_bound;             /* the guest's lg_access_bound() */
    const int64_t *fast_ts;          /* a virtual clock's virtual_ts32, or NULL */
    uint64_t walk_key;               /* pgdir << 32 | vaddr >> 12 walked */
    uint64_t walk_bound;             /* the bound it passed; 0: none kept */
    uint32_t walk_pde_gpa;           /* its page-directory entry: where */
    uint32_t walk_pde;               /* and what it held */
    uint32_t walk_pte_gpa;           /* its page-table entry: where */
    uint32_t walk_pte;               /* and what it held */
} lg_cpu_t;

/* ---- atomics for the pending word (set_interrupt runs on any thread) ---- */
static inline uint32_t lg_atomic_or32(uint32_t *p, uint32_t v)
{
    return __atomic_fetch_or(p, v, __ATOMIC_SEQ_CST);
}

static inline uint32_t lg_atomic_andnot32(uint32_t *p, uint32_t v)
{
    return __atomic_fetch_and(p, ~v, __ATOMIC_SEQ_CST);
}

static inline uint32_t lg_atomic_load32(const uint32_t *p)
{
    return __atomic_load_n(p, __ATOMIC_SEQ_CST);
}

/* The owner's read of its own pending word: only the owner clears bits, so
 * a bit it sees stays set until it clears it; no ordering is needed. */
static inline uint32_t lg_atomic_peek32(const uint32_t *p)
{
    return __atomic_load_n(p, __ATOMIC_RELAXED);
}

static inline void lg_atomic_store32(uint32_t *p, uint32_t v)
{
    __atomic_store_n(p, v, __ATOMIC_SEQ_CST);
}

static inline int64_t lg_atomic_load64(const int64_t *p)
{
    return __atomic_load_n(p, __ATOMIC_SEQ_CST);
}

static inline void lg_atomic_store64(int64_t *p, int64_t v)
{
    __atomic_store_n(p, v, __ATOMIC_SEQ_CST);
}

/* Move a virtual clock to ns (>= 0).  The timespec image is stored first,
 * then the ns; a reader of either sees a whole value.  Set a virtual clock
 * only through this: write_timestamp() copies virtual_ts32 as it is. */
static inline void lg_clock_set_virtual(lg_clock_t *clock, int64_t ns)
{
    int64_t sec = ns / 1000000000;
    uint32_t nsec = (uint32_t)(ns - sec * 1000000000);
    lg_atomic_store64(&clock->virtual_ts32,
                      (int64_t)(((uint64_t)nsec << 32) | (uint32_t)sec));
    lg_atomic_store64(&clock->virtual_ns, ns);
}

/* Recompute what lg_guest_t derives from pfn_limit and fixes: pfn_bound, the
 * address check's page rule as one bound (an access [addr, addr + len) may
 * pass only if addr + len < pfn_bound; the seed wants the page of the first
 * byte past it under pfn_limit, the hardened profile lets it end at the
 * limit), at most 2**32.  The delivery fast paths read pfn_bound; call this
 * after writing pfn_limit or fixes.  A zeroed pfn_bound is always safe: the
 * fast paths then step aside for the general ones. */
static inline void lg_guest_sync(lg_guest_t *lg)
{
    uint64_t bound = (uint64_t)lg->pfn_limit << LG_PAGE_SHIFT;

    if (lg->fixes & LG_FIX_ADDRESS_CHECK)
        bound += 1;
    lg->pfn_bound = bound < 0x100000000ull ? bound : 0x100000000ull;
}

/* Refresh a vCPU's derived fields (see lg_cpu_t) from its guest, and forget
 * its last walk.  Call it again when the guest gets another clock.  Without RAM or a whole lguest_data inside it, fast_ld is
 * NULL and lg_deliver_pending_fast() always steps aside. */
static inline void lg_cpu_sync(lg_cpu_t *cpu)
{
    const lg_guest_t *lg = cpu->lg;

    cpu->walk_bound = 0;
    if (lg == NULL || lg->mem == NULL || !lg->has_lguest_data ||
        (uint64_t)lg->lguest_data + LG_LD_SIZE > lg->mem_len) {
        cpu->fast_ld = NULL;
        cpu->fast_mem = NULL;
        cpu->fast_bound = 0;
        cpu->fast_ts = NULL;
        return;
    }
    cpu->fast_mem = lg->mem;
    cpu->fast_ld = lg->mem + lg->lguest_data;
    cpu->fast_bound = lg->pfn_bound < lg->mem_len + 1 ? lg->pfn_bound : lg->mem_len + 1;
    cpu->fast_ts = lg->clock != NULL && lg->clock->mode == LG_CLOCK_VIRTUAL ?
                   &lg->clock->virtual_ts32 : NULL;
}

/* Lowest set bit of a word, or 32 when there is none. */
static inline unsigned int lg_ffs32(uint32_t w)
{
    return w ? (unsigned int)__builtin_ctz(w) : 32u;
}

#if defined(__STDC_VERSION__) && __STDC_VERSION__ >= 201112L
_Static_assert(sizeof(lg_lguest_data_t) == LG_LD_SIZE, "lguest_data size");
_Static_assert(offsetof(lg_lguest_data_t, irq_pending) == LG_LD_IRQ_PENDING, "irq_pending");
_Static_assert(offsetof(lg_lguest_data_t, hcalls) == LG_LD_HCALLS, "hcalls");
_Static_assert(offsetof(lg_lguest_data_t, syscall_vec) == LG_LD_SYSCALL_VEC, "syscall_vec");
_Static_assert(sizeof(lg_regs_t) == LG_REGS_SIZE, "lguest_regs size");
_Static_assert(sizeof(lg_desc_t) == 8, "gate size");
#endif

#endif /* LGCORE_LGCORE_H */
