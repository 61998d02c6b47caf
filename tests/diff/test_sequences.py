# SPDX-License-Identifier: GPL-2.0-only
"""The bulk of the differential suite: random guest states, random sequences
of every entry point of the seed, lgcore (profile "seed") against the
unmodified C original, the whole state compared after every operation.

95% of the budget (LGCORE_DIFF_EXAMPLES, default 20,000 sequences) runs
here, the rest in test_machine.py.
"""
from __future__ import annotations

from .harness import OPS
from .runner import sequence_test, share
from .strategies import KIND_TABLE, STATE_BYTES, Reader, decode_state


def test_random_sequences(pair):
    sequence_test(pair, share(0.95, minimum=10))()


def test_every_operation_is_generated():
    """The decoder can produce every operation the harness knows."""
    assert set(KIND_TABLE) == set(OPS)


def test_state_decoder_stays_in_its_bytes():
    """The state decoder never reads past STATE_BYTES (so operation bytes
    never leak into the state), even when every selector takes its longest
    branch."""
    for fill in (0x00, 0xFF, 0x7F, 0xC8):
        r = Reader(bytes([fill]) * STATE_BYTES)
        decode_state(r)
        assert r.pos <= STATE_BYTES
