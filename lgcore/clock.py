# SPDX-License-Identifier: GPL-2.0-only
"""The guest clockevent (H:200): the one-shot timer a guest programs with
SET_CLOCKEVENT, whose expiry raises IRQ 0.

lguest used one hrtimer per vCPU on CLOCK_REALTIME with absolute expiry.
Here ``ClockEvents`` serves the timers of every vCPU on one clock: on the wall
clock from a single timer thread, on a ``VirtualClock`` synchronously when the
clock is moved, so a whole run replays exactly from the same inputs.
"""
from __future__ import annotations

import heapq
import itertools
import threading
from typing import Callable

from lgcore.vcpu import Clock, VCpu, VirtualClock, WallClock

HRTIMER_NORESTART = 0
HRTIMER_RESTART = 1


class HrTimer:
    """One absolute, one-shot timer (a struct hrtimer)."""

    def __init__(self, events: "ClockEvents", function: Callable[["HrTimer"], int], owner=None):
        self.events = events
        self.function = function
        self.owner = owner
        self.expires: int | None = None   # the armed deadline, ns
        self.fired = 0                    # how many times the callback ran
        self._generation = 0
        self._running = False

    @property
    def armed(self) -> bool:
        return self.expires is not None

    def start(self, expires_ns: int) -> None:
        """Arm at absolute ``expires_ns``, replacing any earlier deadline."""
        self.events._start(self, int(expires_ns))

    def cancel(self) -> None:
        """Disarm; waits for a callback that is running on another thread."""
        self.events._cancel(self)


class ClockEvents:
    """The timers of all vCPUs on one clock."""

    def __init__(self, clock: Clock | None = None):
        self.clock = clock if clock is not None else WallClock()
        self._heap: list[tuple[int, int, int, HrTimer]] = []
        self._seq = itertools.count()
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None
        self._closed = False
        if isinstance(self.clock, VirtualClock):
            self.clock.add_listener(self._on_virtual_time)

    def now_ns(self) -> int:
        return self.clock.now_ns()

    def timer(self, function: Callable[[HrTimer], int], owner=None) -> HrTimer:
        return HrTimer(self, function, owner)

    # -- arming --

    def _start(self, timer: HrTimer, expires: int) -> None:
        with self._cond:
            if self._closed:
                raise RuntimeError("ClockEvents is closed")
            timer._generation += 1
            timer.expires = expires
            heapq.heappush(self._heap, (expires, next(self._seq), timer._generation, timer))
            if not self.clock.virtual:
                self._ensure_thread()
                self._cond.notify_all()
        if self.clock.virtual:
            self._fire_due(self.clock.now_ns())

    def _cancel(self, timer: HrTimer) -> None:
        with self._cond:
            timer._generation += 1
            timer.expires = None
            me = threading.current_thread()
            while timer._running and me is not self._thread and not self.clock.virtual:
                self._cond.wait()

    # -- firing --

    def _pop_due(self, now: int) -> HrTimer | None:
        # Called with the lock held: the earliest live timer due by `now`.
        while self._heap:
            expires, _, generation, timer = self._heap[0]
            if generation != timer._generation:
                heapq.heappop(self._heap)
                continue
            if expires > now:
                return None
            heapq.heappop(self._heap)
            timer.expires = None
            timer._running = True
            return timer
        return None

    def _run(self, timer: HrTimer) -> None:
        try:
            result = timer.function(timer)
        finally:
            with self._cond:
                timer._running = False
                timer.fired += 1
                self._cond.notify_all()
        if result == HRTIMER_RESTART and timer.expires is not None:
            self._start(timer, timer.expires)

    def _fire_due(self, now: int) -> None:
        while True:
            with self._cond:
                timer = self._pop_due(now)
            if timer is None:
                return
            self._run(timer)

    def _on_virtual_time(self, now: int) -> None:
        self._fire_due(now)

    def _ensure_thread(self) -> None:
        if self._thread is None or not self._thread.is_alive():
            self._thread = threading.Thread(target=self._loop, name="lgcore-clockevents", daemon=True)
            self._thread.start()

    def _loop(self) -> None:
        while True:
            with self._cond:
                while True:
                    if self._closed:
                        return
                    now = self.clock.now_ns()
                    timer = self._pop_due(now)
                    if timer is not None:
                        break
                    live = [e for e in self._heap if e[2] == e[3]._generation]
                    if not live:
                        self._heap.clear()
                        self._cond.wait()
                    else:
                        self._cond.wait(max(0.0, (min(live)[0] - now) / 1e9))
            self._run(timer)

    def close(self) -> None:
        """Stop the timer thread; armed timers never fire."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        if isinstance(self.clock, VirtualClock):
            try:
                self.clock.remove_listener(self._on_virtual_time)
            except ValueError:
                pass


# H:200
# The guest's clock.  Besides its devices, a guest gets one more source of
# interrupts: the one-shot timer it programs with SET_CLOCKEVENT, in
# nanoseconds from now, 0 meaning off.  The deadline is absolute on the wall
# clock, so time the guest spends not running still counts.  The delta is a
# 32-bit unsigned long: about 4.29 s at most.
def guest_set_clockevent(cpu: VCpu, delta: int) -> None:
    """The SET_CLOCKEVENT hypercall: arm IRQ 0 ``delta`` ns from now (0: off)."""
    delta &= 0xFFFFFFFF
    timer = cpu.hrt
    if delta == 0:
        timer.cancel()
        return
    timer.start(timer.events.now_ns() + delta)


# When it expires, IRQ 0 is raised; the timer does not re-arm itself.
def clockdev_fn(timer: HrTimer) -> int:
    timer.owner.set_interrupt(0)
    return HRTIMER_NORESTART


def init_clockdev(cpu: VCpu, events: ClockEvents | None = None) -> HrTimer:
    """Give the vCPU its clockevent timer (``cpu.hrt``) on ``events``, by
    default one ClockEvents per guest on the guest's clock."""
    if events is None:
        events = cpu.guest.__dict__.get("clockevents")
        if events is None:
            events = ClockEvents(cpu.guest.clock)
            cpu.guest.clockevents = events
    cpu.hrt = events.timer(clockdev_fn, owner=cpu)
    return cpu.hrt
# :*
