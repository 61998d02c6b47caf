# SPDX-License-Identifier: GPL-2.0-only
# Guest memory as the engine sees it: what lguest's core.c, page_tables.c and
# hypercalls.c provide around interrupts_and_traps.c.  Every function is
# inline, noexcept and nogil, so the delivery path compiles into one unit
# with no call into Python and no exception check.
#
# Two kinds of guest access exist, exactly as in lguest:
#  - lgread/lgwrite take a guest-physical address and pass lguest's address
#    check (pfn_limit, 32-bit wrap); a failure kills the guest.
#  - the "user" accesses to lguest_data fields are plain accesses at the
#    struct's address; they are bounded only by the RAM buffer and a failure
#    is reported to the caller (get_user/put_user return -EFAULT), not killed.
from libc.stdint cimport uint8_t, uint32_t, int32_t, int64_t, uint64_t
from libc.string cimport memcpy
from posix.time cimport clock_gettime, timespec, CLOCK_REALTIME

from lgcore.abi cimport *


# C:010 kill_guest() becomes a sticky code plus up to three arguments: nogil
# code cannot raise, and lguest itself never unwinds on a kill either.  The
# Python face renders lguest's message text from the code (see vcpu.pyx).
cdef inline void lg_kill(lg_guest_t *lg, int code, uint32_t a0, uint32_t a1,
                         uint32_t a2) noexcept nogil:
    if lg.dead == LG_KILL_NONE:
        lg.dead = code
        lg.dead_args[0] = a0
        lg.dead_args[1] = a1
        lg.dead_args[2] = a2


# The seed-era address check: the page holding the first byte past the
# access must lie under pfn_limit, and the end must not wrap 32 bits.  That
# rejects an access ending exactly at the limit (fixed upstream later; the
# hardened profile uses the later rule).  We also require the bytes to lie in
# the RAM buffer, which is what copy_to_user() failing means in lguest.
cdef inline bint lg_address_ok(const lg_guest_t *lg, uint32_t addr,
                               uint32_t length) noexcept nogil:
    cdef uint32_t end = addr + length
    if end < addr:
        return False
    if <uint64_t>addr + length > lg.mem_len:
        return False
    if lg.fixes & LG_FIX_ADDRESS_CHECK:
        return <uint64_t>end <= <uint64_t>lg.pfn_limit * LG_PAGE_SIZE
    return (end >> LG_PAGE_SHIFT) < lg.pfn_limit


# C:110 The same check as one bound, for paths that make several accesses:
# for an access of length bytes at addr, lg_address_ok() holds exactly when
# addr + length < lg_access_bound(lg) (64-bit sum).  The bound is the lesser
# of one past the RAM (mem_len + 1) and pfn_bound, which lg_guest_sync()
# derives from pfn_limit and the profile (the page rule, and 2**32: an access
# may not wrap 32 bits).
cdef inline uint64_t lg_access_bound(const lg_guest_t *lg) noexcept nogil:
    cdef uint64_t bound = lg.pfn_bound
    if bound > lg.mem_len + 1:
        bound = lg.mem_len + 1
    return bound


# guest_pa() for the case where it kills nobody: both tables readable and
# both entries present.  False means "take lg_guest_pa()" for the exact
# behaviour (it redoes the walk; nothing was written here).
cdef inline bint lg_guest_pa_fast(const lg_cpu_t *cpu, uint32_t vaddr, uint64_t bound,
                                  uint32_t *pa) noexcept nogil:
    cdef uint32_t a, pgd, pte
    if not cpu.paging:
        pa[0] = vaddr
        return True
    a = cpu.pgdir + (vaddr >> 22) * 4
    if <uint64_t>a + 4 >= bound:
        return False
    memcpy(&pgd, cpu.lg.mem + a, 4)
    if not (pgd & LG_PTE_PRESENT):
        return False
    a = (pgd & 0xFFFFF000u) + ((vaddr >> 12) & 0x3FFu) * 4
    if <uint64_t>a + 4 >= bound:
        return False
    memcpy(&pte, cpu.lg.mem + a, 4)
    if not (pte & LG_PTE_PRESENT):
        return False
    pa[0] = (pte & 0xFFFFF000u) | (vaddr & 0xFFFu)
    return True


# lg_guest_pa_fast() for the fused fast path's stack, with its last success
# kept in the vCPU.  When the same page of the same directory comes again
# under the same bound, both entries are read again and compared with what
# they held: equal entries give the same walk, so the answer is exact (a
# guest that rewrites its page tables is seen at once), yet the frame's
# address no longer waits for the directory entry to be read before the
# table entry can be.  mem is cpu.fast_mem.
cdef inline bint lg_stack_pa(lg_cpu_t *cpu, const uint8_t *mem, uint32_t vaddr,
                             uint64_t bound, uint32_t *pa) noexcept nogil:
    cdef uint32_t a, b, pgd, pte
    cdef uint64_t key
    if not cpu.paging:
        pa[0] = vaddr
        return True
    key = (<uint64_t>cpu.pgdir << 32) | (vaddr >> 12)
    if cpu.walk_key == key and cpu.walk_bound == bound:
        memcpy(&pgd, mem + cpu.walk_pde_gpa, 4)
        memcpy(&pte, mem + cpu.walk_pte_gpa, 4)
        if pgd == cpu.walk_pde and pte == cpu.walk_pte:
            pa[0] = (cpu.walk_pte & 0xFFFFF000u) | (vaddr & 0xFFFu)
            return True
    a = cpu.pgdir + (vaddr >> 22) * 4
    if <uint64_t>a + 4 >= bound:
        return False
    memcpy(&pgd, mem + a, 4)
    if not (pgd & LG_PTE_PRESENT):
        return False
    b = (pgd & 0xFFFFF000u) + ((vaddr >> 12) & 0x3FFu) * 4
    if <uint64_t>b + 4 >= bound:
        return False
    memcpy(&pte, mem + b, 4)
    if not (pte & LG_PTE_PRESENT):
        return False
    cpu.walk_key = key
    cpu.walk_bound = bound
    cpu.walk_pde_gpa = a
    cpu.walk_pde = pgd
    cpu.walk_pte_gpa = b
    cpu.walk_pte = pte
    pa[0] = (pte & 0xFFFFF000u) | (vaddr & 0xFFFu)
    return True


# lg_frame_fits() over lg_stack_pa().
cdef inline bint lg_stack_fits(lg_cpu_t *cpu, const uint8_t *mem, uint32_t vaddr,
                               uint32_t nbytes, uint64_t bound, uint32_t *gstack) noexcept nogil:
    return (lg_stack_pa(cpu, mem, vaddr, bound, gstack) and gstack[0] >= nbytes
            and <uint64_t>gstack[0] < bound)


# Whether a frame of nbytes pushed on the stack at vaddr needs no check per
# word: the walk kills nobody and the whole frame passes the address check.
# *gstack is then the frame's top, guest-physical.
cdef inline bint lg_frame_fits(const lg_cpu_t *cpu, uint32_t vaddr, uint32_t nbytes,
                               uint64_t bound, uint32_t *gstack) noexcept nogil:
    return (lg_guest_pa_fast(cpu, vaddr, bound, gstack) and gstack[0] >= nbytes
            and <uint64_t>gstack[0] < bound)


# lgread() of a u32: zero and a kill when the check fails.
cdef inline uint32_t lg_lgread(lg_cpu_t *cpu, uint32_t addr) noexcept nogil:
    cdef uint32_t val = 0
    cdef lg_guest_t *lg = cpu.lg
    if not lg_address_ok(lg, addr, 4):
        lg_kill(lg, LG_KILL_BAD_READ, addr, 4, 0)
        return 0
    memcpy(&val, lg.mem + addr, 4)
    return val


# lgwrite() of a u32: nothing written and a kill when the check fails.
cdef inline void lg_lgwrite(lg_cpu_t *cpu, uint32_t addr, uint32_t val) noexcept nogil:
    cdef lg_guest_t *lg = cpu.lg
    if not lg_address_ok(lg, addr, 4):
        lg_kill(lg, LG_KILL_BAD_WRITE, addr, 4, 0)
        return
    memcpy(lg.mem + addr, &val, 4)


# get_user() of a 4-byte lguest_data field at byte offset `off`: 0 on
# success, -1 (our -EFAULT) with *out zeroed when the struct is not set up
# yet or the field lies outside the RAM buffer.
cdef inline int lg_ld_get(const lg_guest_t *lg, uint32_t off,
                          uint32_t *out) noexcept nogil:
    cdef uint64_t addr = <uint64_t>lg.lguest_data + off
    if not lg.has_lguest_data or addr + 4 > lg.mem_len:
        out[0] = 0
        return -1
    memcpy(out, lg.mem + addr, 4)
    return 0


# put_user() of a 4-byte lguest_data field.
cdef inline int lg_ld_put(lg_guest_t *lg, uint32_t off, uint32_t val) noexcept nogil:
    cdef uint64_t addr = <uint64_t>lg.lguest_data + off
    if not lg.has_lguest_data or addr + 4 > lg.mem_len:
        return -1
    memcpy(lg.mem + addr, &val, 4)
    return 0


# The clock write_timestamp() reads: the host's CLOCK_REALTIME, or a virtual
# clock whose value the VMM (or a test) sets, which makes runs replayable.
cdef inline int64_t lg_clock_now_ns(const lg_clock_t *clock) noexcept nogil:
    cdef timespec ts
    if clock != NULL and clock.mode == LG_CLOCK_VIRTUAL:
        return lg_atomic_load64(&clock.virtual_ns)
    clock_gettime(CLOCK_REALTIME, &ts)
    return <int64_t>ts.tv_sec * 1000000000 + ts.tv_nsec


# write_timestamp(): the time as an i386 struct timespec (two 32-bit longs,
# the seconds first), as the 8 bytes copied into lguest_data.time in one
# piece.  A virtual clock keeps that image beside its ns value.
cdef inline uint64_t lg_timespec32(const lg_clock_t *clock) noexcept nogil:
    cdef int64_t now, sec
    if clock != NULL and clock.mode == LG_CLOCK_VIRTUAL:
        return <uint64_t>lg_atomic_load64(&clock.virtual_ts32)
    now = lg_clock_now_ns(clock)
    sec = now // 1000000000
    return (<uint64_t><uint32_t>(now - sec * 1000000000) << 32) | <uint32_t>sec


cdef inline void lg_write_timestamp(lg_cpu_t *cpu) noexcept nogil:
    cdef lg_guest_t *lg = cpu.lg
    cdef uint64_t ts = lg_timespec32(lg.clock)
    cdef uint64_t addr = <uint64_t>lg.lguest_data + LG_LD_TIME
    if not lg.has_lguest_data or addr + 8 > lg.mem_len:
        lg_kill(lg, LG_KILL_WRITING_TIMESTAMP, 0, 0, 0)
        return
    memcpy(lg.mem + addr, &ts, 8)


# guest_pa(): the guest's 2-level (non-PAE) page tables, read with lgread
# from the vCPU's page directory.  A missing directory entry kills and gives
# -1; a missing page entry kills but the computed address still comes back.
# With paging off the guest runs linear: virtual is physical.
cdef inline uint32_t lg_guest_pa(lg_cpu_t *cpu, uint32_t vaddr) noexcept nogil:
    cdef uint32_t pgd, pte
    if not cpu.paging:
        return vaddr
    pgd = lg_lgread(cpu, cpu.pgdir + (vaddr >> 22) * 4)
    if not (pgd & LG_PTE_PRESENT):
        lg_kill(cpu.lg, LG_KILL_BAD_ADDRESS, vaddr, 0, 0)
        return 0xFFFFFFFFu
    pte = lg_lgread(cpu, (pgd & 0xFFFFF000u) + ((vaddr >> 12) & 0x3FFu) * 4)
    if not (pte & LG_PTE_PRESENT):
        lg_kill(cpu.lg, LG_KILL_BAD_ADDRESS, vaddr, 0, 0)
    return (pte & 0xFFFFF000u) | (vaddr & 0xFFFu)


# pin_page() without a shadow MMU: the page must be mapped present and
# writable in the guest's own tables (or lie in RAM when paging is off), so
# the CPU could push a frame there; otherwise the guest dies as in lguest.
cdef inline void lg_pin_page(lg_cpu_t *cpu, uint32_t vaddr) noexcept nogil:
    cdef uint32_t pgd, pte
    if not cpu.paging:
        if (vaddr >> LG_PAGE_SHIFT) >= cpu.lg.pfn_limit:
            lg_kill(cpu.lg, LG_KILL_BAD_STACK_PAGE, vaddr, 0, 0)
        return
    pgd = lg_lgread(cpu, cpu.pgdir + (vaddr >> 22) * 4)
    if not (pgd & LG_PTE_PRESENT):
        lg_kill(cpu.lg, LG_KILL_BAD_STACK_PAGE, vaddr, 0, 0)
        return
    pte = lg_lgread(cpu, (pgd & 0xFFFFF000u) + ((vaddr >> 12) & 0x3FFu) * 4)
    if (pte & (LG_PTE_PRESENT | LG_PTE_RW)) != (LG_PTE_PRESENT | LG_PTE_RW):
        lg_kill(cpu.lg, LG_KILL_BAD_STACK_PAGE, vaddr, 0, 0)
