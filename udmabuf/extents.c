// SPDX-License-Identifier: GPL-2.0-only
/*
 * The buffer as a list of folio extents: appending while pinning, and turning the list into
 * what each user of the buffer needs (a page, an sg table, a page array for vmap).
 */
#include <linux/dma-mapping.h>
#include <linux/hash.h>
#include <linux/log2.h>
#include <linux/mm.h>
#include <linux/slab.h>

#include "guest_udmabuf.h"

/* Longest sg segment we build: sg->length is 32 bits. */
#define GUD_MAX_SEGMENT ((unsigned int)(UINT_MAX & PAGE_MASK))

/* Most extents one buffer holds: the array stays under kvmalloc's INT_MAX bytes. */
#define GUD_MAX_EXTENTS ((u64)INT_MAX / sizeof(struct gud_extent))

/*
 * Makes room for @more extents: at least doubling, so a long list grows in few steps. A buffer
 * that could need more than GUD_MAX_EXTENTS (about 340 GiB of 4 KiB pages, reachable only with
 * a raised size_limit_mb) is refused with E2BIG before anything is pinned.
 */
int gud_reserve_extents(struct gud_buffer *buf, pgoff_t more)
{
	u64 need = (u64)buf->nr_extents + more;
	unsigned int max;
	struct gud_extent *extents;

	if (need <= buf->max_extents)
		return 0;
	if (need > GUD_MAX_EXTENTS)
		return -E2BIG;
	max = max_t(u64, need, min_t(u64, (u64)buf->max_extents * 2, GUD_MAX_EXTENTS));

	extents = kvmalloc_array(max, sizeof(*extents), GFP_KERNEL_ACCOUNT);
	if (!extents)
		return -ENOMEM;
	if (buf->nr_extents)
		memcpy(extents, buf->extents, buf->nr_extents * sizeof(*extents));
	kvfree(buf->extents);
	buf->extents = extents;
	buf->max_extents = max;
	return 0;
}

/*
 * Appends @npages pages of @folio from page @first, taking over the caller's pin on it. A run
 * that continues the last extent in the same folio is merged, and its extra pin dropped.
 */
int gud_add_extent(struct gud_buffer *buf, struct folio *folio, unsigned int first,
		   unsigned int npages)
{
	struct gud_extent *last = buf->nr_extents ? &buf->extents[buf->nr_extents - 1] : NULL;
	int ret;

	if (last && last->folio == folio && last->first + last->npages == first) {
		last->npages += npages;
		buf->pagecount += npages;
		gud_unpin_folio(folio);
		return 0;
	}
	ret = gud_reserve_extents(buf, 1);
	if (ret)
		return ret;
	buf->extents[buf->nr_extents++] = (struct gud_extent){
		.folio = folio, .start = buf->pagecount, .first = first, .npages = npages,
	};
	buf->pagecount += npages;
	return 0;
}

/* The extent holding buffer page @pgoff (< pagecount): a binary search. */
const struct gud_extent *gud_extent_of(const struct gud_buffer *buf, pgoff_t pgoff)
{
	unsigned int lo = 0, hi = buf->nr_extents;

	while (hi - lo > 1) {
		unsigned int mid = lo + (hi - lo) / 2;

		if (buf->extents[mid].start <= pgoff)
			lo = mid;
		else
			hi = mid;
	}
	return &buf->extents[lo];
}

static unsigned long gud_extent_pfn(const struct gud_extent *e)
{
	return folio_pfn(e->folio) + e->first;
}

/* What one device accepts as an sg segment. */
struct gud_seg_limits {
	unsigned long max;		/* bytes, a multiple of PAGE_SIZE */
	unsigned long boundary;		/* a segment never crosses (boundary + 1) alignment */
};

static struct gud_seg_limits gud_seg_limits(struct device *dev)
{
	/* dma_max_mapping_size() is what swiotlb can bounce in one piece (256 KiB). */
	size_t max = min_t(size_t, dma_get_max_seg_size(dev), dma_max_mapping_size(dev));

	max = min_t(size_t, max, GUD_MAX_SEGMENT) & PAGE_MASK;
	return (struct gud_seg_limits){
		.max = max ?: PAGE_SIZE,
		.boundary = dma_get_seg_boundary(dev),
	};
}

/* Bytes from physical address @phys to the next segment boundary, at most @len. */
static unsigned long gud_to_boundary(phys_addr_t phys, unsigned long len, unsigned long boundary)
{
	unsigned long room;

	if (boundary == ULONG_MAX)
		return len;
	room = boundary - (phys & boundary) + 1;
	return min(len, max_t(unsigned long, room, PAGE_SIZE));
}

/*
 * Counts the segments of the buffer's physically contiguous runs, split to @lim, and when @sg
 * is not NULL writes them starting there.
 */
static unsigned int gud_sg_runs(const struct gud_buffer *buf, struct scatterlist *sg,
				const struct gud_seg_limits *lim)
{
	unsigned long run_pfn = 0, run_len = 0;
	unsigned int segs = 0, i;

	for (i = 0; i <= buf->nr_extents; i++) {
		const struct gud_extent *e = i < buf->nr_extents ? &buf->extents[i] : NULL;
		unsigned long len = e ? (unsigned long)e->npages << PAGE_SHIFT : 0;

		if (e && run_len && gud_extent_pfn(e) == run_pfn + (run_len >> PAGE_SHIFT)) {
			run_len += len;
			continue;
		}
		while (run_len) {
			unsigned long seg = gud_to_boundary(PFN_PHYS(run_pfn), min(run_len, lim->max),
							    lim->boundary);

			if (sg) {
				sg_set_page(sg, pfn_to_page(run_pfn), seg, 0);
				sg = sg_next(sg);
			}
			segs++;
			run_pfn += seg >> PAGE_SHIFT;
			run_len -= seg;
		}
		if (e) {
			run_pfn = gud_extent_pfn(e);
			run_len = len;
		}
	}
	return segs;
}

/*
 * An sg table over the whole buffer for @dev: physically contiguous runs merged, split to the
 * device's max segment size, mapping size and segment boundary.
 */
int gud_fill_sgt(const struct gud_buffer *buf, struct sg_table *sgt, struct device *dev)
{
	struct gud_seg_limits lim = gud_seg_limits(dev);
	int ret = sg_alloc_table(sgt, gud_sg_runs(buf, NULL, &lim), GFP_KERNEL);

	if (ret)
		return ret;
	gud_sg_runs(buf, sgt->sgl, &lim);
	return 0;
}

/*
 * Pages the buffer keeps pinned: every page of every folio it holds, each folio counted
 * once. Within one range every folio is a single extent; only a buffer of several ranges
 * (@may_repeat) can hold a folio twice, and there a hash set of folios finds repeats.
 */
long gud_pinned_pages(const struct gud_buffer *buf, bool may_repeat)
{
	struct folio **set;
	unsigned int bits, i;
	long pages = 0;

	if (!may_repeat) {
		for (i = 0; i < buf->nr_extents; i++)
			pages += folio_nr_pages(buf->extents[i].folio);
		return pages;
	}
	/* At most half full; at most 1 GiB even for GUD_MAX_EXTENTS. */
	bits = min(ilog2(roundup_pow_of_two(buf->nr_extents)) + 1, 27);
	set = kvcalloc(1UL << bits, sizeof(*set), GFP_KERNEL_ACCOUNT);
	if (!set)
		return -ENOMEM;
	for (i = 0; i < buf->nr_extents; i++) {
		struct folio *folio = buf->extents[i].folio;
		unsigned long slot = hash_ptr(folio, bits);

		while (set[slot] && set[slot] != folio)
			slot = (slot + 1) & ((1UL << bits) - 1);
		if (set[slot])
			continue;
		set[slot] = folio;
		pages += folio_nr_pages(folio);
	}
	kvfree(set);
	return pages;
}

/* Every page in buffer order, for vm_map_ram; the caller kvfree()s the array. */
struct page **gud_page_array(const struct gud_buffer *buf)
{
	struct page **pages = kvmalloc_array(buf->pagecount, sizeof(*pages), GFP_KERNEL);
	pgoff_t n = 0;
	unsigned int i, j;

	if (!pages)
		return NULL;
	for (i = 0; i < buf->nr_extents; i++)
		for (j = 0; j < buf->extents[i].npages; j++)
			pages[n++] = folio_page(buf->extents[i].folio, buf->extents[i].first + j);
	return pages;
}
