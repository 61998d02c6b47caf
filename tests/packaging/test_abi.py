# SPDX-License-Identifier: GPL-2.0-only
"""The guest ABI in include/lgcore/lgcore.h, checked against the facts table
(../shared/docs/lguest-facts.md, sections 2 and 3).

Every expected number below was written by hand from that table, never read
from the header.  The header's numbers come from a small C program compiled
with gcc (offsetof, sizeof, signedness, every LG_ macro); the Python side
(lgcore.constants, lgcore.FIXES/PROFILES) and the compiled engine (register
and IDT views, the lguest_data fields it reads and writes) are checked
against the same table.
"""
import os
import re
import shutil
import struct
import subprocess
from pathlib import Path

import pytest

import lgcore
from lgcore import constants

HEADER = Path(lgcore.get_include()) / "lgcore" / "lgcore.h"

# ---- the facts, by hand ----------------------------------------------------

# §3.1 struct lguest_data, seed era (with pgdir): field, offset, size, signed.
# time is an i386 struct timespec: two 32-bit longs, tv_sec then tv_nsec.
LGUEST_DATA = [
    ("irq_enabled", 0, 4, False),
    ("blocked_interrupts", 4, 4, None),
    ("cr2", 8, 4, False),
    ("time_sec", 12, 4, True),
    ("time_nsec", 16, 4, True),
    ("irq_pending", 20, 4, True),
    ("hcall_status", 24, 64, None),
    ("hcalls", 88, 1280, None),
    ("reserve_mem", 1368, 4, False),
    ("tsc_khz", 1372, 4, False),
    ("pgdir", 1376, 4, False),
    ("noirq_start", 1380, 4, False),
    ("noirq_end", 1384, 4, False),
    ("kernel_address", 1388, 4, False),
    ("syscall_vec", 1392, 4, False),
]
LGUEST_DATA_SIZE = 1396
HCALL_ARGS = [("arg0", 0), ("arg1", 4), ("arg2", 8), ("arg3", 12), ("arg4", 16)]
HCALL_ARGS_SIZE = 20
HCALL_63 = 1348            # 88 + 20 * 63

# §3.2 struct lguest_regs: 18 u32 in this order, 72 bytes.
LGUEST_REGS = [
    ("eax", 0), ("ebx", 4), ("ecx", 8), ("edx", 12), ("esi", 16), ("edi", 20),
    ("ebp", 24), ("gs", 28), ("fs", 32), ("ds", 36), ("es", 40),
    ("trapnum", 44), ("errcode", 48), ("eip", 52), ("cs", 56), ("eflags", 60),
    ("esp", 64), ("ss", 68),
]
LGUEST_REGS_SIZE = 72

# §3.3 a gate: two u32 words, a (selector:offset low) then b.
GATE = [("a", 0), ("b", 4)]
GATE_SIZE = 8

# §2 (and §3.3's literals): every constant the seed uses, under the header's
# names.
FACTS_CONSTANTS = {
    "LG_IRQS": 32,
    "LG_IDT_ENTRIES": 256,
    "LG_FIRST_EXTERNAL_VECTOR": 32,
    "LG_SYSCALL_VECTOR": 128,
    "LG_TRAP_ENTRY": 31,
    "LG_NO_TRAP": 256,
    "LG_GUEST_PL": 1,
    "LG_LGUEST_CS": 10 * 8,
    "LG_LGUEST_DS": 11 * 8,
    "LG_KERNEL_CS": 12 * 8,
    "LG_KERNEL_DS": 13 * 8,
    "LG_USER_CS": 14 * 8 + 3,
    "LG_USER_DS": 15 * 8 + 3,
    "LG_GUEST_CS": 12 * 8 + 1,
    "LG_GUEST_DS": 13 * 8 + 1,
    "LG_PAGE_SIZE": 4096,
    "LG_EFLAGS_TF": 1 << 8,
    "LG_EFLAGS_IF": 1 << 9,
    "LG_EFLAGS_NT": 1 << 14,
    "LG_EFLAGS_RF": 1 << 16,
    "LG_EFLAGS_VM": 1 << 17,
    "LG_GATE_TASK": 5,
    "LG_GATE_CALL": 12,
    "LG_GATE_INTERRUPT": 14,
    "LG_GATE_TRAP": 15,
    "LG_GATE_PRESENT": 1 << 15,
    "LG_GATE_DPL_MASK": 3 << 13,
    "LG_GATE_KEEP_MASK": 0xFFFF0000 | (1 << 15) | (3 << 13) | (0xF << 8),
    "LG_GATE_DEFAULT_FLAGS": (1 << 15) | (0xE << 8),
    "LG_CHANGED_IDT": 1,
    "LG_CHANGED_GDT": 2,
    "LG_CHANGED_GDT_TLS": 4,
    "LG_CHANGED_ALL": 3,
    "LG_LHCALL_FLUSH_ASYNC": 0,
    "LG_LHCALL_LGUEST_INIT": 1,
    "LG_LHCALL_SHUTDOWN": 2,
    "LG_LHCALL_NEW_PGTABLE": 4,
    "LG_LHCALL_FLUSH_TLB": 5,
    "LG_LHCALL_LOAD_IDT_ENTRY": 6,
    "LG_LHCALL_SET_STACK": 7,
    "LG_LHCALL_TS": 8,
    "LG_LHCALL_SET_CLOCKEVENT": 9,
    "LG_LHCALL_HALT": 10,
    "LG_LHCALL_SET_PMD": 13,
    "LG_LHCALL_SET_PTE": 14,
    "LG_LHCALL_SET_PGD": 15,
    "LG_LHCALL_LOAD_TLS": 16,
    "LG_LHCALL_NOTIFY": 17,
    "LG_LHCALL_LOAD_GDT_ENTRY": 18,
    "LG_LHCALL_SEND_INTERRUPTS": 19,
    "LG_SHUTDOWN_POWEROFF": 1,
    "LG_SHUTDOWN_RESTART": 2,
    "LG_HCALL_RING_SIZE": 64,
    "LG_CLOCK_MIN_DELTA": 100,
    "LG_LD_IRQ_ENABLED": 0,
    "LG_LD_BLOCKED": 4,
    "LG_LD_CR2": 8,
    "LG_LD_TIME": 12,
    "LG_LD_IRQ_PENDING": 20,
    "LG_LD_HCALL_STATUS": 24,
    "LG_LD_HCALLS": 88,
    "LG_LD_RESERVE_MEM": 1368,
    "LG_LD_TSC_KHZ": 1372,
    "LG_LD_PGDIR": 1376,
    "LG_LD_NOIRQ_START": 1380,
    "LG_LD_NOIRQ_END": 1384,
    "LG_LD_KERNEL_ADDRESS": 1388,
    "LG_LD_SYSCALL_VEC": 1392,
    "LG_LD_SIZE": 1396,
    "LG_REGS_SIZE": 72,
    # x86 facts the engine's own helpers rest on (§4 guest_pa / pin_page):
    # 4096 = 1 << 12; PTE bit 0 present, bit 1 writable, bit 2 user.
    "LG_PAGE_SHIFT": 12,
    "LG_PTE_PRESENT": 1,
    "LG_PTE_RW": 2,
    "LG_PTE_USER": 4,
}

# lgcore's own switches (design §4) and encodings: not in the facts, so their
# rules are checked instead of their numbers.
OWN_FIXES = ["LG_FIX_MORE", "LG_FIX_EFLAGS", "LG_FIX_ADDRESS_CHECK", "LG_FIX_SYSCALL_REFLECT"]
OWN_OTHER = ["LG_PROFILE_SEED", "LG_PROFILE_HARDENED", "LG_CLOCK_REALTIME", "LG_CLOCK_VIRTUAL"]

# Header constants with no lgcore.constants twin (C-level only, or exposed
# another way: FIXES/PROFILES, the kill reason text).
C_ONLY = {
    "LG_PAGE_SHIFT", "LG_GATE_PRESENT", "LG_GATE_DPL_MASK", "LG_GATE_KEEP_MASK",
    "LG_GATE_DEFAULT_FLAGS", "LG_PTE_PRESENT", "LG_PTE_RW", "LG_PTE_USER",
    *OWN_FIXES, *OWN_OTHER,
}


# ---- the header's numbers, from gcc ----------------------------------------

def _header_names():
    text = HEADER.read_text()
    macros = re.findall(r"^#define\s+(LG_\w+)\s+\S", text, re.M)
    kills = re.findall(r"\b(LG_KILL_\w+)\s*=", text)
    return macros, kills


def _c_program(macros, kills):
    out = ['#include <stdio.h>', '#include "lgcore/lgcore.h"',
           '#define OFF(T, f) printf("off %s.%s %zu\\n", #T, #f, offsetof(T, f))',
           '#define SIZE(T) printf("size %s %zu\\n", #T, sizeof(T))',
           '#define SIGNED(T, f) printf("signed %s.%s %d\\n", #T, #f, '
           '(int)((__typeof__(((T *)0)->f))-1 < 0))',
           '#define FSIZE(T, f) printf("fsize %s.%s %zu\\n", #T, #f, sizeof(((T *)0)->f))',
           "int main(void) {"]
    for name, _off, _size, signed in LGUEST_DATA:
        out.append(f"OFF(lg_lguest_data_t, {name}); FSIZE(lg_lguest_data_t, {name});")
        if signed is not None:
            out.append(f"SIGNED(lg_lguest_data_t, {name});")
    out.append("OFF(lg_lguest_data_t, hcalls[63]);")
    for name, _off in HCALL_ARGS:
        out.append(f"OFF(lg_hcall_args_t, {name}); FSIZE(lg_hcall_args_t, {name});"
                   f" SIGNED(lg_hcall_args_t, {name});")
    for name, _off in LGUEST_REGS:
        out.append(f"OFF(lg_regs_t, {name}); FSIZE(lg_regs_t, {name}); SIGNED(lg_regs_t, {name});")
    for name, _off in GATE:
        out.append(f"OFF(lg_desc_t, {name}); FSIZE(lg_desc_t, {name}); SIGNED(lg_desc_t, {name});")
    for t in ("lg_lguest_data_t", "lg_hcall_args_t", "lg_regs_t", "lg_desc_t"):
        out.append(f"SIZE({t});")
    for name in macros + kills:
        out.append(f'printf("const {name} %lld\\n", (long long)({name}));')
    out.append("return 0; }")
    return "\n".join(out) + "\n"


@pytest.fixture(scope="module")
def header(tmp_path_factory):
    """{kind: {name: int}} as gcc sees include/lgcore/lgcore.h."""
    cc = os.environ.get("CC", "gcc")
    assert shutil.which(cc), f"{cc} is needed to build lgcore"
    macros, kills = _header_names()
    d = tmp_path_factory.mktemp("abi")
    src, exe = d / "abi.c", d / "abi"
    src.write_text(_c_program(macros, kills))
    build = subprocess.run(
        [cc, "-std=c11", "-Wall", "-Wextra", "-Werror", "-Wno-type-limits", "-I", lgcore.get_include(),
         str(src), "-o", str(exe)], capture_output=True, text=True)
    assert build.returncode == 0, build.stderr
    run = subprocess.run([str(exe)], capture_output=True, text=True, check=True)
    facts = {}
    for line in run.stdout.splitlines():
        kind, name, value = line.split()
        facts.setdefault(kind, {})[name] = int(value)
    return facts


# ---- layouts ---------------------------------------------------------------

def test_lguest_data_layout(header):
    for name, off, size, _signed in LGUEST_DATA:
        assert header["off"][f"lg_lguest_data_t.{name}"] == off, name
        assert header["fsize"][f"lg_lguest_data_t.{name}"] == size, name
    assert header["off"]["lg_lguest_data_t.hcalls[63]"] == HCALL_63
    assert header["size"]["lg_lguest_data_t"] == LGUEST_DATA_SIZE


def test_lguest_data_signedness(header):
    # i386: irq_pending is an int and the timespec holds longs; the rest are
    # unsigned.
    for name, _off, _size, signed in LGUEST_DATA:
        if signed is not None:
            assert header["signed"][f"lg_lguest_data_t.{name}"] == int(signed), name


def test_hcall_args_layout(header):
    for name, off in HCALL_ARGS:
        assert header["off"][f"lg_hcall_args_t.{name}"] == off
        assert header["fsize"][f"lg_hcall_args_t.{name}"] == 4
        assert header["signed"][f"lg_hcall_args_t.{name}"] == 0
    assert header["size"]["lg_hcall_args_t"] == HCALL_ARGS_SIZE


def test_lguest_regs_layout(header):
    for name, off in LGUEST_REGS:
        assert header["off"][f"lg_regs_t.{name}"] == off, name
        assert header["fsize"][f"lg_regs_t.{name}"] == 4, name
        assert header["signed"][f"lg_regs_t.{name}"] == 0, name
    assert header["size"]["lg_regs_t"] == LGUEST_REGS_SIZE


def test_gate_layout(header):
    for name, off in GATE:
        assert header["off"][f"lg_desc_t.{name}"] == off
        assert header["fsize"][f"lg_desc_t.{name}"] == 4
        assert header["signed"][f"lg_desc_t.{name}"] == 0
    assert header["size"]["lg_desc_t"] == GATE_SIZE


# ---- constants -------------------------------------------------------------

def test_every_facts_constant_in_header(header):
    consts = header["const"]
    missing = sorted(set(FACTS_CONSTANTS) - set(consts))
    assert not missing, f"lgcore.h lacks {missing}"
    wrong = {n: (consts[n], v) for n, v in FACTS_CONSTANTS.items() if consts[n] != v}
    assert not wrong, f"header value != facts value: {wrong}"


def test_no_unchecked_header_constant(header):
    known = set(FACTS_CONSTANTS) | set(OWN_FIXES) | set(OWN_OTHER)
    unchecked = sorted(n for n in header["const"]
                       if n not in known and not n.startswith("LG_KILL_"))
    assert not unchecked, f"add {unchecked} to this test's tables"


def test_own_switches(header):
    c = header["const"]
    bits = [c[n] for n in OWN_FIXES]
    assert all(b and b & (b - 1) == 0 for b in bits), "each fix is one bit"
    assert len(set(bits)) == len(bits)
    assert c["LG_PROFILE_SEED"] == 0
    hardened = 0
    for b in bits:
        hardened |= b
    assert c["LG_PROFILE_HARDENED"] == hardened
    assert c["LG_CLOCK_REALTIME"] != c["LG_CLOCK_VIRTUAL"]


def test_kill_codes(header):
    kills = {n: v for n, v in header["const"].items() if n.startswith("LG_KILL_")}
    assert kills["LG_KILL_NONE"] == 0
    assert len(set(kills.values())) == len(kills)


def test_python_constants_match_header(header):
    c = header["const"]
    py = {n: getattr(constants, n) for n in constants.__all__ if isinstance(getattr(constants, n), int)}
    stray = sorted(n for n in py if f"LG_{n}" not in c)
    assert not stray, f"lgcore.constants names absent from lgcore.h: {stray}"
    wrong = {n: (v, c[f"LG_{n}"]) for n, v in py.items() if c[f"LG_{n}"] != v}
    assert not wrong, f"lgcore.constants != lgcore.h: {wrong}"
    unexposed = sorted(n for n in c if not n.startswith("LG_KILL_")
                       and n[3:] not in py and n not in C_ONLY)
    assert not unexposed, f"lgcore.h constants missing from lgcore.constants: {unexposed}"
    # The top-level package re-exports them.
    for n, v in py.items():
        assert getattr(lgcore, n) == v


def test_python_register_order():
    assert list(constants.REGS) == [name for name, _off in LGUEST_REGS]


def test_python_fixes_and_profiles_match_header(header):
    c = header["const"]
    assert lgcore.FIXES == {
        "more": c["LG_FIX_MORE"], "eflags": c["LG_FIX_EFLAGS"],
        "address_check": c["LG_FIX_ADDRESS_CHECK"],
        "syscall_reflect": c["LG_FIX_SYSCALL_REFLECT"],
    }
    assert lgcore.PROFILES == {"seed": c["LG_PROFILE_SEED"], "hardened": c["LG_PROFILE_HARDENED"]}


def test_abi_pxd_declares_every_header_constant(header):
    pxd = (Path(lgcore.get_pxd_path()) / "lgcore" / "abi.pxd").read_text()
    missing = sorted(n for n in header["const"] if not re.search(rf"\b{n}\b", pxd))
    assert not missing, f"lgcore/abi.pxd does not declare {missing}"


def test_abi_pxd_declares_every_header_struct():
    """Every typedef'd struct of lgcore.h can be cimported from lgcore.abi."""
    text = HEADER.read_text()
    structs = re.findall(r"^typedef struct \w+ \{.*?^\} (\w+);", text, re.M | re.S)
    assert "lg_lguest_data_t" in structs and "lg_regs_t" in structs
    pxd = (Path(lgcore.get_pxd_path()) / "lgcore" / "abi.pxd").read_text()
    missing = sorted(s for s in structs if not re.search(rf"ctypedef struct {s}\b", pxd))
    assert not missing, f"lgcore/abi.pxd does not declare {missing}"


# ---- the compiled engine uses the same layout ------------------------------

@pytest.fixture
def cpu():
    ram = bytearray(0x10000)
    guest = lgcore.Guest(ram, clock=lgcore.VirtualClock(0))
    guest.lguest_data = 0x2000
    return guest.add_vcpu()


def test_register_view_offsets(cpu):
    regs = cpu.regs
    assert regs.nbytes == LGUEST_REGS_SIZE
    for i, (name, off) in enumerate(LGUEST_REGS):
        value = 0x01010101 * (i + 1)
        setattr(cpu, name, value)
        assert bytes(regs[off:off + 4]) == struct.pack("<I", value), name
    # and the other way round
    regs[52:56] = struct.pack("<I", 0xC0DE1234)
    assert cpu.eip == 0xC0DE1234


def test_idt_view_offsets(cpu):
    idt = cpu.idt
    assert idt.nbytes == FACTS_CONSTANTS["LG_IDT_ENTRIES"] * GATE_SIZE
    cpu.set_idt_entry(0x21, 0x11223344, 0x55667788)
    assert bytes(idt[0x21 * 8:0x22 * 8]) == struct.pack("<II", 0x11223344, 0x55667788)


def _ld(cpu, off, fmt="<I"):
    return struct.unpack_from(fmt, cpu.guest.ram, cpu.guest.lguest_data + off)[0]


def _set_ld(cpu, off, value, fmt="<I"):
    struct.pack_into(fmt, cpu.guest.ram, cpu.guest.lguest_data + off, value)


def test_engine_reads_syscall_vec_at_1392(cpu):
    _set_ld(cpu, 1392, 0x80)
    assert cpu.guest.check_syscall_vector()
    _set_ld(cpu, 1392, 0x41)
    assert not cpu.guest.check_syscall_vector()
    _set_ld(cpu, 1388, 0x80)          # kernel_address: not the field
    assert not cpu.guest.check_syscall_vector()


def test_engine_reads_blocked_interrupts_at_4(cpu):
    cpu.irqs_pending = 0b110
    _set_ld(cpu, 4, 0b010)
    assert cpu.interrupt_pending()[0] == 2
    _set_ld(cpu, 4, 0b110)
    assert cpu.interrupt_pending()[0] == 32


def test_engine_writes_time_at_12_and_irq_pending_at_20(cpu):
    cpu.guest.clock.set_ns(7 * 10**9 + 123)
    cpu.write_timestamp()
    assert (_ld(cpu, 12, "<i"), _ld(cpu, 16, "<i")) == (7, 123)
    # virtual interrupts off (irq_enabled at 0 is 0): the IRQ waits and
    # irq_pending says so with the IF bit.
    cpu.set_idt_entry(32, 0x00610000, 0xC0008E00)
    cpu.irqs_pending = 1
    _set_ld(cpu, 0, 0)
    cpu.try_deliver_interrupt(0, True)
    assert _ld(cpu, 20) == 0x200
    assert cpu.irqs_pending == 1


def test_engine_clears_irq_enabled_at_0(cpu):
    cpu.set_idt_entry(32, 0x00611000, 0xC0008E00)        # interrupt gate
    cpu.ss, cpu.esp = FACTS_CONSTANTS["LG_GUEST_DS"], 0x8000
    _set_ld(cpu, 0, 0x200)
    cpu.irqs_pending = 1
    cpu.try_deliver_interrupt(0, True)
    assert cpu.irqs_pending == 0
    assert _ld(cpu, 0) == 0
    assert cpu.eip == 0xC0001000
