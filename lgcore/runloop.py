# SPDX-License-Identifier: GPL-2.0-only
"""What lguest's host did between two guest entries: the hypercalls, the
host-first look at traps, delivering a pending IRQ, and the halted sleep.

A backend (a CPU emulator, KVM, a test double) supplies one function,
``enter(cpu)``, that runs the guest from the vCPU's registers until it
traps and returns ``(trapnum, errcode, cr2)`` with the registers saved back.
``run_guest`` is lguest's ``run_guest`` loop around it.
"""
from __future__ import annotations

import struct
from typing import Callable

from lgcore.clock import guest_set_clockevent, init_clockdev
from lgcore.constants import (
    CHANGED_IDT, FIRST_EXTERNAL_VECTOR, HCALL_RING_SIZE, IDT_ENTRIES, IRQS,
    LD_CR2, LD_HCALL_STATUS, LD_HCALLS, LD_KERNEL_ADDRESS, LD_NOIRQ_END,
    LD_NOIRQ_START, LD_PGDIR, LD_RESERVE_MEM, LD_SIZE, LD_TSC_KHZ,
    LHCALL_FLUSH_ASYNC, LHCALL_FLUSH_TLB, LHCALL_HALT, LHCALL_LGUEST_INIT,
    LHCALL_LOAD_GDT_ENTRY, LHCALL_LOAD_IDT_ENTRY, LHCALL_LOAD_TLS,
    LHCALL_NEW_PGTABLE, LHCALL_NOTIFY, LHCALL_SEND_INTERRUPTS,
    LHCALL_SET_CLOCKEVENT, LHCALL_SET_PGD, LHCALL_SET_PMD, LHCALL_SET_PTE,
    LHCALL_SET_STACK, LHCALL_SHUTDOWN, LHCALL_TS, NO_TRAP, SHUTDOWN_RESTART,
    TRAP_ENTRY,
)
from lgcore.stacks import guest_set_stack, pin_stack_pages
from lgcore.vcpu import VCpu

RESERVE_MEM = 4 << 20          # the Switcher's hole at the top, non-PAE
_U32 = struct.Struct("<I")
_ARGS = struct.Struct("<5I")

Hypercall = Callable[[VCpu, tuple], None]


def _hex(v: int) -> str:
    return "0x0" if v == 0 else f"{v:#x}"


def _signed(v: int) -> int:
    v &= 0xFFFFFFFF
    return v - (1 << 32) if v & 0x80000000 else v


# ---- user accesses to lguest_data from policy code ----

def _ld_get(cpu: VCpu, off: int) -> int | None:
    lg = cpu.guest
    base = lg.lguest_data
    if base is None or base + off + 4 > lg.mem_len:
        return None
    return _U32.unpack_from(lg.ram, base + off)[0]


def _ld_put(cpu: VCpu, off: int, val: int) -> bool:
    lg = cpu.guest
    base = lg.lguest_data
    if base is None or base + off + 4 > lg.mem_len:
        return False
    _U32.pack_into(lg.ram, base + off, val & 0xFFFFFFFF)
    return True


# ---- the hypercalls that reach this engine ----

def _lguest_init(cpu: VCpu, args: tuple) -> None:
    # LGUEST_INIT: the guest tells us where its lguest_data lives.  The struct
    # must pass the address check; from then on its fields are read and
    # written at will (and must be distrusted every time).
    lg = cpu.guest
    if lg.lguest_data is not None:
        lg.kill_guest("already have lguest_data")
        return
    addr = args[1]
    if not lg.lguest_address_ok(addr, LD_SIZE):
        lg.kill_guest(f"bad guest page {_hex(addr)}")
        return
    lg.lguest_data = addr
    if not _ld_put(cpu, LD_TSC_KHZ, 0):
        lg.kill_guest(f"bad guest page {_hex(addr)}")
        return
    if not lg.check_syscall_vector():
        lg.kill_guest("bad syscall vector")
    start = _ld_get(cpu, LD_NOIRQ_START)
    end = _ld_get(cpu, LD_NOIRQ_END)
    if start is None or end is None:
        lg.kill_guest(f"bad guest page {_hex(addr)}")
        return
    lg.noirq_start, lg.noirq_end = start, end
    cpu.write_timestamp()
    if (_ld_get(cpu, LD_KERNEL_ADDRESS) is None
            or not _ld_put(cpu, LD_RESERVE_MEM, RESERVE_MEM)
            or not _ld_put(cpu, LD_PGDIR, cpu.pgdir)):
        lg.kill_guest(f"bad guest page {_hex(addr)}")
        return
    pin_stack_pages(cpu)


def _shutdown(cpu: VCpu, args: tuple) -> None:
    # The guest's last words: up to 128 bytes of message at arg1.
    lg = cpu.guest
    raw = bytes(128)
    if lg.lguest_address_ok(args[1], 128):
        raw = bytes(lg.ram[args[1]:args[1] + 128])
    else:
        lg.kill_guest(f"bad read address {_hex(args[1])} len 128")
    msg = raw[:127].split(b"\0", 1)[0].decode("latin-1")
    lg.kill_guest(f"CRASH: {msg}")
    lg.shutdown_reason = "restart" if args[2] == SHUTDOWN_RESTART else "poweroff"


def _new_pgtable(cpu: VCpu, args: tuple) -> None:
    cpu.pgdir = args[1]
    pin_stack_pages(cpu)


def _flush_tlb(cpu: VCpu, args: tuple) -> None:
    # Without a shadow MMU nothing is cached; the stack is pinned again, as
    # lguest's guest_pagetable_clear_all() does.
    pin_stack_pages(cpu)


def _ignore(cpu: VCpu, args: tuple) -> None:
    pass


def _halt(cpu: VCpu, args: tuple) -> None:
    cpu.halted = 1


def _ts(cpu: VCpu, args: tuple) -> None:
    cpu.ts = args[1]


def _notify(cpu: VCpu, args: tuple) -> None:
    cpu.pending_notify = args[1]


HYPERCALLS: dict[int, Hypercall] = {
    LHCALL_FLUSH_ASYNC: _ignore,
    LHCALL_LGUEST_INIT: _lguest_init,
    LHCALL_SHUTDOWN: _shutdown,
    LHCALL_NEW_PGTABLE: _new_pgtable,
    LHCALL_FLUSH_TLB: _flush_tlb,
    LHCALL_LOAD_IDT_ENTRY: lambda cpu, a: cpu.load_guest_idt_entry(a[1], a[2], a[3]),
    LHCALL_SET_STACK: lambda cpu, a: guest_set_stack(cpu, a[1], a[2], a[3]),
    LHCALL_TS: _ts,
    LHCALL_SET_CLOCKEVENT: lambda cpu, a: guest_set_clockevent(cpu, a[1]),
    LHCALL_HALT: _halt,
    LHCALL_SET_PMD: _ignore,
    LHCALL_SET_PTE: _ignore,
    LHCALL_SET_PGD: _ignore,
    LHCALL_LOAD_TLS: _ignore,
    LHCALL_NOTIFY: _notify,
    LHCALL_LOAD_GDT_ENTRY: _ignore,
    LHCALL_SEND_INTERRUPTS: _ignore,
}


def do_hcall(cpu: VCpu, args: tuple) -> None:
    """Run one hypercall; ``args`` is (call, arg1, arg2, arg3, arg4).  The
    guest's own table (``guest.hypercalls``) is searched before lguest's."""
    extra = cpu.guest.__dict__.get("hypercalls")
    handler = extra.get(args[0]) if extra else None
    if handler is None:
        handler = HYPERCALLS.get(args[0])
    if handler is None:
        cpu.guest.kill_guest(f"Bad hypercall {_signed(args[0])}\n")
        return
    handler(cpu, args)


def do_async_hcalls(cpu: VCpu) -> None:
    """Run the calls the guest queued in lguest_data's ring, in order, until
    a slot is still free (0xFF) or the guest died."""
    lg = cpu.guest
    base = lg.lguest_data
    ram = lg.ram
    nxt = cpu.__dict__.get("next_hcall", 0)
    for _ in range(HCALL_RING_SIZE):
        status_at = base + LD_HCALL_STATUS + nxt
        args_at = base + LD_HCALLS + 20 * nxt
        if status_at + 1 > lg.mem_len:
            lg.kill_guest("Fetching async hypercalls")
            break
        if ram[status_at] == 0xFF:
            break
        if args_at + 20 > lg.mem_len:
            lg.kill_guest("Fetching async hypercalls")
            break
        args = _ARGS.unpack_from(ram, args_at)
        nxt = (nxt + 1) % HCALL_RING_SIZE
        do_hcall(cpu, args)
        ram[status_at] = 0xFF
        if lg.dead is not None or cpu.__dict__.get("pending_notify"):
            break
    cpu.next_hcall = nxt


def do_hypercalls(cpu: VCpu) -> None:
    """The hypercall the guest trapped with (eax = call, ebx.. = args)."""
    args = (cpu.eax, cpu.ebx, cpu.ecx, cpu.edx, cpu.esi)
    cpu.hcall = False
    if cpu.guest.lguest_data is None:
        if args[0] != LHCALL_LGUEST_INIT:
            cpu.guest.kill_guest(f"hypercall {_signed(args[0])} before INIT")
            return
    else:
        do_async_hcalls(cpu)
    if cpu.guest.dead is None and not cpu.__dict__.get("pending_notify"):
        do_hcall(cpu, args)


# ---- traps: what the host looks at before the guest does ----

def _emulate_insn(cpu: VCpu) -> bool:
    # A ring-1 guest kernel doing port I/O gets #GP with error code 0.  Like
    # lguest we pretend there is nothing there: an IN reads all ones, an OUT
    # is dropped, and the guest continues after the instruction.
    lg = cpu.guest
    pa = cpu.guest_pa(cpu.eip)
    if pa + 2 > lg.mem_len or lg.dead is not None:
        return False
    insn = lg.ram[pa]
    size, shift, at = 4, 0, 0
    if insn == 0x66:
        size, shift, at = 2, 16, 1
        if pa + 2 > lg.mem_len:
            return False
        insn = lg.ram[pa + 1]
    op = insn & 0xFE
    if op == 0xE4 or op == 0xE6:
        length = at + 2
    elif op == 0xEC or op == 0xEE:
        length = at + 1
    else:
        return False
    if op in (0xE4, 0xEC):
        if insn & 1:
            cpu.eax = 0xFFFFFFFF if size == 4 else cpu.eax | 0xFFFF
        else:
            cpu.eax = cpu.eax | 0xFF
    cpu.eip = (cpu.eip + length) & 0xFFFFFFFF
    return True


def _patch_vmcall(cpu: VCpu) -> bool:
    # This era's guests made hypercalls with `vmcall`; lguest rewrote each
    # call site into `int $0x1f; nop` and let the guest run it again.
    lg = cpu.guest
    pa = cpu.guest_pa(cpu.eip)
    if lg.dead is not None or pa + 3 > lg.mem_len:
        return False
    if bytes(lg.ram[pa:pa + 3]) != b"\x0f\x01\xc1":
        return False
    lg.ram[pa:pa + 3] = b"\xcd\x1f\x90"
    return True


def lguest_arch_handle_trap(cpu: VCpu, trapnum: int, errcode: int = 0, cr2: int = 0) -> None:
    """Host-first handling of the trap the guest left with, then reflect it
    into the guest or kill it with lguest's reason."""
    lg = cpu.guest
    cpu.trapnum = trapnum
    cpu.errcode = errcode & 0xFFFFFFFF
    if trapnum == 13:
        if errcode == 0 and (cpu.cs & 3) == 1 and _emulate_insn(cpu):
            return
        if (cpu.cs & 3) == 1 and _patch_vmcall(cpu):
            return
    elif trapnum == 6:
        if (cpu.cs & 3) == 1 and _patch_vmcall(cpu):
            return
    elif trapnum == 14:
        fixer = lg.__dict__.get("demand_page")
        if fixer is not None and fixer(cpu, cr2, errcode):
            return
        if lg.lguest_data is not None and not _ld_put(cpu, LD_CR2, cr2):
            lg.kill_guest("Writing cr2")
    elif trapnum == 7:
        if not cpu.__dict__.get("ts"):
            return
    elif FIRST_EXTERNAL_VECTOR <= trapnum < IDT_ENTRIES:
        # A host interrupt, already handled by the host.  The seed drops a
        # syscall vector that arrives here too; the later lguest reflects it.
        if not (lg.fixes & 0x8 and lg.could_be_syscall(trapnum)):
            return
    elif trapnum == TRAP_ENTRY:
        cpu.hcall = True
        return
    if not cpu.deliver_trap(trapnum):
        extra = cr2 if trapnum == 14 else errcode
        lg.kill_guest(f"unhandled trap {_signed(trapnum)} at {_hex(cpu.eip)} ({_hex(extra & 0xFFFFFFFF)})")


# ---- between entries ----

def copy_in_guest_info(cpu: VCpu, host_idt, defaults) -> None:
    """Refresh the host IDT from the guest's gates when they changed."""
    if cpu.changed & CHANGED_IDT and host_idt is not None:
        cpu.copy_traps(host_idt, defaults)
    cpu.changed = 0


RUN, HALTED, DEAD = "run", "halted", "dead"


def step(cpu: VCpu, host_idt=None, defaults=None,
         on_notify: Callable[[VCpu, int], None] | None = None) -> str:
    """Everything lguest's host did between two guest entries: the pending
    hypercall, a notification for the VMM, one pending IRQ, and the host IDT
    refresh.  Returns RUN (enter the guest now), HALTED (sleep until an IRQ
    is raised, then call again) or DEAD (``cpu.guest.dead`` says why)."""
    lg = cpu.guest
    if cpu.__dict__.get("hcall"):
        do_hypercalls(cpu)
    notify = cpu.__dict__.get("pending_notify")
    if notify:
        cpu.pending_notify = 0
        if on_notify is not None:
            on_notify(cpu, notify)
    if lg.dead is not None:
        return DEAD
    cpu.deliver_pending()
    if lg.dead is not None:
        return DEAD
    if cpu.halted:
        return HALTED
    copy_in_guest_info(cpu, host_idt, defaults)
    cpu.trapnum = NO_TRAP
    return RUN


def run_guest(cpu: VCpu, enter: Callable[[VCpu], tuple], *, host_idt=None,
              defaults=None, task=None, on_notify: Callable[[VCpu, int], None] | None = None,
              should_stop: Callable[[], bool] | None = None) -> str | None:
    """lguest's run_guest(): loop until the guest dies (returns the reason)
    or ``should_stop()`` says so, or it halts for good with no task to wake
    it (returns None)."""
    lg = cpu.guest
    if task is not None:
        cpu.task = task
    if "hrt" not in cpu.__dict__:
        init_clockdev(cpu)
    cpu.changed = cpu.changed | CHANGED_IDT
    while True:
        if should_stop is not None and should_stop():
            return None
        state = step(cpu, host_idt, defaults, on_notify)
        if state == DEAD:
            return lg.dead
        if state == HALTED:
            if cpu.task is not None:
                cpu.task.sleep_until_interrupt(cpu, timeout=0.5)
            elif cpu.interrupt_pending()[0] >= IRQS:
                return None
            continue
        trapnum, errcode, cr2 = enter(cpu)
        lguest_arch_handle_trap(cpu, trapnum, errcode, cr2)
