# SPDX-License-Identifier: GPL-2.0-only
"""The reference side of the run loop: what lguest's host does around
interrupts_and_traps.c, written over the C original's entry points.

The original file is only the interrupt and trap engine.  A guest reaches it
through code in other lguest files: the hypercall switch and the async
hypercall ring (hypercalls.c), the host-first look at a trap
(x86/core.c lguest_arch_handle_trap, emulate_insn, is_hypercall,
rewrite_hypercall) and the run_guest loop (core.c).  This module follows the
2.6.32 text of those functions (the generation the seed belongs to, see
../shared/docs/lguest-facts.md section 1) step by step, and every step that
is an interrupts_and_traps.c function, or one of lguest's guest-memory
helpers, calls the compiled original or the shim's helper.

lgcore's own version of this layer is ``lgcore.runloop``; the fuzzer
compares the two.  What this model leaves out, because lgcore has no shadow
MMU and no GDT, is done the way lgcore does it, so those paths are exercised
but not compared: the shadow page-table and segment hypercalls (SET_PTE,
SET_PGD, LOAD_TLS, LOAD_GDT_ENTRY are ignored -- where the original kills
for a GDT index >= 32 or an unreadable TLS array, and sets CHANGED_GDT*;
NEW_PGTABLE switches pgdir and re-pins the stack, where the original
re-pins only on a miss in its randomly replaced 4-entry pgdir cache) and
demand_page() (a page fault always goes to the guest).  The Switcher's own
state (SYSENTER, the host cr3, the per-CPU pages) has no counterpart.

Where the original prints a host pointer ("bad guest page %p"), the text
lgcore chose (the guest-physical address) is used, since no userspace build
can reproduce a kernel pointer.
"""
from __future__ import annotations

import struct

from lgcore.constants import (
    HCALL_RING_SIZE, LD_CR2, LD_HCALL_STATUS, LD_HCALLS, LD_KERNEL_ADDRESS,
    LD_NOIRQ_END, LD_NOIRQ_START, LD_PGDIR, LD_RESERVE_MEM, LD_SIZE,
    LD_TSC_KHZ, LHCALL_FLUSH_ASYNC, LHCALL_FLUSH_TLB, LHCALL_HALT,
    LHCALL_LGUEST_INIT, LHCALL_LOAD_IDT_ENTRY, LHCALL_NOTIFY,
    LHCALL_SEND_INTERRUPTS, LHCALL_SET_CLOCKEVENT, LHCALL_SET_STACK,
    LHCALL_LOAD_GDT_ENTRY, LHCALL_LOAD_TLS, LHCALL_NEW_PGTABLE, LHCALL_SET_PGD,
    LHCALL_SET_PTE, LHCALL_SHUTDOWN, LHCALL_TS, NO_TRAP, TRAP_ENTRY,
)

_U32 = struct.Struct("<I")
_ARGS = struct.Struct("<5I")

RESERVE_MEM = 4            # MiB, non-PAE (page_tables.c)
SWITCHER_PGD_INDEX = 0xFFC00000 >> 22   # pgd_index(SWITCHER_ADDR), non-PAE
RUN, HALTED, DEAD = "run", "halted", "dead"


def hexk(v: int) -> str:
    """The kernel's %#lx: 0 prints as 0x0."""
    return "0x0" if v == 0 else f"{v:#x}"


def signed(v: int) -> int:
    v &= 0xFFFFFFFF
    return v - (1 << 32) if v & 0x80000000 else v


class RefRunLoop:
    """Per-vCPU run-loop state of the original (cpu->hcall, ts,
    pending_notify, next_hcall, arch.last_pagefault) over one kshim guest."""

    def __init__(self, ref, rg, ram, gout, cout, compat=frozenset()):
        # The known, unfixed findings (fuzz/known.py) whose lgcore behaviour
        # this model copies; a finding's switch is tested as
        # `"F<n>" in self.compat` at the one place it differs.
        self.compat = compat
        self.ffi = ref.ffi
        self.lib = ref.lib
        self.ptr = rg.ptr
        self.ram = ram
        self.mem_len = len(ram)
        self.G = gout
        self.C = cout
        self.hcall = False
        self.ts = 0
        self.pending_notify = 0
        self.next_hcall = 0
        self.last_pagefault = 0
        self.notified = []

    # ---- the shim's state, as the original sees it ----

    def dead(self) -> bool:
        return self.lib.kshim_dead_reason(self.ptr) != self.ffi.NULL

    def kill(self, text) -> None:
        if isinstance(text, str):
            text = text.encode("latin-1")
        self.lib.kshim_kill_text(self.ptr, text)

    def state(self):
        self.lib.kshim_state_out(self.ptr, self.G, self.C)
        return self.G, self.C

    def lguest_data(self):
        g, _ = self.state()
        return g.lguest_data if g.has_lguest_data else None

    # get_user/put_user on lguest_data: bounded by the RAM buffer only
    # (linux/uaccess.h of the shim), -EFAULT otherwise.
    def get_user(self, off: int):
        base = self.lguest_data()
        if base is None or base + off + 4 > self.mem_len:
            return None
        return _U32.unpack_from(self.ram, base + off)[0]

    def put_user(self, off: int, val: int) -> bool:
        base = self.lguest_data()
        if base is None or base + off + 4 > self.mem_len:
            return False
        _U32.pack_into(self.ram, base + off, val & 0xFFFFFFFF)
        return True

    # __lgread/__lgwrite of core.c with the shim's checks (kshim.c).
    def _ok(self, addr: int, n: int) -> bool:
        addr &= 0xFFFFFFFF
        return bool(self.lib.kshim_lguest_address_ok(self.ptr, addr, n)) and addr + n <= self.mem_len

    def lgread(self, addr: int, n: int) -> bytes:
        addr &= 0xFFFFFFFF
        if not self._ok(addr, n):
            self.kill(f"bad read address {hexk(addr)} len {n}")
            return bytes(n)
        return bytes(self.ram[addr:addr + n])

    def lgwrite(self, addr: int, data: bytes) -> None:
        addr &= 0xFFFFFFFF
        if not self._ok(addr, len(data)):
            self.kill(f"bad write address {hexk(addr)} len {len(data)}")
            return
        self.ram[addr:addr + len(data)] = data

    def set_halted(self, v: int) -> None:
        _, c = self.state()
        c.halted = v
        self.lib.kshim_state_in(self.ptr, self.ffi.NULL, c)

    def guest_pagetable_clear_all(self) -> None:
        self.lib.kshim_pin_stack_pages(self.ptr)

    # ---- hypercalls.c ----

    def do_hcall(self, args) -> None:
        call = args[0]
        lib, ptr = self.lib, self.ptr
        if call in (LHCALL_FLUSH_ASYNC, LHCALL_SEND_INTERRUPTS):
            pass
        elif call == LHCALL_LGUEST_INIT:
            self.kill("already have lguest_data")
        elif call == LHCALL_SHUTDOWN:
            msg = bytearray(self.lgread(args[1], 128))
            msg[127] = 0
            self.kill(b"CRASH: " + bytes(msg).split(b"\0", 1)[0])
        elif call == LHCALL_FLUSH_TLB:
            if args[1]:
                self.guest_pagetable_clear_all()
            # else guest_pagetable_flush_user(): shadow entries only
        elif call == LHCALL_SET_STACK:
            lib.kshim_guest_set_stack(ptr, args[1], args[2], args[3])
        elif call == LHCALL_SET_CLOCKEVENT:
            lib.kshim_guest_set_clockevent(ptr, args[1])
        elif call == LHCALL_TS:
            self.ts = args[1]
        elif call == LHCALL_HALT:
            self.set_halted(1)
        elif call == LHCALL_NOTIFY:
            self.pending_notify = args[1]
        elif call == LHCALL_LOAD_IDT_ENTRY:        # lguest_arch_do_hcall
            lib.kshim_load_guest_idt_entry(ptr, args[1], args[2], args[3])
        elif call in (LHCALL_SET_PTE, LHCALL_SET_PGD, LHCALL_LOAD_TLS, LHCALL_LOAD_GDT_ENTRY):
            pass            # not modelled: see the module docstring
        elif call == LHCALL_NEW_PGTABLE:
            # Not modelled either: lguest re-pins only when the page
            # directory is not in its 4-entry cache, whose victim is chosen
            # at random.  Done as lgcore does it, to keep the case going.
            _, c = self.state()
            c.pgdir = args[1]
            self.lib.kshim_state_in(self.ptr, self.ffi.NULL, c)
            self.guest_pagetable_clear_all()
        else:
            # lguest_arch_do_hcall(): -EIO for anything else (SET_PMD
            # included: non-PAE).
            self.kill(f"Bad hypercall {signed(call)}\n")

    def do_async_hcalls(self) -> None:
        base = self.lguest_data()
        at = base + LD_HCALL_STATUS
        if at + HCALL_RING_SIZE > self.mem_len:
            return                      # copy_from_user failed
        st = bytes(self.ram[at:at + HCALL_RING_SIZE])
        for _ in range(HCALL_RING_SIZE):
            n = self.next_hcall
            if st[n] == 0xFF:
                break
            self.next_hcall = (n + 1) % HCALL_RING_SIZE
            a = base + LD_HCALLS + 20 * n
            if a + 20 > self.mem_len:
                self.kill("Fetching async hypercalls")
                break
            self.do_hcall(_ARGS.unpack_from(self.ram, a))
            if not self.put_user_byte(base + LD_HCALL_STATUS + n, 0xFF):
                self.kill("Writing result for async hypercall")
                break
            if self.pending_notify:
                break

    def put_user_byte(self, addr: int, val: int) -> bool:
        if addr + 1 > self.mem_len:
            return False
        self.ram[addr] = val
        return True

    def initialize(self, args) -> None:
        lib, ptr = self.lib, self.ptr
        if args[0] != LHCALL_LGUEST_INIT:
            self.kill(f"hypercall {signed(args[0])} before INIT")
            return
        # lguest_arch_init_hypercalls()
        addr = args[1]
        bad = f"bad guest page {hexk(addr)}"
        if not lib.kshim_lguest_address_ok(ptr, addr, LD_SIZE):
            self.kill(bad)
            return
        g, _ = self.state()
        g.lguest_data, g.has_lguest_data = addr, 1
        lib.kshim_state_in(ptr, g, self.ffi.NULL)
        if not self.put_user(LD_TSC_KHZ, 0):
            self.kill(bad)
            return
        if not lib.kshim_check_syscall_vector(ptr):
            self.kill("bad syscall vector")
            return
        start, end = self.get_user(LD_NOIRQ_START), self.get_user(LD_NOIRQ_END)
        if start is None or end is None:
            self.kill(bad)
            return
        g, _ = self.state()
        g.noirq_start, g.noirq_end = start, end
        lib.kshim_state_in(ptr, g, self.ffi.NULL)
        lib.kshim_write_timestamp(ptr)
        if self.dead():
            return
        # page_table_guest_data_init()
        _, c = self.state()
        kaddr = self.get_user(LD_KERNEL_ADDRESS)
        if (kaddr is None or not self.put_user(LD_RESERVE_MEM, RESERVE_MEM << 20)
                or not self.put_user(LD_PGDIR, c.pgdir)):
            self.kill(bad)
            return
        if (kaddr >> 22) >= SWITCHER_PGD_INDEX:
            self.kill(f"bad kernel address {hexk(kaddr)}")
            return
        self.guest_pagetable_clear_all()

    def do_hypercalls(self) -> None:
        regs = self.lib.kshim_regs(self.ptr)
        if self.lguest_data() is None:
            self.initialize((regs.eax, regs.ebx, regs.ecx, regs.edx, regs.esi))
            self.hcall = False
            return
        self.do_async_hcalls()
        if not self.pending_notify:
            self.do_hcall((regs.eax, regs.ebx, regs.ecx, regs.edx, regs.esi))
            self.hcall = False

    # ---- x86/core.c: the host's look at a trap ----

    def emulate_insn(self) -> bool:
        regs = self.lib.kshim_regs(self.ptr)
        physaddr = self.lib.kshim_guest_pa(self.ptr, regs.eip)
        if (regs.cs & 3) != 1:
            return False
        insnlen = 0
        shift = 0
        insn = self.lgread(physaddr, 1)[0]
        if insn == 0x66:
            shift = 16
            insnlen = 1
            insn = self.lgread((physaddr + insnlen) & 0xFFFFFFFF, 1)[0]
        op = insn & 0xFE
        if op == 0xE4:
            insnlen += 2
            into = True
        elif op == 0xEC:
            insnlen += 1
            into = True
        elif op == 0xE6:
            insnlen += 2
            into = False
        elif op == 0xEE:
            insnlen += 1
            into = False
        else:
            return False
        if into:
            if insn & 1:
                regs.eax = 0xFFFFFFFF
            else:
                regs.eax = (regs.eax | (0xFFFF << shift)) & 0xFFFFFFFF
        regs.eip = (regs.eip + insnlen) & 0xFFFFFFFF
        return True

    def is_hypercall(self) -> bool:
        regs = self.lib.kshim_regs(self.ptr)
        if (regs.cs & 3) != 1:
            return False
        return self.lgread(self.lib.kshim_guest_pa(self.ptr, regs.eip), 3) == b"\x0f\x01\xc1"

    def rewrite_hypercall(self) -> None:
        regs = self.lib.kshim_regs(self.ptr)
        self.lgwrite(self.lib.kshim_guest_pa(self.ptr, regs.eip), b"\xcd\x1f\x90")
        self.guest_pagetable_clear_all()

    def handle_trap(self, trapnum: int, errcode: int, cr2: int) -> None:
        """Set what the Switcher saves (trapnum, errcode, cr2), then
        lguest_arch_handle_trap()."""
        lib, ptr = self.lib, self.ptr
        regs = lib.kshim_regs(ptr)
        regs.trapnum = trapnum
        regs.errcode = errcode
        if trapnum == 14:
            self.last_pagefault = cr2
        fallthrough = False
        if trapnum == 13:
            if regs.errcode == 0 and self.emulate_insn():
                return
            fallthrough = True
        if trapnum == 6 or fallthrough:
            if self.is_hypercall():
                self.rewrite_hypercall()
                return
        elif trapnum == 14:
            # demand_page(): no shadow MMU, the fault always goes on.
            if self.lguest_data() is not None and not self.put_user(LD_CR2, self.last_pagefault):
                self.kill("Writing cr2")
        elif trapnum == 7:
            if not self.ts:
                return
        elif 32 <= trapnum <= 255:
            return
        elif trapnum == TRAP_ENTRY:
            self.hcall = True
            return
        if not lib.kshim_deliver_trap(ptr, regs.trapnum):
            extra = self.last_pagefault if regs.trapnum == 14 else regs.errcode
            self.kill(f"unhandled trap {signed(regs.trapnum)} at {hexk(regs.eip)} ({hexk(extra)})")

    # ---- core.c run_guest(): one pass up to the guest entry ----

    def step(self) -> str:
        lib, ptr, ffi = self.lib, self.ptr, self.ffi
        more = ffi.new("int *")
        while True:
            if self.dead():
                return DEAD
            if self.hcall:
                self.do_hypercalls()
            if self.pending_notify:
                # run_guest returns it to the Launcher; its next read()
                # clears the flag and calls run_guest again.
                self.notified.append(self.pending_notify)
                self.pending_notify = 0
                continue
            more[0] = 0
            irq = lib.kshim_interrupt_pending(ptr, more)
            if irq < 32:
                lib.kshim_try_deliver_interrupt(ptr, irq, more[0])
            if self.dead():
                return DEAD
            _, c = self.state()
            if c.halted:
                return HALTED
            # copy_in_guest_info() (the host IDT itself is compared by the
            # COPY_TRAPS operation) and run_guest_once().
            c.changed = 0
            c.regs.trapnum = NO_TRAP
            lib.kshim_state_in(ptr, ffi.NULL, c)
            return RUN
