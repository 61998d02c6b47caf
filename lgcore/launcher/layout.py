# SPDX-License-Identifier: GPL-2.0-only
"""The demo machine's memory map and the launcher's private ABI with its
guest.  Guest-side twin: ``guest/lguest.inc`` (keep the two in step)."""

# ---- guest-physical RAM ----
RAM_SIZE = 4 << 20             # one page table maps all of it at PAGE_OFFSET
PAGE_SIZE = 4096
PGDIR_PA = 0x1000              # page directory the launcher builds
KERNEL_PT_PA = 0x2000          # page table: PAGE_OFFSET.. -> 0..RAM_SIZE
KERNEL_PA = 0x100000           # the guest kernel image
PAGE_OFFSET = 0xC0000000

# ---- the Switcher: host-owned, mapped at the top 4 MiB like lguest's ----
SWITCHER_VA = 0xFFC00000       # guest-virtual == Unicorn-physical here
SWITCHER_SIZE = 0x4000
SW_CODE = 0x0000               # page 0: the entry stub and the probes
SW_ENTER = SW_CODE + 0x00      # pops a struct lguest_regs, then iret
SW_PROBE_GP = SW_CODE + 0x20   # mov %ax,%ds (a #GP with a chosen error code)
SW_PROBE_INT = SW_CODE + 0x28  # int $0x41
SW_STUBS = SW_CODE + 0x100     # 256 x 8 bytes: where the host gates point
SW_STOP = SW_CODE + 0xFF0      # emu_start's stop address: never executed
SW_GDT = 0x1000                # page 1: GDT, TSS, host stack
SW_TSS = 0x1100
SW_STACK_TOP = 0x2000
SW_FRAME = SW_STACK_TOP - 72   # struct lguest_regs the stub pops
SW_IDT = 0x2000                # page 2: the host IDT
SW_PT = 0x3000                 # page 3: page table for the Switcher's 4 MiB

GDT_ENTRIES = 32
TSS_SELECTOR = 0x80
HOST_CS, HOST_DS = 0x50, 0x58  # LGUEST_CS / LGUEST_DS

# ---- the boot header the launcher patches (16 bytes into the image) ----
HDR_OFFSET = 16
HDR_MAGIC = 0x4743474C         # "LGCG"
HDR_TICKS = 8
HDR_DELTA = 12
HDR_FAULT = 16
HDR_USER_TICKS = 20
HDR_END = 24

GUEST_FAULTS = {               # --guest-fault name -> header value
    "none": 0,
    "bad-idt-type": 1,
    "bad-stack-segment": 2,
    "unhandled-trap": 3,
}

# ---- the launcher's own hypercalls ----
LHCALL_CONSOLE_WRITE = 100     # arg1 = gpa of text, arg2 = length
LHCALL_DEVICE_IRQ = 101        # arg1 = irq, arg2 = delay us (0: now), arg3 = gpa of status
LHCALL_REPORT = 102            # arg1 = checks run, arg2 = checks failed

# A kick out of the guest looks like a host interrupt to lguest's
# handle_trap (any vector 32..255 but the syscall one): nothing to reflect.
HOST_KICK_VECTOR = 0xEF
