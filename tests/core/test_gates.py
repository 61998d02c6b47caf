# SPDX-License-Identifier: GPL-2.0-only
"""H:230-H:250: gate decoding, vetting the guest's gates, the host's default
gates, which traps go direct, and copying gates into the host IDT.  Every
expected value is worked out by hand from lguest-facts.md sections 2, 3.3
and 6."""
import array
import ctypes

import pytest

import lgcore
from lgcore.constants import CHANGED_GDT, CHANGED_IDT

from .helpers import int_gate, make_guest, trap_gate, words

ERR_TRAPS = {8, 10, 11, 12, 13, 14, 17}
DIRECT = set(range(0, 6)) | set(range(8, 13)) | set(range(15, 31))


# ---- decoding ----

@pytest.mark.parametrize("lo, hi, address", [
    (0x00601234, 0xC0108E00, 0xC0101234),
    (0xFFFF5678, 0x1234FFFF, 0x12345678),   # selector and flag bits ignored
    (0x00000000, 0x00000000, 0x00000000),
    (0x0000FFFF, 0xFFFF0000, 0xFFFFFFFF),
])
def test_idt_address(lo, hi, address):
    assert lgcore.idt_address(lo, hi) == address


@pytest.mark.parametrize("hi, gate_type", [
    (0x00008E00, 0xE), (0x0000EF00, 0xF), (0x00008500, 0x5), (0x00008C00, 0xC),
    (0xFFFFF0FF, 0x0), (0x00000F00, 0xF), (0xFFFF0600, 0x6),
])
def test_idt_type(hi, gate_type):
    assert lgcore.idt_type(0xFFFFFFFF, hi) == gate_type
    assert lgcore.idt_type(0, hi) == gate_type


@pytest.mark.parametrize("hi, present", [
    (0x00008000, True), (0x00007FFF, False), (0xFFFF7FFF, False), (0xFFFFFFFF, True), (0, False),
])
def test_idt_present(hi, present):
    assert lgcore.idt_present(0xFFFFFFFF, hi) is present


def test_has_err_is_the_seven_traps():
    assert {n for n in range(300) if lgcore.has_err(n)} == ERR_TRAPS
    assert not lgcore.has_err(0xFFFFFFFF)


# ---- syscall vector and direct traps (H:250) ----

@pytest.mark.parametrize("num, param, expected", [
    (0x80, 0x80, True), (0x40, 0x80, False), (0x40, 0x40, True), (0x80, 0x40, True),
    (0x41, 0x40, False), (0, 0x80, False), (0x180, 0x80, False),
])
def test_could_be_syscall(num, param, expected):
    assert lgcore.could_be_syscall(num, param) is expected
    g, _ = make_guest(syscall_vector=param)
    assert g.could_be_syscall(num) is expected


def test_direct_trap_set_linux_vector():
    # {0-5, 8-12, 15-30} and the syscall vector; never 6, 7, 13, 14, 0x1F
    assert {n for n in range(512) if lgcore.direct_trap(n)} == DIRECT | {0x80}


def test_direct_trap_set_plan9_vector():
    assert {n for n in range(512) if lgcore.direct_trap(n, 0x40)} == DIRECT | {0x40, 0x80}
    g, _ = make_guest(syscall_vector=0x40)
    assert {n for n in range(512) if g.direct_trap(n)} == DIRECT | {0x40, 0x80}


@pytest.mark.parametrize("param", [6, 7, 13, 14, 0x1F])
def test_a_syscall_vector_never_unlocks_host_traps(param):
    # could_be_syscall() is true for them, the explicit exclusions still win
    assert lgcore.could_be_syscall(param, param)
    assert not lgcore.direct_trap(param, param)


def test_direct_trap_hostile_numbers():
    assert not lgcore.direct_trap(0xFFFFFFFF)
    assert not lgcore.direct_trap(256)
    with pytest.raises(ValueError, match=r"num=-1 does not fit 32 bits"):
        lgcore.direct_trap(-1)
    with pytest.raises(ValueError, match=r"syscall_vector=256 is out of range \(0\.\.255\)"):
        lgcore.direct_trap(3, 256)


# ---- default gates ----

@pytest.mark.parametrize("trap, handler, base, a, b", [
    (0, 0xFFC01000, None, 0x00501000, 0xFFC08E00),
    (0x1F, 0xFFC01234, None, 0x00501234, 0xFFC0AE00),          # DPL 1 for the hypercall
    (0x1F, 0xFFC01234, (0, 0x6000), 0x00501234, 0xFFC0AE00),    # base ignored for 0x1F
    (3, 0xFFC05678, (0x00611111, 0xC010EE00), 0x00505678, 0xFFC0EE00),  # guest's DPL 3
    (3, 0xFFC05678, (0, 0), 0x00505678, 0xFFC08E00),            # zeroed guest gate: DPL 0
    (3, 0xFFC05678, (0xFFFFFFFF, 0xFFFFFFFF), 0x00505678, 0xFFC0EE00),  # only the DPL bits
    (4, 0xFFC05678, (0, 0x2000), 0x00505678, 0xFFC0AE00),
    (200, 0x00000000, None, 0x00500000, 0x00008E00),
    (255, 0xFFFFFFFF, None, 0x0050FFFF, 0xFFFF8E00),
])
def test_default_idt_entry(trap, handler, base, a, b):
    assert lgcore.default_idt_entry(trap, handler, base) == (a, b)


def test_setup_default_idt_entries_bytes():
    stubs = array.array("I", (0xFFC01000 + 16 * i for i in range(256)))
    idt = bytearray(2048)
    lgcore.setup_default_idt_entries(idt, stubs)
    # vector 0: a = 0x00501000, b = 0xFFC08E00
    assert idt[0:8] == bytes.fromhex("00105000 008ec0ff")
    # vector 0x1F: stub 0xFFC011F0, DPL 1
    assert idt[0x1F * 8:0x20 * 8] == bytes.fromhex("f0115000 00aec0ff")
    # vector 255: stub 0xFFC01FF0
    assert idt[255 * 8:] == bytes.fromhex("f01f5000 008ec0ff")
    for i in range(256):
        h = 0xFFC01000 + 16 * i
        flags = 0xAE00 if i == 0x1F else 0x8E00
        assert idt[8 * i:8 * i + 8] == words(0x00500000 | (h & 0xFFFF), (h & 0xFFFF0000) | flags)


# ---- vetting the guest's gates (H:235) ----

@pytest.mark.parametrize("lo, hi, stored", [
    (0x00600530, 0xC1008E00, (0x00610530, 0xC1008E00)),   # facts 3.3: IRQ gate 0x20
    (0x00600400, 0xC100EF00, (0x00610400, 0xC100EF00)),   # DPL-3 trap gate
    (0xABCD0400, 0xC100FFFF, (0x00610400, 0xC100EF00)),   # S bit, low byte, selector rewritten
    (0x12345678, 0x12347F00, (0, 0)),                      # not present: zeroed
    (0x12345678, 0x00000500, (0, 0)),                      # not present beats a bad type
])
def test_set_trap_stores_vetted_gate(lo, hi, stored):
    g, cpu = make_guest()
    cpu.set_idt_entry(0x20, 0xAAAAAAAA, 0xBBBBBBBB)
    cpu.set_trap(0x20, lo, hi)
    assert cpu.get_idt_entry(0x20) == stored
    assert g.dead is None


@pytest.mark.parametrize("hi, gate_type", [(0xC1008500, 5), (0xC1008C00, 12), (0x00008000, 0),
                                           (0x00008600, 6), (0x00008700, 7)])
def test_set_trap_bad_type_kills_but_stores(hi, gate_type):
    g, cpu = make_guest()
    lgcore.set_trap(cpu, 9, 0x00601111, hi)
    assert g.dead == f"bad IDT type {gate_type}"
    assert cpu.get_idt_entry(9) == (0x00611111, hi & 0xFFFFEF00)


def test_set_trap_rejects_vectors_outside_the_table():
    g, cpu = make_guest()
    with pytest.raises(ValueError, match=r"vector=256 is out of range \(0\.\.255\)"):
        cpu.set_trap(256, *int_gate(0))
    with pytest.raises(ValueError, match=r"vector=-1"):
        cpu.set_trap(-1, *int_gate(0))


# ---- LOAD_IDT_ENTRY (H:230) ----

@pytest.mark.parametrize("num", [2, 8, 15, 0x1F])
def test_load_guest_idt_entry_ignores_host_vectors(num):
    g, cpu = make_guest()
    cpu.set_idt_entry(num, 0x11111111, 0x22222222)
    cpu.load_guest_idt_entry(num, *int_gate(0xC0100000))
    assert cpu.get_idt_entry(num) == (0x11111111, 0x22222222)
    assert cpu.changed == 0
    assert g.dead is None


@pytest.mark.parametrize("num", [0, 1, 3, 6, 7, 13, 14, 16, 30, 32, 0x80, 255])
def test_load_guest_idt_entry_stores_and_marks_changed(num):
    g, cpu = make_guest()
    cpu.changed = CHANGED_GDT
    lgcore.load_guest_idt_entry(cpu, num, 0x00600530, 0xC1008E00)
    assert cpu.get_idt_entry(num) == (0x00610530, 0xC1008E00)
    assert cpu.changed == CHANGED_GDT | CHANGED_IDT
    assert g.dead is None


@pytest.mark.parametrize("num", [256, 257, 0x7FFFFFFF, 0xFFFFFFFF])
def test_load_guest_idt_entry_past_the_table_kills(num):
    g, cpu = make_guest()
    before = bytes(cpu.idt)
    cpu.load_guest_idt_entry(num, *int_gate(0xC0100000))
    assert g.dead == f"Setting idt entry {num}"
    assert cpu.changed == CHANGED_IDT          # marked before the range check
    assert bytes(cpu.idt) == before


def test_load_guest_idt_entry_bad_type_message_and_first_reason_sticks():
    g, cpu = make_guest()
    cpu.load_guest_idt_entry(40, 0x00600000, 0x00008500)
    cpu.load_guest_idt_entry(300, 0, 0)
    assert g.dead == "bad IDT type 5"


def test_load_guest_idt_entry_refuses_negative_numbers():
    g, cpu = make_guest()
    with pytest.raises(ValueError, match="num=-1 does not fit 32 bits"):
        cpu.load_guest_idt_entry(-1, 0, 0)
    assert g.dead is None and cpu.changed == 0


# ---- copy_traps (H:240) ----

STUBS = [0xFFC01000 + 16 * i for i in range(256)]


def _host_idt_after_setup():
    idt = bytearray(2048)
    lgcore.setup_default_idt_entries(idt, STUBS)
    return idt


def _gate(idt, n):
    return (int.from_bytes(idt[8 * n:8 * n + 4], "little"), int.from_bytes(idt[8 * n + 4:8 * n + 8], "little"))


def test_copy_traps():
    g, cpu = make_guest(syscall_vector=0x40)
    cpu.load_guest_idt_entry(0x80, *trap_gate(0xC0100400, dpl=3))   # trap gate: copied whole
    cpu.load_guest_idt_entry(0x40, *trap_gate(0xC0100440, dpl=3))   # Plan 9 vector too
    cpu.load_guest_idt_entry(3, *int_gate(0xC0100300, dpl=3))       # int gate: default, DPL 3
    cpu.load_guest_idt_entry(1, *trap_gate(0xC0100100))             # trap gate: direct
    cpu.load_guest_idt_entry(14, *trap_gate(0xC0100E00))            # host sees #PF first
    cpu.load_guest_idt_entry(0x20, *trap_gate(0xC0102000))          # external: host's
    cpu.set_idt_entry(5, 0x00610500, 0xC0100F00)                    # type F without P
    idt = bytearray(b"\xEE") * 2048
    cpu.copy_traps(idt, STUBS)
    assert _gate(idt, 0x80) == (0x00610400, 0xC010EF00)
    assert _gate(idt, 0x40) == (0x00610440, 0xC010EF00)
    assert _gate(idt, 1) == (0x00610100, 0xC0108F00)
    assert _gate(idt, 5) == (0x00610500, 0xC0100F00)                # copied as is
    h3 = STUBS[3]
    assert _gate(idt, 3) == (0x00500000 | (h3 & 0xFFFF), (h3 & 0xFFFF0000) | 0xEE00)
    for n in (0, 2, 4, 8, 15, 16, 30):   # zero guest entries: DPL-0 defaults
        h = STUBS[n]
        assert _gate(idt, n) == (0x00500000 | (h & 0xFFFF), (h & 0xFFFF0000) | 0x8E00), n
    # everything not direct keeps what was there
    for n in [6, 7, 13, 14, 0x1F] + list(range(0x20, 0x40)) + list(range(0x41, 0x80)) + list(range(0x81, 256)):
        assert idt[8 * n:8 * n + 8] == b"\xEE" * 8, n
    assert g.dead is None


def test_copy_traps_module_function_and_default_vector():
    g, cpu = make_guest()
    cpu.load_guest_idt_entry(0x80, *trap_gate(0xC0100400, dpl=3))
    cpu.load_guest_idt_entry(0x40, *trap_gate(0xC0100440, dpl=3))
    idt = _host_idt_after_setup()
    lgcore.copy_traps(cpu, idt, STUBS)
    assert _gate(idt, 0x80) == (0x00610400, 0xC010EF00)
    assert _gate(idt, 0x40) == lgcore.default_idt_entry(0x40, STUBS[0x40])  # not this guest's vector


def _stub_buffers():
    np = pytest.importorskip("numpy")
    return {
        "list": STUBS,
        "tuple": tuple(STUBS),
        "array-I": array.array("I", STUBS),
        "array-L": array.array("L", STUBS),
        "array-Q": array.array("Q", STUBS),
        "bytes": array.array("I", STUBS).tobytes(),
        "bytearray": bytearray(array.array("I", STUBS).tobytes()),
        "numpy-uint32": np.array(STUBS, dtype=np.uint32),
        "numpy-uint64": np.array(STUBS, dtype=np.uint64),
        "numpy-big-endian": np.array(STUBS, dtype=">u4"),
        "numpy-2d": np.array(STUBS, dtype=np.uint32).reshape(16, 16),
        "ctypes-uint32": (ctypes.c_uint32 * 256)(*STUBS),
        "ctypes-ulong": (ctypes.c_ulong * 256)(*STUBS),
        "readonly-memoryview": memoryview(array.array("I", STUBS).tobytes()),
    }


def _idt_buffers():
    np = pytest.importorskip("numpy")
    return {
        "bytearray": lambda: bytearray(2048),
        "array-I": lambda: array.array("I", bytes(2048)),
        "numpy-uint64": lambda: np.zeros(256, np.uint64),
        "numpy-uint32-2d": lambda: np.zeros((256, 2), np.uint32),
        "ctypes": lambda: (ctypes.c_uint8 * 2048)(),
        "slice-of-larger": lambda: memoryview(bytearray(8192))[4096:6144],
        "larger": lambda: bytearray(4096),
    }


def test_defaults_and_idt_accept_any_buffer():
    expected = bytes(_host_idt_after_setup())
    g, cpu = make_guest()
    cpu.load_guest_idt_entry(0x80, *trap_gate(0xC0100400, dpl=3))
    expected_copy = bytearray(expected)
    cpu.copy_traps(expected_copy, STUBS)
    for dname, defaults in _stub_buffers().items():
        for iname, make in _idt_buffers().items():
            idt = make()
            lgcore.setup_default_idt_entries(idt, defaults)
            assert bytes(memoryview(idt).cast("B"))[:2048] == expected, (dname, iname)
            cpu.copy_traps(idt, defaults)
            assert bytes(memoryview(idt).cast("B"))[:2048] == bytes(expected_copy), (dname, iname)


@pytest.mark.parametrize("bad, exc, message", [
    (bytes(1023), ValueError, r"defaults has 1023 bytes; 1024 are needed"),
    (array.array("I", range(255)), ValueError, r"defaults has 255 entries; 256 are needed"),
    (list(range(255)), ValueError, r"defaults has 255 entries; 256 are needed"),
    (array.array("Q", range(255)), ValueError, r"defaults has 255 entries; 256 are needed"),
    ([1 << 32] * 256, ValueError, r"defaults\[0\]=4294967296 does not fit 32 bits"),
    (array.array("q", [-1] * 256), ValueError, r"defaults\[0\]=-1 does not fit 32 bits"),
    (array.array("d", [0.0] * 256), TypeError, r"unsigned 32-bit stub addresses.*'d'"),
    (["x"] * 256, TypeError, r"defaults\[0\] must be an int"),
    (7, TypeError, r"defaults must be a buffer or a sequence of 256 ints, not int"),
])
def test_bad_defaults_are_refused_clearly(bad, exc, message):
    g, cpu = make_guest()
    idt = bytearray(2048)
    with pytest.raises(exc, match=message):
        lgcore.setup_default_idt_entries(idt, bad)
    with pytest.raises(exc, match=message):
        cpu.copy_traps(idt, bad)
    assert idt == bytearray(2048)


def test_bad_host_idt_is_refused_clearly():
    np = pytest.importorskip("numpy")
    g, cpu = make_guest()
    cases = [
        (bytes(2048), TypeError, r"idt must be writable; this bytes is read-only"),
        (bytearray(2047), ValueError, r"idt has 2047 bytes; 2048 are needed"),
        (np.zeros((64, 64), np.uint8)[:, :32], TypeError, r"idt must be one contiguous buffer"),
        (None, TypeError, r"idt must be a buffer"),
    ]
    for bad, exc, message in cases:
        with pytest.raises(exc, match=message):
            lgcore.setup_default_idt_entries(bad, STUBS)
        with pytest.raises(exc, match=message):
            cpu.copy_traps(bad, STUBS)
