# SPDX-License-Identifier: GPL-2.0-only
"""lgcore-launch: a small Python VMM on Unicorn that boots lgcore's demo
guest (a ring-1 kernel and a ring-3 program in assembly, guest/) with every
interrupt and trap delivered by lgcore.

    python -m lgcore.launcher [--trace] [--profile hardened] ...

Programmatic use::

    from lgcore.launcher import Launcher, format_report
    res = Launcher(echo_console=False).run()
    assert res.passed, format_report(res)
"""
from .build import GuestBuildError, build_guest
from .vmm import LaunchResult, Launcher, format_report, vector_name

__all__ = ["GuestBuildError", "LaunchResult", "Launcher", "build_guest", "format_report",
           "vector_name"]
