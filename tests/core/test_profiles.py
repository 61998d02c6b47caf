# SPDX-License-Identifier: GPL-2.0-only
"""The two fidelity profiles (design section 4).  Each difference is run in
both: "seed" must keep the original's quirk, "hardened" must fix it."""
import pytest

import lgcore
from lgcore.constants import LD_IRQ_PENDING
from lgcore.runloop import lguest_arch_handle_trap

from .helpers import LD, GuardedRAM, int_gate, make_guest, rd, trap_gate, words, wr

BOTH = ["seed", "hardened"]
SIZE = 64 * 1024


def test_profile_bits():
    g, _ = make_guest(profile="seed")
    assert (g.profile, g.fixes) == ("seed", 0)
    g, _ = make_guest(profile="hardened")
    assert (g.profile, g.fixes) == ("hardened", 0xF)
    assert lgcore.FIXES == {"more": 1, "eflags": 2, "address_check": 4, "syscall_reflect": 8}
    g.fixes = lgcore.FIXES["more"]
    assert g.profile == "custom"
    g.profile = "seed"
    assert g.fixes == 0
    with pytest.raises(ValueError, match=r"profile='strict' is not one of \['hardened', 'seed'\]"):
        g.profile = "strict"
    with pytest.raises(ValueError, match=r"fixes=16 has unknown bits \(known: 0xf\)"):
        g.fixes = 16
    with pytest.raises(ValueError, match="profile='x'"):
        lgcore.Guest(bytearray(SIZE), profile="x")


# ---- 1. `more` ----

@pytest.mark.parametrize("profile", BOTH)
def test_more(profile):
    g, cpu = make_guest(profile=profile)
    cpu.ss, cpu.esp = 0x69, 0x5000
    cpu.load_guest_idt_entry(32, *trap_gate(0xC0200000))
    cpu.load_guest_idt_entry(33, *trap_gate(0xC0200010))
    cpu.irqs_pending = 0b11
    assert cpu.interrupt_pending() == (0, True)
    cpu.irqs_pending = 0b1
    assert cpu.interrupt_pending() == (0, profile == "seed")
    cpu.irqs_pending = 1 << 31
    assert cpu.interrupt_pending() == (31, profile == "seed")
    cpu.irqs_pending = 0
    assert cpu.interrupt_pending() == (32, profile == "seed")

    # one IRQ left: the seed never clears irq_pending, hardened does
    wr(g.ram, LD + LD_IRQ_PENDING, 0x200)
    cpu.irqs_pending = 0b10
    assert cpu.deliver_pending() == 1
    assert rd(g.ram, LD + LD_IRQ_PENDING) == (0x200 if profile == "seed" else 0)

    # two IRQs: both keep it
    wr(g.ram, LD + LD_IRQ_PENDING, 0x200)
    cpu.esp = 0x5000
    cpu.irqs_pending = 0b11
    assert cpu.deliver_pending() == 0
    assert rd(g.ram, LD + LD_IRQ_PENDING) == 0x200


# ---- 2. TF/NT/RF/VM on delivery ----

@pytest.mark.parametrize("profile", BOTH)
@pytest.mark.parametrize("how", ["trap", "irq"])
def test_eflags_cleared_on_delivery(profile, how):
    g, cpu = make_guest(profile=profile)
    flags = 0x202 | 0x100 | 0x4000 | 0x10000 | 0x20000 | 0x800   # + TF NT RF VM, OF
    cpu.ss, cpu.esp, cpu.eip, cpu.eflags = 0x69, 0x5000, 0xC0001000, flags
    if how == "trap":
        cpu.load_guest_idt_entry(3, *int_gate(0xC0300000, dpl=3))
        assert cpu.deliver_trap(3)
    else:
        cpu.load_guest_idt_entry(32, *int_gate(0xC0300000))
        cpu.set_interrupt(0)
        assert cpu.deliver_pending() == 0
    assert rd(g.ram, 0x4FFC) == flags                           # pushed as they were
    assert cpu.eflags == (flags if profile == "seed" else 0xA02)


# ---- 3. the address check's off-by-one ----

@pytest.mark.parametrize("profile", BOTH)
def test_access_ending_at_the_limit(profile):
    ram = GuardedRAM(SIZE)
    g, cpu = make_guest(ram=ram.view, profile=profile)
    seed = profile == "seed"
    assert g.lguest_address_ok(SIZE - 4, 4) is not seed
    assert g.lguest_address_ok(SIZE, 0) is not seed
    assert not g.lguest_address_ok(SIZE - 3, 4)
    cpu.lgwrite(SIZE - 4, 0x11223344)
    if seed:
        assert g.dead == "bad write address 0xfffc len 4"
        assert g.ram[SIZE - 4:] == bytes(4)
    else:
        assert g.dead is None and g.ram[SIZE - 4:] == bytes.fromhex("44332211")
    g.revive()
    assert cpu.lgread(SIZE - 4) == (0 if seed else 0x11223344)
    assert (g.dead is not None) is seed
    # past the buffer is refused by both, without touching the guard
    g.revive()
    cpu.lgwrite(SIZE - 2, 0xFFFFFFFF)
    assert g.dead == "bad write address 0xfffe len 4"
    assert ram.intact()


@pytest.mark.parametrize("profile", BOTH)
def test_pfn_limit_off_by_one(profile):
    g, cpu = make_guest(profile=profile, pfn_limit=4)
    assert g.lguest_address_ok(0x3FFC, 4) is (profile == "hardened")
    assert not g.lguest_address_ok(0x4000, 4)


@pytest.mark.parametrize("profile", BOTH)
def test_frame_at_the_top_of_ram(profile):
    ram = GuardedRAM(SIZE)
    g, cpu = make_guest(ram=ram.view, profile=profile)
    cpu.ss, cpu.esp, cpu.cs, cpu.eip, cpu.eflags = 0x69, SIZE, 0x61, 0xC0001000, 0x202
    cpu.set_guest_interrupt(*trap_gate(0xC0300000), False)
    if profile == "seed":
        assert g.dead == "bad write address 0xfffc len 4"
        assert g.ram[SIZE - 12:] == words(0xC0001000, 0x61, 0)    # the eflags push failed
    else:
        assert g.dead is None
        assert g.ram[SIZE - 12:] == words(0xC0001000, 0x61, 0x202)
    assert cpu.esp == SIZE - 12
    assert ram.intact()


@pytest.mark.parametrize("profile", BOTH)
def test_lguest_init_with_the_struct_at_the_top_of_ram(profile):
    from lgcore.constants import LD_SIZE
    from lgcore.runloop import do_hypercalls
    g, cpu = make_guest(profile=profile, ld=None)
    wr(g.ram, SIZE - LD_SIZE + 1392, 0x80)       # syscall_vec
    cpu.eax, cpu.ebx = 1, SIZE - LD_SIZE
    do_hypercalls(cpu)
    if profile == "seed":
        assert g.dead == "bad guest page 0xfa8c"
        assert g.lguest_data is None
    else:
        assert g.dead is None and g.lguest_data == SIZE - LD_SIZE


# ---- 4. a syscall vector reaching the host ----

@pytest.mark.parametrize("profile", BOTH)
@pytest.mark.parametrize("vector, param", [(0x80, 0x80), (0x40, 0x40)])
def test_reflected_syscall_vector(profile, vector, param):
    g, cpu = make_guest(profile=profile, syscall_vector=param)
    cpu.load_guest_idt_entry(vector, *int_gate(0xC0400000, dpl=3))   # not a trap gate
    cpu.ss, cpu.esp, cpu.cs, cpu.eip = 0x7B, 0xBFFF0000, 0x73, 0x08048010
    cpu.esp1, cpu.ss1 = 0x6000, 0x69
    lguest_arch_handle_trap(cpu, vector, 0, 0)
    if profile == "seed":
        assert (cpu.cs, cpu.eip) == (0x73, 0x08048010)          # dropped
    else:
        assert (cpu.cs, cpu.eip, cpu.esp) == (0x61, 0xC0400000, 0x5FEC)
        assert g.ram[0x5FEC:0x6000] == words(0x08048010, 0x73, 0x202, 0xBFFF0000, 0x7B)
    assert g.dead is None


@pytest.mark.parametrize("profile", BOTH)
def test_other_external_vectors_are_never_reflected(profile):
    g, cpu = make_guest(profile=profile)
    cpu.load_guest_idt_entry(0x41, *int_gate(0xC0400000, dpl=3))
    lguest_arch_handle_trap(cpu, 0x41, 0, 0)
    assert cpu.eip == 0 and g.dead is None


@pytest.mark.parametrize("profile", BOTH)
def test_reflected_syscall_without_a_gate_kills_only_when_hardened(profile):
    g, cpu = make_guest(profile=profile)
    cpu.eip = 0x08048010
    lguest_arch_handle_trap(cpu, 0x80, 0, 0)
    assert g.dead == (None if profile == "seed" else "unhandled trap 128 at 0x8048010 (0x0)")
