# SPDX-License-Identifier: GPL-2.0-only
"""The unmodified C original builds against include/kshim and behaves as
lguest-facts.md says, checked on hand-computed cases through the glue.

Skips (with the reason) when the original is unavailable, unless
LGCORE_REQUIRE_C_ORIGINAL=1, which turns the skip into a failure.
"""
from __future__ import annotations

import importlib.util
import os
import shutil
import struct
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _load_reference_module():
    # Load lgcore/reference.py by path: it must not need the compiled engine
    # (or lgcore/__init__.py) to work.
    name = "_lgcore_reference_standalone"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, ROOT / "lgcore" / "reference.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod
    spec.loader.exec_module(mod)
    return mod


refmod = _load_reference_module()


@pytest.fixture(scope="module")
def ref():
    try:
        return refmod.load_reference()
    except refmod.ReferenceUnavailable as exc:
        if os.environ.get(refmod.ENV_REQUIRE) == "1":
            pytest.fail(f"C original required but unavailable: {exc}")
        pytest.skip(f"C original unavailable: {exc}")


@pytest.fixture
def lib(ref):
    ref.lib.kshim_host_reset()
    yield ref.lib
    ref.lib.kshim_host_reset()


def u32(ram, gpa):
    return struct.unpack_from("<I", ram, gpa)[0]


def put32(ram, gpa, value):
    struct.pack_into("<I", ram, gpa, value)


LD = 0x3000  # guest-physical address of lguest_data in these tests


def make_guest(ref, size=1 << 20, *, lguest_data=True, irq_enabled=0x200):
    """A guest whose lguest_data (if any) sits at LD, with irq_enabled set."""
    ram = bytearray(size)
    g = ref.new_guest(ram)
    gs, cs = g.state_out()
    if lguest_data:
        gs.has_lguest_data = 1
        gs.lguest_data = LD
        put32(ram, LD + 0, irq_enabled)
        put32(ram, LD + 1392, 0x80)
    g.state_in(gs, cs)
    return g, ram


def set_regs(g, **values):
    regs = g.regs
    for k, v in values.items():
        setattr(regs, k, v)


# ---- the build itself ------------------------------------------------------

def test_plain_gcc_compiles_unmodified_original(ref):
    # The documented command: gcc -O2 -c -I include/kshim -I include <original>.
    src = ref.source
    if (src.parent / "lg.h").exists():
        pytest.skip("a kernel tree's own lg.h sits beside this original")
    if shutil.which("gcc") is None:
        pytest.skip("no gcc on PATH")
    out = subprocess.run(
        ["gcc", "-O2", "-Wall", "-c", "-I", "include/kshim", "-I", "include",
         str(src), "-o", os.devnull],
        cwd=ROOT, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert "warning" not in out.stderr, out.stderr


def test_cached_build_is_reused(ref):
    assert refmod.build_reference() == ref.path
    assert ref.path.is_file()
    assert ROOT not in ref.source.parents  # built from outside the repo tree


def test_missing_source_reports_reason(monkeypatch):
    monkeypatch.setenv(refmod.ENV_SOURCE, "/nonexistent/interrupts_and_traps.c")
    assert refmod.reference_source() is None
    with pytest.raises(refmod.ReferenceUnavailable, match="is not a file"):
        refmod.build_reference()


def test_kernel_tree_lg_h_is_not_picked_up(ref, tmp_path, monkeypatch):
    # A kernel tree has its own lg.h beside the original; ours must win.
    tree = tmp_path / "drivers" / "lguest"
    tree.mkdir(parents=True)
    text = ref.source.read_text().replace(
        "#include <linux/module.h>\n", "#include <linux/module.h>\n#include <linux/sched.h>\n")
    (tree / "interrupts_and_traps.c").write_text(text)
    (tree / "lg.h").write_text('#error "the kernel lg.h was used"\n')
    monkeypatch.setenv(refmod.ENV_SOURCE, str(tree / "interrupts_and_traps.c"))
    monkeypatch.setenv(refmod.ENV_CACHE, str(tmp_path / "cache"))
    path = refmod.build_reference()
    assert path.is_file() and path.parent == tmp_path / "cache"


# ---- facts section 6: the frame builder -------------------------------------

def test_worked_example_user_mode_page_fault(ref, lib):
    # 128 MiB of RAM so that guest-physical 0x07A3E000 exists.
    g, ram = make_guest(ref, 0x08000000)
    pgdir, pt = 0x1000, 0x2000
    put32(ram, pgdir + (0xC7A3E000 >> 22) * 4, pt | 0x7)
    put32(ram, pt + ((0xC7A3E000 >> 12) & 0x3FF) * 4, 0x07A3E000 | 0x7)
    put32(ram, pt + ((0xC7A3D000 >> 12) & 0x3FF) * 4, 0x07A3D000 | 0x7)
    gs, cs = g.state_out()
    cs.pgdir, cs.paging = pgdir, 1
    g.state_in(gs, cs)

    lib.kshim_guest_set_stack(g.ptr, 0x69, 0xC7A3E000, 1)
    lib.kshim_load_guest_idt_entry(g.ptr, 14, 0x00601234, 0xC1008E00)
    set_regs(g, ss=0x7B, esp=0xBFFFF000, cs=0x73, eip=0x08048000,
             eflags=0x202, errcode=6)
    assert lib.kshim_deliver_trap(g.ptr, 14) == 1
    assert g.dead is None

    frame = {0x07A3DFFC: 0x7B, 0x07A3DFF8: 0xBFFFF000, 0x07A3DFF4: 0x202,
             0x07A3DFF0: 0x73, 0x07A3DFEC: 0x08048000, 0x07A3DFE8: 6}
    for gpa, want in frame.items():
        assert u32(ram, gpa) == want, hex(gpa)
    r = g.regs
    assert (r.esp, r.ss, r.cs, r.eip) == (0xC7A3DFE8, 0x69, 0x61, 0xC1001234)
    assert u32(ram, LD) == 0  # interrupt gate: virtual IF cleared


def test_stack_at_physical_zero_wraps_as_on_i386(ref, lib):
    # Ring 1, no paging, esp 8, a trap with an error code: pushes land at
    # 4 and 0, then wrap to 0xFFFFFFFC (refused) and 0xFFFFFFF8.
    g, ram = make_guest(ref, 1 << 16)
    lib.kshim_load_guest_idt_entry(g.ptr, 13, 0x00605678, 0xC100EF00)  # trap gate
    set_regs(g, ss=0x69, esp=8, cs=0x61, eip=0xC0001000, eflags=0x202, errcode=0)
    assert lib.kshim_deliver_trap(g.ptr, 13) == 1
    assert u32(ram, 4) == 0x202 and u32(ram, 0) == 0x61
    assert g.dead == "bad write address 0xfffffffc len 4"
    assert g.regs.esp == 0xFFFFFFF8
    assert g.regs.eip == 0xC1005678
    assert u32(ram, LD) == 0x200  # trap gate leaves irq_enabled alone


def test_guest_pa_failure_still_moves_registers(ref, lib):
    # Paging on over an empty directory: guest_pa(esp1) kills and yields
    # 0xFFFFFFFF; the pushes fail, the registers still change.
    g, ram = make_guest(ref)
    gs, cs = g.state_out()
    cs.pgdir, cs.paging, cs.esp1, cs.ss1 = 0x1000, 1, 0xC7A3E000, 0x69
    g.state_in(gs, cs)
    lib.kshim_load_guest_idt_entry(g.ptr, 0x20, 0x00600530, 0xC1008E00)
    set_regs(g, ss=0x7B, esp=0xBFFFF000, cs=0x73, eip=0x08048000, eflags=0x202)
    assert lib.kshim_set_interrupt(g.ptr, 0) == 0
    more = ref.ffi.new("int *", 7)
    irq = lib.kshim_interrupt_pending(g.ptr, more)
    assert irq == 0
    lib.kshim_try_deliver_interrupt(g.ptr, irq, more[0])
    assert g.dead == "Bad address 0xc7a3e000"
    assert (g.regs.esp, g.regs.ss, g.regs.cs) == (0xC7A3E000 - 20, 0x69, 0x61)


def test_bad_address_zero_prints_kernel_style(ref, lib):
    g, ram = make_guest(ref)
    gs, cs = g.state_out()
    cs.pgdir, cs.paging = 0x1000, 1
    g.state_in(gs, cs)
    lib.kshim_load_guest_idt_entry(g.ptr, 3, 0x00600000, 0xC100EE00)
    set_regs(g, ss=0x69, esp=0, cs=0x61)
    assert lib.kshim_deliver_trap(g.ptr, 3) == 1
    assert g.dead == "Bad address 0x0"


# ---- IDT handling (facts 3.3 and section 6) ---------------------------------

def test_set_trap_packing_example(ref, lib):
    g, _ = make_guest(ref)
    lib.kshim_load_guest_idt_entry(g.ptr, 0x20, 0x00600530, 0xC1008E00)
    e = g.idt[0x20]
    assert (e.a, e.b) == (0x00610530, 0xC1008E00)
    _, cs = g.state_out()
    assert cs.changed & 1
    assert g.dead is None


def test_ignored_vectors_do_not_mark_changed(ref, lib):
    g, _ = make_guest(ref)
    for num in (2, 8, 15, 0x1F):
        lib.kshim_load_guest_idt_entry(g.ptr, num, 0x00600530, 0xC1008E00)
        assert (g.idt[num].a, g.idt[num].b) == (0, 0)
    assert g.state_out()[1].changed == 0


def test_kill_bad_idt_type_still_stores(ref, lib):
    g, _ = make_guest(ref)
    lib.kshim_load_guest_idt_entry(g.ptr, 3, 0x00600000, 0x00008C00)
    assert g.dead == "bad IDT type 12"
    assert (g.idt[3].a, g.idt[3].b) == (0x00610000, 0x8C00)
    gs, _ = g.state_out()
    assert gs.dead == lib.LG_KILL_BAD_IDT_TYPE and gs.dead_args[0] == 12


def test_kill_setting_idt_entry_256(ref, lib):
    g, _ = make_guest(ref)
    lib.kshim_load_guest_idt_entry(g.ptr, 256, 0, 0x8E00)
    assert g.dead == "Setting idt entry 256"
    assert g.state_out()[1].changed & 1
    lib.kshim_load_guest_idt_entry(g.ptr, 300, 0, 0x8E00)
    assert g.dead == "Setting idt entry 256"  # the first reason sticks


def test_copy_traps_direct_and_default(ref, lib):
    g, _ = make_guest(ref)
    stubs = [0xFFC01000 + 16 * i for i in range(256)]
    defs = ref.defaults(stubs)
    idt = ref.ffi.new("lg_desc_t[256]")
    lib.kshim_setup_default_idt_entries(idt, defs)
    for i in (0, 14, 0x1F, 0x80):
        flags = 0xAE00 if i == 0x1F else 0x8E00
        assert (idt[i].a, idt[i].b) == (0x00500000 | (stubs[i] & 0xFFFF),
                                         (stubs[i] & 0xFFFF0000) | flags)

    lib.kshim_load_guest_idt_entry(g.ptr, 0x80, 0x00601234, 0xC100EF00)  # trap, DPL 3
    lib.kshim_load_guest_idt_entry(g.ptr, 3, 0x00605678, 0xC100EE00)     # int, DPL 3
    lib.kshim_load_guest_idt_entry(g.ptr, 14, 0x00609ABC, 0xC100EF00)    # trap, but #PF
    lib.kshim_load_guest_idt_entry(g.ptr, 0x21, 0x00601111, 0xC100EF00)  # not direct
    before = [(idt[i].a, idt[i].b) for i in range(256)]
    lib.kshim_copy_traps(g.ptr, idt, defs)
    assert (idt[0x80].a, idt[0x80].b) == (0x00611234, 0xC100EF00)
    assert (idt[3].a, idt[3].b) == (0x00500000 | (stubs[3] & 0xFFFF),
                                     (stubs[3] & 0xFFFF0000) | 0xEE00)
    for i in (6, 7, 13, 14, 0x1F, 0x21, 0x40):
        assert (idt[i].a, idt[i].b) == before[i]


def test_custom_syscall_vector_goes_direct(ref, lib):
    g, _ = make_guest(ref)
    lib.kshim_set_syscall_vector(0x40)
    defs = ref.defaults([0xFFC00000] * 256)
    idt = ref.ffi.new("lg_desc_t[256]")
    lib.kshim_load_guest_idt_entry(g.ptr, 0x40, 0x00601234, 0xC100EF00)
    lib.kshim_copy_traps(g.ptr, idt, defs)
    assert (idt[0x40].a, idt[0x40].b) == (0x00611234, 0xC100EF00)


# ---- interrupts ----------------------------------------------------------------

def test_interrupt_pending_before_init(ref, lib):
    g, _ = make_guest(ref, lguest_data=False)
    lib.kshim_set_interrupt(g.ptr, 3)
    more = ref.ffi.new("int *", 7)
    assert lib.kshim_interrupt_pending(g.ptr, more) == 32
    assert more[0] == 7  # not written


def test_more_is_always_true_so_irq_pending_sticks(ref, lib):
    g, ram = make_guest(ref, irq_enabled=0)
    lib.kshim_load_guest_idt_entry(g.ptr, 0x20, 0x00600530, 0xC1008E00)
    set_regs(g, ss=0x69, esp=0x8000, cs=0x61, eip=0xC0001000, eflags=0x202)
    lib.kshim_set_interrupt(g.ptr, 0)
    more = ref.ffi.new("int *", 7)
    assert lib.kshim_interrupt_pending(g.ptr, more) == 0
    assert more[0] == 1  # the only pending IRQ, yet "more"
    lib.kshim_try_deliver_interrupt(g.ptr, 0, more[0])
    assert u32(ram, LD + 20) == 0x200  # deferred: irq_pending set
    assert g.state_out()[1].irqs_pending == 1

    put32(ram, LD, 0x200)
    lib.kshim_try_deliver_interrupt(g.ptr, 0, more[0])
    assert g.state_out()[1].irqs_pending == 0
    assert g.regs.eip == 0xC1000530
    assert u32(ram, LD + 20) == 0x200  # never cleared
    assert g.dead is None


def test_blocked_and_noirq_window(ref, lib):
    g, ram = make_guest(ref)
    lib.kshim_set_interrupt(g.ptr, 0)
    lib.kshim_set_interrupt(g.ptr, 5)
    put32(ram, LD + 4, 1)  # block IRQ 0
    more = ref.ffi.new("int *")
    assert lib.kshim_interrupt_pending(g.ptr, more) == 5
    gs, cs = g.state_out()
    gs.noirq_start, gs.noirq_end = 0xC0001000, 0xC0001010
    g.state_in(gs, None)
    set_regs(g, eip=0xC0001008)
    lib.kshim_try_deliver_interrupt(g.ptr, 5, 1)
    assert g.state_out()[1].irqs_pending == 0x21 and u32(ram, LD + 20) == 0


def test_wake_and_kick(ref, lib):
    g, _ = make_guest(ref)
    wakes, kicks = ref.ffi.new("uint64_t *"), ref.ffi.new("uint64_t *")
    lib.kshim_set_interrupt(g.ptr, 1)
    lib.kshim_task_set_wake_result(g.ptr, 0)
    lib.kshim_set_interrupt(g.ptr, 2)
    lib.kshim_task_counts(g.ptr, wakes, kicks)
    assert (wakes[0], kicks[0]) == (2, 1)
    assert lib.kshim_set_interrupt(g.ptr, 32) == lib.KSHIM_EREFUSED


# ---- stacks, syscall vector, clock -------------------------------------------

def test_guest_set_stack_kills_but_stores(ref, lib):
    g, _ = make_guest(ref)
    lib.kshim_guest_set_stack(g.ptr, 0x10068, 0x9000, 3)
    assert g.dead == "bad stack segment 65640"
    gs, cs = g.state_out()
    assert (cs.ss1, cs.esp1, gs.stack_pages) == (0x0068, 0x9000, 3)
    assert gs.dead == lib.LG_KILL_BAD_STACK_SEGMENT and gs.dead_args[0] == 0x10068


def test_pin_stack_page_out_of_range(ref, lib):
    g, _ = make_guest(ref, 1 << 16)
    lib.kshim_guest_set_stack(g.ptr, 0x69, 0, 1)
    assert g.dead == "bad stack page 0xffffffff"


def test_init_interrupts_reserves_vector(ref, lib):
    assert lib.kshim_init_interrupts() == 0  # 0x80: nothing to do
    lib.kshim_set_syscall_vector(0x40)
    vec = ref.ffi.new("uint32_t[8]")
    assert lib.kshim_init_interrupts() == 0
    lib.kshim_get_used_vectors(vec)
    assert vec[2] & 1
    assert lib.kshim_init_interrupts() == -16  # now taken: -EBUSY
    level = ref.ffi.new("int *")
    assert ref.ffi.string(lib.kshim_last_printk(level)) == b"lg: couldn't reserve syscall 64\n"
    assert level[0] == 3
    assert lib.kshim_free_interrupts() == 0
    lib.kshim_get_used_vectors(vec)
    assert not vec[2] & 1


def test_check_syscall_vector(ref, lib):
    g, ram = make_guest(ref)
    assert lib.kshim_check_syscall_vector(g.ptr) == 1
    put32(ram, LD + 1392, 0x40)
    assert lib.kshim_check_syscall_vector(g.ptr) == 0
    lib.kshim_set_syscall_vector(0x40)
    assert lib.kshim_check_syscall_vector(g.ptr) == 1


def test_clockevent_and_timestamp(ref, lib):
    g, ram = make_guest(ref)
    lib.kshim_clock_set(lib.LG_CLOCK_VIRTUAL, 5_000_000_123)
    lib.kshim_init_clockdev(g.ptr)
    expires = ref.ffi.new("int64_t *")
    lib.kshim_guest_set_clockevent(g.ptr, 1000)
    assert lib.kshim_timer_armed(g.ptr, expires) == 1 and expires[0] == 5_000_001_123
    assert lib.kshim_timer_run_expired(g.ptr) == 0
    lib.kshim_clock_set(lib.LG_CLOCK_VIRTUAL, 5_000_001_123)
    assert lib.kshim_timer_run_expired(g.ptr) == 1
    assert g.state_out()[1].irqs_pending == 1
    assert lib.kshim_timer_armed(g.ptr, expires) == 0
    lib.kshim_guest_set_clockevent(g.ptr, 7)
    lib.kshim_guest_set_clockevent(g.ptr, 0)
    assert lib.kshim_timer_armed(g.ptr, expires) == 0

    # try_deliver_interrupt always stamps the time (8 bytes at +12).
    set_regs(g, ss=0x69, esp=0x8000)
    lib.kshim_try_deliver_interrupt(g.ptr, 0, 1)  # no gate: stays pending
    assert struct.unpack_from("<ii", ram, LD + 12) == (5, 1123)
    assert g.state_out()[1].irqs_pending == 1


# ---- state transfer --------------------------------------------------------

def test_state_round_trip(ref, lib):
    g, _ = make_guest(ref)
    ffi = ref.ffi
    gs, cs = ffi.new("lg_guest_t *"), ffi.new("lg_cpu_t *")
    gs.pfn_limit, gs.lguest_data, gs.has_lguest_data = 200, 0x4000, 1
    gs.noirq_start, gs.noirq_end, gs.stack_pages = 0xC0000010, 0xC0000020, 2
    gs.syscall_vector, gs.fixes = 0x40, 0
    cs.regs.eax, cs.regs.ss, cs.regs.esp = 0xDEADBEEF, 0x7B, 0xBFFF0000
    cs.idt[77].a, cs.idt[77].b = 0x12345678, 0x9ABCDEF0
    cs.irqs_pending, cs.esp1, cs.ss1 = 0x80000001, 0xC0002000, 0x69
    cs.changed, cs.halted, cs.pgdir, cs.paging = 3, 1, 0x5000, 1
    for code, args in [(0, (0, 0)), (1, (0, 0)), (3, (0xFFFFFFFF, 0)), (5, (12, 0)),
                       (7, (0xFFFFFFFC, 4)), (9, (0, 0)), (11, (0xFFFFFFFF, 0)),
                       (10, (0, 0))]:
        gs.dead, gs.dead_args[0], gs.dead_args[1] = code, *args
        g.state_in(gs, cs)
        g2, c2 = g.state_out()
        assert bytes(ffi.buffer(c2, ffi.sizeof("lg_cpu_t"))) == \
            bytes(ffi.buffer(cs, ffi.sizeof("lg_cpu_t")))
        for f in ("pfn_limit", "lguest_data", "has_lguest_data", "noirq_start",
                  "noirq_end", "stack_pages", "syscall_vector", "fixes", "dead"):
            assert getattr(g2, f) == getattr(gs, f), f
        assert list(g2.dead_args) == list(gs.dead_args)
    gs.dead, gs.dead_args[0] = 3, 0xFFFFFFFF
    g.state_in(gs, None)
    assert g.dead == "bad stack segment -1"
    gs.has_lguest_data = 0
    g.state_in(gs, None)
    g2, _ = g.state_out()
    assert (g2.has_lguest_data, g2.lguest_data) == (0, 0x4000)


# ---- benchmark loops ---------------------------------------------------------

def test_bench_loops_repeat_the_same_work(ref, lib):
    g, ram = make_guest(ref)
    lib.kshim_load_guest_idt_entry(g.ptr, 0x20, 0x00600530, 0xC1008E00)
    lib.kshim_load_guest_idt_entry(g.ptr, 14, 0x00601234, 0xC1008E00)
    set_regs(g, ss=0x69, esp=0x8000, cs=0x61, eip=0xC0001000, eflags=0x202, errcode=2)
    lib.kshim_bench_interrupt_pending(g.ptr, 100)
    lib.kshim_bench_deliver_irq(g.ptr, 0, 100)
    assert g.regs.esp == 0x8000 - 12 and u32(ram, LD) == 0
    assert g.state_out()[1].irqs_pending == 0
    put32(ram, LD, 0x200)
    set_regs(g, esp=0x8000, eip=0xC0001000, cs=0x61, ss=0x69)
    lib.kshim_bench_deliver_trap(g.ptr, 14, 100)
    assert g.regs.esp == 0x8000 - 16 and g.regs.eip == 0xC1001234
    lib.kshim_bench_load_guest_idt_entry(g.ptr, 0x80, 0x00601234, 0xC100EF00, 100)
    defs = ref.defaults(range(0xFFC00000, 0xFFC00000 + 256))
    idt = ref.ffi.new("lg_desc_t[256]")
    lib.kshim_bench_setup_default_idt_entries(idt, defs, 10)
    lib.kshim_bench_copy_traps(g.ptr, idt, defs, 10)
    assert (idt[0x80].a, idt[0x80].b) == (0x00611234, 0xC100EF00)
    assert g.dead is None
