# SPDX-License-Identifier: GPL-2.0-only
"""The differential suite catches a broken lgcore.

Compiled mutants: a scratch copy of lgcore with one engine source edited
(tests/diff/mutants.py) is rebuilt and the sequence test runs against it in
a child process.  By default the wrong-push-order mutant (H:210) is built
(one extension, ~10 s); ``LGCORE_DIFF_MUTANTS=all`` builds every mutation in
mutants.MUTATIONS (a .pxd edit rebuilds all three extensions), or name them:
``LGCORE_DIFF_MUTANTS=push-order,gate-keeps-s-bit``.  A control builds the
unedited copy the same way and must come out clean, so a catch is the
mutation's doing and not the copy's.

Python-level mutants: the policy modules (stacks, clock, syscalls) are plain
Python, so a broken version is a real broken lgcore; they are swapped in with
monkeypatch and must be caught in-process.
"""
from __future__ import annotations

import os

import pytest

from lgcore import clock as lgclock
from lgcore import stacks as lgstacks
from lgcore import syscalls as lgsyscalls

from .harness import expected_mismatch
from .mutant_driver import find_mismatch
from .mutants import DEFAULT_MUTATIONS, MUTATIONS, REPO, build_mutant, run_driver
from .runner import sequence_test

ENV_MUTANTS = "LGCORE_DIFF_MUTANTS"
MUTANT_EXAMPLES = 400


def _selected() -> tuple[str, ...]:
    raw = os.environ.get(ENV_MUTANTS, "").strip()
    if raw == "all":
        return tuple(MUTATIONS)
    if raw:
        names = tuple(n.strip() for n in raw.split(",") if n.strip())
        unknown = [n for n in names if n not in MUTATIONS]
        if unknown:
            raise ValueError(f"{ENV_MUTANTS}: unknown mutation(s) {unknown}; known: {sorted(MUTATIONS)}")
        return names
    return DEFAULT_MUTATIONS


@pytest.mark.parametrize("name", sorted(MUTATIONS))
def test_every_mutation_still_applies(name):
    # The text a mutation replaces must still be in the source, once, so a
    # mutant left out of the default run cannot go stale unnoticed.
    m = MUTATIONS[name]
    assert (REPO / m.path).read_text().count(m.old) == 1, (
        f"mutation {name!r}: its text is no longer in {m.path} exactly once")


def test_unmutated_copy_is_clean(reference, tmp_path):
    root = build_mutant(None, tmp_path / "control")
    report = run_driver(root, 100, reference)
    assert not report["caught"], report["mismatch"]


@pytest.mark.parametrize("name", _selected())
def test_compiled_mutant_is_caught(name, reference, tmp_path):
    mutation = MUTATIONS[name]
    root = build_mutant(mutation, tmp_path / name)
    report = run_driver(root, max(MUTANT_EXAMPLES, mutation.sequences), reference,
                        mutation.scenario)
    assert report["caught"], (f"mutant {name} ({mutation.why}) survived "
                              f"{report['sequences']} sequences")


# ---- Python-level mutants of the policy modules ----

def _stack_stored_only_when_valid(cpu, seg, esp, pages):
    # Refuses a bad request instead of storing it (lguest stores it anyway).
    if (seg & 3) != 1 or pages > 2:
        cpu.guest.kill_guest(f"bad stack pages {pages}")
        return
    _ORIG["stack"](cpu, seg, esp, pages)


def _pin_from_esp1(cpu):
    # Forgets the "- 1": pins the page above the stack.
    for i in range(cpu.guest.stack_pages):
        if cpu.guest.dead is not None:
            break
        cpu.pin_page((cpu.esp1 - i * 4096) & 0xFFFFFFFF)


def _clockevent_late(cpu, delta):
    _ORIG["clockevent"](cpu, (delta + 1) & 0xFFFFFFFF if delta else 0)


def _free_nothing(host):
    pass


_ORIG = {"stack": lgstacks.guest_set_stack, "clockevent": lgclock.guest_set_clockevent}

PY_MUTANTS = {
    "set-stack-refuses-bad-requests": (lgstacks, "guest_set_stack", _stack_stored_only_when_valid),
    "pin-from-esp1": (lgstacks, "pin_stack_pages", _pin_from_esp1),
    "clockevent-one-ns-late": (lgclock, "guest_set_clockevent", _clockevent_late),
    "free-interrupts-keeps-vector": (lgsyscalls, "free_interrupts", _free_nothing),
}


@pytest.mark.parametrize("name", tuple(PY_MUTANTS))
def test_python_mutant_is_caught(name, pair, monkeypatch):
    module, attr, broken = PY_MUTANTS[name]
    monkeypatch.setattr(module, attr, broken)
    with expected_mismatch(), pytest.raises(Exception) as info:
        sequence_test(pair, MUTANT_EXAMPLES, shrink=False)()
    assert find_mismatch(info.value) is not None, info.value
