/*
 * lg.h (kshim) - the lguest host's private header, rebuilt for userspace.
 *
 * SPDX-License-Identifier: GPL-2.0-only
 *
 * The C original includes "lg.h" for struct lguest, struct lg_cpu, the
 * x86 constants, kill_guest() and the guest-memory helpers that live in
 * other lguest files (core.c, page_tables.c, hypercalls.c).  This header
 * supplies all of them with the semantics of lguest-facts.md section 4,
 * over one caller-provided RAM buffer that plays the Launcher's mapping of
 * guest-physical memory.  Guest-visible layouts come from lgcore.h.
 *
 * ---------------------------------------------------------------------
 * i386 arithmetic on an x86-64 host
 *
 * The original was written for a 32-bit kernel: "unsigned long" is 32
 * bits there and 64 bits here.  The original is compiled unmodified, so
 * every place where a wider intermediate could change a guest-visible
 * result is handled in the shim instead.  The places, in source order:
 *
 *  1. idt_address() returns unsigned long, but its value is assembled from
 *     two masked u32 halves (< 2^32) and only ever stored into the u32
 *     regs->eip.  Same result; nothing to do.
 *  2. push_guest_stack() does "*gstack -= 4" on an unsigned long.  Below
 *     4 it wraps to 2^64 - k instead of 2^32 - k.  lgwrite() hands the
 *     address to kshim_lgwrite(), which truncates it to 32 bits before the
 *     bounds check, the copy and the kill message: a stack at
 *     guest-physical 0..8 is written at 4, 0, then 0xFFFFFFFC, and the
 *     failure reads "bad write address 0xfffffffc len 4", as on i386.
 *  3. set_guest_interrupt() keeps gstack/origstack/virtstack in unsigned
 *     long and sets regs->esp = virtstack + (gstack - origstack).  Only +
 *     and - are involved, and reduction mod 2^32 commutes with them, so the
 *     64-bit result truncated by the store into the u32 regs->esp equals
 *     the i386 result.  guest_pa() returns the 32-bit value zero-extended
 *     (its "-1UL" failure value is 0xFFFFFFFF, not 2^64 - 1), so later
 *     pushes start from the i386 address too.
 *  4. pin_stack_pages() computes esp1 - 1 - i * PAGE_SIZE with PAGE_SIZE
 *     an unsigned long, i.e. in 64 bits; pin_page() truncates its vaddr to
 *     32 bits first (esp1 = 0 pins 0xFFFFFFFF, as on i386).
 *  5. default_idt_entry()/setup_default_idt_entries()/copy_traps() take the
 *     Switcher stub addresses as "const unsigned long *def", an array of
 *     8-byte elements here.  The glue widens lgcore's u32 def[256] into an
 *     unsigned long array before the call; the original keeps only bits
 *     31..0 of each (masks, then u32 stores).
 *  6. interrupt_pending() copies sizeof(blk) bytes of blocked_interrupts.
 *     The shim's bitmaps are u32 words (kshim_bitops.h), so that is 4
 *     bytes, as on i386, not 8 (which would fault at a different place near
 *     the end of RAM and read cr2 into the mask).
 *  7. lguest_address_ok() forms addr + len in u32, so the end < start test
 *     catches a wrap exactly as on i386; its inputs are truncated first.
 *  8. guest_pa()'s table-entry addresses (pgdir + 4 * index, page-table
 *     base + 4 * index) are summed in u32 and wrap as on i386.
 *  9. noirq_start/noirq_end and pfn_limit are held as u32 (32-bit unsigned
 *     long on i386); the eip comparisons are therefore unchanged.
 * 10. guest_set_clockevent() takes an unsigned long delta: 32 bits on
 *     i386.  The glue passes a u32, so no delta above 2^32 - 1 reaches it.
 * 11. write_timestamp() stores an i386 struct timespec: two 32-bit fields,
 *     8 bytes, tv_sec truncated to 32 bits (it wraps in 2038 as on i386).
 * 12. Kill messages print the truncated 32-bit values (%#lx of 0xfffffffc,
 *     never 0xfffffffffffffffc), and %#lx of 0 prints "0x0" as the
 *     kernel's vsprintf does (glibc prints "0").
 * Everything else the original computes is already u32/u16/u8/int, or a
 * small index (ARRAY_SIZE, find_*_bit) whose width does not matter.
 * ---------------------------------------------------------------------
 */
#ifndef KSHIM_LG_H
#define KSHIM_LG_H

#include "kshim_kernel.h"
#include "kshim_bitops.h"
#include "kshim_time.h"
#include "kshim_sched.h"
#include "linux/uaccess.h"
#include "kshim_lgcore.h"

/* ---- x86 and lguest constants (facts section 2), from lgcore.h ---- */
#define PAGE_SHIFT        12
#define PAGE_SIZE         (1UL << PAGE_SHIFT)
#define PAGE_MASK         (~(PAGE_SIZE - 1))

#define GUEST_PL          LG_GUEST_PL
#define LGUEST_CS         LG_LGUEST_CS
#define LGUEST_DS         LG_LGUEST_DS
#define __KERNEL_CS       LG_KERNEL_CS
#define __KERNEL_DS       LG_KERNEL_DS
#define __USER_CS         LG_USER_CS
#define __USER_DS         LG_USER_DS
#define LGUEST_IRQS       LG_IRQS
#define LGUEST_TRAP_ENTRY LG_TRAP_ENTRY
#define IDT_ENTRIES       LG_IDT_ENTRIES
#define GDT_ENTRIES       32
#define X86_EFLAGS_IF     LG_EFLAGS_IF

#define CHANGED_IDT       LG_CHANGED_IDT
#define CHANGED_GDT       LG_CHANGED_GDT
#define CHANGED_GDT_TLS   LG_CHANGED_GDT_TLS
#define CHANGED_ALL       LG_CHANGED_ALL

#define _PAGE_PRESENT     LG_PTE_PRESENT
#define _PAGE_RW          LG_PTE_RW

/* ---- structures ---- */

/* One 8-byte gate or segment descriptor: the two words are all we use. */
struct desc_struct {
	u32 a, b;
};

/*
 * The read-only per-host-CPU page the Switcher uses.  Only the guest IDT
 * and GDT are kept; the host descriptor pointers and the TSS that precede
 * them in the kernel are of no use in userspace.
 */
struct lguest_ro_state {
	struct desc_struct guest_idt[IDT_ENTRIES];
	struct desc_struct guest_gdt[GDT_ENTRIES];
};

struct lg_cpu_arch {
	struct desc_struct idt[IDT_ENTRIES];	/* the guest's vetted IDT */
};

struct lguest;

/* One virtual CPU: the fields the interrupt code and its helpers use. */
struct lg_cpu {
	unsigned int id;
	struct lguest *lg;
	struct task_struct *tsk;

	/* Saved guest registers (in the kernel: inside the Switcher pages). */
	lg_regs_t *regs;

	/* The guest kernel stack given by LHCALL_SET_STACK. */
	u32 esp1;
	u16 ss1;

	int changed;			/* CHANGED_* bits */
	int halted;			/* LHCALL_HALT seen, no IRQ since */

	DECLARE_BITMAP(irqs_pending, LGUEST_IRQS);

	struct hrtimer hrt;		/* the guest's clockevent */

	/* Guest page directory (guest-physical) for guest_pa()/pin_page(). */
	u32 pgdir;
	int paging;			/* 0: guest-virtual == guest-physical */

	struct lg_cpu_arch arch;
};

#define KSHIM_DEAD_LEN 256

/* One guest: the fields the interrupt code and its helpers use. */
struct lguest {
	/* Host pointer to lguest_data in guest RAM; NULL until LGUEST_INIT. */
	lg_lguest_data_t __user *lguest_data;

	/* Guest RAM: guest-physical 0 is mem_base[0]; mem_len bytes exist. */
	u8 __user *mem_base;
	u64 mem_len;
	u32 pfn_limit;			/* pages lguest_address_ok() allows */

	/* Interrupts are never delivered while eip is in [start, end). */
	u32 noirq_start, noirq_end;

	unsigned int stack_pages;	/* from the last LHCALL_SET_STACK */

	/* Why the guest died: the first kill_guest() text; "" while alive. */
	bool dead;
	char dead_reason[KSHIM_DEAD_LEN];
};

/* ---- helpers from the rest of lguest, with facts section 4 semantics ---- */

/*
 * Kill the guest with a printf-style reason.  Only the first reason is
 * kept and the caller carries on.  %#lx / %#x print a 0x prefix even for
 * zero, as the kernel's vsprintf does.
 */
void kshim_kill_guest(struct lguest *lg, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
#define kill_guest(cpu, fmt...) kshim_kill_guest((cpu)->lg, fmt)

/* snprintf with the kernel's spelling of %#lx / %#x (used for kills). */
void kshim_format_kernel(char *out, size_t size, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/*
 * The seed-era guest-physical address check: the 32-bit end address
 * addr + len must not wrap, and its page number must be below pfn_limit
 * (so an access ending exactly at pfn_limit pages is refused).
 */
bool lguest_address_ok(const struct lguest *lg,
		       unsigned long addr, unsigned long len);

/*
 * What __lgread/__lgwrite demand of a guest-physical range: the address
 * check above, and (what copy_{from,to}_user failing means in lguest) that
 * the bytes lie inside the RAM buffer.  lgcore's lg_address_ok() is this
 * combined test.
 */
bool kshim_guest_range_ok(const struct lguest *lg, u32 addr, u32 len);

/*
 * Read or write "bytes" bytes of guest-physical memory at addr (truncated
 * to 32 bits).  The access must pass kshim_guest_range_ok(); if not, the
 * guest is killed ("bad read address %#lx len %u" / "bad write address
 * %#lx len %u"), a read yields zeroes and a write stores nothing.
 */
void kshim_lgread(struct lg_cpu *cpu, void *buf, unsigned long addr,
		  unsigned int bytes);
void kshim_lgwrite(struct lg_cpu *cpu, unsigned long addr, const void *buf,
		   unsigned int bytes);

/* Fails to compile unless val already has exactly the named type. */
#define KSHIM_TYPECHECK(type, val) \
	((void)sizeof(char[__builtin_types_compatible_p(type, \
					__typeof__(val)) ? 1 : -1]))

#define lgread(cpu, addr, type) ({					\
	type kshim_lr_val;						\
	kshim_lgread((cpu), &kshim_lr_val, (addr), sizeof(kshim_lr_val)); \
	kshim_lr_val;							\
})

#define lgwrite(cpu, addr, type, val) do {				\
	type kshim_lw_val = (val);					\
	KSHIM_TYPECHECK(type, val);					\
	kshim_lgwrite((cpu), (addr), &kshim_lw_val, sizeof(kshim_lw_val)); \
} while (0)

/*
 * Guest-virtual to guest-physical.  With paging off, the address itself.
 * Otherwise a two-level (non-PAE) walk of the guest's tables from
 * cpu->pgdir using lgread(): a missing directory entry kills "Bad address
 * %#lx" and yields 0xFFFFFFFF; a missing page-table entry kills the same
 * way but the address built from it is still returned.
 */
unsigned long guest_pa(struct lg_cpu *cpu, unsigned long vaddr);

/*
 * Make sure a guest stack page could take a trap frame.  Without a shadow
 * MMU: with paging, the directory entry must be present and the page-table
 * entry present and writable; without paging, the page must be below
 * pfn_limit.  Otherwise kill "bad stack page %#lx".
 */
void pin_page(struct lg_cpu *cpu, unsigned long vaddr);

/*
 * Store the current (shim clock) time in lguest_data->time as an i386
 * struct timespec; if the 8 bytes are not in RAM, kill "Writing timestamp".
 */
void write_timestamp(struct lg_cpu *cpu);

/* ---- the entry points the C original defines ---- */
unsigned int interrupt_pending(struct lg_cpu *cpu, bool *more);
void try_deliver_interrupt(struct lg_cpu *cpu, unsigned int irq, bool more);
void set_interrupt(struct lg_cpu *cpu, unsigned int irq);
bool check_syscall_vector(struct lguest *lg);
int init_interrupts(void);
void free_interrupts(void);
bool deliver_trap(struct lg_cpu *cpu, unsigned int num);
void pin_stack_pages(struct lg_cpu *cpu);
void guest_set_stack(struct lg_cpu *cpu, u32 seg, u32 esp, unsigned int pages);
void load_guest_idt_entry(struct lg_cpu *cpu, unsigned int num, u32 lo, u32 hi);
void setup_default_idt_entries(struct lguest_ro_state *state,
			       const unsigned long *def);
void copy_traps(const struct lg_cpu *cpu, struct desc_struct *idt,
		const unsigned long *def);
void guest_set_clockevent(struct lg_cpu *cpu, unsigned long delta);
void init_clockdev(struct lg_cpu *cpu);

#if defined(__STDC_VERSION__) && __STDC_VERSION__ >= 201112L
_Static_assert(sizeof(struct desc_struct) == sizeof(lg_desc_t),
	       "a gate is two u32 words");
_Static_assert(sizeof(((struct lg_cpu *)0)->irqs_pending) == 4,
	       "bitmaps are i386-sized");
#endif

#endif /* KSHIM_LG_H */
