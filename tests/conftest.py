# SPDX-License-Identifier: GPL-2.0-only
"""Fixtures shared by every test folder.

Optional dependencies (the compiled C original, unicorn) skip their tests on a
user's machine; CI sets LGCORE_REQUIRE_C_ORIGINAL=1 / LGCORE_REQUIRE_UNICORN=1
and the skip becomes a failure.
"""
import os

import pytest


def require(env: str, why: str) -> None:
    """Skip with `why`, or fail when `env` is set to 1 (CI)."""
    if os.environ.get(env) == "1":
        pytest.fail(f"{env}=1 but {why}", pytrace=False)
    pytest.skip(why)


@pytest.fixture(scope="session")
def reference():
    """The unmodified C original compiled through include/kshim (lgcore.reference)."""
    from lgcore import reference as refmod

    try:
        return refmod.load_reference()
    except refmod.ReferenceUnavailable as exc:
        require("LGCORE_REQUIRE_C_ORIGINAL", f"the C original is unavailable: {exc}")


@pytest.fixture(scope="session")
def unicorn():
    try:
        import unicorn as uc
    except ImportError as exc:
        require("LGCORE_REQUIRE_UNICORN", f"unicorn is not installed: {exc}")
    return uc


def pytest_sessionfinish(session, exitstatus):
    """Under CI (LGCORE_CI=1, set by .ci/run) a skipped test fails the run:
    every optional dependency is installed there, so a skip means a test
    proved nothing."""
    if os.environ.get("LGCORE_CI") != "1" or exitstatus != 0:
        return
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    skipped = reporter.stats.get("skipped", []) if reporter else []
    if skipped:
        reporter.write_line(f"LGCORE_CI=1: {len(skipped)} test(s) skipped; CI allows none:",
                            red=True)
        for rep in skipped:
            reporter.write_line(f"  {rep.nodeid}: {rep.longrepr[-1] if rep.longrepr else ''}")
        session.exitstatus = 1
