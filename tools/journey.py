#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0-only
"""Where lgcore carries each stop of lguest's journey.

lguest's source is written to be read in order: its comments open with a
journey marker (a letter for the part of the tour, three digits for the
stop, e.g. H:210 for the Host building an interrupt frame).  lgcore keeps
those markers on the code that re-implements the same step, as ``# H:210``
comments with its own prose; lgcore's own notes use letters the seed does
not.  This tool reads the markers out of the seed (the C original), finds
them in lgcore and prints the map: marker, the seed's line and functions,
lgcore's file:line and the function that follows the marker there.

    python tools/journey.py [--seed PATH] [--check]

``--check`` exits 1 when a Host (H) marker of the seed is missing from
lgcore or sits on code other than its own.  The seed is
``$LGCORE_C_ORIGINAL`` when set, else ``../shared/seed/interrupts_and_traps.c``
beside the repository.
"""
import argparse
import os
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

SEED_MARKER = re.compile(r"/\*([A-Z]):(\d{3})\b")
SEED_SECTION_END = re.compile(r"^\s*/\*:\*/\s*$")
# A C function definition in the seed (it has no indentation): a type, the
# name, an opening parenthesis, and no semicolon on the line.
SEED_DEF = re.compile(r"^(?!return\b|if\b|else\b|while\b|for\b|switch\b)"
                      r"(?:[A-Za-z_]\w*[\s*]+)+\**([A-Za-z_]\w*)\([^;]*$")
OUR_MARKER = re.compile(r"^\s*#\s*([A-Z]):(\d{3})(?![-\d])")  # not a range "H:205-H:220"
OUR_SECTION_END = re.compile(r"^\s*#\s*:\*\s*$")
OUR_DEF = re.compile(r"^\s*(?:async\s+)?(?:def|cdef|cpdef)\s+(?:[\w\[\]\*]+\s+)*?\**(\w+)\s*\(")
SOURCES = ("*.py", "*.pyx", "*.pxd")


@dataclass
class SeedMarker:
    tag: str
    line: int
    functions: list = field(default_factory=list)


@dataclass
class OurMarker:
    tag: str
    path: Path
    line: int
    function: str | None


def seed_path() -> Path | None:
    env = os.environ.get("LGCORE_C_ORIGINAL")
    p = Path(env).expanduser() if env else REPO.parent / "shared" / "seed" / "interrupts_and_traps.c"
    return p if p.is_file() else None


def seed_markers(text: str) -> dict:
    """{tag: SeedMarker}: each marker with the functions defined between it
    and the next marker or section end."""
    out, current = {}, None
    for n, line in enumerate(text.splitlines(), 1):
        m = SEED_MARKER.search(line)
        if m:
            current = out.setdefault(f"{m[1]}:{m[2]}", SeedMarker(f"{m[1]}:{m[2]}", n))
            continue
        if SEED_SECTION_END.match(line):
            current = None
            continue
        d = SEED_DEF.match(line)
        if d and current is not None:
            current.functions.append(d[1])
    return out


def _plain(name: str) -> str:
    return name[3:] if name.startswith("lg_") else name


def our_markers(root: Path = REPO) -> list:
    """Every ``# X:nnn`` comment line in lgcore's sources, with the first
    function defined after it (before the next marker or ``# :*``)."""
    found = []
    files = sorted({p for pat in SOURCES for p in (root / "lgcore").rglob(pat)})
    for path in files:
        lines = path.read_text().splitlines()
        for i, line in enumerate(lines):
            m = OUR_MARKER.match(line)
            if not m:
                continue
            function = None
            for later in lines[i + 1:]:
                if OUR_MARKER.match(later) or OUR_SECTION_END.match(later):
                    break
                d = OUR_DEF.match(later)
                if d:
                    function = _plain(d[1])
                    break
            found.append(OurMarker(f"{m[1]}:{m[2]}", path.relative_to(root), i + 1, function))
    return found


def problems(seed: dict, ours: list) -> list:
    """What --check complains about (and tests/packaging/test_journey.py)."""
    out = []
    letters = {tag[0] for tag in seed}
    by_tag = {}
    for o in ours:
        by_tag.setdefault(o.tag, []).append(o)
    for tag, s in seed.items():
        if not tag.startswith("H:"):
            continue
        if tag not in by_tag:
            out.append(f"{tag} (seed line {s.line}, {', '.join(s.functions)}) is not in lgcore")
    for o in ours:
        if o.tag[0] not in letters:
            continue                    # lgcore's own notes
        s = seed.get(o.tag)
        if s is None:
            out.append(f"{o.path}:{o.line}: {o.tag} is no marker of the seed")
        elif s.functions and o.function not in s.functions:
            out.append(f"{o.path}:{o.line}: {o.tag} sits on {o.function or 'no function'}, "
                       f"the seed has it on {', '.join(s.functions)}")
    return out


def render(seed: dict, ours: list) -> str:
    rows = [("marker", "seed", "seed functions", "lgcore", "lgcore function")]
    by_tag = {}
    for o in ours:
        by_tag.setdefault(o.tag, []).append(o)
    order = sorted(seed, key=lambda t: seed[t].line)
    for tag in order:
        s = seed[tag]
        places = by_tag.get(tag) or [None]
        for o in places:
            rows.append((tag, f"line {s.line}", ", ".join(s.functions) or "-",
                         f"{o.path}:{o.line}" if o else "-", (o.function or "-") if o else "-"))
    own = [o for o in ours if o.tag not in seed]
    for o in sorted(own, key=lambda o: o.tag):
        rows.append((o.tag, "(lgcore's own)", "", f"{o.path}:{o.line}", o.function or "-"))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seed", type=Path, help="the C original (default: see above)")
    ap.add_argument("--check", action="store_true", help="exit 1 on a missing or misplaced marker")
    args = ap.parse_args(argv)
    path = args.seed or seed_path()
    if path is None or not path.is_file():
        print("journey: no seed found (set LGCORE_C_ORIGINAL or pass --seed)", file=sys.stderr)
        return 2
    seed = seed_markers(path.read_text(errors="replace"))
    ours = our_markers()
    print(render(seed, ours))
    if args.check:
        bad = problems(seed, ours)
        for p in bad:
            print(f"journey: {p}", file=sys.stderr)
        return 1 if bad else 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
