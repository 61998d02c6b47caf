# SPDX-License-Identifier: GPL-2.0-only
"""The randomized layer: hypothesis draws the ring, the event (software INT,
a real exception, an exception or IRQ at an instruction boundary), the
registers, eflags, the stacks (anywhere in the guest's kernel stacks, any
alignment), the gates (type, DPL, the selector the guest wrote) and the
guest's interrupt flag; every case is compared in both profiles.

Derandomized, so the default run is the same run every time.
"""
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from . import machine as M
from .checks import check
from .machine import (EFLAGS_IF, EFLAGS_NT, EFLAGS_RF, EFLAGS_TF, EFLAGS_VM, ERR_VECTORS,
                      GUEST_DS, USER_DS)
from .oracle import GATE_INT, GATE_TRAP, Gate, Scenario

pytestmark = pytest.mark.oracle

RANDOM_CASES = 2200        # >= 2,000 in the default run

NATIVE = ("div0", "step", "int3", "int3_long", "into", "bound", "ud2", "fnop", "iret_nt",
          "load_ds_np", "load_ss_np3", "load_ss_np1", "load_ds_gp", "hlt", "x87",
          "read_np", "write_np", "read_uro", "write_uro", "read_srw", "write_srw",
          "read_sro", "write_sro", "read_rsvd", "write_rsvd")
# Selectors a guest might write into a gate; lguest runs the handler through
# 0x61 whatever it was (the CPU side is normalised to that).
SELECTORS = (0x60, 0x60, 0x61, 0x62, 0x63, 0x10, 0x50, 0x73, 0x7B, 0xFFFF)
# #TS backlinks that make a task return fail (never a TSS selector: that
# would be a real task switch)
BACKLINKS = (0, 0x58, 0x68, 0x1238, 0xFFF8, 0x000C)
ARITH = 0x1 | 0x4 | 0x10 | 0x40 | 0x80 | 0x400 | 0x800        # CF PF AF ZF SF DF OF
MISC = 0x40000 | 0x80000 | 0x100000 | 0x200000                 # AC VIF VIP ID

KINDS = tuple((ring, kind) for ring in (3, 1) for kind in ("int", "native", "native", "inject", "irq"))
KSTACK_SPAN = M.KSTACK_END_VA - (M.KSTACK_VA + 32)


def _gate(code: int) -> Gate:
    """One integer -> a gate: type, DPL, the selector the guest wrote."""
    gtype = (GATE_INT, GATE_TRAP)[code & 1]
    return Gate(gtype, (code >> 1) & 3, SELECTORS[(code >> 3) % len(SELECTORS)], None)


gate_codes = st.integers(0, 8 * len(SELECTORS) - 1)


def _kstack(raw: int) -> int:
    """A stack top anywhere in the guest kernel's (contiguous) stacks;
    mostly 4-aligned, sometimes not."""
    a = M.KSTACK_VA + 32 + raw % (KSTACK_SPAN + 1)
    return a if raw & 0x7000_0000 == 0 else a & ~3


@st.composite
def random_scenarios(draw):
    # Few, wide draws (hypothesis' per-draw cost dominates otherwise).
    ring, kind = draw(st.sampled_from(KINDS))
    blob = draw(st.binary(min_size=48, max_size=48))
    w = [int.from_bytes(blob[i:i + 4], "little") for i in range(0, 48, 4)]
    regs = list(zip(("eax", "ebx", "ecx", "edx", "esi", "edi", "ebp"), w[:7]))
    e, r = w[7], w[8]
    # eflags: arithmetic flags, AC/VIF/VIP/ID, IOPL and the virtual IF at
    # random; TF, NT, RF (and VM, given to lgcore only) one time in eight
    eflags = (0x2 | (e & ARITH) | (e & MISC) | (e & EFLAGS_IF) | (e & 0x3000)
              | (EFLAGS_TF if r & 7 == 0 else 0) | (EFLAGS_NT if (r >> 3) & 7 == 0 else 0)
              | (EFLAGS_RF if (r >> 6) & 7 == 0 else 0))
    extra = EFLAGS_VM if (r >> 9) % 10 == 0 else 0
    segs = (USER_DS, 0) if ring == 3 else (GUEST_DS, USER_DS, 0)
    regs += [(name, segs[(r >> (12 + 2 * i)) % len(segs)]) for i, name in enumerate(("ds", "es", "fs", "gs"))]
    if ring == 3:
        esp, esp1 = w[9], _kstack(w[10])     # the user esp is never written: any value
    else:
        esp, esp1 = _kstack(w[9]), M.KSTACK_END_VA
    misc = w[11]
    gate_list = []
    quirk = None
    kw = {}
    if kind == "int":
        vector = draw(st.integers(0, 255))
        g = _gate(draw(gate_codes))
        # the CPU pushes no error code for an INT: its handler pops none
        g = Gate(g.gate_type, g.dpl, g.selector, False)
        gate_list.append((vector, g))
        # #GP(vector*8+2) when the DPL forbids the INT; #DB with TF
        gate_list += [(v, _gate(code)) for v, code in ((13, misc & 0xFF), (1, misc >> 8 & 0xFF))
                      if v != vector]
        snippet, event = f"int{vector:02x}", "native"
        if vector in ERR_VECTORS and g.dpl >= ring:
            quirk = "int_err_vector"
    elif kind == "native":
        snippet, event = draw(st.sampled_from(NATIVE)), "native"
        g = _gate(draw(gate_codes))
        gate_list += [(v, g) for v in range(32)]        # whatever the snippet raises
        if snippet == "iret_nt":
            eflags |= EFLAGS_NT
        kw = dict(cr0_ts=bool(misc & 1), tss_backlink=BACKLINKS[(misc >> 1) % len(BACKLINKS)],
                  gp_selector=misc >> 16)
    elif kind == "inject":
        vector = draw(st.integers(0, 31))
        snippet, event = "trigger", "inject"
        gate_list.append((vector, _gate(draw(gate_codes))))
        kw = dict(vector=vector, error_code=misc if vector in ERR_VECTORS else None)
    else:
        irq = draw(st.integers(0, 31))
        snippet, event = "trigger", "irq"
        gate_list.append((32 + irq, _gate(draw(gate_codes))))
        kw = dict(vector=32 + irq)
    return Scenario(f"random {kind} {snippet} ring {ring}", event, snippet, ring=ring,
                    gates=tuple(gate_list), regs=tuple(regs), eflags=eflags, esp=esp,
                    esp1=esp1, lgcore_extra_eflags=extra, quirk=quirk, **kw)


_ran = []


@settings(max_examples=RANDOM_CASES, derandomize=True, deadline=None, database=None,
          suppress_health_check=list(HealthCheck), print_blob=False)
@given(scenario=random_scenarios())
def test_random_cases(oracle, scenario):
    try:
        check(oracle, scenario, random=True)
    except AssertionError as exc:
        raise AssertionError(f"{exc}\nscenario: {scenario!r}") from None
    _ran.append(1)


def test_random_case_count():
    """The default run compares at least 2,000 random cases."""
    if not _ran:
        pytest.skip("test_random_cases did not run in this session")
    assert len(_ran) >= 2000, len(_ran)
