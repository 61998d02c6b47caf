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
