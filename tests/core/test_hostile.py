# SPDX-License-Identifier: GPL-2.0-only
"""Hostile guest states, at random: every engine entry point runs on guest
RAM with guard bytes on both sides and must neither crash nor touch them.

``LGCORE_CORE_EXAMPLES=N`` raises the number of random states (default 150)
for a longer soak."""
import os

from hypothesis import HealthCheck, given, settings, strategies as st

import lgcore
from lgcore.constants import LD_SIZE
from lgcore.runloop import lguest_arch_handle_trap, step

from .helpers import GuardedRAM

EXAMPLES = int(os.environ.get("LGCORE_CORE_EXAMPLES", "150"))
SIZE = 4 * 4096

u32 = st.integers(0, 0xFFFFFFFF)
edge = st.one_of(
    u32,
    st.sampled_from([0, 1, 3, 4, 8, 0xFFC, 0x1000, SIZE - 8, SIZE - 4, SIZE - 1, SIZE, SIZE + 4,
                     0x7FFFFFFF, 0x80000000, 0xFFFFF000, 0xFFFFFFFC, 0xFFFFFFFF]),
)
gate_hi = st.one_of(u32, st.sampled_from([0x8E00, 0x8F00, 0xEF00, 0x8500, 0x7E00, 0xFFFFFFFF]))

RAM = GuardedRAM(SIZE)


@settings(max_examples=EXAMPLES, deadline=None, database=None,
          suppress_health_check=[HealthCheck.too_slow])
@given(
    fill=st.binary(min_size=8, max_size=8),
    profile=st.sampled_from(["seed", "hardened"]),
    ld=st.one_of(st.none(), edge),
    paging=st.booleans(),
    pgdir=edge, esp=edge, esp1=edge, ss=u32, eip=edge,
    noirq=st.tuples(edge, edge),
    pending=u32, halted=st.booleans(),
    gates=st.lists(st.tuples(st.integers(0, 255), u32, gate_hi), max_size=6),
    traps=st.lists(st.one_of(st.integers(0, 300), u32), max_size=4),
    pfn_limit=st.one_of(st.none(), st.integers(0, 64)),
)
def test_no_state_reaches_outside_guest_ram(fill, profile, ld, paging, pgdir, esp, esp1, ss, eip,
                                             noirq, pending, halted, gates, traps, pfn_limit):
    RAM.view[:] = fill * (SIZE // 8)
    g = lgcore.Guest(RAM.view, profile=profile, clock=lgcore.VirtualClock(0),
                     pfn_limit=pfn_limit)
    try:
        cpu = g.add_vcpu()
        g.lguest_data = ld
        g.noirq_start, g.noirq_end = noirq
        cpu.paging, cpu.pgdir = paging, pgdir
        cpu.esp, cpu.esp1, cpu.ss, cpu.eip = esp, esp1, ss, eip
        cpu.irqs_pending, cpu.halted = pending, halted
        g.pin_page_hook = None
        for num, lo, hi in gates:
            cpu.load_guest_idt_entry(num, lo, hi)
            cpu.set_idt_entry(num ^ 0x20, lo, hi)          # unvetted too
        for _ in range(3):
            cpu.deliver_pending()
        for irq in range(0, 32, 7):
            cpu.try_deliver_interrupt(irq, bool(irq & 1))
        for num in traps:
            cpu.deliver_trap(num)
            lguest_arch_handle_trap(cpu, num, num * 3, num * 5)
            cpu.pin_page((num * 4096 + esp) & 0xFFFFFFFF)
        cpu.guest_pa(eip)
        cpu.write_timestamp()
        g.check_syscall_vector()
        host = bytearray(2048)
        cpu.copy_traps(host, range(256))
        cpu.hcall = True
        step(cpu)
        assert RAM.intact()
    finally:
        g.close()


def test_ram_of_exactly_lguest_data_size():
    ram = GuardedRAM(LD_SIZE)
    g = lgcore.Guest(ram.view, clock=lgcore.VirtualClock(0))
    cpu = g.add_vcpu()
    g.lguest_data = 0
    ram.view[0:4] = (0x200).to_bytes(4, "little")
    cpu.load_guest_idt_entry(32, 0x00600000, 0xC0008E00)
    cpu.esp, cpu.esp1, cpu.ss = LD_SIZE, LD_SIZE, 0x7B
    cpu.set_interrupt(0)
    assert cpu.deliver_pending() == 0
    assert g.dead == "bad write address 0x570 len 4"     # pfn_limit 0: nothing is writable
    cpu.write_timestamp()
    assert ram.intact()
