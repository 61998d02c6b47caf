# SPDX-License-Identifier: GPL-2.0-only
"""lgcore's Python face: a guest (its RAM and lguest's per-guest state) and
its vCPUs (registers, the guest IDT, pending IRQs), with every function of
lguest's interrupts_and_traps.c as a method under its own name.

The objects own the C state the nogil engine works on.  The RAM buffer is
acquired once, writable, when the guest is made and held until ``close()``:
while lgcore holds it a bytearray cannot be resized nor an mmap closed.
Guest misbehaviour never raises here: it kills the guest (``Guest.dead``
holds lguest's reason, the first one sticks) and the run loop stops it.
Bad input from the VMM (a read-only buffer, an IRQ past the IRQ count, a
value that does not fit 32 bits) raises at once, naming the value and the
limit."""
cimport cython
from libc.stdint cimport uint8_t, uint16_t, uint32_t, int64_t, uint64_t
from libc.string cimport memset, memcpy
from cpython.tuple cimport PyTuple_GET_ITEM
from cpython.ref cimport PyObject
from cpython.buffer cimport PyBuffer_Release, PyBUF_WRITABLE, PyBUF_FORMAT, PyBUF_C_CONTIGUOUS
from cpython.exc cimport PyErr_Clear
from libc.stdint cimport uintptr_t

import struct
import weakref

from lgcore.abi cimport *
from lgcore.guestmem cimport (lg_address_ok, lg_lgread, lg_lgwrite, lg_guest_pa,
                              lg_pin_page, lg_write_timestamp, lg_clock_now_ns,
                              lg_kill, lg_ld_get, lg_ld_put)
from lgcore.idt cimport (lg_idt_address, lg_idt_type, lg_idt_present,
                         lg_could_be_syscall, lg_check_syscall_vector,
                         lg_direct_trap, lg_set_trap, lg_load_guest_idt_entry,
                         lg_default_idt_entry, lg_setup_default_idt_entries,
                         lg_copy_traps)
from lgcore.deliver cimport (lg_has_err, lg_push_guest_stack, lg_set_guest_interrupt,
                             lg_interrupt_pending, lg_try_deliver_interrupt,
                             lg_set_interrupt, lg_deliver_trap,
                             lg_deliver_pending_fast, lg_deliver_pending_general,
                             LG_DELIVER_GENERAL)

PROFILES = {"seed": LG_PROFILE_SEED, "hardened": LG_PROFILE_HARDENED}
FIXES = {
    "more": LG_FIX_MORE,
    "eflags": LG_FIX_EFLAGS,
    "address_check": LG_FIX_ADDRESS_CHECK,
    "syscall_reflect": LG_FIX_SYSCALL_REFLECT,
}
_MAX_RAM = 1 << 32
cdef tuple _IRQ_INTS = tuple(range(LG_IRQS))
cdef PyObject *_IRQ_OBJS[LG_IRQS]
for _i in range(LG_IRQS):
    _IRQ_OBJS[_i] = <PyObject *>_IRQ_INTS[_i]
del _i
cdef tuple _PENDING_PAIRS = tuple((irq, more) for irq in range(LG_IRQS + 1) for more in (False, True))


class GuestKilled(Exception):
    """The guest was killed; ``reason`` is lguest's message."""

    def __init__(self, reason):
        super().__init__(reason)
        self.reason = reason


class GuestClosed(RuntimeError):
    """The guest's RAM was released with ``Guest.close()``."""


# ---- argument checks at the boundary ----

cdef inline uint32_t _u32(object value, str what) except? 0xFFFFFFFF:
    if not isinstance(value, int):
        raise TypeError(f"{what} must be an int, not {type(value).__name__}")
    if value < 0 or value > 0xFFFFFFFF:
        raise ValueError(f"{what}={value!r} does not fit 32 bits (0..0xFFFFFFFF)")
    return <uint32_t>value


cdef inline uint32_t _mask32(object value) except? 0xFFFFFFFF:
    if type(value) is int and 0 <= value <= 0xFFFFFFFF:
        return <uint32_t>value
    return <uint32_t>(value & 0xFFFFFFFF)


cdef inline unsigned int _below(object value, unsigned int limit, str what) except? 0xFFFFFFFF:
    if not isinstance(value, int):
        raise TypeError(f"{what} must be an int, not {type(value).__name__}")
    if value < 0 or value >= limit:
        raise ValueError(f"{what}={value!r} is out of range (0..{limit - 1})")
    return <unsigned int>value


# C:050 Host IDTs and stub tables come from VMMs in every shape: a slice of
# an mmap, array('I'), a NumPy uint32 or uint64 array, bytes.  The engine
# wants aligned C arrays, so the Python face copies through local ones (2 KiB
# and 1 KiB: copy_traps runs only when the guest changed its IDT).
_BYTE_FORMATS = frozenset("bBc")
_INT_FORMATS = frozenset("bBhHiIlLqQnN")


cdef object _byte_view(object buf, str what, bint writable):
    """``buf`` as a 1-D unsigned-byte memoryview over the same memory."""
    try:
        mv = memoryview(buf)
    except TypeError:
        raise TypeError(f"{what} must be a buffer (bytearray, mmap, array, NumPy array, "
                        f"ctypes array), not {type(buf).__name__}") from None
    if writable and mv.readonly:
        raise TypeError(f"{what} must be writable; this {type(buf).__name__} is read-only")
    if not mv.c_contiguous:
        raise TypeError(f"{what} must be one contiguous buffer; this {type(buf).__name__} is not")
    if mv.format == "B" and mv.ndim == 1:
        return mv
    return mv.cast("B")


cdef int _load_host_idt(object idt, lg_desc_t *out) except -1:
    cdef const uint8_t[::1] raw = _byte_view(idt, "idt", True)
    cdef Py_ssize_t need = 8 * LG_IDT_ENTRIES
    if raw.shape[0] < need:
        raise ValueError(f"idt has {raw.shape[0]} bytes; {need} are needed (256 gates of 8 bytes)")
    memcpy(out, &raw[0], need)
    return 0


cdef int _store_host_idt(object idt, const lg_desc_t *src) except -1:
    cdef uint8_t[::1] raw = _byte_view(idt, "idt", True)
    memcpy(&raw[0], src, 8 * LG_IDT_ENTRIES)
    return 0


cdef int _load_defaults(object defaults, uint32_t *out) except -1:
    """The 256 host stub addresses (lguest's ``unsigned long def[]``) from a
    buffer of 4-byte integers, of raw little-endian bytes, of other integers
    whose values fit 32 bits, or a sequence of ints."""
    cdef const uint8_t[::1] raw
    cdef Py_ssize_t i, n = LG_IDT_ENTRIES
    try:
        mv = memoryview(defaults)
    except TypeError:
        mv = None
    if mv is None:
        try:
            values = list(defaults)
        except TypeError:
            raise TypeError(f"defaults must be a buffer or a sequence of 256 ints, "
                            f"not {type(defaults).__name__}") from None
        if len(values) < n:
            raise ValueError(f"defaults has {len(values)} entries; {n} are needed")
        for i in range(n):
            out[i] = _u32(values[i], f"defaults[{i}]")
        return 0
    if not mv.c_contiguous:
        raise TypeError(f"defaults must be one contiguous buffer; this {type(defaults).__name__} is not")
    fmt = mv.format
    if fmt[:1] in ("@", "=", "<", ">", "!"):
        order, code = fmt[0], fmt[1:]
    else:
        order, code = "@", fmt
    if code not in _INT_FORMATS and code not in _BYTE_FORMATS:
        raise TypeError(f"defaults must hold unsigned 32-bit stub addresses; "
                        f"its items have format {fmt!r}")
    if code in _BYTE_FORMATS or (mv.itemsize == 4 and order not in (">", "!")):
        raw = _byte_view(mv, "defaults", False)
        if raw.shape[0] < 4 * n:
            if code in _BYTE_FORMATS:
                raise ValueError(f"defaults has {raw.shape[0]} bytes; {4 * n} are needed "
                                 f"(256 little-endian u32)")
            raise ValueError(f"defaults has {raw.shape[0] // 4} entries; {n} are needed")
        memcpy(out, &raw[0], 4 * n)
        return 0
    count = mv.nbytes // mv.itemsize
    if count < n:
        raise ValueError(f"defaults has {count} entries; {n} are needed")
    # By item size, not letter: ctypes says "<L" for an 8-byte long.
    if mv.itemsize not in (1, 2, 4, 8):
        raise TypeError(f"defaults must hold unsigned 32-bit stub addresses; "
                        f"its items are {mv.itemsize} bytes ({fmt!r})")
    letter = {1: "b", 2: "h", 4: "i", 8: "q"}[mv.itemsize]
    if code.isupper():
        letter = letter.upper()
    order = ">" if order in (">", "!") else "<" if order == "<" else "="
    values = struct.unpack_from(f"{order}{n}{letter}", mv.cast("B"))
    for i in range(n):
        out[i] = _u32(values[i], f"defaults[{i}]")
    return 0


# C:100 The shapes VMMs use most (a writable contiguous host IDT; stubs as
# bytes or as 4-byte ints in native or little-endian order) are used in place
# through the buffer protocol, with no memoryview object and no copy: the
# engine then costs less than the call into the C original.  Anything else
# (or a buffer that overlaps the other, or is misaligned) takes the general
# path above, which also raises the errors.
cdef extern from "Python.h":
    # Without Cython's "except -1": a refusal here only means the general path.
    int _get_buffer "PyObject_GetBuffer"(object obj, Py_buffer *view, int flags)


cdef struct _fast_bufs:
    Py_buffer idt
    Py_buffer deflt
    bint have_idt
    bint have_deflt


cdef inline bint _u32_words(const Py_buffer *b) noexcept:
    cdef const char *f = b.format
    cdef char c
    if b.len < 4 * LG_IDT_ENTRIES or (<uintptr_t>b.buf & 3) != 0:
        return False
    if f == NULL:
        return True
    c = f[0]
    if c == b'@' or c == b'=' or c == b'<':
        f += 1
        c = f[0]
    if f[0] == 0 or f[1] != 0:
        return False
    if c == b'B' or c == b'b' or c == b'c':
        return True
    return b.itemsize == 4 and (c == b'I' or c == b'i' or c == b'L' or c == b'l')


cdef int _fast_open(_fast_bufs *fb, object idt, object defaults) noexcept:
    """1 when both buffers can be used in place (release with _fast_close)."""
    fb.have_idt = fb.have_deflt = False
    if _get_buffer(idt, &fb.idt, PyBUF_WRITABLE | PyBUF_C_CONTIGUOUS) != 0:
        PyErr_Clear()
        return 0
    fb.have_idt = True
    if fb.idt.len < 8 * LG_IDT_ENTRIES or (<uintptr_t>fb.idt.buf & 3) != 0:
        return 0
    if _get_buffer(defaults, &fb.deflt, PyBUF_FORMAT | PyBUF_C_CONTIGUOUS) != 0:
        PyErr_Clear()
        return 0
    fb.have_deflt = True
    if not _u32_words(&fb.deflt):
        return 0
    # Overlap would make in-place differ from the copying path.
    if (<char *>fb.deflt.buf < <char *>fb.idt.buf + 8 * LG_IDT_ENTRIES and
            <char *>fb.idt.buf < <char *>fb.deflt.buf + 4 * LG_IDT_ENTRIES):
        return 0
    return 1


cdef inline void _fast_close(_fast_bufs *fb) noexcept:
    if fb.have_deflt:
        PyBuffer_Release(&fb.deflt)
    if fb.have_idt:
        PyBuffer_Release(&fb.idt)


# ---- kill reasons in lguest's words ----

def _hex(uint32_t v):
    # The kernel's %#lx prints 0 as "0x0".
    return "0x0" if v == 0 else f"{v:#x}"


def _signed(uint32_t v):
    return v - (1 << 32) if v & 0x80000000 else v


_KILL_FORMAT = {
    LG_KILL_DISABLING_INTERRUPTS: lambda a: "Disabling interrupts",
    LG_KILL_REENABLING_INTERRUPTS: lambda a: "Re-enabling interrupts",
    LG_KILL_BAD_STACK_SEGMENT: lambda a: f"bad stack segment {_signed(a[0])}",
    LG_KILL_BAD_STACK_PAGES: lambda a: f"bad stack pages {a[0]}",
    LG_KILL_BAD_IDT_TYPE: lambda a: f"bad IDT type {_signed(a[0])}",
    LG_KILL_SETTING_IDT_ENTRY: lambda a: f"Setting idt entry {a[0]}",
    LG_KILL_BAD_READ: lambda a: f"bad read address {_hex(a[0])} len {a[1]}",
    LG_KILL_BAD_WRITE: lambda a: f"bad write address {_hex(a[0])} len {a[1]}",
    LG_KILL_BAD_ADDRESS: lambda a: f"Bad address {_hex(a[0])}",
    LG_KILL_WRITING_TIMESTAMP: lambda a: "Writing timestamp",
    LG_KILL_BAD_STACK_PAGE: lambda a: f"bad stack page {_hex(a[0])}",
}


# ---- raw views of C state ----

@cython.auto_pickle(False)
cdef class _RawView:
    """Exports a fixed piece of C state as a writable byte buffer; keeps the
    object owning that state alive for as long as any view exists."""
    cdef object owner
    cdef char *ptr
    cdef Py_ssize_t size
    cdef Py_ssize_t shape[1]

    def __getbuffer__(self, Py_buffer *view, int flags):
        self.shape[0] = self.size
        view.buf = self.ptr
        view.obj = self
        view.len = self.size
        view.readonly = 0
        view.itemsize = 1
        view.format = "B"
        view.ndim = 1
        view.shape = self.shape
        view.strides = NULL
        view.suboffsets = NULL
        view.internal = NULL

    def __releasebuffer__(self, Py_buffer *view):
        pass


cdef object _raw_view(object owner, void *ptr, Py_ssize_t size):
    cdef _RawView v = _RawView.__new__(_RawView)
    v.owner = owner
    v.ptr = <char *>ptr
    v.size = size
    return memoryview(v)


# VCpu.deliver_pending's rare half, out of line: the closed-guest check and
# the general path, for whatever the inline fast path left undecided.
cdef object _deliver_pending_general(VCpu cpu):
    if cpu.c.lg.mem == NULL:
        raise GuestClosed("the guest is closed; its RAM was released")
    cdef int irq = lg_deliver_pending_general(&cpu.c)
    if irq < 0:
        return None
    return <object>_IRQ_OBJS[irq]


# ---- clocks ----

cdef class Clock:
    """The clock write_timestamp() reads and guest timers run on."""

    def __cinit__(self):
        self._listeners = []

    def now_ns(self):
        """Nanoseconds since the epoch."""
        return lg_clock_now_ns(&self.c)

    @property
    def virtual(self):
        return self.c.mode == LG_CLOCK_VIRTUAL

    def add_listener(self, callback):
        """Call ``callback(now_ns)`` whenever a virtual clock moves."""
        self._listeners.append(callback)

    def remove_listener(self, callback):
        self._listeners.remove(callback)


cdef class WallClock(Clock):
    """CLOCK_REALTIME, as lguest's hrtimer and timestamp use."""

    def __cinit__(self):
        self.c.mode = LG_CLOCK_REALTIME


cdef class VirtualClock(Clock):
    """A clock that moves only when told, for deterministic runs."""

    def __cinit__(self, start_ns=0):
        self.c.mode = LG_CLOCK_VIRTUAL

    def __init__(self, start_ns=0):
        self.set_ns(start_ns)

    def set_ns(self, ns):
        """Jump to ``ns`` (>= 0) and tell the listeners."""
        if not isinstance(ns, int):
            raise TypeError(f"ns must be an int, not {type(ns).__name__}")
        if ns < 0 or ns >= (1 << 63):
            raise ValueError(f"ns={ns!r} is out of range (0..2**63-1)")
        lg_clock_set_virtual(&self.c, <int64_t>ns)
        for callback in list(self._listeners):
            callback(ns)

    def advance(self, ns):
        """Move forward by ``ns`` (>= 0) nanoseconds."""
        if not isinstance(ns, int) or ns < 0:
            raise ValueError(f"advance(ns={ns!r}): ns must be a non-negative int")
        self.set_ns(lg_atomic_load64(&self.c.virtual_ns) + ns)


_WALL_CLOCK = WallClock()


# ---- the guest ----

cdef class Guest:
    """One guest: its RAM and lguest's per-guest state (struct lguest).

    ``ram`` is any writable, contiguous buffer (bytearray, mmap, NumPy array,
    ctypes array) of at least the size of lguest_data (1396 bytes) and at
    most 4 GiB.  ``profile`` is "seed" (bit for bit the original) or
    "hardened"; ``syscall_vector`` is lguest's module parameter; ``clock``
    defaults to the wall clock; ``pfn_limit`` (pages the guest may address)
    defaults to the whole buffer.
    """

    def __cinit__(self, ram, *, profile="seed", syscall_vector=LG_SYSCALL_VECTOR,
                  clock=None, pfn_limit=None):
        cdef uint8_t[::1] raw
        cdef Py_ssize_t n
        self.vcpus = []
        self._cpus = weakref.WeakSet()
        try:
            mv = memoryview(ram)
        except TypeError:
            raise TypeError(f"guest RAM must be a writable buffer, not {type(ram).__name__}") from None
        if mv.readonly:
            raise TypeError(f"guest RAM must be writable; this {type(ram).__name__} is read-only")
        if not mv.c_contiguous:
            raise TypeError(f"guest RAM must be one contiguous buffer; this {type(ram).__name__} is not")
        n = mv.nbytes
        if n < LG_LD_SIZE:
            raise ValueError(f"guest RAM of {n} bytes is smaller than lguest_data ({LG_LD_SIZE} bytes)")
        if n > _MAX_RAM:
            raise ValueError(f"guest RAM of {n} bytes exceeds the 32-bit guest-physical space ({_MAX_RAM} bytes)")
        # One export of the buffer, held until close(): it pins the memory.
        self._mv = mv.cast("B")
        raw = self._mv
        self.c.mem = &raw[0]
        self.c.mem_len = <uint64_t>n
        self.c.pfn_limit = <uint32_t>(n >> LG_PAGE_SHIFT)
        self._sync()

    def __init__(self, ram, *, profile="seed", syscall_vector=LG_SYSCALL_VECTOR,
                 clock=None, pfn_limit=None):
        self.profile = profile
        self.syscall_vector = syscall_vector
        if clock is None:
            clock = _WALL_CLOCK
        if not isinstance(clock, Clock):
            raise TypeError(f"clock must be an lgcore Clock, not {type(clock).__name__}")
        self.clock = clock
        self.c.clock = &(<Clock>clock).c
        if pfn_limit is not None:
            self.pfn_limit = pfn_limit
        self._sync()

    def __dealloc__(self):
        self._release()

    cdef void _release(self) noexcept:
        self.c.mem = NULL
        self.c.mem_len = 0
        if self._mv is not None:
            try:
                self._mv.release()
            except BufferError:
                pass
            self._mv = None

    cdef int _sync(self) except -1:
        # What the guest and every vCPU of it derive from its fields.
        lg_guest_sync(&self.c)
        for cpu in self._cpus:
            lg_cpu_sync(&(<VCpu>cpu).c)
        return 0

    def close(self):
        """Release the RAM buffer and stop the guest's clockevents (the
        ``clockevents`` lgcore.clock.init_clockdev gave it): armed timers
        never fire and their thread ends.  The guest and its vCPUs are
        unusable after."""
        events = getattr(self, "clockevents", None)
        if events is not None:
            events.close()
        self._release()
        self._sync()

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        """``with Guest(ram) as guest:`` closes the guest on the way out, so
        the buffer is free again at once (dropping a guest that has vCPUs
        waits for the cyclic garbage collector)."""
        self.close()
        return False

    @property
    def closed(self):
        return self.c.mem == NULL

    def _check_open(self):
        if self.c.mem == NULL:
            raise GuestClosed("the guest is closed; its RAM was released")

    def add_vcpu(self, start_eip=0):
        """Make a vCPU with lguest's initial registers (ring-1 kernel
        segments, eflags 0x202) at ``start_eip``."""
        self._check_open()
        cdef VCpu cpu = VCpu.__new__(VCpu, self, len(self.vcpus))
        cpu.c.regs.eip = _u32(start_eip, "start_eip")
        self.vcpus.append(cpu)
        return cpu

    @property
    def ram(self):
        """A writable byte memoryview of the guest's RAM: exactly the buffer
        the guest was given (a slice stays a slice).  While any such view
        lives, the buffer stays exported."""
        self._check_open()
        return self._mv[:]

    @property
    def mem_len(self):
        return self.c.mem_len

    @property
    def pfn_limit(self):
        return self.c.pfn_limit

    @pfn_limit.setter
    def pfn_limit(self, value):
        self.c.pfn_limit = _u32(value, "pfn_limit")
        self._sync()

    @property
    def lguest_data(self):
        """Guest-physical address of lguest_data, or None before LGUEST_INIT."""
        return self.c.lguest_data if self.c.has_lguest_data else None

    @lguest_data.setter
    def lguest_data(self, value):
        if value is None:
            self.c.has_lguest_data = 0
            self.c.lguest_data = 0
        else:
            self.c.lguest_data = _u32(value, "lguest_data")
            self.c.has_lguest_data = 1
        self._sync()

    @property
    def noirq_start(self):
        return self.c.noirq_start

    @noirq_start.setter
    def noirq_start(self, value):
        self.c.noirq_start = _u32(value, "noirq_start")

    @property
    def noirq_end(self):
        return self.c.noirq_end

    @noirq_end.setter
    def noirq_end(self, value):
        self.c.noirq_end = _u32(value, "noirq_end")

    @property
    def stack_pages(self):
        return self.c.stack_pages

    @stack_pages.setter
    def stack_pages(self, value):
        self.c.stack_pages = _u32(value, "stack_pages")

    @property
    def syscall_vector(self):
        return self.c.syscall_vector

    @syscall_vector.setter
    def syscall_vector(self, value):
        self.c.syscall_vector = _below(value, LG_IDT_ENTRIES, "syscall_vector")

    @property
    def fixes(self):
        """The profile's LG_FIX_* bits (see lgcore.FIXES)."""
        return self.c.fixes

    @fixes.setter
    def fixes(self, value):
        v = _u32(value, "fixes")
        if v & ~LG_PROFILE_HARDENED:
            raise ValueError(f"fixes={value!r} has unknown bits (known: {LG_PROFILE_HARDENED:#x})")
        self.c.fixes = v
        self._sync()

    @property
    def profile(self):
        """"seed", "hardened", or "custom" for any other mix of fixes."""
        for name, bits in PROFILES.items():
            if self.c.fixes == bits:
                return name
        return "custom"

    @profile.setter
    def profile(self, name):
        if name not in PROFILES:
            raise ValueError(f"profile={name!r} is not one of {sorted(PROFILES)}")
        self.c.fixes = PROFILES[name]
        self._sync()

    # -- kill_guest --

    @property
    def dead(self):
        """lguest's kill reason, or None while the guest lives."""
        code = self.c.dead
        if code == LG_KILL_NONE:
            return None
        if code == LG_KILL_TEXT:
            return self._dead_text
        args = (self.c.dead_args[0], self.c.dead_args[1], self.c.dead_args[2])
        return _KILL_FORMAT[code](args)

    @property
    def dead_code(self):
        return self.c.dead

    @property
    def dead_args(self):
        return (self.c.dead_args[0], self.c.dead_args[1], self.c.dead_args[2])

    def kill_guest(self, reason):
        """Kill the guest with ``reason`` unless it is already dead."""
        if self.c.dead == LG_KILL_NONE:
            self._dead_text = str(reason)
            self.c.dead = LG_KILL_TEXT

    def revive(self):
        """Forget the kill reason (restoring a saved guest, tests)."""
        self.c.dead = LG_KILL_NONE
        self._dead_text = None
        self.c.dead_args[0] = self.c.dead_args[1] = self.c.dead_args[2] = 0

    def raise_if_dead(self):
        """Raise GuestKilled with the reason if the guest is dead."""
        if self.c.dead != LG_KILL_NONE:
            raise GuestKilled(self.dead)

    # -- user accesses to lguest_data --

    def get_user(self, offset):
        """get_user() of the 4-byte lguest_data field at byte ``offset``
        (lgcore.LD_*): its value, or None when the access faults (before
        LGUEST_INIT, or past the end of the RAM buffer)."""
        cdef uint32_t v
        if lg_ld_get(&self.c, _u32(offset, "offset"), &v) != 0:
            return None
        return v

    def put_user(self, offset, value):
        """put_user() of the 4-byte lguest_data field at byte ``offset``;
        False when the access faults (nothing is written then)."""
        self._check_open()
        return lg_ld_put(&self.c, _u32(offset, "offset"), _u32(value, "value")) == 0

    # -- per-guest seed functions --

    def lguest_address_ok(self, addr, length):
        """lguest's address check on a guest-physical range."""
        return lg_address_ok(&self.c, _u32(addr, "addr"), _u32(length, "length"))

    def could_be_syscall(self, num):
        """Whether ``num`` is 0x80 or this guest's syscall vector."""
        return lg_could_be_syscall(&self.c, _u32(num, "num"))

    def check_syscall_vector(self):
        """Whether lguest_data.syscall_vec names a vector the host reserved."""
        return lg_check_syscall_vector(&self.c)

    def direct_trap(self, num):
        """Whether trap ``num`` may go straight into this guest (H:250)."""
        return lg_direct_trap(&self.c, _u32(num, "num"))

    def __repr__(self):
        state = "closed" if self.c.mem == NULL else (f"dead: {self.dead!r}" if self.c.dead else "alive")
        return f"<lgcore.Guest {self.c.mem_len} bytes, {len(self.vcpus)} vCPU(s), {self.profile}, {state}>"


# ---- the vCPU ----

cdef class VCpu:
    """One vCPU of a guest: lguest's struct lg_cpu."""

    def __cinit__(self, Guest guest not None, int index):
        self.guest = guest
        self.index = index
        self.c.lg = &guest.c
        guest._cpus.add(self)
        lg_cpu_sync(&self.c)
        self.c.regs.cs = LG_GUEST_CS
        self.c.regs.ds = LG_GUEST_DS
        self.c.regs.es = LG_GUEST_DS
        self.c.regs.ss = LG_GUEST_DS
        self.c.regs.eflags = 0x202

    cdef int _open(self) except -1:
        if self.c.lg.mem == NULL:
            raise GuestClosed("the guest is closed; its RAM was released")
        return 0

    # -- registers --

    @property
    def eax(self):
        return self.c.regs.eax

    @eax.setter
    def eax(self, value):
        self.c.regs.eax = _u32(value, "eax")

    @property
    def ebx(self):
        return self.c.regs.ebx

    @ebx.setter
    def ebx(self, value):
        self.c.regs.ebx = _u32(value, "ebx")

    @property
    def ecx(self):
        return self.c.regs.ecx

    @ecx.setter
    def ecx(self, value):
        self.c.regs.ecx = _u32(value, "ecx")

    @property
    def edx(self):
        return self.c.regs.edx

    @edx.setter
    def edx(self, value):
        self.c.regs.edx = _u32(value, "edx")

    @property
    def esi(self):
        return self.c.regs.esi

    @esi.setter
    def esi(self, value):
        self.c.regs.esi = _u32(value, "esi")

    @property
    def edi(self):
        return self.c.regs.edi

    @edi.setter
    def edi(self, value):
        self.c.regs.edi = _u32(value, "edi")

    @property
    def ebp(self):
        return self.c.regs.ebp

    @ebp.setter
    def ebp(self, value):
        self.c.regs.ebp = _u32(value, "ebp")

    @property
    def gs(self):
        return self.c.regs.gs

    @gs.setter
    def gs(self, value):
        self.c.regs.gs = _u32(value, "gs")

    @property
    def fs(self):
        return self.c.regs.fs

    @fs.setter
    def fs(self, value):
        self.c.regs.fs = _u32(value, "fs")

    @property
    def ds(self):
        return self.c.regs.ds

    @ds.setter
    def ds(self, value):
        self.c.regs.ds = _u32(value, "ds")

    @property
    def es(self):
        return self.c.regs.es

    @es.setter
    def es(self, value):
        self.c.regs.es = _u32(value, "es")

    @property
    def trapnum(self):
        return self.c.regs.trapnum

    @trapnum.setter
    def trapnum(self, value):
        self.c.regs.trapnum = _u32(value, "trapnum")

    @property
    def errcode(self):
        return self.c.regs.errcode

    @errcode.setter
    def errcode(self, value):
        self.c.regs.errcode = _u32(value, "errcode")

    @property
    def eip(self):
        return self.c.regs.eip

    @eip.setter
    def eip(self, value):
        self.c.regs.eip = _u32(value, "eip")

    @property
    def cs(self):
        return self.c.regs.cs

    @cs.setter
    def cs(self, value):
        self.c.regs.cs = _u32(value, "cs")

    @property
    def eflags(self):
        return self.c.regs.eflags

    @eflags.setter
    def eflags(self, value):
        self.c.regs.eflags = _u32(value, "eflags")

    @property
    def esp(self):
        return self.c.regs.esp

    @esp.setter
    def esp(self, value):
        self.c.regs.esp = _u32(value, "esp")

    @property
    def ss(self):
        return self.c.regs.ss

    @ss.setter
    def ss(self, value):
        self.c.regs.ss = _u32(value, "ss")
    @property
    def regs(self):
        """A writable 72-byte view of struct lguest_regs."""
        return _raw_view(self, &self.c.regs, LG_REGS_SIZE)

    @property
    def idt(self):
        """A writable 2048-byte view of the guest IDT (256 pairs of a, b)."""
        return _raw_view(self, &self.c.idt[0], 8 * LG_IDT_ENTRIES)

    def get_idt_entry(self, num):
        cdef unsigned int n = _below(num, LG_IDT_ENTRIES, "vector")
        return (self.c.idt[n].a, self.c.idt[n].b)

    def set_idt_entry(self, num, a, b):
        """Store a gate as is (no vetting: that is load_guest_idt_entry)."""
        cdef unsigned int n = _below(num, LG_IDT_ENTRIES, "vector")
        self.c.idt[n].a = _u32(a, "a")
        self.c.idt[n].b = _u32(b, "b")

    # -- other per-vCPU state --

    @property
    def irqs_pending(self):
        return lg_atomic_load32(&self.c.irqs_pending)

    @irqs_pending.setter
    def irqs_pending(self, value):
        lg_atomic_store32(&self.c.irqs_pending, _u32(value, "irqs_pending"))

    @property
    def halted(self):
        return self.c.halted

    @halted.setter
    def halted(self, value):
        self.c.halted = 1 if value else 0

    @property
    def changed(self):
        return self.c.changed

    @changed.setter
    def changed(self, value):
        self.c.changed = <int>_u32(value, "changed")

    @property
    def esp1(self):
        return self.c.esp1

    @esp1.setter
    def esp1(self, value):
        self.c.esp1 = _u32(value, "esp1")

    @property
    def ss1(self):
        return self.c.ss1

    @ss1.setter
    def ss1(self, value):
        # lguest stores the segment in a u16; so do we, and say so.
        self.c.ss1 = <uint32_t>_u32(value, "ss1") & 0xFFFF

    @property
    def pgdir(self):
        """Guest-physical address of the page directory guest_pa walks."""
        return self.c.pgdir

    @pgdir.setter
    def pgdir(self, value):
        self.c.pgdir = _u32(value, "pgdir")

    @property
    def paging(self):
        """False while guest-virtual equals guest-physical."""
        return bool(self.c.paging)

    @paging.setter
    def paging(self, value):
        self.c.paging = 1 if value else 0

    # -- the seed's functions --

    def push_guest_stack(self, gstack, val):
        """Push ``val`` below guest-physical ``gstack``; returns the new gstack."""
        self._open()
        cdef uint32_t g = _u32(gstack, "gstack")
        lg_push_guest_stack(&self.c, &g, _u32(val, "val"))
        return g

    def set_guest_interrupt(self, lo, hi, has_err):
        """H:210: build the frame for gate (lo, hi) and enter its handler."""
        self._open()
        lg_set_guest_interrupt(&self.c, _u32(lo, "lo"), _u32(hi, "hi"), bool(has_err))

    def interrupt_pending(self):
        """H:205: (first unblocked pending IRQ or IRQS, more)."""
        self._open()
        cdef bint more = False
        cdef unsigned int irq = lg_interrupt_pending(&self.c, &more)
        # C:090 the (irq, more) pairs are prebuilt: no tuple is allocated.
        return <object>PyTuple_GET_ITEM(_PENDING_PAIRS, 2 * irq + (1 if more else 0))

    def try_deliver_interrupt(self, irq, more):
        """H:205: try to divert the guest into the handler of ``irq``."""
        self._open()
        lg_try_deliver_interrupt(&self.c, _below(irq, LG_IRQS, "irq"), bool(more))

    def set_interrupt(self, irq):
        """H:205: raise ``irq`` (any thread), then wake or kick the vCPU."""
        cdef unsigned int n = _below(irq, LG_IRQS, "irq")
        self._open()
        lg_set_interrupt(&self.c, n)
        task = self.task
        if task is not None and not task.wake_up_process():
            task.kick_process()

    def deliver_pending(self):
        """Run-loop step 4 in one call: deliver the first deliverable pending
        IRQ; returns its number, or None when no frame was built."""
        # The common step inline; a closed guest's vCPU has no derived
        # lguest_data, so it always falls to the general path, which is
        # where the check costs nothing.
        cdef int irq = lg_deliver_pending_fast(&self.c)
        if irq >= 0:
            # C:090 the IRQ's int object from a table: no PyLong_FromLong.
            return <object>_IRQ_OBJS[irq]
        if irq == LG_DELIVER_GENERAL:
            return _deliver_pending_general(self)
        return None

    def deliver_trap(self, num):
        """H:220: reflect trap ``num``; False if it cannot be delivered."""
        self._open()
        return lg_deliver_trap(&self.c, _u32(num, "num"))

    def load_guest_idt_entry(self, num, lo, hi):
        """H:230: the LOAD_IDT_ENTRY hypercall."""
        self._open()
        lg_load_guest_idt_entry(&self.c, _u32(num, "num"), _u32(lo, "lo"), _u32(hi, "hi"))

    def set_trap(self, num, lo, hi):
        """H:235: vet gate (lo, hi) into the guest IDT at ``num``."""
        self._open()
        cdef unsigned int n = _below(num, LG_IDT_ENTRIES, "vector")
        lg_set_trap(&self.c, &self.c.idt[n], n, _u32(lo, "lo"), _u32(hi, "hi"))

    def copy_traps(self, idt, defaults):
        """H:240: refresh the host IDT ``idt`` (any writable buffer of at
        least 2048 bytes) from the guest's gates; ``defaults`` holds the 256
        host stub addresses (array('I'), NumPy uint32/uint64, 1024 bytes,
        or a sequence of ints)."""
        cdef lg_desc_t host[256]
        cdef uint32_t deflt[256]
        cdef _fast_bufs fb
        self._open()
        if _fast_open(&fb, idt, defaults):
            lg_copy_traps(&self.c, <lg_desc_t *>fb.idt.buf, <const uint32_t *>fb.deflt.buf)
            _fast_close(&fb)
            return
        _fast_close(&fb)
        _load_defaults(defaults, deflt)
        _load_host_idt(idt, host)
        lg_copy_traps(&self.c, host, deflt)
        _store_host_idt(idt, host)

    def guest_pa(self, vaddr):
        """Guest-virtual to guest-physical (kills on a missing mapping)."""
        self._open()
        return lg_guest_pa(&self.c, _u32(vaddr, "vaddr"))

    def lgread(self, addr):
        """Read a u32 at guest-physical ``addr`` (kills and gives 0 on failure)."""
        self._open()
        return lg_lgread(&self.c, _u32(addr, "addr"))

    def lgwrite(self, addr, val):
        """Write a u32 at guest-physical ``addr`` (kills on failure)."""
        self._open()
        lg_lgwrite(&self.c, _u32(addr, "addr"), _u32(val, "val"))

    def pin_page(self, vaddr):
        """The default pin: the page must be mapped present and writable."""
        self._open()
        lg_pin_page(&self.c, _u32(vaddr, "vaddr"))

    # H:260
    # A trap that goes straight into the guest makes the CPU push its frame
    # on the ring-1 stack without the host looking, so every page of that
    # stack must be pinned (present and writable), and SET_STACK records a
    # new stack on every guest context switch.  Both are compiled methods
    # for speed; lgcore.stacks is their documented home, with the vCPU
    # first.  Once the guest is dead the pinning stops: the seed goes on
    # calling pin_page, but a pin can do nothing more than kill and the first
    # reason already stuck (a page count of 2**32-1 would loop for minutes).
    def pin_stack_pages(self):
        """Pin every page of the guest kernel stack: the pages holding
        esp1-1, esp1-1-4096, ... (``guest.pin_page_hook(cpu, vaddr)`` when
        set, else the default pin: present and writable, or kill)."""
        self._open()
        cdef uint32_t i, n = self.c.lg.stack_pages
        hook = self.guest.pin_page_hook
        if hook is None:
            with nogil:
                for i in range(n):
                    if self.c.lg.dead:
                        break
                    lg_pin_page(&self.c, self.c.esp1 - 1u - (i << LG_PAGE_SHIFT))
            return
        for i in range(n):
            if self.c.lg.dead:
                break
            hook(self, self.c.esp1 - 1u - (i << LG_PAGE_SHIFT))

    def guest_set_stack(self, seg, esp, pages):
        """The SET_STACK hypercall: record and pin the guest's kernel stack.
        The segment must be a ring-1 one and there may be one or two pages;
        a bad request kills, yet what it asked for is stored all the same,
        as lguest does (ss1 keeps 16 bits).  Arguments are register values,
        taken modulo 2**32."""
        self._open()
        cdef uint32_t s = _mask32(seg), e = _mask32(esp), p = _mask32(pages)
        if (s & 3) != LG_GUEST_PL:
            lg_kill(self.c.lg, LG_KILL_BAD_STACK_SEGMENT, s, 0, 0)
        if p > 2:
            lg_kill(self.c.lg, LG_KILL_BAD_STACK_PAGES, p, 0, 0)
        self.c.ss1 = s & 0xFFFF
        self.c.esp1 = e
        self.c.lg.stack_pages = p
        self.pin_stack_pages()
    # :*

    def write_timestamp(self):
        """Copy the guest clock's time into lguest_data.time."""
        self._open()
        lg_write_timestamp(&self.c)

    def __repr__(self):
        return (f"<lgcore.VCpu {self.index} eip={self.c.regs.eip:#x} cs={self.c.regs.cs:#x} "
                f"pending={self.c.irqs_pending:#x} halted={self.c.halted}>")


# ---- free functions under the seed's names ----

def idt_address(lo, hi):
    """The handler address of a gate."""
    return lg_idt_address(_u32(lo, "lo"), _u32(hi, "hi"))


def idt_type(lo, hi):
    """The 4-bit type of a gate."""
    return lg_idt_type(_u32(lo, "lo"), _u32(hi, "hi"))


def idt_present(lo, hi):
    """Whether a gate has its present bit."""
    return lg_idt_present(_u32(lo, "lo"), _u32(hi, "hi"))


def has_err(trap):
    """Whether the CPU pushes an error code for ``trap``."""
    return lg_has_err(_u32(trap, "trap"))


def could_be_syscall(num, syscall_vector=LG_SYSCALL_VECTOR):
    cdef lg_guest_t g
    memset(&g, 0, sizeof(g))
    g.syscall_vector = _below(syscall_vector, LG_IDT_ENTRIES, "syscall_vector")
    return lg_could_be_syscall(&g, _u32(num, "num"))


def direct_trap(num, syscall_vector=LG_SYSCALL_VECTOR):
    """H:250 for a given syscall vector."""
    cdef lg_guest_t g
    memset(&g, 0, sizeof(g))
    g.syscall_vector = _below(syscall_vector, LG_IDT_ENTRIES, "syscall_vector")
    return lg_direct_trap(&g, _u32(num, "num"))


def default_idt_entry(trap, handler, base=None):
    """The host gate for ``trap`` pointing at ``handler``; ``base`` is the
    guest's (a, b) whose DPL it copies.  Returns (a, b)."""
    cdef lg_desc_t out, b
    cdef lg_desc_t *bp = NULL
    if base is not None:
        try:
            base_a, base_b = base
        except (TypeError, ValueError):
            raise TypeError(f"base must be the guest's gate as a pair (a, b), not {base!r}") from None
        b.a = _u32(base_a, "base[0]")
        b.b = _u32(base_b, "base[1]")
        bp = &b
    lg_default_idt_entry(&out, <int>_u32(trap, "trap"), _u32(handler, "handler"), bp)
    return (out.a, out.b)


def setup_default_idt_entries(idt, defaults):
    """Fill the host IDT ``idt`` (any writable buffer of at least 2048
    bytes) with default gates to the 256 host stub addresses in
    ``defaults`` (as for copy_traps)."""
    cdef lg_desc_t host[256]
    cdef uint32_t deflt[256]
    cdef _fast_bufs fb
    if _fast_open(&fb, idt, defaults):
        lg_setup_default_idt_entries(<lg_desc_t *>fb.idt.buf, <const uint32_t *>fb.deflt.buf)
        _fast_close(&fb)
        return
    _fast_close(&fb)
    _load_defaults(defaults, deflt)
    _load_host_idt(idt, host)
    lg_setup_default_idt_entries(host, deflt)
    _store_host_idt(idt, host)


def push_guest_stack(VCpu cpu not None, gstack, val):
    return cpu.push_guest_stack(gstack, val)


def set_guest_interrupt(VCpu cpu not None, lo, hi, has_err):
    cpu.set_guest_interrupt(lo, hi, has_err)


def interrupt_pending(VCpu cpu not None):
    return cpu.interrupt_pending()


def try_deliver_interrupt(VCpu cpu not None, irq, more):
    cpu.try_deliver_interrupt(irq, more)


def set_interrupt(VCpu cpu not None, irq):
    cpu.set_interrupt(irq)


def deliver_trap(VCpu cpu not None, num):
    return cpu.deliver_trap(num)


def set_trap(VCpu cpu not None, num, lo, hi):
    cpu.set_trap(num, lo, hi)


def load_guest_idt_entry(VCpu cpu not None, num, lo, hi):
    cpu.load_guest_idt_entry(num, lo, hi)


def copy_traps(VCpu cpu not None, idt, defaults):
    cpu.copy_traps(idt, defaults)


def check_syscall_vector(Guest lg not None):
    return lg.check_syscall_vector()


def guest_pa(VCpu cpu not None, vaddr):
    return cpu.guest_pa(vaddr)


def write_timestamp(VCpu cpu not None):
    cpu.write_timestamp()
