# SPDX-License-Identifier: GPL-2.0-only
"""A vCPU on Unicorn (QEMU's TCG x86 CPU as a library) that behaves like
lguest's Host + Switcher for lgcore.

What this module does, and why (see ../shared/docs/backends.md):

* Guest RAM is an mmap we own, handed to Unicorn with ``mem_map_ptr``: the
  memoryview lgcore writes frames into *is* the guest's memory.
* The Switcher is four host pages mapped read-only at 0xFFC00000 in the
  guest's page tables, as in lguest: the GDT with lguest's selectors, a TSS
  carrying esp1/ss1, the host IDT, and a ring-0 stub that pops a
  ``struct lguest_regs`` and ``iret``s into the guest.  Unicorn's
  ``reg_write`` cannot change privilege, so every entry restores a parked
  ring-0 context and runs that stub, exactly like lguest's switch.
* Unicorn never delivers an interrupt through the IDT: every vector ends in
  ``UC_HOOK_INTR`` (``#UD`` in ``UC_HOOK_INSN_INVALID``).  Those hooks are the
  Switcher's return to the host.  The error code comes from QEMU's CPU
  state, located once at start-up by a self-checking probe.
* Where the host IDT holds a trap gate into the guest (what lgcore's
  ``copy_traps`` let through, e.g. the DPL-3 ``int $0x80``), the hook does what
  the CPU would have done with that gate -- push the frame, switch to the
  TSS ring-1 stack from ring 3 -- and goes straight back in: a *direct*
  trap the host's run loop never sees.  Everything else goes back to the
  run loop as (trapnum, errcode, cr2), the lguest way.
* A software ``int`` whose host gate has too low a DPL becomes
  #GP(vector*8+2), which a real CPU would raise and QEMU does not here.
* Register traffic goes through ctypes ``uc_reg_read_batch`` straight into
  lgcore's ``struct lguest_regs`` (no Python objects per register).
"""
from __future__ import annotations

import ctypes
import mmap
import os
import struct
import threading
import time
from array import array

import lgcore
from lgcore.constants import NO_TRAP

from . import layout as L

try:
    import unicorn
    from unicorn import Uc, UC_ARCH_X86, UC_MODE_32, UC_PROT_ALL
    from unicorn import UC_HOOK_INTR, UC_HOOK_INSN_INVALID
    from unicorn import x86_const as X
except ImportError as exc:          # pragma: no cover - reported by the CLI
    unicorn = None
    _IMPORT_ERROR = exc
else:
    _IMPORT_ERROR = None


class BackendError(RuntimeError):
    """Unicorn is missing, or did not behave as this backend requires."""


ERR_VECTORS = frozenset((8, 10, 11, 12, 13, 14, 17))   # the CPU pushes a code
_EFLAGS_TF, _EFLAGS_IF, _EFLAGS_NT = 0x100, 0x200, 0x4000
_EFLAGS_RF, _EFLAGS_VM = 0x10000, 0x20000
_PTE_P, _PTE_RW, _PTE_U = 1, 2, 4
_CR0_PE, _CR0_WP, _CR0_PG = 0x1, 0x10000, 0x80000000

# Where each register lands in struct lguest_regs (lgcore's cpu.regs).
_REG_SLOTS = (
    ("EAX", 0), ("EBX", 4), ("ECX", 8), ("EDX", 12), ("ESI", 16), ("EDI", 20),
    ("EBP", 24), ("GS", 28), ("FS", 32), ("DS", 36), ("ES", 40),
    ("EIP", 52), ("CS", 56), ("EFLAGS", 60), ("ESP", 64), ("SS", 68),
)
_U32 = struct.Struct("<I")
_GATE = struct.Struct("<II")
_TAIL = struct.Struct("<5I")       # eip, cs, eflags, esp, ss at offset 52

# The Switcher's code: the entry stub pops lguest_regs as lguest's does
# (eax..ebp, gs, fs, ds, es), skips trapnum/errcode and irets; two probes
# used to find QEMU's error code; `hlt` everywhere else.
_ENTER_STUB = bytes.fromhex(
    "58" "5b" "59" "5a" "5e" "5f" "5d"   # pop eax ebx ecx edx esi edi ebp
    "0fa9" "0fa1" "1f" "07"              # pop gs fs ds es
    "83c408"                             # add $8, %esp  (trapnum, errcode)
    "cf")                                # iret
_PROBE_GP = bytes.fromhex("8ed8f4")      # mov %eax,%ds ; hlt
_PROBE_INT = bytes.fromhex("cd41f4")     # int $0x41 ; hlt


def _seg(base: int, limit: int, access: int, flags: int = 0xC) -> int:
    """An 8-byte segment descriptor."""
    return ((limit & 0xFFFF) | ((base & 0xFFFF) << 16) | (((base >> 16) & 0xFF) << 32)
            | (access << 40) | (((limit >> 16) & 0xF) << 48) | (flags << 52)
            | (((base >> 24) & 0xFF) << 56))


# lguest's GDT.  Accessed bits are preset: the Switcher pages are read-only
# with CR0.WP, so the CPU must never need to write a descriptor.
_GDT = {
    10: _seg(0, 0xFFFFF, 0x9B),            # 0x50 LGUEST_CS, ring 0
    11: _seg(0, 0xFFFFF, 0x93),            # 0x58 LGUEST_DS
    12: _seg(0, 0xFFFFF, 0xBB),            # 0x60 kernel code, DPL 1 for the guest
    13: _seg(0, 0xFFFFF, 0xB3),            # 0x68 kernel data, DPL 1
    14: _seg(0, 0xFFFFF, 0xFB),            # 0x73 user code
    15: _seg(0, 0xFFFFF, 0xF3),            # 0x7b user data
    16: _seg(L.SWITCHER_VA + L.SW_TSS, 0x67, 0x8B, 0x0),   # 0x80 busy 32-bit TSS
}


# code selector -> the privilege level a gate through it runs at
_GDT_CPL = {i * 8: (d >> 45) & 3 for i, d in _GDT.items() if (d >> 40) & 0x18 == 0x18}


def _lib():
    if unicorn is None:
        raise BackendError(f"unicorn is not importable: {_IMPORT_ERROR}")
    from unicorn.unicorn_py3 import unicorn as ucmod
    lib = ctypes.CDLL(ucmod.uclib._name)
    lib.uc_emu_start.argtypes = (ctypes.c_void_p, ctypes.c_uint64, ctypes.c_uint64,
                                 ctypes.c_uint64, ctypes.c_size_t)
    lib.uc_emu_start.restype = ctypes.c_int
    lib.uc_emu_stop.argtypes = (ctypes.c_void_p,)
    lib.uc_emu_stop.restype = ctypes.c_int
    lib.uc_reg_read_batch.argtypes = (ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int)
    lib.uc_reg_read_batch.restype = ctypes.c_int
    lib.uc_context_restore.argtypes = (ctypes.c_void_p, ctypes.c_void_p)
    lib.uc_context_restore.restype = ctypes.c_int
    lib.uc_strerror.argtypes = (ctypes.c_int,)
    lib.uc_strerror.restype = ctypes.c_char_p
    return lib


_INTR_CB = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_uint32, ctypes.c_void_p)
_INVALID_CB = ctypes.CFUNCTYPE(ctypes.c_bool, ctypes.c_void_p, ctypes.c_void_p)


class _QemuState:
    """Reads QEMU's ``error_code`` and ``exception_is_int`` of the exception
    being reported -- what the binding does not expose.

    The X86CPU object is private ABI, so nothing is assumed: the CPU pointer
    is looked for in the uc_struct, CPUX86State is found by a register
    pattern, and the two fields by raising exceptions with chosen error codes.
    All scanning reads go through /proc/self/mem, so a wrong guess cannot
    crash the process.  Any mismatch raises BackendError."""

    CPU_PTR_OFFSETS = (0x1B8,) + tuple(range(0x100, 0x400, 8))

    def __init__(self, vm: "UnicornVM"):
        self.vm = vm
        try:
            self._mem = open("/proc/self/mem", "rb", buffering=0)
        except OSError as exc:
            raise BackendError(f"cannot read /proc/self/mem to locate QEMU's CPU state: {exc}") from exc
        try:
            self.env = self._find_env()
            self.err_off = self._find_error_code()
        finally:
            self._mem.close()
        self.error_code = ctypes.c_uint32.from_address(self.env + self.err_off)
        self.is_int = ctypes.c_int32.from_address(self.env + self.err_off + 4)

    def _read(self, addr: int, n: int) -> bytes | None:
        try:
            return os.pread(self._mem.fileno(), n, addr)
        except OSError:
            return None

    def _find_env(self) -> int:
        vm = self.vm
        handle = vm.handle
        marks = (0x13572468, 0x24681357, 0x31415926, 0x27182818,
                 0x16180339, 0x14142135, 0x17320508, 0x22360679)
        order = ("EAX", "ECX", "EDX", "EBX", "ESP", "EBP", "ESI", "EDI")   # QEMU's regs[]
        for name, val in zip(order, marks):
            vm.uc.reg_write(getattr(X, "UC_X86_REG_" + name), val)
        pattern = struct.pack("<8Q", *marks)
        for off in self.CPU_PTR_OFFSETS:
            raw = self._read(handle + off, 8)
            if raw is None:
                continue
            ptr = struct.unpack("<Q", raw)[0]
            if ptr < 0x10000 or ptr & 7:
                continue
            for chunk in range(0, 0x40000, 0x1000):
                data = self._read(ptr + chunk, 0x1000 + 64)
                if data is None:
                    break
                at = data.find(pattern)
                if at >= 0:
                    return ptr + chunk + at
        raise BackendError(
            f"unicorn {unicorn.__version__}: cannot find QEMU's CPU state (needed for "
            "trap error codes); this backend was checked on unicorn 2.1.x")

    def _probe(self, start: int, eax: int) -> tuple[int, bytes]:
        vm = self.vm
        seen: list = []

        def on_intr(uc, intno, ud):
            seen.append((intno, self._read(self.env, 0x4000)))
            uc.emu_stop()

        h = vm.uc.hook_add(UC_HOOK_INTR, on_intr)
        try:
            vm.uc.context_restore(vm.parked)
            vm.uc.reg_write(X.UC_X86_REG_EAX, eax)
            vm.uc.emu_start(L.SWITCHER_VA + start, L.SWITCHER_VA + L.SW_STOP)
        finally:
            vm.uc.hook_del(h)
        if not seen or seen[0][1] is None:
            raise BackendError("probe exception did not reach UC_HOOK_INTR")
        return seen[0]

    def _find_error_code(self) -> int:
        probes = []
        for start, eax, want_vec, want_err, want_int in (
                (L.SW_PROBE_GP, 0x1238, 13, 0x1238, 0),
                (L.SW_PROBE_GP, 0x2460, 13, 0x2460, 0),
                (L.SW_PROBE_INT, 0, 0x41, 0, 1)):
            vec, snap = self._probe(start, eax)
            if vec != want_vec:
                raise BackendError(f"probe raised vector {vec}, expected {want_vec}")
            probes.append((snap, want_err, want_int))
        hits = []
        n = min(len(p[0]) for p in probes) - 8
        for off in range(0, n, 4):
            if all(struct.unpack_from("<Ii", snap, off) == (err, isint) for snap, err, isint in probes):
                hits.append(off)
        if len(hits) != 1:
            raise BackendError(
                f"unicorn {unicorn.__version__}: QEMU's error_code not found unambiguously "
                f"({len(hits)} candidates); cannot report trap error codes")
        return hits[0]


class UnicornVM:
    """One guest machine: RAM, the Switcher, and one Unicorn vCPU."""

    def __init__(self, ram_size: int = L.RAM_SIZE):
        if unicorn is None:
            raise BackendError(f"unicorn is not importable: {_IMPORT_ERROR}")
        self.lib = _lib()
        self.ram_size = ram_size
        self.ram_mm = mmap.mmap(-1, ram_size)
        self._ram_c = (ctypes.c_ubyte * ram_size).from_buffer(self.ram_mm)
        self.sw_mm = mmap.mmap(-1, L.SWITCHER_SIZE)
        self._sw_c = (ctypes.c_ubyte * L.SWITCHER_SIZE).from_buffer(self.sw_mm)
        self.sw_addr = ctypes.addressof(self._sw_c)
        self.uc = Uc(UC_ARCH_X86, UC_MODE_32)
        self.handle = self.uc._uch.value
        self.uc.mem_map_ptr(0, ram_size, UC_PROT_ALL, ctypes.addressof(self._ram_c))
        self.uc.mem_map_ptr(L.SWITCHER_VA, L.SWITCHER_SIZE, UC_PROT_ALL, self.sw_addr)
        self.ram = memoryview(self.ram_mm)
        self.sw = memoryview(self.sw_mm)
        self.host_idt = self.sw[L.SW_IDT:L.SW_IDT + 8 * 256]
        # the 256 host stub addresses (lgcore wants them as raw bytes)
        self.defaults = array("I", (L.SWITCHER_VA + L.SW_STUBS + 8 * i for i in range(256))).tobytes()
        self._build_switcher()
        lgcore.setup_default_idt_entries(self.host_idt, self.defaults)
        self.pgdir = L.PGDIR_PA
        self._build_page_tables()
        self._park_ring0()
        self.qemu = _QemuState(self)
        self._qemu_err, self._qemu_is_int = self.qemu.error_code, self.qemu.is_int
        self._is_int = self._err = 0
        self.uc.context_restore(self.parked)
        self._install_hooks()
        self.uc.ctl_remove_cache(L.SWITCHER_VA + L.SW_STOP, L.SWITCHER_VA + L.SW_STOP + 1)

        # per-vCPU binding (attach)
        self.cpu = None
        self.task = None
        self._vcpu_tid = None
        self._tss_esp1 = self._tss_ss1 = None
        # exit state written by the hooks
        self._hooked = False
        self._vec = 0
        self._hook_exc: BaseException | None = None
        self.exit_ns = 0                 # when the guest last stopped running
        self.entry_ns = 0                # first emu_start of the last enter()
        # kicks (from any thread)
        self._kick_requested = False
        self.returns = 0                 # emu_start calls that came back
        self.entries = 0
        self._wd_cond = threading.Condition()
        self._wd_gen = None
        self._tick_due = None            # (monotonic deadline, entry generation)
        self._closed = False
        self._wd_thread = threading.Thread(target=self._watchdog, name="lgcore-kick", daemon=True)
        self._wd_thread.start()
        # what the CPU delivered itself: vector -> [count, total host ns]
        self.direct = {}
        self.on_direct = None            # callback(vec, cpu, ns) for --trace

    # ------------------------------------------------------------------
    # machine construction
    # ------------------------------------------------------------------
    def _build_switcher(self) -> None:
        sw = self.sw
        sw[:] = b"\xf4" * L.SWITCHER_SIZE             # hlt everywhere
        sw[L.SW_IDT:L.SW_IDT + 0x800] = bytes(0x800)
        sw[L.SW_GDT:L.SW_GDT + 0x200] = bytes(0x200)
        sw[L.SW_PT:L.SW_PT + 0x1000] = bytes(0x1000)
        sw[L.SW_ENTER:L.SW_ENTER + len(_ENTER_STUB)] = _ENTER_STUB
        sw[L.SW_PROBE_GP:L.SW_PROBE_GP + 3] = _PROBE_GP
        sw[L.SW_PROBE_INT:L.SW_PROBE_INT + 3] = _PROBE_INT
        for i, desc in _GDT.items():
            struct.pack_into("<Q", sw, L.SW_GDT + 8 * i, desc)
        # TSS: esp0/ss0 = the host stack, esp1/ss1 filled from the vCPU
        struct.pack_into("<II", sw, L.SW_TSS + 4, L.SWITCHER_VA + L.SW_STACK_TOP, L.HOST_DS)
        struct.pack_into("<H", sw, L.SW_TSS + 102, 104)   # no I/O bitmap
        # the Switcher's own page table: code, GDT/TSS/stack, IDT; read-only
        for page in range(3):
            va = L.SWITCHER_VA + page * 0x1000
            struct.pack_into("<I", sw, L.SW_PT + 4 * page, va | _PTE_P)

    def _build_page_tables(self) -> None:
        """What lguest's Launcher did: map all RAM at PAGE_OFFSET, plus the
        Switcher at the top.  The guest adds its user mappings itself."""
        ram = self.ram
        ram[L.PGDIR_PA:L.PGDIR_PA + 4096] = bytes(4096)
        ram[L.KERNEL_PT_PA:L.KERNEL_PT_PA + 4096] = bytes(4096)
        pt = array("I", ((pa | _PTE_P | _PTE_RW) if pa else 0
                         for pa in range(0, min(self.ram_size, 4 << 20), 4096)))
        ram[L.KERNEL_PT_PA:L.KERNEL_PT_PA + 4 * len(pt)] = pt.tobytes()
        _U32.pack_into(ram, L.PGDIR_PA + 4 * (L.PAGE_OFFSET >> 22), L.KERNEL_PT_PA | _PTE_P | _PTE_RW)
        _U32.pack_into(ram, L.PGDIR_PA + 4 * (L.SWITCHER_VA >> 22),
                       (L.SWITCHER_VA + L.SW_PT) | _PTE_P | _PTE_RW)

    def _park_ring0(self) -> None:
        """The host side of the Switcher: ring 0 at the entry stub, its stack
        holding the struct lguest_regs to enter with."""
        uc = self.uc
        uc.reg_write(X.UC_X86_REG_GDTR, (0, L.SWITCHER_VA + L.SW_GDT, 8 * L.GDT_ENTRIES - 1, 0))
        uc.reg_write(X.UC_X86_REG_IDTR, (0, L.SWITCHER_VA + L.SW_IDT, 8 * 256 - 1, 0))
        uc.reg_write(X.UC_X86_REG_CS, L.HOST_CS)
        for r in (X.UC_X86_REG_SS, X.UC_X86_REG_DS, X.UC_X86_REG_ES, X.UC_X86_REG_FS, X.UC_X86_REG_GS):
            uc.reg_write(r, L.HOST_DS)
        # QEMU caches segment flags in the descriptor's high-word layout, and
        # after ltr its TR cache says type 9; a TSS read with any other type
        # makes QEMU abort the process.
        uc.reg_write(X.UC_X86_REG_TR, (L.TSS_SELECTOR, L.SWITCHER_VA + L.SW_TSS, 0x67, 0x8900))
        uc.reg_write(X.UC_X86_REG_CR3, self.pgdir)
        uc.reg_write(X.UC_X86_REG_CR0, _CR0_PG | _CR0_WP | 0x10 | _CR0_PE)
        uc.reg_write(X.UC_X86_REG_EFLAGS, 0x2)
        uc.reg_write(X.UC_X86_REG_ESP, L.SWITCHER_VA + L.SW_FRAME)
        uc.reg_write(X.UC_X86_REG_EIP, L.SWITCHER_VA + L.SW_ENTER)
        for r in ("EAX", "EBX", "ECX", "EDX", "ESI", "EDI", "EBP"):
            uc.reg_write(getattr(X, "UC_X86_REG_" + r), 0)
        cr0 = uc.reg_read(X.UC_X86_REG_CR0)
        if not cr0 & _CR0_PG or uc.reg_read(X.UC_X86_REG_CS) != L.HOST_CS:
            raise BackendError("could not park the CPU at ring 0 with paging on")
        # A context saved with no exception in flight: restoring it before
        # each entry also resets QEMU's old_exception (else the 2nd fault
        # would be reported as a double fault).
        self.parked = uc.context_save()

    def _install_hooks(self) -> None:
        lib = self.lib
        self._intr_cb = _INTR_CB(self._on_intr)
        self._invalid_cb = _INVALID_CB(self._on_invalid)
        add = lib.uc_hook_add
        for htype, cb in ((UC_HOOK_INTR, self._intr_cb), (UC_HOOK_INSN_INVALID, self._invalid_cb)):
            hh = ctypes.c_size_t()
            rc = add(ctypes.c_void_p(self.handle), ctypes.byref(hh), ctypes.c_int(htype),
                     ctypes.cast(cb, ctypes.c_void_p), ctypes.c_void_p(0),
                     ctypes.c_uint64(1), ctypes.c_uint64(0))
            if rc != 0:
                raise BackendError(f"uc_hook_add failed: {lib.uc_strerror(rc).decode()}")

    # ------------------------------------------------------------------
    # binding a vCPU
    # ------------------------------------------------------------------
    def attach(self, cpu, task) -> None:
        """Bind lgcore's vCPU: its struct lguest_regs becomes the target of
        every register read; ``task.kick`` will pull it out of the guest."""
        self.cpu = cpu
        self.task = task
        task.kick = self.kick
        task.in_guest = True   # a kick always counts: see kick()
        self._regs_buf = (ctypes.c_ubyte * 72).from_buffer(cpu.regs)
        self._regs_addr = ctypes.addressof(self._regs_buf)
        # uc_reg_read_batch: register ids and where each value goes
        ids = [getattr(X, "UC_X86_REG_" + n) for n, _ in _REG_SLOTS] + [X.UC_X86_REG_CR2]
        self._cr2 = ctypes.c_uint64(0)
        ptrs = [self._regs_addr + off for _, off in _REG_SLOTS] + [ctypes.addressof(self._cr2)]
        self._ids = (ctypes.c_int * len(ids))(*ids)
        self._ptrs = (ctypes.c_void_p * len(ptrs))(*ptrs)
        self._nregs = len(ids)
        self._cs_id = (ctypes.c_int * 1)(X.UC_X86_REG_CS)
        self._cs_val = ctypes.c_uint32(0)
        self._cs_ptr = (ctypes.c_void_p * 1)(ctypes.addressof(self._cs_val))
        cpu.paging = True
        cpu.pgdir = self.pgdir
        cpu.cs, cpu.ds, cpu.es, cpu.ss = 0x61, 0x69, 0x69, 0x69
        cpu.eflags = 0x202

    # ------------------------------------------------------------------
    # kicks: set_interrupt() from the timer or a device thread
    # ------------------------------------------------------------------
    def kick(self) -> None:
        """Make the vCPU thread come back to its run loop soon.  The request
        is remembered (checked before each entry) and, if the guest is
        running, Unicorn is stopped; a watchdog repeats the stop if it landed
        in the few instructions before emulation really started."""
        if threading.get_ident() == self._vcpu_tid:
            return          # we are the vCPU: the run loop looks anyway
        self._kick_requested = True
        self.lib.uc_emu_stop(self.handle)
        with self._wd_cond:
            self._wd_gen = self.returns
            self._wd_cond.notify()

    def clear_kick(self) -> None:
        self._kick_requested = False

    def host_tick(self, delay: float = 0.001) -> None:
        """Stop the guest after `delay` seconds if it is still in the entry
        that follows.  Under lguest the host's own timer interrupt pulled
        every guest out at HZ; the run loop asks for this tick when an IRQ
        stays pending because the guest could not take it at this entry
        (interrupts off, or inside the no-IRQ window of its iret)."""
        with self._wd_cond:
            self._tick_due = (time.monotonic() + delay, self.returns)
            self._wd_cond.notify()

    def _watchdog(self) -> None:
        while True:
            with self._wd_cond:
                while True:
                    if self._closed:
                        return
                    if self._wd_gen is not None:
                        gen, self._wd_gen = self._wd_gen, None
                        break
                    if self._tick_due is None:
                        self._wd_cond.wait()
                        continue
                    due, tick_gen = self._tick_due
                    left = due - time.monotonic()
                    if left > 0:
                        self._wd_cond.wait(left)
                        continue
                    self._tick_due = None
                    if self.returns != tick_gen:
                        continue        # the guest came back by itself
                    self._kick_requested = True
                    self.lib.uc_emu_stop(self.handle)
                    gen = tick_gen
                    break
            for _ in range(200):
                time.sleep(0.0005)
                if self.returns != gen or not self._kick_requested or self._closed:
                    break
                self.lib.uc_emu_stop(self.handle)

    def close(self) -> None:
        with self._wd_cond:
            self._closed = True
            self._wd_cond.notify()

    # ------------------------------------------------------------------
    # the Switcher's return to the host
    # ------------------------------------------------------------------
    def _on_intr(self, uch, intno, ud):
        try:
            self.exit_ns = time.perf_counter_ns()
            self.lib.uc_reg_read_batch(self.handle, self._ids, self._ptrs, self._nregs)
            self._vec = intno
            self._is_int = self._qemu_is_int.value
            self._err = self._qemu_err.value
            self._hooked = True
        except BaseException as exc:      # never unwind through QEMU
            self._hook_exc = exc
        self.lib.uc_emu_stop(self.handle)

    def _on_invalid(self, uch, ud):
        self._on_intr(uch, 6, ud)
        return True

    # ------------------------------------------------------------------
    # the CPU's own walk of the guest page tables
    # ------------------------------------------------------------------
    def translate(self, va: int, write: bool = False, user: bool = False) -> int | None:
        """Guest-virtual to physical as the MMU would for this access, or
        None where it would fault.  (Not lgcore's guest_pa: that one is
        lguest's, with its kill-on-failure rule.)"""
        ram, size = self.ram, self.ram_size
        pde_at = self.pgdir + ((va >> 22) & 0x3FF) * 4
        if pde_at + 4 > size:
            return None
        pde = _U32.unpack_from(ram, pde_at)[0]
        if not pde & _PTE_P:
            return None
        pte_at = (pde & 0xFFFFF000) + ((va >> 12) & 0x3FF) * 4
        if pte_at + 4 > size:
            return None
        pte = _U32.unpack_from(ram, pte_at)[0]
        if not pte & _PTE_P:
            return None
        if user and not (pde & pte & _PTE_U):
            return None
        if write and not (pde & pte & _PTE_RW):     # CR0.WP is set
            return None
        pa = (pte & 0xFFFFF000) | (va & 0xFFF)
        return pa if pa + 4 <= size else None

    def _push(self, esp: int, val: int) -> int | None:
        esp = (esp - 4) & 0xFFFFFFFF
        pa = self.translate(esp, write=True)
        if pa is None:
            return None
        _U32.pack_into(self.ram, pa, val & 0xFFFFFFFF)
        return esp

    def _insn_len_before(self, eip: int, vec: int) -> int:
        """Length of the INT instruction that ended just before eip."""
        pa = self.translate((eip - 1) & 0xFFFFFFFF)
        if pa is not None and vec in (3, 4) and self.ram[pa] in (0xCC, 0xCE):
            return 1
        return 2

    def _deliver_direct(self, cpu, vec: int, err: int | None, a: int, b: int) -> str | None:
        """Deliver through a guest trap gate as the CPU does: from ring 3
        switch to the TSS ring-1 stack and push ss, esp; then eflags, cs,
        eip and the error code; clear TF/NT/RF/VM (and IF for an interrupt
        gate).  Works on the raw struct lguest_regs.  Returns None, or why
        the CPU could not (the caller kills the guest)."""
        regs = self._regs_buf
        eip, cs, eflags, esp, ss = _TAIL.unpack_from(regs, 52)
        sel = a >> 16
        new_cpl = _GDT_CPL.get(sel & ~3)
        cpl = cs & 3
        if new_cpl is None or new_cpl > cpl:
            return f"direct trap {vec}: gate selector {sel:#x} unusable"
        if new_cpl < cpl:
            frame = [ss, esp, eflags, cs, eip]
            esp, ss = self._tss_esp1, self._tss_ss1
        else:
            frame = [eflags, cs, eip]
        if err is not None:
            frame.append(err)
        low = (esp - 4 * len(frame)) & 0xFFFFFFFF
        pa = self.translate(low, write=True)
        if pa is not None and (low >> 12) == (((esp - 4) & 0xFFFFFFFF) >> 12) and not low & 3:
            # the usual case: the whole frame in one page, one walk
            frame.reverse()
            struct.pack_into(f"<{len(frame)}I", self.ram, pa, *frame)
            esp = low
        else:
            for val in frame:
                nesp = self._push(esp, val)
                if nesp is None:
                    return f"direct trap {vec}: ring-{new_cpl} stack {(esp - 4) & 0xFFFFFFFF:#x} not writable"
                esp = nesp
        eflags &= ~(_EFLAGS_TF | _EFLAGS_NT | _EFLAGS_RF | _EFLAGS_VM)
        if (b >> 8) & 0xF == 0xE:
            eflags &= ~_EFLAGS_IF
        _TAIL.pack_into(regs, 52, (a & 0xFFFF) | (b & 0xFFFF0000), (sel & ~3) | new_cpl,
                        eflags, esp, ss)
        return None

    # ------------------------------------------------------------------
    # one trip into the guest
    # ------------------------------------------------------------------
    def _account_direct(self, vec: int, cpu, now: int) -> None:
        # host time of a direct trap: from the hook to the next entry
        spent = now - self.exit_ns
        rec = self.direct.get(vec)
        if rec is None:
            self.direct[vec] = [1, spent]
        else:
            rec[0] += 1
            rec[1] += spent
        if self.on_direct is not None:
            self.on_direct(vec, cpu, spent)

    def enter(self, cpu) -> tuple[int, int, int]:
        """Run the guest from cpu's registers until something for the host
        happens; returns (trapnum, errcode, cr2) as lguest's Switcher did.
        A kick returns (HOST_KICK_VECTOR, 0, 0): a host interrupt."""
        lib, handle, sw = self.lib, self.handle, self.sw
        self._vcpu_tid = threading.get_ident()
        frame_addr = self.sw_addr + L.SW_FRAME
        parked = ctypes.c_void_p(self.parked.context.value)
        start, stop = L.SWITCHER_VA + L.SW_ENTER, L.SWITCHER_VA + L.SW_STOP
        direct_vec = None
        first = True
        while True:
            if cpu.esp1 != self._tss_esp1 or cpu.ss1 != self._tss_ss1:
                # copy_in_guest_info(): the ring-1 stack for the CPU
                self._tss_esp1, self._tss_ss1 = cpu.esp1, cpu.ss1
                struct.pack_into("<II", sw, L.SW_TSS + 12, cpu.esp1, cpu.ss1)
            ctypes.memmove(frame_addr, self._regs_addr, 72)
            lib.uc_context_restore(handle, parked)
            self._hooked = False
            now = time.perf_counter_ns()
            if direct_vec is not None:
                self._account_direct(direct_vec, cpu, now)
                direct_vec = None
            if first:
                self.entry_ns = now
                first = False
            if self._kick_requested:
                # consumed here: the run loop looks at the IRQs on return
                self._kick_requested = False
                self.exit_ns = now
                return (L.HOST_KICK_VECTOR, 0, 0)
            self.entries += 1
            rc = lib.uc_emu_start(handle, start, stop, 0, 0)
            self.returns += 1
            if self._hook_exc is not None:
                exc, self._hook_exc = self._hook_exc, None
                raise exc
            if rc != 0:
                raise BackendError(f"uc_emu_start: {lib.uc_strerror(rc).decode()} at eip "
                                   f"{self.uc.reg_read(X.UC_X86_REG_EIP):#x}")
            if not self._hooked:
                # kicked out (emu_stop from another thread)
                self._kick_requested = False
                self.exit_ns = time.perf_counter_ns()
                lib.uc_reg_read_batch(handle, self._cs_id, self._cs_ptr, 1)
                if self._cs_val.value & 3:
                    lib.uc_reg_read_batch(handle, self._ids, self._ptrs, self._nregs)
                return (L.HOST_KICK_VECTOR, 0, 0)
            vec = self._vec
            if (cpu.cs & 3) == 0:
                # faulted inside the Switcher itself (e.g. a bad segment in
                # the regs we tried to load): lguest's trapnum 256
                ctypes.memmove(self._regs_addr, frame_addr, 72)
                return (NO_TRAP, 0, 0)
            is_int = self._is_int != 0
            err = self._err if vec in ERR_VECTORS and not is_int else 0
            a, b = _GATE.unpack_from(self.host_idt, 8 * vec)
            if is_int and ((b >> 13) & 3) < (cpu.cs & 3):
                # The gate's DPL forbids this INT: the CPU raises
                # #GP(vector*8+2) at the INT instruction instead.
                cpu.eip = (cpu.eip - self._insn_len_before(cpu.eip, vec)) & 0xFFFFFFFF
                vec, err, is_int = 13, (vec << 3) | 2, False
                a, b = _GATE.unpack_from(self.host_idt, 8 * 13)
            if (b & 0x8000) and (b >> 8) & 0xF == 0xF and (a >> 16) != L.HOST_CS:
                # a trap gate into the guest: the CPU's business, not ours
                why = self._deliver_direct(cpu, vec, err if vec in ERR_VECTORS and not is_int else None, a, b)
                if why is not None:
                    cpu.guest.kill_guest(why)
                    return (NO_TRAP, 0, 0)
                direct_vec = vec
                continue
            return (vec, err, (self._cr2.value & 0xFFFFFFFF) if vec == 14 else 0)
