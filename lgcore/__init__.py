# SPDX-License-Identifier: GPL-2.0-only
"""lgcore: the interrupt and trap engine of Linux's lguest hypervisor, for
Python VMMs, emulators and fuzzers.

A guest is RAM you own plus lguest's per-guest state; a vCPU is registers, the
guest IDT and pending IRQs.  lgcore delivers interrupts and traps into guest
RAM the way lguest's host did: see ``Guest``, ``VCpu`` and the policy modules
``stacks``, ``syscalls``, ``clock``, ``wake`` and ``runloop``.
"""
import os as _os

from lgcore.vcpu import (
    FIXES,
    PROFILES,
    Clock,
    Guest,
    GuestClosed,
    GuestKilled,
    VCpu,
    VirtualClock,
    WallClock,
    check_syscall_vector,
    copy_traps,
    could_be_syscall,
    default_idt_entry,
    deliver_trap,
    direct_trap,
    guest_pa,
    has_err,
    idt_address,
    idt_present,
    idt_type,
    interrupt_pending,
    load_guest_idt_entry,
    push_guest_stack,
    set_guest_interrupt,
    set_interrupt,
    set_trap,
    setup_default_idt_entries,
    try_deliver_interrupt,
    write_timestamp,
)
from lgcore.constants import *  # noqa: F401,F403
from lgcore.constants import __all__ as _constants_all

__version__ = "0.1.0"


def get_include():
    """The directory holding ``lgcore/lgcore.h``, for C and Cython builds."""
    here = _os.path.dirname(_os.path.abspath(__file__))
    installed = _os.path.join(here, "include")
    if _os.path.exists(_os.path.join(installed, "lgcore", "lgcore.h")):
        return installed
    return _os.path.join(_os.path.dirname(here), "include")


def get_pxd_path():
    """The directory to put on Cython's include path to cimport lgcore."""
    return _os.path.dirname(_os.path.dirname(_os.path.abspath(__file__)))


__all__ = [
    "Clock", "FIXES", "Guest", "GuestClosed", "GuestKilled", "PROFILES", "VCpu",
    "VirtualClock", "WallClock", "check_syscall_vector", "copy_traps",
    "could_be_syscall", "default_idt_entry", "deliver_trap", "direct_trap",
    "get_include", "get_pxd_path", "guest_pa", "has_err", "idt_address", "idt_present",
    "idt_type", "interrupt_pending", "load_guest_idt_entry", "push_guest_stack",
    "set_guest_interrupt", "set_interrupt", "set_trap", "setup_default_idt_entries",
    "try_deliver_interrupt", "write_timestamp",
    "guest_set_stack", "pin_stack_pages", "init_interrupts", "free_interrupts",
    "guest_set_clockevent", "clockdev_fn", "init_clockdev",
] + list(_constants_all)

from lgcore.stacks import guest_set_stack, pin_stack_pages  # noqa: E402
from lgcore.syscalls import free_interrupts, init_interrupts  # noqa: E402
from lgcore.clock import clockdev_fn, guest_set_clockevent, init_clockdev  # noqa: E402
