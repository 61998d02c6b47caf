/*
 * kshim_lgcore.h - include lgcore's ABI header next to the shim.
 *
 * SPDX-License-Identifier: GPL-2.0-only
 *
 * lgcore.h names its per-vCPU state "struct lg_cpu" (typedef lg_cpu_t),
 * the same tag the C original gives the kernel's vCPU structure, which the
 * shim must define with the kernel's shape.  While lgcore.h is read, the tag
 * is renamed to struct kshim_lgcore_cpu; lg_cpu_t is untouched and keeps
 * the identical layout.  Every shim file includes lgcore.h only through
 * here, so all translation units agree on the tag.
 */
#ifndef KSHIM_LGCORE_H
#define KSHIM_LGCORE_H

#ifdef LGCORE_LGCORE_H
#error "include kshim_lgcore.h before (instead of) lgcore/lgcore.h"
#endif

#define lg_cpu kshim_lgcore_cpu
#include "lgcore/lgcore.h"
#undef lg_cpu

#endif /* KSHIM_LGCORE_H */
