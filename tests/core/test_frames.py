# SPDX-License-Identifier: GPL-2.0-only
"""H:210 and H:220: the frame set_guest_interrupt() builds on the guest's
stack, push_guest_stack(), and deliver_trap().  Expected bytes are written
out by hand from lguest-facts.md section 6."""
import mmap

import pytest

import lgcore
from lgcore.constants import LD_IRQ_ENABLED

from .helpers import LD, GuardedRAM, PageTables, int_gate, make_guest, rd, trap_gate, words, wr

HANDLER = 0xC0101234


# ---- push_guest_stack ----

def test_push_guest_stack_moves_then_writes():
    g, cpu = make_guest()
    assert cpu.push_guest_stack(0x2000, 0xDEADBEEF) == 0x1FFC
    assert g.ram[0x1FFC:0x2000] == bytes.fromhex("efbeadde")
    assert lgcore.push_guest_stack(cpu, 0x1FFC, 0x01020304) == 0x1FF8
    assert g.ram[0x1FF8:0x1FFC] == bytes.fromhex("04030201")
    assert g.dead is None


def test_push_guest_stack_at_zero_wraps_and_kills():
    ram = GuardedRAM(64 * 1024)
    g, cpu = make_guest(ram=ram.view)
    before = ram.snapshot()
    assert cpu.push_guest_stack(0, 0x11223344) == 0xFFFFFFFC
    assert g.dead == "bad write address 0xfffffffc len 4"
    assert ram.snapshot() == before and ram.intact()


# ---- the worked example of facts section 6 ----

def test_worked_example_page_fault_from_user_mode():
    size = 0x07A40000
    ram = mmap.mmap(-1, size)
    g = lgcore.Guest(ram, clock=lgcore.VirtualClock(0))
    cpu = g.add_vcpu()
    pt = PageTables(g.ram, pgdir=0x2000, next_free=0x3000)
    pt.map(0xC7A3E000, 0x07A3E000)          # the page holding esp1 itself
    pt.map(0xC7A3D000, 0x07A3D000)
    cpu.pgdir, cpu.paging = 0x2000, True
    g.lguest_data = LD
    wr(g.ram, LD + LD_IRQ_ENABLED, 0x200)
    cpu.load_guest_idt_entry(14, *int_gate(HANDLER))
    cpu.ss, cpu.esp, cpu.cs, cpu.eip, cpu.eflags = 0x7B, 0xBFFFF000, 0x73, 0x08048000, 0x202
    cpu.esp1, cpu.ss1 = 0xC7A3E000, 0x69
    cpu.errcode = 6
    assert cpu.guest_pa(0xC7A3E000) == 0x07A3E000

    assert cpu.deliver_trap(14) is True

    assert g.ram[0x07A3DFE8:0x07A3E000] == bytes.fromhex(
        "06000000"      # ...FE8 errcode 6
        "00800408"      # ...FEC eip 0x08048000
        "73000000"      # ...FF0 cs 0x73
        "02020000"      # ...FF4 eflags 0x202
        "00f0ffbf"      # ...FF8 esp 0xBFFFF000
        "7b000000")     # ...FFC ss 0x7B
    assert g.ram[0x07A3E000:0x07A3E004] == bytes(4)
    assert (cpu.esp, cpu.ss, cpu.cs, cpu.eip) == (0xC7A3DFE8, 0x69, 0x61, HANDLER)
    assert cpu.eflags == 0x202                        # seed: untouched
    assert rd(g.ram, LD + LD_IRQ_ENABLED) == 0        # interrupt gate
    assert g.dead is None


# ---- ring 1 and ring 3 frames, with and without an error code ----

def _ring1(cpu, esp=0x5000):
    cpu.ss, cpu.esp, cpu.cs, cpu.eip, cpu.eflags = 0x69, esp, 0x61, 0xC0012345, 0x202
    cpu.errcode = 0xE44


def _ring3(cpu, esp1=0x5000):
    cpu.ss, cpu.esp, cpu.cs, cpu.eip, cpu.eflags = 0x7B, 0xBFFF0000, 0x73, 0x08049999, 0x246
    cpu.esp1, cpu.ss1 = esp1, 0x69
    cpu.errcode = 0xE44


def test_ring1_frame_without_error_code():
    g, cpu = make_guest()
    _ring1(cpu)
    cpu.set_guest_interrupt(*int_gate(HANDLER), False)
    assert g.ram[0x4FF4:0x5000] == words(0xC0012345, 0x61, 0x202)
    assert g.ram[0x4FF0:0x4FF4] == bytes(4)
    assert (cpu.ss, cpu.esp, cpu.cs, cpu.eip) == (0x69, 0x4FF4, 0x61, HANDLER)


def test_ring1_frame_with_error_code():
    g, cpu = make_guest()
    _ring1(cpu)
    lgcore.set_guest_interrupt(cpu, *int_gate(HANDLER), True)
    assert g.ram[0x4FF0:0x5000] == words(0xE44, 0xC0012345, 0x61, 0x202)
    assert (cpu.ss, cpu.esp) == (0x69, 0x4FF0)


def test_ring3_frame_without_error_code():
    g, cpu = make_guest()
    _ring3(cpu, esp1=0x6000)
    cpu.set_guest_interrupt(*int_gate(HANDLER), False)
    assert g.ram[0x5FEC:0x6000] == words(0x08049999, 0x73, 0x246, 0xBFFF0000, 0x7B)
    assert (cpu.ss, cpu.esp, cpu.cs, cpu.eip) == (0x69, 0x5FEC, 0x61, HANDLER)


def test_ring3_frame_with_error_code():
    g, cpu = make_guest()
    _ring3(cpu, esp1=0x6000)
    cpu.set_guest_interrupt(*trap_gate(HANDLER), True)
    assert g.ram[0x5FE8:0x6000] == words(0xE44, 0x08049999, 0x73, 0x246, 0xBFFF0000, 0x7B)
    assert (cpu.ss, cpu.esp) == (0x69, 0x5FE8)


@pytest.mark.parametrize("ss, cs, user", [
    (0x69, 0x73, False),     # the test is on ss, not cs
    (0x7B, 0x61, True),
    (0x68, 0x61, True),      # RPL 0 is "not the guest kernel" too
    (0x6A, 0x61, True),
    (0x10069, 0x61, False),
])
def test_privilege_is_read_from_ss(ss, cs, user):
    g, cpu = make_guest()
    cpu.ss, cpu.cs, cpu.esp, cpu.eip, cpu.eflags = ss, cs, 0x5000, 0x1000, 0x202
    cpu.esp1, cpu.ss1 = 0x7000, 0x69
    cpu.set_guest_interrupt(*trap_gate(HANDLER), False)
    if user:
        assert g.ram[0x6FEC:0x7000] == words(0x1000, cs, 0x202, 0x5000, ss)
        assert (cpu.ss, cpu.esp) == (0x69, 0x6FEC)
    else:
        assert g.ram[0x4FF4:0x5000] == words(0x1000, cs, 0x202)
        assert (cpu.ss, cpu.esp) == (ss, 0x4FF4)


def test_ss1_is_sixteen_bits():
    g, cpu = make_guest()
    _ring3(cpu)
    cpu.ss1 = 0xABCD0069
    assert cpu.ss1 == 0x0069
    cpu.set_guest_interrupt(*trap_gate(HANDLER), False)
    assert cpu.ss == 0x69


# ---- the virtual interrupt flag ----

@pytest.mark.parametrize("irq_enabled, pushed", [
    (0x200, 0x202), (0x0, 0x002), (0x100, 0x002), (0xFFFFFDFF, 0x002), (0x201, 0x202),
])
def test_pushed_eflags_carry_virtual_if(irq_enabled, pushed):
    g, cpu = make_guest(irq_enabled=irq_enabled)
    _ring1(cpu)
    cpu.set_guest_interrupt(*trap_gate(HANDLER), False)
    assert rd(g.ram, 0x4FFC) == pushed
    assert cpu.eflags == 0x202                            # the real flags keep IF
    assert rd(g.ram, LD + LD_IRQ_ENABLED) == irq_enabled  # trap gate: left alone


def test_unreadable_irq_enabled_leaves_if_set():
    g, cpu = make_guest(ld=None)
    _ring1(cpu)
    cpu.set_guest_interrupt(*trap_gate(HANDLER), False)
    assert rd(g.ram, 0x4FFC) == 0x202
    assert g.dead is None


def test_interrupt_gate_disables_virtual_interrupts_after_the_pushes():
    g, cpu = make_guest(irq_enabled=0x200)
    _ring1(cpu)
    cpu.set_guest_interrupt(*int_gate(HANDLER), False)
    assert rd(g.ram, 0x4FFC) == 0x202                     # pushed before the clear
    assert rd(g.ram, LD + LD_IRQ_ENABLED) == 0


def test_interrupt_gate_without_lguest_data_kills():
    g, cpu = make_guest(ld=None)
    _ring1(cpu)
    cpu.set_guest_interrupt(*int_gate(HANDLER), False)
    assert g.dead == "Disabling interrupts"
    assert g.ram[0x4FF4:0x5000] == words(0xC0012345, 0x61, 0x202)   # the frame is there
    assert (cpu.esp, cpu.eip) == (0x4FF4, HANDLER)


def test_gate_selector_is_ignored_cs_is_always_0x61():
    g, cpu = make_guest()
    _ring1(cpu)
    cpu.set_guest_interrupt(0xFFFF1234, 0xC0108F00, False)
    assert (cpu.cs, cpu.eip) == (0x61, 0xC0101234)


# ---- stacks in awkward places ----

def test_virtual_stack_moves_by_the_physical_delta():
    g, cpu = make_guest()
    pt = PageTables(g.ram, pgdir=0x2000, next_free=0x3000)
    pt.map(0xC0005000, 0x9000)
    cpu.pgdir, cpu.paging = 0x2000, True
    _ring1(cpu, esp=0xC0005008)
    cpu.set_guest_interrupt(*trap_gate(HANDLER), True)
    assert g.ram[0x8FF8:0x9008] == words(0xE44, 0xC0012345, 0x61, 0x202)
    assert cpu.esp == 0xC0004FF8


def test_frame_crossing_a_page_continues_in_the_physically_preceding_page():
    g, cpu = make_guest()
    pt = PageTables(g.ram, pgdir=0x2000, next_free=0x3000)
    pt.map(0xC0010000, 0x8000)
    pt.map(0xC000F000, 0x4000)          # virtually below, physically elsewhere
    cpu.pgdir, cpu.paging = 0x2000, True
    _ring1(cpu, esp=0xC0010008)
    cpu.set_guest_interrupt(*trap_gate(HANDLER), False)
    assert g.ram[0x7FFC:0x8008] == words(0xC0012345, 0x61, 0x202)
    assert g.ram[0x4FFC:0x5000] == bytes(4)
    assert cpu.esp == 0xC000FFFC


def test_ring3_with_esp1_zero():
    ram = GuardedRAM(64 * 1024)
    g, cpu = make_guest(ram=ram.view)
    _ring3(cpu, esp1=0)
    before = ram.snapshot()
    cpu.set_guest_interrupt(*trap_gate(HANDLER), False)
    assert g.dead == "bad write address 0xfffffffc len 4"
    assert ram.snapshot() == before and ram.intact()
    # the registers change all the same: esp = 0 - 20
    assert (cpu.ss, cpu.esp, cpu.cs, cpu.eip) == (0x69, 0xFFFFFFEC, 0x61, HANDLER)


def test_stack_at_the_bottom_of_ram_wraps():
    ram = GuardedRAM(64 * 1024)
    g, cpu = make_guest(ram=ram.view)
    _ring1(cpu, esp=8)
    cpu.set_guest_interrupt(*trap_gate(HANDLER), False)
    assert g.ram[0:8] == words(0x61, 0x202)          # two pushes landed
    assert g.dead == "bad write address 0xfffffffc len 4"
    assert cpu.esp == 0xFFFFFFFC
    assert ram.intact()


def test_stack_past_the_end_of_ram_lands_in_part():
    ram = GuardedRAM(64 * 1024)
    g, cpu = make_guest(ram=ram.view)
    _ring1(cpu, esp=0x10000 + 8)
    cpu.set_guest_interrupt(*trap_gate(HANDLER), False)
    assert g.dead == "bad write address 0x10004 len 4"
    # 0x10000 fails too; 0xFFFC fails in the seed's address check (ends at
    # the limit); nothing lands and nothing leaks past the buffer
    assert ram.intact()
    assert cpu.esp == 0x10000 + 8 - 12


def test_unmapped_stack_kills_and_still_moves_registers():
    ram = GuardedRAM(64 * 1024)
    g, cpu = make_guest(ram=ram.view)
    cpu.pgdir, cpu.paging = 0x2000, True             # an empty page directory
    _ring1(cpu, esp=0xC0005000)
    before = ram.snapshot()
    cpu.set_guest_interrupt(*trap_gate(HANDLER), True)
    assert g.dead == "Bad address 0xc0005000"
    assert ram.snapshot() == before and ram.intact()
    assert (cpu.esp, cpu.eip) == (0xC0004FF0, HANDLER)


# ---- deliver_trap (H:220) ----

@pytest.mark.parametrize("num", [256, 257, 0x1000, 0xFFFFFFFF])
def test_deliver_trap_past_the_table_is_refused(num):
    g, cpu = make_guest()
    _ring1(cpu)
    regs = bytes(cpu.regs)
    assert lgcore.deliver_trap(cpu, num) is False
    assert bytes(cpu.regs) == regs and g.dead is None


def test_deliver_trap_without_a_present_gate_is_refused():
    g, cpu = make_guest()
    _ring1(cpu)
    cpu.set_idt_entry(0, 0x00611234, 0xC0107E00)      # P clear
    regs, ram = bytes(cpu.regs), bytes(g.ram)
    for num in range(256):
        assert cpu.deliver_trap(num) is False
    assert bytes(cpu.regs) == regs and bytes(g.ram) == ram and g.dead is None


def test_deliver_trap_every_vector_pushes_an_error_code_only_where_the_cpu_does():
    for num in range(256):
        g, cpu = make_guest()
        _ring1(cpu)
        cpu.set_idt_entry(num, 0x00610000 | (num << 4), 0xC0108F00)
        assert cpu.deliver_trap(num) is True
        has = num in (8, 10, 11, 12, 13, 14, 17)
        assert cpu.esp == (0x4FF0 if has else 0x4FF4), num
        assert cpu.eip == 0xC0100000 | (num << 4)
        assert rd(g.ram, 0x4FF0) == (0xE44 if has else 0)


def test_deliver_trap_does_not_vet_type_or_dpl():
    g, cpu = make_guest()
    _ring1(cpu)
    cpu.set_idt_entry(40, 0x00615555, 0xC010E500)     # present task gate, DPL 3
    assert cpu.deliver_trap(40) is True
    assert cpu.eip == 0xC0105555
    assert rd(g.ram, LD + LD_IRQ_ENABLED) == 0x200    # not an interrupt gate


def test_deliver_trap_vector_255():
    g, cpu = make_guest()
    _ring1(cpu)
    cpu.load_guest_idt_entry(255, *int_gate(0xC01FFFFF))
    assert cpu.deliver_trap(255) is True
    assert (cpu.esp, cpu.eip) == (0x4FF4, 0xC01FFFFF)


def test_deliver_trap_refuses_negative_numbers():
    g, cpu = make_guest()
    with pytest.raises(ValueError, match="num=-1 does not fit 32 bits"):
        cpu.deliver_trap(-1)
