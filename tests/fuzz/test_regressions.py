# SPDX-License-Identifier: GPL-2.0-only
"""Every input the fuzzer (or a hand) found diverging or crashing, replayed.

fuzz/corpus_regressions/ holds
  F<n>-*.bin    an open finding (fuzz/known.py FINDINGS): with the reference
                model strict about F<n> the case must still diverge
                (xfail, strict: when lgcore is fixed the test XPASSes and
                the entry goes from fuzz/known.py), and with F<n> masked
                the rest of the case must agree;
  fixed-F<n>-*  a finding fixed since (fuzz/known.py FIXED): must agree,
                with no model switch at all;
  new-*.bin     written by a fuzz run and not triaged yet: must agree (so a
                fresh find fails here until it is filed or fixed);
  crash-*       libFuzzer's artifacts: replayed in a child process, which
                must not crash.
"""
from __future__ import annotations

import re
import subprocess
import sys

import pytest

from .conftest import ROOT

REG = ROOT / "fuzz" / "corpus_regressions"
FILES = sorted(p for p in REG.iterdir() if p.is_file() and p.suffix not in (".txt", ".md", ".json"))


@pytest.fixture(scope="module")
def harness(reference):
    from fuzz import harness as h
    return h


def _finding(path):
    m = re.match(r"(F\d+)-", path.name)
    return m.group(1) if m else None


def _ids(paths):
    return [p.name for p in paths]


INPROC = [p for p in FILES if not p.name.startswith("crash-")]
CRASHES = [p for p in FILES if p.name.startswith("crash-")]


def test_corpus_is_not_empty():
    assert INPROC, f"no regression inputs in {REG}"


@pytest.mark.parametrize("path", INPROC, ids=_ids(INPROC))
def test_replay_agrees(harness, path):
    """With every known finding masked, lgcore and the original agree."""
    from fuzz.known import DEFAULT_COMPAT
    data = path.read_bytes()
    try:
        harness.run_one(data, compat=DEFAULT_COMPAT)
    except harness.Divergence:
        pytest.fail(harness.explain(data, DEFAULT_COMPAT), pytrace=False)


KNOWN = [p for p in INPROC if _finding(p)]


if KNOWN:     # open findings only; none at the moment
    @pytest.mark.parametrize("path", KNOWN, ids=_ids(KNOWN))
    def test_known_finding(harness, path, request):
        """Strict about its finding, the case shows the divergence until
        lgcore is fixed (xfail strict)."""
        from fuzz.known import DEFAULT_COMPAT, FINDINGS
        fid = _finding(path)
        data = path.read_bytes()
        compat = DEFAULT_COMPAT - {fid}
        if fid in FINDINGS:
            request.applymarker(pytest.mark.xfail(
                strict=True, raises=harness.Divergence,
                reason=f"{fid}: {FINDINGS[fid]['title']} ({FINDINGS[fid]['where']})"))
        harness.run_one(data, compat=compat)


def test_fixed_findings_agree_strictly(harness):
    """The inputs of fixed findings agree with no model switch at all."""
    fixed = [p for p in INPROC if p.name.startswith("fixed-")]
    assert fixed
    for p in fixed:
        data = p.read_bytes()
        try:
            harness.run_one(data, compat=frozenset())
        except harness.Divergence:
            pytest.fail(f"{p.name}:\n" + harness.explain(data, frozenset()), pytrace=False)


def test_known_findings_have_inputs():
    from fuzz.known import FINDINGS
    have = {_finding(p) for p in KNOWN}
    missing = sorted(set(FINDINGS) - have)
    assert not missing, f"findings without a regression input in {REG}: {missing}"


def test_crash_artifacts_replay():
    """libFuzzer's crash-* artifacts, each in a child process."""
    code = ("import sys; from fuzz import harness as h\n"
            "try: h.run_one(open(sys.argv[1], 'rb').read())\n"
            "except h.Divergence as d: print(d.describe()); sys.exit(3)\n")
    for path in CRASHES:
        proc = subprocess.run([sys.executable, "-c", code, str(path)], cwd=ROOT,
                              capture_output=True, text=True, timeout=120)
        assert proc.returncode == 0, f"{path.name}:\n{proc.stdout}{proc.stderr}"


def test_harness_sees_a_planted_bug(harness, monkeypatch):
    """Sanity of the comparison: break lgcore's HALT and the hand-written
    halt-and-wake case must diverge."""
    from fuzz.craft import scenarios
    from lgcore import runloop
    data = scenarios()["halt-wake"]
    harness.run_one(data)
    monkeypatch.setitem(runloop.HYPERCALLS, runloop.LHCALL_HALT, lambda cpu, a: None)
    with pytest.raises(harness.Divergence, match="halted"):
        harness.run_one(data)


def test_seed_corpus_agrees(harness):
    from fuzz.known import DEFAULT_COMPAT
    seeds = sorted((ROOT / "fuzz" / "corpus").iterdir())
    assert seeds
    for p in seeds:
        data = p.read_bytes()
        try:
            harness.run_one(data, compat=DEFAULT_COMPAT)
        except harness.Divergence:
            pytest.fail(f"{p.name}:\n" + harness.explain(data, DEFAULT_COMPAT), pytrace=False)
