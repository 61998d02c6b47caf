/*
 * kshim_sched.h - a task that only counts how it was woken.
 *
 * SPDX-License-Identifier: GPL-2.0-only
 *
 * wake_up_process() returns the value the harness chose (1: "it was asleep
 * and is now woken", 0: "it was already running") and counts the call;
 * kick_process() counts the call.  Nothing sleeps or runs.
 */
#ifndef KSHIM_SCHED_H
#define KSHIM_SCHED_H

#include "kshim_kernel.h"

struct task_struct {
	int wake_result;
	unsigned long wake_calls;
	unsigned long kick_calls;
};

int wake_up_process(struct task_struct *tsk);
void kick_process(struct task_struct *tsk);

#endif /* KSHIM_SCHED_H */
