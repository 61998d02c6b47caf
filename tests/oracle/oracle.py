# SPDX-License-Identifier: GPL-2.0-only
"""Run one event twice from the same guest state -- delivered by QEMU's CPU
code through a real IDT, and by lgcore -- and say how the two differ.

A ``Scenario`` names the event (a software INT, an exception raised by a
real instruction, an exception or IRQ injected at an instruction boundary),
the ring it comes from, the registers, the stacks, the gate and the guest's
virtual interrupt flag.  ``Oracle.compare(scenario, profile)`` returns a
``Comparison`` whose ``diffs`` list every difference left after the intended
ones were normalised (each rule is a comment starting "Normalisation" that
says why), and ``problems()`` says which of those are not explained by the
seed's eflags divergence or a declared quirk (``QUIRKS``).

What is compared:
  * whether a frame was built at all (an IRQ with interrupts off is not);
  * frame length and every frame word;
  * handler entry cs, ss, esp, eip, the eflags the handler runs with, and the
    guest's virtual IF;
  * every byte of the stack pages the frame can touch (all of RAM for the
    fixed scenarios) -- nothing else may change;
  * after the guest handler's own ``iret``: every general register, the six
    segment registers, esp, eip, CPL and eflags -- or, when a handler did not
    get back (TF single-steps it, NT turns its iret into a task return), the
    event that stopped it.
"""
from __future__ import annotations

import struct
from dataclasses import dataclass, field

import lgcore
from lgcore.constants import LD_BLOCKED, LD_IRQ_ENABLED, LD_IRQ_PENDING

from . import machine as M
from .machine import (EFLAGS_IF, EFLAGS_NT, EFLAGS_RF, EFLAGS_TF, EFLAGS_VM, ERR_VECTORS,
                      GUEST_CS, GUEST_DS, KERNEL_CS, LGUEST_DATA_PA, PGDIR_PA, Plan,
                      USER_CS, USER_DS, make_gate)

GATE_INT, GATE_TRAP = 0xE, 0xF
# The flags the CPU clears on every delivery (and lguest 4.x / lgcore's
# hardened profile with it); the seed leaves them set.
CLEARED_ON_DELIVERY = EFLAGS_TF | EFLAGS_NT | EFLAGS_RF | EFLAGS_VM
LD_PAGE = LGUEST_DATA_PA >> 12
REGS72 = struct.Struct("<18I")


@dataclass(frozen=True)
class Gate:
    """A guest IDT entry.  ``selector`` is what the guest wrote; ``error_handler``
    picks the handler that pops an error code before its ``iret``."""
    gate_type: int = GATE_INT
    dpl: int = 0
    selector: int = KERNEL_CS
    error_handler: bool | None = None   # None: the CPU pushes one for this vector


@dataclass(frozen=True)
class Scenario:
    name: str
    event: str                     # "native" (raised by the snippet) | "inject" | "irq"
    snippet: str                   # machine.SNIPPETS key
    ring: int = 3                  # 3 or 1
    vector: int | None = None      # inject/irq: the vector to deliver
    error_code: int | None = None  # inject: the error code
    gates: tuple = ()              # ((vector, Gate), ...) on top of the default IDT
    regs: tuple = ()               # ((name, value), ...): gprs, data segments
    eflags: int = 0x202            # the guest's eflags; IF is its *virtual* IF (see below)
    esp: int | None = None         # default: near the top of the ring's stack
    esp1: int = M.KSTACK_END_VA - 0x800
    cr0_ts: bool = False
    tss_backlink: int = 0
    gp_selector: int = 0x1238      # what `mov ds` loads in the #GP snippet
    lgcore_extra_eflags: int = 0   # bits only lgcore's input has (VM: see the rules)
    full_ram: bool = False
    quirk: str | None = None       # a known difference this scenario must show (QUIRKS)

    def gate_map(self) -> dict:
        return dict(self.gates)


@dataclass
class Side:
    """One delivery as observed: by QEMU or by lgcore."""
    delivered: bool
    entry: dict | None = None        # cs ss esp eip eflags at handler entry
    virtual_if: int = 0              # the guest's interrupt flag at handler entry
    real_if: int | None = None       # lgcore only: the CPU's IF at handler entry
    frame: list | None = None
    pages: dict = field(default_factory=dict)
    outcome: object = None           # machine.Outcome after the handler's iret
    dead: str | None = None
    irq_pending_word: int | None = None
    regs_unchanged: bool = True      # lgcore, nothing delivered: registers untouched


@dataclass(frozen=True)
class Diff:
    """One difference.  ``kind`` is one of: dead, delivered, held, frame,
    frame_len, frame_word, entry, real_if, virtual_if, entry_eflags, ram,
    after_reg, after_cpl, after_eflags, after_outcome.  ``bits``: for the
    eflags kinds, the bits that differ."""
    kind: str
    text: str
    bits: int = 0

    def __str__(self):
        return self.text


@dataclass
class Comparison:
    scenario: Scenario
    profile: str
    qemu: Side
    lg: Side
    delivery: object
    diffs: list

    @property
    def kinds(self) -> set:
        return {d.kind for d in self.diffs}

    def explain(self) -> str:
        s = self.scenario
        head = f"{s.name} [{self.profile}] vector {self.delivery.vector} ({self.delivery.kind})"
        return head + "".join(f"\n  - {d}" for d in self.diffs)


def _hx(v):
    return "None" if v is None else f"{v:#x}"


def default_gate(vector: int) -> Gate:
    return Gate(GATE_INT, 0, KERNEL_CS, None)


class Oracle:
    """One machine (Unicorn + QEMU bridge) and one lgcore guest over the same RAM."""

    def __init__(self):
        self.m = M.Machine()
        self.guest = lgcore.Guest(self.m.ram, profile="seed", clock=lgcore.VirtualClock(1_000_000_000))
        self.cpu = self.guest.add_vcpu()
        self.cpu.paging = True
        self.cpu.pgdir = PGDIR_PA
        self.guest.lguest_data = LGUEST_DATA_PA
        self.compared = 0      # lgcore deliveries compared
        self.scenarios = 0     # QEMU deliveries (events)
        self._default_idt = b"".join(
            struct.pack("<II", *self._gate_words(v, default_gate(v), GUEST_CS)) for v in range(256))
        # Tests may set this to rewrite lgcore's frame in guest RAM right
        # after lgcore built it (the mutation check): f(words) -> words.
        self.tamper_lgcore_frame = None

    def close(self) -> None:
        """Release the lgcore guest (and with it the RAM buffer it holds)."""
        if self.guest is not None:
            self.guest.close()
        self.guest = self.cpu = None

    # ------------------------------------------------------------------
    @staticmethod
    def _gate(s: Scenario, vector: int) -> Gate:
        return s.gate_map().get(vector) or default_gate(vector)

    @staticmethod
    def _gate_words(vector: int, g: Gate, selector: int) -> tuple[int, int]:
        pops = g.error_handler if g.error_handler is not None else vector in ERR_VECTORS
        return make_gate(M.handler_va(vector, pops), selector, g.gate_type, g.dpl)

    def _initial_regs(self, s: Scenario) -> dict:
        if s.ring == 3:
            regs = dict(cs=USER_CS, ss=USER_DS, ds=USER_DS, es=USER_DS, fs=0, gs=0,
                        esp=s.esp if s.esp is not None else M.USER_STACK_END_VA - 0x40)
        else:
            regs = dict(cs=GUEST_CS, ss=GUEST_DS, ds=GUEST_DS, es=GUEST_DS, fs=0, gs=0,
                        esp=s.esp if s.esp is not None else M.KSTACK_VA + 0x8000)
        regs.update(eax=0, ebx=0, ecx=0, edx=0, esi=0, edi=0, ebp=0)
        regs.update(dict(s.regs))
        regs["eip"] = M.snippet_va(s.snippet)
        regs["eflags"] = (s.eflags | 0x2) & ~EFLAGS_VM
        return regs

    # ------------------------------------------------------------------
    def compare(self, s: Scenario, profile: str) -> Comparison:
        return self.compare_profiles(s, (profile,))[0]

    def compare_profiles(self, s: Scenario, profiles=("seed", "hardened")) -> list:
        """QEMU delivers once; lgcore delivers once per profile from the
        same state; one Comparison per profile."""
        m = self.m
        if len({v for v, _ in s.gates}) != len(s.gates):
            raise ValueError(f"{s.name}: a vector has two gates: {s.gates}")
        # ---- the guest state both runs start from ----
        # Normalisation (CS forced to 0x61): lguest runs every guest handler
        # at ring 1 through __KERNEL_CS|1 = 0x61 whatever selector the guest's
        # gate named (set_trap rewrites it).  The real IDT QEMU delivers
        # through therefore carries the selector lguest will use, while
        # lgcore is given the guest's own.
        m.set_idt(self._default_idt)
        for v, g in s.gates:
            m.set_gate(v, *self._gate_words(v, g, GUEST_CS))
        m.set_tss(s.esp1, GUEST_DS, s.tss_backlink)
        m.w32(M.USER_DATA_PA + M.D_SEL_GP, s.gp_selector)
        regs = self._initial_regs(s)
        # Normalisation (pushed IF is the virtual IF): an lguest guest always
        # runs with the real IF set and keeps its interrupt flag in
        # lguest_data.irq_enabled.  The CPU in QEMU runs with IF = that
        # virtual flag (what a native kernel would have), so both push the
        # same IF bit and an IRQ is taken by both or by neither.
        virtual_if = s.eflags & EFLAGS_IF
        cr0 = M.BASE_CR0 | (M.CR0_TS if s.cr0_ts else 0)

        # ---- QEMU ----
        plan = Plan(s.event, event_eip=M.event_va(s.snippet), vector=s.vector,
                    error_code=s.error_code, full_ram=s.full_ram)
        m.run_event(regs, plan, cr0)
        d = plan.delivery
        if d is None:
            raise RuntimeError(f"{s.name}: no event reached the hook")
        q = Side(delivered=d.kind != "held")
        if q.delivered:
            q.entry = {k: d.after[k] for k in ("cs", "ss", "esp", "eip", "eflags")}
            q.virtual_if = d.after["eflags"] & EFLAGS_IF
            q.frame = self._frame(d.stack_top, d.after["esp"])
            q.pages = d.ram_after
            q.outcome = m.run_handler(d.after, d.pushed_eip)
        else:
            q.pages = d.ram_before
        m.restore(d.ram_before)

        # ---- lgcore, on the same RAM and registers, per profile ----
        out = []
        for profile in profiles:
            lg = self._run_lgcore(s, d, virtual_if, profile)
            m.restore(d.ram_before)
            out.append(Comparison(s, profile, q, lg, d, self._diff(s, d, q, lg)))
            self.compared += 1
        self.scenarios += 1
        return out

    def _frame(self, top: int, esp: int) -> list | None:
        n = ((top - esp) & 0xFFFFFFFF)
        if n % 4 or n > 64:
            return None
        return self.m.read_words(esp, n // 4)

    def _run_lgcore(self, s: Scenario, d, virtual_if: int, profile: str) -> Side:
        m, guest, cpu = self.m, self.guest, self.cpu
        guest.revive()
        guest.profile = profile
        guest.noirq_start = guest.noirq_end = 0
        ld = LGUEST_DATA_PA
        m.w32(ld + LD_IRQ_ENABLED, virtual_if)
        m.w32(ld + LD_BLOCKED, 0)
        m.w32(ld + LD_IRQ_PENDING, 0)
        cpu.irqs_pending = 0
        cpu.halted = 0
        cpu.esp1 = s.esp1
        cpu.ss1 = GUEST_DS
        st = d.before
        # the guest's gate as the guest wrote it (set_trap vets and packs it)
        g = self._gate(s, d.vector)
        cpu.set_trap(d.vector, *self._gate_words(d.vector, g, g.selector))
        # Registers: the CPU's at the event.  The real IF is set (lguest
        # guests always run so, see above); lgcore_extra_eflags adds bits a
        # CPU executing this code cannot have had (VM).
        eflags = st["eflags"] | EFLAGS_IF | s.lgcore_extra_eflags
        REGS72.pack_into(cpu.regs, 0, st["eax"], st["ebx"], st["ecx"], st["edx"], st["esi"],
                         st["edi"], st["ebp"], st["gs"], st["fs"], st["ds"], st["es"],
                         d.vector, d.error_code or 0, d.pushed_eip, st["cs"], eflags,
                         st["esp"], st["ss"])
        regs_in = bytes(cpu.regs)
        side = Side(delivered=False)
        if d.kind == "irq" or d.kind == "held":
            irq = d.vector - 32
            cpu.set_interrupt(irq)
            irq_found, more = cpu.interrupt_pending()
            if irq_found != irq:
                side.dead = f"interrupt_pending() gave {irq_found}, not IRQ {irq}"
            else:
                cpu.try_deliver_interrupt(irq, more)
            side.delivered = not (cpu.irqs_pending >> irq) & 1
        else:
            side.delivered = bool(cpu.deliver_trap(d.vector))
        side.dead = side.dead or guest.dead
        side.irq_pending_word = m.r32(ld + LD_IRQ_PENDING)
        side.virtual_if = m.r32(ld + LD_IRQ_ENABLED) & EFLAGS_IF
        pages = None if s.full_ram else d.ram_before.keys()
        if side.delivered:
            side.entry = {"cs": cpu.cs, "ss": cpu.ss, "esp": cpu.esp, "eip": cpu.eip, "eflags": cpu.eflags}
            side.real_if = cpu.eflags & EFLAGS_IF
            side.frame = self._frame(d.stack_top, cpu.esp)
            if self.tamper_lgcore_frame is not None and side.frame is not None:
                # the mutation check: as if lgcore had built this frame
                side.frame = self.tamper_lgcore_frame(list(side.frame))
                for i, word in enumerate(side.frame):
                    pa = m.translate((cpu.esp + 4 * i) & 0xFFFFFFFF)
                    m.w32(pa, word)
            side.pages = m.snapshot(pages)
            regs = {n: getattr(cpu, n) for n in M.GPRS + M.SEGS + ("eip", "eflags")}
            if regs["eflags"] & EFLAGS_VM:
                # lguest's Switcher would `iret` into the handler with VM set:
                # the CPU would enter virtual-8086 mode there.  Not run.
                side.outcome = M.Outcome(False, None, ("v86",), "handler entered with EFLAGS.VM set")
            else:
                if s.lgcore_extra_eflags and side.frame is not None:
                    # The same normalisation as for the frame word below: the
                    # handler consumes the frame without the bits only
                    # lgcore's input had (QEMU's iret would otherwise return
                    # to virtual-8086 mode from CPL 1, which the SDM reserves
                    # for CPL 0).
                    slot = cpu.esp + 4 * ((0 if d.error_code is None else 1) + 2)
                    pa = m.translate(slot)
                    if pa is not None:
                        m.w32(pa, m.r32(pa) & ~s.lgcore_extra_eflags)
                side.outcome = m.run_handler(None, d.pushed_eip, regs=regs)
        else:
            side.pages = m.snapshot(pages)
            side.regs_unchanged = bytes(cpu.regs) == regs_in
        return side

    # ------------------------------------------------------------------
    def _diff(self, s: Scenario, d, q: Side, lg: Side) -> list:
        diffs = []
        if lg.dead:
            diffs.append(Diff("dead", f"lgcore killed the guest: {lg.dead}"))
        if q.delivered != lg.delivered:
            diffs.append(Diff("delivered", f"delivered: QEMU {q.delivered}, lgcore {lg.delivered}"))
            return diffs
        if not q.delivered:
            # An IRQ the CPU holds (IF clear) must stay pending in lgcore, with
            # nothing written but lguest_data.irq_pending, which tells the
            # guest one waits (0x200).
            if lg.irq_pending_word != EFLAGS_IF:
                diffs.append(Diff("held", f"held IRQ: irq_pending {_hx(lg.irq_pending_word)}, want 0x200"))
            if not lg.regs_unchanged:
                diffs.append(Diff("held", "held IRQ: lgcore changed the registers"))
            diffs += self._page_diffs(d.ram_before, lg.pages, "held IRQ")
            return diffs
        # frame
        if q.frame is None or lg.frame is None:
            diffs.append(Diff("frame", f"frame unreadable: QEMU {q.frame}, lgcore {lg.frame}"))
        else:
            if len(q.frame) != len(lg.frame):
                diffs.append(Diff("frame_len", f"frame length: QEMU {4 * len(q.frame)} bytes, lgcore "
                                  f"{4 * len(lg.frame)}: QEMU {[_hx(w) for w in q.frame]} lgcore "
                                  f"{[_hx(w) for w in lg.frame]}"))
            else:
                eflags_slot = (0 if d.error_code is None else 1) + 2   # [err] eip cs eflags [esp ss]
                for i, (a, b) in enumerate(zip(q.frame, lg.frame)):
                    if i == eflags_slot and s.lgcore_extra_eflags:
                        # Normalisation: a bit only lgcore's input had (VM, which
                        # a CPU running this protected-mode code cannot have) is
                        # pushed by lgcore as lguest does; ignore it in the word.
                        b &= ~s.lgcore_extra_eflags
                    if a != b:
                        diffs.append(Diff("frame_word", f"frame word {i} (esp+{4 * i}): QEMU {a:#x}, lgcore {b:#x}"))
        # handler entry
        for k in ("cs", "ss", "esp", "eip"):
            if q.entry[k] != lg.entry[k]:
                diffs.append(Diff("entry", f"handler {k}: QEMU {q.entry[k]:#x}, lgcore {lg.entry[k]:#x}"))
        # Normalisation (real IF kept, irq_enabled cleared): for an interrupt
        # gate the CPU clears IF; lguest leaves the real IF set (the guest
        # runs so) and writes irq_enabled = 0 instead.  So lgcore's handler
        # must see real IF = 1, and its virtual IF must equal QEMU's IF.
        if lg.real_if != EFLAGS_IF:
            diffs.append(Diff("real_if", "lgcore cleared the real IF (lguest keeps it set)"))
        if q.virtual_if != lg.virtual_if:
            diffs.append(Diff("virtual_if", f"handler virtual IF: QEMU {_hx(q.virtual_if)}, lgcore irq_enabled bit {_hx(lg.virtual_if)}"))
        qf, lf = q.entry["eflags"] & ~EFLAGS_IF, lg.entry["eflags"] & ~EFLAGS_IF
        if qf != lf:
            names = [n for n, bit in (("TF", EFLAGS_TF), ("NT", EFLAGS_NT), ("RF", EFLAGS_RF),
                                      ("VM", EFLAGS_VM)) if (qf ^ lf) & bit]
            other = (qf ^ lf) & ~CLEARED_ON_DELIVERY
            diffs.append(Diff("entry_eflags", f"handler eflags: QEMU {qf:#x}, lgcore {lf:#x} (differ in "
                              f"{', '.join(names) or '-'}{f', other {other:#x}' if other else ''})", qf ^ lf))
        # memory: the frame and nothing else (lguest_data is lgcore's own)
        skip = self._frame_bytes(d.stack_top, q.entry["esp"]) | self._frame_bytes(d.stack_top, lg.entry["esp"])
        diffs += self._page_diffs(q.pages, lg.pages, "RAM after delivery", skip)
        # after the handler's own iret
        diffs += self._outcome_diffs(q.outcome, lg.outcome)
        return diffs

    def _frame_bytes(self, top: int, esp: int | None) -> set:
        """Physical addresses of the bytes of the frame [esp, top), as the
        CPU's MMU maps them."""
        out = set()
        if esp is None:
            return out
        n = (top - esp) & 0xFFFFFFFF
        if n > 64:
            return out
        for i in range(n):
            pa = self.m.translate((esp + i) & 0xFFFFFFFF)
            if pa is not None:
                out.add(pa)
        return out

    def _page_diffs(self, a: dict, b: dict, what: str, skip: set = frozenset()) -> list:
        """Bytes that differ between two snapshots, outside lguest_data
        (lgcore's own; its fields are compared separately) and outside the
        frames (compared word by word)."""
        def pages(snap):
            if M.Machine.ALL in snap:
                whole = snap[M.Machine.ALL]
                return {p: whole[p << 12:(p + 1) << 12] for p in range(len(whole) >> 12)}, whole
            return snap, None
        out = []
        if M.Machine.ALL in a and M.Machine.ALL in b and a[M.Machine.ALL] == b[M.Machine.ALL]:
            return out
        pa, _ = pages(a)
        pb, _ = pages(b)
        for p in sorted(set(pa) & set(pb)):
            x, y = pa[p], pb[p]
            if p == LD_PAGE or x == y:
                continue
            base = p << 12
            offs = [base + i for i in range(4096) if x[i] != y[i] and base + i not in skip]
            if offs:
                out.append(Diff("ram", f"{what}: {len(offs)} byte(s) differ outside the frame, from {offs[0]:#x}"))
        return out

    @staticmethod
    def _outcome_diffs(a, b) -> list:
        if a.returned and b.returned:
            out = []
            for k in M.GPRS + M.SEGS + ("eip",):
                if a.state[k] != b.state[k]:
                    out.append(Diff("after_reg", f"after iret {k}: QEMU {a.state[k]:#x}, lgcore {b.state[k]:#x}"))
            if a.state.cpl != b.state.cpl:
                out.append(Diff("after_cpl", f"after iret CPL: QEMU {a.state.cpl}, lgcore {b.state.cpl}"))
            # Normalisation: a ring-1 `iret` with IOPL 0 does not restore IF;
            # lguest guests return through lguest_iret, which restores the
            # *virtual* IF from the frame word (compared above).  The real IF
            # after the iret is therefore not comparable; every other flag is.
            fa, fb = a.state["eflags"] & ~EFLAGS_IF, b.state["eflags"] & ~EFLAGS_IF
            if fa != fb:
                out.append(Diff("after_eflags", f"after iret eflags: QEMU {fa:#x}, lgcore {fb:#x}", fa ^ fb))
            return out
        if a.returned != b.returned or a.fault != b.fault:
            def say(o):
                if o.returned:
                    return "returned to the interrupted code"
                if o.fault and o.fault[0] == "v86":
                    return o.note
                if o.fault:
                    v, e, eip, cs = o.fault
                    return f"vector {v} (err {_hx(e)}) at {cs:#x}:{eip:#x}"
                return o.note
            return [Diff("after_outcome", f"after the handler's iret: QEMU {say(a)}, lgcore {say(b)}")]
        return []


# ---------------------------------------------------------------------------
# what is expected of a comparison
# ---------------------------------------------------------------------------
SEED_DIVERGENCE = EFLAGS_TF | EFLAGS_NT | EFLAGS_RF | EFLAGS_VM


def seed_bits(c: Comparison) -> int:
    """The eflags bits the seed leaves set for the handler although the CPU
    clears them: those set at the event (TF, NT, RF) or given to lgcore only
    (VM)."""
    if c.delivery.kind == "held":
        return 0
    return ((c.delivery.before["eflags"] & (EFLAGS_TF | EFLAGS_NT | EFLAGS_RF))
            | (c.scenario.lgcore_extra_eflags & EFLAGS_VM))


# Known differences that are neither intended nor lgcore bugs: lguest's
# seed-era host assumes things about its guest that a CPU does not.  A
# scenario naming one must show it (in the kinds listed), in every profile
# the entry lists, and match exactly in the others.
QUIRKS = {
    # A software `int $n` for a vector the CPU gives an error code when it
    # raises it as an exception (8, 10-14, 17): the CPU pushes no error code
    # for an INT; lguest's deliver_trap() decides by vector (has_err) and
    # pushes one.  (In lguest the Switcher's stubs for those vectors also
    # expect a CPU-pushed code, so the host never sees such an INT sanely.)
    "int_err_vector": ({"seed", "hardened"}, {"frame_len", "entry"}),
    # set_guest_interrupt() translates esp1 -- the first byte *above* the
    # stack -- rather than esp1-1; with the stack at the top of what the guest
    # maps, that page is absent and lguest kills the guest ("Bad address").
    "stack_top_unmapped": ({"seed", "hardened"}, {"dead"}),
    # The stack address is translated once and then decremented physically:
    # a frame crossing a page boundary lands in the physically preceding
    # page, which is only right for physically contiguous stacks (Linux
    # lowmem).  The CPU follows the page tables.
    "stack_discontiguous": ({"seed", "hardened"}, {"frame_word"}),
    # The seed-era address check refuses an access ending exactly at the end
    # of guest memory; the push of the first frame word is refused and the
    # guest killed.  Fixed in the hardened profile.
    "address_check": ({"seed"}, {"dead"}),
}


def problems(c: Comparison) -> list:
    """Everything wrong with a comparison: differences not explained by the
    normalisations, the seed's eflags divergence or a declared quirk -- and
    explained differences that failed to show."""
    s = c.scenario
    out = []
    if s.quirk:
        profiles, kinds = QUIRKS[s.quirk]
        if c.profile in profiles:
            missing = kinds - c.kinds
            if missing:
                out.append(f"quirk {s.quirk} did not show as {sorted(missing)}")
            return out
    bits = seed_bits(c) if c.profile == "seed" else 0
    allowed = set()
    if bits:
        entry = [d for d in c.diffs if d.kind == "entry_eflags"]
        if not entry or entry[0].bits != bits:
            out.append(f"the seed's divergence in eflags {bits:#x} did not show exactly: "
                       f"{[str(d) for d in entry]}")
        allowed = {"entry_eflags", "after_outcome", "after_eflags"}
    for d in c.diffs:
        if d.kind in allowed:
            if d.kind == "after_eflags" and d.bits & ~(bits & EFLAGS_RF):
                out.append(str(d))
            continue
        out.append(str(d))
    return out
