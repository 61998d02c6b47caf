/*
 * linux/module.h (kshim) - module parameters.
 *
 * SPDX-License-Identifier: GPL-2.0-only
 *
 * A module parameter is a static variable of the file that declares it.  So
 * that the harness can read and set it, module_param(name, type, perm)
 * defines an accessor,
 *     __typeof__(name) *kshim_param_<name>(void)
 * returning the variable's address.  The macro ends in a declaration, so
 * the semicolon after module_param(...) in the original completes it.
 */
#ifndef KSHIM_LINUX_MODULE_H
#define KSHIM_LINUX_MODULE_H

#include "../kshim_kernel.h"

#define module_param_named(name, value, type, perm)			\
	__typeof__(value) *kshim_param_##name(void);			\
	__typeof__(value) *kshim_param_##name(void) { return &(value); } \
	extern const int kshim_param_perm_##name

#define module_param(name, type, perm) \
	module_param_named(name, name, type, perm)

#define MODULE_PARM_DESC(name, text)
#define MODULE_LICENSE(text)
#define MODULE_AUTHOR(text)
#define MODULE_DESCRIPTION(text)
#define EXPORT_SYMBOL(sym)
#define EXPORT_SYMBOL_GPL(sym)

#endif /* KSHIM_LINUX_MODULE_H */
