# SPDX-License-Identifier: GPL-2.0-only
# Type stub for the compiled lgcore.idt.  The module has no Python-level
# names: its engine functions are C-level only, for `cimport` (see idt.pxd),
# and the Python face of each is in lgcore.vcpu (idt_address, set_trap, ...).
# tests/packaging/test_stubs.py checks that it stays so.
