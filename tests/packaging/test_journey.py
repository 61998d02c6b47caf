# SPDX-License-Identifier: GPL-2.0-only
"""lguest's journey markers in lgcore, and the seed's words kept out.

The markers are read from the seed at test time (tools/journey.py does the
reading and prints the map); every Host marker must sit in lgcore on the code
that does the same step.  And no file of the repository may carry a run of
eight consecutive words of a seed comment: facts carry over, words do not.
"""
import importlib.util
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import require

REPO = Path(__file__).resolve().parents[2]
RUN = 8          # words in a row that count as pasted


def _load_tool():
    spec = importlib.util.spec_from_file_location("lgcore_journey", REPO / "tools" / "journey.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod        # dataclasses look their module up
    spec.loader.exec_module(mod)
    return mod


journey = _load_tool()


@pytest.fixture(scope="module")
def seed_text():
    path = journey.seed_path()
    if path is None:
        require("LGCORE_REQUIRE_C_ORIGINAL", "the seed (../shared/seed) is not beside the repo")
    return path.read_text(errors="replace")


@pytest.fixture(scope="module")
def seed(seed_text):
    return journey.seed_markers(seed_text)


def test_seed_markers_read(seed, seed_text):
    # As many H markers as the text shows, each with the functions after it.
    raw = set(re.findall(r"/\*(H:\d{3})", seed_text))
    assert raw and raw == {t for t in seed if t.startswith("H:")}
    assert all(seed[t].functions for t in raw), {t: seed[t].functions for t in raw}


def test_every_host_marker_on_its_code(seed):
    bad = journey.problems(seed, journey.our_markers(REPO))
    assert not bad, "\n".join(bad)


def test_each_host_marker_placed_once_in_code(seed):
    ours = journey.our_markers(REPO)
    for tag in (t for t in seed if t.startswith("H:")):
        places = [f"{o.path}:{o.line}" for o in ours if o.tag == tag]
        assert len(places) == 1, f"{tag}: {places}"


def test_problems_are_caught(seed):
    # The checker itself: a marker on the wrong function, an invented one,
    # and a missing one are reported.
    Our = journey.OurMarker
    some = next(t for t in seed if t.startswith("H:"))
    other = next(f for t, s in seed.items() if t != some for f in s.functions
                 if f not in seed[some].functions)
    bad = journey.problems(seed, [Our(some, Path("x.pyx"), 1, other),
                                  Our("H:999", Path("y.pyx"), 2, "f")])
    assert any("sits on" in b for b in bad)
    assert any("H:999" in b for b in bad)
    assert any("is not in lgcore" in b for b in bad)


def test_tool_prints_the_map(seed):
    run = subprocess.run([sys.executable, str(REPO / "tools" / "journey.py"), "--check"],
                         capture_output=True, text=True, cwd=REPO)
    assert run.returncode == 0, run.stderr
    for tag in (t for t in seed if t.startswith("H:")):
        line = next(ln for ln in run.stdout.splitlines() if ln.startswith(tag))
        assert re.search(r"lgcore/\S+:\d+", line), line


# ---- the seed's words ----------------------------------------------------------

def _words(text):
    return re.findall(r"[a-z0-9_]+", text.lower())


def _repo_files():
    out = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z"],
                         cwd=REPO, capture_output=True, check=True)
    return [REPO / p for p in out.stdout.decode().split("\0") if p]


def _seed_runs(seed_text):
    runs = set()
    for comment in re.findall(r"/\*.*?\*/", seed_text, re.S):
        words = _words(re.sub(r"^/\*[A-Z]:\d{3}", "", comment))
        runs.update(tuple(words[i:i + RUN]) for i in range(len(words) - RUN + 1))
    return runs


def _pasted_in(path, runs):
    """The word runs of ``path`` that are seed comment runs."""
    if not path.is_file() or path.stat().st_size > 4 << 20:
        return []
    try:
        words = _words(path.read_text())
    except UnicodeDecodeError:
        return []
    return [" ".join(words[i:i + RUN]) for i in range(len(words) - RUN + 1)
            if tuple(words[i:i + RUN]) in runs]


def test_no_seed_comment_pasted(seed_text):
    runs = _seed_runs(seed_text)
    assert len(runs) > 1000, "the seed's comments were not read"
    pasted = []
    for path in _repo_files():
        hits = _pasted_in(path, runs)
        if hits:
            pasted.append(f"{path.relative_to(REPO)}: {len(hits)} run(s), e.g. \"{hits[0]}\"")
    assert not pasted, "seed comment text in the repo:\n" + "\n".join(pasted)


def test_paste_check_would_fire(seed_text, tmp_path):
    # A sentence lifted from the seed is found with its case, punctuation
    # and comment stars changed; our own prose on the same step is not.
    runs = _seed_runs(seed_text)
    comment = max(re.findall(r"/\*.*?\*/", seed_text, re.S), key=len)
    lifted = " ".join(_words(comment)[3:3 + RUN + 2]).upper()
    (tmp_path / "lifted.py").write_text(f"x = 1\n#   {lifted}!\n")
    assert _pasted_in(tmp_path / "lifted.py", runs)
    (tmp_path / "ours.py").write_text("# Build the frame the CPU would build.\n")
    assert not _pasted_in(tmp_path / "ours.py", runs)
