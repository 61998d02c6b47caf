/* SPDX-License-Identifier: GPL-2.0-only
 *
 * user.S - the ring-3 program of the lgcore demo guest.
 *
 * It lives at USER_TEXT (read-only) with its data one page up, talks to
 * its kernel only through `int $0x80` (a DPL-3 trap gate, so lguest lets
 * the CPU deliver it straight to the guest kernel), and provokes the
 * traps the kernel must see reflected by the host: a page fault on a page
 * that is not mapped yet, a write to a read-only page, a read of kernel
 * memory, an int3, a #GP from a bad selector and a #GP from an `int` whose
 * gate is DPL 0.  Before each fault it tells the kernel what to expect
 * (SYS_EXPECT); the kernel compares the delivered frame with it.
 */
.include "lguest.inc"
.code32

/* SYSCALL nr: eax = nr, arguments already in ebx.. ; result in eax. */
.macro SYSCALL nr
	movl	$\nr, %eax
	int	$0x80
.endm

/* UCHECK name: report "ok" if ebx != 0. */
.macro UCHECK name
	movl	$.Lname\@, %ecx
	SYSCALL	SYS_CHECK
	.pushsection .rodata
.Lname\@:	.asciz "\name"
	.popsection
.endm

/* OK_IF cc: ebx = 1 if the flags say cc, else 0. */
.macro OK_IF cc
	set\cc	%bl
	movzbl	%bl, %ebx
.endm

/* EXPECT vector, errcode, cr2, resume, fault: announce the next trap. */
.macro EXPECT vec, err, cr2, resume, fault
	movl	$\vec, %ebx
	movl	$\err, %ecx
	movl	$\cr2, %edx
	movl	$\resume, %esi
	movl	$\fault, %edi
	SYSCALL	SYS_EXPECT
.endm

.text
.globl _ustart
_ustart:
	/* A system call that writes to the console. */
	movl	$hello, %ebx
	movl	$hello_len, %ecx
	SYSCALL	SYS_WRITE
	cmpl	$hello_len, %eax
	OK_IF	e
	UCHECK	"write() through int $0x80 returns its length"

	SYSCALL	SYS_GETPID
	cmpl	$42, %eax
	OK_IF	e
	UCHECK	"getpid() through int $0x80 returns 42"

	/* Registers survive a system call. */
	movl	$0x11223344, %esi
	movl	$0x55667788, %edi
	movl	$0x99aabbcc, %ebp
	SYSCALL	SYS_GETPID
	xorl	%ebx, %ebx
	cmpl	$0x11223344, %esi
	jne	1f
	cmpl	$0x55667788, %edi
	jne	1f
	cmpl	$0x99aabbcc, %ebp
	jne	1f
	incl	%ebx
1:	UCHECK	"esi/edi/ebp survive a system call"

	/* Touch a page nobody mapped: #PF (user, write, not present = 6);
	 * the kernel maps it and we retry the same instruction. */
	EXPECT	14, 6, USER_DEMAND + 0x123, 0, .Ldemand
.Ldemand:
	movl	$0x5a5a1234, USER_DEMAND + 0x123
	cmpl	$0x5a5a1234, USER_DEMAND + 0x123
	OK_IF	e
	UCHECK	"the demand-paged page holds what we wrote"

	/* Write to our own read-only text: #PF 7 (user, write, present). */
	EXPECT	14, 7, USER_TEXT + 0x10, 2f, 1f
1:	movl	$0, USER_TEXT + 0x10
	xorl	%ebx, %ebx
	UCHECK	"writing read-only text must fault"
2:
	/* Read kernel memory: #PF 5 (user, read, present). */
	EXPECT	14, 5, PAGE_OFFSET + KERNEL_PHYS, 2f, 1f
1:	movl	PAGE_OFFSET + KERNEL_PHYS, %eax
	xorl	%ebx, %ebx
	UCHECK	"reading kernel memory must fault"
2:
	/* int3 through a DPL-3 interrupt gate: a trap, eip after it. */
	EXPECT	3, 0, 0, 0, 1f
	int3
1:
	/* Load a selector beyond the GDT: #GP(0x1238). */
	EXPECT	13, 0x1238, 0, 2f, 1f
	movw	$0x1238, %ax
1:	movw	%ax, %ds
	xorl	%ebx, %ebx
	UCHECK	"loading selector 0x1238 must fault"
2:
	/* int $0x20 from ring 3 meets a DPL-0 gate: #GP(0x20 << 3 | 2). */
	EXPECT	13, 0x102, 0, 2f, 1f
1:	int	$0x20
	xorl	%ebx, %ebx
	UCHECK	"int $0x20 from ring 3 must fault"
2:
	/* Spin in ring 3 until the timer has interrupted us a few times:
	 * no system calls, so only the host's kick gets us out. */
	movl	USER_INFO + INFO_TICKS, %edx
	addl	USER_INFO + INFO_USER_TICKS, %edx
	movl	$800000000, %ecx
1:	cmpl	%edx, USER_INFO + INFO_TICKS
	jae	2f
	decl	%ecx
	jnz	1b
2:	cmpl	%edx, USER_INFO + INFO_TICKS
	OK_IF	ae
	UCHECK	"timer interrupts arrive while spinning in ring 3"

	xorl	%ebx, %ebx
	SYSCALL	SYS_EXIT
	ud2			/* never reached */

.section .rodata
hello:	.ascii	"hello from ring 3 (int $0x80 goes straight to the guest kernel)\n"
.equ hello_len, . - hello

.data
scratch: .long 0
