/*
 * kshim_time.h - ktime_t and a passive hrtimer.
 *
 * SPDX-License-Identifier: GPL-2.0-only
 *
 * Time is a signed 64-bit count of nanoseconds.  ktime_get_real() reads the
 * shim clock: a virtual clock the harness sets (the default) or the host's
 * CLOCK_REALTIME.  An hrtimer here never fires by itself: hrtimer_start()
 * records the absolute expiry and marks the timer armed, hrtimer_cancel()
 * disarms it, and the harness fires the callback when it decides the
 * expiry has been reached (kshim_timer_fire / kshim_timer_run_expired).
 */
#ifndef KSHIM_TIME_H
#define KSHIM_TIME_H

#include <time.h>	/* CLOCK_REALTIME */
#include "kshim_kernel.h"

typedef s64 ktime_t;

#define NSEC_PER_SEC 1000000000LL

/* Which clock ktime_get_real() reads: same codes as lgcore.h's lg_clock. */
#define KSHIM_CLOCK_REALTIME 0
#define KSHIM_CLOCK_VIRTUAL  1
struct kshim_clock {
	int mode;
	s64 virtual_ns;
};
extern struct kshim_clock kshim_clock;

ktime_t ktime_get_real(void);
#define ktime_add_ns(kt, nsval) ((ktime_t)((kt) + (s64)(nsval)))

enum hrtimer_mode {
	HRTIMER_MODE_ABS = 0,
	HRTIMER_MODE_REL = 1,
};

enum hrtimer_restart {
	HRTIMER_NORESTART = 0,
	HRTIMER_RESTART = 1,
};

struct hrtimer {
	ktime_t expires;	/* absolute, on the timer's clock */
	int armed;
	int clock;
	enum hrtimer_mode mode;
	enum hrtimer_restart (*function)(struct hrtimer *);
};

static inline void hrtimer_init(struct hrtimer *timer, int which_clock,
				enum hrtimer_mode mode)
{
	timer->expires = 0;
	timer->armed = 0;
	timer->clock = which_clock;
	timer->mode = mode;
	timer->function = NULL;
}

/* Arm (or re-arm) the timer; returns whether it was already armed. */
static inline int hrtimer_start(struct hrtimer *timer, ktime_t tim,
				enum hrtimer_mode mode)
{
	int was_armed = timer->armed;

	if (mode == HRTIMER_MODE_REL)
		tim = ktime_add_ns(ktime_get_real(), tim);
	timer->expires = tim;
	timer->armed = 1;
	return was_armed;
}

/* Disarm; returns whether it was armed.  Nothing runs concurrently here. */
static inline int hrtimer_cancel(struct hrtimer *timer)
{
	int was_armed = timer->armed;

	timer->armed = 0;
	return was_armed;
}

static inline int hrtimer_active(const struct hrtimer *timer)
{
	return timer->armed;
}

#endif /* KSHIM_TIME_H */
