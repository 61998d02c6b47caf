# SPDX-License-Identifier: GPL-2.0-only
"""H:200: the guest clockevent.  Deterministic on a VirtualClock; one short
run on the wall clock with no timing assertion."""
import threading

import pytest

import lgcore
from lgcore.clock import (HRTIMER_NORESTART, ClockEvents, clockdev_fn, guest_set_clockevent,
                          init_clockdev)
from lgcore.wake import Task

from .helpers import make_guest


def _virtual(n=1, start=1_000_000):
    clock = lgcore.VirtualClock(start)
    g, cpu = make_guest(clock=clock)
    cpus = [cpu] + [g.add_vcpu() for _ in range(n - 1)]
    for c in cpus:
        init_clockdev(c)
    return clock, g, cpus


def test_init_clockdev_gives_one_clockevents_per_guest_on_its_clock():
    clock, g, (a, b) = _virtual(2)
    assert a.hrt.events is b.hrt.events is g.clockevents
    assert g.clockevents.clock is clock
    assert a.hrt.owner is a and a.hrt.function is clockdev_fn
    assert not a.hrt.armed


def test_expiry_is_absolute_and_one_shot():
    clock, g, (cpu,) = _virtual()
    lgcore.guest_set_clockevent(cpu, 1000)
    assert cpu.hrt.expires == 1_001_000
    clock.advance(999)
    assert cpu.irqs_pending == 0 and cpu.hrt.fired == 0
    clock.advance(1)
    assert cpu.irqs_pending == 1 and cpu.hrt.fired == 1
    assert not cpu.hrt.armed
    cpu.irqs_pending = 0
    clock.advance(10**9)
    assert cpu.irqs_pending == 0 and cpu.hrt.fired == 1     # no restart


def test_zero_cancels():
    clock, g, (cpu,) = _virtual()
    guest_set_clockevent(cpu, 500)
    guest_set_clockevent(cpu, 0)
    assert not cpu.hrt.armed
    clock.advance(10**6)
    assert cpu.irqs_pending == 0 and cpu.hrt.fired == 0
    guest_set_clockevent(cpu, 0)                               # cancel when idle: fine


def test_rearming_replaces_the_deadline():
    clock, g, (cpu,) = _virtual()
    guest_set_clockevent(cpu, 100)
    guest_set_clockevent(cpu, 5000)
    clock.advance(4999)
    assert cpu.hrt.fired == 0
    clock.advance(1)
    assert cpu.hrt.fired == 1 and cpu.irqs_pending == 1


def test_delta_is_a_32_bit_unsigned_long():
    clock, g, (cpu,) = _virtual()
    guest_set_clockevent(cpu, 0xFFFFFFFF)
    assert cpu.hrt.expires == 1_000_000 + 0xFFFFFFFF
    guest_set_clockevent(cpu, (1 << 32) + 7)
    assert cpu.hrt.expires == 1_000_007
    guest_set_clockevent(cpu, 1 << 32)                         # == 0: cancels
    assert not cpu.hrt.armed


def test_timers_of_several_vcpus_fire_in_deadline_order():
    clock, g, cpus = _virtual(3)
    order = []
    for c in cpus:
        c.hrt.function = lambda t: (order.append(t.owner.index), clockdev_fn(t))[1]
    guest_set_clockevent(cpus[0], 300)
    guest_set_clockevent(cpus[1], 100)
    guest_set_clockevent(cpus[2], 200)
    clock.advance(1000)
    assert order == [1, 2, 0]
    assert [c.irqs_pending for c in cpus] == [1, 1, 1]


def test_expiry_in_the_past_fires_at_once():
    clock, g, (cpu,) = _virtual()
    cpu.hrt.start(10)                                          # long ago
    assert cpu.hrt.fired == 1 and cpu.irqs_pending == 1


def test_clockdev_fn_raises_irq_0_and_wakes_the_vcpu():
    clock, g, (cpu,) = _virtual()
    task = Task()
    cpu.task = task
    task.state = Task.SLEEPING
    assert clockdev_fn(cpu.hrt) == HRTIMER_NORESTART
    assert cpu.irqs_pending == 1
    assert task.state == Task.RUNNING and task.wakeups == 1


def test_set_clockevent_initialises_the_timer_on_first_use():
    clock = lgcore.VirtualClock(0)
    g, cpu = make_guest(clock=clock)
    guest_set_clockevent(cpu, 10)
    clock.advance(10)
    assert cpu.irqs_pending == 1


def test_closing_the_guest_stops_its_timers():
    clock, g, (cpu,) = _virtual()
    guest_set_clockevent(cpu, 100)
    g.close()
    clock.advance(1000)
    assert cpu.irqs_pending == 0
    with pytest.raises(RuntimeError, match="ClockEvents is closed"):
        guest_set_clockevent(cpu, 100)


def test_wall_clock_timer_raises_irq_0():
    g, cpu = make_guest(clock=lgcore.WallClock())
    events = ClockEvents(lgcore.WallClock())
    init_clockdev(cpu, events)
    fired = threading.Event()

    class Kick(Task):
        def kick_process(self):
            super().kick_process()
            fired.set()

    cpu.task = Kick()
    try:
        guest_set_clockevent(cpu, 1_000_000)       # 1 ms
        assert fired.wait(10), "the wall-clock timer never fired"
        assert cpu.irqs_pending == 1 and cpu.hrt.fired == 1
        # cancel on 0 before expiry: nothing more arrives
        cpu.irqs_pending = 0
        guest_set_clockevent(cpu, 4_000_000_000)   # ~4 s
        assert cpu.hrt.armed
        guest_set_clockevent(cpu, 0)
        assert not cpu.hrt.armed and cpu.hrt.fired == 1
    finally:
        events.close()
    assert events._thread is not None and not events._thread.is_alive()


def test_deadline_wraps_like_ktime_add_ns():
    # now + delta past 2**63 wraps negative in ktime_add_ns: already due
    clock = lgcore.VirtualClock(2**63 - 1000)
    g, cpu = make_guest(clock=clock)
    guest_set_clockevent(cpu, 5000)
    assert cpu.irqs_pending == 1 and cpu.hrt.fired == 1


def test_timer_thread_ends_with_a_dropped_guest():
    import gc
    import time
    import weakref

    g, cpu = make_guest(clock=lgcore.WallClock())
    guest_set_clockevent(cpu, 1000)
    deadline = time.monotonic() + 10
    while cpu.hrt.fired == 0 and time.monotonic() < deadline:
        time.sleep(0.001)
    assert cpu.hrt.fired == 1
    thread = g.clockevents._thread
    ref = weakref.ref(g)
    del g, cpu
    gc.collect()
    assert ref() is None
    thread.join(10)
    assert not thread.is_alive()
