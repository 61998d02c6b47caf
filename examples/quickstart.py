# SPDX-License-Identifier: GPL-2.0-only
"""Deliver a timer IRQ and a user page fault into a guest RAM buffer and show
the frames lgcore built, the way lguest's host would have."""
import struct

import lgcore
from lgcore.constants import LD_CR2, LD_IRQ_ENABLED

RAM = 16 << 20
LGUEST_DATA = 0x1000           # guest-physical address of struct lguest_data
KSTACK_TOP = 0x00200000        # the guest kernel stack (paging off: virtual == physical)


def words(ram, top, n):
    return [struct.unpack_from("<I", ram, top - 4 * (i + 1))[0] for i in range(n)]


def show(title, cpu, top, n):
    print(f"{title}: handler {cpu.cs:#x}:{cpu.eip:#010x}, stack {cpu.ss:#x}:{cpu.esp:#010x}")
    # From userspace the frame starts with the old ss:esp (lguest-facts 6).
    names = ["ss", "esp", "eflags", "cs", "eip", "errcode"][:n]
    for name, value in zip(names, words(cpu.guest.ram, top, n)):
        print(f"    {name:8} {value:#010x}")


def main():
    ram = bytearray(RAM)
    guest = lgcore.Guest(ram, clock=lgcore.VirtualClock(1_700_000_000 * 10**9))
    cpu = guest.add_vcpu()
    guest.lguest_data = LGUEST_DATA
    struct.pack_into("<I", ram, LGUEST_DATA + LD_IRQ_ENABLED, lgcore.EFLAGS_IF)
    lgcore.guest_set_stack(cpu, lgcore.GUEST_DS, KSTACK_TOP, 1)

    # The guest's gates, as its LOAD_IDT_ENTRY hypercalls would set them:
    # the timer (IRQ 0 = vector 32) and #PF, both interrupt gates.
    cpu.load_guest_idt_entry(32, 0x00600530, 0xC1008E00)
    cpu.load_guest_idt_entry(14, 0x00601234, 0xC1008E00)

    # Guest userspace is running...
    cpu.cs, cpu.ss, cpu.eip, cpu.esp, cpu.eflags = 0x73, 0x7B, 0x08048000, 0xBFFFF000, 0x202

    # ...when its clockevent fires: IRQ 0 is raised and delivered before the
    # next guest entry.
    cpu.set_interrupt(0)
    irq = cpu.deliver_pending()
    print(f"delivered IRQ {irq}; irq_enabled is now {struct.unpack_from('<I', ram, LGUEST_DATA)[0]:#x}")
    show("timer IRQ from ring 3", cpu, KSTACK_TOP, 5)

    # Back in userspace, the guest touches an unmapped page: the host records
    # cr2 in lguest_data, then reflects #PF with its error code.
    cpu.cs, cpu.ss, cpu.eip, cpu.esp = 0x73, 0x7B, 0x08048010, 0xBFFFF000
    struct.pack_into("<I", ram, LGUEST_DATA + LD_IRQ_ENABLED, lgcore.EFLAGS_IF)
    from lgcore.runloop import lguest_arch_handle_trap
    lguest_arch_handle_trap(cpu, 14, errcode=6, cr2=0xDEADB000)
    print(f"cr2 in lguest_data: {struct.unpack_from('<I', ram, LGUEST_DATA + LD_CR2)[0]:#x}")
    show("page fault from ring 3", cpu, KSTACK_TOP, 6)
    print("guest is", "alive" if guest.dead is None else f"dead: {guest.dead}")
    return 0 if guest.dead is None else 1


if __name__ == "__main__":
    raise SystemExit(main())
