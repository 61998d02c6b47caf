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
import sys
import threading
import weakref
from typing import Callable

from lgcore.vcpu import Clock, VCpu, VirtualClock, WallClock

HRTIMER_NORESTART = 0
HRTIMER_RESTART = 1
_MAX_SLEEP = 0.5      # seconds the timer thread sleeps without looking at the clock


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


# C:040 Arming a timer is on the guest's hot path (SET_CLOCKEVENT on every
# tick), and on the wall clock it talks to the timer thread, which needs the
# GIL too.  Three things keep that cheap:
#  - the thread sleeps on a plain lock used as a binary semaphore (one C
#    call with a timeout; a Condition's wait and notify are Python code);
#  - it is woken only when a new deadline is earlier than the one it sleeps
#    until, so re-arming a later deadline costs the guest a heap push;
#  - stale heap entries (re-armed or cancelled timers) are dropped lazily,
#    so finding the next deadline never walks the heap.
class ClockEvents:
    """The timers of all vCPUs on one clock."""

    def __init__(self, clock: Clock | None = None):
        self.clock = clock if clock is not None else WallClock()
        self._virtual = bool(self.clock.virtual)
        self._heap: list[tuple[int, int, int, HrTimer]] = []
        self._seq = itertools.count()
        self._lock = threading.Lock()             # guards the heap and timer state
        self._idle = threading.Condition(self._lock)  # a callback finished
        self._wakeup = threading.Lock()           # released = "look again"
        self._wakeup.acquire()
        self._wake_at: int | None = None          # what the thread sleeps until
        self._thread: threading.Thread | None = None
        self._closed = False
        # A ClockEvents dropped with its guest ends its thread (see below).
        weakref.finalize(self, _release_quietly, self._wakeup)
        if isinstance(self.clock, VirtualClock):
            self.clock.add_listener(self._on_virtual_time)

    def now_ns(self) -> int:
        return self.clock.now_ns()

    def timer(self, function: Callable[[HrTimer], int], owner=None) -> HrTimer:
        return HrTimer(self, function, owner)

    # -- arming --

    def _signal(self) -> None:
        _release_quietly(self._wakeup)

    def _start(self, timer: HrTimer, expires: int) -> None:
        with self._lock:
            if self._closed:
                raise RuntimeError("ClockEvents is closed")
            timer._generation += 1
            timer.expires = expires
            heapq.heappush(self._heap, (expires, next(self._seq), timer._generation, timer))
            if self._virtual:
                wake = False
            elif self._thread is None:
                self._thread = threading.Thread(
                    target=_timer_thread, name="lgcore-clockevents", daemon=True,
                    args=(weakref.ref(self), self._lock, self._wakeup))
                self._thread.start()
                wake = False
            else:
                wake = self._wake_at is None or expires < self._wake_at
        if wake:
            self._signal()
        if self._virtual:
            self._fire_due(self.clock.now_ns())

    def _cancel(self, timer: HrTimer) -> None:
        # The thread may wake once more for a deadline that is gone; it
        # then finds nothing due and sleeps again.
        with self._lock:
            timer._generation += 1
            timer.expires = None
            if not self._virtual and threading.current_thread() is not self._thread:
                while timer._running:
                    self._idle.wait()

    # -- firing --

    def _pop_due(self, now: int) -> HrTimer | None:
        # Called with the lock held: the earliest live timer due by `now`.
        heap = self._heap
        while heap:
            expires, _, generation, timer = heap[0]
            if generation != timer._generation:
                heapq.heappop(heap)
                continue
            if expires > now:
                return None
            heapq.heappop(heap)
            timer.expires = None
            timer._running = True
            return timer
        return None

    def _run(self, timer: HrTimer) -> None:
        try:
            result = timer.function(timer)
        finally:
            with self._lock:
                timer._running = False
                timer.fired += 1
                self._idle.notify_all()
        if result == HRTIMER_RESTART and timer.expires is not None:
            self._start(timer, timer.expires)

    def _fire_due(self, now: int) -> None:
        while True:
            with self._lock:
                timer = self._pop_due(now)
            if timer is None:
                return
            self._run(timer)

    def _on_virtual_time(self, now: int) -> None:
        self._fire_due(now)

    def close(self) -> None:
        """Stop the timer thread; armed timers never fire."""
        with self._lock:
            self._closed = True
            thread = self._thread
            for _, _, generation, timer in self._heap:
                if generation == timer._generation:
                    timer._generation += 1
                    timer.expires = None
            self._heap.clear()
        self._signal()
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=1.0)
        if isinstance(self.clock, VirtualClock):
            try:
                self.clock.remove_listener(self._on_virtual_time)
            except ValueError:
                pass


def _release_quietly(wakeup: threading.Lock) -> None:
    try:
        wakeup.release()
    except RuntimeError:
        pass                                      # already signalled


# The timer thread holds its ClockEvents only weakly while it sleeps: an
# armed timer keeps its vCPU (and so the guest and the ClockEvents) alive
# through the heap, but once nothing is armed a guest that is dropped
# without close() is collected, its ClockEvents with it, and the finalizer's
# signal lets the thread see that and end.
def _timer_thread(ref, lock: threading.Lock, wakeup: threading.Lock) -> None:
    while True:
        ev = ref()
        if ev is None:
            return
        with lock:
            if ev._closed:
                return
            now = ev.clock.now_ns()
            timer = ev._pop_due(now)
            if timer is None:
                # _pop_due left a live entry (or nothing) on top.
                heap = ev._heap
                ev._wake_at = wake_at = heap[0][0] if heap else None
                heap = None
        if timer is not None:
            try:
                ev._run(timer)
            except BaseException:
                # One vCPU's failing callback (a VMM's kick hook, say) must
                # not stop the timers of the others: report it as an
                # uncaught thread exception would be, and go on.
                threading.excepthook(threading.ExceptHookArgs(
                    (*sys.exc_info(), threading.current_thread())))
            timer = ev = None
            continue
        ev = None
        if wake_at is None:
            wakeup.acquire()
        else:
            # The lock's timeout runs on the monotonic clock, deadlines on
            # the ClockEvents' clock (CLOCK_REALTIME for a WallClock): look
            # again at least every half second, so a step of the wall clock
            # moves an expiry as it moved lguest's hrtimer, give or take that.
            wakeup.acquire(timeout=min(_MAX_SLEEP, max(0.0, (wake_at - now) / 1e9)))


# H:200
# The guest's clock.  Besides its devices, a guest gets one more source of
# interrupts: the one-shot timer it programs with SET_CLOCKEVENT, in
# nanoseconds from now, 0 meaning off.  The deadline is absolute on the wall
# clock, so time the guest spends not running still counts.  The delta is a
# 32-bit unsigned long: about 4.29 s at most.
def guest_set_clockevent(cpu: VCpu, delta: int) -> None:
    """The SET_CLOCKEVENT hypercall: arm IRQ 0 ``delta`` ns from now (0: off)."""
    delta &= 0xFFFFFFFF
    timer = cpu.__dict__.get("hrt")
    if timer is None:
        timer = init_clockdev(cpu)
    if delta == 0:
        timer.cancel()
        return
    # ktime_add_ns(): a signed 64-bit sum.  Past the year 2262 it wraps
    # negative, and a deadline in the past fires at once.
    expires = (timer.events.now_ns() + delta) & 0xFFFFFFFFFFFFFFFF
    if expires & (1 << 63):
        expires -= 1 << 64
    timer.start(expires)


# When it expires, IRQ 0 is raised; the timer does not re-arm itself.  (A
# guest closed under a still-armed timer of a shared ClockEvents gets
# nothing: lguest cancelled the hrtimer at close.)
def clockdev_fn(timer: HrTimer) -> int:
    cpu = timer.owner
    if not cpu.guest.closed:
        cpu.set_interrupt(0)
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
