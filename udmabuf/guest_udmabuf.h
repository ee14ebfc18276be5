/* SPDX-License-Identifier: GPL-2.0-only */
/* Internal interfaces between the files of the guest-udmabuf module. */
#ifndef GUEST_UDMABUF_INTERNAL_H
#define GUEST_UDMABUF_INTERNAL_H

#include <linux/dma-buf.h>
#include <linux/fs.h>
#include <linux/miscdevice.h>
#include <linux/mutex.h>
#include <linux/types.h>
#include <uapi/guest_udmabuf.h>

/* One created buffer: the dma-buf's private data. */
struct gud_buffer {
	pgoff_t pagecount;
	/* The PAGE_SIZE page backing each page of the buffer, in buffer order. */
	struct page **pages;
	/* Every reference or pin taken at create time, dropped once at release. */
	struct folio **pinned;
	pgoff_t nr_pinned;

	struct miscdevice *misc;
	/* CPU access: one mapping for the misc device, made at the first begin. */
	struct mutex cpu_lock;
	struct sg_table *cpu_sgt;
	unsigned int cpu_access_depth;
};

/* Module parameters (main.c). */
extern unsigned int gud_list_limit;
extern unsigned int gud_size_limit_mb;

/* create.c */
long gud_create(struct miscdevice *misc, u32 flags, u32 count,
		const struct udmabuf_create_item *items);

/* pin.c: validates one memfd range and appends its pages to @buf. */
int gud_pin_range(struct gud_buffer *buf, struct file *memfd, u64 offset, u64 size);
void gud_unpin_all(struct gud_buffer *buf);

/* create.c: drops every pin and frees the buffer (the release op). */
void gud_destroy(struct gud_buffer *buf);

/* ops.c */
extern const struct dma_buf_ops gud_dmabuf_ops;

#endif
