# SPDX-License-Identifier: GPL-2.0-only
"""A small lguest-shaped x86 machine on Unicorn in which QEMU delivers
interrupts itself, through the guest's real IDT.

One RAM (an mmap shared by Unicorn and lgcore), lguest's GDT layout (ring-1
guest kernel 0x61/0x69, user 0x73/0x7b), a TSS whose esp1/ss1 is the guest
kernel stack, two-level page tables, an IDT whose gates lead to tiny ring-1
handlers that do nothing but ``iret`` (after popping the error code when the
CPU pushed one), and a page of user code with one snippet per event:
``int $n`` for every n, ``int3``, ``into``, ``div`` by zero, ``bound``,
``ud2``, an FPU op with CR0.TS, ``iret`` with NT, segment loads that raise
#NP/#SS/#GP, loads and stores that page-fault in every way the 2-level MMU
can, and an x87 error that raises #MF.

A run enters the guest the way lguest's Switcher does (restore a parked
ring-0 context, ``iret`` through a stub), lets the snippet raise its event,
and in the ``UC_HOOK_INTR`` callback hands the event to QEMU's own delivery
(``qemu_bridge``).  Nothing is pushed by this module: frames come from QEMU.
"""
from __future__ import annotations

import mmap
import struct
import ctypes
from dataclasses import dataclass, field

from unicorn import Uc, UC_ARCH_X86, UC_MODE_32, UC_PROT_ALL, UC_HOOK_INTR, UC_HOOK_INSN_INVALID
from unicorn import x86_const as X

from .qemu_bridge import BridgeError, QemuBridge, R_CS, R_SS

U32 = struct.Struct("<I")
PAGE = 0x1000

# ---------------------------------------------------------------------------
# memory map (guest-physical unless it says VA)
# ---------------------------------------------------------------------------
RAM_SIZE = 0x100000            # 1 MiB
PAGE_OFFSET = 0xC0000000       # all RAM, supervisor read/write
PGDIR_PA = 0x1000
KERNEL_PT_PA = 0x2000
USER_PT_PA = 0x3000            # VA 0x08000000..0x083FFFFF
GDT_PA = 0x4000
TSS_PA = 0x4800
IDT_PA = 0x5000
ENTRY_PA = 0x6000              # ring-0 Switcher stub: pop regs, iret
HANDLERS_PLAIN_PA = 0x6800     # 256 x 8: `iret`
HANDLERS_ERR_PA = 0x7000       # 256 x 8: `add $4,%esp; iret`
HOST_STACK_TOP_PA = 0x9000     # page 0x8000: the ring-0 stack
HOST_FRAME_PA = HOST_STACK_TOP_PA - 64
LGUEST_DATA_PA = 0x9000        # struct lguest_data (lgcore's side only)
USER_CODE_PA = 0xA000          # two pages
USER_DATA_PA = 0xC000
PF_PAGES_PA = 0xD000           # backing for the present fault-target pages
USER_STACK_PA = 0x20000        # 16 pages
KSTACK_PA = 0x40000            # 64 pages of guest kernel stacks
KSTACK_END_PA = 0x80000
SCRAMBLED_PA = 0x80000         # 8 pages mapped out of order (see VA below)

ENTRY_VA = PAGE_OFFSET + ENTRY_PA
HOST_FRAME_VA = PAGE_OFFSET + HOST_FRAME_PA
HOST_STACK_TOP_VA = PAGE_OFFSET + HOST_STACK_TOP_PA
GDT_VA = PAGE_OFFSET + GDT_PA
TSS_VA = PAGE_OFFSET + TSS_PA
IDT_VA = PAGE_OFFSET + IDT_PA
RAM_END_VA = PAGE_OFFSET + RAM_SIZE          # first unmapped kernel VA
KSTACK_VA = PAGE_OFFSET + KSTACK_PA
KSTACK_END_VA = PAGE_OFFSET + KSTACK_END_PA

USER_BASE_VA = 0x08000000
USER_CODE_VA = 0x08048000
USER_DATA_VA = 0x0804A000
PF_NOTPRESENT_VA = 0x0804B000  # PTE not present
PF_USER_RO_VA = 0x0804C000     # present, user, read-only
PF_SUPER_RW_VA = 0x0804D000    # present, supervisor, read/write
PF_SUPER_RO_VA = 0x0804E000    # present, supervisor, read-only
USER_STACK_VA = 0x08100000     # 16 pages, user read/write
USER_STACK_END_VA = USER_STACK_VA + 16 * PAGE
SCRAMBLED_VA = 0x08200000      # 8 supervisor pages, page i -> SCRAMBLED_PA + (7-i)*4K
EDGE_VA = 0x08300000           # supervisor: -> the last page of RAM; +4K -> just past RAM
PSE_RSVD_VA = 0x40000000       # a 4 MiB PSE page with reserved bit 21 set

PTE_P, PTE_RW, PTE_U, PTE_A, PTE_D, PTE_PS = 1, 2, 4, 0x20, 0x40, 0x80
CR0_PE, CR0_MP, CR0_TS, CR0_ET, CR0_NE, CR0_WP, CR0_PG = 1, 2, 8, 0x10, 0x20, 0x10000, 0x80000000
CR4_PSE = 0x10
BASE_CR0 = CR0_PE | CR0_MP | CR0_ET | CR0_NE | CR0_WP | CR0_PG

HOST_CS, HOST_DS = 0x50, 0x58
KERNEL_CS, KERNEL_DS = 0x60, 0x68      # DPL-1 code/data (Linux's __KERNEL_CS/DS)
GUEST_CS, GUEST_DS = 0x61, 0x69
USER_CS, USER_DS = 0x73, 0x7B
TSS_SEL = 0x80
NP_DATA3_SEL = 0x88            # DPL-3 writable data, not present
NP_DATA1_SEL = 0x90            # DPL-1 writable data, not present
GDT_ENTRIES = 32
GDT_LIMIT = 8 * GDT_ENTRIES - 1

EFLAGS_CF, EFLAGS_TF, EFLAGS_IF, EFLAGS_DF, EFLAGS_OF = 0x1, 0x100, 0x200, 0x400, 0x800
EFLAGS_IOPL, EFLAGS_NT, EFLAGS_RF, EFLAGS_VM, EFLAGS_AC, EFLAGS_ID = 0x3000, 0x4000, 0x10000, 0x20000, 0x40000, 0x200000
ERR_VECTORS = frozenset((8, 10, 11, 12, 13, 14, 17))


def _seg(base: int, limit: int, access: int, flags: int = 0xC) -> int:
    return ((limit & 0xFFFF) | ((base & 0xFFFF) << 16) | (((base >> 16) & 0xFF) << 32)
            | (access << 40) | (((limit >> 16) & 0xF) << 48) | (flags << 52)
            | (((base >> 24) & 0xFF) << 56))


# Accessed bits preset everywhere (so the CPU never writes a descriptor and
# the only bytes a delivery changes are the frame's).
GDT = {
    10: _seg(0, 0xFFFFF, 0x9B),        # 0x50 ring-0 code (the Switcher)
    11: _seg(0, 0xFFFFF, 0x93),        # 0x58 ring-0 data
    12: _seg(0, 0xFFFFF, 0xBB),        # 0x60 DPL-1 code: the guest kernel
    13: _seg(0, 0xFFFFF, 0xB3),        # 0x68 DPL-1 data
    14: _seg(0, 0xFFFFF, 0xFB),        # 0x73 user code
    15: _seg(0, 0xFFFFF, 0xF3),        # 0x7b user data
    16: _seg(TSS_VA, 0x67, 0x8B, 0x0),  # 0x80 busy 32-bit TSS
    17: _seg(0, 0xFFFFF, 0x73),        # 0x88 DPL-3 data, P=0: #NP / #SS
    18: _seg(0, 0xFFFFF, 0x33),        # 0x90 DPL-1 data, P=0: #SS from ring 1
}
CODE_DPL = {i * 8: (d >> 45) & 3 for i, d in GDT.items() if (d >> 40) & 0x98 == 0x98}

# ---------------------------------------------------------------------------
# code
# ---------------------------------------------------------------------------
ENTRY_STUB = bytes.fromhex(
    "58" "5b" "59" "5a" "5e" "5f" "5d"   # pop eax ebx ecx edx esi edi ebp
    "0fa9" "0fa1" "1f" "07"              # pop gs fs ds es
    "cf")                                # iret
HANDLER_PLAIN = bytes.fromhex("cf")               # iret
HANDLER_ERR = bytes.fromhex("83c404cf")           # add $4,%esp ; iret

# user data words (VA offsets from USER_DATA_VA)
D_ZERO, D_BOUNDS, D_SEL_NP, D_SEL_SS3, D_SEL_SS1, D_SEL_GP, D_FPU_CW = 0, 8, 16, 20, 24, 28, 32
FPU_CW_UNMASK_ZE = 0x037B

INT_TABLE_OFF = 0x000          # 256 x 4: int $n ; hlt ; hlt
MISC_OFF = 0x400               # 32-byte slots


def _abs(va: int) -> bytes:
    return U32.pack(va)


def _snippets() -> dict[str, tuple[int, bytes, int]]:
    """name -> (offset in the user code page, code, offset of the event's
    instruction).  Every instruction here is reachable from ring 3 and ring 1."""
    d = USER_DATA_VA
    out = {}
    misc = [
        ("int3", bytes.fromhex("cc"), 0),
        ("int3_long", bytes.fromhex("cd03"), 0),
        ("into", bytes.fromhex("ce"), 0),
        ("trigger", bytes.fromhex("cc"), 0),            # where IRQs / injected events land
        ("div0", bytes.fromhex("f735") + _abs(d + D_ZERO), 0),
        ("bound", bytes.fromhex("6205") + _abs(d + D_BOUNDS), 0),
        ("ud2", bytes.fromhex("0f0b"), 0),
        ("step", bytes.fromhex("90"), 0),                # nop (then hlt): #DB with TF
        ("fnop", bytes.fromhex("d9d0"), 0),              # #NM with CR0.TS
        ("iret_nt", bytes.fromhex("cf"), 0),            # #TS with EFLAGS.NT
        ("load_ds_np", bytes.fromhex("8e1d") + _abs(d + D_SEL_NP), 0),
        ("load_ss_np3", bytes.fromhex("8e15") + _abs(d + D_SEL_SS3), 0),
        ("load_ss_np1", bytes.fromhex("8e15") + _abs(d + D_SEL_SS1), 0),
        ("load_ds_gp", bytes.fromhex("8e1d") + _abs(d + D_SEL_GP), 0),
        ("hlt", bytes.fromhex("f4"), 0),
        # fninit; fldcw cw; fld1; fldz; fdivp; fwait  -> #MF at the fwait
        ("x87", bytes.fromhex("dbe3" "d92d") + _abs(d + D_FPU_CW) + bytes.fromhex("d9e8" "d9ee" "def9" "9b"), 14),
    ]
    for target, va in (("np", PF_NOTPRESENT_VA), ("uro", PF_USER_RO_VA), ("srw", PF_SUPER_RW_VA),
                       ("sro", PF_SUPER_RO_VA), ("rsvd", PSE_RSVD_VA)):
        misc.append((f"read_{target}", bytes.fromhex("8b05") + _abs(va + 0x124), 0))   # mov va,%eax
        misc.append((f"write_{target}", bytes.fromhex("8905") + _abs(va + 0x124), 0))  # mov %eax,va
    for i, (name, code, ev) in enumerate(misc):
        off = MISC_OFF + 32 * i
        assert len(code) <= 28
        out[name] = (off, code, ev)
    for n in range(256):
        out[f"int{n:02x}"] = (INT_TABLE_OFF + 4 * n, bytes((0xCD, n, 0xF4, 0xF4)), 0)
    return out


SNIPPETS = _snippets()


def snippet_va(name: str) -> int:
    return USER_CODE_VA + SNIPPETS[name][0]


def event_va(name: str) -> int:
    off, _, ev = SNIPPETS[name]
    return USER_CODE_VA + off + ev


def handler_va(vector: int, pops_error: bool) -> int:
    return PAGE_OFFSET + (HANDLERS_ERR_PA if pops_error else HANDLERS_PLAIN_PA) + 8 * vector


def make_gate(handler: int, selector: int, gate_type: int, dpl: int, present: bool = True) -> tuple[int, int]:
    a = ((selector & 0xFFFF) << 16) | (handler & 0xFFFF)
    b = (handler & 0xFFFF0000) | (0x8000 if present else 0) | (dpl << 13) | (gate_type << 8)
    return a, b


# ---------------------------------------------------------------------------
# what a run records
# ---------------------------------------------------------------------------
GPRS = ("eax", "ebx", "ecx", "edx", "esi", "edi", "ebp", "esp")
SEGS = ("cs", "ss", "ds", "es", "fs", "gs")
_READ_ORDER = GPRS + SEGS + ("eip", "eflags")


class _RegReader:
    """uc_reg_read_batch through ctypes into preallocated arrays (the
    binding's reg_read_batch costs ~40 us a call; this ~5 us)."""

    def __init__(self, uc):
        from unicorn.unicorn_py3 import unicorn as ucmod
        self.lib = ctypes.CDLL(ucmod.uclib._name)
        self.lib.uc_reg_read_batch.argtypes = (ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int)
        self.lib.uc_reg_read_batch.restype = ctypes.c_int
        self.handle = uc._uch.value
        n = len(_READ_ORDER)
        self.n = n
        self.ids = (ctypes.c_int * n)(*[getattr(X, "UC_X86_REG_" + r.upper()) for r in _READ_ORDER])
        self.vals = (ctypes.c_uint64 * n)()
        self.ptrs = (ctypes.c_void_p * n)(*[ctypes.addressof(self.vals) + 8 * i for i in range(n)])

    def read(self) -> dict:
        for i in range(self.n):
            self.vals[i] = 0
        rc = self.lib.uc_reg_read_batch(self.handle, self.ids, self.ptrs, self.n)
        if rc != 0:
            raise BridgeError(f"uc_reg_read_batch failed ({rc})")
        return {name: v & 0xFFFFFFFF for name, v in zip(_READ_ORDER, self.vals)}


@dataclass
class CpuState:
    """Architectural registers plus the CPL QEMU is running at."""
    regs: dict
    cpl: int

    def __getitem__(self, name):
        return self.regs[name]


@dataclass
class Event:
    """What QEMU reported in UC_HOOK_INTR."""
    vector: int
    is_int: int
    error_code: int
    next_eip: int
    state: CpuState


@dataclass
class Delivery:
    """One event delivered by QEMU: the state at the event, what QEMU did."""
    event: Event                      # as raised (before any conversion)
    vector: int                       # what was delivered (e.g. 13 for a DPL-failing INT)
    error_code: int | None            # pushed, or None
    pushed_eip: int                   # the return address the CPU used
    kind: str                         # "exception" | "int" | "irq" | "held" (IRQ not taken)
    before: CpuState                  # registers at the event
    after: CpuState | None            # registers at handler entry (None when held)
    stack_top: int                    # where the frame starts (TSS esp1 or the old esp)
    ram_before: dict = field(default_factory=dict)   # physical page -> bytes
    ram_after: dict = field(default_factory=dict)


@dataclass
class Outcome:
    """How a run from a handler entry ended: back at the interrupted
    instruction (``state`` is then the state there), or in a new event."""
    returned: bool
    state: CpuState | None = None
    fault: tuple | None = None        # (vector, error_code, eip, cs) of an unexpected event
    note: str = ""


class Undeliverable(Exception):
    """QEMU would fault while delivering (the bridge never lets it)."""


@dataclass
class Plan:
    """What the hook does with the next event."""
    mode: str                         # "native" | "inject" | "irq" | "observe"
    event_eip: int | None = None      # address of the instruction raising the event
    vector: int | None = None         # inject / irq
    error_code: int | None = None     # inject
    full_ram: bool = False            # snapshot all of RAM, not just the stack pages
    delivery: Delivery | None = None
    outcome: Outcome | None = None
    exc: BaseException | None = None


class Machine:
    """The Unicorn machine, the QEMU bridge, and guest RAM lgcore can share."""

    def __init__(self):
        self.ram_mm = mmap.mmap(-1, RAM_SIZE)
        self._ram_c = (ctypes.c_ubyte * RAM_SIZE).from_buffer(self.ram_mm)
        self.ram = memoryview(self.ram_mm)
        self.uc = uc = Uc(UC_ARCH_X86, UC_MODE_32)
        uc.mem_map_ptr(0, RAM_SIZE, UC_PROT_ALL, ctypes.addressof(self._ram_c))
        self._build()
        self._park()
        self.bridge = QemuBridge(uc, X)
        self._reader = _RegReader(uc)
        uc.context_restore(self.parked)
        self.plan: Plan | None = None
        self._last_until = None
        uc.hook_add(UC_HOOK_INTR, self._on_intr)
        uc.hook_add(UC_HOOK_INSN_INVALID, self._on_invalid)
        self.cr0 = BASE_CR0
        self._verify_bridge()
        self.bridge.probes_passed = True

    # ------------------------------------------------------------------
    # construction
    # ------------------------------------------------------------------
    def w32(self, pa: int, val: int) -> None:
        U32.pack_into(self.ram, pa, val & 0xFFFFFFFF)

    def r32(self, pa: int) -> int:
        return U32.unpack_from(self.ram, pa)[0]

    def _build(self) -> None:
        ram = self.ram
        ram[:] = bytes(RAM_SIZE)
        ad = PTE_A | PTE_D
        # kernel mapping of all RAM
        self.w32(PGDIR_PA + 4 * (PAGE_OFFSET >> 22), KERNEL_PT_PA | PTE_P | PTE_RW | ad)
        for i in range(1, RAM_SIZE // PAGE):
            self.w32(KERNEL_PT_PA + 4 * i, (i * PAGE) | PTE_P | PTE_RW | ad)
        # user region
        self.w32(PGDIR_PA + 4 * (USER_BASE_VA >> 22), USER_PT_PA | PTE_P | PTE_RW | PTE_U | ad)

        def user_map(va, pa, flags):
            self.w32(USER_PT_PA + 4 * ((va >> 12) & 0x3FF), pa | flags | ad)

        user_map(USER_CODE_VA, USER_CODE_PA, PTE_P | PTE_U)
        user_map(USER_CODE_VA + PAGE, USER_CODE_PA + PAGE, PTE_P | PTE_U)
        user_map(USER_DATA_VA, USER_DATA_PA, PTE_P | PTE_RW | PTE_U)
        user_map(PF_USER_RO_VA, PF_PAGES_PA, PTE_P | PTE_U)
        user_map(PF_SUPER_RW_VA, PF_PAGES_PA + PAGE, PTE_P | PTE_RW)
        user_map(PF_SUPER_RO_VA, PF_PAGES_PA + 2 * PAGE, PTE_P)
        for i in range(16):
            user_map(USER_STACK_VA + i * PAGE, USER_STACK_PA + i * PAGE, PTE_P | PTE_RW | PTE_U)
        for i in range(8):
            user_map(SCRAMBLED_VA + i * PAGE, SCRAMBLED_PA + (7 - i) * PAGE, PTE_P | PTE_RW)
        user_map(EDGE_VA, RAM_SIZE - PAGE, PTE_P | PTE_RW)
        user_map(EDGE_VA + PAGE, RAM_SIZE, PTE_P | PTE_RW)     # present, but no RAM there
        # a 4 MiB page with reserved bit 21 set: any access is a RSVD fault
        self.w32(PGDIR_PA + 4 * (PSE_RSVD_VA >> 22), 0x00200000 | PTE_PS | PTE_P | PTE_RW | PTE_U | ad)
        # GDT, TSS
        for i, desc in GDT.items():
            struct.pack_into("<Q", ram, GDT_PA + 8 * i, desc)
        struct.pack_into("<II", ram, TSS_PA + 4, HOST_STACK_TOP_VA, HOST_DS)
        struct.pack_into("<II", ram, TSS_PA + 12, KSTACK_END_VA, GUEST_DS)
        struct.pack_into("<H", ram, TSS_PA + 102, 104)
        # code
        ram[ENTRY_PA:ENTRY_PA + len(ENTRY_STUB)] = ENTRY_STUB
        for v in range(256):
            ram[HANDLERS_PLAIN_PA + 8 * v:HANDLERS_PLAIN_PA + 8 * v + 8] = HANDLER_PLAIN + b"\xf4" * 7
            ram[HANDLERS_ERR_PA + 8 * v:HANDLERS_ERR_PA + 8 * v + 8] = HANDLER_ERR + b"\xf4" * 4
        ram[USER_CODE_PA:USER_CODE_PA + 2 * PAGE] = b"\xf4" * (2 * PAGE)
        for name, (off, code, _) in SNIPPETS.items():
            ram[USER_CODE_PA + off:USER_CODE_PA + off + len(code)] = code
        # user data
        self.w32(USER_DATA_PA + D_ZERO, 0)
        self.w32(USER_DATA_PA + D_BOUNDS, 1)           # bound: lower 1 > upper 0,
        self.w32(USER_DATA_PA + D_BOUNDS + 4, 0)       # so every index is out
        self.w32(USER_DATA_PA + D_SEL_NP, NP_DATA3_SEL | 3)
        self.w32(USER_DATA_PA + D_SEL_SS3, NP_DATA3_SEL | 3)
        self.w32(USER_DATA_PA + D_SEL_SS1, NP_DATA1_SEL | 1)
        self.w32(USER_DATA_PA + D_SEL_GP, 0x1238)
        self.w32(USER_DATA_PA + D_FPU_CW, FPU_CW_UNMASK_ZE)
        self.base_image = bytes(ram)

    def _park(self) -> None:
        uc = self.uc
        uc.reg_write(X.UC_X86_REG_GDTR, (0, GDT_VA, GDT_LIMIT, 0))
        uc.reg_write(X.UC_X86_REG_IDTR, (0, IDT_VA, 8 * 256 - 1, 0))
        uc.reg_write(X.UC_X86_REG_CR3, PGDIR_PA)
        uc.reg_write(X.UC_X86_REG_CR4, CR4_PSE)
        uc.reg_write(X.UC_X86_REG_CR0, BASE_CR0)
        uc.reg_write(X.UC_X86_REG_CS, HOST_CS)
        for r in (X.UC_X86_REG_SS, X.UC_X86_REG_DS, X.UC_X86_REG_ES, X.UC_X86_REG_FS, X.UC_X86_REG_GS):
            uc.reg_write(r, HOST_DS)
        # QEMU keeps descriptor flags in the high-dword layout (type at bit 8,
        # P at 15), and its TR cache holds the type `ltr` saw: 9, available
        # (the GDT copy is marked busy, 0xB).  Anything else aborts the
        # process when QEMU reads a stack from the TSS.
        uc.reg_write(X.UC_X86_REG_TR, (TSS_SEL, TSS_VA, 0x67, 0x8900))
        uc.reg_write(X.UC_X86_REG_EFLAGS, 0x2)
        uc.reg_write(X.UC_X86_REG_ESP, HOST_FRAME_VA)
        uc.reg_write(X.UC_X86_REG_EIP, ENTRY_VA)
        for r in ("EAX", "EBX", "ECX", "EDX", "ESI", "EDI", "EBP"):
            uc.reg_write(getattr(X, "UC_X86_REG_" + r), 0)
        if uc.reg_read(X.UC_X86_REG_CR0) & CR0_PG == 0 or uc.reg_read(X.UC_X86_REG_CS) != HOST_CS:
            raise BridgeError("could not park the CPU at ring 0 with paging on")
        self.parked = uc.context_save()

    # ------------------------------------------------------------------
    # per-case state
    # ------------------------------------------------------------------
    def reset_ram(self) -> None:
        self.ram[:] = self.base_image

    def set_gate(self, vector: int, a: int, b: int) -> None:
        struct.pack_into("<II", self.ram, IDT_PA + 8 * vector, a, b)

    def set_idt(self, image: bytes) -> None:
        self.ram[IDT_PA:IDT_PA + 2048] = image

    def set_tss(self, esp1: int, ss1: int = GUEST_DS, backlink: int = 0) -> None:
        self.w32(TSS_PA, backlink)
        struct.pack_into("<II", self.ram, TSS_PA + 12, esp1, ss1)

    # ------------------------------------------------------------------
    # the MMU, as QEMU walks it (2-level, PSE, CR0.WP)
    # ------------------------------------------------------------------
    def translate(self, va: int, write: bool = False, user: bool = False) -> int | None:
        va &= 0xFFFFFFFF
        pde = self.r32(PGDIR_PA + 4 * (va >> 22))
        if not pde & PTE_P:
            return None
        if pde & PTE_PS:
            return None          # only the reserved-bit page is PSE here
        pt = pde & 0xFFFFF000
        if pt + PAGE > RAM_SIZE:
            return None
        pte = self.r32(pt + 4 * ((va >> 12) & 0x3FF))
        if not pte & PTE_P:
            return None
        if user and not (pde & pte & PTE_U):
            return None
        if write and not (pde & pte & PTE_RW):
            return None
        pa = (pte & 0xFFFFF000) | (va & 0xFFF)
        return pa if pa < RAM_SIZE else None

    def read_virt(self, va: int, n: int) -> bytes | None:
        out = bytearray()
        while n > 0:
            va &= 0xFFFFFFFF
            pa = self.translate(va)
            if pa is None:
                return None
            chunk = min(n, PAGE - (va & 0xFFF))
            out += self.ram[pa:pa + chunk]
            va += chunk
            n -= chunk
        return bytes(out)

    def read_words(self, va: int, count: int) -> list[int] | None:
        raw = self.read_virt(va, 4 * count)
        if raw is None:
            return None
        return list(struct.unpack(f"<{count}I", raw))

    # ------------------------------------------------------------------
    # running
    # ------------------------------------------------------------------
    def read_state(self) -> CpuState:
        return CpuState(self._reader.read(), self.bridge.cpl)

    def _run(self, begin: int, until: int, count: int = 0) -> None:
        uc = self.uc
        # Unicorn bakes the stop address into translated code: drop blocks
        # holding the previous and the current stop address.
        if self._last_until is not None and self._last_until != until:
            uc.ctl_remove_cache(self._last_until, self._last_until + 1)
        uc.ctl_remove_cache(until, until + 1)
        self._last_until = until
        uc.emu_start(begin, until, 0, count)

    def enter(self, regs: dict, cr0: int | None = None) -> None:
        """Load a guest context as lguest's Switcher does: parked ring 0,
        the registers on the host stack, ``iret``."""
        uc = self.uc
        uc.context_restore(self.parked)
        if cr0 is not None and cr0 != BASE_CR0:
            uc.reg_write(X.UC_X86_REG_CR0, cr0)
        struct.pack_into(
            "<16I", self.ram, HOST_FRAME_PA,
            regs["eax"], regs["ebx"], regs["ecx"], regs["edx"], regs["esi"], regs["edi"],
            regs["ebp"], regs["gs"], regs["fs"], regs["ds"], regs["es"],
            regs["eip"], regs["cs"], regs["eflags"], regs["esp"], regs["ss"])

    def run_event(self, regs: dict, plan: Plan, cr0: int | None = None) -> Plan:
        """Enter with ``regs`` and let the first event be handled per ``plan``."""
        self.enter(regs, cr0)
        self.plan = plan
        try:
            self._run(ENTRY_VA, NEVER_VA, 64)
        finally:
            self.plan = None
        if plan.exc is not None:
            raise plan.exc
        return plan

    def run_handler(self, start: CpuState | None, stop_eip: int, regs: dict | None = None) -> Outcome:
        """Run from a handler entry until the guest is back at ``stop_eip``
        (the interrupted instruction) or something else happens.  Either the
        CPU is already there (QEMU's own delivery: ``start``) or the state is
        loaded through the Switcher (``regs``: lgcore's result)."""
        plan = Plan("observe")
        self.plan = plan
        try:
            if regs is not None:
                self.enter(regs)
                begin = ENTRY_VA
            else:
                begin = start["eip"]
            self._run(begin, stop_eip, 16)
        finally:
            self.plan = None
        if plan.exc is not None:
            raise plan.exc
        if plan.outcome is not None:
            return plan.outcome
        st = self.read_state()
        if st["eip"] != stop_eip:
            return Outcome(False, st, None, f"stopped at {st['eip']:#x}, not at {stop_eip:#x}")
        return Outcome(True, st)

    # ------------------------------------------------------------------
    # the hook
    # ------------------------------------------------------------------
    def _on_invalid(self, uc, ud):
        # Unicorn reports #UD here (not in UC_HOOK_INTR) once an INSN_INVALID
        # hook exists; QEMU has raised EXCP06_ILLOP all the same.
        self._on_intr(uc, 6, ud)
        return True

    def _on_intr(self, uc, intno, ud):
        plan = self.plan
        try:
            if plan is None:
                raise RuntimeError(f"unexpected event {intno} outside a run")
            vec, is_int, err, next_eip = self.bridge.exception()
            if vec != intno:
                raise BridgeError(f"exception_index {vec} but Unicorn reports vector {intno}")
            st = self.read_state()
            ev = Event(vec, is_int, err, next_eip, st)
            if plan.mode == "observe":
                has_err = vec in ERR_VECTORS and not is_int
                plan.outcome = Outcome(False, st, (vec, err if has_err else None, st["eip"], st["cs"]),
                                       "event in the handler")
            else:
                self._deliver(plan, ev)
        except BaseException as exc:      # never unwind through QEMU
            plan.exc = exc
        uc.emu_stop()

    # pages a frame under ``top`` can touch: QEMU writes the virtual pages
    # below top; lgcore translates top once and writes physically below it.
    def window_pages(self, top: int) -> set[int]:
        pages = set()
        for va in (top - 1, top - 32):
            pa = self.translate(va & 0xFFFFFFFF)
            if pa is not None:
                pages.add(pa >> 12)
                if pa >= 32:
                    pages.add((pa - 32) >> 12)
        pa = self.translate(top & 0xFFFFFFFF)
        if pa is not None:
            for back in (1, 32):
                if pa >= back:
                    pages.add((pa - back) >> 12)
        pages.add(LGUEST_DATA_PA >> 12)
        return pages

    ALL = -1     # snapshot key: the whole of RAM in one piece

    def snapshot(self, pages) -> dict:
        """Physical page number -> bytes; ``pages=None`` takes all of RAM
        (stored under ``Machine.ALL``)."""
        ram = self.ram
        if pages is None:
            return {self.ALL: self.ram_mm[:]}
        return {p: bytes(ram[p << 12:(p + 1) << 12]) for p in pages}

    def restore(self, snap: dict) -> None:
        ram = self.ram
        for p, data in snap.items():
            if p == self.ALL:
                ram[:] = data
            else:
                ram[p << 12:(p + 1) << 12] = data

    def _frame_top(self, vector: int) -> int:
        a, _ = struct.unpack_from("<II", self.ram, IDT_PA + 8 * vector)
        dpl = CODE_DPL.get((a >> 16) & 0xFFF8, 0)
        if dpl < self.bridge.cpl:
            return self.r32(TSS_PA + 12)
        return self.uc.reg_read(X.UC_X86_REG_ESP) & 0xFFFFFFFF

    def _deliver(self, plan: Plan, ev: Event) -> None:
        st = ev.state
        b = self.bridge
        if plan.mode in ("irq", "inject"):
            if ev.vector != 3 or not ev.is_int or ev.next_eip != (plan.event_eip + 1) & 0xFFFFFFFF:
                raise RuntimeError(f"the trigger should raise int3 at {plan.event_eip:#x}; got vector "
                                   f"{ev.vector} next_eip {ev.next_eip:#x}")
            # An external interrupt (or an injected exception) arriving at
            # the trigger's instruction boundary: the return address is the
            # trigger itself.
            b.eip.value = plan.event_eip
            pushed_eip = plan.event_eip
            vector, is_int = plan.vector, 0
            if plan.mode == "irq":
                err, kind = None, "irq"
            else:
                err, kind = ((plan.error_code or 0) if vector in ERR_VECTORS else None), "exception"
        else:
            vector, is_int = ev.vector, ev.is_int
            err = ev.error_code if (vector in ERR_VECTORS and not is_int) else None
            kind = "int" if is_int else "exception"
            pushed_eip = ev.next_eip if is_int else st["eip"]
            if is_int:
                # Unicorn has already moved eip past the INT; QEMU's frame
                # uses exception_next_eip, and a #GP below needs the INT's own
                # address.
                if plan.event_eip is None or not 1 <= ev.next_eip - plan.event_eip <= 2:
                    raise RuntimeError(f"INT at {plan.event_eip} but next_eip {ev.next_eip:#x}")
                _, gb = struct.unpack_from("<II", self.ram, IDT_PA + 8 * vector)
                if (gb >> 13) & 3 < b.cpl:
                    # A software INT through a gate whose DPL is below CPL: the
                    # CPU raises #GP(vector*8+2) at the INT instead.  QEMU makes
                    # that check inside the delivery and would longjmp out of
                    # this hook, so the same decision is taken here and QEMU
                    # delivers the #GP.
                    b.eip.value = plan.event_eip
                    vector, err, is_int, kind = 13, (vector << 3) | 2, 0, "exception"
                    pushed_eip = plan.event_eip
        top = self._frame_top(vector)
        pages = None if plan.full_ram else self.window_pages(top)
        before = self.snapshot(pages)
        if kind == "irq" and not b.irq_deliverable():
            plan.delivery = Delivery(ev, vector, None, pushed_eip, "held", st, None, top, before, before)
            return
        self.validate(vector, err is not None, is_int, kind == "irq")
        if kind == "irq":
            b.deliver_hardirq(vector)
        else:
            b.deliver_exception(vector, err if err is not None else 0, is_int)
        after = self.read_state()
        plan.delivery = Delivery(ev, vector, err, pushed_eip, kind, st, after, top,
                                 before, self.snapshot(pages))

    # ------------------------------------------------------------------
    # never let QEMU fault inside a hook
    # ------------------------------------------------------------------
    def validate(self, vector: int, has_err: bool, is_int: int, is_hw: bool) -> None:
        """Raise Undeliverable unless do_interrupt_protected would succeed."""
        b = self.bridge
        cpl = b.cpl
        a, g = struct.unpack_from("<II", self.ram, IDT_PA + 8 * vector)
        gtype = (g >> 8) & 0x1F
        if gtype not in (0xE, 0xF):
            raise Undeliverable(f"vector {vector}: gate type {gtype:#x}")
        if is_int and (g >> 13) & 3 < cpl:
            raise Undeliverable(f"vector {vector}: INT through a DPL-{(g >> 13) & 3} gate at CPL {cpl}")
        if not g & 0x8000:
            raise Undeliverable(f"vector {vector}: gate not present")
        sel = a >> 16
        if sel & 4 or (sel & 0xFFF8) not in CODE_DPL:
            raise Undeliverable(f"vector {vector}: gate selector {sel:#x} is not a code segment")
        dpl = CODE_DPL[sel & 0xFFF8]
        if dpl > cpl:
            raise Undeliverable(f"vector {vector}: handler DPL {dpl} above CPL {cpl}")
        words = 3 + (1 if has_err else 0)
        if dpl < cpl:
            if dpl != 1:
                raise Undeliverable(f"vector {vector}: only ring-1 handlers are modelled")
            esp, ss = struct.unpack_from("<II", self.ram, TSS_PA + 12)
            if ss & 0xFFFF != GUEST_DS:
                raise Undeliverable(f"TSS ss1 {ss:#x}")
            esp &= 0xFFFFFFFF
            words += 2
        else:
            esp = self.uc.reg_read(X.UC_X86_REG_ESP)
        for k in range(1, words + 1):
            slot = (esp - 4 * k) & 0xFFFFFFFF
            for byte in (slot, (slot + 3) & 0xFFFFFFFF):
                if self.translate(byte, write=True) is None:
                    raise Undeliverable(f"vector {vector}: frame slot {slot:#x} not writable")

    # ------------------------------------------------------------------
    # start-up probes: the bridge's fields must say what the probes did
    # ------------------------------------------------------------------
    def _verify_bridge(self) -> None:
        """Probes with known answers; any surprise is a BridgeError."""
        b = self.bridge
        if b.cpl != 0 or b.seg_selector(R_CS) != HOST_CS:
            raise BridgeError("QEMU's hflags/segs do not show the parked ring-0 state")
        base = dict(eax=0, ebx=0, ecx=0, edx=0, esi=0, edi=0, ebp=0, gs=0, fs=0,
                    ds=USER_DS, es=USER_DS, cs=USER_CS, ss=USER_DS, eflags=0x202,
                    esp=USER_STACK_END_VA - 64)
        ring1 = dict(base, cs=GUEST_CS, ss=GUEST_DS, ds=GUEST_DS, es=GUEST_DS, esp=KSTACK_END_VA - 256)
        captured = []

        def grab(uc, intno, ud):
            captured.append((intno, b.exception(), b.cpl, b.seg_selector(R_CS), b.seg_selector(R_SS)))

        def probe(regs):
            self.enter(regs)
            p = Plan("observe")
            self.plan = p
            try:
                self._run(ENTRY_VA, NEVER_VA, 16)
            finally:
                self.plan = None
            if p.exc is not None:
                raise p.exc
            return captured.pop()

        self.reset_ram()
        h = self.uc.hook_add(UC_HOOK_INTR, grab)
        try:
            # 1. int $0x41 from ring 3: exception_index, is_int, next_eip, CPL
            intno, (vec, is_int, err, nxt), cpl, cs, ss = probe(dict(base, eip=snippet_va("int41")))
            if (intno, vec, is_int, nxt, cpl, cs, ss) != (0x41, 0x41, 1, snippet_va("int41") + 2, 3, USER_CS, USER_DS):
                raise BridgeError(f"probe int $0x41: QEMU state reads {vec=} {is_int=} next_eip={nxt:#x} "
                                  f"{cpl=} cs={cs:#x} ss={ss:#x}")
            # 2. #GP with two chosen error codes, from ring 1: error_code
            for sel in (0x1238, 0x2460):
                self.w32(USER_DATA_PA + D_SEL_GP, sel)
                intno, (vec, is_int, err, nxt), cpl, cs, ss = probe(dict(ring1, eip=snippet_va("load_ds_gp")))
                if (intno, vec, is_int, err, cpl, cs) != (13, 13, 0, sel, 1, GUEST_CS):
                    raise BridgeError(f"probe #GP({sel:#x}): QEMU state reads {vec=} {is_int=} "
                                      f"err={err:#x} {cpl=} cs={cs:#x}")
        finally:
            self.uc.hook_del(h)
        # 3. known answer: int $0x80 from ring 3 through a DPL-3 trap gate,
        #    delivered by QEMU, must build the SDM's frame on the TSS stack
        #    and the handler's iret must get back to ring 3.
        self.reset_ram()
        esp1 = KSTACK_END_VA - 0x100
        self.set_tss(esp1)
        handler = handler_va(0x80, False)
        self.set_gate(0x80, *make_gate(handler, KERNEL_CS, 0xF, 3))
        regs = dict(base, eax=0x1111, eflags=0x246, eip=snippet_va("int80"))
        d = self.run_event(regs, Plan("native", event_eip=snippet_va("int80"))).delivery
        want_frame = [snippet_va("int80") + 2, USER_CS, 0x246, regs["esp"], USER_DS]
        got_frame = self.read_words(esp1 - 20, 5)
        if (d is None or d.after is None or d.after["eip"] != handler or d.after["cs"] != GUEST_CS
                or d.after["ss"] != GUEST_DS or d.after["esp"] != esp1 - 20
                or d.after.cpl != 1 or got_frame != want_frame or d.after["eflags"] != 0x246):
            raise BridgeError(f"known-answer delivery failed: frame {got_frame} state "
                              f"{d.after.regs if d and d.after else None}")
        out = self.run_handler(d.after, want_frame[0])
        if not out.returned or out.state.cpl != 3 or out.state["esp"] != regs["esp"]:
            raise BridgeError(f"the known-answer handler's iret did not return: {out}")
        # 4. an external interrupt: held with IF clear, and with IF set a
        #    same-ring frame through an interrupt gate that clears IF
        self.set_gate(0x20, *make_gate(handler_va(0x20, False), KERNEL_CS, 0xE, 0))
        trig = event_va("trigger")
        d = self.run_event(dict(ring1, eflags=0x2, eip=trig), Plan("irq", event_eip=trig, vector=0x20)).delivery
        if d is None or d.kind != "held":
            raise BridgeError("QEMU's pending-interrupt test let an IRQ in with IF clear")
        d = self.run_event(dict(ring1, eflags=0x202, eip=trig), Plan("irq", event_eip=trig, vector=0x20)).delivery
        got_frame = self.read_words(ring1["esp"] - 12, 3)
        if (d is None or d.kind != "irq" or got_frame != [trig, GUEST_CS, 0x202]
                or d.after["esp"] != ring1["esp"] - 12 or d.after["eflags"] != 0x2
                or d.after["eip"] != handler_va(0x20, False)):
            raise BridgeError(f"known-answer IRQ delivery failed: frame {got_frame}")
        self.reset_ram()


NEVER_VA = USER_CODE_VA + 2 * PAGE - 4     # a stop address no run reaches
