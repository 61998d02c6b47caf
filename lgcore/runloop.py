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
    TRAP_ENTRY, GUEST_PL,
)
from lgcore.stacks import guest_set_stack, pin_stack_pages
from lgcore.vcpu import FIXES, VCpu

RESERVE_MEM = 4 << 20          # the Switcher's hole at the top, non-PAE
SWITCHER_PGD_INDEX = 0xFFC00000 >> 22
_ARGS = struct.Struct("<5I")

Hypercall = Callable[[VCpu, tuple], None]


def _hex(v: int) -> str:
    return "0x0" if v == 0 else f"{v:#x}"


def _signed(v: int) -> int:
    v &= 0xFFFFFFFF
    return v - (1 << 32) if v & 0x80000000 else v


# ---- user accesses to lguest_data from policy code ----
# The engine's own get_user/put_user: the same bounds (the RAM buffer) and
# the same "before LGUEST_INIT everything faults" rule as the nogil code.

def _ld_get(cpu: VCpu, off: int) -> int | None:
    return cpu.guest.get_user(off)


def _ld_put(cpu: VCpu, off: int, val: int) -> bool:
    return cpu.guest.put_user(off, val & 0xFFFFFFFF)


def _lgread_bytes(cpu: VCpu, addr: int, n: int) -> bytes:
    # __lgread(): the address check, then the bytes; a failure kills and
    # reads as zeroes.
    lg = cpu.guest
    addr &= 0xFFFFFFFF
    if not lg.lguest_address_ok(addr, n):
        lg.kill_guest(f"bad read address {_hex(addr)} len {n}")
        return bytes(n)
    return bytes(lg.ram[addr:addr + n])


def _lgwrite_bytes(cpu: VCpu, addr: int, data: bytes) -> None:
    lg = cpu.guest
    addr &= 0xFFFFFFFF
    if not lg.lguest_address_ok(addr, len(data)):
        lg.kill_guest(f"bad write address {_hex(addr)} len {len(data)}")
        return
    lg.ram[addr:addr + len(data)] = data


# ---- the hypercalls that reach this engine ----

def _lguest_init(cpu: VCpu, args: tuple) -> None:
    # LGUEST_INIT: the guest tells us where its lguest_data lives.  The struct
    # must pass the address check; from then on its fields are read and
    # written at will (and must be distrusted every time).  lguest's "bad
    # guest page %p" printed a host pointer; we print the guest-physical
    # address the guest gave.
    lg = cpu.guest
    if lg.lguest_data is not None:
        lg.kill_guest("already have lguest_data")
        return
    addr = args[1]
    if not lg.lguest_address_ok(addr, LD_SIZE):
        lg.kill_guest(f"bad guest page {_hex(addr)}")
        return
    lg.lguest_data = addr
    if not _ld_put(cpu, LD_TSC_KHZ, 0):          # no usable TSC to offer
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
    kernel_address = _ld_get(cpu, LD_KERNEL_ADDRESS)
    if (kernel_address is None
            or not _ld_put(cpu, LD_RESERVE_MEM, RESERVE_MEM)
            or not _ld_put(cpu, LD_PGDIR, cpu.pgdir)):
        lg.kill_guest(f"bad guest page {_hex(addr)}")
        return
    # The kernel's mappings must stay below the Switcher's top 4 MiB.
    if kernel_address >> 22 >= SWITCHER_PGD_INDEX:
        lg.kill_guest(f"bad kernel address {_hex(kernel_address)}")
    lg.kernel_address = kernel_address
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
    # Without a shadow MMU nothing is cached.  A full flush (arg1 != 0) pins
    # the stack again, as lguest's guest_pagetable_clear_all() does; a
    # userspace-only flush (arg1 == 0) does not.
    if args[1]:
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
    """Run the calls the guest queued in lguest_data's ring, in ring order
    from where the last pass stopped, until a slot is still free (0xFF) or
    the VMM has a notification to serve.  As in lguest, the status bytes
    are read once, up front (an unreadable status array runs nothing), and
    a call's arguments are fetched only when its turn comes."""
    lg = cpu.guest
    base = lg.lguest_data
    mem_len = lg.mem_len
    status_at = base + LD_HCALL_STATUS
    if status_at + HCALL_RING_SIZE > mem_len:
        return
    ram = lg.ram
    status = bytes(ram[status_at:status_at + HCALL_RING_SIZE])
    for _ in range(HCALL_RING_SIZE):
        n = cpu.__dict__.get("next_hcall", 0)
        if status[n] == 0xFF:
            break
        cpu.next_hcall = (n + 1) % HCALL_RING_SIZE
        args_at = base + LD_HCALLS + 20 * n
        if args_at + 20 > mem_len:
            lg.kill_guest("Fetching async hypercalls")
            break
        do_hcall(cpu, _ARGS.unpack_from(ram, args_at))
        ram[status_at + n] = 0xFF
        if cpu.__dict__.get("pending_notify"):
            break


def do_hypercalls(cpu: VCpu) -> None:
    """The hypercall the guest trapped with (eax = call, ebx.. = args).
    Before LGUEST_INIT it must be LGUEST_INIT; after it, the async ring is
    run first, then the direct call unless a notification is pending."""
    args = (cpu.eax, cpu.ebx, cpu.ecx, cpu.edx, cpu.esi)
    if cpu.guest.lguest_data is None:
        cpu.hcall = False
        if args[0] != LHCALL_LGUEST_INIT:
            cpu.guest.kill_guest(f"hypercall {_signed(args[0])} before INIT")
            return
        _lguest_init(cpu, args)
        return
    do_async_hcalls(cpu)
    # A NOTIFY in the ring stops here: the trapped call stays pending and
    # runs once the VMM has served the notification (step() loops).
    if not cpu.__dict__.get("pending_notify"):
        cpu.hcall = False
        do_hcall(cpu, args)


# ---- traps: what the host looks at before the guest does ----

def _emulate_insn(cpu: VCpu) -> bool:
    # A ring-1 guest kernel doing port I/O gets #GP with error code 0.  Like
    # lguest we pretend there is nothing there: the guest continues after
    # the instruction, an OUT is dropped and an IN reads ones -- lguest's
    # ones: all of eax for the 16/32-bit forms (opcode bit 0 set), else
    # 0xFFFF shifted left 16 with an operand-size prefix, 0 without.
    # lguest translates eip before it looks at the ring: a #GP at an
    # unmapped userspace eip kills the guest here.
    pa = cpu.guest_pa(cpu.eip)
    if (cpu.cs & 3) != GUEST_PL:
        return False
    insn = _lgread_bytes(cpu, pa, 1)[0]
    insnlen = shift = 0
    if insn == 0x66:
        shift, insnlen = 16, 1
        insn = _lgread_bytes(cpu, pa + 1, 1)[0]
    op = insn & 0xFE
    if op == 0xE4:              # in imm8
        insnlen, is_in = insnlen + 2, True
    elif op == 0xEC:            # in (%dx)
        insnlen, is_in = insnlen + 1, True
    elif op == 0xE6:            # out imm8
        insnlen, is_in = insnlen + 2, False
    elif op == 0xEE:            # out (%dx)
        insnlen, is_in = insnlen + 1, False
    else:
        return False
    if is_in:
        if insn & 1:
            cpu.eax = 0xFFFFFFFF
        else:
            cpu.eax = cpu.eax | ((0xFFFF << shift) & 0xFFFFFFFF)
    cpu.eip = (cpu.eip + insnlen) & 0xFFFFFFFF
    return True


def _is_hypercall(cpu: VCpu) -> bool:
    # This era's guests made hypercalls with `vmcall` (a #UD, or a #GP under
    # KVM), from their ring-1 kernel.
    if (cpu.cs & 3) != GUEST_PL:
        return False
    return _lgread_bytes(cpu, cpu.guest_pa(cpu.eip), 3) == b"\x0f\x01\xc1"


def _rewrite_hypercall(cpu: VCpu) -> None:
    # ... and lguest patched each call site into `int $0x1f; nop`, dropped
    # its shadow page tables (which re-pins the stack) and let the guest run
    # the patched instruction again: eip does not move.
    _lgwrite_bytes(cpu, cpu.guest_pa(cpu.eip), b"\xcd\x1f\x90")
    pin_stack_pages(cpu)


def lguest_arch_handle_trap(cpu: VCpu, trapnum: int, errcode: int = 0, cr2: int = 0) -> None:
    """Host-first handling of the trap the guest left with, then reflect it
    into the guest or kill it with lguest's reason."""
    lg = cpu.guest
    trapnum &= 0xFFFFFFFF
    cr2 &= 0xFFFFFFFF
    cpu.trapnum = trapnum
    cpu.errcode = errcode & 0xFFFFFFFF
    if trapnum == 13 or trapnum == 6:
        if trapnum == 13 and errcode == 0 and _emulate_insn(cpu):
            return
        if _is_hypercall(cpu):
            _rewrite_hypercall(cpu)
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
        if not (lg.fixes & FIXES["syscall_reflect"] and lg.could_be_syscall(trapnum)):
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


class Step(str):
    """What ``step()`` decided.  It *is* one of the strings RUN, HALTED or
    DEAD (compare with ``==``), and ``irq`` tells which IRQ this step built
    a frame for (None if it delivered none)."""

    irq: int | None

    def __new__(cls, state: str, irq: int | None = None) -> "Step":
        self = super().__new__(cls, state)
        self.irq = irq
        return self

    def __repr__(self) -> str:
        return f"Step({str(self)!r}, irq={self.irq!r})"


def step(cpu: VCpu, host_idt=None, defaults=None,
         on_notify: Callable[[VCpu, int], None] | None = None) -> Step:
    """Everything lguest's host did between two guest entries: the pending
    hypercall, a notification for the VMM, one pending IRQ, and the host IDT
    refresh.  Returns RUN (enter the guest now), HALTED (sleep until an IRQ
    is raised, then call again) or DEAD (``cpu.guest.dead`` says why), as a
    ``Step`` whose ``irq`` is the IRQ delivered on the way, if any."""
    lg = cpu.guest
    while True:
        if cpu.__dict__.get("hcall"):
            do_hypercalls(cpu)
        notify = cpu.__dict__.get("pending_notify")
        if not notify:
            break
        # lguest returned to the Launcher here and ran the rest of the
        # hypercalls on its next read(): serve it, then go on with them.
        cpu.pending_notify = 0
        if on_notify is not None:
            on_notify(cpu, notify)
        if lg.dead is not None or not cpu.__dict__.get("hcall"):
            break
    if lg.dead is not None:
        return Step(DEAD)
    irq = cpu.deliver_pending()
    if lg.dead is not None:
        return Step(DEAD, irq)
    if cpu.halted:
        return Step(HALTED, irq)
    copy_in_guest_info(cpu, host_idt, defaults)
    cpu.trapnum = NO_TRAP
    return Step(RUN, irq)


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
