# SPDX-License-Identifier: GPL-2.0-only
"""Leaks and lifetime: memory stays flat over many deliveries, guests and
vCPUs made and dropped leave nothing behind, and the guest's RAM buffer is
pinned exactly while lgcore holds it (bytearray, array and mmap).

Sizes: 200,000 deliveries and 10,000 guests by default; LGCORE_LEAK_FULL=1
runs 10,000,000 deliveries and 100,000 guests (run with -s for figures).
"""
from __future__ import annotations

import array
import gc
import mmap
import os
import struct
import threading
import time
import tracemalloc
import weakref

import pytest

import lgcore
from lgcore.clock import guest_set_clockevent, init_clockdev
from lgcore.runloop import RUN, step

from tests.stress import _guestsim as gs
from tests.stress.conftest import LEAK_FULL, summary

DELIVERIES = 10_000_000 if LEAK_FULL else 200_000
GUESTS = 100_000 if LEAK_FULL else 10_000
PAGE = os.sysconf("SC_PAGE_SIZE")


def rss() -> int:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * PAGE


def _live(cls) -> int:
    return sum(1 for o in gc.get_objects() if type(o) is cls)


# ---- flat over deliveries ----

def _deliver_many(cpu, mem, n: int) -> int:
    """n rounds of raise -> deliver -> the guest's iret, through the Python
    face, with a trap, a runloop step and the views now and then."""
    put = struct.Struct("<I").pack_into
    ld = gs.LGUEST_DATA
    kernel_eip, kesp = gs.KERNEL_EIP, gs.kesp(cpu.index)
    set_interrupt, deliver = cpu.set_interrupt, cpu.deliver_pending
    delivered = 0
    for k in range(n):
        set_interrupt(k & 31)
        if deliver() is not None:
            delivered += 1
        cpu.eip = kernel_eip
        cpu.esp = kesp
        put(mem, ld, 0x200)
        if not k & 0x3FF:
            cpu.set_interrupt(5)
            assert step(cpu) == RUN
            cpu.deliver_trap(14)
            cpu.interrupt_pending()
            bytes(cpu.regs[:8])
            cpu.get_idt_entry(32)
            cpu.write_timestamp()
            gs.to_kernel(cpu)
            put(mem, ld, 0x200)
    return delivered


def test_memory_flat_over_deliveries():
    guest = gs.make_guest(1)
    cpu = guest.vcpus[0]
    cpu.load_guest_idt_entry(14, *gs.gate(3))
    mem = guest.ram
    warm = max(DELIVERIES // 20, 20_000)
    _deliver_many(cpu, mem, warm)
    gc.collect()
    tracemalloc.start()
    try:
        _deliver_many(cpu, mem, warm)       # tracemalloc's own tables settle
        gc.collect()
        # other suites in the same session may legitimately hold guests
        live0 = (_live(lgcore.Guest), _live(lgcore.VCpu))
        traced0, rss0 = tracemalloc.get_traced_memory()[0], rss()
        t0 = time.monotonic()
        delivered = _deliver_many(cpu, mem, DELIVERIES)
        elapsed = time.monotonic() - t0
        gc.collect()
        traced1, rss1 = tracemalloc.get_traced_memory()[0], rss()
    finally:
        tracemalloc.stop()
    assert guest.dead is None, guest.dead
    assert delivered >= DELIVERIES * 0.99
    assert traced1 - traced0 < 64 << 10, f"Python heap grew {traced1 - traced0} bytes"
    assert rss1 - rss0 < 2 << 20, f"RSS grew {rss1 - rss0} bytes"
    summary(f"leaks: {delivered} deliveries, Python heap {traced1 - traced0:+d} B, "
            f"RSS {rss1 - rss0:+d} B, {elapsed:.1f} s")


# ---- guests and vCPUs made and dropped ----

def _churn(n: int, keep_every: int) -> list:
    refs = []
    for k in range(n):
        ram = bytearray(8192)
        g = lgcore.Guest(ram, profile="hardened" if k & 1 else "seed")
        a = g.add_vcpu()
        b = g.add_vcpu(0x1000)
        g.lguest_data = 0x1000
        a.set_interrupt(k & 31)
        a.deliver_pending()
        b.regs[0:4] = b"\x01\x02\x03\x04"
        if k % 3 == 0:
            g.close()
        if k % keep_every == 0:
            refs.append((weakref.ref(g), weakref.ref(a), ram))
        del g, a, b
    return refs


def test_guests_and_vcpus_leave_nothing_behind():
    gc.collect()
    _churn(2_000, 1_000)
    gc.collect()
    threads0 = threading.active_count()
    tracemalloc.start()
    try:
        del _churn(2_000, 1_000)[:]
        gc.collect()
        # other suites in the same session may legitimately hold guests
        live0 = (_live(lgcore.Guest), _live(lgcore.VCpu))
        traced0, rss0 = tracemalloc.get_traced_memory()[0], rss()
        t0 = time.monotonic()
        refs = _churn(GUESTS, 997)
        elapsed = time.monotonic() - t0
        gc.collect()
        assert (_live(lgcore.Guest), _live(lgcore.VCpu)) == live0
        for g, a, ram in refs:
            assert g() is None and a() is None
            ram.extend(b"x")                     # the buffer is free again
        del refs, g, a, ram
        gc.collect()
        traced1, rss1 = tracemalloc.get_traced_memory()[0], rss()
    finally:
        tracemalloc.stop()
    held = traced1 - traced0
    assert threading.active_count() == threads0
    assert held < 64 << 10, f"{held} bytes still traced after {GUESTS} guests"
    assert rss1 - rss0 < 8 << 20, f"RSS grew {rss1 - rss0} bytes"
    summary(f"lifetime: {GUESTS} guests x 2 vCPUs made and dropped, Python heap "
            f"{held:+d} B, RSS {rss1 - rss0:+d} B, {elapsed:.1f} s")


def test_guests_with_clockevents_leave_nothing_behind():
    """A guest whose vCPU armed its wall-clock clockevent and was then
    closed and dropped must leave neither a timer thread nor itself (and so
    its RAM) behind."""
    gc.collect()
    threads0 = threading.active_count()
    refs = []
    for k in range(50):
        ram = bytearray(8192)
        g = lgcore.Guest(ram)
        cpu = g.add_vcpu()
        init_clockdev(cpu)
        guest_set_clockevent(cpu, 4_000_000_000)     # ~4 s: still armed below
        refs.append((weakref.ref(g), ram))
        g.close()
        del g, cpu
    time.sleep(0.05)
    gc.collect()
    alive = sum(1 for g, _ in refs if g() is not None)
    extra = threading.active_count() - threads0
    assert extra == 0 and alive == 0, (
        f"{extra} timer threads and {alive} of 50 closed guests left behind")


def test_dropped_guests_with_clockevents_leave_no_threads():
    """Dropping (not closing) guests whose clockevent already fired: the
    guests are collected -- and their timer threads must end with them,
    or a VMM that makes and drops guests grows one thread per guest."""
    gc.collect()
    threads0 = threading.active_count()
    refs = []
    for k in range(30):
        g = lgcore.Guest(bytearray(8192))
        cpu = g.add_vcpu()
        init_clockdev(cpu)
        guest_set_clockevent(cpu, 1000)
        assert _wait_fired(cpu)
        refs.append(weakref.ref(g))
        del g, cpu
    gc.collect()
    deadline = time.monotonic() + 2.0
    while threading.active_count() > threads0 and time.monotonic() < deadline:
        time.sleep(0.01)
        gc.collect()
    assert all(r() is None for r in refs)
    extra = threading.active_count() - threads0
    assert extra == 0, f"{extra} lgcore-clockevents threads outlive their 30 dropped guests"


def _wait_fired(cpu, timeout=5.0) -> bool:
    end = time.monotonic() + timeout
    while cpu.hrt.fired == 0:
        if time.monotonic() > end:
            return False
        time.sleep(0.001)
    return True


# ---- the RAM buffer's lifetime ----

def _resize_attempts(buf):
    if isinstance(buf, bytearray):
        yield "extend", lambda: buf.extend(b"x")
        yield "del slice", lambda: buf.__delitem__(slice(0, 1))
        yield "clear", buf.clear
    elif isinstance(buf, array.array):
        yield "append", lambda: buf.append(0)
        yield "pop", buf.pop
    else:
        yield "resize", lambda: buf.resize(len(buf) * 2)
        yield "close", buf.close


def _make(kind: str):
    if kind == "bytearray":
        return bytearray(gs.RAM_SIZE)
    if kind == "array":
        return array.array("I", bytes(gs.RAM_SIZE))
    return mmap.mmap(-1, gs.RAM_SIZE)


def _pinned(buf) -> list:
    """The resize/free attempts that are refused (BufferError)."""
    refused = []
    for name, attempt in _resize_attempts(buf):
        try:
            attempt()
        except BufferError:
            refused.append(name)
        else:
            return refused + [f"{name} SUCCEEDED"]
    return refused


KINDS = ["bytearray", "array", "mmap"]


@pytest.mark.parametrize("kind", KINDS)
def test_ram_pinned_while_held_released_by_close(kind):
    buf = _make(kind)
    guest = gs.make_guest(1, ram=buf)
    cpu = guest.vcpus[0]
    names = [n for n, _ in _resize_attempts(buf)]
    assert _pinned(buf) == names
    cpu.set_interrupt(4)
    assert cpu.deliver_pending() == 4             # still works: nothing moved
    guest.close()
    assert guest.closed
    with pytest.raises(lgcore.GuestClosed):
        cpu.deliver_pending()
    # Released: every resize/free now goes through.
    for name, attempt in _resize_attempts(buf):
        attempt()
    with pytest.raises(lgcore.GuestClosed):
        cpu.deliver_pending()                      # and lgcore never touches it again


@pytest.mark.parametrize("kind", KINDS)
def test_ram_released_by_dropping_the_guest(kind):
    buf = _make(kind)
    guest = lgcore.Guest(buf)
    assert _pinned(buf)
    del guest                                       # no vCPU: no cycle, freed at once
    for name, attempt in _resize_attempts(buf):
        attempt()
    # With vCPUs the guest and its vCPUs form a cycle (guest.vcpus <->
    # cpu.guest): the RAM is released when the cycle is collected.
    buf = _make(kind)
    guest = gs.make_guest(2, ram=buf)
    ref = weakref.ref(guest)
    del guest
    gc.collect()
    assert ref() is None
    for name, attempt in _resize_attempts(buf):
        attempt()


@pytest.mark.parametrize("kind", KINDS)
def test_ram_cannot_be_freed_under_lgcore(kind):
    """Dropping the VMM's own reference does not free the RAM: lgcore's
    export keeps the object alive and deliveries still land in it."""
    buf = _make(kind)
    guest = gs.make_guest(1, ram=buf)
    ref = weakref.ref(buf) if kind != "bytearray" else None
    del buf
    gc.collect()
    if ref is not None:
        assert ref() is not None
    cpu = guest.vcpus[0]
    cpu.set_interrupt(9)
    assert cpu.deliver_pending() == 9
    eip, = struct.unpack_from("<I", guest.ram, cpu.esp)
    assert eip == gs.KERNEL_EIP
    guest.close()


def test_mmap_closed_after_close_is_never_touched():
    """close(), then unmapping the RAM, then every vCPU entry point: a clean
    GuestClosed each time, no access to the unmapped pages."""
    m = mmap.mmap(-1, gs.RAM_SIZE)
    guest = gs.make_guest(1, ram=m)
    cpu = guest.vcpus[0]
    cpu.set_interrupt(1)
    guest.close()
    m.close()
    for call in (cpu.deliver_pending, cpu.interrupt_pending, cpu.write_timestamp,
                 lambda: cpu.deliver_trap(14), lambda: cpu.lgread(0x1000),
                 lambda: cpu.lgwrite(0x1000, 1), lambda: cpu.try_deliver_interrupt(1, True),
                 lambda: cpu.push_guest_stack(0x2000, 1), lambda: cpu.guest_pa(0),
                 lambda: cpu.set_guest_interrupt(*gs.gate(1), False), lambda: step(cpu)):
        with pytest.raises(lgcore.GuestClosed):
            call()


def test_with_block_releases_the_buffer_at_once():
    """``with Guest(ram)`` frees the RAM on exit even while guest and vCPU
    still refer to each other (no wait for the cyclic collector)."""
    ram = bytearray(8192)
    with lgcore.Guest(ram) as guest:
        cpu = guest.add_vcpu()
        with pytest.raises(BufferError):
            ram.extend(b"x")
    assert guest.closed
    ram.extend(b"x")
    with pytest.raises(lgcore.GuestClosed):
        cpu.set_interrupt(0)
