# SPDX-License-Identifier: GPL-2.0-only
"""lgcore.runloop: the host's first look at a trap (lguest_arch_handle_trap,
facts 5.2), the hypercalls (5.3) and one run-loop step (5.1)."""
import pytest

import lgcore
from lgcore import runloop
from lgcore.constants import (CHANGED_GDT, LD_CR2, LD_HCALL_STATUS, LD_HCALLS,
                              LD_KERNEL_ADDRESS, LD_NOIRQ_END, LD_NOIRQ_START, LD_PGDIR,
                              LD_RESERVE_MEM, LD_SYSCALL_VEC, LD_TIME, LD_TSC_KHZ, NO_TRAP)
from lgcore.runloop import DEAD, HALTED, RUN, Step, lguest_arch_handle_trap, step

from .helpers import LD, GuardedRAM, PageTables, int_gate, make_guest, rd, trap_gate, words, wr

SIZE = 64 * 1024
EIP = 0xC0001000
HANDLER = 0xC0300000


def _kernel(cpu, eip=EIP):
    cpu.ss, cpu.esp, cpu.cs, cpu.eip, cpu.eflags = 0x69, 0x5000, 0x61, eip, 0x202


def _guest(**kw):
    g, cpu = make_guest(SIZE, **kw)
    _kernel(cpu, eip=0x3000)       # linear mode: code at guest-physical 0x3000
    return g, cpu


# ---- lguest_arch_handle_trap ----

def test_hypercall_trap_is_recorded_not_reflected():
    g, cpu = _guest()
    regs = bytearray(cpu.regs)
    lguest_arch_handle_trap(cpu, 0x1F)
    assert cpu.hcall is True
    regs[44:48] = (0x1F).to_bytes(4, "little")      # trapnum
    assert bytes(cpu.regs) == bytes(regs)


def test_page_fault_writes_cr2_then_reflects():
    g, cpu = _guest()
    cpu.load_guest_idt_entry(14, *int_gate(HANDLER))
    lguest_arch_handle_trap(cpu, 14, 2, 0xC0DE1234)
    assert rd(g.ram, LD + LD_CR2) == 0xC0DE1234
    assert g.ram[0x4FF0:0x5000] == words(2, 0x3000, 0x61, 0x202)
    assert (cpu.esp, cpu.eip, cpu.errcode, cpu.trapnum) == (0x4FF0, HANDLER, 2, 14)
    assert g.dead is None


def test_page_fault_before_lguest_init_is_reflected_without_cr2():
    g, cpu = _guest(ld=None)
    cpu.load_guest_idt_entry(14, *trap_gate(HANDLER))
    lguest_arch_handle_trap(cpu, 14, 0, 0xC0DE1234)
    assert cpu.eip == HANDLER and g.dead is None
    assert bytes(g.ram[:0x4FF0]) == bytes(0x4FF0)


def test_page_fault_with_cr2_outside_ram_kills():
    ram = GuardedRAM(SIZE)
    g, cpu = make_guest(ram=ram.view)
    _kernel(cpu)
    g.lguest_data = SIZE - 10                        # cr2 at SIZE - 2: outside
    cpu.load_guest_idt_entry(14, *trap_gate(HANDLER))
    lguest_arch_handle_trap(cpu, 14, 0, 0xC0DE1234)
    assert g.dead == "Writing cr2"
    assert cpu.eip == HANDLER                        # reflected all the same
    assert ram.intact()


def test_page_fault_fixed_by_the_vmm_stays_in_the_host():
    g, cpu = _guest()
    cpu.load_guest_idt_entry(14, *trap_gate(HANDLER))
    seen = []
    g.demand_page = lambda c, cr2, err: seen.append((cr2, err)) or True
    lguest_arch_handle_trap(cpu, 14, 6, 0xC0DE1234)
    assert seen == [(0xC0DE1234, 6)]
    assert rd(g.ram, LD + LD_CR2) == 0 and cpu.eip == 0x3000


def test_page_fault_without_a_gate_kills_with_cr2():
    g, cpu = _guest()
    lguest_arch_handle_trap(cpu, 14, 6, 0xC0DE1234)
    assert g.dead == "unhandled trap 14 at 0x3000 (0xc0de1234)"
    assert rd(g.ram, LD + LD_CR2) == 0xC0DE1234


@pytest.mark.parametrize("vector", [0x20, 0x21, 0x41, 0x80, 0xEF, 0xFF])
def test_external_vectors_are_the_hosts(vector):
    g, cpu = _guest()
    cpu.load_guest_idt_entry(vector, *int_gate(HANDLER, dpl=3))
    regs, ram = bytes(cpu.regs)[48:], bytes(g.ram)
    lguest_arch_handle_trap(cpu, vector, 0, 0)
    assert bytes(cpu.regs)[48:] == regs and bytes(g.ram) == ram
    assert g.dead is None


@pytest.mark.parametrize("trapnum, errcode, message", [
    (0, 0, "unhandled trap 0 at 0x3000 (0x0)"),
    (3, 0, "unhandled trap 3 at 0x3000 (0x0)"),
    (12, 0x18, "unhandled trap 12 at 0x3000 (0x18)"),
    (17, 0xFFFFFFFF, "unhandled trap 17 at 0x3000 (0xffffffff)"),
    (256, 0, "unhandled trap 256 at 0x3000 (0x0)"),
    (0xFFFFFFFF, 0, "unhandled trap -1 at 0x3000 (0x0)"),
])
def test_unhandled_traps_kill_with_lguests_text(trapnum, errcode, message):
    g, cpu = _guest()
    lguest_arch_handle_trap(cpu, trapnum, errcode, 0xABC)
    assert g.dead == message


def test_reflected_trap_with_a_gate():
    g, cpu = _guest()
    cpu.load_guest_idt_entry(3, *int_gate(HANDLER, dpl=3))
    lguest_arch_handle_trap(cpu, 3, 0, 0)
    assert (cpu.eip, cpu.esp) == (HANDLER, 0x4FF4)


def test_device_not_available_is_reflected_only_with_ts_set():
    g, cpu = _guest()
    cpu.load_guest_idt_entry(7, *trap_gate(HANDLER))
    lguest_arch_handle_trap(cpu, 7)
    assert cpu.eip == 0x3000
    cpu.ts = 1
    lguest_arch_handle_trap(cpu, 7)
    assert cpu.eip == HANDLER


# port I/O emulation on #GP with error code 0 from the ring-1 kernel
@pytest.mark.parametrize("code, eax, length", [
    ("e410", 0x1234FFFF, 2),        # in $0x10, %al:  eax |= 0xFFFF (lguest's rule)
    ("e510", 0xFFFFFFFF, 2),        # in $0x10, %eax
    ("66e510", 0xFFFFFFFF, 3),      # in $0x10, %ax:  low bit set -> all ones
    ("66e410", 0xFFFF0000, 3),      # prefix on a byte IN: 0xFFFF << 16
    ("ec", 0x1234FFFF, 1),          # in (%dx), %al
    ("ed", 0xFFFFFFFF, 1),          # in (%dx), %eax
    ("66ec", 0xFFFF0000, 2),
    ("e680", 0x12340000, 2),        # out %al, $0x80: dropped
    ("ee", 0x12340000, 1),
    ("66ef", 0x12340000, 2),
])
def test_port_io_is_emulated(code, eax, length):
    g, cpu = _guest()
    g.ram[0x3000:0x3000 + len(code) // 2] = bytes.fromhex(code)
    cpu.eax = 0x12340000
    lguest_arch_handle_trap(cpu, 13, 0, 0)
    assert (cpu.eax, cpu.eip) == (eax, 0x3000 + length)
    assert g.dead is None


@pytest.mark.parametrize("why", ["errcode", "user", "opcode"])
def test_gp_not_emulated_is_reflected(why):
    g, cpu = _guest()
    cpu.load_guest_idt_entry(13, *int_gate(HANDLER))
    g.ram[0x3000:0x3002] = bytes.fromhex("90e4" if why == "opcode" else "e410")
    errcode = 0x10 if why == "errcode" else 0
    if why == "user":
        cpu.cs = 0x73
    lguest_arch_handle_trap(cpu, 13, errcode, 0)
    assert cpu.eip == HANDLER and cpu.eax == 0
    assert g.dead is None


def test_gp_on_an_unmapped_eip():
    g, cpu = _guest()
    cpu.pgdir, cpu.paging = 0x2000, True
    _kernel(cpu)
    lguest_arch_handle_trap(cpu, 13, 0, 0)
    assert g.dead == "Bad address 0xc0001000"


@pytest.mark.parametrize("trapnum", [6, 13])
def test_vmcall_is_patched_into_int_0x1f(trapnum):
    g, cpu = _guest()
    pins = []
    g.pin_page_hook = lambda c, va: pins.append(va)
    g.stack_pages, cpu.esp1 = 1, 0x6000
    g.ram[0x3000:0x3003] = bytes.fromhex("0f01c1")
    lguest_arch_handle_trap(cpu, trapnum, 0, 0)
    assert g.ram[0x3000:0x3003] == bytes.fromhex("cd1f90")
    assert cpu.eip == 0x3000                     # run the patched instruction again
    assert pins == [0x5FFF]                      # the stack is pinned again
    assert g.dead is None


def test_vmcall_through_page_tables():
    g, cpu = _guest()
    PageTables(g.ram, 0x2000, 0x3000 + 0x1000).map(EIP, 0x9000)
    cpu.pgdir, cpu.paging = 0x2000, True
    _kernel(cpu)
    g.ram[0x9000:0x9003] = bytes.fromhex("0f01c1")
    lguest_arch_handle_trap(cpu, 6)
    assert g.ram[0x9000:0x9003] == bytes.fromhex("cd1f90")


def test_vmcall_from_userspace_is_reflected():
    g, cpu = _guest()
    cpu.load_guest_idt_entry(6, *int_gate(HANDLER))
    g.ram[0x3000:0x3003] = bytes.fromhex("0f01c1")
    cpu.cs = 0x73
    lguest_arch_handle_trap(cpu, 6)
    assert g.ram[0x3000:0x3003] == bytes.fromhex("0f01c1")
    assert cpu.eip == HANDLER


def test_invalid_opcode_at_the_end_of_ram():
    ram = GuardedRAM(SIZE)
    g, cpu = make_guest(ram=ram.view)
    _kernel(cpu, eip=SIZE - 2)
    lguest_arch_handle_trap(cpu, 6)
    assert g.dead == "bad read address 0xfffe len 3"
    assert ram.intact()


# ---- hypercalls and the step ----

def _init_ready(g, cpu, ld=0x4000, noirq=(0xC0008000, 0xC0008010), kernel=0xC0000000, vec=0x80):
    wr(g.ram, ld + LD_NOIRQ_START, noirq[0])
    wr(g.ram, ld + LD_NOIRQ_END, noirq[1])
    wr(g.ram, ld + LD_KERNEL_ADDRESS, kernel)
    wr(g.ram, ld + LD_SYSCALL_VEC, vec)


def _hcall(cpu, call, a1=0, a2=0, a3=0, a4=0):
    cpu.eax, cpu.ebx, cpu.ecx, cpu.edx, cpu.esi = call, a1, a2, a3, a4
    lguest_arch_handle_trap(cpu, 0x1F)


def _fresh(**kw):
    clock = lgcore.VirtualClock(1_700_000_000_123_456_789)
    g, cpu = make_guest(SIZE, ld=None, clock=clock, **kw)
    _kernel(cpu)
    return clock, g, cpu


def test_lguest_init():
    clock, g, cpu = _fresh()
    pins = []
    g.pin_page_hook = lambda c, va: pins.append(va)
    g.stack_pages, cpu.esp1, cpu.pgdir = 2, 0x9000, 0x2000
    _init_ready(g, cpu)
    wr(g.ram, 0x4000 + LD_TSC_KHZ, 0xFFFFFFFF)
    _hcall(cpu, 1, 0x4000)
    st = step(cpu)
    assert st == RUN and st.irq is None
    assert g.lguest_data == 0x4000 and g.dead is None
    assert (g.noirq_start, g.noirq_end) == (0xC0008000, 0xC0008010)
    assert rd(g.ram, 0x4000 + LD_TSC_KHZ) == 0
    assert g.ram[0x4000 + LD_TIME:0x4000 + LD_TIME + 8] == bytes.fromhex("00f15365" "15cd5b07")
    assert rd(g.ram, 0x4000 + LD_RESERVE_MEM) == 0x400000
    assert rd(g.ram, 0x4000 + LD_PGDIR) == 0x2000
    assert pins == [0x8FFF, 0x7FFF]
    assert cpu.hcall is False and cpu.trapnum == NO_TRAP


@pytest.mark.parametrize("setup, message, initialised", [
    (dict(addr=SIZE), "bad guest page 0x10000", False),
    (dict(addr=0xFFFFFFFF), "bad guest page 0xffffffff", False),
    (dict(vec=0x40), "bad syscall vector", True),
    (dict(kernel=0xFFC00000), "bad kernel address 0xffc00000", True),
])
def test_lguest_init_refusals(setup, message, initialised):
    clock, g, cpu = _fresh()
    addr = setup.pop("addr", 0x4000)
    _init_ready(g, cpu, **setup)
    _hcall(cpu, 1, addr)
    assert step(cpu) == DEAD
    assert g.dead == message
    assert (g.lguest_data is not None) is initialised


def test_plan9_guest_passes_the_syscall_check():
    clock, g, cpu = _fresh(syscall_vector=0x40)
    _init_ready(g, cpu, vec=0x40)
    _hcall(cpu, 1, 0x4000)
    assert step(cpu) == RUN and g.dead is None


@pytest.mark.parametrize("call, shown", [(6, "6"), (10, "10"), (0xFFFFFFFF, "-1")])
def test_hypercall_before_init_kills(call, shown):
    clock, g, cpu = _fresh()
    _hcall(cpu, call, 1, 2, 3)
    assert step(cpu) == DEAD
    assert g.dead == f"hypercall {shown} before INIT"


def _initialised(**kw):
    clock, g, cpu = _fresh(**kw)
    _init_ready(g, cpu)
    wr(g.ram, 0x4000, 0x200)                                   # irq_enabled
    g.ram[0x4000 + LD_HCALL_STATUS:0x4000 + LD_HCALL_STATUS + 64] = b"\xff" * 64
    _hcall(cpu, 1, 0x4000)
    assert step(cpu) == RUN and g.dead is None
    return clock, g, cpu


def test_second_init_kills():
    clock, g, cpu = _initialised()
    _hcall(cpu, 1, 0x4000)
    assert step(cpu) == DEAD and g.dead == "already have lguest_data"


@pytest.mark.parametrize("call, shown", [(3, "3"), (11, "11"), (20, "20"), (0xFFFFFFFF, "-1")])
def test_unknown_hypercall_kills(call, shown):
    clock, g, cpu = _initialised()
    _hcall(cpu, call)
    assert step(cpu) == DEAD
    assert g.dead == f"Bad hypercall {shown}\n"


def test_load_idt_entry_then_copy_traps_into_the_host_idt():
    clock, g, cpu = _initialised()
    stubs = [0xFFC01000 + 16 * i for i in range(256)]
    host_idt = bytearray(2048)
    lgcore.setup_default_idt_entries(host_idt, stubs)
    cpu.changed = 0
    _hcall(cpu, 6, 0x80, *trap_gate(0xC0100400, dpl=3))
    assert step(cpu, host_idt, stubs) == RUN
    assert cpu.get_idt_entry(0x80) == (0x00610400, 0xC010EF00)
    assert host_idt[0x400:0x408] == words(0x00610400, 0xC010EF00)
    assert cpu.changed == 0
    # without CHANGED_IDT the host IDT is left alone
    host_idt[0x400:0x408] = bytes(8)
    cpu.changed = CHANGED_GDT
    assert step(cpu, host_idt, stubs) == RUN
    assert host_idt[0x400:0x408] == bytes(8) and cpu.changed == 0


def test_set_stack_hypercall():
    clock, g, cpu = _initialised()
    g.pin_page_hook = lambda c, va: None
    _hcall(cpu, 7, 0x69, 0xC0010000, 2)
    assert step(cpu) == RUN
    assert (cpu.ss1, cpu.esp1, g.stack_pages) == (0x69, 0xC0010000, 2)
    _hcall(cpu, 7, 0x68, 0xC0010000, 2)
    assert step(cpu) == DEAD and g.dead == "bad stack segment 104"


def test_set_clockevent_hypercall_and_the_timer_irq():
    clock, g, cpu = _initialised()
    cpu.load_guest_idt_entry(32, *int_gate(0xC0200000))
    _hcall(cpu, 9, 1000)
    assert step(cpu) == RUN
    clock.advance(1000)
    assert cpu.irqs_pending == 1
    st = step(cpu)
    assert st == RUN and st.irq == 0 and cpu.eip == 0xC0200000
    assert repr(st) == "Step('run', irq=0)"


def test_halt_sleeps_until_an_irq_and_step_reports_it():
    clock, g, cpu = _initialised()
    cpu.load_guest_idt_entry(33, *trap_gate(0xC0200010))
    _hcall(cpu, 10)
    st = step(cpu)
    assert st == HALTED and st.irq is None and cpu.halted
    wr(g.ram, 0x4000, 0)                        # a halted guest takes IRQs anyway
    cpu.set_interrupt(1)
    st = step(cpu)
    assert st == RUN and st.irq == 1 and not cpu.halted
    assert rd(g.ram, 0x4000) == 0x200           # re-enabled (trap gate keeps it)


def test_halt_with_an_irq_already_pending_never_sleeps():
    clock, g, cpu = _initialised()
    cpu.load_guest_idt_entry(32, *int_gate(0xC0200000))
    cpu.set_interrupt(0)
    wr(g.ram, 0x4000, 0)
    _hcall(cpu, 10)
    st = step(cpu)
    assert st == RUN and st.irq == 0


def test_halted_with_only_blocked_irqs_stays_halted():
    clock, g, cpu = _initialised()
    cpu.load_guest_idt_entry(32, *int_gate(0xC0200000))
    wr(g.ram, 0x4004, 1)
    cpu.set_interrupt(0)
    _hcall(cpu, 10)
    assert step(cpu) == HALTED


def test_send_interrupts_makes_the_step_deliver():
    clock, g, cpu = _initialised()
    cpu.load_guest_idt_entry(35, *int_gate(0xC0200030))
    cpu.irqs_pending = 1 << 3
    wr(g.ram, 0x4000, 0)
    assert step(cpu).irq is None                 # virtual IF off
    wr(g.ram, 0x4000, 0x200)
    _hcall(cpu, 19)
    assert step(cpu).irq == 3


def test_async_ring_runs_in_order_before_the_direct_call():
    clock, g, cpu = _initialised()
    base = 0x4000
    for n, (vec, handler) in enumerate([(40, 0xC0100000), (41, 0xC0100010)]):
        g.ram[base + LD_HCALL_STATUS + n] = 0
        g.ram[base + LD_HCALLS + 20 * n:base + LD_HCALLS + 20 * n + 20] = words(6, vec, *int_gate(handler), 0)
    _hcall(cpu, 6, 42, *int_gate(0xC0100020))
    assert step(cpu) == RUN
    assert [cpu.get_idt_entry(v)[0] for v in (40, 41, 42)] == [0x00610000, 0x00610010, 0x00610020]
    assert g.ram[base + LD_HCALL_STATUS:base + LD_HCALL_STATUS + 3] == b"\xff\xff\xff"
    assert cpu.next_hcall == 2


def test_notify_reaches_the_vmm():
    clock, g, cpu = _initialised()
    seen = []
    _hcall(cpu, 17, 0xABC000)
    assert step(cpu, on_notify=lambda c, addr: seen.append(addr)) == RUN
    assert seen == [0xABC000] and cpu.pending_notify == 0


def test_step_results_are_the_state_strings():
    assert Step(RUN) == "run" and Step(HALTED, 3) == HALTED and Step(DEAD) == "dead"
    assert isinstance(Step(RUN), str) and Step(HALTED, 3).irq == 3


def test_dead_guest_steps_to_dead():
    clock, g, cpu = _initialised()
    g.kill_guest("stop")
    cpu.set_interrupt(0)
    assert step(cpu) == DEAD


def test_run_guest_with_a_scripted_backend():
    clock, g, cpu = _fresh()
    _init_ready(g, cpu)
    wr(g.ram, 0x4000, 0x200)
    g.ram[0x4000 + LD_HCALL_STATUS:0x4000 + LD_HCALL_STATUS + 64] = b"\xff" * 64
    script = [
        (1, 0x4000, 0, 0),                                # LGUEST_INIT
        (6, 32, *int_gate(0xC0200000)),                   # timer gate
        (9, 5000, 0, 0),                                  # clockevent
        (10, 0, 0, 0),                                    # HALT
    ]

    def enter(c):
        if script:
            c.eax, c.ebx, c.ecx, c.edx = script.pop(0)
            return (0x1F, 0, 0)
        return (0, 0, 0)                                  # #DE, no gate: dies

    assert runloop.run_guest(cpu, enter) is None          # halted, nothing to wake it
    assert cpu.halted and not script
    clock.advance(5000)
    reason = runloop.run_guest(cpu, enter)
    assert reason == "unhandled trap 0 at 0xc0200000 (0x0)"


def test_async_ring_arguments_outside_ram_kill():
    clock, g, cpu = _initialised()
    g.lguest_data = SIZE - 90          # status bytes inside RAM, the arguments not
    g.ram[SIZE - 90 + LD_HCALL_STATUS:SIZE - 90 + LD_HCALL_STATUS + 64] = b"\xff" * 64
    g.ram[SIZE - 90 + LD_HCALL_STATUS] = 0
    cpu.next_hcall = 0
    _hcall(cpu, 19)
    assert step(cpu) == DEAD
    assert g.dead == "Fetching async hypercalls"


def test_shutdown_hypercall():
    clock, g, cpu = _initialised()
    g.ram[0x6000:0x6010] = b"power off now\0\0\0"
    _hcall(cpu, 2, 0x6000, 1)
    assert step(cpu) == DEAD
    assert g.dead == "CRASH: power off now" and g.shutdown_reason == "poweroff"


def test_run_guest_halted_thread_is_woken_by_another_thread():
    import threading
    import time

    from lgcore.wake import Task

    clock, g, cpu = _fresh()
    _init_ready(g, cpu)
    wr(g.ram, 0x4000, 0x200)
    g.ram[0x4000 + LD_HCALL_STATUS:0x4000 + LD_HCALL_STATUS + 64] = b"\xff" * 64
    script = [(1, 0x4000, 0, 0), (6, 33, *trap_gate(0xC0200010)), (10, 0, 0, 0)]

    def enter(c):
        if script:
            c.eax, c.ebx, c.ecx, c.edx = script.pop(0)
            return (0x1F, 0, 0)
        return (0, 0, 0)

    result = []
    th = threading.Thread(target=lambda: result.append(runloop.run_guest(cpu, enter, task=Task())))
    th.start()
    deadline = time.monotonic() + 30
    while not (cpu.halted and not script) and time.monotonic() < deadline:
        time.sleep(0.001)
    cpu.set_interrupt(1)
    th.join(30)
    assert not th.is_alive()
    assert result == ["unhandled trap 0 at 0xc0200010 (0x0)"]
