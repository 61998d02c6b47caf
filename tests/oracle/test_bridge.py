# SPDX-License-Identifier: GPL-2.0-only
"""The bridge into Unicorn's private CPU state: pinned, verified at start-up,
and loud when its assumptions break (a failure with LGCORE_REQUIRE_UNICORN=1,
never a crash and never a silent skip in CI)."""
import re
from pathlib import Path

import pytest

from . import qemu_bridge as B
from .conftest import make_oracle

pytestmark = pytest.mark.oracle

ROOT = Path(__file__).resolve().parents[2]


def test_pinned_version_matches_the_projects_pin(oracle):
    import unicorn
    assert unicorn.__version__ == B.PINNED_VERSION
    pins = re.findall(r'"unicorn==([0-9.]+)"', (ROOT / "pyproject.toml").read_text())
    assert pins and set(pins) == {B.PINNED_VERSION}, pins


def test_start_up_probes_passed(oracle):
    assert oracle.m.bridge.probes_passed


def test_qemu_frames_follow_the_sdm(oracle):
    """The oracle itself, against frames written out by hand from the SDM
    (no lgcore involved): #GP(0x1238) from ring 3 through an interrupt
    gate, and int $0x80 from ring 1 through a DPL-3 trap gate."""
    from . import machine as M
    from .oracle import Gate, Scenario
    esp1 = M.KSTACK_END_VA - 0x100
    s = Scenario("sdm #GP", "native", "load_ds_gp", ring=3, esp=0x0810FF00, esp1=esp1, eflags=0x246)
    c = oracle.compare(s, "hardened")
    assert c.qemu.frame == [0x1238, M.snippet_va("load_ds_gp"), M.USER_CS, 0x246, 0x0810FF00, M.USER_DS]
    assert c.qemu.entry == {"cs": 0x61, "ss": 0x69, "esp": esp1 - 24, "eip": M.handler_va(13, True),
                            "eflags": 0x46}
    s = Scenario("sdm int", "native", "int80", ring=1, esp=M.KSTACK_VA + 0x5000, eflags=0x3203,
                 gates=((0x80, Gate(0xF, 3)),))
    c = oracle.compare(s, "hardened")
    assert c.qemu.frame == [M.snippet_va("int80") + 2, M.GUEST_CS, 0x3203]
    assert c.qemu.entry == {"cs": 0x61, "ss": 0x69, "esp": M.KSTACK_VA + 0x5000 - 12,
                            "eip": M.handler_va(0x80, False), "eflags": 0x3203}
    assert c.qemu.outcome.returned and c.qemu.outcome.state.cpl == 1


def _new_bridge():
    from unicorn import UC_ARCH_X86, UC_MODE_32, Uc
    from unicorn import x86_const as X
    uc = Uc(UC_ARCH_X86, UC_MODE_32)
    uc.mem_map(0, 0x1000)                     # initialises the CPU
    return B.QemuBridge(uc, X)


def test_a_bridge_on_this_unicorn_builds():
    assert _new_bridge().cpu


def test_other_unicorn_version_is_refused(monkeypatch):
    import unicorn
    monkeypatch.setattr(unicorn, "__version__", "2.1.3")
    with pytest.raises(B.BridgeError, match="pinned to 2.1.4"):
        _new_bridge()


def test_changed_machine_code_is_refused(monkeypatch):
    sig = dict(B._SIGNATURES)
    # as if exception_index had moved from 0x81a0 to 0x81a8
    sig["x86_cpu_do_interrupt_x86_64"] = sig["x86_cpu_do_interrupt_x86_64"].replace("a0810000", "a8810000", 1)
    monkeypatch.setattr(B, "_SIGNATURES", sig)
    with pytest.raises(B.BridgeError, match="machine code of x86_cpu_do_interrupt_x86_64"):
        _new_bridge()


@pytest.mark.parametrize("where", ["cpu_pointer", "env_offset"])
def test_wrong_layout_is_refused_not_crashed(monkeypatch, where):
    if where == "cpu_pointer":
        monkeypatch.setattr(B, "UC_CPU_PTR", 0x1C0)
    else:
        monkeypatch.setattr(B, "CPU_ENV", 0x8A58)
    with pytest.raises(B.BridgeError):
        _new_bridge()


def test_broken_bridge_fails_loudly_in_ci(monkeypatch):
    import unicorn
    monkeypatch.setattr(unicorn, "__version__", "9.9.9")
    monkeypatch.setenv("LGCORE_REQUIRE_UNICORN", "1")
    with pytest.raises(pytest.fail.Exception, match="LGCORE_REQUIRE_UNICORN=1 but the bridge"):
        make_oracle()
    monkeypatch.delenv("LGCORE_REQUIRE_UNICORN")
    with pytest.raises(pytest.skip.Exception, match="pinned to 2.1.4"):
        make_oracle()
