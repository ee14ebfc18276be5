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
#include <linux/version.h>
#include <uapi/guest_udmabuf.h>

/*
 * The kernels this module is built and tested for. Pinning differs by kernel (pin.c): 6.11+
 * has memfd_pin_folios(); before it we take page-cache references and look hugetlb pages up
 * by huge-page index, which is right only before 6.7 (from 6.7 the hugetlb page cache is
 * indexed by base page). Anything we do not test fails here instead of pinning wrong pages.
 */
#if !((LINUX_VERSION_CODE >= KERNEL_VERSION(6, 1, 0) && LINUX_VERSION_CODE < KERNEL_VERSION(6, 2, 0)) || \
      (LINUX_VERSION_CODE >= KERNEL_VERSION(6, 12, 0) && LINUX_VERSION_CODE < KERNEL_VERSION(6, 13, 0)))
#error "guest_udmabuf supports Linux 6.1 and 6.12 only (the kernels its VM suites run on). 6.7-6.10 index the hugetlb page cache by base page, which the pre-6.11 pinning path gets wrong; other versions are untested."
#endif

/*
 * A run of pages inside one folio, holding one pin (or page-cache reference) on it. A buffer
 * is a list of extents, not of pages: a 64 MiB buffer over 2 MiB huge pages is 32 extents,
 * and importers get one sg segment per contiguous run (within their limits). Over 4 KiB shmem
 * pages every page is its own folio, so creating still costs one extent per page.
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

	/* Create only (6.1): hugetlb ranges this create allocated, freed again if it fails. */
	struct list_head populated;

	/* The device CPU access maps the pages for (main.c). */
	struct device *dma_dev;
	/*
	 * CPU access: one mapping for dma_dev, made at the first begin. The depth is the
	 * buffer's, not a holder's: begin/end_cpu_access get only the dma_buf, and every holder
	 * (dup, SCM_RIGHTS, fork, importers) shares its one struct file, so there is no
	 * per-holder identity to count by. It only turns an END without any BEGIN into EINVAL.
	 */
	struct mutex cpu_lock;
	struct sg_table *cpu_sgt;
	unsigned int cpu_access_depth;
};

/* Module parameters (main.c). */
extern unsigned int gud_list_limit;
extern unsigned int gud_size_limit_mb;
extern bool gud_account_pinned;

/* create.c: @eventfd is the release eventfd, or -1 for none. */
long gud_create(struct device *dma_dev, u32 flags, u32 count,
		const struct udmabuf_create_item *items, int eventfd);

/* pin.c */
int gud_pin_init(void);
/* Validates one memfd range and appends its pages to @buf. */
int gud_pin_range(struct gud_buffer *buf, struct file *memfd, u64 offset, u64 size);
/* Drops every pin; @dirty marks each folio dirty first (at release: writes went around it). */
void gud_unpin_all(struct gud_buffer *buf, bool dirty);
/* Drops one pin taken on @folio (the pinning API differs by kernel). */
void gud_unpin_folio(struct folio *folio);
/* After create: forget (success) or free again (failure) what the create allocated. */
void gud_populated_forget(struct gud_buffer *buf);
void gud_populated_undo(struct gud_buffer *buf);

/* extents.c */
int gud_reserve_extents(struct gud_buffer *buf, pgoff_t more);
int gud_add_extent(struct gud_buffer *buf, struct folio *folio, unsigned int first,
		   unsigned int npages);
const struct gud_extent *gud_extent_of(const struct gud_buffer *buf, pgoff_t pgoff);
int gud_fill_sgt(const struct gud_buffer *buf, struct sg_table *sgt, struct device *dev);
struct page **gud_page_array(const struct gud_buffer *buf);
long gud_pinned_pages(const struct gud_buffer *buf, bool may_repeat);

/* create.c: drops every pin and frees the buffer (the release op). */
void gud_destroy(struct gud_buffer *buf);

/* account.c: charge what @buf pins to the caller's user, or nothing under CAP_IPC_LOCK. */
int gud_charge(struct gud_buffer *buf, bool may_repeat);
void gud_uncharge(struct gud_buffer *buf);

/* debugfs.c */
void gud_debugfs_init(void);
void gud_debugfs_exit(void);
void gud_track(struct gud_buffer *buf, struct dma_buf *dmabuf);
void gud_untrack(struct gud_buffer *buf);

/* ops.c */
extern const struct dma_buf_ops gud_dmabuf_ops;

#endif
