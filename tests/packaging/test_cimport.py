# SPDX-License-Identifier: GPL-2.0-only
"""lgcore's public Cython API (the .pxd files) from outside: a small
extension in cimport_consumer/ is compiled in a temporary folder against
``lgcore.get_pxd_path()`` and ``lgcore.get_include()`` only, imported, and
run.  It calls the engine nogil on the C state behind a VCpu; the frames it
builds are checked byte for byte in guest RAM."""
import importlib.util
import re
import shutil
import struct
import sys
from pathlib import Path

import pytest

import lgcore
from lgcore import idt, deliver

HERE = Path(__file__).resolve().parent
PXD_DIR = Path(lgcore.get_pxd_path()) / "lgcore"


@pytest.fixture(scope="module")
def consumer(tmp_path_factory):
    from Cython.Build import cythonize
    from setuptools import Distribution, Extension

    work = tmp_path_factory.mktemp("consumer")
    shutil.copy(HERE / "cimport_consumer" / "consumer.pyx", work / "lgcore_consumer.pyx")
    ext = Extension("lgcore_consumer", [str(work / "lgcore_consumer.pyx")],
                    include_dirs=[lgcore.get_include()])
    modules = cythonize([ext], include_path=[lgcore.get_pxd_path()], quiet=True,
                        compiler_directives={"language_level": 3})
    dist = Distribution({"ext_modules": modules})
    cmd = dist.get_command_obj("build_ext")
    cmd.build_lib = str(work / "lib")
    cmd.build_temp = str(work / "tmp")
    cmd.ensure_finalized()
    cmd.run()
    built = next((work / "lib").glob("lgcore_consumer*.so"))
    spec = importlib.util.spec_from_file_location("lgcore_consumer", built)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    yield mod
    sys.modules.pop("lgcore_consumer", None)


@pytest.fixture
def cpu():
    ram = bytearray(0x20000)
    guest = lgcore.Guest(ram)
    guest.lguest_data = 0x1000
    struct.pack_into("<I", ram, 0x1000, 0x200)          # irq_enabled: on
    c = guest.add_vcpu()
    yield c
    guest.close()


def _u32(ram, addr):
    return struct.unpack_from("<I", ram, addr)[0]


def test_layout_as_compiled(consumer):
    # facts §3.1-3.3: lguest_regs 72 bytes, a gate 8, lguest_data 1396.
    assert consumer.layout() == (72, 8, 1396, 72)


def test_irq_delivered_nogil_from_kernel(consumer, cpu):
    ram = cpu.guest.ram
    cpu.ss, cpu.esp, cpu.cs, cpu.eip, cpu.eflags = 0x69, 0xC000, 0x61, 0xC0101234, 0x202
    got, pending, changed, handler = consumer.gate_and_irq(cpu, 3, 0x00600530, 0xC1008E00)
    assert (got, pending, changed, handler) == (3, 0, 1, 0xC1000530)
    # ring-1 frame below esp: eflags, cs, eip; no error code for an IRQ
    assert [_u32(ram, 0xC000 - 4 * i) for i in (1, 2, 3)] == [0x202, 0x61, 0xC0101234]
    assert (cpu.esp, cpu.eip, cpu.cs, cpu.ss) == (0xC000 - 12, 0xC1000530, 0x61, 0x69)
    assert _u32(ram, 0x1000) == 0                        # interrupt gate: IF off
    assert cpu.get_idt_entry(35) == (0x00610530, 0xC1008E00)


def test_irq_from_user_goes_on_the_ring1_stack(consumer, cpu):
    ram = cpu.guest.ram
    cpu.esp1, cpu.ss1 = 0x9000, 0x69
    cpu.ss, cpu.esp, cpu.cs, cpu.eip, cpu.eflags = 0x7B, 0xBFFFF000, 0x73, 0x08048000, 0x202
    cpu.load_guest_idt_entry(32, 0x00600100, 0xC0008F00)   # trap gate: IF stays
    first, more = consumer.pending_then_try(cpu, 0)
    assert (first, more) == (0, True)
    assert [_u32(ram, 0x9000 - 4 * i) for i in range(1, 6)] == \
        [0x7B, 0xBFFFF000, 0x202, 0x73, 0x08048000]
    assert (cpu.esp, cpu.ss, cpu.eip) == (0x9000 - 20, 0x69, 0xC0000100)
    assert _u32(ram, 0x1000) == 0x200


def test_trap_with_error_code_nogil(consumer, cpu):
    ram = cpu.guest.ram
    cpu.load_guest_idt_entry(14, 0x00600200, 0xC0008E00)
    cpu.ss, cpu.esp, cpu.errcode, cpu.eip = 0x69, 0x8000, 6, 0xC0100000
    assert consumer.trap(cpu, 14) == (True, False)        # #PF never goes direct
    assert _u32(ram, 0x8000 - 16) == 6
    assert consumer.trap(cpu, 256) == (False, False)      # the no-trap sentinel
    assert consumer.read_u32(cpu, 0x8000 - 12) == 0xC0100000


def _pxd_functions(name):
    """Non-inline cdef functions a .pxd declares: what its module must export."""
    text = (PXD_DIR / f"{name}.pxd").read_text()
    return set(re.findall(r"^cdef\s+(?!inline)[\w ]+?\b(lg_\w+)\(", text, re.M))


@pytest.mark.parametrize("mod", [idt, deliver], ids=["idt", "deliver"])
def test_capi_exports_every_pxd_function(mod):
    declared = _pxd_functions(mod.__name__.split(".")[1])
    assert declared, "the regex found no declarations"
    exported = set(mod.__pyx_capi__)
    assert declared <= exported, f"declared but not exported: {declared - exported}"
    assert exported <= declared, f"exported but not declared in the .pxd: {exported - declared}"


def test_pxd_path_and_include():
    assert (PXD_DIR / "abi.pxd").is_file()
    assert (Path(lgcore.get_include()) / "lgcore" / "lgcore.h").is_file()
