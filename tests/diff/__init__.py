# SPDX-License-Identifier: GPL-2.0-only
"""Differential tests: lgcore (profile "seed") against the unmodified C
original built through include/kshim, state for state after every operation."""
