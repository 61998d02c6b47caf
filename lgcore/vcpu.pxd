# SPDX-License-Identifier: GPL-2.0-only
# The Python face's objects, for Cython code that wants the C state behind
# them: `&vcpu.c` is an lg_cpu_t* the nogil engine (lgcore.deliver,
# lgcore.idt) works on directly.
from lgcore.abi cimport lg_cpu_t, lg_guest_t, lg_clock_t


cdef class Clock:
    cdef lg_clock_t c
    cdef list _listeners


cdef class Guest:
    cdef lg_guest_t c
    cdef object _mv
    cdef object _dead_text
    cdef readonly Clock clock
    cdef readonly list vcpus
    cdef object _cpus
    cdef public object pin_page_hook
    cdef dict __dict__
    cdef object __weakref__
    cdef void _release(self) noexcept
    cdef int _sync(self) except -1


cdef class VCpu:
    cdef lg_cpu_t c
    cdef readonly Guest guest
    cdef readonly int index
    cdef public object task
    cdef dict __dict__
    cdef object __weakref__
    cdef int _open(self) except -1
