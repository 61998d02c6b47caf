# SPDX-License-Identifier: GPL-2.0-only
# The guest ABI and engine state, declared from include/lgcore/lgcore.h.
# Other Cython code cimports this to share the exact C layouts.
from libc.stdint cimport uint8_t, uint16_t, uint32_t, int32_t, int64_t, uint64_t

cdef extern from "lgcore/lgcore.h" nogil:
    enum:
        LG_IRQS
        LG_IDT_ENTRIES
        LG_FIRST_EXTERNAL_VECTOR
        LG_SYSCALL_VECTOR
        LG_TRAP_ENTRY
        LG_NO_TRAP
        LG_GUEST_PL
        LG_LGUEST_CS
        LG_LGUEST_DS
        LG_KERNEL_CS
        LG_KERNEL_DS
        LG_USER_CS
        LG_USER_DS
        LG_GUEST_CS
        LG_GUEST_DS
        LG_PAGE_SHIFT
        LG_GATE_TASK
        LG_GATE_CALL
        LG_GATE_INTERRUPT
        LG_GATE_TRAP
        LG_CHANGED_IDT
        LG_CHANGED_GDT
        LG_CHANGED_GDT_TLS
        LG_CHANGED_ALL
        LG_LHCALL_FLUSH_ASYNC
        LG_LHCALL_LGUEST_INIT
        LG_LHCALL_SHUTDOWN
        LG_LHCALL_NEW_PGTABLE
        LG_LHCALL_FLUSH_TLB
        LG_LHCALL_LOAD_IDT_ENTRY
        LG_LHCALL_SET_STACK
        LG_LHCALL_TS
        LG_LHCALL_SET_CLOCKEVENT
        LG_LHCALL_HALT
        LG_LHCALL_SET_PMD
        LG_LHCALL_SET_PTE
        LG_LHCALL_SET_PGD
        LG_LHCALL_LOAD_TLS
        LG_LHCALL_NOTIFY
        LG_LHCALL_LOAD_GDT_ENTRY
        LG_LHCALL_SEND_INTERRUPTS
        LG_SHUTDOWN_POWEROFF
        LG_SHUTDOWN_RESTART
        LG_HCALL_RING_SIZE
        LG_CLOCK_MIN_DELTA
        LG_LD_IRQ_ENABLED
        LG_LD_BLOCKED
        LG_LD_CR2
        LG_LD_TIME
        LG_LD_IRQ_PENDING
        LG_LD_HCALL_STATUS
        LG_LD_HCALLS
        LG_LD_RESERVE_MEM
        LG_LD_TSC_KHZ
        LG_LD_PGDIR
        LG_LD_NOIRQ_START
        LG_LD_NOIRQ_END
        LG_LD_KERNEL_ADDRESS
        LG_LD_SYSCALL_VEC
        LG_LD_SIZE
        LG_REGS_SIZE
        LG_CLOCK_REALTIME
        LG_CLOCK_VIRTUAL

    # Unsigned 32-bit masks: declared as such so nogil arithmetic stays unsigned.
    const uint32_t LG_PAGE_SIZE
    const uint32_t LG_EFLAGS_TF
    const uint32_t LG_EFLAGS_IF
    const uint32_t LG_EFLAGS_NT
    const uint32_t LG_EFLAGS_RF
    const uint32_t LG_EFLAGS_VM
    const uint32_t LG_GATE_PRESENT
    const uint32_t LG_GATE_DPL_MASK
    const uint32_t LG_GATE_KEEP_MASK
    const uint32_t LG_GATE_DEFAULT_FLAGS
    const uint32_t LG_PTE_PRESENT
    const uint32_t LG_PTE_RW
    const uint32_t LG_PTE_USER
    const uint32_t LG_FIX_MORE
    const uint32_t LG_FIX_EFLAGS
    const uint32_t LG_FIX_ADDRESS_CHECK
    const uint32_t LG_FIX_SYSCALL_REFLECT
    const uint32_t LG_PROFILE_SEED
    const uint32_t LG_PROFILE_HARDENED

    enum:
        LG_KILL_NONE
        LG_KILL_DISABLING_INTERRUPTS
        LG_KILL_REENABLING_INTERRUPTS
        LG_KILL_BAD_STACK_SEGMENT
        LG_KILL_BAD_STACK_PAGES
        LG_KILL_BAD_IDT_TYPE
        LG_KILL_SETTING_IDT_ENTRY
        LG_KILL_BAD_READ
        LG_KILL_BAD_WRITE
        LG_KILL_BAD_ADDRESS
        LG_KILL_WRITING_TIMESTAMP
        LG_KILL_BAD_STACK_PAGE
        LG_KILL_TEXT

    # struct lguest_data as it lies in guest RAM (seed era, 1396 bytes).  The
    # engine never dereferences it: guest RAM is reached through the checked
    # accessors in guestmem.pxd.  Declared for VMMs that lay out a guest.
    ctypedef struct lg_hcall_args_t:
        uint32_t arg0, arg1, arg2, arg3, arg4

    ctypedef struct lg_lguest_data_t:
        uint32_t irq_enabled
        uint32_t blocked_interrupts[1]
        uint32_t cr2
        int32_t time_sec
        int32_t time_nsec
        int32_t irq_pending
        uint8_t hcall_status[64]
        lg_hcall_args_t hcalls[64]
        uint32_t reserve_mem
        uint32_t tsc_khz
        uint32_t pgdir
        uint32_t noirq_start
        uint32_t noirq_end
        uint32_t kernel_address
        uint32_t syscall_vec

    ctypedef struct lg_regs_t:
        uint32_t eax, ebx, ecx, edx
        uint32_t esi, edi, ebp
        uint32_t gs, fs, ds, es
        uint32_t trapnum, errcode
        uint32_t eip, cs, eflags, esp, ss

    ctypedef struct lg_desc_t:
        uint32_t a, b

    ctypedef struct lg_clock_t:
        int32_t mode
        int64_t virtual_ns
        int64_t virtual_ts32

    ctypedef struct lg_guest_t:
        uint8_t *mem
        uint64_t mem_len
        uint32_t pfn_limit
        uint32_t lguest_data
        int32_t has_lguest_data
        uint32_t noirq_start
        uint32_t noirq_end
        uint32_t stack_pages
        uint32_t syscall_vector
        uint32_t fixes
        lg_clock_t *clock
        int32_t dead
        uint32_t dead_args[3]
        uint64_t pfn_bound

    ctypedef struct lg_cpu_t:
        lg_regs_t regs
        lg_desc_t idt[256]
        lg_guest_t *lg
        uint32_t irqs_pending
        uint32_t esp1
        uint16_t ss1
        int32_t changed
        int32_t halted
        uint32_t pgdir
        int32_t paging
        uint8_t *fast_ld
        uint8_t *fast_mem
        uint64_t fast_bound
        const int64_t *fast_ts
        uint64_t walk_key
        uint64_t walk_bound
        uint32_t walk_pde_gpa
        uint32_t walk_pde
        uint32_t walk_pte_gpa
        uint32_t walk_pte

    uint32_t lg_atomic_or32(uint32_t *p, uint32_t v)
    uint32_t lg_atomic_andnot32(uint32_t *p, uint32_t v)
    uint32_t lg_atomic_load32(const uint32_t *p)
    uint32_t lg_atomic_peek32(const uint32_t *p)
    void lg_atomic_store32(uint32_t *p, uint32_t v)
    int64_t lg_atomic_load64(const int64_t *p)
    void lg_atomic_store64(int64_t *p, int64_t v)
    void lg_clock_set_virtual(lg_clock_t *clock, int64_t ns)
    void lg_guest_sync(lg_guest_t *lg)
    void lg_cpu_sync(lg_cpu_t *cpu)
    unsigned int lg_ffs32(uint32_t w)
