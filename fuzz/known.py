# SPDX-License-Identifier: GPL-2.0-only
"""Divergences the fuzzer found: the open ones, and the history of the
fixed ones.

An open finding is a place where lgcore does not do what lguest's host did
and that is not fixed yet.  The reference model (fuzz.model) can be told to
copy lgcore's behaviour at exactly that place (``"F<n>" in self.compat``):
the fuzzer runs with every open finding switched to "copy lgcore"
(``DEFAULT_COMPAT``), so one known difference does not end every case that
reaches it, and anything else still fails.  The replay test
(tests/fuzz/test_regressions.py) runs each open finding's saved inputs with
its switch off and expects the divergence (xfail, strict): once lgcore is
fixed that test passes, xfail-strict reports it, the entry moves to FIXED,
its switch leaves fuzz.model and its inputs are renamed fixed-<id>-*.bin.

All findings so far are in lgcore's run loop (lgcore/runloop.py) or stack
policy (lgcore/stacks.py), none in the compiled engine, and all are fixed.
"""

#: Open findings: id -> dict(title, where, detail, fix).
FINDINGS: dict[str, dict] = {}

#: Model switches on while fuzzing: every open finding.
DEFAULT_COMPAT = frozenset(FINDINGS)

#: Found by the fuzzer (or while writing it) and fixed in lgcore since;
#: their inputs stay in fuzz/corpus_regressions/fixed-<id>-*.bin.
FIXED = {
    "F1": dict(
        title="SET_STACK with a bad page count pins up to 2**32-1 pages",
        where="lgcore/stacks.py pin_stack_pages",
        detail=(
            "A page count above 2 kills ('bad stack pages %u'), yet every page "
            "is then pinned, as lguest did: up to 2**32-1 pin_page calls from "
            "Python, a guest-made hang of the host thread. Found as a libFuzzer "
            "timeout."),
        fix="stop pinning once the guest is dead (unobservable: the first kill sticks)",
    ),
    "F2": dict(
        title="#GP emulation: guest_pa(eip) runs before the privilege check",
        where="lgcore/runloop.py lguest_arch_handle_trap / _emulate_insn",
        detail=(
            "x86/core.c emulate_insn() translates eip with guest_pa() before it "
            "looks at cs, so a #GP (error code 0) from a ring-3 eip whose page is "
            "not mapped kills the guest with 'Bad address <eip>'. lgcore checks "
            "(cs & 3) == 1 first and never translates; the trap is reflected "
            "(or the guest dies later with 'unhandled trap 13 ...')."),
        fix=("call cpu.guest_pa(cpu.eip) before testing the ring in the trap-13 "
             "path: `pa = cpu.guest_pa(cpu.eip)` then `if (cpu.cs & 3) != 1: "
             "fall through`"),
    ),
    "F3": dict(
        title="#GP emulation: instruction fetch ignored lguest's address check",
        where="lgcore/runloop.py _emulate_insn",
        detail=(
            "lguest reads the opcode (and the byte after 0x66) with lgread(u8), "
            "killing 'bad read address %#lx len 1'; lgcore tested pa + 2 > mem_len "
            "and returned without a kill (and left a 1-byte IN in the last byte "
            "of RAM unemulated, and read past pfn_limit)."),
        fix="checked 1-byte reads (runloop._lgread_bytes)",
    ),
    "F4": dict(
        title="#GP emulation: the value an IN returned",
        where="lgcore/runloop.py _emulate_insn",
        detail=("lguest: eax = 0xFFFFFFFF for odd opcodes with or without 0x66, "
                "else eax |= 0xFFFF << shift; lgcore returned hardware's 0xFF/0xFFFF."),
        fix="lguest's arithmetic",
    ),
    "F5": dict(
        title="vmcall patching: the 3-byte read skipped the address check",
        where="lgcore/runloop.py _patch_vmcall",
        detail="lguest's __lgread kills 'bad read address %#lx len 3'; lgcore returned False.",
        fix="checked read (runloop._is_hypercall)",
    ),
    "F6": dict(
        title="vmcall patching: no re-pin of the stack, unchecked write",
        where="lgcore/runloop.py _patch_vmcall",
        detail=("rewrite_hypercall() writes with __lgwrite and calls "
                "guest_pagetable_clear_all(), which pins the stack pages."),
        fix="checked write and pin_stack_pages (runloop._rewrite_hypercall)",
    ),
    "F10": dict(
        title="LGUEST_INIT did not vet lguest_data.kernel_address",
        where="lgcore/runloop.py _lguest_init",
        detail="page_table_guest_data_init() kills 'bad kernel address %#lx' from 0xFFC00000 up.",
        fix="the same check",
    ),
    "F8": dict(
        title="LHCALL_SET_PMD (13) is accepted",
        where="lgcore/runloop.py HYPERCALLS",
        detail=(
            "On the non-PAE host lgcore models (RESERVE_MEM 4 MiB), do_hcall() "
            "has no SET_PMD case; lguest_arch_do_hcall() returns -EIO and the "
            "guest is killed with 'Bad hypercall 13\\n'. lgcore ignores it."),
        fix="remove LHCALL_SET_PMD from HYPERCALLS (non-PAE)",
    ),
    "F9": dict(
        title="LHCALL_FLUSH_TLB with arg1 == 0 re-pins the stack",
        where="lgcore/runloop.py _flush_tlb",
        detail=(
            "do_hcall(): FLUSH_TLB calls guest_pagetable_clear_all() (which pins "
            "the stack pages) only when arg1 != 0; arg1 == 0 is "
            "guest_pagetable_flush_user(), no pin. lgcore pins always, so a "
            "guest with an unmapped kernel stack is killed ('bad stack page') "
            "where lguest lets it run."),
        fix="`if args[1]: pin_stack_pages(cpu)`",
    ),
    "F11": dict(
        title="a NOTIFY in the async ring drops the synchronous hypercall",
        where="lgcore/runloop.py do_hypercalls",
        detail=(
            "do_hypercalls() clears cpu.hcall before the ring is run; when an "
            "async LHCALL_NOTIFY stops the ring, the hypercall the guest trapped "
            "with is never run. lguest leaves cpu->hcall set, returns the notify "
            "to the Launcher and runs the hypercall on the next run_guest pass. "
            "A guest loses e.g. a LOAD_IDT_ENTRY or SET_STACK."),
        fix=("clear cpu.hcall only after do_hcall ran: keep it set when "
             "pending_notify stopped the ring (step() then runs it on the next "
             "call, after on_notify)"),
    ),
}

