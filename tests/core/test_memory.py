# SPDX-License-Identifier: GPL-2.0-only
"""Guest memory: lguest's address check, lgread/lgwrite, the user accesses
to lguest_data, guest_pa's page walk, write_timestamp, kill_guest, and what
RAM buffers a guest accepts.  Hostile addresses never reach outside the
buffer (GuardedRAM's canaries)."""
import array
import ctypes
import mmap
import time

import pytest

import lgcore
from lgcore.constants import LD_BLOCKED, LD_IRQ_ENABLED, LD_SIZE, LD_SYSCALL_VEC, LD_TIME

from .helpers import LD, GuardedRAM, PageTables, make_guest, rd, wr

SIZE = 64 * 1024      # 16 pages


# ---- the seed-era address check ----

@pytest.mark.parametrize("addr, n, ok", [
    (0, 4, True),
    (SIZE - 8, 4, True),
    (SIZE - 4, 4, False),        # ends exactly at the limit: the seed's off-by-one
    (SIZE - 4096, 0, True),
    (SIZE, 0, False),
    (SIZE, 4, False),
    (0xFFFFFFFC, 4, False),      # end wraps to 0
    (0xFFFFFFFF, 1, False),
    (0x80000000, 4, False),
    (0, 0xFFFFFFFF, False),
])
def test_address_check_seed(addr, n, ok):
    g, cpu = make_guest(SIZE)
    assert g.lguest_address_ok(addr, n) is ok


def test_address_check_follows_pfn_limit_and_never_the_buffer_end():
    g, cpu = make_guest(SIZE, pfn_limit=2)
    assert g.pfn_limit == 2
    assert g.lguest_address_ok(0x1FF8, 4)
    assert not g.lguest_address_ok(0x1FFC, 4)
    assert not g.lguest_address_ok(0x2000, 4)
    g.pfn_limit = 100             # more pages than the buffer has
    assert g.lguest_address_ok(SIZE - 4, 4)
    assert not g.lguest_address_ok(SIZE - 3, 4)
    assert not g.lguest_address_ok(SIZE, 4)


# ---- lgread / lgwrite ----

def test_lgwrite_lgread_little_endian():
    g, cpu = make_guest(SIZE)
    cpu.lgwrite(0x2000, 0x11223344)
    assert g.ram[0x2000:0x2004] == bytes.fromhex("44332211")
    assert cpu.lgread(0x2000) == 0x11223344
    assert cpu.lgread(0x2001) == 0x00112233
    assert g.dead is None


@pytest.mark.parametrize("addr, shown", [
    (SIZE - 4, "0xfffc"), (SIZE - 2, "0xfffe"), (SIZE, "0x10000"),
    (0xFFFFFFFE, "0xfffffffe"), (0xFFFFFFFC, "0xfffffffc"),
])
def test_lgread_failure_reads_zero_and_kills(addr, shown):
    ram = GuardedRAM(SIZE)
    g, cpu = make_guest(ram=ram.view)
    assert cpu.lgread(addr) == 0
    assert g.dead == f"bad read address {shown} len 4"
    assert ram.intact()


@pytest.mark.parametrize("addr, shown", [
    (SIZE - 4, "0xfffc"), (SIZE - 1, "0xffff"), (0xFFFFFFFF, "0xffffffff"),
])
def test_lgwrite_failure_writes_nothing_and_kills(addr, shown):
    ram = GuardedRAM(SIZE)
    g, cpu = make_guest(ram=ram.view)
    before = ram.snapshot()
    cpu.lgwrite(addr, 0xFFFFFFFF)
    assert g.dead == f"bad write address {shown} len 4"
    assert ram.snapshot() == before and ram.intact()


def test_zero_address_prints_as_0x0():
    g, cpu = make_guest(SIZE, pfn_limit=0)
    assert cpu.lgread(0) == 0
    assert g.dead == "bad read address 0x0 len 4"


# ---- guest_pa ----

def _paged(size=SIZE, ram=None):
    g, cpu = make_guest(size, ram=ram)
    pt = PageTables(g.ram, pgdir=0x2000, next_free=0x3000)
    cpu.pgdir, cpu.paging = 0x2000, True
    return g, cpu, pt


def test_linear_mode_is_identity_even_past_ram():
    g, cpu = make_guest(SIZE)
    assert not cpu.paging
    for va in (0, 0x1234, SIZE, 0xC0001000, 0xFFFFFFFF):
        assert cpu.guest_pa(va) == va
    assert g.dead is None


def test_two_level_walk():
    g, cpu, pt = _paged()
    pt.map(0xC0005000, 0x9000)
    pt.map(0x08048000, 0xA000, flags=0x1)           # read-only, supervisor: no checks
    # PDE for 0xC0000000 at 0x2000 + 0x300*4 = 0x2C00 -> table at 0x3000
    assert rd(g.ram, 0x2C00) == 0x3007
    assert rd(g.ram, 0x3000 + 5 * 4) == 0x9007
    assert cpu.guest_pa(0xC0005ABC) == 0x9ABC
    assert lgcore.guest_pa(cpu, 0x08048FFF) == 0xAFFF
    assert g.dead is None


def test_missing_directory_entry_gives_minus_one():
    g, cpu, pt = _paged()
    assert cpu.guest_pa(0xC7A3E000) == 0xFFFFFFFF
    assert g.dead == "Bad address 0xc7a3e000"


def test_missing_page_entry_still_gives_the_computed_address():
    g, cpu, pt = _paged()
    pt.map(0xC0005000, 0x9000)
    wr(g.ram, 0x3000 + 6 * 4, 0x12345000)            # P clear, frame 0x12345
    assert cpu.guest_pa(0xC0006010) == 0x12345010
    assert g.dead == "Bad address 0xc0006010"


def test_page_directory_outside_ram():
    ram = GuardedRAM(SIZE)
    g, cpu, pt = _paged(ram=ram.view)
    cpu.pgdir = 0x7FFFF000
    assert cpu.guest_pa(0) == 0xFFFFFFFF
    assert g.dead == "bad read address 0x7ffff000 len 4"
    assert ram.intact()


def test_page_table_outside_ram():
    ram = GuardedRAM(SIZE)
    g, cpu, pt = _paged(ram=ram.view)
    wr(g.ram, 0x2000, 0x00FFF001)                     # PDE 0 -> table at 0xFFF000
    assert cpu.guest_pa(0x3123) == 0x123             # PTE read as 0
    assert g.dead == "bad read address 0xfff00c len 4"
    assert ram.intact()


def test_page_pointing_outside_ram_translates_without_kill():
    g, cpu, pt = _paged()
    pt.map(0x1000, 0xFFFFF000)
    assert cpu.guest_pa(0x1FFC) == 0xFFFFFFFC
    assert g.dead is None


def test_directory_index_wraps_32_bits():
    g, cpu, pt = _paged()
    cpu.pgdir = 0xFFFFF004                   # + 0x3FF * 4 = 2**32 -> reads the PDE at 0
    wr(g.ram, 0, 0x4001)
    wr(g.ram, 0x4000 + 0x3FF * 4, 0x7001)
    assert cpu.guest_pa(0xFFFFF123) == 0x7123
    assert g.dead is None


def test_guest_pa_fuzz_stays_inside_the_buffer():
    from hypothesis import given, settings, strategies as st

    ram = GuardedRAM(4 * 4096)
    u32 = st.integers(0, 0xFFFFFFFF)

    @settings(max_examples=300, deadline=None, database=None)
    @given(pgdir=u32, vaddr=u32, pde=u32, pte=u32)
    def check(pgdir, vaddr, pde, pte):
        # every even word a directory entry, every odd one a page entry
        ram.view[:] = (pde.to_bytes(4, "little") + pte.to_bytes(4, "little")) * (ram.size // 8)
        g = lgcore.Guest(ram.view, clock=lgcore.VirtualClock(0))
        cpu = g.add_vcpu()
        cpu.pgdir, cpu.paging = pgdir, True
        cpu.guest_pa(vaddr)
        cpu.pin_page(vaddr)
        assert ram.intact()
        g.close()

    check()


# ---- user accesses to lguest_data ----

def test_get_put_user_before_and_after_init():
    g, cpu = make_guest(SIZE, ld=None)
    assert g.get_user(LD_IRQ_ENABLED) is None
    assert g.put_user(LD_IRQ_ENABLED, 0x200) is False
    assert not g.check_syscall_vector()
    assert bytes(g.ram) == bytes(SIZE)
    g.lguest_data = LD
    assert g.lguest_data == LD
    assert g.put_user(LD_BLOCKED, 0xDEADBEEF) is True
    assert g.ram[LD + 4:LD + 8] == bytes.fromhex("efbeadde")
    assert g.get_user(LD_BLOCKED) == 0xDEADBEEF
    g.lguest_data = None
    assert g.get_user(LD_BLOCKED) is None


def test_user_accesses_are_bounded_by_the_buffer_not_pfn_limit():
    ram = GuardedRAM(SIZE)
    g, cpu = make_guest(ram=ram.view, pfn_limit=1)
    assert g.put_user(LD_SYSCALL_VEC, 0x80)           # page 1, above pfn_limit
    assert g.check_syscall_vector()
    g.lguest_data = SIZE - LD_SIZE                    # the struct ends at the RAM end
    assert g.put_user(LD_SYSCALL_VEC, 0x80)
    assert g.get_user(LD_SYSCALL_VEC) == 0x80
    g.lguest_data = SIZE - LD_SIZE + 1
    assert g.get_user(LD_SYSCALL_VEC) is None
    assert g.put_user(LD_SYSCALL_VEC, 0x80) is False
    assert not g.check_syscall_vector()
    g.lguest_data = 0xFFFFFFFF                        # no 32-bit wrap back into RAM
    assert g.get_user(4) is None and g.put_user(4, 1) is False
    assert ram.intact()


@pytest.mark.parametrize("vec, param, ok", [(0x80, 0x80, True), (0x40, 0x80, False),
                                            (0x40, 0x40, True), (0x80, 0x40, True),
                                            (0x180, 0x80, False)])
def test_check_syscall_vector(vec, param, ok):
    g, cpu = make_guest(SIZE, syscall_vector=param)
    wr(g.ram, LD + LD_SYSCALL_VEC, vec)
    assert g.check_syscall_vector() is ok
    assert lgcore.check_syscall_vector(g) is ok


# ---- write_timestamp ----

def test_write_timestamp_virtual_clock_bytes():
    clock = lgcore.VirtualClock(1_700_000_000_123_456_789)
    g, cpu = make_guest(SIZE, clock=clock)
    cpu.write_timestamp()
    assert g.ram[LD + LD_TIME:LD + LD_TIME + 8] == bytes.fromhex("00f15365" "15cd5b07")
    clock.advance(876_543_211)
    lgcore.write_timestamp(cpu)
    assert g.ram[LD + LD_TIME:LD + LD_TIME + 8] == bytes.fromhex("01f15365" "00000000")
    assert g.dead is None


def test_write_timestamp_wraps_like_an_i386_long():
    clock = lgcore.VirtualClock((1 << 31) * 10**9 + 5)      # 2038-01-19T03:14:08Z
    g, cpu = make_guest(SIZE, clock=clock)
    cpu.write_timestamp()
    assert g.ram[LD + LD_TIME:LD + LD_TIME + 8] == bytes.fromhex("00000080" "05000000")


def test_write_timestamp_wall_clock_is_about_now():
    g, cpu = make_guest(SIZE, clock=lgcore.WallClock())
    cpu.write_timestamp()
    assert abs(rd(g.ram, LD + LD_TIME) - time.time()) < 3600
    assert rd(g.ram, LD + LD_TIME + 4) < 10**9


def test_write_timestamp_failures_kill():
    g, cpu = make_guest(SIZE, ld=None)
    cpu.write_timestamp()
    assert g.dead == "Writing timestamp"
    ram = GuardedRAM(SIZE)
    g, cpu = make_guest(ram=ram.view)
    g.lguest_data = SIZE - 20                  # time ends exactly at the RAM end: fine
    cpu.write_timestamp()
    assert g.dead is None
    g.lguest_data = SIZE - 19
    cpu.write_timestamp()
    assert g.dead == "Writing timestamp"
    assert ram.intact()


# ---- kill_guest ----

def test_first_reason_sticks_across_engine_and_policy_kills():
    g, cpu = make_guest(SIZE)
    assert g.dead is None and g.dead_code == 0
    g.raise_if_dead()
    cpu.lgread(SIZE)
    g.kill_guest("later")
    cpu.load_guest_idt_entry(999, 0, 0)
    assert g.dead == "bad read address 0x10000 len 4"
    assert g.dead_args == (SIZE, 4, 0)
    with pytest.raises(lgcore.GuestKilled) as info:
        g.raise_if_dead()
    assert info.value.reason == "bad read address 0x10000 len 4"
    g.revive()
    assert g.dead is None and g.dead_args == (0, 0, 0)
    g.kill_guest("policy first")
    cpu.lgread(SIZE)
    assert g.dead == "policy first"


def test_a_killed_guest_keeps_running_the_engine():
    g, cpu = make_guest(SIZE)
    g.kill_guest("dead already")
    cpu.load_guest_idt_entry(40, 0x00600000, 0x00008E00)
    assert cpu.get_idt_entry(40) == (0x00610000, 0x8E00)


# ---- RAM buffers ----

def _buffers():
    np = pytest.importorskip("numpy")
    backing = bytearray(3 * SIZE)
    return {
        "bytearray": bytearray(SIZE),
        "mmap": mmap.mmap(-1, SIZE),
        "numpy-uint8": np.zeros(SIZE, np.uint8),
        "numpy-uint32-2d": np.zeros((SIZE // 64, 16), np.uint32),
        "ctypes-ubyte": (ctypes.c_ubyte * SIZE)(),
        "ctypes-uint32": (ctypes.c_uint32 * (SIZE // 4))(),
        "array": array.array("I", bytes(SIZE)),
        "memoryview-slice": memoryview(backing)[SIZE:2 * SIZE],
    }


def test_accepted_ram_buffers_see_the_engine_writes():
    for name, buf in _buffers().items():
        g = lgcore.Guest(buf, clock=lgcore.VirtualClock(0))
        cpu = g.add_vcpu()
        assert g.mem_len == SIZE and g.pfn_limit == SIZE // 4096, name
        cpu.lgwrite(0x1000, 0xCAFEF00D)
        assert bytes(memoryview(buf).cast("B")[0x1000:0x1004]) == bytes.fromhex("0df0feca"), name
        assert len(g.ram) == SIZE and g.ram[0x1000] == 0x0D, name
        g.close()


def test_exactly_lguest_data_sized_ram_is_enough():
    g = lgcore.Guest(bytearray(LD_SIZE))
    assert g.mem_len == 1396 and g.pfn_limit == 0


@pytest.mark.parametrize("ram, exc, message", [
    (bytes(SIZE), TypeError, r"guest RAM must be writable; this bytes is read-only"),
    (memoryview(bytearray(SIZE)).toreadonly(), TypeError, r"must be writable; this memoryview is read-only"),
    (bytearray(1395), ValueError, r"guest RAM of 1395 bytes is smaller than lguest_data \(1396 bytes\)"),
    (bytearray(0), ValueError, r"guest RAM of 0 bytes is smaller than lguest_data \(1396 bytes\)"),
    (42, TypeError, r"guest RAM must be a writable buffer, not int"),
    ("text", TypeError, r"guest RAM must be a writable buffer, not str"),
])
def test_refused_ram(ram, exc, message):
    with pytest.raises(exc, match=message):
        lgcore.Guest(ram)


def test_non_contiguous_ram_is_refused():
    np = pytest.importorskip("numpy")
    with pytest.raises(TypeError, match="one contiguous buffer"):
        lgcore.Guest(np.zeros((256, 64), np.uint8)[:, ::2])


def test_ram_is_pinned_until_close():
    ram = bytearray(SIZE)
    g = lgcore.Guest(ram)
    with pytest.raises(BufferError):
        ram.extend(b"x")
    g.close()
    assert g.closed
    ram.extend(b"x")
    cpu_ops = [lambda c: c.lgread(0), lambda c: c.deliver_trap(0), lambda c: c.write_timestamp()]
    g2 = lgcore.Guest(bytearray(SIZE))
    cpu = g2.add_vcpu()
    g2.close()
    for op in cpu_ops:
        with pytest.raises(lgcore.GuestClosed):
            op(cpu)
    with pytest.raises(lgcore.GuestClosed):
        g2.add_vcpu()
    with pytest.raises(lgcore.GuestClosed):
        g2.ram


def test_mmap_cannot_be_closed_under_the_guest():
    m = mmap.mmap(-1, SIZE)
    g = lgcore.Guest(m)
    with pytest.raises(BufferError):
        m.close()
    g.close()
    m.close()
