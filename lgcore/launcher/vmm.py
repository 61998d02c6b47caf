# SPDX-License-Identifier: GPL-2.0-only
"""The launcher: lguest's Launcher and Host run loop for one guest on the
Unicorn backend, with every interrupt and trap going through lgcore.

``Launcher(...).run()`` boots the demo guest and returns a ``LaunchResult``
(console, the guest's own verdict, what was delivered, timings).
"""
from __future__ import annotations

import struct
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import TextIO

import lgcore
from lgcore import runloop
from lgcore.clock import init_clockdev
from lgcore.constants import IRQS, NO_TRAP, TRAP_ENTRY
from lgcore.wake import Task

from . import layout as L
from .build import build_guest

_U32 = struct.Struct("<I")

VECTOR_NAMES = {
    0: "#DE", 1: "#DB", 2: "NMI", 3: "#BP int3", 4: "#OF", 5: "#BR", 6: "#UD", 7: "#NM",
    8: "#DF", 10: "#TS", 11: "#NP", 12: "#SS", 13: "#GP", 14: "#PF", 16: "#MF", 17: "#AC",
    18: "#MC", 19: "#XM", 0x1F: "hypercall", 32: "IRQ 0 timer", 33: "IRQ 1 device",
    0x80: "int $0x80 syscall",
}

HCALL_NAMES = {
    0: "FLUSH_ASYNC", 1: "LGUEST_INIT", 2: "SHUTDOWN", 4: "NEW_PGTABLE", 5: "FLUSH_TLB",
    6: "LOAD_IDT_ENTRY", 7: "SET_STACK", 8: "TS", 9: "SET_CLOCKEVENT", 10: "HALT",
    13: "SET_PMD", 14: "SET_PTE", 15: "SET_PGD", 16: "LOAD_TLS", 17: "NOTIFY",
    18: "LOAD_GDT_ENTRY", 19: "SEND_INTERRUPTS",
    L.LHCALL_CONSOLE_WRITE: "console write*", L.LHCALL_DEVICE_IRQ: "device IRQ*",
    L.LHCALL_REPORT: "report*",
}


def vector_name(vec: int) -> str:
    if vec in VECTOR_NAMES:
        return VECTOR_NAMES[vec]
    if 32 <= vec < 32 + IRQS:
        return f"IRQ {vec - 32}"
    return f"vector {vec}"


class _Row:
    __slots__ = ("count", "ns", "timed")

    def __init__(self):
        self.count = 0
        self.ns = 0
        self.timed = 0

    def charge(self, ns: int) -> None:
        self.count += 1
        self.ns += ns
        self.timed += 1

    @property
    def mean_us(self) -> float:
        return self.ns / self.timed / 1000 if self.timed else float("nan")


@dataclass
class LaunchResult:
    console: list[str] = field(default_factory=list)
    checks: int | None = None          # what the guest reported
    failed: int | None = None
    dead: str | None = None            # lguest's reason the guest stopped
    shutdown: str | None = None        # "poweroff" / "restart" for SHUTDOWN
    delivered: dict = field(default_factory=dict)   # (vector, how) -> _Row
    hypercalls: dict = field(default_factory=dict)  # number -> _Row
    exits: int = 0
    kicks: int = 0
    halts: int = 0
    halted_s: float = 0.0
    wall_s: float = 0.0
    error: str | None = None           # launcher-side failure

    @property
    def clean_shutdown(self) -> bool:
        return self.shutdown == "poweroff"

    @property
    def killed(self) -> bool:
        return self.dead is not None and not self.clean_shutdown

    @property
    def console_failures(self) -> int:
        return sum("[FAIL]" in line for line in self.console)

    @property
    def passed(self) -> bool:
        return (self.error is None and self.clean_shutdown and self.checks is not None
                and self.checks > 0 and self.failed == 0 and self.console_failures == 0)

    def count(self, vector: int, how: str | None = None) -> int:
        return sum(r.count for (v, h), r in self.delivered.items()
                   if v == vector and (how is None or h == how))

    @property
    def exit_code(self) -> int:
        if self.passed:
            return 0
        if self.error is not None:
            return 3
        if self.killed:
            return 2
        return 1


class _Devices:
    """A device thread: LHCALL_DEVICE_IRQ asks it to raise an IRQ after a
    delay, writing 1 to a status word first-raise-then-status, as a device
    completing a request would."""

    def __init__(self, cpu, ram, size: int):
        self.cpu, self.ram, self.size = cpu, ram, size
        self._cond = threading.Condition()
        self._queue: list[tuple[float, int, int]] = []
        self._closed = False
        self._thread = threading.Thread(target=self._loop, name="lgcore-device", daemon=True)
        self._thread.start()

    def request(self, irq: int, delay_us: int, status_gpa: int) -> None:
        if delay_us == 0:
            self._complete(irq, status_gpa)
            return
        with self._cond:
            self._queue.append((time.monotonic() + delay_us / 1e6, irq, status_gpa))
            self._queue.sort()
            self._cond.notify()

    def _complete(self, irq: int, status_gpa: int) -> None:
        self.cpu.set_interrupt(irq)
        if status_gpa + 4 <= self.size:
            _U32.pack_into(self.ram, status_gpa, 1)

    def _loop(self) -> None:
        while True:
            with self._cond:
                while not self._closed and (not self._queue or self._queue[0][0] > time.monotonic()):
                    wait = None if not self._queue else max(0.0, self._queue[0][0] - time.monotonic())
                    self._cond.wait(wait)
                if self._closed:
                    return
                _, irq, gpa = self._queue.pop(0)
            self._complete(irq, gpa)

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify()


class Launcher:
    """Boot the demo guest on Unicorn with lgcore delivering everything."""

    def __init__(self, *, profile: str = "seed", timer_hz: float = 250.0, ticks: int = 5,
                 user_ticks: int = 2, guest_fault: str = "none", trace: bool = False,
                 out: TextIO | None = None, progress: bool = True, timeout: float = 60.0,
                 echo_console: bool = True):
        if guest_fault not in L.GUEST_FAULTS:
            raise ValueError(f"unknown guest fault {guest_fault!r}; one of {', '.join(L.GUEST_FAULTS)}")
        if timer_hz <= 0:
            raise ValueError("timer_hz must be positive")
        self.profile = profile
        self.delta_ns = max(100, min(int(1e9 / timer_hz), 0xFFFFFFFF))
        self.ticks = ticks
        self.user_ticks = user_ticks
        self.guest_fault = guest_fault
        self.trace = trace
        self.out = out if out is not None else sys.stdout
        self.progress = progress
        self.timeout = timeout
        self.echo_console = echo_console
        self.result = LaunchResult()
        self._partial = ""
        self._t0 = 0

    # ------------------------------------------------------------------
    def _say(self, text: str) -> None:
        self.out.write(text + "\n")
        self.out.flush()

    def _trace(self, text: str) -> None:
        if self.trace:
            ms = (time.perf_counter_ns() - self._t0) / 1e6
            self._say(f"  {ms:10.3f} ms  {text}")

    def _row(self, vector: int, how: str) -> _Row:
        row = self.result.delivered.get((vector, how))
        if row is None:
            row = self.result.delivered[(vector, how)] = _Row()
        return row

    # ---- the launcher's hypercalls (lgcore's runloop asks guest.hypercalls first) ----
    def _hc_console(self, cpu, args) -> None:
        gpa, n = args[1], min(args[2], 4096)
        if not cpu.guest.lguest_address_ok(gpa, n):
            cpu.guest.kill_guest(f"bad console write {gpa:#x} len {n}")
            return
        text = self._partial + bytes(self.vm.ram[gpa:gpa + n]).decode("latin-1")
        *lines, self._partial = text.split("\n")
        for line in lines:
            self.result.console.append(line)
            if self.echo_console:
                self._say(line)

    def _hc_device(self, cpu, args) -> None:
        irq, delay, status = args[1], args[2], args[3]
        if irq >= IRQS:
            cpu.guest.kill_guest(f"bad device irq {irq}")
            return
        self._trace(f"device: raise IRQ {irq} in {delay} us")
        self.devices.request(irq, delay, status)

    def _hc_report(self, cpu, args) -> None:
        self.result.checks, self.result.failed = args[1], args[2]

    # ------------------------------------------------------------------
    def _load_guest(self, vm) -> int:
        image = build_guest().read_bytes()
        if len(image) + L.KERNEL_PA > vm.ram_size:
            raise RuntimeError("guest image does not fit in RAM")
        vm.ram[L.KERNEL_PA:L.KERNEL_PA + len(image)] = image
        hdr = L.KERNEL_PA + L.HDR_OFFSET
        if _U32.unpack_from(vm.ram, hdr)[0] != L.HDR_MAGIC:
            raise RuntimeError("guest image has no LGCG header")
        end = _U32.unpack_from(vm.ram, hdr + L.HDR_END)[0]
        if end > vm.ram_size - (1 << 20) // 4:
            raise RuntimeError(f"guest image ends at {end:#x}: too big for {vm.ram_size} bytes of RAM")
        _U32.pack_into(vm.ram, hdr + L.HDR_TICKS, self.ticks)
        _U32.pack_into(vm.ram, hdr + L.HDR_DELTA, self.delta_ns)
        _U32.pack_into(vm.ram, hdr + L.HDR_FAULT, L.GUEST_FAULTS[self.guest_fault])
        _U32.pack_into(vm.ram, hdr + L.HDR_USER_TICKS, self.user_ticks)
        return L.PAGE_OFFSET + L.KERNEL_PA

    def _on_direct(self, vec, cpu, ns) -> None:
        self._trace(f"{vector_name(vec):<18} direct     -> {cpu.cs:#x}:{cpu.eip:#010x} "
                    f"esp={cpu.esp:#x} ({ns / 1000:.1f} us, the CPU's own delivery)")

    # ------------------------------------------------------------------
    def run(self) -> LaunchResult:
        from .unicorn_backend import UnicornVM
        res = self.result
        self._t0 = time.perf_counter_ns()
        wall0 = time.monotonic()
        self.vm = vm = UnicornVM()
        try:
            entry = self._load_guest(vm)
            guest = lgcore.Guest(vm.ram_mm, profile=self.profile)
            cpu = guest.add_vcpu()
            task = Task()
            vm.attach(cpu, task)
            cpu.task = task
            cpu.eip = entry
            init_clockdev(cpu)
            self.devices = _Devices(cpu, vm.ram, vm.ram_size)
            guest.hypercalls = {
                L.LHCALL_CONSOLE_WRITE: self._hc_console,
                L.LHCALL_DEVICE_IRQ: self._hc_device,
                L.LHCALL_REPORT: self._hc_report,
            }
            if self.trace:
                vm.on_direct = self._on_direct
            try:
                self._run_loop(vm, guest, cpu, task, wall0)
            except KeyboardInterrupt:
                guest.kill_guest("launcher: interrupted")
            finally:
                cpu.hrt.cancel()
                events = guest.__dict__.get("clockevents")
                if events is not None:
                    events.close()
                self.devices.close()
            res.dead = guest.dead
            res.shutdown = guest.__dict__.get("shutdown_reason")
            for vec, (n, ns) in vm.direct.items():
                row = self._row(vec, "direct")
                row.count += n
                row.ns += ns
                row.timed += n
            res.exits += sum(n for n, _ in vm.direct.values())
        finally:
            vm.close()
            res.wall_s = time.monotonic() - wall0
        if self._partial:
            res.console.append(self._partial)
            if self.echo_console:
                self._say(self._partial)
        return res

    def _run_loop(self, vm, guest, cpu, task, wall0) -> None:
        """lguest's run_guest(), step by step with lgcore's pieces."""
        res = self.result
        host_idt, defaults = vm.host_idt, vm.defaults
        cpu.changed = cpu.changed | lgcore.CHANGED_IDT
        gap_start = None          # host time: from the guest's exit ...
        gap_rows: list[_Row] = []  # ... to its next entry, charged to these
        next_progress = wall0 + 2.0
        while True:
            now = time.monotonic()
            if now - wall0 > self.timeout:
                guest.kill_guest(f"launcher: timed out after {self.timeout:g} s")
            if self.progress and now >= next_progress and not self.trace:
                next_progress = now + 1.0
                sys.stderr.write(f"[lgcore-launch] {now - wall0:5.1f} s: {res.exits} exits, "
                                 f"{sum(r.count for (v, h), r in res.delivered.items() if h == 'irq')} IRQs, "
                                 f"guest at {cpu.cs:#x}:{cpu.eip:#x}\n")
            vm.clear_kick()
            # 1. the hypercall the guest left with
            if cpu.__dict__.get("hcall"):
                nr = cpu.eax
                row = res.hypercalls.get(nr)
                if row is None:
                    row = res.hypercalls[nr] = _Row()
                gap_rows.append(row)
                if self.trace and nr not in (L.LHCALL_CONSOLE_WRITE,):
                    self._trace(f"hypercall {HCALL_NAMES.get(nr, nr)}({cpu.ebx:#x}, {cpu.ecx:#x}, {cpu.edx:#x})")
                runloop.do_hypercalls(cpu)
            if guest.dead is not None:
                break
            # 4. one pending interrupt, unless the guest cannot take it now
            irq = cpu.deliver_pending()
            if irq is not None:
                gap_rows.append(self._row(32 + irq, "irq"))
                self._trace(f"{vector_name(32 + irq):<18} irq        -> {cpu.cs:#x}:{cpu.eip:#010x} "
                            f"esp={cpu.esp:#x}")
            if guest.dead is not None:
                break
            if cpu.irqs_pending and not cpu.halted:
                # still pending: the guest could not take it at this entry
                vm.host_tick()
            # 7. halted: sleep until set_interrupt() wakes us
            if cpu.halted:
                t = time.perf_counter_ns()
                if gap_start is not None:
                    for row in gap_rows:
                        row.charge(t - gap_start)
                gap_rows = []
                res.halts += 1
                task.sleep_until_interrupt(cpu, timeout=0.25)
                gap_start = time.perf_counter_ns()
                res.halted_s += (gap_start - t) / 1e9
                continue
            # 8. into the guest and back
            runloop.copy_in_guest_info(cpu, host_idt, defaults)
            cpu.trapnum = NO_TRAP
            trapnum, errcode, cr2 = vm.enter(cpu)
            if gap_start is not None:
                for row in gap_rows:
                    row.charge(vm.entry_ns - gap_start)
            gap_rows = []
            gap_start = vm.exit_ns
            res.exits += 1
            if trapnum == L.HOST_KICK_VECTOR:
                res.kicks += 1
            before = (cpu.cs, cpu.eip)
            runloop.lguest_arch_handle_trap(cpu, trapnum, errcode, cr2)
            if trapnum in (TRAP_ENTRY, L.HOST_KICK_VECTOR) or guest.dead is not None:
                continue
            a, b = cpu.get_idt_entry(trapnum) if trapnum < 256 else (0, 0)
            handler = (a & 0xFFFF) | (b & 0xFFFF0000)
            how = "reflected" if (cpu.cs, cpu.eip) != before and cpu.eip == handler else "host"
            gap_rows.append(self._row(trapnum, how))
            if self.trace:
                extra = f" cr2={cr2:#x}" if trapnum == 14 else ""
                self._trace(f"{vector_name(trapnum):<18} {how:<10} err={errcode:#x}{extra} "
                            f"from {before[0]:#x}:{before[1]:#010x} -> {cpu.cs:#x}:{cpu.eip:#010x}")
        # the run is over: charge what the last exit cost
        if gap_start is not None:
            spent = time.perf_counter_ns() - gap_start
            for row in gap_rows:
                row.charge(spent)


def format_report(res: LaunchResult) -> str:
    """The table printed after the guest's console."""
    lines = ["", "what lgcore delivered into the guest:",
             f"  {'vector':>6}  {'event':<20} {'count':>6}  {'how':<10} {'host us/event':>14}"]
    for (vec, how), row in sorted(res.delivered.items()):
        lines.append(f"  {vec:>6}  {vector_name(vec):<20} {row.count:>6}  {how:<10} {row.mean_us:>14.1f}")
    if res.hypercalls:
        lines.append("hypercalls handled by the host (* = the launcher's own):")
        for nr, row in sorted(res.hypercalls.items()):
            lines.append(f"  {nr:>6}  {HCALL_NAMES.get(nr, '?'):<20} {row.count:>6}  {'':<10} {row.mean_us:>14.1f}")
    direct = sum(r.count for (v, h), r in res.delivered.items() if h == "direct")
    lines.append(f"guest exits: {res.exits} ({direct} direct traps delivered in the exit hook, "
                 f"{res.kicks} kicks), HALT sleeps: {res.halts} ({res.halted_s * 1000:.1f} ms)")
    lines.append(f"wall time: {res.wall_s:.3f} s")
    if res.clean_shutdown:
        lines.append(f"guest shut down cleanly: SHUTDOWN {res.shutdown} (lguest's reason: {res.dead!r})")
    elif res.dead is not None:
        lines.append(f"guest KILLED: {res.dead}")
    if res.checks is not None:
        lines.append(f"guest self-checks: {res.checks - res.failed}/{res.checks} passed")
    else:
        lines.append("guest self-checks: no report from the guest")
    lines.append("RESULT: " + ("PASS" if res.passed else "FAIL"))
    return "\n".join(lines)
