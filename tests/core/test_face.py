# SPDX-License-Identifier: GPL-2.0-only
"""The Python face: every seed function by name, state readable and
settable, several vCPUs per guest, clear errors for bad values, and the
engine modules being the compiled extensions."""
import importlib.machinery
import os
import struct

import pytest

import lgcore
from lgcore.constants import LD_IRQ_ENABLED, REGS

from .helpers import LD, int_gate, make_guest, rd, trap_gate, words

SEED_FUNCTIONS = [
    "idt_address", "idt_type", "idt_present", "push_guest_stack", "set_guest_interrupt",
    "interrupt_pending", "try_deliver_interrupt", "set_interrupt", "could_be_syscall",
    "check_syscall_vector", "has_err", "deliver_trap", "direct_trap", "set_trap",
    "load_guest_idt_entry", "default_idt_entry", "setup_default_idt_entries", "copy_traps",
    "guest_set_stack", "pin_stack_pages", "init_interrupts", "free_interrupts",
    "guest_set_clockevent", "clockdev_fn", "init_clockdev",
]


def test_every_seed_function_is_exported():
    for name in SEED_FUNCTIONS:
        assert callable(getattr(lgcore, name)), name
        assert name in lgcore.__all__, name


@pytest.mark.parametrize("module", ["lgcore.vcpu", "lgcore.idt", "lgcore.deliver"])
def test_engine_modules_are_compiled_extensions(module):
    mod = importlib.import_module(module)
    assert mod.__file__.endswith(tuple(importlib.machinery.EXTENSION_SUFFIXES)), mod.__file__
    assert isinstance(mod.__loader__, importlib.machinery.ExtensionFileLoader)
    here = os.path.dirname(mod.__file__)
    stem = module.split(".")[-1]
    assert not os.path.exists(os.path.join(here, stem + ".py"))


def test_face_objects_come_from_the_compiled_module():
    for obj in (lgcore.Guest, lgcore.VCpu, lgcore.VirtualClock, lgcore.deliver_trap):
        assert obj.__module__ == "lgcore.vcpu"


# ---- registers ----

def test_initial_registers_are_lguests():
    g, cpu = make_guest()
    assert (cpu.cs, cpu.ds, cpu.es, cpu.ss, cpu.eflags) == (0x61, 0x69, 0x69, 0x69, 0x202)
    g2 = lgcore.Guest(bytearray(8192))
    assert g2.add_vcpu(0xC0100000).eip == 0xC0100000


def test_register_attributes_and_the_72_byte_view_agree():
    g, cpu = make_guest()
    for i, name in enumerate(REGS):
        setattr(cpu, name, 0x01010101 * (i + 1) & 0xFFFFFFFF)
    view = cpu.regs
    assert view.nbytes == 72 and not view.readonly
    assert struct.unpack("<18I", view) == tuple(0x01010101 * (i + 1) & 0xFFFFFFFF for i in range(18))
    struct.pack_into("<I", view, 52, 0xC0FFEE00)                  # eip at offset 52
    assert cpu.eip == 0xC0FFEE00
    struct.pack_into("<I", view, 44, 14)                          # trapnum at 44
    assert cpu.trapnum == 14


@pytest.mark.parametrize("value, exc, message", [
    (-1, ValueError, r"eip=-1 does not fit 32 bits \(0\.\.0xFFFFFFFF\)"),
    (1 << 32, ValueError, r"eip=4294967296 does not fit 32 bits"),
    ("0", TypeError, r"eip must be an int, not str"),
    (1.0, TypeError, r"eip must be an int, not float"),
])
def test_register_values_are_checked(value, exc, message):
    g, cpu = make_guest()
    with pytest.raises(exc, match=message):
        cpu.eip = value
    assert cpu.eip == 0


def test_views_keep_their_owner_alive():
    g, cpu = make_guest()
    view = cpu.regs
    idt = cpu.idt
    del cpu, g
    import gc
    gc.collect()
    view[0] = 1
    assert idt.nbytes == 2048


# ---- the guest IDT ----

def test_idt_view_and_entries():
    g, cpu = make_guest()
    cpu.set_idt_entry(255, 0x11223344, 0x55667788)
    assert cpu.idt[255 * 8:] == words(0x11223344, 0x55667788)
    cpu.idt[0:8] = words(0x00610000, 0xC0008E00)
    assert cpu.get_idt_entry(0) == (0x00610000, 0xC0008E00)
    with pytest.raises(ValueError, match=r"vector=256 is out of range \(0\.\.255\)"):
        cpu.get_idt_entry(256)
    with pytest.raises(ValueError, match=r"vector=-1 is out of range"):
        cpu.set_idt_entry(-1, 0, 0)
    with pytest.raises(ValueError, match=r"b=4294967296 does not fit"):
        cpu.set_idt_entry(1, 0, 1 << 32)


# ---- all the rest of the state ----

def test_vcpu_state_round_trips():
    g, cpu = make_guest()
    cpu.irqs_pending = 0x80000001
    cpu.halted = True
    cpu.changed = 3
    cpu.esp1 = 0xC0010000
    cpu.pgdir = 0x2000
    cpu.paging = 1
    assert (cpu.irqs_pending, cpu.halted, cpu.changed, cpu.esp1, cpu.pgdir, cpu.paging) == \
        (0x80000001, 1, 3, 0xC0010000, 0x2000, True)
    cpu.halted = 0
    assert cpu.halted == 0
    with pytest.raises(ValueError, match="irqs_pending=4294967296"):
        cpu.irqs_pending = 1 << 32


def test_guest_state_round_trips():
    g, cpu = make_guest()
    g.noirq_start, g.noirq_end, g.stack_pages = 0xC0001000, 0xC0001010, 2
    g.pfn_limit = 3
    g.lguest_data = 0x200
    assert (g.noirq_start, g.noirq_end, g.stack_pages, g.pfn_limit, g.lguest_data) == \
        (0xC0001000, 0xC0001010, 2, 3, 0x200)
    g.lguest_data = None
    assert g.lguest_data is None
    with pytest.raises(ValueError, match="noirq_end=-5"):
        g.noirq_end = -5


def test_clock_is_the_guests():
    clock = lgcore.VirtualClock(5)
    g, cpu = make_guest(clock=clock)
    assert g.clock is clock and clock.virtual and clock.now_ns() == 5
    assert not lgcore.WallClock().virtual
    assert lgcore.Guest(bytearray(8192)).clock.virtual is False
    with pytest.raises(TypeError, match="clock must be an lgcore Clock, not int"):
        lgcore.Guest(bytearray(8192), clock=5)
    with pytest.raises(ValueError, match=r"ns=-1 is out of range"):
        clock.set_ns(-1)
    with pytest.raises(ValueError, match=r"advance\(ns=-1\)"):
        clock.advance(-1)


def test_virtual_clock_listeners():
    clock = lgcore.VirtualClock(0)
    seen = []
    clock.add_listener(seen.append)
    clock.advance(10)
    clock.set_ns(100)
    clock.remove_listener(seen.append)
    clock.advance(1)
    assert seen == [10, 100] and clock.now_ns() == 101


# ---- several vCPUs per guest ----

def test_vcpus_have_their_own_registers_idt_and_pending_bits():
    g, a = make_guest()
    b = g.add_vcpu()
    assert g.vcpus == [a, b] and (a.index, b.index) == (0, 1)
    assert a.guest is g and b.guest is g
    a.load_guest_idt_entry(32, *int_gate(0xC0200000))
    b.load_guest_idt_entry(32, *trap_gate(0xC0300000))
    a.ss, a.esp = 0x69, 0x5000
    b.ss, b.esp = 0x69, 0x7000
    b.set_interrupt(0)
    assert a.irqs_pending == 0 and a.deliver_pending() is None
    assert b.deliver_pending() == 0 and b.eip == 0xC0300000 and a.eip == 0
    a.set_interrupt(0)
    assert a.deliver_pending() == 0 and a.eip == 0xC0200000
    assert rd(g.ram, LD + LD_IRQ_ENABLED) == 0         # lguest_data is shared
    assert g.ram[0x6FF4:0x7000] == words(0, 0x61, 0x202)


def test_vcpus_share_the_guests_fate():
    g, a = make_guest()
    b = g.add_vcpu()
    b.lgread(1 << 20)
    assert g.dead == "bad read address 0x100000 len 4"
    a.load_guest_idt_entry(300, 0, 0)
    assert g.dead == "bad read address 0x100000 len 4"


def test_a_vcpu_needs_a_guest():
    with pytest.raises(TypeError):
        lgcore.VCpu(None, 0)


def test_module_functions_refuse_a_missing_vcpu():
    for name in ("interrupt_pending", "deliver_trap", "guest_pa", "write_timestamp"):
        fn = getattr(lgcore, name)
        args = (None,) if name in ("interrupt_pending", "write_timestamp") else (None, 0)
        with pytest.raises(TypeError):
            fn(*args)
    with pytest.raises(TypeError):
        lgcore.check_syscall_vector(None)


def test_repr():
    g, cpu = make_guest()
    assert repr(g) == "<lgcore.Guest 65536 bytes, 1 vCPU(s), seed, alive>"
    assert repr(cpu) == "<lgcore.VCpu 0 eip=0x0 cs=0x61 pending=0x0 halted=0>"
    g.kill_guest("x")
    assert repr(g).endswith("dead: 'x'>")
    g.close()
    assert repr(g).endswith("closed>")


def test_constants_match_the_header():
    assert (lgcore.IRQS, lgcore.IDT_ENTRIES, lgcore.SYSCALL_VECTOR, lgcore.TRAP_ENTRY) == (32, 256, 0x80, 0x1F)
    assert (lgcore.GUEST_CS, lgcore.GUEST_DS, lgcore.LGUEST_CS) == (0x61, 0x69, 0x50)
    assert (lgcore.LD_SIZE, lgcore.REGS_SIZE, lgcore.LD_SYSCALL_VEC, lgcore.LD_PGDIR) == (1396, 72, 1392, 1376)
