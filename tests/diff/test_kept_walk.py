# SPDX-License-Identifier: GPL-2.0-only
"""The fused step keeps its last stack walk (lg_stack_pa) and re-checks it
on every delivery; the original walks the guest's page tables every time.
The random suite seldom reaches the fused fast path with paging on and a
page-table entry rewritten between two deliveries, so this test builds a
paged ring-1 guest where the fast path is taken and feeds it random runs
of deliveries, rewrites of the stack's directory and table entries (remap,
unmap), moves of esp (and of esp1, with the guest in user mode) across the
mapped pages, re-enabled interrupts and new IRQs, the whole state compared
after every step as in the rest of the suite.  A kept walk that trusted an entry the guest rewrote fails here
(the kept-walk-skips-table-entry mutant in mutants.py)."""
from __future__ import annotations

import struct

from hypothesis import given, strategies as st

from .harness import LD_IRQ_ENABLED, GuestState
from .runner import diff_settings, share, with_seed

LD = 0x1000
PGDIR = 0x2000
TABLE = 0x3000
STACK_VA = (0xC0004000, 0xC0005000, 0xC0006000)     # three mapped stack pages
FRAMES = (0x4000, 0x5000, 0x6000, 0x9000, 0xA000)    # pages they may map to
RING1 = GuestState().with_regs(ss=0x69, cs=0x61, eflags=0x202, eip=0xC0100000,
                               esp=0xC0006000)


def _u32(v: int) -> bytes:
    return struct.pack("<I", v)


def _pde_at(va: int) -> int:
    return PGDIR + 4 * (va >> 22)


def _pte_at(va: int) -> int:
    return TABLE + 4 * ((va >> 12) & 0x3FF)


def _state() -> GuestState:
    writes = [(LD + LD_IRQ_ENABLED, _u32(0x200)), (_pde_at(STACK_VA[0]), _u32(TABLE | 7))]
    writes += [(_pte_at(va), _u32(pa | 7)) for va, pa in zip(STACK_VA, FRAMES)]
    gates = tuple((32 + irq, 0x00610000 | (0x1000 + 16 * irq), 0xC0108F00) for irq in range(8))
    return GuestState(writes=tuple(writes), paging=True, pgdir=PGDIR, idt_entries=gates,
                      irqs_pending=0xFF, regs=RING1.regs)


_entries = st.sampled_from([_pde_at(STACK_VA[0])] + [_pte_at(va) for va in STACK_VA])
_ops = st.one_of(
    st.just(("deliver_pending",)),
    st.just(("deliver_pending",)),
    st.tuples(st.just("set_interrupt"), st.integers(0, 7)),
    st.tuples(st.just("poke"), st.just(LD + LD_IRQ_ENABLED), st.sampled_from([0x200, 0])),
    # the guest rewrites one of the stack's entries: remapped, or not present
    st.tuples(st.just("poke"), _entries,
              st.builds(lambda pa, present: pa | (7 if present else 6),
                        st.sampled_from(FRAMES + (TABLE,)), st.booleans())),
    st.tuples(st.just("set_reg"), st.just("esp"),
              st.sampled_from([va + off for va in STACK_VA for off in (0, 0x10, 0xFFC)])),
    # user mode: the frame goes on the kernel stack esp1 names
    st.tuples(st.just("set_reg"), st.just("ss"), st.sampled_from([0x7B, 0x69])),
    st.tuples(st.just("guest_set_stack"), st.just(0x69),
              st.sampled_from([va + off for va in STACK_VA for off in (0, 0x800)]), st.just(1)),
)


def kept_walk_test(pair, examples: int, shrink: bool = True):
    """The test body (also run by the mutant driver)."""
    @diff_settings(examples, shrink=shrink)
    @given(st.lists(_ops, min_size=2, max_size=24))
    def kept_walk_runs(ops):
        pair.load(_state())
        pair.run_all(ops)
    return with_seed(kept_walk_runs)


def test_kept_walk_against_the_original(pair):
    kept_walk_test(pair, share(0.015, minimum=60))()
