/*
 * linux/uaccess.h (kshim) - access to "user" memory, i.e. the Launcher's
 * mapping of guest RAM.
 *
 * SPDX-License-Identifier: GPL-2.0-only
 *
 * In lguest the host reaches struct lguest_data through a __user pointer
 * into the Launcher's address space; a bad pointer faults and the access
 * reports -EFAULT.  Here the "address space" is one RAM buffer, described
 * by kshim_current_mm, which the harness points at the guest it is about to
 * drive.  An access succeeds only when every byte of it lies inside that
 * buffer; otherwise nothing is transferred and:
 *   get_user()        stores 0 in the destination and yields -EFAULT,
 *   put_user()        yields -EFAULT,
 *   copy_from_user()  zero-fills the destination, returns n (bytes missed),
 *   copy_to_user()    returns n.
 * Each access moves exactly sizeof(*ptr) bytes (4 for every lguest_data
 * field the original touches), little-endian, with no alignment demand.
 */
#ifndef KSHIM_LINUX_UACCESS_H
#define KSHIM_LINUX_UACCESS_H

#include <string.h>
#include "../kshim_kernel.h"

struct kshim_mm {
	unsigned char *base;
	u64 len;
};
extern struct kshim_mm kshim_current_mm;

static inline bool kshim_user_range_ok(const void *p, unsigned long n)
{
	uintptr_t at = (uintptr_t)p, base = (uintptr_t)kshim_current_mm.base;
	u64 off;

	if (at < base)
		return false;
	off = (u64)(at - base);
	return off <= kshim_current_mm.len && n <= kshim_current_mm.len - off;
}

static inline unsigned long copy_from_user(void *to, const void __user *from,
					   unsigned long n)
{
	if (likely(kshim_user_range_ok(from, n))) {
		memcpy(to, from, n);
		return 0;
	}
	memset(to, 0, n);
	return n;
}

static inline unsigned long copy_to_user(void __user *to, const void *from,
					 unsigned long n)
{
	if (likely(kshim_user_range_ok(to, n))) {
		memcpy(to, from, n);
		return 0;
	}
	return n;
}

#define get_user(x, ptr) ({						\
	__typeof__(*(ptr)) kshim_gu_val;				\
	int kshim_gu_err = copy_from_user(&kshim_gu_val, (ptr),		\
					  sizeof(kshim_gu_val)) ? -EFAULT : 0; \
	(x) = kshim_gu_val;						\
	kshim_gu_err;							\
})

#define put_user(x, ptr) ({						\
	__typeof__(*(ptr)) kshim_pu_val = (x);				\
	copy_to_user((ptr), &kshim_pu_val, sizeof(kshim_pu_val)) ? -EFAULT : 0; \
})

#endif /* KSHIM_LINUX_UACCESS_H */
