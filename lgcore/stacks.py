# SPDX-License-Identifier: GPL-2.0-only
"""Guest kernel stacks: where the CPU pushes a frame for a trap that arrives
while the guest is in userspace.

A trap that goes straight into the guest makes the CPU push its frame on the
ring-1 stack without the host looking.  If that stack were not mapped the
push would double-fault and the guest would die for no fault of its own, so
each of its pages must be pinned: present and writable.  The guest names the
top of the stack (the first byte above it), so the pages are the ones
holding esp1-1, esp1-1-4096, ...  The page count belongs to the guest, the
stack pointer to the vCPU.

- ``guest_set_stack(cpu, seg, esp, pages)``: the SET_STACK hypercall.  The
  segment must be a ring-1 one and there may be one or two pages; a bad
  request kills, yet what it asked for is stored, as lguest does.
- ``pin_stack_pages(cpu)``: pin every page.  A VMM with its own MMU sets
  ``guest.pin_page_hook = fn(cpu, vaddr)``; the default pin requires the
  page to be mapped present and writable in the guest's page tables and
  kills with lguest's "bad stack page" otherwise.

Both run on every guest context switch, so they are compiled methods of
``VCpu`` (lgcore/vcpu.pyx, H:260); these names take the vCPU first.
"""
from lgcore.vcpu import VCpu

pin_stack_pages = VCpu.pin_stack_pages
guest_set_stack = VCpu.guest_set_stack

__all__ = ["guest_set_stack", "pin_stack_pages"]
