# SPDX-License-Identifier: GPL-2.0-only
"""H:260: SET_STACK (guest_set_stack) and pinning the guest kernel stack,
with the VMM's pin_page hook and the default pin."""
import pytest

import lgcore
from lgcore.stacks import guest_set_stack, pin_stack_pages

from .helpers import GuardedRAM, PageTables, make_guest

SIZE = 64 * 1024


def _paged(**kw):
    g, cpu = make_guest(SIZE, **kw)
    pt = PageTables(g.ram, pgdir=0x2000, next_free=0x3000)
    cpu.pgdir, cpu.paging = 0x2000, True
    return g, cpu, pt


def _recording(g):
    calls = []
    g.pin_page_hook = lambda cpu, vaddr: calls.append((cpu.index, vaddr))
    return calls


def test_set_stack_records_and_pins_each_page():
    g, cpu, pt = _paged()
    calls = _recording(g)
    lgcore.guest_set_stack(cpu, 0x69, 0xC0010000, 2)
    assert (cpu.ss1, cpu.esp1, g.stack_pages) == (0x69, 0xC0010000, 2)
    assert calls == [(0, 0xC000FFFF), (0, 0xC000EFFF)]
    assert g.dead is None


def test_pin_stack_pages_uses_the_guests_page_count():
    g, cpu, pt = _paged()
    calls = _recording(g)
    g.stack_pages = 1
    cpu.esp1 = 0x2000
    pin_stack_pages(cpu)
    assert calls == [(0, 0x1FFF)]
    g.stack_pages = 0
    pin_stack_pages(cpu)
    assert calls == [(0, 0x1FFF)]


def test_esp1_zero_wraps():
    g, cpu, pt = _paged()
    calls = _recording(g)
    guest_set_stack(cpu, 0x69, 0, 2)
    assert calls == [(0, 0xFFFFFFFF), (0, 0xFFFFEFFF)]


@pytest.mark.parametrize("seg, shown", [(0x68, "104"), (0x6B, "107"), (0, "0"), (0xFFFFFFF8, "-8")])
def test_bad_stack_segment_kills_and_still_stores(seg, shown):
    g, cpu, pt = _paged()
    calls = _recording(g)
    guest_set_stack(cpu, seg, 0xC0010000, 1)
    assert g.dead == f"bad stack segment {shown}"
    assert (cpu.ss1, cpu.esp1, g.stack_pages) == (seg & 0xFFFF, 0xC0010000, 1)
    # the seed would still pin; a dead guest never runs again, so we stop
    assert calls == []


def test_bad_stack_pages_kills_stores_and_pins_nothing_more():
    g, cpu, pt = _paged()
    calls = _recording(g)
    guest_set_stack(cpu, 0x69, 0xC0010000, 3)
    assert g.dead == "bad stack pages 3"
    assert g.stack_pages == 3
    assert calls == []


@pytest.mark.parametrize("hook", [False, True])
def test_huge_page_count_returns_at_once(hook):
    """2**32-1 pages: the seed loops over every one after the kill; lgcore
    stops at the kill (regression: fuzz finding F1, a host hang)."""
    g, cpu, pt = _paged()
    calls = _recording(g) if hook else None
    if not hook:
        g.pin_page_hook = None
    guest_set_stack(cpu, 0x69, 0xC0010000, 0xFFFFFFFF)
    assert g.dead == "bad stack pages 4294967295"
    assert g.stack_pages == 0xFFFFFFFF
    if hook:
        assert calls == []


def test_first_reason_sticks_between_the_two_checks():
    g, cpu, pt = _paged()
    _recording(g)
    guest_set_stack(cpu, 0x68, 0x1000, 5)
    assert g.dead == "bad stack segment 104"


def test_segment_is_kept_to_sixteen_bits():
    g, cpu, pt = _paged()
    _recording(g)
    guest_set_stack(cpu, 0x12340069, 0x1000, 1)
    assert cpu.ss1 == 0x0069 and g.dead is None


# ---- the default pin (no hook): present and writable, else kill ----

def test_default_pin_accepts_present_writable_pages():
    g, cpu, pt = _paged()
    pt.map(0xC000F000, 0x8000, flags=0x3)
    pt.map(0xC000E000, 0x9000, flags=0x3)
    guest_set_stack(cpu, 0x69, 0xC0010000, 2)
    assert g.dead is None


@pytest.mark.parametrize("flags", [0x1, 0x2, 0x0, 0x5])
def test_default_pin_kills_on_unwritable_or_absent_pages(flags):
    g, cpu, pt = _paged()
    pt.map(0xC000F000, 0x8000, flags=0x3)
    pt.map(0xC000E000, 0x9000, flags=flags)
    guest_set_stack(cpu, 0x69, 0xC0010000, 2)
    assert g.dead == "bad stack page 0xc000efff"


def test_default_pin_kills_when_the_directory_entry_is_missing():
    g, cpu, pt = _paged()
    guest_set_stack(cpu, 0x69, 0xC0010000, 1)
    assert g.dead == "bad stack page 0xc000ffff"


def test_default_pin_with_tables_outside_ram():
    ram = GuardedRAM(SIZE)
    g, cpu = make_guest(ram=ram.view)
    cpu.pgdir, cpu.paging = 0xFFFFF000, True
    guest_set_stack(cpu, 0x69, 0xC0010000, 1)
    assert g.dead == "bad read address 0xfffffc00 len 4"
    assert ram.intact()


def test_default_pin_in_linear_mode_checks_the_page_is_in_ram():
    g, cpu = make_guest(SIZE)
    guest_set_stack(cpu, 0x69, SIZE, 1)            # last page: fine
    assert g.dead is None
    guest_set_stack(cpu, 0x69, SIZE + 4096, 1)
    assert g.dead == "bad stack page 0x10fff"


def test_pin_page_method_is_the_default():
    g, cpu, pt = _paged()
    cpu.pin_page(0xC0000000)
    assert g.dead == "bad stack page 0xc0000000"


def test_hook_sees_the_right_vcpu():
    g, cpu0, pt = _paged()
    cpu1 = g.add_vcpu()
    calls = _recording(g)
    guest_set_stack(cpu1, 0x69, 0x3000, 1)
    assert calls == [(1, 0x2FFF)]
    assert (cpu0.esp1, cpu1.esp1) == (0, 0x3000)
