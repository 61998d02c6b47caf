# SPDX-License-Identifier: GPL-2.0-only
"""Waking and kicking a vCPU's thread when an interrupt is raised for it.

lguest's set_interrupt() woke the vCPU's task if it slept (halted), and
otherwise kicked it out of the guest with an IPI so the run loop would look
at the pending IRQs again.  A ``Task`` is that pair for a Python vCPU thread:
the halted sleep with its lost-wakeup guard, and a ``kick`` hook the VMM
supplies (for Unicorn, ``uc.emu_stop``).
"""
from __future__ import annotations

import threading
from typing import Callable

from lgcore.constants import IRQS


class Task:
    """The thread running a vCPU, as set_interrupt() sees it."""

    RUNNING = 0
    SLEEPING = 1

    def __init__(self, kick: Callable[[], None] | None = None):
        self.kick = kick
        self.state = self.RUNNING
        self.in_guest = False          # for the backend's own use; kicks ignore it
        self.wakeups = 0
        self.kicks = 0
        self._cond = threading.Condition()

    def wake_up_process(self) -> bool:
        """Wake the task if it sleeps; True if it did."""
        with self._cond:
            if self.state != self.SLEEPING:
                return False
            self.state = self.RUNNING
            self.wakeups += 1
            self._cond.notify_all()
            return True

    def kick_process(self) -> None:
        """Make a task that is inside the guest come out.  Like lguest's
        kick_process() this asks nothing: the ``kick`` hook always runs and
        the VMM decides what a kick means where its vCPU is now."""
        self.kicks += 1
        kick = self.kick
        if kick is not None:
            kick()

    def sleep_until_interrupt(self, cpu, timeout: float | None = None) -> bool:
        """The halted sleep: mark ourselves sleeping *before* looking for a
        pending IRQ, so a set_interrupt() between the look and the sleep
        wakes us instead of being lost.  Returns True if an IRQ is pending."""
        with self._cond:
            self.state = self.SLEEPING
            if cpu.interrupt_pending()[0] < IRQS:
                self.state = self.RUNNING
                return True
            if cpu.guest.dead is None:        # a dead guest is not waited for
                self._cond.wait_for(lambda: self.state != self.SLEEPING, timeout)
            self.state = self.RUNNING
        return cpu.interrupt_pending()[0] < IRQS

    def wake(self) -> None:
        """Wake the task for a reason other than an IRQ (shutdown)."""
        with self._cond:
            self.state = self.RUNNING
            self._cond.notify_all()
