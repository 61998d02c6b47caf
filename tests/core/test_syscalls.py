# SPDX-License-Identifier: GPL-2.0-only
"""The syscall_vector parameter and the host's reservation of it:
init_interrupts / free_interrupts with lguest's refusal rules."""
import errno
import logging

import pytest

import lgcore
from lgcore.syscalls import HostVectors, free_interrupts, init_interrupts

LINUX_USED = set(range(32)) | {0x80}


def test_default_host_table_is_linux_trap_init():
    host = HostVectors()
    assert host.syscall_vector == 0x80
    assert host.used_vectors == LINUX_USED
    assert host.percpu_irq_vectors == set()


def test_linux_vector_needs_no_reservation():
    host = HostVectors(0x80)
    assert lgcore.init_interrupts(host) == 0
    assert host.used_vectors == LINUX_USED
    lgcore.free_interrupts(host)
    assert 0x80 in host.used_vectors                 # never given back


def test_plan9_vector_is_reserved_and_freed():
    host = HostVectors(0x40)
    assert init_interrupts(host) == 0
    assert 0x40 in host.used_vectors
    free_interrupts(host)
    assert 0x40 not in host.used_vectors
    assert host.used_vectors == LINUX_USED


def test_a_second_load_finds_the_vector_taken(caplog):
    host = HostVectors(0x40)
    assert init_interrupts(host) == 0
    with caplog.at_level(logging.ERROR, logger="lgcore"):
        assert init_interrupts(host) == -errno.EBUSY == -16
    assert host.last_error == "lg: couldn't reserve syscall 64"
    assert "lg: couldn't reserve syscall 64" in caplog.text


@pytest.mark.parametrize("vector", [0, 14, 31])
def test_cpu_exception_vectors_are_busy(vector):
    host = HostVectors(vector)
    assert init_interrupts(host) == -errno.EBUSY
    assert host.used_vectors == LINUX_USED


def test_per_cpu_irq_vector_is_busy():
    host = HostVectors(0xEF, percpu_irq_vectors={0xEF, 0xFD})
    assert host.vector_used_by_percpu_irq(0xEF)
    assert init_interrupts(host) == -errno.EBUSY
    assert 0xEF not in host.used_vectors
    assert init_interrupts(HostVectors(0xEE, percpu_irq_vectors={0xEF})) == 0


def test_custom_used_table():
    host = HostVectors(0x40, used_vectors={0x40})
    assert init_interrupts(host) == -errno.EBUSY
    host = HostVectors(0x40, used_vectors=())
    assert init_interrupts(host) == 0 and host.used_vectors == {0x40}


def test_free_of_an_unreserved_vector_is_harmless():
    host = HostVectors(0x41)
    free_interrupts(host)
    assert host.used_vectors == LINUX_USED


@pytest.mark.parametrize("kwargs, message", [
    ({"syscall_vector": 256}, r"syscall_vector=256 is out of range \(0\.\.255\)"),
    ({"syscall_vector": -1}, r"syscall_vector=-1 is out of range \(0\.\.255\)"),
    ({"used_vectors": {300}}, r"used vector=300 is out of range"),
    ({"percpu_irq_vectors": [-5]}, r"per-CPU IRQ vector=-5 is out of range"),
])
def test_out_of_range_vectors_are_rejected(kwargs, message):
    with pytest.raises(ValueError, match=message):
        HostVectors(**kwargs)


def test_vector_changed_afterwards_is_checked_again():
    host = HostVectors(0x40)
    host.syscall_vector = 1000
    with pytest.raises(ValueError, match="syscall_vector=1000"):
        init_interrupts(host)
    with pytest.raises(ValueError, match="syscall_vector=1000"):
        free_interrupts(host)
    host.syscall_vector = "0x40"
    with pytest.raises(TypeError, match="syscall_vector must be an int, not str"):
        init_interrupts(host)


def test_guest_takes_the_hosts_vector():
    host = HostVectors(0x40)
    assert init_interrupts(host) == 0
    g = lgcore.Guest(bytearray(8192), syscall_vector=host.syscall_vector)
    assert g.syscall_vector == 0x40
    assert g.could_be_syscall(0x40) and g.could_be_syscall(0x80)
    assert g.direct_trap(0x40)
    with pytest.raises(ValueError, match=r"syscall_vector=256 is out of range \(0\.\.255\)"):
        g.syscall_vector = 256
    with pytest.raises(ValueError, match=r"syscall_vector=-1"):
        lgcore.Guest(bytearray(8192), syscall_vector=-1)
