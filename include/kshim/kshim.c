/*
 * kshim.c - the out-of-line half of the kernel shim: the lguest helpers
 * that live in other lguest files (kill_guest, the guest-memory accessors,
 * guest_pa, pin_page, write_timestamp), the scheduler and clock stand-ins,
 * printk and the host-global state (used vectors, the "current" RAM).
 *
 * SPDX-License-Identifier: GPL-2.0-only
 *
 * Built as its own translation unit, as these helpers are in the kernel, so
 * the C original calls them out of line exactly as it would there.  See
 * lg.h for the i386-versus-x86-64 notes (the numbers below refer to it).
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "lg.h"
#include "linux/interrupt.h"
#include "kshim_glue.h"

/* ---- host-global state ---- */

struct kshim_mm kshim_current_mm;
struct kshim_clock kshim_clock = { KSHIM_CLOCK_VIRTUAL, 0 };
DECLARE_BITMAP(used_vectors, NR_VECTORS);
static DECLARE_BITMAP(percpu_irq_vectors, NR_VECTORS);

static char last_printk[512];
static int last_printk_level = -1;
static unsigned long printk_count;

void kshim_bug(const char *file, int line, const char *cond)
{
	fprintf(stderr, "kshim: BUG at %s:%d: %s\n", file, line, cond);
	abort();
}

int kshim_printk(const char *fmt, ...)
{
	char buf[sizeof(last_printk)];
	const char *text = buf;
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);

	last_printk_level = -1;
	if (buf[0] == '<' && buf[1] >= '0' && buf[1] <= '7' && buf[2] == '>') {
		last_printk_level = buf[1] - '0';
		text = buf + 3;
	}
	snprintf(last_printk, sizeof(last_printk), "%s", text);
	printk_count++;
	return n;
}

int vector_used_by_percpu_irq(unsigned int vector)
{
	return vector < NR_VECTORS && test_bit(vector, percpu_irq_vectors);
}

int wake_up_process(struct task_struct *tsk)
{
	tsk->wake_calls++;
	return tsk->wake_result;
}

void kick_process(struct task_struct *tsk)
{
	tsk->kick_calls++;
}

ktime_t ktime_get_real(void)
{
	struct timespec ts;

	if (kshim_clock.mode == KSHIM_CLOCK_VIRTUAL)
		return __atomic_load_n(&kshim_clock.virtual_ns, __ATOMIC_RELAXED);
	clock_gettime(CLOCK_REALTIME, &ts);
	return (s64)ts.tv_sec * NSEC_PER_SEC + ts.tv_nsec;
}

/* ---- kill_guest ---- */

/*
 * Rewrite the format so that "%#lx"/"%#x" always print a 0x prefix: the
 * kernel prints 0 as "0x0", glibc as "0".  For non-zero values the two
 * spellings agree.  The original and our helpers use these conversions
 * with no width or precision, which is all this handles.
 */
static void kernel_style_format(char *out, size_t size, const char *fmt)
{
	size_t o = 0;

	while (*fmt && o + 1 < size) {
		if (fmt[0] == '%' && fmt[1] == '#' &&
		    (fmt[2] == 'x' || (fmt[2] == 'l' && fmt[3] == 'x'))) {
			const char *rest = fmt + 2;	/* "x" or "lx" */

			if (o + 6 >= size)
				break;
			out[o++] = '0';
			out[o++] = 'x';
			out[o++] = '%';
			while (*rest != 'x')
				out[o++] = *rest++;
			out[o++] = 'x';
			fmt = rest + 1;
		} else if (fmt[0] == '%' && fmt[1] == '%') {
			if (o + 2 >= size)
				break;
			out[o++] = *fmt++;
			out[o++] = *fmt++;
		} else {
			out[o++] = *fmt++;
		}
	}
	out[o] = '\0';
}

static void kshim_vformat_kernel(char *out, size_t size, const char *fmt,
				 va_list ap)
{
	char kfmt[256];

	kernel_style_format(kfmt, sizeof(kfmt), fmt);
	vsnprintf(out, size, kfmt, ap);
}

void kshim_format_kernel(char *out, size_t size, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	kshim_vformat_kernel(out, size, fmt, ap);
	va_end(ap);
}

void kshim_kill_guest(struct lguest *lg, const char *fmt, ...)
{
	va_list ap;

	if (lg->dead)
		return;
	va_start(ap, fmt);
	kshim_vformat_kernel(lg->dead_reason, sizeof(lg->dead_reason), fmt, ap);
	va_end(ap);
	lg->dead = true;
}

/* ---- guest-physical memory ---- */

bool lguest_address_ok(const struct lguest *lg,
		       unsigned long addr, unsigned long len)
{
	u32 start = (u32)addr, end = (u32)addr + (u32)len;	/* note 7 */

	return end / PAGE_SIZE < lg->pfn_limit && end >= start;
}

/* Inside the RAM buffer, in 64-bit arithmetic (no wrap possible). */
static bool in_ram(const struct lguest *lg, u32 addr, u32 len)
{
	return (u64)addr + len <= lg->mem_len;
}

bool kshim_guest_range_ok(const struct lguest *lg, u32 addr, u32 len)
{
	return lguest_address_ok(lg, addr, len) && in_ram(lg, addr, len);
}

void kshim_lgread(struct lg_cpu *cpu, void *buf, unsigned long addr,
		  unsigned int bytes)
{
	struct lguest *lg = cpu->lg;
	u32 gpa = (u32)addr;					/* note 2 */

	if (!kshim_guest_range_ok(lg, gpa, bytes)) {
		memset(buf, 0, bytes);
		kill_guest(cpu, "bad read address %#lx len %u",
			   (unsigned long)gpa, bytes);
		return;
	}
	memcpy(buf, lg->mem_base + gpa, bytes);
}

void kshim_lgwrite(struct lg_cpu *cpu, unsigned long addr, const void *buf,
		   unsigned int bytes)
{
	struct lguest *lg = cpu->lg;
	u32 gpa = (u32)addr;					/* note 2 */

	if (!kshim_guest_range_ok(lg, gpa, bytes)) {
		kill_guest(cpu, "bad write address %#lx len %u",
			   (unsigned long)gpa, bytes);
		return;
	}
	memcpy(lg->mem_base + gpa, buf, bytes);
}

/* ---- guest page tables (non-PAE, two levels) ---- */

static u32 pde_address(const struct lg_cpu *cpu, u32 vaddr)
{
	return cpu->pgdir + (vaddr >> 22) * 4u;			/* note 8 */
}

static u32 pte_address(u32 pde, u32 vaddr)
{
	return (pde & 0xFFFFF000u) + ((vaddr >> PAGE_SHIFT) & 0x3FFu) * 4u;
}

unsigned long guest_pa(struct lg_cpu *cpu, unsigned long vaddr)
{
	u32 va = (u32)vaddr, pde, pte;

	if (!cpu->paging)
		return va;

	pde = lgread(cpu, pde_address(cpu, va), u32);
	if (!(pde & _PAGE_PRESENT)) {
		kill_guest(cpu, "Bad address %#lx", (unsigned long)va);
		return 0xFFFFFFFFUL;			/* i386's -1UL (note 3) */
	}
	pte = lgread(cpu, pte_address(pde, va), u32);
	if (!(pte & _PAGE_PRESENT))
		kill_guest(cpu, "Bad address %#lx", (unsigned long)va);
	return (pte & 0xFFFFF000u) | (va & 0xFFFu);
}

void pin_page(struct lg_cpu *cpu, unsigned long vaddr)
{
	u32 va = (u32)vaddr, pde, pte;			/* note 4 */

	if (!cpu->paging) {
		if ((va >> PAGE_SHIFT) >= cpu->lg->pfn_limit)
			kill_guest(cpu, "bad stack page %#lx", (unsigned long)va);
		return;
	}
	pde = lgread(cpu, pde_address(cpu, va), u32);
	if (!(pde & _PAGE_PRESENT)) {
		kill_guest(cpu, "bad stack page %#lx", (unsigned long)va);
		return;
	}
	pte = lgread(cpu, pte_address(pde, va), u32);
	if ((pte & (_PAGE_PRESENT | _PAGE_RW)) != (_PAGE_PRESENT | _PAGE_RW))
		kill_guest(cpu, "bad stack page %#lx", (unsigned long)va);
}

/* ---- the clock in lguest_data ---- */

void write_timestamp(struct lg_cpu *cpu)
{
	s64 now = ktime_get_real();
	s64 sec = now / NSEC_PER_SEC, nsec = now % NSEC_PER_SEC;
	s32 ts[2];
	void __user *dst;

	if (nsec < 0) {			/* timespec keeps 0 <= nsec < 1e9 */
		nsec += NSEC_PER_SEC;
		sec -= 1;
	}
	ts[0] = (s32)(u32)(u64)sec;		/* note 11: 32-bit time_t */
	ts[1] = (s32)nsec;
	dst = (void __user *)((uintptr_t)cpu->lg->lguest_data + LG_LD_TIME);
	if (copy_to_user(dst, ts, sizeof(ts)))
		kill_guest(cpu, "Writing timestamp");
}

/* ---- harness access to the host-global state ---- */

void kshim_set_current_mm(unsigned char *base, uint64_t len)
{
	kshim_current_mm.base = base;
	kshim_current_mm.len = len;
}

void kshim_host_reset(void)
{
	unsigned int v;

	memset(used_vectors, 0, sizeof(used_vectors));
	memset(percpu_irq_vectors, 0, sizeof(percpu_irq_vectors));
	/* What 32-bit trap_init() leaves: the exceptions and int $0x80. */
	for (v = 0; v < FIRST_EXTERNAL_VECTOR; v++)
		set_bit(v, used_vectors);
	set_bit(SYSCALL_VECTOR, used_vectors);
	*kshim_param_syscall_vector() = SYSCALL_VECTOR;
	last_printk[0] = '\0';
	last_printk_level = -1;
	printk_count = 0;
	kshim_clock.mode = KSHIM_CLOCK_VIRTUAL;
	kshim_clock.virtual_ns = 0;
}

void kshim_get_used_vectors(uint32_t out[8])
{
	memcpy(out, used_vectors, sizeof(used_vectors));
}

void kshim_set_used_vectors(const uint32_t in[8])
{
	memcpy(used_vectors, in, sizeof(used_vectors));
}

void kshim_get_percpu_vectors(uint32_t out[8])
{
	memcpy(out, percpu_irq_vectors, sizeof(percpu_irq_vectors));
}

void kshim_set_percpu_vectors(const uint32_t in[8])
{
	memcpy(percpu_irq_vectors, in, sizeof(percpu_irq_vectors));
}

const char *kshim_last_printk(int *level)
{
	if (level)
		*level = last_printk_level;
	return last_printk;
}

unsigned long kshim_printk_count(void)
{
	return printk_count;
}

void kshim_clock_set(int32_t mode, int64_t virtual_ns)
{
	kshim_clock.mode = mode;
	__atomic_store_n(&kshim_clock.virtual_ns, virtual_ns, __ATOMIC_RELAXED);
}

int32_t kshim_clock_mode(void)
{
	return kshim_clock.mode;
}

int64_t kshim_clock_now(void)
{
	return ktime_get_real();
}
