# SPDX-License-Identifier: GPL-2.0-only
"""The bridge into QEMU's private CPU state inside Unicorn 2.1.4.

Unicorn never delivers an interrupt or exception through the IDT: every
vector ends in ``UC_HOOK_INTR`` and nothing is pushed.  The code that *would*
deliver it -- QEMU's ``do_interrupt_all`` / ``do_interrupt_protected`` -- is
still in ``libunicorn.so.2`` and two entry points into it are exported:

* ``x86_cpu_do_interrupt_x86_64(CPUState *)``: delivers the exception QEMU
  has just raised, from ``cs->exception_index``, ``env->exception_is_int``,
  ``env->error_code`` and ``env->exception_next_eip``;
* ``do_interrupt_x86_hardirq_x86_64(CPUX86State *, int intno, int is_hw)``:
  delivers an external interrupt (no error code, no gate-DPL check);

plus ``x86_cpu_pending_interrupt_x86_64(CPUState *, int request)``, QEMU's
own rule for whether a maskable interrupt may be taken now (IF, interrupt
shadow, GIF).

Calling them needs pointers and field offsets that are private ABI of one
Unicorn build.  They are pinned here to unicorn **2.1.4** and *verified*
before anything is called:

1. the installed version is 2.1.4;
2. the machine code of the three functions is the code this module was
   written against (bytes compared, call displacements masked): that code
   embeds every field offset used below, so if the struct layout moved,
   the code moved with it and the check fails;
3. ``uc_struct.cpu`` points at an X86CPU whose ``env.regs[]`` holds values
   just written through ``uc_reg_write`` -- read through /proc/self/mem
   first, so a wrong pointer cannot crash the process;
4. the machine (``machine.py``) then runs probes -- ``int $0x41``, a #GP
   with two chosen error codes, a known-answer delivery, CPL tracking --
   and checks each field against what the probe must have produced
   (``verify_probe_*``).

Any mismatch raises ``BridgeError``; the test layer turns it into a skip,
or into a failure when LGCORE_REQUIRE_UNICORN=1 (CI).

QEMU's delivery longjmps back into ``cpu_exec`` when it faults (a bad gate,
an unmapped stack page, ...).  Called from a Python hook, that longjmp would
unwind through the interpreter.  The machine therefore validates every
delivery first (gate, code segment, TSS stack, every page the frame
touches) and only calls QEMU when it cannot fault.
"""
from __future__ import annotations

import ctypes
import os
import struct

PINNED_VERSION = "2.1.4"

# ---- offsets in unicorn 2.1.4 (x86_64 target, which runs UC_MODE_32) ----
UC_CPU_PTR = 0x1B8            # struct uc_struct: CPUState *cpu
CPU_ENV = 0x8A50              # X86CPU: CPUX86State env (CPUState is first)
CPU_EXCEPTION_INDEX = 0x81A0  # CPUState: int exception_index
ENV_REGS = 0x00               # CPUX86State: target_ulong regs[16]
ENV_EIP = 0x80
ENV_EFLAGS = 0x88             # without the lazily computed arithmetic flags
ENV_HFLAGS = 0xB0             # low 2 bits: CPL (HF_CPL_MASK)
ENV_HFLAGS2 = 0xB4
ENV_SEGS = 0xB8               # SegmentCache segs[6]: {u32 selector; u64 base; u32 limit; u32 flags}
SEG_SIZE = 24
ENV_ERROR_CODE = 0x1508       # int error_code
ENV_IS_INT = 0x150C           # int exception_is_int
ENV_NEXT_EIP = 0x1510         # target_ulong exception_next_eip
ENV_OLD_EXCEPTION = 0x1578    # int old_exception (double-fault tracking)

R_ES, R_CS, R_SS, R_DS, R_FS, R_GS = range(6)
CPU_INTERRUPT_HARD = 0x2

# The code the offsets above were read from (objdump of libunicorn.so.2
# 2.1.4).  ".." marks a rel32 displacement, which depends on where the
# linker put the callee, not on any struct layout.
_SIGNATURES = {
    # push %rbx; mov 0x81a0(%rdi),%esi (exception_index); mov %rdi,%rbx;
    # mov 0x9f58(%rdi),%ecx (env+0x1508 error_code); cmp $0xff,%esi; ...
    # mov 0x9f5c(%rdi),%edx (is_int); mov 0x9f60(%rdi),%r8 (next_eip);
    # xor %r9d,%r9d; call do_interrupt_all; movl $-1,0x9fc8(%rbx) (old_exception)
    "x86_cpu_do_interrupt_x86_64":
        "538bb7a08100004889fb8b8f589f000081feff0000007e184863d181ee00010000"
        "488dbf508a00005be9........66908b975c9f00004c8b87609f00004531c9e8"
        "........c783c89f0000ffffffff5bc3",
    # mov %edx,%r9d; sub $0x8a50,%rdi (env -> X86CPU); zero is_int,
    # error_code, next_eip; jmp do_interrupt_all
    "do_interrupt_x86_hardirq_x86_64":
        "4189d14881ef508a00004531c031c931d2e9........",
    # reads hflags2 at cpu+0x8b04, hflags at +0x8b00, eflags.IF at +0x8ad9
    "x86_cpu_pending_interrupt_x86_64":
        "b81000000040f6c610757789f025000800000f85a00000008b97048b0000f6c2"
        "01745f40f6c640740eb840000000f687028b000008744bf7c600020000740ab8"
        "00020000f6c204743989f02500100000753640f6c602743889d183e10a83f90a"
        "745e83e2087529f687d98a0000027412f687008b000008ba020000000f44c2c3",
}


class BridgeError(RuntimeError):
    """The installed Unicorn is not the one the bridge was verified on, or
    one of the bridge's assumptions about its private state does not hold."""


def _match(code: bytes, pattern: str) -> bool:
    if len(code) * 2 != len(pattern):
        return False
    hexed = code.hex()
    return all(p == "." or p == c for p, c in zip(pattern, hexed))


class QemuBridge:
    """QEMU's CPU state and interrupt delivery for one ``Uc`` instance."""

    def __init__(self, uc, x86_const):
        import unicorn
        from unicorn.unicorn_py3 import unicorn as ucmod

        version = getattr(unicorn, "__version__", "?")
        if version != PINNED_VERSION:
            raise BridgeError(
                f"unicorn {version} is installed; the QEMU bridge is pinned to "
                f"{PINNED_VERSION} (its private struct offsets are verified for that "
                "build only)")
        self.uc = uc
        self.X = x86_const
        self.lib = lib = ctypes.CDLL(ucmod.uclib._name)
        self._check_code()

        self.do_interrupt_fn = lib.x86_cpu_do_interrupt_x86_64
        self.do_interrupt_fn.argtypes = (ctypes.c_void_p,)
        self.do_interrupt_fn.restype = None
        self.hardirq_fn = lib.do_interrupt_x86_hardirq_x86_64
        self.hardirq_fn.argtypes = (ctypes.c_void_p, ctypes.c_int, ctypes.c_int)
        self.hardirq_fn.restype = None
        self.pending_fn = lib.x86_cpu_pending_interrupt_x86_64
        self.pending_fn.argtypes = (ctypes.c_void_p, ctypes.c_int)
        self.pending_fn.restype = ctypes.c_int

        self.handle = uc._uch.value
        self.cpu = self._find_cpu()
        self.env = self.cpu + CPU_ENV
        env = self.env
        self.exception_index = ctypes.c_int32.from_address(self.cpu + CPU_EXCEPTION_INDEX)
        self.error_code = ctypes.c_int32.from_address(env + ENV_ERROR_CODE)
        self.is_int = ctypes.c_int32.from_address(env + ENV_IS_INT)
        self.next_eip = ctypes.c_uint64.from_address(env + ENV_NEXT_EIP)
        self.eip = ctypes.c_uint64.from_address(env + ENV_EIP)
        self.hflags = ctypes.c_uint32.from_address(env + ENV_HFLAGS)
        self.regs = (ctypes.c_uint64 * 8).from_address(env + ENV_REGS)
        self.probes_passed = False

    # ------------------------------------------------------------------
    # static checks
    # ------------------------------------------------------------------
    def _check_code(self) -> None:
        for name, pattern in _SIGNATURES.items():
            try:
                fn = getattr(self.lib, name)
            except AttributeError:
                raise BridgeError(f"libunicorn does not export {name}") from None
            addr = ctypes.cast(fn, ctypes.c_void_p).value
            code = ctypes.string_at(addr, len(pattern) // 2)
            if not _match(code, pattern):
                raise BridgeError(
                    f"the machine code of {name} is not the unicorn {PINNED_VERSION} "
                    "code whose struct offsets this bridge uses")

    def _find_cpu(self) -> int:
        """uc_struct.cpu, checked against register values written just now
        (reads go through /proc/self/mem: a wrong pointer reads as an
        error, never a crash)."""
        X = self.X
        marks = (0x13572468, 0x24681357, 0x31415926, 0x27182818,
                 0x16180339, 0x14142135, 0x17320508, 0x22360679)
        order = ("EAX", "ECX", "EDX", "EBX", "ESP", "EBP", "ESI", "EDI")   # QEMU's regs[]
        saved = [self.uc.reg_read(getattr(X, "UC_X86_REG_" + n)) for n in order]
        saved_eip = self.uc.reg_read(X.UC_X86_REG_EIP)
        for name, val in zip(order, marks):
            self.uc.reg_write(getattr(X, "UC_X86_REG_" + name), val)
        self.uc.reg_write(X.UC_X86_REG_EIP, 0x11223344)
        try:
            fd = os.open("/proc/self/mem", os.O_RDONLY)
        except OSError as exc:
            raise BridgeError(f"cannot read /proc/self/mem to check QEMU's CPU pointer: {exc}") from exc
        try:
            raw = os.pread(fd, 8, self.handle + UC_CPU_PTR)
            cpu = struct.unpack("<Q", raw)[0]
            if cpu < 0x10000 or cpu & 7:
                raise BridgeError(f"uc_struct+{UC_CPU_PTR:#x} does not hold a CPU pointer ({cpu:#x})")
            try:
                regs = os.pread(fd, 8 * 8, cpu + CPU_ENV + ENV_REGS)
                eip = os.pread(fd, 8, cpu + CPU_ENV + ENV_EIP)
            except OSError as exc:
                raise BridgeError(f"uc_struct+{UC_CPU_PTR:#x} points at unreadable memory") from exc
        finally:
            os.close(fd)
        got = struct.unpack("<8Q", regs)
        if got != marks:
            raise BridgeError("QEMU's env.regs[] is not where the bridge expects it "
                              f"(uc->cpu {cpu:#x} + {CPU_ENV:#x})")
        if struct.unpack("<Q", eip)[0] != 0x11223344:
            raise BridgeError("QEMU's env.eip is not where the bridge expects it")
        for name, val in zip(order, saved):
            self.uc.reg_write(getattr(X, "UC_X86_REG_" + name), val)
        self.uc.reg_write(X.UC_X86_REG_EIP, saved_eip)
        return cpu

    # ------------------------------------------------------------------
    # reading state
    # ------------------------------------------------------------------
    @property
    def cpl(self) -> int:
        return self.hflags.value & 3

    def seg_selector(self, seg: int) -> int:
        return ctypes.c_uint32.from_address(self.env + ENV_SEGS + SEG_SIZE * seg).value

    def seg_flags(self, seg: int) -> int:
        return ctypes.c_uint32.from_address(self.env + ENV_SEGS + SEG_SIZE * seg + 20).value

    def exception(self) -> tuple[int, int, int, int]:
        """(exception_index, is_int, error_code, next_eip) -- meaningful
        inside a UC_HOOK_INTR callback only."""
        return (self.exception_index.value, self.is_int.value,
                self.error_code.value & 0xFFFFFFFF, self.next_eip.value & 0xFFFFFFFF)

    # ------------------------------------------------------------------
    # delivery (callers must have validated that it cannot fault)
    # ------------------------------------------------------------------
    def deliver_exception(self, vector: int | None = None, error_code: int | None = None,
                          is_int: int | None = None) -> None:
        """From a UC_HOOK_INTR callback: QEMU's x86_cpu_do_interrupt on the
        exception being reported, optionally with a different vector, error
        code or software-INT flag (an injected exception).  Then make
        Unicorn's post-hook ``eip = exception_next_eip`` a no-op."""
        if vector is not None:
            self.exception_index.value = vector
        if error_code is not None:
            self.error_code.value = error_code
        if is_int is not None:
            self.is_int.value = is_int
        self.do_interrupt_fn(self.cpu)
        self.next_eip.value = self.eip.value

    def deliver_hardirq(self, vector: int) -> None:
        """From a UC_HOOK_INTR callback: an external interrupt taken at the
        current instruction boundary (QEMU's do_interrupt_x86_hardirq)."""
        self.hardirq_fn(self.env, vector, 1)
        self.next_eip.value = self.eip.value

    def irq_deliverable(self) -> bool:
        """QEMU's own test: may a maskable external interrupt be taken now?"""
        return bool(self.pending_fn(self.cpu, CPU_INTERRUPT_HARD) & CPU_INTERRUPT_HARD)
