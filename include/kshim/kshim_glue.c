/*
 * kshim_glue.c - the harness side of the userspace build of the C original.
 * See kshim_glue.h for the interface.
 *
 * SPDX-License-Identifier: GPL-2.0-only
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lg.h"
#include "linux/interrupt.h"
#include "kshim_glue.h"

struct kshim_ref {
	struct lguest lg;
	struct lg_cpu cpu;
	lg_regs_t regs;
	struct task_struct task;
	u32 lguest_data_gpa;	/* remembered while lguest_data is NULL */
	u32 fixes;		/* lgcore's profile bits: no effect here */
};

#if defined(__STDC_VERSION__) && __STDC_VERSION__ >= 201112L
_Static_assert(sizeof(((lg_cpu_t *)0)->idt) ==
	       sizeof(((struct lg_cpu *)0)->arch.idt), "IDT size");
_Static_assert(offsetof(struct lguest_ro_state, guest_idt) == 0, "ro state");
#endif

/* Stands in for RAM when the caller hands over none. */
static u8 no_ram[1];

static inline void enter(kshim_ref_t *r)
{
	kshim_current_mm.base = r->lg.mem_base;
	kshim_current_mm.len = r->lg.mem_len;
}

static lg_lguest_data_t *lguest_data_at(kshim_ref_t *r, u32 gpa)
{
	return (lg_lguest_data_t *)((uintptr_t)r->lg.mem_base + gpa);
}

/* ---- one guest + one vCPU ---- */

void kshim_set_ram(kshim_ref_t *r, uint8_t *mem, uint64_t mem_len)
{
	bool had = r->lg.lguest_data != NULL;

	if (!mem) {
		mem = no_ram;
		mem_len = 0;
	}
	r->lg.mem_base = mem;
	r->lg.mem_len = mem_len;
	if (had)
		r->lg.lguest_data = lguest_data_at(r, r->lguest_data_gpa);
}

kshim_ref_t *kshim_new(uint8_t *mem, uint64_t mem_len)
{
	kshim_ref_t *r = calloc(1, sizeof(*r));
	u64 pages;

	if (!r)
		return NULL;
	kshim_set_ram(r, mem, mem_len);
	pages = r->lg.mem_len >> PAGE_SHIFT;
	r->lg.pfn_limit = pages > 0xFFFFFFFFu ? 0xFFFFFFFFu : (u32)pages;
	r->cpu.lg = &r->lg;
	r->cpu.tsk = &r->task;
	r->cpu.regs = &r->regs;
	r->task.wake_result = 1;
	return r;
}

void kshim_free(kshim_ref_t *r)
{
	if (!r)
		return;
	if (kshim_current_mm.base == r->lg.mem_base) {
		kshim_current_mm.base = NULL;
		kshim_current_mm.len = 0;
	}
	free(r);
}

/* ---- kill reasons: lgcore's code + arguments <-> the original's text ---- */

static void render_kill(char *out, size_t size, int code, const u32 *a)
{
	switch (code) {
	case LG_KILL_DISABLING_INTERRUPTS:
		kshim_format_kernel(out, size, "Disabling interrupts");
		break;
	case LG_KILL_REENABLING_INTERRUPTS:
		kshim_format_kernel(out, size, "Re-enabling interrupts");
		break;
	case LG_KILL_BAD_STACK_SEGMENT:
		kshim_format_kernel(out, size, "bad stack segment %i", (int)a[0]);
		break;
	case LG_KILL_BAD_STACK_PAGES:
		kshim_format_kernel(out, size, "bad stack pages %u", a[0]);
		break;
	case LG_KILL_BAD_IDT_TYPE:
		kshim_format_kernel(out, size, "bad IDT type %i", (int)a[0]);
		break;
	case LG_KILL_SETTING_IDT_ENTRY:
		kshim_format_kernel(out, size, "Setting idt entry %u", a[0]);
		break;
	case LG_KILL_BAD_READ:
		kshim_format_kernel(out, size, "bad read address %#lx len %u",
				    (unsigned long)a[0], a[1]);
		break;
	case LG_KILL_BAD_WRITE:
		kshim_format_kernel(out, size, "bad write address %#lx len %u",
				    (unsigned long)a[0], a[1]);
		break;
	case LG_KILL_BAD_ADDRESS:
		kshim_format_kernel(out, size, "Bad address %#lx",
				    (unsigned long)a[0]);
		break;
	case LG_KILL_WRITING_TIMESTAMP:
		kshim_format_kernel(out, size, "Writing timestamp");
		break;
	case LG_KILL_BAD_STACK_PAGE:
		kshim_format_kernel(out, size, "bad stack page %#lx",
				    (unsigned long)a[0]);
		break;
	default:		/* LG_KILL_TEXT: the text lives in lgcore's policy layer */
		out[0] = '\0';
		break;
	}
}

/*
 * Find the code whose message, rendered with the scanned arguments, is
 * exactly "text".  Re-rendering rejects near misses (leading zeros, values
 * wider than 32 bits, trailing text).
 */
static int parse_kill(const char *text, u32 args[3])
{
	static const struct {
		int code;
		const char *scan;	/* NULL: fixed text */
		int nargs;
	} known[] = {
		{ LG_KILL_DISABLING_INTERRUPTS, NULL, 0 },
		{ LG_KILL_REENABLING_INTERRUPTS, NULL, 0 },
		{ LG_KILL_BAD_STACK_SEGMENT, "bad stack segment %lu", 1 },
		{ LG_KILL_BAD_STACK_PAGES, "bad stack pages %lu", 1 },
		{ LG_KILL_BAD_IDT_TYPE, "bad IDT type %lu", 1 },
		{ LG_KILL_SETTING_IDT_ENTRY, "Setting idt entry %lu", 1 },
		{ LG_KILL_BAD_READ, "bad read address 0x%lx len %lu", 2 },
		{ LG_KILL_BAD_WRITE, "bad write address 0x%lx len %lu", 2 },
		{ LG_KILL_BAD_ADDRESS, "Bad address 0x%lx", 1 },
		{ LG_KILL_WRITING_TIMESTAMP, NULL, 0 },
		{ LG_KILL_BAD_STACK_PAGE, "bad stack page 0x%lx", 1 },
	};
	char again[KSHIM_DEAD_LEN];
	size_t k;

	for (k = 0; k < ARRAY_SIZE(known); k++) {
		unsigned long v[2] = { 0, 0 };
		u32 a[3] = { 0, 0, 0 };

		if (known[k].scan &&
		    sscanf(text, known[k].scan, &v[0], &v[1]) != known[k].nargs)
			continue;
		a[0] = (u32)v[0];
		a[1] = (u32)v[1];
		render_kill(again, sizeof(again), known[k].code, a);
		if (strcmp(again, text) == 0) {
			memcpy(args, a, sizeof(a));
			return known[k].code;
		}
	}
	args[0] = args[1] = args[2] = 0;
	return LG_KILL_TEXT;
}

/* ---- state transfer ---- */

void kshim_state_in(kshim_ref_t *r, const lg_guest_t *g, const lg_cpu_t *c)
{
	if (g) {
		struct lguest *lg = &r->lg;

		lg->pfn_limit = g->pfn_limit;
		r->lguest_data_gpa = g->lguest_data;
		lg->lguest_data = g->has_lguest_data ?
			lguest_data_at(r, g->lguest_data) : NULL;
		lg->noirq_start = g->noirq_start;
		lg->noirq_end = g->noirq_end;
		lg->stack_pages = g->stack_pages;
		*kshim_param_syscall_vector() = g->syscall_vector;
		r->fixes = g->fixes;
		if (g->clock)
			kshim_clock_set(g->clock->mode, g->clock->virtual_ns);
		lg->dead = g->dead != LG_KILL_NONE;
		if (lg->dead)
			render_kill(lg->dead_reason, sizeof(lg->dead_reason),
				    g->dead, g->dead_args);
		else
			lg->dead_reason[0] = '\0';
	}
	if (c) {
		struct lg_cpu *cpu = &r->cpu;

		r->regs = c->regs;
		memcpy(cpu->arch.idt, c->idt, sizeof(cpu->arch.idt));
		cpu->irqs_pending[0] = c->irqs_pending;
		cpu->esp1 = c->esp1;
		cpu->ss1 = c->ss1;
		cpu->changed = c->changed;
		cpu->halted = c->halted;
		cpu->pgdir = c->pgdir;
		cpu->paging = c->paging;
	}
}

void kshim_state_out(kshim_ref_t *r, lg_guest_t *g, lg_cpu_t *c)
{
	if (g) {
		struct lguest *lg = &r->lg;

		g->pfn_limit = lg->pfn_limit;
		g->has_lguest_data = lg->lguest_data != NULL;
		g->lguest_data = lg->lguest_data ?
			(u32)((uintptr_t)lg->lguest_data -
			      (uintptr_t)lg->mem_base) : r->lguest_data_gpa;
		g->noirq_start = lg->noirq_start;
		g->noirq_end = lg->noirq_end;
		g->stack_pages = lg->stack_pages;
		g->syscall_vector = *kshim_param_syscall_vector();
		g->fixes = r->fixes;
		lg_guest_sync(g);
		if (lg->dead) {
			g->dead = parse_kill(lg->dead_reason, g->dead_args);
		} else {
			g->dead = LG_KILL_NONE;
			g->dead_args[0] = g->dead_args[1] = g->dead_args[2] = 0;
		}
	}
	if (c) {
		const struct lg_cpu *cpu = &r->cpu;

		c->regs = r->regs;
		memcpy(c->idt, cpu->arch.idt, sizeof(c->idt));
		c->irqs_pending = cpu->irqs_pending[0];
		c->esp1 = cpu->esp1;
		c->ss1 = cpu->ss1;
		c->changed = cpu->changed;
		c->halted = cpu->halted;
		c->pgdir = cpu->pgdir;
		c->paging = cpu->paging;
	}
}

lg_regs_t *kshim_regs(kshim_ref_t *r)
{
	return &r->regs;
}

lg_desc_t *kshim_idt(kshim_ref_t *r)
{
	return (lg_desc_t *)r->cpu.arch.idt;
}

/* ---- what the shim recorded ---- */

const char *kshim_dead_reason(kshim_ref_t *r)
{
	return r->lg.dead ? r->lg.dead_reason : NULL;
}

void kshim_kill_text(kshim_ref_t *r, const char *text)
{
	kshim_kill_guest(&r->lg, "%s", text);
}

void kshim_revive(kshim_ref_t *r)
{
	r->lg.dead = false;
	r->lg.dead_reason[0] = '\0';
}

int kshim_timer_armed(kshim_ref_t *r, int64_t *expires_ns)
{
	if (expires_ns)
		*expires_ns = r->cpu.hrt.expires;
	return r->cpu.hrt.armed;
}

int kshim_timer_has_function(kshim_ref_t *r)
{
	return r->cpu.hrt.function != NULL;
}

void kshim_timer_set(kshim_ref_t *r, int armed, int64_t expires_ns)
{
	r->cpu.hrt.armed = armed != 0;
	r->cpu.hrt.expires = expires_ns;
}

int kshim_timer_fire(kshim_ref_t *r)
{
	struct hrtimer *t = &r->cpu.hrt;
	enum hrtimer_restart again;

	if (!t->function)
		return -1;
	enter(r);
	t->armed = 0;
	again = t->function(t);
	if (again == HRTIMER_RESTART)
		t->armed = 1;
	return again;
}

int kshim_timer_run_expired(kshim_ref_t *r)
{
	if (!r->cpu.hrt.armed || r->cpu.hrt.expires > ktime_get_real())
		return 0;
	kshim_timer_fire(r);
	return 1;
}

void kshim_task_set_wake_result(kshim_ref_t *r, int result)
{
	r->task.wake_result = result;
}

void kshim_task_counts(kshim_ref_t *r, uint64_t *wakes, uint64_t *kicks)
{
	if (wakes)
		*wakes = r->task.wake_calls;
	if (kicks)
		*kicks = r->task.kick_calls;
}

void kshim_task_reset_counts(kshim_ref_t *r)
{
	r->task.wake_calls = 0;
	r->task.kick_calls = 0;
}

unsigned int kshim_get_syscall_vector(void)
{
	return *kshim_param_syscall_vector();
}

void kshim_set_syscall_vector(unsigned int vector)
{
	*kshim_param_syscall_vector() = vector;
}

/* ---- the original's entry points ---- */

unsigned int kshim_interrupt_pending(kshim_ref_t *r, int *more)
{
	/* A canary byte shows whether the original stored to *more. */
	union {
		bool b;
		unsigned char raw;
	} m;
	unsigned int irq;

	m.raw = 0xA5;
	enter(r);
	irq = interrupt_pending(&r->cpu, &m.b);
	if (more && m.raw != 0xA5)
		*more = m.b;
	return irq;
}

int kshim_try_deliver_interrupt(kshim_ref_t *r, unsigned int irq, int more)
{
	if (irq >= LGUEST_IRQS)
		return KSHIM_EREFUSED;
	enter(r);
	try_deliver_interrupt(&r->cpu, irq, more != 0);
	return 0;
}

int kshim_set_interrupt(kshim_ref_t *r, unsigned int irq)
{
	if (irq >= LGUEST_IRQS)
		return KSHIM_EREFUSED;
	enter(r);
	set_interrupt(&r->cpu, irq);
	return 0;
}

int kshim_check_syscall_vector(kshim_ref_t *r)
{
	enter(r);
	return check_syscall_vector(&r->lg);
}

int kshim_init_interrupts(void)
{
	if (*kshim_param_syscall_vector() >= NR_VECTORS)
		return KSHIM_EREFUSED;
	return init_interrupts();
}

int kshim_free_interrupts(void)
{
	if (*kshim_param_syscall_vector() >= NR_VECTORS)
		return KSHIM_EREFUSED;
	free_interrupts();
	return 0;
}

int kshim_deliver_trap(kshim_ref_t *r, unsigned int num)
{
	enter(r);
	return deliver_trap(&r->cpu, num);
}

void kshim_pin_stack_pages(kshim_ref_t *r)
{
	enter(r);
	pin_stack_pages(&r->cpu);
}

void kshim_guest_set_stack(kshim_ref_t *r, uint32_t seg, uint32_t esp,
			   unsigned int pages)
{
	enter(r);
	guest_set_stack(&r->cpu, seg, esp, pages);
}

void kshim_load_guest_idt_entry(kshim_ref_t *r, unsigned int num,
				uint32_t lo, uint32_t hi)
{
	enter(r);
	load_guest_idt_entry(&r->cpu, num, lo, hi);
}

/* lg.h note 5: the original wants unsigned long stub addresses. */
static void widen_defaults(unsigned long *wide, const uint32_t *def)
{
	unsigned int i;

	for (i = 0; i < IDT_ENTRIES; i++)
		wide[i] = def[i];
}

void kshim_setup_default_idt_entries(lg_desc_t *idt, const uint32_t *def)
{
	unsigned long wide[IDT_ENTRIES];
	struct lguest_ro_state state;

	widen_defaults(wide, def);
	memcpy(state.guest_idt, idt, sizeof(state.guest_idt));
	setup_default_idt_entries(&state, wide);
	memcpy(idt, state.guest_idt, sizeof(state.guest_idt));
}

void kshim_copy_traps(kshim_ref_t *r, lg_desc_t *idt, const uint32_t *def)
{
	unsigned long wide[IDT_ENTRIES];

	widen_defaults(wide, def);
	enter(r);
	copy_traps(&r->cpu, (struct desc_struct *)idt, wide);
}

void kshim_guest_set_clockevent(kshim_ref_t *r, uint32_t delta)
{
	enter(r);
	guest_set_clockevent(&r->cpu, delta);
}

void kshim_init_clockdev(kshim_ref_t *r)
{
	enter(r);
	init_clockdev(&r->cpu);
}

/* ---- the shim's own helpers ---- */

uint32_t kshim_guest_pa(kshim_ref_t *r, uint32_t vaddr)
{
	enter(r);
	return (uint32_t)guest_pa(&r->cpu, vaddr);
}

void kshim_pin_page(kshim_ref_t *r, uint32_t vaddr)
{
	enter(r);
	pin_page(&r->cpu, vaddr);
}

void kshim_write_timestamp(kshim_ref_t *r)
{
	enter(r);
	write_timestamp(&r->cpu);
}

int kshim_lguest_address_ok(kshim_ref_t *r, uint32_t addr, uint32_t len)
{
	return lguest_address_ok(&r->lg, addr, len);
}

int kshim_range_ok(kshim_ref_t *r, uint32_t addr, uint32_t len)
{
	return kshim_guest_range_ok(&r->lg, addr, len);
}

/* ---- benchmark loops ---- */

/* Keep a value alive without costing an instruction. */
#define KEEP(v) __asm__ volatile("" : : "r"(v))

struct snapshot {
	lg_regs_t regs;
	int halted;
	bool have_irq_enabled;
	u32 irq_enabled;
};

static void take_snapshot(kshim_ref_t *r, struct snapshot *s)
{
	s->regs = r->regs;
	s->halted = r->cpu.halted;
	s->have_irq_enabled = r->lg.lguest_data != NULL &&
		get_user(s->irq_enabled, &r->lg.lguest_data->irq_enabled) == 0;
}

static inline void restore_snapshot(kshim_ref_t *r, const struct snapshot *s)
{
	r->regs = s->regs;
	r->cpu.halted = s->halted;
	if (s->have_irq_enabled)
		memcpy(&r->lg.lguest_data->irq_enabled, &s->irq_enabled, 4);
}

void kshim_bench_interrupt_pending(kshim_ref_t *r, uint64_t n)
{
	bool more;
	uint64_t i;

	enter(r);
	for (i = 0; i < n; i++) {
		unsigned int irq = interrupt_pending(&r->cpu, &more);

		KEEP(irq);
	}
}

void kshim_bench_deliver_irq(kshim_ref_t *r, unsigned int irq, uint64_t n)
{
	struct snapshot s;
	uint64_t i;

	if (irq >= LGUEST_IRQS)
		return;
	enter(r);
	take_snapshot(r, &s);
	for (i = 0; i < n; i++) {
		unsigned int got;
		bool more = false;

		restore_snapshot(r, &s);
		set_interrupt(&r->cpu, irq);
		got = interrupt_pending(&r->cpu, &more);
		if (got < LGUEST_IRQS)
			try_deliver_interrupt(&r->cpu, got, more);
	}
}

void kshim_bench_deliver_trap(kshim_ref_t *r, unsigned int num, uint64_t n)
{
	struct snapshot s;
	uint64_t i;

	enter(r);
	take_snapshot(r, &s);
	for (i = 0; i < n; i++) {
		bool ok;

		restore_snapshot(r, &s);
		ok = deliver_trap(&r->cpu, num);
		KEEP(ok);
	}
}

void kshim_bench_load_guest_idt_entry(kshim_ref_t *r, unsigned int num,
				      uint32_t lo, uint32_t hi, uint64_t n)
{
	uint64_t i;

	enter(r);
	for (i = 0; i < n; i++)
		load_guest_idt_entry(&r->cpu, num, lo, hi);
}

void kshim_bench_copy_traps(kshim_ref_t *r, lg_desc_t *idt,
			    const uint32_t *def, uint64_t n)
{
	unsigned long wide[IDT_ENTRIES];
	uint64_t i;

	widen_defaults(wide, def);
	enter(r);
	for (i = 0; i < n; i++)
		copy_traps(&r->cpu, (struct desc_struct *)idt, wide);
}

void kshim_bench_setup_default_idt_entries(lg_desc_t *idt,
					   const uint32_t *def, uint64_t n)
{
	unsigned long wide[IDT_ENTRIES];
	struct lguest_ro_state state;
	uint64_t i;

	widen_defaults(wide, def);
	memcpy(state.guest_idt, idt, sizeof(state.guest_idt));
	for (i = 0; i < n; i++)
		setup_default_idt_entries(&state, wide);
	memcpy(idt, state.guest_idt, sizeof(state.guest_idt));
}
