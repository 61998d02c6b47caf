# SPDX-License-Identifier: GPL-2.0-only
"""Budgets, hypothesis settings and the sequence test body, shared by the
pytest files, the mutant check (tests/diff/mutant_driver.py) and the soak.

Budget: ``LGCORE_DIFF_EXAMPLES=N`` sets the total number of random sequences
the differential suite runs (default 20,000); each test takes its share.
``LGCORE_DIFF_SEED=S`` swaps the derandomized stream for hypothesis seed S,
so two soaks with different seeds see different sequences.
"""
from __future__ import annotations

import contextlib
import logging
import os
from typing import Callable

from hypothesis import HealthCheck, Phase, given, seed, settings

from .harness import Pair
from .strategies import scenarios

ENV_EXAMPLES = "LGCORE_DIFF_EXAMPLES"
ENV_SEED = "LGCORE_DIFF_SEED"
DEFAULT_EXAMPLES = 20_000


def total_examples() -> int:
    raw = os.environ.get(ENV_EXAMPLES)
    if not raw:
        return DEFAULT_EXAMPLES
    try:
        n = int(raw.replace("_", ""))
    except ValueError:
        raise ValueError(f"{ENV_EXAMPLES}={raw!r} is not an integer") from None
    if n < 1:
        raise ValueError(f"{ENV_EXAMPLES}={raw!r} must be at least 1")
    return n


def share(fraction: float, minimum: int = 1) -> int:
    """This test's part of the total budget."""
    return max(minimum, round(total_examples() * fraction))


def diff_settings(max_examples: int, *, shrink: bool = True, **kw) -> settings:
    phases = [Phase.explicit, Phase.generate] + ([Phase.shrink] if shrink else [])
    user_seed = os.environ.get(ENV_SEED)
    return settings(
        max_examples=max_examples,
        derandomize=user_seed is None,
        database=None,
        deadline=None,
        phases=phases,
        print_blob=False,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                               HealthCheck.large_base_example],
        **kw,
    )


def with_seed(test: Callable) -> Callable:
    user_seed = os.environ.get(ENV_SEED)
    return seed(int(user_seed)) (test) if user_seed is not None else test


@contextlib.contextmanager
def quiet_lgcore_log():
    """init_interrupts() logs every refused vector; thousands of sequences
    would flood the log.  The comparison reads host.last_error instead."""
    log = logging.getLogger("lgcore")
    was = log.disabled
    log.disabled = True
    try:
        yield
    finally:
        log.disabled = was


def sequence_test(pair: Pair, max_examples: int, *, shrink: bool = True) -> Callable[[], None]:
    """A hypothesis test that loads a random state into both implementations
    and runs a random operation sequence, comparing after every operation."""
    @diff_settings(max_examples, shrink=shrink)
    @given(scenarios())
    def random_sequences(scenario):
        state, ops = scenario
        pair.load(state)
        for op in ops:
            pair.run(op)

    test = with_seed(random_sequences)

    def run() -> None:
        with quiet_lgcore_log():
            test()
    return run
