# SPDX-License-Identifier: GPL-2.0-only
"""Concurrent injection stress without the GIL: the accounting of
test_injection.py (read its docstring), with the engine called from Cython
(``_nogil_stress.pyx``, built against lgcore's public .pxd files) so the
device threads' atomic OR on the pending word really races the vCPU
threads' find-lowest-bit, clear and frame building -- the races the
Python-level test cannot reach because each engine call holds the GIL.

Each vCPU thread runs the guest in chunks of nogil deliver calls; a chunk
ends early when IRQ 0 was delivered, and the vCPU thread (with the GIL)
re-arms the clockevent, whose wall-clock timer thread raises IRQ 0 through
``VCpu.set_interrupt`` while the other threads keep running without the GIL.
A halted vCPU spins (sched_yield) until something deliverable is pending.
"""
from __future__ import annotations

import threading
import time

import pytest

import lgcore
from lgcore.clock import ClockEvents, clockdev_fn, guest_set_clockevent, init_clockdev

from tests.stress import _guestsim as gs
from tests.stress.conftest import STRESS_FULL, summary
from tests.stress.test_injection import DEVICES, device_mix

RAISES = 1_000_000 if STRESS_FULL else 100_000
CHUNK = 20_000


@pytest.fixture(scope="module")
def nogil():
    from tests.stress import _build
    return _build.load()


def _mask(lines) -> int:
    m = 0
    for line in lines:
        m |= 1 << line
    return m


def run_nogil(mod, ncpus: int, raises: int, seed: int, *, drop_every: int = 0,
              double_every: int = 0) -> dict:
    guest = gs.make_guest(ncpus)
    cpus = guest.vcpus
    board = mod.Board(cpus)
    board.drop_every, board.double_every = drop_every, double_every
    events = ClockEvents(lgcore.WallClock())
    errors: list[str] = []

    def expiry(timer):
        board.expiry(timer.owner.index)        # before the raise
        return clockdev_fn(timer)

    for cpu in cpus:
        init_clockdev(cpu, events)
        cpu.hrt.function = expiry

    def vcpu(i: int) -> None:
        cpu = cpus[i]
        n = 0
        try:
            guest_set_clockevent(cpu, 50_000)
            while not done.is_set():
                if board.vcpu(i, CHUNK, seed * 100 + i * 7 + n, ncpus == 1):
                    guest_set_clockevent(cpu, 20_000 + (n % 9) * 20_000)
                n += 1
        except BaseException as exc:          # noqa: BLE001
            errors.append(f"vCPU {i}: {type(exc).__name__}: {exc}")

    results = [0] * DEVICES

    def device(t: int) -> None:
        results[t] = board.device(t, raises, seed * 10 + t, _mask(device_mix(t)))

    done = threading.Event()
    t0 = time.monotonic()
    vthreads = [threading.Thread(target=vcpu, args=(i,)) for i in range(ncpus)]
    dthreads = [threading.Thread(target=device, args=(t,)) for t in range(DEVICES)]
    for th in vthreads + dthreads:
        th.start()
    limit = time.monotonic() + (3 * 3600 if STRESS_FULL else 120)
    for th in dthreads:
        th.join(max(0.0, limit - time.monotonic()))
    if any(th.is_alive() for th in dthreads):
        errors.append("device threads did not finish: a claim never came back (lost interrupt?)")
    board.set_stop()
    done.set()
    for th in dthreads + vthreads:
        th.join(30)
        assert not th.is_alive()
    elapsed = time.monotonic() - t0

    # Devices stopped, vCPUs stopped: the pending bits are the outstanding raises.
    in_flight = 0
    for i, cpu in enumerate(cpus):
        pending = cpu.irqs_pending
        for line in range(1, gs.IRQS):
            out = board.raised_count(i, line) - board.delivered_count(i, line)
            held = board.claim_held(i, line)
            bit = bool(pending >> line & 1)
            if out not in (0, 1) or bit != (out == 1) or held != (out == 1):
                errors.append(f"vCPU {i} line {line}: outstanding {out}, pending bit {bit}, "
                              f"claim held {held}")
            in_flight += out

    # Drain: clocks off (waits for a running expiry), everything unmasked.
    for cpu in cpus:
        guest_set_clockevent(cpu, 0)
    events.close()
    mem = guest.ram
    gs.ld_put(mem, gs.LD_BLOCKED, 0)
    for cpu in cpus:
        cpu.halted = 0
        gs.to_kernel(cpu)
        for _ in range(4 * gs.IRQS):
            gs.ld_put(mem, gs.LD_IRQ_ENABLED, gs.EFLAGS_IF)
            line = cpu.deliver_pending()
            if line is None:
                break
            gs.handle_and_iret(cpu, mem, line, from_user=False, virt_if=gs.EFLAGS_IF)
            board.drained(cpu.index, line)

    assert guest.dead is None, guest.dead
    assert not errors, "\n".join(errors[:20])
    counters = board.counters
    assert counters["doubled"] == 0, counters
    assert counters["frame_errors"] == 0, counters
    assert counters["rule_errors"] == 0, counters
    assert results == [raises] * DEVICES
    fires = 0
    for i, cpu in enumerate(cpus):
        assert cpu.irqs_pending == 0, f"vCPU {i}: {cpu.irqs_pending:#x} pending after the drain"
        for line in range(1, gs.IRQS):
            assert board.raised_count(i, line) == board.delivered_count(i, line), (i, line)
            assert not board.claim_held(i, line)
        seq, seen = board.seq_of(i)
        assert seen == seq, f"vCPU {i}: timer expiry {seq} never handled (last seen {seen})"
        assert board.delivered_count(i, 0) <= seq
        fires += seq
    return {"elapsed": elapsed, "in_flight": in_flight, "fires": fires,
            "halts": counters["halts"],
            "irq0": sum(board.delivered_count(i, 0) for i in range(ncpus))}


@pytest.mark.parametrize("ncpus", [1, 8])
def test_concurrent_injection_nogil(nogil, ncpus):
    res = run_nogil(nogil, ncpus, RAISES, seed=ncpus)
    summary(f"nogil {ncpus} vCPU(s): {DEVICES} devices x {RAISES} raises, {res['fires']} timer "
            f"expiries ({res['irq0']} IRQ 0 deliveries), {res['halts']} halts, "
            f"{res['in_flight']} pending at the stop, 0 lost, 0 doubled, {res['elapsed']:.1f} s")


@pytest.mark.parametrize("fault", ["drop", "double"])
def test_nogil_accounting_catches_faults(nogil, fault):
    """A raise the engine never saw, or a delivery it made twice, fails the
    run: the accounting has teeth."""
    kw = {"drop_every": 5_000} if fault == "drop" else {"double_every": 500}
    with pytest.raises(AssertionError):
        run_nogil(nogil, 1, 20_000, seed=99, **kw)
