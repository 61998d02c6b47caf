# SPDX-License-Identifier: GPL-2.0-only
"""H:205: the pending bitmap, interrupt_pending(), try_deliver_interrupt(),
set_interrupt() and the fused deliver_pending(), seed profile.  (The
hardened `more` is in test_profiles.py.)"""
import pytest

import lgcore
from lgcore.constants import LD_BLOCKED, LD_IRQ_ENABLED, LD_IRQ_PENDING, LD_TIME

from .helpers import LD, int_gate, make_guest, rd, trap_gate, words, wr

T0 = 1_700_000_000_123_456_789           # the virtual clock's now
STAMP = bytes.fromhex("00f15365" "15cd5b07")   # 1700000000 s, 123456789 ns


def _guest(**kw):
    g, cpu = make_guest(clock=lgcore.VirtualClock(T0), **kw)
    cpu.ss, cpu.esp, cpu.cs, cpu.eip, cpu.eflags = 0x69, 0x5000, 0x61, 0xC0001234, 0x202
    for irq in range(32):
        cpu.load_guest_idt_entry(32 + irq, *int_gate(0xC0200000 + 0x10 * irq))
    cpu.changed = 0
    return g, cpu


def _time(g):
    return bytes(g.ram[LD + LD_TIME:LD + LD_TIME + 8])


# ---- interrupt_pending ----

def test_nothing_before_lguest_init_and_more_untouched():
    g, cpu = _guest(ld=None)
    cpu.irqs_pending = 0xFFFFFFFF
    assert cpu.interrupt_pending() == (32, False)
    assert lgcore.interrupt_pending(cpu) == (32, False)


@pytest.mark.parametrize("pending, blocked, irq", [
    (0, 0, 32),
    (0b1010, 0, 1),
    (0b1010, 0b0010, 3),
    (0b1010, 0b1010, 32),
    (1 << 31, 0, 31),
    (0xFFFFFFFF, 0x7FFFFFFF, 31),
    (0xFFFFFFFF, 0xFFFFFFFE, 0),
])
def test_interrupt_pending_seed_more_is_always_true(pending, blocked, irq):
    g, cpu = _guest()
    cpu.irqs_pending = pending
    wr(g.ram, LD + LD_BLOCKED, blocked)
    assert cpu.interrupt_pending() == (irq, True)


def test_interrupt_pending_ignores_irq_enabled():
    g, cpu = _guest(irq_enabled=0)
    cpu.irqs_pending = 1 << 5
    assert cpu.interrupt_pending() == (5, True)


def test_unreadable_blocked_mask_means_nothing_pending():
    # lguest_data so close to the end that irq_enabled is readable but the
    # 4-byte blocked_interrupts word is not
    size = 64 * 1024
    g, cpu = _guest(ld=0x1000)
    g.lguest_data = size - 6
    cpu.irqs_pending = 1
    assert cpu.interrupt_pending() == (32, False)
    assert cpu.deliver_pending() is None
    assert g.dead is None


# ---- try_deliver_interrupt ----

def test_delivers_through_vector_32_plus_irq():
    g, cpu = _guest()
    cpu.irqs_pending = (1 << 5) | (1 << 9)
    cpu.try_deliver_interrupt(5, True)
    assert cpu.irqs_pending == 1 << 9
    assert cpu.eip == 0xC0200050
    assert g.ram[0x4FF4:0x5000] == words(0xC0001234, 0x61, 0x202)   # never an error code
    assert cpu.esp == 0x4FF4
    assert rd(g.ram, LD + LD_IRQ_ENABLED) == 0
    assert _time(g) == STAMP
    assert rd(g.ram, LD + LD_IRQ_PENDING) == 0          # `more` true: not touched


def test_more_false_clears_irq_pending():
    g, cpu = _guest()
    wr(g.ram, LD + LD_IRQ_PENDING, 0x200)
    cpu.irqs_pending = 1
    lgcore.try_deliver_interrupt(cpu, 0, False)
    assert rd(g.ram, LD + LD_IRQ_PENDING) == 0


@pytest.mark.parametrize("eip, blocked", [
    (0xC0000FFF, False), (0xC0001000, True), (0xC000100F, True), (0xC0001010, False),
])
def test_noirq_window_is_half_open(eip, blocked):
    g, cpu = _guest()
    g.noirq_start, g.noirq_end = 0xC0001000, 0xC0001010
    cpu.eip, cpu.halted = eip, 1
    cpu.irqs_pending = 1
    ram = bytes(g.ram)
    cpu.try_deliver_interrupt(0, False)
    if blocked:
        # nothing at all: no frame, no irq_pending, no timestamp, still halted
        assert bytes(g.ram) == ram
        assert (cpu.eip, cpu.halted, cpu.irqs_pending) == (eip, 1, 1)
    else:
        assert (cpu.eip, cpu.halted, cpu.irqs_pending) == (0xC0200000, 0, 0)
        assert _time(g) == STAMP


def test_halted_guest_always_takes_the_irq():
    g, cpu = _guest(irq_enabled=0)
    cpu.halted = 1
    cpu.irqs_pending = 1 << 3
    cpu.try_deliver_interrupt(3, True)
    assert cpu.halted == 0
    assert cpu.eip == 0xC0200030
    # re-enabled before the frame was built, so the pushed IF is on...
    assert rd(g.ram, 0x4FFC) == 0x202
    # ...and the interrupt gate turned it off again
    assert rd(g.ram, LD + LD_IRQ_ENABLED) == 0


def test_halted_guest_with_a_trap_gate_keeps_interrupts_enabled():
    g, cpu = _guest(irq_enabled=0)
    cpu.load_guest_idt_entry(33, *trap_gate(0xC0300000))
    cpu.halted = 1
    cpu.irqs_pending = 1 << 1
    cpu.try_deliver_interrupt(1, True)
    assert rd(g.ram, LD + LD_IRQ_ENABLED) == 0x200


def test_halted_without_lguest_data_kills_re_enabling():
    g, cpu = _guest(ld=None)
    cpu.halted = 1
    cpu.irqs_pending = 1
    cpu.try_deliver_interrupt(0, True)
    assert g.dead == "Re-enabling interrupts"
    assert cpu.halted == 0


@pytest.mark.parametrize("irq_enabled", [0])
def test_virtual_interrupts_off_only_flags_irq_pending(irq_enabled):
    g, cpu = _guest(irq_enabled=irq_enabled)
    cpu.irqs_pending = 1
    regs = bytes(cpu.regs)
    cpu.try_deliver_interrupt(0, False)
    assert rd(g.ram, LD + LD_IRQ_PENDING) == 0x200
    assert bytes(cpu.regs) == regs
    assert cpu.irqs_pending == 1
    assert _time(g) == bytes(8)                       # returned before the timestamp


def test_irq_enabled_is_a_whole_word_test_here():
    # 0x100 is "enabled" for try_deliver (non-zero) but "IF clear" for the
    # pushed eflags (bit test): both quirks at once
    g, cpu = _guest(irq_enabled=0x100)
    cpu.irqs_pending = 1
    cpu.try_deliver_interrupt(0, True)
    assert cpu.eip == 0xC0200000
    assert rd(g.ram, 0x4FFC) == 0x002


def test_missing_gate_keeps_the_irq_pending_but_still_stamps_time():
    g, cpu = _guest()
    cpu.set_idt_entry(32 + 7, 0, 0)
    cpu.halted = 1
    cpu.irqs_pending = 1 << 7
    regs = bytearray(cpu.regs)
    cpu.try_deliver_interrupt(7, False)
    assert cpu.irqs_pending == 1 << 7
    assert cpu.halted == 0
    regs[44:48] = bytes(cpu.regs)[44:48]
    assert bytes(cpu.regs) == bytes(regs)
    assert _time(g) == STAMP
    assert rd(g.ram, LD + LD_IRQ_PENDING) == 0


@pytest.mark.parametrize("irq", [32, 33, 1000, -1])
def test_try_deliver_refuses_irqs_it_has_no_bit_for(irq):
    g, cpu = _guest()
    with pytest.raises(ValueError, match=rf"irq={irq} is out of range \(0\.\.31\)"):
        cpu.try_deliver_interrupt(irq, True)


# ---- set_interrupt ----

def test_set_interrupt_sets_bits():
    g, cpu = _guest()
    cpu.set_interrupt(0)
    lgcore.set_interrupt(cpu, 31)
    cpu.set_interrupt(0)
    assert cpu.irqs_pending == 0x80000001


@pytest.mark.parametrize("irq", [32, -1, 1 << 40])
def test_set_interrupt_refuses_out_of_range(irq):
    g, cpu = _guest()
    with pytest.raises(ValueError, match=r"out of range \(0\.\.31\)"):
        cpu.set_interrupt(irq)
    assert cpu.irqs_pending == 0


def test_set_interrupt_refuses_non_ints():
    g, cpu = _guest()
    with pytest.raises(TypeError, match="irq must be an int, not str"):
        cpu.set_interrupt("3")


# ---- the fused step ----

def test_deliver_pending_lowest_first():
    g, cpu = _guest()
    cpu.irqs_pending = (1 << 4) | (1 << 2)
    assert cpu.deliver_pending() == 2
    cpu.eip, cpu.esp = 0xC0001234, 0x5000
    wr(g.ram, LD + LD_IRQ_ENABLED, 0x200)
    assert cpu.deliver_pending() == 4
    assert cpu.deliver_pending() is None


@pytest.mark.parametrize("setup", ["blocked", "irqs_off", "noirq", "no_gate", "nothing", "no_init"])
def test_deliver_pending_builds_no_frame(setup):
    g, cpu = _guest()
    cpu.irqs_pending = 1
    if setup == "blocked":
        wr(g.ram, LD + LD_BLOCKED, 1)
    elif setup == "irqs_off":
        wr(g.ram, LD + LD_IRQ_ENABLED, 0)
    elif setup == "noirq":
        g.noirq_start, g.noirq_end = 0xC0001000, 0xC0002000
    elif setup == "no_gate":
        cpu.set_idt_entry(32, 0, 0)
    elif setup == "nothing":
        cpu.irqs_pending = 0
    elif setup == "no_init":
        g.lguest_data = None
    regs = bytes(cpu.regs)
    assert cpu.deliver_pending() is None
    assert bytes(cpu.regs) == regs
    assert g.dead is None


# The fast path reads pfn_bound, which the Guest derives from pfn_limit and
# the profile whenever either is set: changed on a live guest, the fused
# step must still agree with the two-step path, byte for byte, where the
# page rule decides (the frame's top exactly at the limit: the seed kills,
# the hardened profile delivers).
@pytest.mark.parametrize("changes", [
    (("profile", "hardened"),),
    (("profile", "hardened"), ("profile", "seed")),
    (("pfn_limit", 4),),
    (("pfn_limit", 4), ("pfn_limit", 16)),
    (("fixes", lgcore.FIXES["address_check"]),),
    (("profile", "hardened"), ("pfn_limit", 4), ("fixes", 0)),
])
def test_deliver_pending_follows_limit_changes(changes):
    def run(fused):
        g, cpu = _guest(pfn_limit=5)
        cpu.esp = 5 * 4096           # the frame ends at the first byte of pfn 5
        cpu.irqs_pending = 1 << 3
        for name, value in changes:
            setattr(g, name, value)
        # lguest's rule on the final limit: the seed wants pfn 5 under it,
        # the later check lets the frame end at it.
        if g.fixes & lgcore.FIXES["address_check"]:
            fits = 5 <= g.pfn_limit
        else:
            fits = 5 < g.pfn_limit
        if fused:
            cpu.deliver_pending()
        else:
            irq, more = cpu.interrupt_pending()
            cpu.try_deliver_interrupt(irq, more)
        assert (g.dead is None) == fits, (fused, g.pfn_limit, g.fixes, g.dead)
        return bytes(g.ram), bytes(cpu.regs), cpu.irqs_pending, g.dead
    assert run(True) == run(False)


def test_deliver_pending_limit_rule_both_ways():
    # The case above has teeth: at the limit the profiles disagree.
    outcomes = {}
    for profile in ("seed", "hardened"):
        g, cpu = _guest(pfn_limit=5, profile=profile)
        cpu.esp = 5 * 4096
        cpu.irqs_pending = 1
        outcomes[profile] = (cpu.deliver_pending(), g.dead)
    assert outcomes["hardened"] == (0, None)
    assert outcomes["seed"][1] is not None


@pytest.mark.parametrize("ns", [0, 999_999_999, 1_000_000_000, T0, (1 << 32) * 10**9 + 5,
                                (1 << 63) - 1])
def test_virtual_clock_stamp_is_the_i386_timespec(ns):
    # The virtual clock keeps lguest_data.time's image beside its ns value;
    # both the fused and the general path write that image.
    sec, nsec = divmod(ns, 10**9)
    want = words(sec & 0xFFFFFFFF, nsec)
    for fused in (True, False):
        g, cpu = _guest()
        g.clock.set_ns(ns)
        cpu.irqs_pending = 1
        if fused:
            assert cpu.deliver_pending() == 0
        else:
            cpu.try_deliver_interrupt(0, True)
        assert _time(g) == want, fused
