/*
 * linux/sched.h (kshim) - later copies of the C original (2.6.32 onwards)
 * include this for wake_up_process()/kick_process().
 *
 * SPDX-License-Identifier: GPL-2.0-only
 */
#ifndef KSHIM_LINUX_SCHED_H
#define KSHIM_LINUX_SCHED_H

#include "../kshim_sched.h"

#endif /* KSHIM_LINUX_SCHED_H */
