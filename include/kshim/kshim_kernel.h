/*
 * kshim_kernel.h - the small part of the kernel's core headers that the
 * lguest interrupt code leans on: fixed-width types, compiler hints,
 * ARRAY_SIZE/container_of, BUG_ON and printk.
 *
 * SPDX-License-Identifier: GPL-2.0-only
 *
 * Part of lgcore's userspace "kernel shim": stand-in headers that let the
 * unmodified C original (drivers/lguest/interrupts_and_traps.c) build as an
 * ordinary userspace object for differential tests and benchmarks.  The
 * names below follow the kernel's so the original compiles untouched; the
 * implementations are ours.
 *
 * Do not name shim headers after files that glibc itself includes
 * (linux/types.h, linux/errno.h, asm/...): with -I include/kshim they would
 * shadow the system copies.
 */
#ifndef KSHIM_KERNEL_H
#define KSHIM_KERNEL_H

#include <errno.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef uint8_t  u8;
typedef uint16_t u16;
typedef uint32_t u32;
typedef uint64_t u64;
typedef int8_t   s8;
typedef int16_t  s16;
typedef int32_t  s32;
typedef int64_t  s64;

/* Sparse annotations mean nothing here. */
#define __user
#define __force
#define __iomem

#define likely(x)   __builtin_expect(!!(x), 1)
#define unlikely(x) __builtin_expect(!!(x), 0)

/* Element count of a true array; a pointer argument fails to compile. */
#define KSHIM_MUST_BE_ARRAY(a) \
	(sizeof(char[1 - 2 * __builtin_types_compatible_p(__typeof__(a), \
					__typeof__(&(a)[0]))]) - 1)
#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]) + KSHIM_MUST_BE_ARRAY(a))

#define container_of(ptr, type, member) \
	((type *)((char *)(ptr) - offsetof(type, member)))

/* A host bug: the callers in our harness never let one happen. */
void kshim_bug(const char *file, int line, const char *cond)
	__attribute__((noreturn));
#define BUG_ON(cond) \
	do { if (unlikely(cond)) kshim_bug(__FILE__, __LINE__, #cond); } while (0)
#define BUG() kshim_bug(__FILE__, __LINE__, "BUG()")

/*
 * printk: formats into a buffer and remembers the last message (and its
 * "<n>" log level, if it starts with one) for the harness to inspect.
 */
#define KERN_EMERG   "<0>"
#define KERN_ALERT   "<1>"
#define KERN_CRIT    "<2>"
#define KERN_ERR     "<3>"
#define KERN_WARNING "<4>"
#define KERN_NOTICE  "<5>"
#define KERN_INFO    "<6>"
#define KERN_DEBUG   "<7>"
int kshim_printk(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
#define printk kshim_printk

#endif /* KSHIM_KERNEL_H */
