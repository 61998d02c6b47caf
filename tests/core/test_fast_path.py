# SPDX-License-Identifier: GPL-2.0-only
"""The fused step's derived state: the guest values each vCPU keeps for
lg_deliver_pending_fast() (lguest_data's host address, the RAM, the access
bound) must follow every change to the guest, and the stack walk it keeps
must give what a fresh walk gives, whatever the guest does to its page
tables in between.  Each case runs the fused step and the two-step path
(interrupt_pending + try_deliver_interrupt) on twin guests and wants the
same RAM, registers, pending word and kill."""
import time

import pytest

import lgcore
from lgcore.constants import LD_IRQ_ENABLED, LD_TIME

from .helpers import LD, PAGE, PageTables, int_gate, rd, wr

T0 = 1_700_000_000_123_456_789
STAMP = bytes.fromhex("00f15365" "15cd5b07")   # T0 as lguest_data.time holds it
PGDIR, PGDIR2 = 0x2000, 0x8000
KSTACK = 0xC0005000                # the kernel stack's top: lguest walks this address
KSTACK_PA = 0x5000                 # where it is mapped first (frames go below it)
OTHER_PA = 0xA000                  # and where a remap puts it


def _paged_guest(**kw):
    g = lgcore.Guest(bytearray(64 * 1024), clock=lgcore.VirtualClock(T0), **kw)
    cpu = g.add_vcpu()
    g.lguest_data = LD
    wr(g.ram, LD + LD_IRQ_ENABLED, 0x200)
    pt = PageTables(g.ram, pgdir=PGDIR, next_free=0x3000)
    pt.map(KSTACK, KSTACK_PA)
    pt.map(KSTACK - PAGE, KSTACK_PA - PAGE)
    cpu.pgdir, cpu.paging = PGDIR, True
    for irq in range(32):
        cpu.load_guest_idt_entry(32 + irq, *int_gate(0xC0200000 + 0x10 * irq))
    cpu.ss, cpu.esp, cpu.cs, cpu.eip, cpu.eflags = 0x69, KSTACK, 0x61, 0xC0001234, 0x202
    cpu.changed = 0
    return g, cpu, pt


def _deliver(cpu, fused):
    if fused:
        return cpu.deliver_pending()
    irq, more = cpu.interrupt_pending()
    if irq == 32:
        return None
    cpu.try_deliver_interrupt(irq, more)       # returns nothing, as in lguest
    return None if cpu.irqs_pending >> irq & 1 else irq


def _state(g, cpu):
    return bytes(g.ram), bytes(cpu.regs), cpu.irqs_pending, g.dead


def _twice(change):
    """Deliver IRQ 3, let ``change(g, cpu, pt)`` act, put the registers
    back and deliver IRQ 3 again; the outcomes and end states of both
    paths."""
    out = {}
    for fused in (True, False):
        g, cpu, pt = _paged_guest()
        cpu.irqs_pending = 1 << 3
        first = _deliver(cpu, fused)
        change(g, cpu, pt)
        cpu.ss, cpu.esp, cpu.cs, cpu.eip, cpu.eflags = 0x69, KSTACK, 0x61, 0xC0001234, 0x202
        wr(g.ram, LD + LD_IRQ_ENABLED, 0x200)
        cpu.irqs_pending = 1 << 3
        second = _deliver(cpu, fused)
        out[fused] = (first, second, _state(g, cpu))
    return out


def _remap_pte(g, cpu, pt):
    pt.map(KSTACK, OTHER_PA)


def _clear_pte(g, cpu, pt):
    pde = rd(g.ram, PGDIR + (KSTACK >> 22) * 4)
    wr(g.ram, (pde & 0xFFFFF000) + ((KSTACK >> 12) & 0x3FF) * 4, 0)


def _move_table(g, cpu, pt):
    # A new page table for the same 4 MB, mapping the stack elsewhere.
    pde_at = PGDIR + (KSTACK >> 22) * 4
    wr(g.ram, pde_at, 0)
    pt.next_free = 0xB000
    pt.map(KSTACK, OTHER_PA)
    assert rd(g.ram, pde_at) & 0xFFFFF000 == 0xB000


def _clear_pde(g, cpu, pt):
    wr(g.ram, PGDIR + (KSTACK >> 22) * 4, 0)


def _switch_directory(g, cpu, pt):
    PageTables(g.ram, pgdir=PGDIR2, next_free=0xC000).map(KSTACK, OTHER_PA)
    cpu.pgdir = PGDIR2


def _table_past_limit(g, cpu, pt):
    g.pfn_limit = 3                  # the page table at 0x3000 is out of reach now


def _paging_off(g, cpu, pt):
    cpu.paging = False


@pytest.mark.parametrize("change, moved", [
    (_remap_pte, True), (_move_table, True), (_switch_directory, True),
    (_clear_pte, False), (_clear_pde, False), (_table_past_limit, False),
    (_paging_off, False),            # then the stack address is physical: past the RAM
])
def test_kept_walk_sees_every_page_table_change(change, moved):
    out = _twice(change)
    assert out[True] == out[False]
    first, second, (ram, _, _, dead) = out[True]
    assert first == 3
    if moved:
        # The second frame went to the new page, as a fresh walk says.
        assert second == 3 and dead is None
        assert ram[OTHER_PA - 12:OTHER_PA] == ram[KSTACK_PA - 12:KSTACK_PA] != bytes(12)
    else:
        assert dead is not None, "a stack that cannot be reached kills the guest"


def test_kept_walk_serves_the_same_page_again():
    g, cpu, pt = _paged_guest()
    cpu.irqs_pending = 0xF
    tops = []
    for irq in range(4):
        assert cpu.deliver_pending() == irq
        tops.append(cpu.esp)
        wr(g.ram, LD + LD_IRQ_ENABLED, 0x200)
    # Four frames of 12 bytes, one under the other: the first walks the
    # top's page, the other three the page below it, the last two from the
    # kept walk.
    assert tops == [KSTACK - 12 * n for n in range(1, 5)]
    assert g.dead is None and cpu.eip == 0xC0200030
    assert rd(g.ram, KSTACK_PA - 4) == 0x202 and rd(g.ram, KSTACK_PA - 48) == 0xC0200020


def test_every_irq_gets_its_own_int():
    g, cpu, pt = _paged_guest()
    for irq in range(32):
        cpu.irqs_pending = 1 << irq
        cpu.esp = KSTACK
        wr(g.ram, LD + LD_IRQ_ENABLED, 0x200)
        got = cpu.deliver_pending()
        assert got == irq and type(got) is int


def test_lguest_data_moved_after_a_fast_delivery():
    g, cpu, pt = _paged_guest()
    cpu.irqs_pending = 0b11
    assert cpu.deliver_pending() == 0
    assert g.ram[LD + LD_TIME:LD + LD_TIME + 8] == STAMP
    new_ld = 0xD000
    g.lguest_data = new_ld
    wr(g.ram, new_ld + LD_IRQ_ENABLED, 0x200)
    wr(g.ram, LD + LD_IRQ_ENABLED, 0x200)      # the old place would let it through too
    g.clock.set_ns(T0 + 1)
    assert cpu.deliver_pending() == 1
    assert g.ram[LD + LD_TIME:LD + LD_TIME + 8] == STAMP      # the old one is left alone
    assert rd(g.ram, new_ld + LD_TIME) == 1_700_000_000
    assert rd(g.ram, new_ld + LD_TIME + 4) == 123_456_790


def test_lguest_data_withdrawn_after_a_fast_delivery():
    g, cpu, pt = _paged_guest()
    cpu.irqs_pending = 0b11
    assert cpu.deliver_pending() == 0
    before = bytes(g.ram), bytes(cpu.regs)
    g.lguest_data = None
    assert cpu.deliver_pending() is None
    assert (bytes(g.ram), bytes(cpu.regs)) == before


def test_lguest_data_past_the_ram_end_goes_the_general_way():
    g, cpu, pt = _paged_guest()
    cpu.irqs_pending = 1
    g.lguest_data = g.mem_len - 8    # lguest_data would run past the RAM
    before = bytes(g.ram)
    assert cpu.deliver_pending() is None
    assert bytes(g.ram) == before and g.dead is None


def test_limit_lowered_after_a_fast_delivery():
    g, cpu, pt = _paged_guest()
    cpu.irqs_pending = 0b11
    assert cpu.deliver_pending() == 0
    g.pfn_limit = KSTACK_PA // PAGE - 1        # the stack page is beyond the limit now
    cpu.esp = KSTACK
    wr(g.ram, LD + LD_IRQ_ENABLED, 0x200)
    cpu.deliver_pending()
    assert g.dead is not None


@pytest.mark.parametrize("direct", [False, True])
def test_close_after_a_fast_delivery(direct):
    g, cpu, pt = _paged_guest()
    if direct:                       # a VCpu made by hand is followed as well
        cpu = lgcore.VCpu(g, 7)
        cpu.pgdir, cpu.paging = PGDIR, True
        cpu.load_guest_idt_entry(35, *int_gate(0xC0200030))
        cpu.ss, cpu.esp, cpu.cs, cpu.eip, cpu.eflags = 0x69, KSTACK, 0x61, 0xC0001234, 0x202
        assert cpu not in g.vcpus
    cpu.irqs_pending = 1 << 3
    assert cpu.deliver_pending() == 3
    cpu.irqs_pending = 1 << 3
    cpu.esp = KSTACK
    g.close()
    with pytest.raises(lgcore.GuestClosed):
        cpu.deliver_pending()


def test_hand_made_vcpu_follows_lguest_data():
    g, cpu, pt = _paged_guest()
    other = lgcore.VCpu(g, 7)
    other.load_guest_idt_entry(35, *int_gate(0xC0200030))
    other.ss, other.esp, other.eip = 0x69, 0x7000, 0xC0001234   # paging off: physical
    other.irqs_pending = 1 << 3
    g.lguest_data = 0xD000
    wr(g.ram, 0xD000 + LD_IRQ_ENABLED, 0x200)
    assert other.deliver_pending() == 3
    assert rd(g.ram, 0xD000 + LD_TIME) == 1_700_000_000


def test_wall_clock_guest_stamps_the_time_of_day():
    g = lgcore.Guest(bytearray(64 * 1024))           # the default clock: CLOCK_REALTIME
    cpu = g.add_vcpu()
    g.lguest_data = LD
    wr(g.ram, LD + LD_IRQ_ENABLED, 0x200)
    cpu.load_guest_idt_entry(32, *int_gate(0xC0200000))
    cpu.ss, cpu.esp = 0x69, 0x8000
    cpu.irqs_pending = 1
    before = time.time()
    assert cpu.deliver_pending() == 0
    sec, nsec = rd(g.ram, LD + LD_TIME), rd(g.ram, LD + LD_TIME + 4)
    assert int(before) <= sec <= time.time() + 1 and nsec < 10**9
