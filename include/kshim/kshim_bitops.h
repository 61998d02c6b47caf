/*
 * kshim_bitops.h - bitmaps made of 32-bit words.
 *
 * SPDX-License-Identifier: GPL-2.0-only
 *
 * On i386 a kernel bitmap is an array of 32-bit unsigned longs.  On an
 * x86-64 host unsigned long is 64 bits, which would make DECLARE_BITMAP(x,
 * 32) eight bytes wide and turn the original's
 * copy_from_user(&blk, lguest_data->blocked_interrupts, sizeof(blk)) into an
 * 8-byte guest read.  So the shim's bitmap word is u32: every bitmap the
 * original declares or is handed (irqs_pending, blk, used_vectors) has the
 * i386 size, and sizeof(blk) is 4.
 *
 * Bit n lives in word n / 32 under mask 1 << (n % 32) (little-endian bit
 * numbering, as on x86).  set_bit/clear_bit are atomic read-modify-writes;
 * test_bit and the scans are plain reads.
 */
#ifndef KSHIM_BITOPS_H
#define KSHIM_BITOPS_H

#include "kshim_kernel.h"

#define KSHIM_BITS_PER_WORD 32
#define KSHIM_BITS_TO_WORDS(nbits) \
	(((nbits) + KSHIM_BITS_PER_WORD - 1) / KSHIM_BITS_PER_WORD)
#define DECLARE_BITMAP(name, bits) u32 name[KSHIM_BITS_TO_WORDS(bits)]

static inline void set_bit(unsigned long nr, volatile u32 *addr)
{
	__atomic_fetch_or(&addr[nr / KSHIM_BITS_PER_WORD],
			  1u << (nr % KSHIM_BITS_PER_WORD), __ATOMIC_SEQ_CST);
}

static inline void clear_bit(unsigned long nr, volatile u32 *addr)
{
	__atomic_fetch_and(&addr[nr / KSHIM_BITS_PER_WORD],
			   ~(1u << (nr % KSHIM_BITS_PER_WORD)), __ATOMIC_SEQ_CST);
}

static inline int test_bit(unsigned long nr, const volatile u32 *addr)
{
	return (addr[nr / KSHIM_BITS_PER_WORD] >> (nr % KSHIM_BITS_PER_WORD)) & 1u;
}

/*
 * dst = src1 & ~src2 over whole words; like the kernel's small-bitmap case
 * there is no masking of bits past nbits in the last word.  Returns whether
 * any bit of the result is set (the original ignores it).
 */
static inline int bitmap_andnot(u32 *dst, const u32 *src1, const u32 *src2,
				unsigned int nbits)
{
	unsigned int k, words = KSHIM_BITS_TO_WORDS(nbits);
	u32 any = 0;

	for (k = 0; k < words; k++) {
		dst[k] = src1[k] & ~src2[k];
		any |= dst[k];
	}
	return any != 0;
}

/*
 * Index of the lowest set bit at or above "offset" and below "size"; "size"
 * itself when there is none, or when offset >= size.
 */
static inline unsigned long find_next_bit(const u32 *addr, unsigned long size,
					  unsigned long offset)
{
	while (offset < size) {
		unsigned long word = offset / KSHIM_BITS_PER_WORD;
		u32 bits = addr[word] >> (offset % KSHIM_BITS_PER_WORD);

		if (bits) {
			unsigned long found = offset + __builtin_ctz(bits);

			return found < size ? found : size;
		}
		offset = (word + 1) * KSHIM_BITS_PER_WORD;
	}
	return size;
}

static inline unsigned long find_first_bit(const u32 *addr, unsigned long size)
{
	return find_next_bit(addr, size, 0);
}

#endif /* KSHIM_BITOPS_H */
