# SPDX-License-Identifier: GPL-2.0-only
"""Differential fuzzing of lgcore against the C original.

``fuzz.harness`` turns a byte string into a guest state and a sequence of
guest-facing operations, runs them on lgcore (profile "seed") and on the
unmodified C original built through include/kshim, and raises ``Divergence``
on any difference in registers, guest RAM, IDT, pending IRQs, halted,
changed, kill reason or timer deadline.  ``fuzz.model`` is the part of the
host lguest kept around interrupts_and_traps.c (hypercalls.c, the trap
switch of x86/core.c, run_guest) written over the original's entry points,
so hypercall arguments and trap numbers are compared too.  ``fuzz.run`` is
the atheris driver (``python -m fuzz.run --seconds N``).
"""
