/* SPDX-License-Identifier: GPL-2.0-only */
/* Internal interfaces between the files of the guest-udmabuf module. */
#ifndef GUEST_UDMABUF_INTERNAL_H
#define GUEST_UDMABUF_INTERNAL_H

#include <linux/dma-buf.h>
#include <linux/eventfd.h>
#include <linux/fs.h>
#include <linux/list.h>
#include <linux/miscdevice.h>
#include <linux/mutex.h>
#include <linux/scatterlist.h>
#include <linux/types.h>
#include <uapi/guest_udmabuf.h>

/*
 * A run of pages inside one folio, holding one pin (or page-cache reference) on it. A buffer
 * is a list of extents, not of pages: a 64 MiB buffer over 2 MiB huge pages is 32 extents, so
 * creating it does per-folio work only, and importers get one sg segment per contiguous run.
 */
struct gud_extent {
	struct folio *folio;
	pgoff_t start;		/* the buffer page this extent begins at */
	unsigned int first;	/* its first page within the folio */
	unsigned int npages;
};

/* One created buffer: the dma-buf's private data. */
struct gud_buffer {
	pgoff_t pagecount;
	/* In buffer order; each extent's pin is dropped once, at release. */
	struct gud_extent *extents;
	unsigned int nr_extents;
	unsigned int max_extents;

	/* Pinned-memory accounting (account.c): NULL when nothing was charged. */
	struct user_struct *charged_user;
	unsigned long charged_pages;
	/* Signalled once at release (UDMABUF_CREATE_NOTIFY), or NULL. */
	struct eventfd_ctx *release_event;

	/* On the live-buffer list that debugfs shows (debugfs.c). */
	struct list_head node;
	unsigned long ino;
	pid_t creator;

	struct miscdevice *misc;
	/* CPU access: one mapping for the misc device, made at the first begin. */
	struct mutex cpu_lock;
	struct sg_table *cpu_sgt;
	unsigned int cpu_access_depth;
};

/* Module parameters (main.c). */
extern unsigned int gud_list_limit;
extern unsigned int gud_size_limit_mb;
extern bool gud_account_pinned;

/* create.c: @eventfd is the release eventfd, or -1 for none. */
long gud_create(struct miscdevice *misc, u32 flags, u32 count,
		const struct udmabuf_create_item *items, int eventfd);

/* pin.c: validates one memfd range and appends its pages to @buf. */
int gud_pin_range(struct gud_buffer *buf, struct file *memfd, u64 offset, u64 size);
void gud_unpin_all(struct gud_buffer *buf);
/* pin.c: drops one pin taken on @folio (the pinning API differs by kernel). */
void gud_unpin_folio(struct folio *folio);

/* extents.c */
int gud_reserve_extents(struct gud_buffer *buf, pgoff_t more);
int gud_add_extent(struct gud_buffer *buf, struct folio *folio, unsigned int first,
		   unsigned int npages);
const struct gud_extent *gud_extent_of(const struct gud_buffer *buf, pgoff_t pgoff);
struct page *gud_page(const struct gud_buffer *buf, pgoff_t pgoff);
int gud_fill_sgt(const struct gud_buffer *buf, struct sg_table *sgt);
struct page **gud_page_array(const struct gud_buffer *buf);

/* create.c: drops every pin and frees the buffer (the release op). */
void gud_destroy(struct gud_buffer *buf);

/* account.c: charge @pages to the caller's user, or nothing under CAP_IPC_LOCK. */
int gud_charge(struct gud_buffer *buf, unsigned long pages);
void gud_uncharge(struct gud_buffer *buf);

/* debugfs.c */
void gud_debugfs_init(void);
void gud_debugfs_exit(void);
void gud_track(struct gud_buffer *buf, struct dma_buf *dmabuf);
void gud_untrack(struct gud_buffer *buf);

/* ops.c */
extern const struct dma_buf_ops gud_dmabuf_ops;

#endif
