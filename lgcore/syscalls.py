# SPDX-License-Identifier: GPL-2.0-only
"""The syscall vector: which software-interrupt vector a guest's userspace
uses for system calls, and the host's reservation of it.

In lguest this is the ``syscall_vector`` module parameter (0x80 for Linux,
0x40 for Plan 9).  Here a ``HostVectors`` object plays the host: it knows the
vectors the host uses and reserves the parameter at ``init_interrupts``;
guests made for it take ``syscall_vector=host.syscall_vector``.
"""
from __future__ import annotations

import errno
import logging

from lgcore.constants import FIRST_EXTERNAL_VECTOR, IDT_ENTRIES, SYSCALL_VECTOR

log = logging.getLogger("lgcore")


def _vector(value: int, what: str) -> int:
    if not isinstance(value, int):
        raise TypeError(f"{what} must be an int, not {type(value).__name__}")
    if not 0 <= value < IDT_ENTRIES:
        raise ValueError(f"{what}={value!r} is out of range (0..{IDT_ENTRIES - 1})")
    return value


class HostVectors:
    """The host's vector table: ``used_vectors`` (set at boot for the CPU
    exceptions and 0x80, as Linux's trap_init does) and the vectors bound to
    per-CPU IRQs."""

    def __init__(self, syscall_vector: int = SYSCALL_VECTOR,
                 used_vectors=None, percpu_irq_vectors=()):
        self.syscall_vector = _vector(syscall_vector, "syscall_vector")
        if used_vectors is None:
            used_vectors = set(range(FIRST_EXTERNAL_VECTOR)) | {SYSCALL_VECTOR}
        self.used_vectors = {_vector(v, "used vector") for v in used_vectors}
        self.percpu_irq_vectors = {_vector(v, "per-CPU IRQ vector") for v in percpu_irq_vectors}
        self.last_error: str | None = None

    def vector_used_by_percpu_irq(self, vector: int) -> bool:
        return vector in self.percpu_irq_vectors


# A non-Linux syscall vector must be free on the host: neither used nor bound
# to a per-CPU IRQ.  Then it is reserved.  Failure is -EBUSY with an error
# logged, as at lguest's module load.
def init_interrupts(host: HostVectors) -> int:
    """Reserve the host's syscall vector; 0, or -EBUSY if it is taken."""
    vector = _vector(host.syscall_vector, "syscall_vector")
    if vector != SYSCALL_VECTOR:
        if vector in host.used_vectors or host.vector_used_by_percpu_irq(vector):
            host.last_error = f"lg: couldn't reserve syscall {vector}"
            log.error(host.last_error)
            return -errno.EBUSY
        host.used_vectors.add(vector)
    return 0


def free_interrupts(host: HostVectors) -> None:
    """Give back a reserved non-Linux syscall vector."""
    vector = _vector(host.syscall_vector, "syscall_vector")
    if vector != SYSCALL_VECTOR:
        host.used_vectors.discard(vector)
