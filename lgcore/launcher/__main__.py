# SPDX-License-Identifier: GPL-2.0-only
"""``lgcore-launch`` / ``python -m lgcore.launcher``: boot the demo guest.

Exit status: 0 when the guest shut down cleanly with every self-check
passed; 1 when checks failed; 2 when the guest was killed (lguest's reason
is printed); 3 when the launcher itself could not run (no unicorn, no GNU as).
"""
from __future__ import annotations

import argparse
import sys

from . import layout as L


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="lgcore-launch",
        description="Boot lgcore's demo guest on Unicorn: a ring-1 kernel and a ring-3 "
                    "program whose every interrupt and trap is delivered by lgcore.")
    p.add_argument("--trace", action="store_true", help="print each event as it happens")
    p.add_argument("--profile", choices=("seed", "hardened"), default="seed",
                   help="lgcore fidelity profile (default: seed, lguest as it was)")
    p.add_argument("--timer-hz", type=float, default=250.0,
                   help="the guest's clockevent rate (default 250)")
    p.add_argument("--ticks", type=int, default=5,
                   help="timer interrupts the guest waits for in HALT (default 5)")
    p.add_argument("--user-ticks", type=int, default=2,
                   help="timer interrupts the guest waits for while spinning in ring 3 (default 2)")
    p.add_argument("--guest-fault", choices=tuple(L.GUEST_FAULTS), default="none",
                   help="make the guest misbehave: bad-idt-type (a type-0xC gate), "
                        "bad-stack-segment (SET_STACK with 0x68), unhandled-trap (#UD, no gate)")
    p.add_argument("--timeout", type=float, default=60.0, help="kill the guest after this many seconds")
    p.add_argument("--quiet", action="store_true", help="do not echo the guest console")
    p.add_argument("--no-progress", action="store_true", help="no progress line on long runs")
    return p


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        from .build import GuestBuildError
        from .vmm import Launcher, format_report
        from .unicorn_backend import BackendError, unicorn
        if unicorn is None:
            raise BackendError("the unicorn package is not installed (pip install unicorn)")
        launcher = Launcher(profile=args.profile, timer_hz=args.timer_hz, ticks=args.ticks,
                            user_ticks=args.user_ticks, guest_fault=args.guest_fault,
                            trace=args.trace, progress=not args.no_progress,
                            timeout=args.timeout, echo_console=not args.quiet)
        print(f"lgcore-launch: profile {args.profile}, timer {args.timer_hz:g} Hz, "
              f"{args.ticks} ticks in HALT, guest fault: {args.guest_fault}", flush=True)
        res = launcher.run()
    except (GuestBuildError, BackendError) as exc:
        print(f"lgcore-launch: {exc}", file=sys.stderr)
        return 3
    print(format_report(res), flush=True)
    return res.exit_code


if __name__ == "__main__":
    sys.exit(main())
