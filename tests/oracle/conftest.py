# SPDX-License-Identifier: GPL-2.0-only
"""The oracle layer's fixture (one Unicorn machine, its QEMU bridge, and an
lgcore guest over the same RAM) and the session summary.

Without unicorn, or when the QEMU bridge's start-up checks fail, the oracle
tests skip -- unless LGCORE_REQUIRE_UNICORN=1 (CI), when they fail loudly
with the reason.
"""
import os

import pytest

from .checks import STATS

ENV_REQUIRE = "LGCORE_REQUIRE_UNICORN"


def _unavailable(why: str):
    if os.environ.get(ENV_REQUIRE) == "1":
        pytest.fail(f"{ENV_REQUIRE}=1 but {why}", pytrace=False)
    pytest.skip(why)


def make_oracle():
    """Build the oracle or skip/fail with the reason (see module doc)."""
    try:
        import unicorn  # noqa: F401
    except ImportError as exc:
        _unavailable(f"unicorn is not installed: {exc}")
    from .qemu_bridge import BridgeError
    try:
        from .oracle import Oracle
        return Oracle()
    except BridgeError as exc:
        _unavailable(f"the bridge into QEMU's CPU state does not hold: {exc}")


@pytest.fixture(scope="package")
def oracle():
    # package scope: the lgcore guest over the oracle's RAM is gone again
    # before other test folders run (tests/stress counts live guests)
    o = make_oracle()
    yield o
    o.close()


def pytest_terminal_summary(terminalreporter):
    s = STATS
    if not (s.scenarios or s.random):
        return
    terminalreporter.write_sep("-", "oracle: lgcore against QEMU's own interrupt delivery")
    terminalreporter.write_line(
        f"oracle: {s.scenarios} scenarios and {s.random} random cases compared "
        f"({s.lgcore_runs} lgcore deliveries in profiles seed and hardened; "
        f"{s.with_diffs} showed an explained difference)")
