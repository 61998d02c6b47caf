# SPDX-License-Identifier: GPL-2.0-only
"""Guest kernel stacks (H:260): where the CPU pushes a frame for a trap that
arrives while the guest is in userspace."""
from lgcore.constants import GUEST_PL, PAGE_SIZE
from lgcore.vcpu import VCpu


# H:260
# A trap that goes straight into the guest makes the CPU push its frame on
# the ring-1 stack without the host looking.  If that stack were not mapped
# the push would double-fault and the guest would die for no fault of its
# own, so each of its pages must be pinned: present and writable.  The guest
# names the top of the stack (the first byte above it), so the pages are the
# ones holding esp1-1, esp1-1-4096, ...  The page count belongs to the guest,
# the stack pointer to the vCPU.  (A VMM with its own MMU sets
# ``guest.pin_page_hook``.)
def pin_stack_pages(cpu: VCpu) -> None:
    """Pin every page of the vCPU's guest kernel stack.  Once the guest is
    dead the remaining pages are skipped (the seed keeps calling pin_page to
    no effect: the first kill reason already stuck)."""
    lg = cpu.guest
    hook = lg.pin_page_hook
    if hook is None:
        cpu._pin_stack_default()
        return
    esp1 = cpu.esp1
    for i in range(lg.stack_pages):
        if lg.dead is not None:
            break
        hook(cpu, (esp1 - 1 - i * PAGE_SIZE) & 0xFFFFFFFF)


# The SET_STACK hypercall: the guest's kernel stack changes on every context
# switch.  The segment must be a ring-1 one and there may be one or two
# pages; a bad request kills, yet what it asked for is stored and pinned all
# the same, as lguest does.  ss1 is kept to 16 bits.
def guest_set_stack(cpu: VCpu, seg: int, esp: int, pages: int) -> None:
    """The SET_STACK hypercall: record and pin the guest's kernel stack."""
    seg &= 0xFFFFFFFF
    esp &= 0xFFFFFFFF
    pages &= 0xFFFFFFFF
    lg = cpu.guest
    if (seg & 3) != GUEST_PL:
        lg.kill_guest(f"bad stack segment {seg - (1 << 32) if seg & 0x80000000 else seg}")
    if pages > 2:
        lg.kill_guest(f"bad stack pages {pages}")
    cpu._set_stack(seg, esp, pages)
    pin_stack_pages(cpu)
# :*
