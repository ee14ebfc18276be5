// SPDX-License-Identifier: GPL-2.0-only
/*
 * Pinned-memory accounting. Upstream udmabuf pins guest pages for as long as any importer holds
 * the buffer and charges them to nothing. We charge the creating user's locked_vm against
 * RLIMIT_MEMLOCK, as io_uring charges its registered buffers (RDMA's ib_umem charges the mm's
 * pinned_vm instead). The user, not the mm, is charged: a buffer routinely outlives its creator
 * (the VMM passes it to a compositor), and a user_struct reference keeps the counter valid
 * until the last holder lets go. What is charged is what stays pinned: whole folios, each once
 * per buffer (create.c), as io_uring charges a compound page whole.
 */
#include <linux/capability.h>
#include <linux/cred.h>
#include <linux/sched/signal.h>
#include <linux/sched/user.h>

#include "guest_udmabuf.h"

/* Charges what @buf pins (gud_pinned_pages), counted only when a charge applies at all. */
int gud_charge(struct gud_buffer *buf, bool may_repeat)
{
	struct user_struct *user = current_user();
	unsigned long limit, cur, next;
	long pages;

	if (!gud_account_pinned || capable(CAP_IPC_LOCK))
		return 0;
	pages = gud_pinned_pages(buf, may_repeat);
	if (pages < 0)
		return pages;

	limit = rlimit(RLIMIT_MEMLOCK) >> PAGE_SHIFT;
	cur = atomic_long_read(&user->locked_vm);
	do {
		if (check_add_overflow(cur, pages, &next) || next > limit)
			return -ENOMEM;
	} while (!atomic_long_try_cmpxchg(&user->locked_vm, &cur, next));

	buf->charged_user = get_uid(user);
	buf->charged_pages = pages;
	return 0;
}

/* Exactly once per charge: the release op and create's error path are the only callers. */
void gud_uncharge(struct gud_buffer *buf)
{
	if (!buf->charged_user)
		return;
	atomic_long_sub(buf->charged_pages, &buf->charged_user->locked_vm);
	free_uid(buf->charged_user);
	buf->charged_user = NULL;
	buf->charged_pages = 0;
}
