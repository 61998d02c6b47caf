# SPDX-License-Identifier: GPL-2.0-only
"""The fixed oracle scenarios (the random layer is in test_random.py).

Each builder returns ``Scenario`` objects; the tests compare each of them
in both profiles (QEMU delivers once, lgcore once per profile).
"""
from __future__ import annotations

from . import machine as M
from .machine import (EFLAGS_NT, EFLAGS_OF, EFLAGS_RF, EFLAGS_TF, EFLAGS_VM,
                      ERR_VECTORS, KERNEL_CS, PAGE)
from .oracle import GATE_INT, GATE_TRAP, Gate, Scenario

RINGS = (3, 1)
GATE_TYPES = (GATE_INT, GATE_TRAP)
TNAME = {GATE_INT: "intgate", GATE_TRAP: "trapgate"}

# A varied register file so that every register is seen to survive.
REGS = (("eax", 0x11111111), ("ebx", 0x22222222), ("ecx", 0x33333333), ("edx", 0x44444444),
        ("esi", 0x55555555), ("edi", 0x66666666), ("ebp", 0x77777777))


def _ring_regs(ring: int) -> tuple:
    # fs/gs set too: a ring-1 handler must leave them alone
    if ring == 3:
        return REGS + (("fs", M.USER_DS), ("gs", 0))
    return REGS + (("fs", M.GUEST_DS), ("gs", M.USER_DS))


def _all_gates(gate_type: int, dpl: int = 0) -> tuple:
    """Every vector through the same kind of gate (error-code handlers where
    the CPU pushes a code)."""
    return tuple((v, Gate(gate_type, dpl)) for v in range(256))


# ---------------------------------------------------------------------------
# exceptions raised by real instructions
# ---------------------------------------------------------------------------
# label, snippet (ring 3, ring 1), expected vector, extra Scenario fields
NATIVE = (
    ("#DE div by 0", ("div0", "div0"), 0, {}),
    ("#DB single step", ("step", "step"), 1, {"eflags": 0x202 | EFLAGS_TF}),
    ("#BP int3", ("int3", "int3"), 3, {"gates": ((3, Gate(GATE_INT, 3)),)}),
    ("#BP int $3", ("int3_long", "int3_long"), 3, {"gates": ((3, Gate(GATE_INT, 3)),)}),
    ("#OF into", ("into", "into"), 4, {"eflags": 0x202 | EFLAGS_OF, "gates": ((4, Gate(GATE_INT, 3)),)}),
    ("#BR bound", ("bound", "bound"), 5, {}),
    ("#UD ud2", ("ud2", "ud2"), 6, {}),
    ("#NM fnop with CR0.TS", ("fnop", "fnop"), 7, {"cr0_ts": True}),
    ("#TS iret with NT", ("iret_nt", "iret_nt"), 10, {"eflags": 0x202 | EFLAGS_NT, "tss_backlink": 0x58}),
    ("#NP not-present data segment", ("load_ds_np", "load_ds_np"), 11, {}),
    ("#SS not-present stack segment", ("load_ss_np3", "load_ss_np1"), 12, {}),
    ("#GP selector past the GDT", ("load_ds_gp", "load_ds_gp"), 13, {"gp_selector": 0x1238}),
    ("#GP selector with TI and RPL", ("load_ds_gp", "load_ds_gp"), 13, {"gp_selector": 0xFFFF}),
    ("#GP hlt outside ring 0", ("hlt", "hlt"), 13, {}),
    ("#PF write to a not-present page", ("write_np", "write_np"), 14, {}),
    ("#MF x87 divide by zero", ("x87", "x87"), 16, {}),
)


def native_scenarios():
    """(scenario, expected vector) for every real exception, from both rings,
    through interrupt and trap gates."""
    out = []
    for label, snippets, vector, extra in NATIVE:
        for ring, snippet in zip(RINGS, snippets):
            for gt in GATE_TYPES:
                gates = dict(extra.get("gates", ()))
                base = gates.get(vector, Gate())
                gates[vector] = Gate(gt, base.dpl, base.selector, base.error_handler)
                kw = dict(extra, gates=tuple(gates.items()))
                out.append((Scenario(f"{label} ring {ring} {TNAME[gt]}", "native", snippet, ring=ring,
                                     regs=_ring_regs(ring), full_ram=True, **kw), vector))
    return out


# ---------------------------------------------------------------------------
# page faults
# ---------------------------------------------------------------------------
# (snippet, ring, error code the MMU gives): every combination a 2-level MMU
# with CR0.WP, CR4.PSE and no SMEP/NX can raise.  P=1 read from ring 1 has
# no cause but a reserved bit.
PF_GENUINE = (
    ("read_np", 3, 0x4), ("write_np", 3, 0x6), ("read_srw", 3, 0x5), ("write_srw", 3, 0x7),
    ("write_uro", 3, 0x7), ("read_sro", 3, 0x5), ("write_sro", 3, 0x7),
    ("read_rsvd", 3, 0xD), ("write_rsvd", 3, 0xF),
    ("read_np", 1, 0x0), ("write_np", 1, 0x2), ("write_uro", 1, 0x3), ("write_sro", 1, 0x3),
    ("read_rsvd", 1, 0x9), ("write_rsvd", 1, 0xB),
)


def pf_genuine_scenarios():
    return [(Scenario(f"#PF {snip} ring {ring} err {err:#x}", "native", snip, ring=ring,
                      regs=_ring_regs(ring), full_ram=True), err)
            for snip, ring, err in PF_GENUINE]


def pf_every_error_code():
    """Every combination of P, W/R, U/S, RSVD, I/D (and PK, SGX), delivered
    by QEMU as a #PF raised at an instruction boundary."""
    codes = list(range(32)) + [0x20, 0x8000, 0x8007, 0xFFFFFFFF]
    return [Scenario(f"#PF injected err {err:#x} ring {ring}", "inject", "trigger", ring=ring,
                     vector=14, error_code=err, regs=_ring_regs(ring))
            for ring in RINGS for err in codes]


# ---------------------------------------------------------------------------
# every exception vector, with and without error code
# ---------------------------------------------------------------------------
def _err_for(vector: int) -> int:
    # selector-shaped codes for the segment faults, anything for the rest
    return {8: 0, 10: 0x58, 11: 0x88 | 2, 12: 0x90, 13: 0x1238, 14: 0x7, 17: 0}.get(vector, 0)


def injected_scenarios():
    out = []
    for v in range(32):
        for ring in RINGS:
            for gt in GATE_TYPES:
                out.append(Scenario(f"vector {v} injected ring {ring} {TNAME[gt]}", "inject", "trigger",
                                    ring=ring, vector=v, error_code=_err_for(v) if v in ERR_VECTORS else None,
                                    gates=((v, Gate(gt, 0)),), regs=_ring_regs(ring)))
    return out


# ---------------------------------------------------------------------------
# software INT through gates of DPL 0/1/3
# ---------------------------------------------------------------------------
def int_scenarios(vector: int):
    """int $vector from ring 3 and ring 1 through DPL 0, 1 and 3 gates.  A
    gate with DPL below CPL makes the CPU raise #GP(vector*8+2) instead."""
    out = []
    for ring in RINGS:
        for dpl in (0, 1, 3):
            gt = GATE_TRAP if (vector + dpl) & 1 else GATE_INT
            quirk = "int_err_vector" if vector in ERR_VECTORS and dpl >= ring else None
            out.append(Scenario(f"int ${vector:#x} ring {ring} DPL {dpl} {TNAME[gt]}", "native",
                                f"int{vector:02x}", ring=ring,
                                gates=((vector, Gate(gt, dpl, KERNEL_CS, False)),),
                                regs=_ring_regs(ring), quirk=quirk))
    return out


# ---------------------------------------------------------------------------
# IRQs
# ---------------------------------------------------------------------------
def irq_scenarios(irq: int):
    """IRQ ``irq`` (vector 32+irq) from both rings through interrupt and trap
    gates of DPL 0 and 3 (an external interrupt ignores the gate's DPL), and
    with the guest's interrupts off (irq_enabled = 0: held by both)."""
    v = 32 + irq
    out = []
    for ring in RINGS:
        for gt in GATE_TYPES:
            for dpl in (0, 3):
                out.append(Scenario(f"IRQ {irq} ring {ring} {TNAME[gt]} DPL {dpl}", "irq", "trigger",
                                    ring=ring, vector=v, gates=((v, Gate(gt, dpl)),),
                                    regs=_ring_regs(ring)))
        out.append(Scenario(f"IRQ {irq} ring {ring} irq_enabled=0", "irq", "trigger", ring=ring,
                            vector=v, eflags=0x2, regs=_ring_regs(ring)))
    return out


# ---------------------------------------------------------------------------
# stacks near page boundaries
# ---------------------------------------------------------------------------
BOUNDARY = M.KSTACK_VA + 0x10000       # a page boundary inside contiguous kernel stacks
OFFSETS = (0, 4, 8, 12, 16, 20, 24, 28, 1, 2, 3, 0xFFC, 0xFF8)


def stack_scenarios():
    """Frames that start on, cross, or end at a page boundary -- on the TSS
    stack (from ring 3) and on the interrupted stack (ring 1), with and
    without an error code."""
    out = []
    for k in OFFSETS:
        top = BOUNDARY + k
        for label, snippet in (("#GP (err)", "load_ds_gp"), ("#UD", "ud2")):
            for gt in GATE_TYPES:
                out.append(Scenario(f"{label} ring 3 esp1=boundary+{k:#x} {TNAME[gt]}", "native", snippet,
                                    ring=3, esp1=top, gates=((13, Gate(gt)), (6, Gate(gt))),
                                    regs=_ring_regs(3), full_ram=True))
                out.append(Scenario(f"{label} ring 1 esp=boundary+{k:#x} {TNAME[gt]}", "native", snippet,
                                    ring=1, esp=top, gates=((13, Gate(gt)), (6, Gate(gt))),
                                    regs=_ring_regs(1), full_ram=True))
        out.append(Scenario(f"IRQ 0 ring 1 esp=boundary+{k:#x}", "irq", "trigger", ring=1, vector=32,
                            esp=top, regs=_ring_regs(1), full_ram=True))
    # the very bottom and top of the kernel stack area
    out.append(Scenario("#GP ring 3 esp1 at the top of the stacks", "native", "load_ds_gp", ring=3,
                        esp1=M.KSTACK_END_VA, regs=_ring_regs(3), full_ram=True))
    out.append(Scenario("#GP ring 1 esp 24 bytes above the bottom", "native", "load_ds_gp", ring=1,
                        esp=M.KSTACK_VA + 24, regs=_ring_regs(1), full_ram=True))
    return out


def quirk_scenarios():
    """lguest assumptions a CPU does not share (see oracle.QUIRKS)."""
    return [
        Scenario("esp1 at the top of the guest's mapped memory", "native", "load_ds_gp", ring=3,
                 esp1=M.RAM_END_VA, regs=_ring_regs(3), quirk="stack_top_unmapped"),
        Scenario("ring-1 esp at the top of the guest's mapped memory", "irq", "trigger", ring=1,
                 vector=32, esp=M.RAM_END_VA, regs=_ring_regs(1), quirk="stack_top_unmapped"),
        Scenario("frame across two pages that are not physically adjacent", "native", "load_ds_gp",
                 ring=3, esp1=M.SCRAMBLED_VA + 3 * PAGE + 8, regs=_ring_regs(3),
                 quirk="stack_discontiguous"),
        Scenario("frame ending at the last byte of guest RAM", "native", "ud2", ring=3,
                 esp1=M.EDGE_VA + PAGE, regs=_ring_regs(3), quirk="address_check"),
    ]


# ---------------------------------------------------------------------------
# the guest's interrupt flag and the seed's eflags divergence
# ---------------------------------------------------------------------------
def virtual_if_scenarios():
    """Traps with the guest's interrupts on and off, through both gate
    kinds: the pushed IF is the virtual IF, and only an interrupt gate
    turns it off for the handler."""
    out = []
    for ring in RINGS:
        for gt in GATE_TYPES:
            for eflags in (0x202, 0x2, 0x8D7, 0x3002):
                for label, snippet, vec in (("#GP", "load_ds_gp", 13), ("int $0x80", "int80", 0x80)):
                    out.append(Scenario(f"{label} ring {ring} {TNAME[gt]} eflags {eflags:#x}", "native",
                                        snippet, ring=ring, eflags=eflags,
                                        gates=((vec, Gate(gt, 3, KERNEL_CS, vec in ERR_VECTORS)),),
                                        regs=_ring_regs(ring)))
    return out


DIVERGENT = (("TF", EFLAGS_TF, 0), ("NT", EFLAGS_NT, 0), ("RF", EFLAGS_RF, 0), ("VM", 0, EFLAGS_VM),
             ("TF+NT+RF+VM", EFLAGS_TF | EFLAGS_NT | EFLAGS_RF, EFLAGS_VM))


def seed_divergence_scenarios():
    """TF, NT, RF, VM set when the event arrives: the CPU clears them for
    the handler, the seed does not (the hardened profile does)."""
    out = []
    for name, bits, extra in DIVERGENT:
        for ring in RINGS:
            out.append(Scenario(f"{name} int $0x80 ring {ring}", "native", "int80", ring=ring,
                                eflags=0x202 | bits, lgcore_extra_eflags=extra,
                                gates=((0x80, Gate(GATE_TRAP, 3)),), regs=_ring_regs(ring)))
            out.append(Scenario(f"{name} IRQ 0 ring {ring}", "irq", "trigger", ring=ring, vector=32,
                                eflags=0x202 | bits, lgcore_extra_eflags=extra, regs=_ring_regs(ring)))
            out.append(Scenario(f"{name} #PF ring {ring}", "inject", "trigger", ring=ring, vector=14,
                                error_code=6, eflags=0x202 | bits, lgcore_extra_eflags=extra,
                                regs=_ring_regs(ring)))
    return out


def selector_scenarios():
    """Whatever selector the guest's gate names, lguest runs the handler
    through 0x61 (the normalisation under test: lgcore must force it)."""
    return [Scenario(f"gate selector {sel:#x} ring {ring}", "inject", "trigger", ring=ring, vector=13,
                     error_code=0, gates=((13, Gate(GATE_INT, 0, sel)),), regs=_ring_regs(ring))
            for sel in (0x60, 0x61, 0x62, 0x63, 0x10, 0x50, 0x73, 0xFFFF) for ring in RINGS]
