# SPDX-License-Identifier: GPL-2.0-only
"""The differential test as a hypothesis state machine.

Where the sequence test draws whole scenarios at once, this machine lets
hypothesis choose each step, and remembers which gates the guest loaded
(bundles), so it can aim deliveries at them: an IRQ whose gate was just
loaded, a trap whose gate was just loaded.  A failure shrinks to the
shortest list of steps that still makes lgcore and the original disagree.
Every step compares the whole state (Pair.run).
"""
from __future__ import annotations

from hypothesis import strategies as st
from hypothesis.stateful import (Bundle, RuleBasedStateMachine, initialize, rule,
                                 run_state_machine_as_test)

from .harness import Pair
from .runner import diff_settings, quiet_lgcore_log, share
from .strategies import (ADVANCES, DELTAS, EFLAGS, IRQ_ENABLED, OP_BYTES, SEGMENTS,
                         STATE_BYTES, Reader, _gate, decode_op, decode_state, noise_seeds)

M32 = 0xFFFFFFFF
u32 = st.integers(0, M32)
irqs = st.integers(0, 31)
state_blobs = st.binary(min_size=STATE_BYTES, max_size=STATE_BYTES)
address_blobs = st.binary(min_size=3, max_size=3)
gate_blobs = st.binary(min_size=5, max_size=5)
op_blobs = st.binary(min_size=OP_BYTES, max_size=OP_BYTES)


def _reader(blob: bytes) -> Reader:
    # Raw values in a step come from a PRNG keyed by the step's own bytes.
    return Reader(blob, int.from_bytes(blob, "little"))
segments = st.one_of(st.sampled_from(SEGMENTS), u32)


class LockstepMachine(RuleBasedStateMachine):
    pair: Pair | None = None        # set by the test

    irq_gates = Bundle("irq_gates")
    trap_gates = Bundle("trap_gates")

    @initialize(blob=state_blobs, noise=noise_seeds)
    def load(self, blob, noise):
        state, self.addresses = decode_state(Reader(blob, noise))
        self.state = state
        self.pair.load(state)

    def _run(self, *op):
        return self.pair.run(op)

    # -- the guest's gates --

    @rule(target=irq_gates, irq=irqs, gate=gate_blobs)
    def load_irq_gate(self, irq, gate):
        self._run("load_guest_idt_entry", 32 + irq, *_gate(_reader(gate)))
        return irq

    @rule(target=trap_gates, num=st.one_of(st.integers(0, 31), st.sampled_from((0x80, 0x40)),
                                           st.integers(0, 255)), gate=gate_blobs)
    def load_trap_gate(self, num, gate):
        self._run("load_guest_idt_entry", num, *_gate(_reader(gate)))
        return num

    @rule(num=u32, lo=u32, hi=u32)
    def load_any_entry(self, num, lo, hi):
        self._run("load_guest_idt_entry", num, lo, hi)

    # -- IRQs --

    @rule(irq=st.one_of(irq_gates, irqs))
    def set_interrupt(self, irq):
        self._run("set_interrupt", irq)

    @rule(irq=irq_gates)
    def raise_and_run_loop(self, irq):
        self._run("set_interrupt", irq)
        self._run("run_loop_irq")

    @rule()
    def interrupt_pending(self):
        self._run("interrupt_pending")

    @rule(irq=st.one_of(irq_gates, irqs), more=st.booleans())
    def try_deliver_interrupt(self, irq, more):
        self._run("try_deliver_interrupt", irq, more)

    @rule()
    def run_loop_irq(self):
        self._run("run_loop_irq")

    @rule()
    def deliver_pending(self):
        self._run("deliver_pending")

    # -- traps --

    @rule(num=st.one_of(trap_gates, st.integers(0, 256), u32))
    def deliver_trap(self, num):
        self._run("deliver_trap", num)

    @rule()
    def copy_traps(self):
        self._run("copy_traps")

    @rule()
    def setup_default_idt_entries(self):
        self._run("setup_default_idt_entries")

    # -- stacks, syscalls, clock, memory --

    @rule(seg=segments, esp=address_blobs, pages=st.one_of(st.integers(0, 3), st.integers(0, 40)))
    def guest_set_stack(self, seg, esp, pages):
        self._run("guest_set_stack", seg, self.addresses(_reader(esp)), pages)

    @rule()
    def pin_stack_pages(self):
        self._run("pin_stack_pages")

    @rule()
    def check_syscall_vector(self):
        self._run("check_syscall_vector")

    @rule(init=st.booleans())
    def reserve_syscall_vector(self, init):
        self._run("init_interrupts" if init else "free_interrupts")

    @rule(delta=st.one_of(st.sampled_from(DELTAS), u32))
    def guest_set_clockevent(self, delta):
        self._run("guest_set_clockevent", delta)

    @rule(ns=st.one_of(st.sampled_from(ADVANCES), st.integers(0, 2**33)))
    def advance_clock(self, ns):
        self._run("advance_clock", ns)

    @rule()
    def write_timestamp(self):
        self._run("write_timestamp")

    @rule(addr=address_blobs, pin=st.booleans())
    def walk(self, addr, pin):
        self._run("pin_page" if pin else "guest_pa", self.addresses(_reader(addr)))

    # -- the guest runs in between --

    @rule(blob=op_blobs)
    def guest_runs(self, blob):
        op = decode_op(_reader(blob), self.state, self.addresses)
        if op[0] in ("poke", "set_reg", "halt"):
            self.pair.run(op)

    @rule(field=st.sampled_from((0, 4, 20, 1392)), value=st.one_of(st.sampled_from(IRQ_ENABLED), u32))
    def guest_writes_lguest_data(self, field, value):
        if self.state.lguest_data is not None:
            self._run("poke", self.state.lguest_data + field, value)

    @rule(ss=segments, eflags=st.one_of(st.sampled_from(EFLAGS), u32))
    def guest_changes_privilege(self, ss, eflags):
        self._run("set_reg", "ss", ss)
        self._run("set_reg", "eflags", eflags)


def test_lockstep_machine(pair):
    """Hypothesis-chosen steps, each compared in full (5% of the budget)."""
    LockstepMachine.pair = pair
    with quiet_lgcore_log():
        run_state_machine_as_test(
            LockstepMachine,
            settings=diff_settings(share(0.05, minimum=10), stateful_step_count=15))
