/*
 * kshim_glue.h - the harness interface to the userspace build of the C
 * original: one guest with one vCPU over a caller-provided RAM buffer,
 * state transfer to and from lgcore's ABI structs, inspection of what the
 * shim recorded, a wrapper per entry point of the original, and C loops
 * for benchmarks.
 *
 * SPDX-License-Identifier: GPL-2.0-only
 *
 * lgcore/reference.py passes the declarations between the KSHIM_CDEF
 * markers to cffi as they are, so keep that part to plain declarations
 * (no macros, no preprocessor lines).
 *
 * Every function that takes a kshim_ref_t first makes that guest's RAM the
 * "current" user address space (linux/uaccess.h), so several guests can be
 * driven in turn from one thread.  The shim is not meant to drive two
 * guests from two threads at once.
 */
#ifndef KSHIM_GLUE_H
#define KSHIM_GLUE_H

#include <stddef.h>
#include <stdint.h>

#include "kshim_lgcore.h"

/* Returned by a wrapper that refused a call the original would crash on. */
#define KSHIM_EREFUSED (-10000)

/* KSHIM_CDEF_BEGIN */
typedef struct kshim_ref kshim_ref_t;

/* ---- one guest + one vCPU ---- */
kshim_ref_t *kshim_new(uint8_t *mem, uint64_t mem_len);
void kshim_free(kshim_ref_t *r);
/* Rebind the RAM buffer (pfn_limit is left alone). */
void kshim_set_ram(kshim_ref_t *r, uint8_t *mem, uint64_t mem_len);

/*
 * Copy lgcore state in (either pointer may be NULL to skip it) and out.
 * Not transferred: the RAM binding (mem, mem_len: see kshim_new /
 * kshim_set_ram), the lg and clock pointers, lg_cpu_t.reserved.  In: the
 * clock's mode and now (when g->clock is set) become the shim clock; the
 * kill code and arguments become the original's message text.  Out: the
 * text is parsed back into code + arguments (LG_KILL_TEXT if it matches no
 * known message).
 */
void kshim_state_in(kshim_ref_t *r, const lg_guest_t *g, const lg_cpu_t *c);
void kshim_state_out(kshim_ref_t *r, lg_guest_t *g, lg_cpu_t *c);

/* Direct views of the original's vCPU state. */
lg_regs_t *kshim_regs(kshim_ref_t *r);
lg_desc_t *kshim_idt(kshim_ref_t *r);

/* ---- what the shim recorded ---- */
const char *kshim_dead_reason(kshim_ref_t *r);	/* NULL while alive */
void kshim_kill_text(kshim_ref_t *r, const char *text);	/* first sticks */
void kshim_revive(kshim_ref_t *r);
int kshim_timer_armed(kshim_ref_t *r, int64_t *expires_ns);
int kshim_timer_has_function(kshim_ref_t *r);
void kshim_timer_set(kshim_ref_t *r, int armed, int64_t expires_ns);
/* Run the callback (disarming first, as the timer has expired); returns
 * its hrtimer_restart value, or -1 if init_clockdev() has not run. */
int kshim_timer_fire(kshim_ref_t *r);
/* Fire if armed and the expiry is at or before the shim clock's now. */
int kshim_timer_run_expired(kshim_ref_t *r);
void kshim_task_set_wake_result(kshim_ref_t *r, int result);
void kshim_task_counts(kshim_ref_t *r, uint64_t *wakes, uint64_t *kicks);
void kshim_task_reset_counts(kshim_ref_t *r);

/* ---- host-global state (the "kernel" all guests share) ---- */
void kshim_host_reset(void);
unsigned int *kshim_param_syscall_vector(void);
unsigned int kshim_get_syscall_vector(void);
void kshim_set_syscall_vector(unsigned int vector);
void kshim_get_used_vectors(uint32_t out[8]);
void kshim_set_used_vectors(const uint32_t in[8]);
void kshim_get_percpu_vectors(uint32_t out[8]);
void kshim_set_percpu_vectors(const uint32_t in[8]);
const char *kshim_last_printk(int *level);
unsigned long kshim_printk_count(void);
void kshim_clock_set(int32_t mode, int64_t virtual_ns);
int32_t kshim_clock_mode(void);
int64_t kshim_clock_now(void);
void kshim_set_current_mm(unsigned char *base, uint64_t len);

/* ---- the original's entry points ---- */
/* *more is written only if the original writes it. */
unsigned int kshim_interrupt_pending(kshim_ref_t *r, int *more);
/* KSHIM_EREFUSED for irq >= 32 (the original would BUG()), else 0. */
int kshim_try_deliver_interrupt(kshim_ref_t *r, unsigned int irq, int more);
/* KSHIM_EREFUSED for irq >= 32 (the original would write past the
 * pending bitmap), else 0. */
int kshim_set_interrupt(kshim_ref_t *r, unsigned int irq);
int kshim_check_syscall_vector(kshim_ref_t *r);
/* KSHIM_EREFUSED when syscall_vector >= 256 (the original would index
 * past the used_vectors bitmap); otherwise the original's result. */
int kshim_init_interrupts(void);
int kshim_free_interrupts(void);
int kshim_deliver_trap(kshim_ref_t *r, unsigned int num);
void kshim_pin_stack_pages(kshim_ref_t *r);
void kshim_guest_set_stack(kshim_ref_t *r, uint32_t seg, uint32_t esp,
			   unsigned int pages);
void kshim_load_guest_idt_entry(kshim_ref_t *r, unsigned int num,
				uint32_t lo, uint32_t hi);
/* def: 256 Switcher stub addresses, widened to unsigned long inside. */
void kshim_setup_default_idt_entries(lg_desc_t *idt, const uint32_t *def);
void kshim_copy_traps(kshim_ref_t *r, lg_desc_t *idt, const uint32_t *def);
void kshim_guest_set_clockevent(kshim_ref_t *r, uint32_t delta);
void kshim_init_clockdev(kshim_ref_t *r);

/* ---- the shim's own helpers (spec semantics, not the original) ---- */
uint32_t kshim_guest_pa(kshim_ref_t *r, uint32_t vaddr);
void kshim_pin_page(kshim_ref_t *r, uint32_t vaddr);
void kshim_write_timestamp(kshim_ref_t *r);
/* The seed-era rule alone (lguest_address_ok of core.c). */
int kshim_lguest_address_ok(kshim_ref_t *r, uint32_t addr, uint32_t len);
/* The rule and the RAM bound: whether lgread/lgwrite of the range succeed
 * (lgcore's Guest.lguest_address_ok answers this). */
int kshim_range_ok(kshim_ref_t *r, uint32_t addr, uint32_t len);

/*
 * ---- C loops for benchmarks: n iterations, nothing returned ----
 * deliver_irq and deliver_trap put back the registers, halted and the
 * guest's irq_enabled word as they were on entry before every iteration,
 * so each iteration does the same work (the restore is part of the timed
 * loop: a 72-byte copy and a 4-byte store).
 */
void kshim_bench_interrupt_pending(kshim_ref_t *r, uint64_t n);
void kshim_bench_deliver_irq(kshim_ref_t *r, unsigned int irq, uint64_t n);
void kshim_bench_deliver_trap(kshim_ref_t *r, unsigned int num, uint64_t n);
void kshim_bench_load_guest_idt_entry(kshim_ref_t *r, unsigned int num,
				      uint32_t lo, uint32_t hi, uint64_t n);
void kshim_bench_copy_traps(kshim_ref_t *r, lg_desc_t *idt,
			    const uint32_t *def, uint64_t n);
void kshim_bench_setup_default_idt_entries(lg_desc_t *idt,
					   const uint32_t *def, uint64_t n);
/* KSHIM_CDEF_END */

#endif /* KSHIM_GLUE_H */
