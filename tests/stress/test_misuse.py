# SPDX-License-Identifier: GPL-2.0-only
"""VMM misuse answers with a clear exception, never a crash: read-only,
short, non-contiguous or non-buffer RAM, IRQ numbers past the IRQ count,
vectors past 255, negative and too-wide values, wrong types, and a vCPU
used after its guest was closed.  Each message names the offending value
and the limit.  (Guest misbehaviour, by contrast, never raises: it kills
the guest -- checked here for the guest-facing vector argument too.)

The whole battery also runs once in a child process, so that a crash shows
up as a failed test with its signal instead of taking pytest down."""
from __future__ import annotations

import mmap
import subprocess
import sys
import textwrap

import pytest

import lgcore
from lgcore.clock import guest_set_clockevent, init_clockdev
from lgcore.runloop import step

from tests.stress import _guestsim as gs


@pytest.fixture
def cpu():
    return gs.make_guest(1).vcpus[0]


# ---- the RAM buffer ----

@pytest.mark.parametrize("make, words", [
    (lambda: bytes(1 << 16), ["read-only", "bytes"]),
    (lambda: memoryview(bytearray(1 << 16)).toreadonly(), ["read-only", "memoryview"]),
    (lambda: mmap.mmap(-1, 1 << 16, prot=mmap.PROT_READ), ["read-only", "mmap"]),
    (lambda: mmap.mmap(-1, 1 << 16, access=mmap.ACCESS_READ), ["read-only", "mmap"]),
], ids=["bytes", "readonly-view", "mmap-PROT_READ", "mmap-ACCESS_READ"])
def test_read_only_ram(make, words):
    with pytest.raises(TypeError) as exc:
        lgcore.Guest(make())
    for w in words:
        assert w in str(exc.value)


@pytest.mark.parametrize("size", [0, 1, 100, 1395])
def test_short_ram(size):
    with pytest.raises(ValueError) as exc:
        lgcore.Guest(bytearray(size))
    assert f"{size} bytes" in str(exc.value) and "1396" in str(exc.value)


def test_smallest_ram_is_accepted():
    assert lgcore.Guest(bytearray(1396)).mem_len == 1396


def test_ram_over_4gib():
    try:
        m = mmap.mmap(-1, (1 << 32) + 4096)       # address space only, never touched
    except (OSError, OverflowError, ValueError):
        pytest.skip("cannot map 4 GiB of address space here")
    with pytest.raises(ValueError) as exc:
        lgcore.Guest(m)
    assert str((1 << 32) + 4096) in str(exc.value) and str(1 << 32) in str(exc.value)
    m.close()


@pytest.mark.parametrize("ram", [None, 5, "ram", 3.0, object()], ids=repr)
def test_ram_not_a_buffer(ram):
    with pytest.raises(TypeError) as exc:
        lgcore.Guest(ram)
    assert type(ram).__name__ in str(exc.value)


def test_non_contiguous_ram():
    with pytest.raises(TypeError, match="contiguous"):
        lgcore.Guest(memoryview(bytearray(1 << 16))[::2])


def test_bad_guest_options():
    with pytest.raises(ValueError, match="profile='nope'"):
        lgcore.Guest(bytearray(4096), profile="nope")
    with pytest.raises(TypeError, match="clock must be an lgcore Clock, not int"):
        lgcore.Guest(bytearray(4096), clock=5)
    with pytest.raises(ValueError, match=r"syscall_vector=256 is out of range \(0..255\)"):
        lgcore.Guest(bytearray(4096), syscall_vector=256)
    with pytest.raises(ValueError, match=r"pfn_limit=-1 does not fit 32 bits"):
        lgcore.Guest(bytearray(4096), pfn_limit=-1)


# ---- IRQ numbers, vectors, widths, types ----

@pytest.mark.parametrize("method", ["set_interrupt", "try_deliver_interrupt"])
@pytest.mark.parametrize("irq", [32, 33, 255, 1 << 40, -1])
def test_irq_out_of_range(cpu, method, irq):
    args = (irq,) if method == "set_interrupt" else (irq, True)
    with pytest.raises(ValueError) as exc:
        getattr(cpu, method)(*args)
    assert f"irq={irq}" in str(exc.value) and "0..31" in str(exc.value)
    assert cpu.irqs_pending == 0


@pytest.mark.parametrize("call", [
    lambda c, v: c.set_trap(v, *gs.gate(1)),
    lambda c, v: c.get_idt_entry(v),
    lambda c, v: c.set_idt_entry(v, 0, 0),
], ids=["set_trap", "get_idt_entry", "set_idt_entry"])
@pytest.mark.parametrize("vector", [256, 257, 1 << 33, -1])
def test_vector_out_of_range(cpu, call, vector):
    with pytest.raises(ValueError) as exc:
        call(cpu, vector)
    assert f"vector={vector}" in str(exc.value) and "0..255" in str(exc.value)


def test_guest_facing_vector_kills_not_raises(cpu):
    # LOAD_IDT_ENTRY's number is the guest's hypercall argument: lguest
    # kills the guest, it does not raise at the VMM.
    cpu.load_guest_idt_entry(256, *gs.gate(1))
    assert cpu.guest.dead == "Setting idt entry 256"
    # deliver_trap(256) is the Switcher's own-fault sentinel: not deliverable.
    cpu.guest.revive()
    assert cpu.deliver_trap(256) is False


@pytest.mark.parametrize("name", ["eax", "eip", "esp", "cs", "eflags", "esp1", "pgdir", "trapnum"])
@pytest.mark.parametrize("value", [-1, 1 << 32, -(1 << 40)])
def test_register_width(cpu, name, value):
    before = getattr(cpu, name)
    with pytest.raises(ValueError) as exc:
        setattr(cpu, name, value)
    assert f"{name}={value}" in str(exc.value) and "0xFFFFFFFF" in str(exc.value)
    assert getattr(cpu, name) == before


@pytest.mark.parametrize("value", [1.0, "1", None, b"\x01", [1]], ids=repr)
def test_wrong_types(cpu, value):
    tname = type(value).__name__
    for call, what in [
        (lambda: cpu.set_interrupt(value), "irq"),
        (lambda: setattr(cpu, "eax", value), "eax"),
        (lambda: cpu.set_trap(value, 0, 0), "vector"),
        (lambda: cpu.lgread(value), "addr"),
        (lambda: cpu.guest.lguest_address_ok(value, 4), "addr"),
        (lambda: setattr(cpu.guest, "noirq_start", value), "noirq_start"),
    ]:
        with pytest.raises(TypeError) as exc:
            call()
        assert what in str(exc.value) and tname in str(exc.value)


def test_negative_values(cpu):
    with pytest.raises(ValueError, match=r"addr=-1"):
        cpu.guest.lguest_address_ok(-1, 4)
    with pytest.raises(ValueError, match=r"gstack=-4"):
        cpu.push_guest_stack(-4, 0)
    with pytest.raises(ValueError, match=r"lguest_data=-1"):
        cpu.guest.lguest_data = -1
    with pytest.raises(ValueError, match=r"ns=-1"):
        lgcore.VirtualClock(-1)
    with pytest.raises(ValueError, match=r"ns=-5"):
        lgcore.VirtualClock().advance(-5)
    with pytest.raises(ValueError, match=r"start_eip=-1"):
        cpu.guest.add_vcpu(-1)


@pytest.mark.parametrize("idt, defaults, word", [
    (bytearray(2047), bytes(1024), "idt"),
    (bytearray(2048), bytes(1023), "defaults"),
], ids=["short-idt", "short-defaults"])
def test_short_host_tables(cpu, idt, defaults, word):
    with pytest.raises(ValueError) as exc:
        cpu.copy_traps(idt, defaults)
    assert word in str(exc.value) and ("2048" in str(exc.value) or "1024" in str(exc.value))
    with pytest.raises(ValueError):
        lgcore.setup_default_idt_entries(idt, defaults)


def test_read_only_host_idt_names_the_argument(cpu):
    for call in (lambda: cpu.copy_traps(bytes(2048), bytes(1024)),
                 lambda: lgcore.setup_default_idt_entries(bytes(2048), bytes(1024))):
        with pytest.raises((TypeError, ValueError, BufferError)) as exc:
            call()
        assert "idt" in str(exc.value), f"message does not say which buffer: {exc.value!r}"


def test_default_idt_entry_bad_base_names_the_argument():
    with pytest.raises((TypeError, ValueError)) as exc:
        lgcore.default_idt_entry(32, 0x1000, (1,))
    assert "base" in str(exc.value), f"unclear message: {exc.value!r}"


def test_vcpu_needs_a_guest():
    """VCpu(None, ...) must be refused: the vCPU would point its guest
    state at memory inside the None object."""
    with pytest.raises(TypeError):
        lgcore.VCpu(None, 0)


def test_module_functions_refuse_none():
    """The seed-named module functions take the vCPU first; None there must
    be a TypeError naming the parameter, not an AttributeError from inside."""
    calls = {"set_interrupt": (1,), "interrupt_pending": (), "deliver_trap": (14,),
             "write_timestamp": (), "guest_pa": (0,), "set_trap": (33, 0, 0),
             "push_guest_stack": (0x2000, 1)}
    wrong = {}
    for fn, args in calls.items():
        try:
            getattr(lgcore, fn)(None, *args)
        except TypeError:
            continue
        except Exception as exc:  # noqa: BLE001
            wrong[fn] = f"{type(exc).__name__}: {exc}"
        else:
            wrong[fn] = "no exception"
    assert not wrong, wrong


# ---- a vCPU after its guest is closed ----

CLOSED_CALLS = {
    "deliver_pending": lambda c: c.deliver_pending(),
    "interrupt_pending": lambda c: c.interrupt_pending(),
    "try_deliver_interrupt": lambda c: c.try_deliver_interrupt(1, True),
    "set_interrupt": lambda c: c.set_interrupt(1),
    "deliver_trap": lambda c: c.deliver_trap(14),
    "set_guest_interrupt": lambda c: c.set_guest_interrupt(*gs.gate(1), False),
    "push_guest_stack": lambda c: c.push_guest_stack(0x2000, 1),
    "load_guest_idt_entry": lambda c: c.load_guest_idt_entry(33, *gs.gate(1)),
    "set_trap": lambda c: c.set_trap(33, *gs.gate(1)),
    "copy_traps": lambda c: c.copy_traps(bytearray(2048), bytes(1024)),
    "guest_pa": lambda c: c.guest_pa(0x1000),
    "lgread": lambda c: c.lgread(0x1000),
    "lgwrite": lambda c: c.lgwrite(0x1000, 1),
    "pin_page": lambda c: c.pin_page(0x1000),
    "write_timestamp": lambda c: c.write_timestamp(),
    "guest_set_stack": lambda c: lgcore.guest_set_stack(c, 0x69, 0x10000, 1),
    "runloop.step": lambda c: step(c),
    "module deliver_trap": lambda c: lgcore.deliver_trap(c, 14),
    "module set_interrupt": lambda c: lgcore.set_interrupt(c, 2),
    "add_vcpu": lambda c: c.guest.add_vcpu(),
    "guest.ram": lambda c: c.guest.ram,
}


@pytest.mark.parametrize("name", sorted(CLOSED_CALLS))
def test_vcpu_after_guest_closed(name):
    guest = gs.make_guest(1)
    cpu = guest.vcpus[0]
    guest.close()
    with pytest.raises(lgcore.GuestClosed) as exc:
        CLOSED_CALLS[name](cpu)
    assert "closed" in str(exc.value)
    assert cpu.irqs_pending == 0


def test_clockevent_after_guest_closed():
    """A clockevent armed before close() and expiring after it: the guest's
    RAM is not touched and nothing raises on the timer's thread."""
    clock = lgcore.VirtualClock(0)
    guest = gs.make_guest(1, clock=clock)
    cpu = guest.vcpus[0]
    init_clockdev(cpu)
    guest_set_clockevent(cpu, 100)
    guest.close()
    clock.advance(1000)                   # fires on a closed guest: no crash, no raise
    with pytest.raises(lgcore.GuestClosed):
        cpu.deliver_pending()


def test_closed_guest_state_still_readable():
    # Post-mortem reads of the C state are fine (the state lives in the
    # objects, not in the released RAM).
    guest = gs.make_guest(1)
    cpu = guest.vcpus[0]
    gate = cpu.get_idt_entry(32)
    guest.close()
    assert guest.closed and guest.mem_len == 0
    assert cpu.eip == gs.KERNEL_EIP and cpu.get_idt_entry(32) == gate
    guest.close()                         # idempotent
    assert "closed" in repr(guest)


# ---- never a crash: the battery in a child process ----

BATTERY = r'''
import mmap, sys, faulthandler
faulthandler.enable()
sys.path.insert(0, ROOT)
import lgcore
from lgcore.runloop import step
from tests.stress import _guestsim as gs
from tests.stress.test_misuse import CLOSED_CALLS

bad = [None, -1, 1 << 32, 1 << 64, 2.5, "x", b"x", [], 256, 32, True]
g = gs.make_guest(1)
c = g.vcpus[0]
n = 0
for name in dir(c) + dir(g):
    obj = c if name in dir(c) else g
    if name.startswith("_"):
        continue
    attr = getattr(type(obj), name, None)
    for v in bad:
        for args in ((v,), (v, v), (v, v, v), (1, v), (v, 1), (1, 1, v)):
            try:
                f = getattr(obj, name)
                if callable(f):
                    f(*args)
                elif isinstance(attr, property) or hasattr(attr, "__set__"):
                    setattr(obj, name, v)
            except Exception:
                pass
            n += 1
    g.revive()
for fn in lgcore.__all__:
    f = getattr(lgcore, fn)
    if callable(f) and not isinstance(f, type):
        for v in bad:
            for args in ((v,), (c, v), (v, v), (c, v, v), (c, 1, v), (c, v, v, v), (None, v, v, v)):
                try:
                    f(*args)
                except Exception:
                    pass
                n += 1
for kind in (bytes(4096), bytearray(10), None, mmap.mmap(-1, 4096, prot=mmap.PROT_READ)):
    try:
        lgcore.Guest(kind)
    except Exception:
        pass
try:
    lgcore.VCpu(None, 0).deliver_pending()
except Exception:
    pass
g.close()
for name, call in CLOSED_CALLS.items():
    try:
        call(c)
    except Exception:
        pass
print("survived", n)
'''


def test_misuse_battery_never_crashes():
    import os
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    code = f"ROOT = {root!r}\n" + textwrap.dedent(BATTERY)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, (
        f"the misuse battery crashed (rc {proc.returncode}):\n{proc.stderr[-3000:]}")
    assert "survived" in proc.stdout
