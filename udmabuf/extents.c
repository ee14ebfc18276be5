// SPDX-License-Identifier: GPL-2.0-only
/*
 * The buffer as a list of folio extents: appending while pinning, and turning the list into
 * what each user of the buffer needs (a page, an sg table, a page array for vmap).
 */
#include <linux/mm.h>
#include <linux/slab.h>

#include "guest_udmabuf.h"

/* Longest sg segment we build: sg->length is 32 bits. */
#define GUD_MAX_SEGMENT ((unsigned int)(UINT_MAX & PAGE_MASK))

/* Makes room for @more extents: at least doubling, so a long list grows in few steps. */
int gud_reserve_extents(struct gud_buffer *buf, pgoff_t more)
{
	u64 need = (u64)buf->nr_extents + more;
	unsigned int max;
	struct gud_extent *extents;

	if (need <= buf->max_extents)
		return 0;
	if (need > UINT_MAX)
		return -ENOMEM;
	max = max_t(u64, need, min_t(u64, (u64)buf->max_extents * 2, UINT_MAX));

	extents = kvmalloc_array(max, sizeof(*extents), GFP_KERNEL);
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

/* The page backing buffer page @pgoff (< pagecount). */
struct page *gud_page(const struct gud_buffer *buf, pgoff_t pgoff)
{
	const struct gud_extent *e = gud_extent_of(buf, pgoff);

	return folio_page(e->folio, e->first + (pgoff - e->start));
}

static unsigned long gud_extent_pfn(const struct gud_extent *e)
{
	return folio_pfn(e->folio) + e->first;
}

/*
 * Counts the buffer's physically contiguous runs and, when @sg is not NULL, writes one entry
 * per run starting there.
 */
static unsigned int gud_sg_runs(const struct gud_buffer *buf, struct scatterlist *sg)
{
	unsigned long run_pfn = 0, run_len = 0;
	unsigned int runs = 0, i;

	for (i = 0; i <= buf->nr_extents; i++) {
		const struct gud_extent *e = i < buf->nr_extents ? &buf->extents[i] : NULL;
		unsigned long len = e ? (unsigned long)e->npages << PAGE_SHIFT : 0;

		if (e && run_len && gud_extent_pfn(e) == run_pfn + (run_len >> PAGE_SHIFT) &&
		    run_len + len <= GUD_MAX_SEGMENT) {
			run_len += len;
			continue;
		}
		if (run_len) {
			if (sg) {
				sg_set_page(sg, pfn_to_page(run_pfn), run_len, 0);
				sg = sg_next(sg);
			}
			runs++;
		}
		if (e) {
			run_pfn = gud_extent_pfn(e);
			run_len = len;
		}
	}
	return runs;
}

/* An sg table over the whole buffer, physically contiguous runs merged. */
int gud_fill_sgt(const struct gud_buffer *buf, struct sg_table *sgt)
{
	int ret = sg_alloc_table(sgt, gud_sg_runs(buf, NULL), GFP_KERNEL);

	if (ret)
		return ret;
	gud_sg_runs(buf, sgt->sgl);
	return 0;
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
