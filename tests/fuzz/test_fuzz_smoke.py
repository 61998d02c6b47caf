# SPDX-License-Identifier: GPL-2.0-only
"""A short coverage-guided differential run (what `make fuzz` runs longer).

Fails on a crash, a sanitizer report (under tools/asan.sh) or any
divergence the known findings (fuzz/known.py) do not explain; the input
and its trace are in the assertion message.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from .conftest import ROOT

SECONDS = float(os.environ.get("LGCORE_FUZZ_SECONDS", "45"))
NATIVE = "auto" if os.environ.get("LGCORE_FUZZ_NATIVE") == "1" else "off"


@pytest.mark.skipif(SECONDS <= 0, reason="LGCORE_FUZZ_SECONDS=0")
def test_short_fuzz_run(reference, tmp_path):
    pytest.importorskip("atheris")
    found = tmp_path / "found"
    summary = tmp_path / "summary.json"
    cmd = [sys.executable, "-m", "fuzz.run", "--seconds", str(SECONDS), "--jobs", "1",
           "--native", NATIVE, "--workdir", str(tmp_path / "work"), "--save", str(found),
           "--summary", str(summary)]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True,
                          timeout=SECONDS + 600)
    report = proc.stdout[-3000:] + proc.stderr[-3000:]
    assert summary.exists(), report
    s = json.loads(summary.read_text())
    print(f"\n[fuzz] {s['executions']:,} executions in {s['wall_seconds']} s, "
          f"native coverage {'on' if s['native_coverage'] else 'off'}")
    details = ""
    if found.exists():
        for txt in sorted(found.glob("*.txt")):
            details += f"\n== {txt.with_suffix('.bin').name}\n{txt.read_text()}"
        for crash in sorted(found.glob("crash-*")):
            details += f"\n== {crash.name} ({crash.stat().st_size} bytes)"
    log = ""
    for w in sorted((tmp_path / "work").glob("worker-*.log")):
        log += w.read_text(errors="replace")[-2000:]
    assert proc.returncode == 0 and not s["divergences"] and not s["crashes"] \
        and not s["sanitizer_reports"], f"{report}\n{details}\n{log}"
    assert s["executions"] > 0, report
