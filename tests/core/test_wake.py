# SPDX-License-Identifier: GPL-2.0-only
"""set_interrupt's wake-or-kick through lgcore.wake.Task, the halted sleep
with its lost-wakeup guard, and set_interrupt from many threads."""
import sys
import threading

import lgcore
from lgcore.constants import LD_BLOCKED, LD_IRQ_ENABLED
from lgcore.wake import Task

from .helpers import LD, make_guest, trap_gate, wr


def test_running_vcpu_is_kicked_through_the_hook_always():
    g, cpu = make_guest()
    kicks = []
    cpu.task = Task(kick=lambda: kicks.append(1))
    assert cpu.task.in_guest is False          # the hook runs regardless
    cpu.set_interrupt(3)
    assert kicks == [1] and cpu.task.kicks == 1 and cpu.task.wakeups == 0
    cpu.task.in_guest = True
    lgcore.set_interrupt(cpu, 4)
    assert kicks == [1, 1] and cpu.irqs_pending == 0b11000


def test_sleeping_vcpu_is_woken_not_kicked():
    g, cpu = make_guest()
    kicks = []
    cpu.task = Task(kick=lambda: kicks.append(1))
    cpu.task.state = Task.SLEEPING
    cpu.set_interrupt(0)
    assert cpu.task.state == Task.RUNNING
    assert (cpu.task.wakeups, cpu.task.kicks, kicks) == (1, 0, [])


def test_kick_without_hook_only_counts():
    task = Task()
    task.kick_process()
    assert task.kicks == 1
    assert task.wake_up_process() is False


def test_no_task_no_wake():
    g, cpu = make_guest()
    assert cpu.task is None
    cpu.set_interrupt(5)
    assert cpu.irqs_pending == 1 << 5


def test_custom_task_object():
    class Recorder:
        def __init__(self):
            self.log = []

        def wake_up_process(self):
            self.log.append("wake")
            return False

        def kick_process(self):
            self.log.append("kick")

    g, cpu = make_guest()
    cpu.task = Recorder()
    cpu.set_interrupt(1)
    assert cpu.task.log == ["wake", "kick"]


def test_lost_wakeup_guard_pending_before_sleep():
    g, cpu = make_guest()
    task = Task()
    cpu.irqs_pending = 1 << 2
    assert task.sleep_until_interrupt(cpu, timeout=5) is True
    assert task.state == Task.RUNNING


def test_blocked_irq_does_not_end_the_sleep():
    g, cpu = make_guest()
    wr(g.ram, LD + LD_BLOCKED, 1 << 2)
    cpu.irqs_pending = 1 << 2
    assert Task().sleep_until_interrupt(cpu, timeout=0.01) is False


def test_dead_guest_does_not_sleep():
    g, cpu = make_guest()
    g.kill_guest("gone")
    assert Task().sleep_until_interrupt(cpu, timeout=5) is False


def test_halted_vcpu_thread_is_woken_by_set_interrupt():
    g, cpu = make_guest()
    task = Task()
    cpu.task = task
    result = []
    asleep = threading.Event()

    def vcpu():
        asleep.set()
        result.append(task.sleep_until_interrupt(cpu, timeout=30))

    th = threading.Thread(target=vcpu)
    th.start()
    asleep.wait(10)
    cpu.set_interrupt(7)          # before or during the sleep: never lost
    th.join(30)
    assert not th.is_alive()
    assert result == [True]
    assert cpu.interrupt_pending()[0] == 7


def test_concurrent_set_and_clear_lose_no_bits():
    """Producer threads raise IRQs 16..31 (blocked, so they stay pending)
    while a consumer keeps delivering and clearing IRQs 0..15 from the same
    pending word: every bit raised must survive every clear."""
    g, cpu = make_guest()
    cpu.ss = 0x69
    wr(g.ram, LD + LD_BLOCKED, 0xFFFF0000)
    for irq in range(32):
        cpu.load_guest_idt_entry(32 + irq, *trap_gate(0xC0200000 + irq))
    rounds = 160
    delivered = [0] * 16
    stop = threading.Event()
    old = sys.getswitchinterval()
    sys.setswitchinterval(1e-5)

    def consumer():
        while not stop.is_set():
            cpu.esp = 0x8000
            wr(g.ram, LD + LD_IRQ_ENABLED, 0x200)
            irq = cpu.deliver_pending()
            if irq is not None:
                assert irq < 16
                delivered[irq] += 1

    def low_producer():
        for r in range(rounds):
            irq = r % 16
            cpu.set_interrupt(irq)
            while cpu.irqs_pending & (1 << irq):      # wait for the consumer
                pass

    def high_producer(bits):
        for r in range(rounds):
            for irq in bits:
                cpu.set_interrupt(irq)

    try:
        threads = [threading.Thread(target=consumer), threading.Thread(target=low_producer),
                   threading.Thread(target=high_producer, args=(range(16, 24),)),
                   threading.Thread(target=high_producer, args=(range(24, 32),))]
        for t in threads:
            t.start()
        for t in threads[1:]:
            t.join(60)
        stop.set()
        threads[0].join(60)
    finally:
        sys.setswitchinterval(old)
    assert not any(t.is_alive() for t in threads)
    assert cpu.irqs_pending == 0xFFFF0000
    assert sum(delivered) == rounds
    assert delivered == [rounds // 16 + (1 if i < rounds % 16 else 0) for i in range(16)]


def test_set_interrupt_from_many_threads():
    g, cpu = make_guest()
    barrier = threading.Barrier(8)

    def raise_some(k):
        barrier.wait()
        for _ in range(200):
            for irq in range(k, 32, 8):
                cpu.set_interrupt(irq)

    threads = [threading.Thread(target=raise_some, args=(k,)) for k in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert cpu.irqs_pending == 0xFFFFFFFF
