# SPDX-License-Identifier: GPL-2.0-only
"""The oracle layer: lgcore's frames against QEMU's own interrupt delivery
(``pytest -m oracle``).  See oracle.py for what is compared."""
