# SPDX-License-Identifier: GPL-2.0-only
"""Write fuzz inputs by hand: an encoder that mirrors ``fuzz.harness.Input``
and the order in which ``Case`` reads it, and the hand-written scenarios
used as seeds (fuzz/corpus/crafted-*) and as the regression inputs of the
findings the fuzzer is slow to reach by itself.

    python -m fuzz.craft            # (re)write fuzz/corpus/crafted-*
"""
from __future__ import annotations

import struct
from pathlib import Path

from fuzz.harness import Case, HCALLS, RAM_SIZES

OPS = {name: i for i, name in enumerate(Case.ENGINE + Case.RUNLOOP)}
OPS["hypercall"] = len(Case.ENGINE)          # the first of its two slots
OPS["trap"] = len(Case.ENGINE) + 3
OPS["step"] = len(Case.ENGINE) + 5


class Enc:
    """Bytes that ``Case`` decodes into the state and operations given."""

    def __init__(self):
        self.b = bytearray()

    def u8(self, v):
        self.b.append(v & 0xFF)
        return self

    def u16(self, v):
        self.b += struct.pack("<H", v & 0xFFFF)
        return self

    def u32(self, v):
        self.b += struct.pack("<I", v & 0xFFFFFFFF)
        return self

    def v32(self, v):
        """A literal u32 through Case.v32 (selector 0xFF, raw)."""
        return self.u8(0xFF).u32(v)

    def setup(self, *, ram=0x10000, ld=0x1000, has_ld=True, user=False, paging=False,
              halted=False, pfn_sel=0, sv=0x80, now=1_000_000_000, esp1=None, ss1=None,
              stack_pages=1, pgdir_page=2, pending=0, changed=0, regs=(), idt=(), pokes=()):
        flags = (0x01 if has_ld else 0) | (0x02 if halted else 0) | (0x04 if user else 0) \
            | (0x08 if paging else 0) | (0x40 if esp1 is not None else 0) \
            | (0x80 if ss1 is not None else 0)
        self.u8(RAM_SIZES.index(ram)).u8(flags)
        pages = ram >> 12
        room = max((pages << 12) - 1396 - 4, 0)
        assert ld % 4 == 0 and ld <= room
        self.u16(ld // 4)
        self.u8(pfn_sel)
        self.u8({0x80: 0x00, 0x40: 0xA0}.get(sv, sv))
        self.u32(now >> 28).u32(now & ((1 << 28) - 1))
        if esp1 is not None:
            self.v32(esp1)
        else:
            self.u8(0)
        if ss1 is not None:
            self.v32(ss1)
        self.u8(stack_pages).u8(pgdir_page)
        if paging:
            self.u8(0)
        self.u32(pending).u8(changed)
        self.u8(len(regs))
        for idx, val in regs:
            self.u8(idx).v32(val)
        self.u8(len(idt))
        for n, lo, hi in idt:
            self.u8(n).v32(lo).v32(hi)
        self.u8(len(pokes))
        for addr, val in pokes:             # selector 5: addr = u16 % mem_len
            self.u8(5).u16(addr).v32(val)
        return self

    def op(self, name):
        return self.u8(OPS[name])

    def hcall_args(self, call, a1=0, a2=0, a3=0, a4=0, raw=False):
        self.u8(HCALLS.index(call))
        for a in (a1, a2, a3, a4):
            self.v32(a)
        if call in (1, 6):                 # LGUEST_INIT / LOAD_IDT_ENTRY: keep as given
            self.u8(0xFF)
        return self

    def hypercall(self, call, a1=0, a2=0, a3=0, a4=0):
        return self.op("hypercall").hcall_args(call, a1, a2, a3, a4)

    def queue_async(self, slot, call, a1=0, a2=0, a3=0, a4=0):
        return self.op("queue_async").u8(slot).hcall_args(call, a1, a2, a3, a4)

    def trap(self, trapnum, errcode=0, cr2=0):
        self.op("trap").u8(0xFF).v32(trapnum)
        if errcode:
            self.u8(0xFF).v32(errcode)
        else:
            self.u8(0)
        if trapnum == 14:
            self.v32(cr2)
        return self

    def bytes(self):
        # The cases end when the input does; pad nothing.
        return bytes(self.b)


GATE_INT = 0xC1008E00
GATE_TRAP = 0xC100EF00


def scenarios() -> dict[str, bytes]:
    s = {}
    # A guest that runs LGUEST_INIT itself, loads gates and takes the timer
    # from userspace, then a page fault.
    e = Enc().setup(has_ld=False, pokes=((0x1000 + 1392, 0x80), (0x1000, 0x200)))
    e.hypercall(1, 0x1000).op("step")
    e.hypercall(6, 0x20, 0x00600530, GATE_INT).op("step")
    e.hypercall(6, 14, 0x00601234, GATE_INT).op("step")
    e.hypercall(7, 0x69, 0xC000, 1).op("step")
    e.hypercall(9, 1000).op("step")
    e.op("advance").u8(0x80).v32(5000)
    e.op("setreg").u8(14).v32(0x73).op("setreg").u8(17).v32(0x7B).op("step")
    e.trap(14, 6, 0xBFFFE000).op("step")
    s["init-timer-pagefault"] = e.bytes()

    # The async ring: three calls queued, then a hypercall runs them.
    e = Enc().setup()
    e.queue_async(0, 6, 0x21, 0x00600600, GATE_INT)
    e.queue_async(1, 7, 0x69, 0xC000, 1)
    e.queue_async(2, 9, 777)
    e.hypercall(19).op("step").op("step")
    s["async-ring"] = e.bytes()

    # #GP emulation of port I/O from the guest kernel, and vmcall patching.
    e = Enc().setup(pokes=((0x3000, 0xED6610E4), (0x3004, 0x90C1010F)),
                    regs=((13, 0x3000), (0, 0x12345678)))
    e.trap(13).trap(13).trap(13).trap(6).op("step")
    s["gp-emulation-vmcall"] = e.bytes()

    # Halt, then an IRQ wakes the guest.
    e = Enc().setup(idt=((0x21, 0x00610530, GATE_INT),))
    e.hypercall(10).op("step").op("set_interrupt").u8(1).op("step").op("step")
    s["halt-wake"] = e.bytes()

    # --- fixed while the fuzzer was being written (lgcore/runloop.py): ---
    # F3: the opcode fetch of #GP emulation goes through lguest's address
    # check (eip on the page past pfn_limit; an IN in the last byte of RAM).
    e = Enc().setup(pfn_sel=1, pokes=((0xFFF0, 0xECECECEC),), regs=((13, 0xFFF0),))
    e.trap(13).op("step")
    s["fixed-F3-fetch-past-pfn-limit"] = e.bytes()
    e = Enc().setup(pokes=((0xFFFC, 0xEC000000),), regs=((13, 0xFFFF),))
    e.trap(13).op("step")
    s["fixed-F3-in-last-byte"] = e.bytes()
    # F4: the value an IN leaves in eax.
    e = Enc().setup(pokes=((0x3000, 0xECEC66EC),), regs=((13, 0x3000), (0, 0x12345678)))
    e.trap(13).trap(13).op("step")
    s["fixed-F4-in-value"] = e.bytes()
    # F5: the vmcall check reads 3 bytes through the address check.
    e = Enc().setup(pfn_sel=1, pokes=((0xFFF0, 0x90C1010F),), regs=((13, 0xFFF0),))
    e.trap(6).op("step")
    s["fixed-F5-vmcall-past-pfn-limit"] = e.bytes()
    # F6: patching a vmcall re-pins the stack (here: an unpinnable one).
    e = Enc().setup(esp1=0xF0000000, stack_pages=1, pokes=((0x3000, 0x90C1010F),),
                    regs=((13, 0x3000),))
    e.trap(6).op("step")
    s["fixed-F6-vmcall-repin"] = e.bytes()
    # F10: LGUEST_INIT with kernel_address in the Switcher's top 4 MiB.
    e = Enc().setup(has_ld=False, pokes=((0x1000 + 1392, 0x80), (0x1000 + 1388, 0xFFC00000)))
    e.hypercall(1, 0x1000).op("step")
    s["fixed-F10-kernel-address"] = e.bytes()

    # --- finding F9: FLUSH_TLB(0) with an unpinnable kernel stack ---
    e = Enc().setup(esp1=0xF0000000, stack_pages=1)
    e.hypercall(5, 0).op("step")
    s["fixed-F9-flush-tlb-user"] = e.bytes()

    # --- finding F11: a NOTIFY in the ring, then LOAD_IDT_ENTRY ---
    e = Enc().setup()
    e.queue_async(0, 17, 5)
    e.hypercall(6, 0x20, 0x00600530, GATE_INT).op("step").op("step")
    s["fixed-F11-notify-drops-hcall"] = e.bytes()

    # --- finding F8: SET_PMD on a non-PAE host ---
    e = Enc().setup()
    e.hypercall(13, 0x1000, 5).op("step")
    s["fixed-F8-set-pmd"] = e.bytes()

    # --- finding F2: #GP(0) from ring 3 at an unmapped eip, paging on ---
    e = Enc().setup(user=True, paging=True, idt=((13, 0x00610000, GATE_INT),))
    e.trap(13).op("step")
    s["fixed-F2-emulate-pa-order"] = e.bytes()
    return s


def main() -> None:
    out = Path(__file__).resolve().parent / "corpus"
    out.mkdir(exist_ok=True)
    for name, data in scenarios().items():
        if not name.startswith("F"):
            (out / f"crafted-{name}").write_bytes(data)


if __name__ == "__main__":
    main()
