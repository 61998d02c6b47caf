# SPDX-License-Identifier: GPL-2.0-only
"""The fuzz suite: replay of fuzz/corpus_regressions/ and a short
coverage-guided run (fuzz.run).

LGCORE_FUZZ_SECONDS sets the length of the short run (default 45 s;
0 skips it); LGCORE_FUZZ_NATIVE=1 gives it native coverage (a clang build
of the engine and the C original into build/fuzz/, slow the first time).
The long runs are `make fuzz FUZZ_SECONDS=N` and fuzz/README.md.
"""
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:          # the fuzz package lives at the top
    sys.path.insert(0, str(ROOT))
