# SPDX-License-Identifier: GPL-2.0-only
"""Concurrent injection stress through the Python face: device threads raise
IRQs with ``VCpu.set_interrupt`` while vCPU threads run the deliver loop
(``VCpu.deliver_pending`` or ``lgcore.runloop.step``), the guest masks and
unmasks lines in ``lguest_data.blocked_interrupts``, toggles
``irq_enabled``, moves between ring 1 and ring 3, steps into its no-IRQ
window, halts, and programs its clockevent, whose timer thread raises IRQ 0.

How every raise is accounted for
--------------------------------
The pending word is a bitmap: raising a line that is already pending
coalesces with the earlier raise (that is lguest's semantics, and a device
must not rely on one interrupt per raise).  Counting raises against
deliveries would therefore prove nothing.  Two schemes make the count exact:

* Device lines 1..31 use a *claim* per (vCPU, line), a ``threading.Lock``.
  A device thread may raise (cpu, line) only after taking its claim without
  blocking; the guest's handler for that line gives the claim back.  The
  lines are a mix: 3 hot lines shared by all four device threads, and 7
  private lines per thread, so claims are contended.  At most one raise per
  (cpu, line) is therefore ever in flight, nothing can coalesce, and the
  engine must produce exactly one delivery per raise:

    - a delivery while the claim is free is a *doubled* interrupt (the
      handler's release raises RuntimeError and is counted);
    - when the devices have stopped and the vCPU threads are paused, the
      pending bits of every vCPU must equal the set of claims still held,
      and raises - deliveries must be 1 there and 0 elsewhere ("delivered
      once or still pending");
    - after a final drain with every line unmasked, raises == deliveries
      for every (cpu, line) and nothing is pending: none *lost*.

* IRQ 0 comes from the clockevent, which a guest may re-arm while an
  earlier expiry is still pending, so it may coalesce.  It uses a sequence
  word instead: the timer callback increments ``seq`` *before* it calls
  ``set_interrupt(0)``, and the guest's IRQ 0 handler records the ``seq`` it
  sees.  The order bit-clear (inside the delivery) -> handler reads seq ->
  next increment -> next set means that an expiry whose increment the last
  handler did not see set its bit after the last clear; so after the final
  drain the last handler must have seen the final ``seq`` (none lost), and
  deliveries can never exceed expiries (none doubled).

In the single-vCPU runs the guest-side rules are also checked on every
call, because only the vCPU thread clears bits: a line is delivered only
when unmasked, with virtual interrupts on (or the vCPU halted) and outside
the no-IRQ window; the frame carries the virtual IF the guest had; a
deliverable line that was pending before the call must be delivered; a
masked-off guest (irq_enabled 0) with a deliverable line pending sees
``irq_pending`` set.  A halted vCPU sleeps in ``Task.sleep_until_interrupt``
and must be woken (a 5 s timeout counts as a lost wake-up).

The Python face holds the GIL inside each engine call, so these threads
interleave between calls (the switch interval is cut to 20 us), never inside
one; ``test_injection_nogil.py`` runs the same accounting with the engine
called without the GIL, truly in parallel.
"""
from __future__ import annotations

import random
import threading
import time

import pytest

import lgcore
from lgcore.clock import ClockEvents, clockdev_fn, guest_set_clockevent, init_clockdev
from lgcore.constants import LHCALL_HALT, LHCALL_SET_CLOCKEVENT
from lgcore.runloop import DEAD, HALTED, step
from lgcore.wake import Task

from tests.stress import _guestsim as gs
from tests.stress.conftest import STRESS_FULL, summary

DEVICES = 4
RAISES = 1_000_000 if STRESS_FULL else 4_000
HOT = (1, 2, 3)


def device_mix(t: int) -> tuple[int, ...]:
    """Device thread t raises the hot lines 1-3 (shared by all) and its own
    7 lines; together the four threads cover lines 1..31."""
    return HOT + tuple(range(4 + 7 * t, 11 + 7 * t))


class Injection:
    """One stress run: a guest with ``ncpus`` vCPUs, 4 device threads, one
    timer thread, one thread per vCPU."""

    def __init__(self, ncpus: int, mode: str, raises: int, seed: int):
        self.ncpus, self.mode, self.raises_per_device, self.seed = ncpus, mode, raises, seed
        self.guest = gs.make_guest(ncpus)
        self.mem = self.guest.ram
        self.cpus = self.guest.vcpus
        self.claims = [[threading.Lock() for _ in range(gs.IRQS)] for _ in range(ncpus)]
        self.raised = [[[0] * gs.IRQS for _ in range(ncpus)] for _ in range(DEVICES)]
        self.delivered = [[0] * gs.IRQS for _ in range(ncpus)]
        self.doubled = 0
        self.errors: list[str] = []
        self.lost_wakeups = 0
        self.halts = 0
        self.arms = [0] * ncpus
        self.seq = [0] * ncpus          # clockevent expiries (timer thread)
        self.seen = [0] * ncpus         # seq seen by the last IRQ 0 handler
        self.events = ClockEvents(lgcore.WallClock())
        for cpu in self.cpus:
            cpu.task = Task()
            init_clockdev(cpu, self.events)
            cpu.hrt.function = self._expiry
        self.stop = threading.Event()
        self.pause = threading.Event()
        self.paused = [threading.Event() for _ in range(ncpus)]
        self.resume = threading.Event()

    # -- the timer thread --

    def _expiry(self, timer):
        cpu = timer.owner
        self.seq[cpu.index] += 1           # before the raise: see the docstring
        return clockdev_fn(timer)

    # -- device threads --

    def device(self, t: int) -> None:
        rng = random.Random(self.seed * 1000 + t)
        mix = device_mix(t)
        raised = self.raised[t]
        cpus, claims, n = self.cpus, self.claims, self.ncpus
        misses = 0
        deadline = time.monotonic() + (3600 if STRESS_FULL else 120)
        done = 0
        while done < self.raises_per_device:
            i = rng.randrange(n)
            line = mix[rng.randrange(len(mix))]
            if not claims[i][line].acquire(False):
                misses += 1
                if misses % 32 == 0:
                    if self.errors:
                        return
                    time.sleep(0.0001)
                    if time.monotonic() > deadline:
                        self.errors.append(f"device {t}: no claim came back for too long")
                        return
                continue
            raised[i][line] += 1
            cpus[i].set_interrupt(line)
            done += 1

    # -- vCPU threads --

    def vcpu(self, i: int) -> None:
        try:
            self._vcpu(i)
        except BaseException as exc:       # noqa: BLE001 - reported by the test
            self.errors.append(f"vCPU {i}: {type(exc).__name__}: {exc}")
            self.paused[i].set()

    def _handle(self, cpu, line: int, from_user: bool, virt_if: int) -> None:
        i = cpu.index
        gs.handle_and_iret(cpu, self.mem, line, from_user=from_user, virt_if=virt_if)
        self.delivered[i][line] += 1
        if line == 0:
            self.seen[i] = self.seq[i]
            if self.mode == "step":
                self._hcall(cpu, LHCALL_SET_CLOCKEVENT, 20_000 + (self.delivered[i][0] % 7) * 30_000)
                self.arms[i] += 1
            else:
                self._arm(cpu, 20_000 + (self.delivered[i][0] % 7) * 30_000)
            return
        try:
            self.claims[i][line].release()
        except RuntimeError:
            self.doubled += 1
            self.errors.append(f"vCPU {i}: IRQ {line} delivered with no raise outstanding")

    def _arm(self, cpu, delta: int) -> None:
        self.arms[cpu.index] += 1
        guest_set_clockevent(cpu, delta)

    def _hcall(self, cpu, call: int, arg: int = 0) -> None:
        # Queued for the next runloop.step, as a trap to the host would.
        cpu.eax, cpu.ebx, cpu.ecx, cpu.edx, cpu.esi = call, arg, 0, 0, 0
        cpu.hcall = True

    def _vcpu(self, i: int) -> None:
        rng = random.Random(self.seed * 1000 + 100 + i)
        cpu = self.cpus[i]
        mem = self.mem
        solo = self.ncpus == 1
        user = False
        self._arm(cpu, 50_000)
        while not self.stop.is_set():
            if self.pause.is_set():
                self.paused[i].set()
                self.resume.wait()
                continue
            r = rng.random()
            halt = False
            if r < 0.06:
                line = rng.randrange(1, gs.IRQS)          # IRQ 0 stays unmasked
                gs.ld_put(mem, gs.LD_BLOCKED, gs.ld_get(mem, gs.LD_BLOCKED) ^ (1 << line))
            elif r < 0.12:
                gs.ld_put(mem, gs.LD_IRQ_ENABLED, gs.ld_get(mem, gs.LD_IRQ_ENABLED) ^ gs.EFLAGS_IF)
            elif r < 0.14:
                user = not user
                (gs.to_user if user else gs.to_kernel)(cpu)
            elif r < 0.15:
                if self.mode == "step":
                    self._hcall(cpu, LHCALL_SET_CLOCKEVENT, rng.randrange(10_000, 400_000))
                    self.arms[i] += 1
                else:
                    self._arm(cpu, rng.randrange(10_000, 400_000))   # re-arm: replaces
            elif r < 0.155:
                if self.mode == "step":
                    self._hcall(cpu, LHCALL_SET_CLOCKEVENT, 0)
                else:
                    guest_set_clockevent(cpu, 0)                       # cancel
            elif r < 0.165:
                halt = True
            in_noirq = r > 0.99 and not halt
            if in_noirq:
                cpu.eip = gs.NOIRQ_START + 4
            if halt:
                # A tickless idle: program the clock, then halt.
                if self.mode == "step":
                    self._hcall(cpu, LHCALL_HALT)
                else:
                    self._arm(cpu, rng.randrange(10_000, 200_000))
                    cpu.halted = 1
                self.halts += 1
            blocked = gs.ld_get(mem, gs.LD_BLOCKED)
            ien = gs.ld_get(mem, gs.LD_IRQ_ENABLED)
            pre = cpu.irqs_pending
            halted = bool(cpu.halted) or (halt and self.mode == "step")
            if self.mode == "step":
                if halt:
                    # the clock is armed through the async ring in real
                    # guests; here it is simply armed before the HALT call
                    self._arm(cpu, rng.randrange(10_000, 200_000))
                state = step(cpu)
                if state == DEAD:
                    raise AssertionError(f"guest died: {self.guest.dead}")
                line = gs.line_of(cpu)
            else:
                line = cpu.deliver_pending()
                state = HALTED if cpu.halted else None
            virt_if = gs.EFLAGS_IF if halted else (ien & gs.EFLAGS_IF)
            if not solo:
                virt_if = None
            if line is not None:
                if solo:
                    bit = 1 << line
                    if blocked & bit or in_noirq or not (halted or ien):
                        self.errors.append(
                            f"IRQ {line} delivered: blocked={blocked:#x} ien={ien:#x} "
                            f"halted={halted} noirq={in_noirq}")
                self._handle(cpu, line, user, virt_if)
            else:
                if in_noirq:
                    cpu.eip = gs.USER_EIP if user else gs.KERNEL_EIP
                elif solo and pre & ~blocked and (halted or ien):
                    self.errors.append(f"deliverable {pre & ~blocked:#x} stayed pending "
                                       f"(blocked={blocked:#x}, ien={ien:#x})")
                elif solo and pre & ~blocked and not halted and not ien:
                    if gs.ld_get(mem, gs.LD_IRQ_PENDING) != gs.EFLAGS_IF:
                        self.errors.append("irq_pending not set for a masked-off guest")
                if cpu.halted:
                    # Woken by any raise (a masked line too: then it just
                    # loops and halts again); only the timeout is a loss.
                    t0 = time.monotonic()
                    if (not cpu.task.sleep_until_interrupt(cpu, timeout=5.0)
                            and time.monotonic() - t0 >= 5.0):
                        self.lost_wakeups += 1
                        self.errors.append(f"vCPU {i}: halted 5 s with the clock armed")
                        cpu.halted = 0
            if len(self.errors) > 20:
                return

    # -- the run --

    def run(self) -> dict:
        t0 = time.monotonic()
        vthreads = [threading.Thread(target=self.vcpu, args=(i,), name=f"vcpu{i}") for i in range(self.ncpus)]
        dthreads = [threading.Thread(target=self.device, args=(t,), name=f"dev{t}") for t in range(DEVICES)]
        for th in vthreads + dthreads:
            th.start()
        for th in dthreads:
            th.join()
        # Devices are done: pause the vCPUs and account for what is in flight.
        self.pause.set()
        for ev in self.paused:
            assert ev.wait(30), "a vCPU thread did not pause"
        in_flight = self.snapshot()
        self.stop.set()
        self.resume.set()
        for th in vthreads:
            th.join(30)
            assert not th.is_alive()
        self.drain()
        self.events.close()
        elapsed = time.monotonic() - t0
        return {"in_flight": in_flight, "elapsed": elapsed}

    def snapshot(self) -> int:
        """With the devices stopped and the vCPUs paused: the pending bits
        are exactly the outstanding raises."""
        in_flight = 0
        for i, cpu in enumerate(self.cpus):
            pending = cpu.irqs_pending
            for line in range(1, gs.IRQS):
                out = sum(r[i][line] for r in self.raised) - self.delivered[i][line]
                held = self.claims[i][line].locked()
                bit = bool(pending >> line & 1)
                if out not in (0, 1) or bit != (out == 1) or held != (out == 1):
                    self.errors.append(f"vCPU {i} line {line}: outstanding {out}, "
                                       f"pending bit {bit}, claim held {held}")
                in_flight += out
        return in_flight

    def drain(self) -> None:
        """Stop the clocks, unmask everything and deliver what is left."""
        for cpu in self.cpus:
            guest_set_clockevent(cpu, 0)       # waits for a running expiry
        gs.ld_put(self.mem, gs.LD_BLOCKED, 0)
        for cpu in self.cpus:
            cpu.halted = 0
            gs.to_kernel(cpu)
            for _ in range(4 * gs.IRQS):
                gs.ld_put(self.mem, gs.LD_IRQ_ENABLED, gs.EFLAGS_IF)
                line = cpu.deliver_pending()
                if line is None:
                    break
                self.delivered[cpu.index][line] += 1
                gs.handle_and_iret(cpu, self.mem, line, from_user=False, virt_if=gs.EFLAGS_IF)
                if line == 0:
                    self.seen[cpu.index] = self.seq[cpu.index]
                else:
                    self.claims[cpu.index][line].release()

    def check(self) -> None:
        assert self.guest.dead is None, self.guest.dead
        assert not self.errors, "\n".join(self.errors[:20])
        assert self.doubled == 0
        assert self.lost_wakeups == 0
        for i, cpu in enumerate(self.cpus):
            assert cpu.irqs_pending == 0, f"vCPU {i}: {cpu.irqs_pending:#x} still pending after the drain"
            for line in range(1, gs.IRQS):
                raised = sum(r[i][line] for r in self.raised)
                assert raised == self.delivered[i][line], (
                    f"vCPU {i} line {line}: raised {raised}, delivered {self.delivered[i][line]}")
                assert not self.claims[i][line].locked()
            # IRQ 0: every expiry seen by a handler, never more deliveries than expiries.
            assert self.seen[i] == self.seq[i], f"vCPU {i}: timer expiry {self.seq[i]} never handled"
            assert self.delivered[i][0] <= self.seq[i]
            assert self.seq[i] == cpu.hrt.fired
        total = sum(sum(sum(c) for c in r) for r in self.raised)
        assert total == DEVICES * self.raises_per_device


@pytest.mark.parametrize("mode", ["deliver_pending", "step"])
@pytest.mark.parametrize("ncpus", [1, 8])
def test_concurrent_injection(ncpus, mode, fast_switching):
    run = Injection(ncpus, mode, RAISES, seed=ncpus * 10 + (mode == "step"))
    res = run.run()
    run.check()
    fires = sum(run.seq)
    summary(f"python {ncpus} vCPU(s) {mode}: {DEVICES} devices x {RAISES} raises, "
            f"{fires} timer expiries ({sum(d[0] for d in run.delivered)} IRQ 0 deliveries), "
            f"{run.halts} halts, {res['in_flight']} pending at the pause, 0 lost, 0 doubled, "
            f"{res['elapsed']:.1f} s")


@pytest.mark.parametrize("fault", ["drop", "double"])
def test_accounting_catches_faults(fault, fast_switching):
    """The checker fails a run in which a raise is lost or a delivery made
    twice (simulated by wrapping the engine), so a pass means something."""
    run = Injection(1, "deliver_pending", 1_000, seed=7)
    cpu = run.cpus[0]
    real_set, real_deliver = cpu.set_interrupt, cpu.deliver_pending
    calls = [0]

    def lossy_set(irq):
        calls[0] += 1
        if irq == 0 or calls[0] % 300:
            real_set(irq)

    def doubling_deliver():
        line = real_deliver()
        if line is not None and line != 0:
            calls[0] += 1
            if calls[0] % 100 == 0:
                real_set(line)         # the same edge comes back
        return line

    if fault == "drop":
        cpu.set_interrupt = lossy_set
    else:
        cpu.deliver_pending = doubling_deliver
    run.run()
    with pytest.raises(AssertionError):
        run.check()
