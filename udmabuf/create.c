// SPDX-License-Identifier: GPL-2.0-only
/*
 * Buffer creation: validate the list the way upstream does (same checks, same errno), pin
 * every range, export, install the fd. Every error path unwinds what was done before it.
 */
#include <linux/eventfd.h>
#include <linux/mm.h>
#include <linux/overflow.h>
#include <linux/sched.h>
#include <linux/slab.h>
#include <linux/version.h>

#include "guest_udmabuf.h"

/* Validates alignment and the size limit; returns the total page count or a negative errno. */
static long gud_count_pages(u32 count, const struct udmabuf_create_item *items)
{
	/* u64 arithmetic: size_limit_mb * 1 MiB must not wrap (CVE-2025-37803). */
	u64 pglimit = ((u64)gud_size_limit_mb << 20) >> PAGE_SHIFT;
	u64 pgcnt = 0;
	u32 i;

	for (i = 0; i < count; i++) {
		if (!PAGE_ALIGNED(items[i].offset) || !PAGE_ALIGNED(items[i].size))
			return -EINVAL;
		pgcnt += items[i].size >> PAGE_SHIFT;
		if (pgcnt > pglimit)
			return -EINVAL;
	}
	/* A zero-size buffer would export an empty sg table (syzbot). */
	if (pgcnt == 0 || pgcnt > UINT_MAX)
		return -EINVAL;
	return pgcnt;
}

static void gud_free(struct gud_buffer *buf)
{
	if (buf->release_event)
		eventfd_ctx_put(buf->release_event);
	kvfree(buf->extents);
	kfree(buf);
}

long gud_create(struct device *dma_dev, u32 flags, u32 count,
		const struct udmabuf_create_item *items, int eventfd)
{
	DEFINE_DMA_BUF_EXPORT_INFO(exp_info);
	struct gud_buffer *buf;
	struct dma_buf *dmabuf;
	long pgcnt;
	long ret;
	u32 i;

	if (flags & ~UDMABUF_FLAGS_CLOEXEC)
		return -EINVAL;
	pgcnt = gud_count_pages(count, items);
	if (pgcnt < 0)
		return pgcnt;

	/* What a create allocates is charged to the caller's memory cgroup. */
	buf = kzalloc(sizeof(*buf), GFP_KERNEL_ACCOUNT);
	if (!buf)
		return -ENOMEM;
	mutex_init(&buf->cpu_lock);
	INIT_LIST_HEAD(&buf->node);
	INIT_LIST_HEAD(&buf->populated);
	buf->dma_dev = dma_dev;
	buf->creator = task_tgid_vnr(current);
	if (eventfd >= 0) {
		struct eventfd_ctx *ctx = eventfd_ctx_fdget(eventfd);

		if (IS_ERR(ctx)) {
			ret = PTR_ERR(ctx);
			goto err_free;
		}
		buf->release_event = ctx;
	}
	for (i = 0; i < count; i++) {
		struct file *memfd = fget(items[i].memfd);

		if (!memfd) {
			ret = -EBADFD;
			goto err_unpin;
		}
		ret = gud_pin_range(buf, memfd, items[i].offset, items[i].size);
		fput(memfd);
		if (ret)
			goto err_unpin;
	}

	/*
	 * Charge what is pinned: whole folios, each once per buffer (a 4 KiB range of a 2 MiB
	 * huge page keeps all of it pinned). Only pinning tells which folios those are, so over
	 * the limit the pins are dropped again before create fails.
	 */
	ret = gud_charge(buf, count > 1);
	if (ret)
		goto err_unpin;

	exp_info.ops = &gud_dmabuf_ops;
	exp_info.size = buf->pagecount << PAGE_SHIFT;
	exp_info.flags = O_RDWR;
	exp_info.priv = buf;
	dmabuf = dma_buf_export(&exp_info);
	if (IS_ERR(dmabuf)) {
		ret = PTR_ERR(dmabuf);
		goto err_uncharge;
	}
	gud_populated_forget(buf);

	/* From here the dma-buf owns buf: dropping it runs release, which unpins and frees. */
	gud_track(buf, dmabuf);
	ret = dma_buf_fd(dmabuf, (flags & UDMABUF_FLAGS_CLOEXEC) ? O_CLOEXEC : 0);
	if (ret < 0)
		dma_buf_put(dmabuf);
	return ret;

err_uncharge:
	gud_uncharge(buf);
err_unpin:
	gud_unpin_all(buf, false);
	gud_populated_undo(buf);
err_free:
	gud_free(buf);
	return ret;
}

static void gud_signal_release(struct eventfd_ctx *ctx)
{
#if LINUX_VERSION_CODE >= KERNEL_VERSION(6, 8, 0)
	eventfd_signal(ctx);
#else
	eventfd_signal(ctx, 1);
#endif
}

/*
 * Called from the dma-buf release op, once the last reference is gone. The release eventfd is
 * signalled last, so whoever waits on it finds the pages unpinned and the charge dropped.
 */
void gud_destroy(struct gud_buffer *buf)
{
	gud_untrack(buf);
	gud_unpin_all(buf, true);
	gud_uncharge(buf);
	if (buf->release_event)
		gud_signal_release(buf->release_event);
	gud_free(buf);
}
