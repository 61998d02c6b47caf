/*
 * linux/interrupt.h (kshim) - what the lguest interrupt code expects to get
 * from the kernel's interrupt headers: types, bit operations, hrtimers,
 * tasks and the host's vector bookkeeping.
 *
 * SPDX-License-Identifier: GPL-2.0-only
 */
#ifndef KSHIM_LINUX_INTERRUPT_H
#define KSHIM_LINUX_INTERRUPT_H

#include "../kshim_kernel.h"
#include "../kshim_bitops.h"
#include "../kshim_time.h"
#include "../kshim_sched.h"

#define NR_VECTORS            256
#define FIRST_EXTERNAL_VECTOR 0x20
#define SYSCALL_VECTOR        0x80

/*
 * The host's record of IDT vectors in use (arch/x86/kernel/traps.c).  The
 * harness initialises it as 32-bit trap_init() leaves it (0..31 and 0x80)
 * and may change it.
 */
extern DECLARE_BITMAP(used_vectors, NR_VECTORS);

/*
 * Whether some CPU routes this vector to a device IRQ: answered from a
 * 256-bit table the harness sets (vectors >= 256 are never in use).
 */
int vector_used_by_percpu_irq(unsigned int vector);

#endif /* KSHIM_LINUX_INTERRUPT_H */
