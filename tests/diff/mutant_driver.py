# SPDX-License-Identifier: GPL-2.0-only
"""Child-process half of tests/diff/mutants.py: run the differential
sequence test against whichever ``lgcore`` this interpreter imports (the
scratch copy in the working directory) and print one JSON line:
{"caught": true, "sequence": k, "mismatch": "..."} or {"caught": false, ...}.
"""
from __future__ import annotations

import json
import os
import sys


def find_mismatch(exc: BaseException):
    """The Mismatch in ``exc`` (hypothesis may group several failures)."""
    from .harness import Mismatch
    if isinstance(exc, Mismatch):
        return exc
    for sub in getattr(exc, "exceptions", ()):
        found = find_mismatch(sub)
        if found is not None:
            return found
    return None


#: The differential tests a mutant can be run against: name -> (module,
#: function returning the test body for (pair, examples, shrink)).
SCENARIOS = {
    "sequences": ("tests.diff.runner", "sequence_test"),
    "kept_walk": ("tests.diff.test_kept_walk", "kept_walk_test"),
}


def main(examples: int, scenario: str = "sequences") -> None:
    import lgcore
    here = os.path.realpath(os.getcwd())
    where = os.path.realpath(os.path.dirname(lgcore.__file__))
    if not where.startswith(here + os.sep):
        raise SystemExit(f"imported lgcore from {where}, not from the copy in {here}")

    from lgcore.reference import load_reference

    import importlib

    from .harness import STATS, Pair

    module, name = SCENARIOS[scenario]
    test_body = getattr(importlib.import_module(module), name)
    pair = Pair(load_reference())
    report = {"lgcore": where, "examples": examples, "scenario": scenario}
    try:
        test_body(pair, examples, shrink=False)()
    except Exception as exc:
        found = find_mismatch(exc)
        if found is None:
            raise
        report.update(caught=True, sequence=STATS.sequences, operations=STATS.operations,
                      mismatch=str(found).split("\nstate:")[0])
    else:
        report.update(caught=False, sequences=STATS.sequences, operations=STATS.operations)
    sys.stdout.flush()
    print(json.dumps(report))
