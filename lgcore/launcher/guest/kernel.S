/* SPDX-License-Identifier: GPL-2.0-only
 *
 * kernel.S - the lgcore demo guest kernel.
 *
 * A deliberately small paravirtualised kernel in the style of an lguest
 * guest of the 2.6.32-3.0 generation.  It runs at ring 1 with paging on
 * (the launcher built the first page tables and tells us where they are
 * through lguest_data.pgdir), never touches the real interrupt flag and
 * never loads an IDT itself: everything privileged is a hypercall
 * (`int $0x1f`, number in eax).  It checks what the host delivers to it
 * and prints one line per check on the console:
 *
 *   - LGUEST_INIT: the host filled in time and pgdir;
 *   - the IDT, sent entry by entry (interrupt and trap gates, DPL 0/3);
 *   - SET_STACK: the stack the CPU (or the host) switches to from ring 3;
 *   - int3 at ring 1, with the virtual IF off and on: frame, IF in the
 *     pushed eflags, irq_enabled restored by lguest_iret;
 *   - the clockevent and HALT: at least HDR_OFF_TICKS timer interrupts;
 *   - a device interrupt held back by blocked_interrupts, then delivered
 *     as soon as it is unblocked;
 *   - the same with irq_enabled = 0: the host flags irq_pending and we
 *     ask for delivery with SEND_INTERRUPTS once we enable again;
 *   - the no-interrupt window of lguest_iret: an interrupt raised while
 *     eip is inside [noirq_start, noirq_end) must wait;
 *   - a ring-3 program (user.S) making system calls and faults.
 *
 * At the end it reports the totals (a launcher hypercall) and shuts down.
 */
.include "lguest.inc"
.code32

/* Layout of the frame trap_common builds (ebp points at it). */
.equ F_IRQEN,   0       /* lguest_data.irq_enabled on entry */
.equ F_EAX,     4
.equ F_EBX,     8
.equ F_ECX,     12
.equ F_EDX,     16
.equ F_ESI,     20
.equ F_EDI,     24
.equ F_EBP,     28
.equ F_VEC,     32
.equ F_ERR,     36
.equ F_EIP,     40      /* from here on: what the CPU or the host pushed */
.equ F_CS,      44
.equ F_EFLAGS,  48
.equ F_UESP,    52      /* only when we came from ring 3 */
.equ F_USS,     56

.equ LINEMAX,   240
.equ SPIN_LIMIT, 400000000

/* ------------------------------------------------------------------ */
/* macros                                                             */
/* ------------------------------------------------------------------ */

/* HCALL nr, a1, a2, a3: hypercall; all registers but eax survive. */
.macro HCALL nr, a1=$0, a2=$0, a3=$0
	pushl	%ebx
	pushl	%ecx
	pushl	%edx
	movl	\a3, %edx
	movl	\a2, %ecx
	movl	\a1, %ebx
	movl	\nr, %eax
	int	$LGUEST_TRAP
	popl	%edx
	popl	%ecx
	popl	%ebx
.endm
.equ LGUEST_TRAP, 0x1f

/* PUTS "text": append text to the console line. */
.macro PUTS text
	pushl	%esi
	movl	$.Lstr\@, %esi
	call	puts
	popl	%esi
	.pushsection .rodata
.Lstr\@:	.asciz "\text"
	.popsection
.endm

.macro PUTHEX val
	pushl	%eax
	movl	\val, %eax
	call	puthex
	popl	%eax
.endm

.macro PUTDEC val
	pushl	%eax
	movl	\val, %eax
	call	putdec
	popl	%eax
.endm

/* CHECK "name": eax != 0 means pass; starts a result line. */
.macro CHECK name
	call	check_prefix
	PUTS	"\name"
.endm

.macro CHECKLN name
	CHECK	"\name"
	call	putnl
.endm

/* OK_IF cc: eax = 1 if the flags say cc, else 0. */
.macro OK_IF cc
	set\cc	%al
	movzbl	%al, %eax
.endm

/* ISR vec, err: entry stub; vectors without a CPU error code get a 0. */
.macro ISR vec, err=0
isr_\vec:
	.if \err == 0
	pushl	$0
	.endif
	pushl	$\vec
	jmp	trap_common
.endm

/* ------------------------------------------------------------------ */
/* entry and boot header                                              */
/* ------------------------------------------------------------------ */
.section .text.head, "ax"
.globl _start
_start:
	jmp	boot
	.balign	16
header:
	.long	HDR_MAGIC
	.long	1			/* header version */
hdr_ticks:	.long 5			/* patched by the launcher */
hdr_delta:	.long 4000000
hdr_fault:	.long FAULT_NONE
hdr_user_ticks:	.long 2
	.long	_end - PAGE_OFFSET
	.balign	16

.text
boot:
	movl	$boot_stack_top, %esp
	movl	$USER_DS, %eax		/* flat data usable at ring 1 and 3 */
	movl	%eax, %ds
	movl	%eax, %es
	cld

	HCALL	$LHCALL_LGUEST_INIT, $(lguest_data - PAGE_OFFSET)

	PUTS	"lgcore demo guest: kernel up, lguest_data at "
	PUTHEX	$(lguest_data - PAGE_OFFSET)
	PUTS	", noirq window "
	PUTHEX	$lguest_noirq_start
	PUTS	"-"
	PUTHEX	$lguest_noirq_end
	call	putnl

	movl	%cs, %eax
	andl	$3, %eax
	cmpl	$1, %eax
	OK_IF	e
	CHECKLN	"kernel runs at ring 1"

	/* The host wrote the time at LGUEST_INIT and the page directory. */
	movl	lguest_data + LD_TIME_SEC, %eax
	movl	%eax, boot_time_sec
	movl	lguest_data + LD_TIME_NSEC, %eax
	movl	%eax, boot_time_nsec
	cmpl	$0, boot_time_sec
	OK_IF	ne
	CHECK	"LGUEST_INIT wrote lguest_data.time: "
	PUTDEC	boot_time_sec
	PUTS	" s"
	call	putnl

	movl	lguest_data + LD_PGDIR, %ebx
	xorl	%eax, %eax
	testl	%ebx, %ebx
	jz	1f
	testl	$0xfff, %ebx
	jnz	1f
	/* our own kernel mapping must be in it */
	movl	PAGE_OFFSET + (PAGE_OFFSET >> 22) * 4(%ebx), %ecx
	andl	$PTE_P, %ecx
	movl	%ecx, %eax
1:	CHECK	"lguest_data.pgdir is our page directory: "
	PUTHEX	%ebx
	call	putnl
	cmpl	$0x400000, lguest_data + LD_RESERVE_MEM
	OK_IF	e
	CHECKLN	"host reserved the top 4 MiB for its Switcher (reserve_mem)"

	cmpl	$FAULT_BAD_IDT_TYPE, hdr_fault
	jne	1f
	PUTS	"misbehaving on request: loading a call gate (type 0xC) as IDT entry 0x40"
	call	putnl
	HCALL	$LHCALL_LOAD_IDT_ENTRY, $0x40, $((KERNEL_CS << 16) | 0x1000), $(PAGE_OFFSET | GATE_CALL_DPL0)
	jmp	should_be_dead
1:
	call	load_idt

	cmpl	$FAULT_BAD_STACK_SEGMENT, hdr_fault
	jne	1f
	PUTS	"misbehaving on request: SET_STACK with segment 0x68 (ring 0)"
	call	putnl
	HCALL	$LHCALL_SET_STACK, $(GUEST_DS & ~3), $trap_stack_top, $2
	jmp	should_be_dead
1:
	HCALL	$LHCALL_SET_STACK, $GUEST_DS, $trap_stack_top, $2

	cmpl	$FAULT_UNHANDLED_TRAP, hdr_fault
	jne	1f
	PUTS	"misbehaving on request: ud2 with no IDT entry for vector 6"
	call	putnl
	ud2
	jmp	should_be_dead
1:
	call	test_int3_kernel
	call	test_switcher_readonly
	call	test_timer_halt
	call	test_blocked_irq
	call	test_irq_disabled
	call	test_noirq_window
	call	setup_user
	call	run_user_phase
	call	final_checks
	jmp	finish

should_be_dead:
	movl	$0, %eax
	CHECKLN	"the host should have killed this guest by now"
	jmp	finish

/* Print the summary, report the counts to the launcher, power off. */
finish:
	PUTS	"lgcore demo guest: "
	PUTDEC	n_checks
	PUTS	" checks, "
	PUTDEC	n_failed
	PUTS	" failed"
	call	putnl
	HCALL	$LHCALL_REPORT, n_checks, n_failed
	HCALL	$LHCALL_SHUTDOWN, $(poweroff_msg - PAGE_OFFSET), $LGUEST_SHUTDOWN_POWEROFF
1:	jmp	1b

/* ------------------------------------------------------------------ */
/* the IDT: one LOAD_IDT_ENTRY hypercall per gate                     */
/* ------------------------------------------------------------------ */
load_idt:
	pushl	%esi
	pushl	%ebx
	movl	$idt_list, %esi
1:	movl	(%esi), %ebx		/* vector, or -1 at the end */
	cmpl	$-1, %ebx
	je	2f
	movl	4(%esi), %ecx		/* handler */
	movl	%ecx, %edx
	andl	$0xffff, %ecx
	orl	$(KERNEL_CS << 16), %ecx	/* the host turns 0x60 into 0x61 */
	andl	$0xffff0000, %edx
	orl	8(%esi), %edx		/* P, DPL, type */
	movl	$LHCALL_LOAD_IDT_ENTRY, %eax
	int	$LGUEST_TRAP		/* (vector, a, b) in ebx, ecx, edx */
	incl	idt_loaded
	addl	$12, %esi
	jmp	1b
2:	popl	%ebx
	popl	%esi
	movl	$1, %eax
	CHECK	"IDT loaded by hypercall: "
	PUTDEC	idt_loaded
	PUTS	" gates (0x80 a DPL-3 trap gate, int3 a DPL-3 interrupt gate)"
	call	putnl
	ret

/* ------------------------------------------------------------------ */
/* int3 at ring 1: a same-ring frame, and the virtual IF round trip   */
/* ------------------------------------------------------------------ */
test_int3_kernel:
	/* with irq_enabled = 0 the pushed eflags must have IF clear */
	movl	$0, lguest_data + LD_IRQ_ENABLED
	movl	$3, expect_vec
	movl	$0, expect_err
	movl	$.Lk3a, expect_eip
	movl	$0, expect_resume
	movl	$GUEST_CS, expect_cs
	movl	$1, expect_armed
	int3
.Lk3a:
	movl	last_trap_eflags, %eax
	andl	$X86_EFLAGS_IF, %eax
	orl	lguest_data + LD_IRQ_ENABLED, %eax
	cmpl	$0, %eax
	OK_IF	e
	CHECKLN	"int3 with irq_enabled=0: pushed IF clear, still 0 after lguest_iret"

	/* with irq_enabled = 0x200 the pushed eflags carry IF, and our
	 * iret puts 0x200 back although the interrupt gate cleared it */
	movl	$X86_EFLAGS_IF, lguest_data + LD_IRQ_ENABLED
	movl	$.Lk3b, expect_eip
	movl	$1, expect_armed
	int3
.Lk3b:
	movl	lguest_data + LD_IRQ_ENABLED, %ecx
	movl	$0, lguest_data + LD_IRQ_ENABLED
	movl	last_trap_eflags, %eax
	andl	$X86_EFLAGS_IF, %eax
	cmpl	$X86_EFLAGS_IF, %eax
	jne	1f
	cmpl	$X86_EFLAGS_IF, %ecx
1:	OK_IF	e
	CHECKLN	"int3 with irq_enabled=0x200: pushed IF set, 0x200 again after lguest_iret"
	ret

/* The host's Switcher pages sit in our address space (top 4 MiB) but
 * must be read-only even to ring 1: a write is a #PF (present|write). */
test_switcher_readonly:
	movl	$14, expect_vec
	movl	$3, expect_err
	movl	$0xffc00000, expect_cr2
	movl	$1f, expect_eip
	movl	$2f, expect_resume
	movl	$GUEST_CS, expect_cs
	movl	$1, expect_armed
1:	movl	$0, 0xffc00000
	xorl	%eax, %eax
	CHECKLN	"writing the Switcher must fault"
2:	ret

/* ------------------------------------------------------------------ */
/* clockevent + HALT                                                  */
/* ------------------------------------------------------------------ */
test_timer_halt:
	andl	$~1, lguest_data + LD_BLOCKED	/* IRQ 0 was blocked since boot */
	movl	ticks, %eax
	movl	%eax, ticks_base
	movl	$1, timer_running
	HCALL	$LHCALL_SET_CLOCKEVENT, hdr_delta
	movl	$X86_EFLAGS_IF, lguest_data + LD_IRQ_ENABLED
1:	movl	ticks, %eax
	subl	ticks_base, %eax
	cmpl	hdr_ticks, %eax
	jae	2f
	HCALL	$LHCALL_HALT
	incl	halts
	jmp	1b
2:	movl	$0, timer_running
	HCALL	$LHCALL_SET_CLOCKEVENT, $0
	/* keep a late tick from landing in the tests that count IRQ 1 */
	orl	$1, lguest_data + LD_BLOCKED
	movl	ticks, %eax
	subl	ticks_base, %eax
	cmpl	hdr_ticks, %eax
	OK_IF	ae
	CHECK	"clockevent + HALT: "
	movl	ticks, %eax
	subl	ticks_base, %eax
	PUTDEC	%eax
	PUTS	" timer interrupts, "
	PUTDEC	halts
	PUTS	" HALT calls"
	call	putnl

	movl	lguest_data + LD_TIME_SEC, %eax
	cmpl	boot_time_sec, %eax
	jne	1f
	movl	lguest_data + LD_TIME_NSEC, %eax
	cmpl	boot_time_nsec, %eax
1:	OK_IF	ne
	CHECKLN	"lguest_data.time moves on with each delivered interrupt"
	ret

/* ------------------------------------------------------------------ */
/* a device interrupt while blocked_interrupts masks it               */
/* ------------------------------------------------------------------ */
/* wait_device: spin until the device wrote its status word; eax = 1 if it did */
wait_device:
	pushl	%ecx
	movl	$SPIN_LIMIT, %ecx
1:	cmpl	$0, dev_status
	jne	2f
	decl	%ecx
	jnz	1b
2:	cmpl	$0, dev_status
	OK_IF	ne
	popl	%ecx
	ret

test_blocked_irq:
	orl	$2, lguest_data + LD_BLOCKED
	movl	dev_irqs, %eax
	movl	%eax, dev_base
	movl	$0, dev_status
	HCALL	$LHCALL_DEVICE_IRQ, $1, $2000, $(dev_status - PAGE_OFFSET)
	call	wait_device
	CHECKLN	"device thread raised IRQ 1 (status word written)"
	/* give the host every chance to deliver it anyway */
	HCALL	$LHCALL_SEND_INTERRUPTS
	HCALL	$LHCALL_SEND_INTERRUPTS
	HCALL	$LHCALL_SEND_INTERRUPTS
	movl	dev_irqs, %eax
	cmpl	dev_base, %eax
	OK_IF	e
	CHECKLN	"IRQ 1 held back while blocked_interrupts has bit 1"
	andl	$~2, lguest_data + LD_BLOCKED
	HCALL	$LHCALL_SEND_INTERRUPTS
	movl	dev_irqs, %eax
	subl	dev_base, %eax
	cmpl	$1, %eax
	OK_IF	e
	CHECKLN	"IRQ 1 delivered as soon as it is unblocked"
	ret

/* ------------------------------------------------------------------ */
/* a device interrupt while irq_enabled = 0                           */
/* ------------------------------------------------------------------ */
test_irq_disabled:
	movl	$0, lguest_data + LD_IRQ_ENABLED
	movl	$0, lguest_data + LD_IRQ_PENDING
	movl	dev_irqs, %eax
	movl	%eax, dev_base
	movl	$0, dev_status
	HCALL	$LHCALL_DEVICE_IRQ, $1, $2000, $(dev_status - PAGE_OFFSET)
	call	wait_device
	pushl	%ecx
	movl	$100, %ecx
1:	HCALL	$LHCALL_SEND_INTERRUPTS
	cmpl	$0, lguest_data + LD_IRQ_PENDING
	jne	2f
	decl	%ecx
	jnz	1b
2:	popl	%ecx
	xorl	%eax, %eax
	cmpl	$X86_EFLAGS_IF, lguest_data + LD_IRQ_PENDING
	jne	1f
	movl	dev_irqs, %edx
	cmpl	dev_base, %edx
1:	OK_IF	e
	CHECKLN	"IRQ 1 held back while irq_enabled=0; host set irq_pending"
	/* what an lguest guest's irq_enable does */
	movl	$X86_EFLAGS_IF, lguest_data + LD_IRQ_ENABLED
	cmpl	$0, lguest_data + LD_IRQ_PENDING
	je	1f
	HCALL	$LHCALL_SEND_INTERRUPTS
1:	movl	dev_irqs, %eax
	subl	dev_base, %eax
	cmpl	$1, %eax
	OK_IF	e
	CHECKLN	"IRQ 1 delivered after irq_enabled=0x200 + SEND_INTERRUPTS"
	ret

/* ------------------------------------------------------------------ */
/* the no-interrupt window of lguest_iret                             */
/* ------------------------------------------------------------------ */
test_noirq_window:
	movl	dev_irqs, %eax
	movl	%eax, dev_base
	movl	$1, noirq_probe
	/* a ring-1 -> ring-1 iret frame back to .Lafter */
	pushl	$0x202
	pushl	$GUEST_CS
	pushl	$.Lafter
	jmp	lguest_iret
.Lafter:
	/* count first: printing is a hypercall, an exit that may deliver */
	movl	dev_irqs, %eax
	movl	%eax, dev_seen
	cmpl	$0, noirq_probed
	OK_IF	ne
	CHECKLN	"IRQ 1 raised by a hypercall made inside lguest_iret's window"
	movl	dev_seen, %eax
	cmpl	dev_base, %eax
	OK_IF	e
	CHECKLN	"no interrupt delivered while eip was in [noirq_start, noirq_end)"
	HCALL	$LHCALL_SEND_INTERRUPTS
	movl	dev_irqs, %eax
	subl	dev_base, %eax
	cmpl	$1, %eax
	OK_IF	e
	CHECKLN	"the held IRQ 1 delivered at the first exit after the window"
	ret

/* ------------------------------------------------------------------ */
/* ring 3                                                             */
/* ------------------------------------------------------------------ */
/* Map the user program, its stack, the info page; the demand page
 * stays unmapped.  We edit the page tables the host runs us on. */
setup_user:
	movl	lguest_data + LD_PGDIR, %ebx
	addl	$PAGE_OFFSET, %ebx		/* its virtual address */
	movl	$(user_pt - PAGE_OFFSET + (PTE_P | PTE_RW | PTE_U)), PDE_USER_TEXT * 4(%ebx)
	movl	$(ustack_pt - PAGE_OFFSET + (PTE_P | PTE_RW | PTE_U)), PDE_USER_STACK * 4(%ebx)
	movl	$(user_image - PAGE_OFFSET + (PTE_P | PTE_U)), user_pt + ((USER_TEXT >> 12) & 0x3ff) * 4
	movl	$(user_image - PAGE_OFFSET + 0x1000 + (PTE_P | PTE_RW | PTE_U)), user_pt + ((USER_DATA >> 12) & 0x3ff) * 4
	movl	$(info_page - PAGE_OFFSET + (PTE_P | PTE_U)), user_pt + ((USER_INFO >> 12) & 0x3ff) * 4
	movl	$(ustack_page - PAGE_OFFSET + (PTE_P | PTE_RW | PTE_U)), ustack_pt + 1023 * 4
	movl	hdr_user_ticks, %eax
	movl	%eax, info_page + INFO_USER_TICKS
	ret

run_user_phase:
	/* the timer keeps running while the user program does */
	movl	ticks, %eax
	movl	%eax, ticks_base
	andl	$~1, lguest_data + LD_BLOCKED
	movl	$1, timer_running
	HCALL	$LHCALL_SET_CLOCKEVENT, hdr_delta
	PUTS	"entering ring 3"
	call	putnl
	call	run_user
	movl	$0, timer_running
	HCALL	$LHCALL_SET_CLOCKEVENT, $0
	orl	$1, lguest_data + LD_BLOCKED
	cmpl	$0, user_status
	OK_IF	e
	CHECK	"user program exited with status "
	PUTDEC	user_status
	call	putnl
	ret

/* run_user: iret to ring 3; SYS_EXIT comes back through user_returned. */
run_user:
	pushal
	movl	%esp, saved_kernel_esp
	pushl	$USER_DS
	pushl	$USER_STACK_TOP
	pushl	$0x202
	pushl	$USER_CS
	pushl	$USER_TEXT
	movl	$X86_EFLAGS_IF, lguest_data + LD_IRQ_ENABLED
	iret
user_returned:
	movl	saved_kernel_esp, %esp
	movl	$USER_DS, %eax
	movl	%eax, %ds
	movl	%eax, %es
	popal
	ret

final_checks:
	cmpl	$0, bad_irq_frames
	OK_IF	e
	CHECK	"interrupt frames well formed: "
	PUTDEC	irq_frames
	PUTS	" checked (IF pushed, irq_enabled 0 on entry, ring-3 frames at esp1)"
	call	putnl
	cmpl	$0, user_irqs
	OK_IF	ne
	CHECK	"timer interrupts taken in ring 3: "
	PUTDEC	user_irqs
	call	putnl
	cmpl	$0, syscalls
	OK_IF	ne
	CHECK	"system calls: "
	PUTDEC	syscalls
	call	putnl
	cmpl	$1, demand_maps
	OK_IF	e
	CHECKLN	"one page mapped on demand"
	ret

/* ------------------------------------------------------------------ */
/* trap entry                                                         */
/* ------------------------------------------------------------------ */
	ISR	0
	ISR	1
	ISR	3
	ISR	4
	ISR	5
	ISR	7
	ISR	8, 1
	ISR	10, 1
	ISR	11, 1
	ISR	12, 1
	ISR	13, 1
	ISR	14, 1
	ISR	16
	ISR	17, 1
	ISR	18
	ISR	19
	ISR	32
	ISR	33
	ISR	128

trap_common:
	pushl	%ebp
	pushl	%edi
	pushl	%esi
	pushl	%edx
	pushl	%ecx
	pushl	%ebx
	pushl	%eax
	pushl	%ss:lguest_data + LD_IRQ_ENABLED
	movl	%esp, %ebp
	movl	F_VEC(%ebp), %eax
	cmpl	$14, %eax
	je	1f
	cmpl	$13, %eax
	je	2f
	cmpl	$3, %eax
	je	3f
	cmpl	$32, %eax
	je	4f
	cmpl	$33, %eax
	je	5f
	cmpl	$128, %eax
	je	6f
	call	h_unexpected
	jmp	9f
1:	call	h_pf
	jmp	9f
2:	call	h_gp
	jmp	9f
3:	call	h_int3
	jmp	9f
4:	call	h_timer
	jmp	9f
5:	call	h_device
	jmp	9f
6:	call	h_syscall
9:	addl	$4, %esp
	popl	%eax
	popl	%ebx
	popl	%ecx
	popl	%edx
	popl	%esi
	popl	%edi
	popl	%ebp
	addl	$8, %esp
	jmp	lguest_iret

/* lguest_iret: the guest's return from any trap or interrupt.  The
 * virtual IF comes back from the popped eflags; between storing it and
 * the iret itself the host must not push another frame onto this one,
 * so that stretch is published as [noirq_start, noirq_end).
 *
 * noirq_probe makes one pass through it call the launcher from inside
 * the window, to prove the host honours it. */
.globl lguest_iret
lguest_iret:
	pushl	%eax
	movl	%ss:12(%esp), %eax
	andl	$X86_EFLAGS_IF, %eax
.globl lguest_noirq_start
lguest_noirq_start:
	cmpl	$0, %ss:noirq_probe
	jne	2f
1:	movl	%eax, %ss:lguest_data + LD_IRQ_ENABLED
	popl	%eax
	iret
2:	movl	$0, %ss:noirq_probe
	pushl	%eax
	pushl	%ebx
	pushl	%ecx
	pushl	%edx
	movl	$X86_EFLAGS_IF, %ss:lguest_data + LD_IRQ_ENABLED
	movl	$0, %ss:dev_status
	movl	$LHCALL_DEVICE_IRQ, %eax
	movl	$1, %ebx
	xorl	%ecx, %ecx			/* raise it now, synchronously */
	movl	$(dev_status - PAGE_OFFSET), %edx
	int	$LGUEST_TRAP
	movl	%ss:dev_status, %eax
	movl	%eax, %ss:noirq_probed
	popl	%edx
	popl	%ecx
	popl	%ebx
	popl	%eax
	jmp	1b
.globl lguest_noirq_end
lguest_noirq_end:

/* ------------------------------------------------------------------ */
/* handlers: ebp = frame; may change the frame; keep ebp              */
/* ------------------------------------------------------------------ */

/* expect_match: if the armed expectation is for this vector, compare
 * the frame with it, print the result and return eax = 1. */
expect_match:
	xorl	%eax, %eax
	cmpl	$0, expect_armed
	je	9f
	movl	F_VEC(%ebp), %ecx
	cmpl	expect_vec, %ecx
	jne	9f
	movl	$0, expect_armed
	movl	F_EFLAGS(%ebp), %eax
	movl	%eax, last_trap_eflags
	/* everything must match */
	xorl	%eax, %eax
	movl	F_ERR(%ebp), %edx
	cmpl	expect_err, %edx
	jne	1f
	movl	F_EIP(%ebp), %edx
	cmpl	expect_eip, %edx
	jne	1f
	movl	F_CS(%ebp), %edx
	cmpl	expect_cs, %edx
	jne	1f
	cmpl	$0, F_IRQEN(%ebp)		/* all our trap gates are interrupt gates */
	jne	1f
	cmpl	$14, %ecx
	jne	2f
	movl	lguest_data + LD_CR2, %edx
	cmpl	expect_cr2, %edx
	jne	1f
2:	cmpl	$USER_CS, F_CS(%ebp)
	jne	3f
	leal	F_EIP + 20(%ebp), %edx		/* ring 3: frame right under esp1 */
	cmpl	$trap_stack_top, %edx
	jne	1f
	cmpl	$USER_DS, F_USS(%ebp)
	jne	1f
3:	movl	$1, %eax
1:	call	check_prefix
	cmpl	$14, %ecx
	jne	1f
	PUTS	"#PF"
	jmp	2f
1:	cmpl	$13, %ecx
	jne	1f
	PUTS	"#GP"
	jmp	2f
1:	PUTS	"int3"
2:	PUTS	" from ring "
	movl	F_CS(%ebp), %eax
	andl	$3, %eax
	PUTDEC	%eax
	PUTS	" reflected: err="
	PUTHEX	F_ERR(%ebp)
	cmpl	$14, %ecx
	jne	1f
	PUTS	" cr2="
	PUTHEX	lguest_data + LD_CR2
1:	PUTS	" eip="
	PUTHEX	F_EIP(%ebp)
	PUTS	" (expected err="
	PUTHEX	expect_err
	cmpl	$14, %ecx
	jne	1f
	PUTS	" cr2="
	PUTHEX	expect_cr2
1:	PUTS	" eip="
	PUTHEX	expect_eip
	PUTS	")"
	call	putnl
	movl	expect_resume, %eax
	testl	%eax, %eax
	jz	1f
	movl	%eax, F_EIP(%ebp)
1:	movl	$1, %eax
9:	ret

h_pf:
	incl	page_faults
	call	expect_match
	movl	%eax, %edx
	movl	lguest_data + LD_CR2, %eax
	andl	$~0xfff, %eax
	cmpl	$USER_DEMAND, %eax
	jne	1f
	cmpl	$0, user_pt + ((USER_DEMAND >> 12) & 0x3ff) * 4
	jne	1f
	/* map it and let the instruction run again */
	movl	$(demand_page - PAGE_OFFSET + (PTE_P | PTE_RW | PTE_U)), user_pt + ((USER_DEMAND >> 12) & 0x3ff) * 4
	incl	demand_maps
	ret
1:	testl	%edx, %edx
	jz	h_unexpected
	ret

h_gp:
	incl	gp_faults
	call	expect_match
	testl	%eax, %eax
	jz	h_unexpected
	ret

h_int3:
	incl	breakpoints
	call	expect_match
	testl	%eax, %eax
	jz	h_unexpected
	ret

/* irq_frame_check: what every interrupt frame must look like. */
irq_frame_check:
	incl	irq_frames
	cmpl	$0, F_IRQEN(%ebp)		/* interrupt gate: host cleared it */
	jne	8f
	testl	$X86_EFLAGS_IF, F_EFLAGS(%ebp)	/* we took it, so IF was on */
	jz	8f
	cmpl	$GUEST_CS, F_CS(%ebp)
	je	9f
	cmpl	$USER_CS, F_CS(%ebp)
	jne	8f
	incl	user_irqs
	leal	F_EIP + 20(%ebp), %eax
	cmpl	$trap_stack_top, %eax
	jne	8f
	cmpl	$USER_DS, F_USS(%ebp)
	je	9f
8:	incl	bad_irq_frames
9:	ret

h_timer:
	incl	ticks
	movl	ticks, %eax
	movl	%eax, info_page + INFO_TICKS
	call	irq_frame_check
	cmpl	$0, timer_running
	je	1f
	HCALL	$LHCALL_SET_CLOCKEVENT, hdr_delta
1:	ret

h_device:
	incl	dev_irqs
	call	irq_frame_check
	ret

h_syscall:
	incl	syscalls
	cmpl	$0, syscall_frame_checked
	jne	1f
	movl	$1, syscall_frame_checked
	/* a trap gate the CPU took directly: virtual IF untouched, user
	 * frame at the top of the SET_STACK stack */
	xorl	%eax, %eax
	cmpl	$X86_EFLAGS_IF, F_IRQEN(%ebp)
	jne	2f
	cmpl	$USER_CS, F_CS(%ebp)
	jne	2f
	cmpl	$USER_DS, F_USS(%ebp)
	jne	2f
	leal	F_EIP + 20(%ebp), %edx
	cmpl	$trap_stack_top, %edx
	jne	2f
	incl	%eax
2:	CHECKLN	"first int $0x80: user frame on the SET_STACK stack, irq_enabled untouched"
1:	movl	F_EAX(%ebp), %eax
	cmpl	$SYS_WRITE, %eax
	je	sys_write
	cmpl	$SYS_GETPID, %eax
	je	sys_getpid
	cmpl	$SYS_CHECK, %eax
	je	sys_check
	cmpl	$SYS_EXIT, %eax
	je	sys_exit
	cmpl	$SYS_EXPECT, %eax
	je	sys_expect
	movl	$-38, F_EAX(%ebp)		/* ENOSYS */
	ret

sys_write:
	pushl	%esi
	pushl	%edi
	movl	F_EBX(%ebp), %esi
	movl	F_ECX(%ebp), %ecx
	cmpl	$256, %ecx
	jbe	1f
	movl	$256, %ecx
1:	movl	%ecx, F_EAX(%ebp)
	movl	$kbuf, %edi
	rep movsb
	HCALL	$LHCALL_CONSOLE_WRITE, $(kbuf - PAGE_OFFSET), F_EAX(%ebp)
	popl	%edi
	popl	%esi
	ret

sys_getpid:
	movl	$42, F_EAX(%ebp)
	ret

sys_check:
	movl	F_EBX(%ebp), %eax
	call	check_prefix
	PUTS	"[ring 3] "
	pushl	%esi
	movl	F_ECX(%ebp), %esi
	call	puts
	popl	%esi
	call	putnl
	ret

sys_exit:
	movl	F_EBX(%ebp), %eax
	movl	%eax, user_status
	jmp	user_returned

sys_expect:
	movl	F_EBX(%ebp), %eax
	movl	%eax, expect_vec
	movl	F_ECX(%ebp), %eax
	movl	%eax, expect_err
	movl	F_EDX(%ebp), %eax
	movl	%eax, expect_cr2
	movl	F_ESI(%ebp), %eax
	movl	%eax, expect_resume
	movl	F_EDI(%ebp), %eax
	movl	%eax, expect_eip
	movl	$USER_CS, expect_cs
	movl	$1, expect_armed
	ret

h_unexpected:
	xorl	%eax, %eax
	call	check_prefix
	PUTS	"unexpected trap "
	PUTDEC	F_VEC(%ebp)
	PUTS	" err="
	PUTHEX	F_ERR(%ebp)
	PUTS	" at "
	PUTHEX	F_CS(%ebp)
	PUTS	":"
	PUTHEX	F_EIP(%ebp)
	PUTS	" cr2="
	PUTHEX	lguest_data + LD_CR2
	call	putnl
	movl	F_CS(%ebp), %eax
	andl	$3, %eax
	cmpl	$3, %eax
	jne	1f
	movl	$-1, user_status		/* kill the user program */
	jmp	user_returned
1:	movl	$boot_stack_top, %esp		/* a kernel bug: give up */
	jmp	finish

/* ------------------------------------------------------------------ */
/* console                                                            */
/* ------------------------------------------------------------------ */

/* check_prefix: eax != 0 passes; counts and starts the line. */
check_prefix:
	incl	n_checks
	testl	%eax, %eax
	jz	1f
	PUTS	"  [ ok ] "
	ret
1:	incl	n_failed
	PUTS	"  [FAIL] "
	ret

/* putc: append al to the line. */
putc:
	pushl	%edx
	movl	linelen, %edx
	cmpl	$LINEMAX, %edx
	jae	1f
	movb	%al, linebuf(%edx)
	incl	linelen
1:	popl	%edx
	ret

/* puts: append the NUL-terminated string at esi. */
puts:
	pushl	%eax
	pushl	%esi
1:	lodsb
	testb	%al, %al
	jz	2f
	call	putc
	jmp	1b
2:	popl	%esi
	popl	%eax
	ret

/* puthex: append eax as 0x... */
puthex:
	pushal
	movl	%eax, %edx
	movb	$'0', %al
	call	putc
	movb	$'x', %al
	call	putc
	movl	$8, %ecx
	xorl	%ebx, %ebx			/* seen a non-zero digit */
1:	roll	$4, %edx
	movl	%edx, %eax
	andl	$0xf, %eax
	jnz	2f
	testl	%ebx, %ebx
	jnz	2f
	cmpl	$1, %ecx			/* always print the last digit */
	jne	3f
2:	movl	$1, %ebx
	movb	hexdigits(%eax), %al
	call	putc
3:	decl	%ecx
	jnz	1b
	popal
	ret

/* putdec: append eax in decimal (signed). */
putdec:
	pushal
	testl	%eax, %eax
	jns	1f
	negl	%eax
	pushl	%eax
	movb	$'-', %al
	call	putc
	popl	%eax
1:	xorl	%ecx, %ecx
	movl	$10, %ebx
2:	xorl	%edx, %edx
	divl	%ebx
	pushl	%edx
	incl	%ecx
	testl	%eax, %eax
	jnz	2b
3:	popl	%eax
	addb	$'0', %al
	call	putc
	decl	%ecx
	jnz	3b
	popal
	ret

/* putnl: end the line and hand it to the launcher's console. */
putnl:
	pushl	%eax
	movb	$'\n', %al
	call	putc
	HCALL	$LHCALL_CONSOLE_WRITE, $(linebuf - PAGE_OFFSET), linelen
	movl	$0, linelen
	popl	%eax
	ret

/* ------------------------------------------------------------------ */
/* data                                                               */
/* ------------------------------------------------------------------ */
.section .rodata
hexdigits:	.ascii "0123456789abcdef"
poweroff_msg:	.asciz "Power down"

/* vector, handler, gate bits; the host refuses to change 2, 8 and 15
 * and we leave 6 out on purpose (a #UD here kills us, as it should). */
	.balign	4
idt_list:
	.long	0,   isr_0,   GATE_INT_DPL0
	.long	1,   isr_1,   GATE_INT_DPL0
	.long	3,   isr_3,   GATE_INT_DPL3
	.long	4,   isr_4,   GATE_INT_DPL3
	.long	5,   isr_5,   GATE_INT_DPL0
	.long	7,   isr_7,   GATE_INT_DPL0
	.long	8,   isr_8,   GATE_INT_DPL0
	.long	10,  isr_10,  GATE_INT_DPL0
	.long	11,  isr_11,  GATE_INT_DPL0
	.long	12,  isr_12,  GATE_INT_DPL0
	.long	13,  isr_13,  GATE_INT_DPL0
	.long	14,  isr_14,  GATE_INT_DPL0
	.long	16,  isr_16,  GATE_INT_DPL0
	.long	17,  isr_17,  GATE_INT_DPL0
	.long	18,  isr_18,  GATE_INT_DPL0
	.long	19,  isr_19,  GATE_INT_DPL0
	.long	32,  isr_32,  GATE_INT_DPL0
	.long	33,  isr_33,  GATE_INT_DPL0
	.long	128, isr_128, GATE_TRAP_DPL3
	.long	-1

.data
	.balign	4
/* struct lguest_data, initialised the way an lguest guest does */
.globl lguest_data
lguest_data:
	.long	0				/* irq_enabled: off until we are ready */
	.long	1				/* blocked_interrupts: timer blocked */
	.long	0				/* cr2 */
	.long	0, 0				/* time */
	.long	0				/* irq_pending */
	.fill	64, 1, 0xff			/* hcall_status: all free */
	.fill	64 * 5, 4, 0			/* hcalls */
	.long	0				/* reserve_mem */
	.long	0				/* tsc_khz */
	.long	0				/* pgdir */
	.long	lguest_noirq_start
	.long	lguest_noirq_end
	.long	PAGE_OFFSET			/* kernel_address */
	.long	0x80				/* syscall_vec */
lguest_data_end:
.if lguest_data_end - lguest_data - LD_SIZE
.error "struct lguest_data must be 1396 bytes"
.endif

n_checks:	.long 0
n_failed:	.long 0
idt_loaded:	.long 0
ticks:		.long 0
ticks_base:	.long 0
halts:		.long 0
timer_running:	.long 0
boot_time_sec:	.long 0
boot_time_nsec:	.long 0
dev_irqs:	.long 0
dev_base:	.long 0
dev_status:	.long 0
dev_seen:	.long 0
noirq_probe:	.long 0
noirq_probed:	.long 0
irq_frames:	.long 0
bad_irq_frames:	.long 0
user_irqs:	.long 0
syscalls:	.long 0
syscall_frame_checked: .long 0
page_faults:	.long 0
gp_faults:	.long 0
breakpoints:	.long 0
demand_maps:	.long 0
user_status:	.long -1
saved_kernel_esp: .long 0
last_trap_eflags: .long 0
expect_armed:	.long 0
expect_vec:	.long 0
expect_err:	.long 0
expect_cr2:	.long 0
expect_eip:	.long 0
expect_cs:	.long 0
expect_resume:	.long 0
linelen:	.long 0
linebuf:	.fill LINEMAX + 16, 1, 0
kbuf:		.fill 260, 1, 0

/* the user program, text page then data page */
	.balign	4096
user_image:
	.incbin	"user.bin"
	.balign	4096

.bss
	.balign	4096
user_pt:	.skip 4096		/* page table for 0x08000000.. */
ustack_pt:	.skip 4096		/* page table for 0xbfc00000.. */
ustack_page:	.skip 4096
demand_page:	.skip 4096
info_page:	.skip 4096		/* user-readable counters */
trap_stack:	.skip 8192		/* SET_STACK: 2 pages */
trap_stack_top:
boot_stack:	.skip 8192
boot_stack_top:
