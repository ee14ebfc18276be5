// SPDX-License-Identifier: GPL-2.0-only
/*
 * dma-buf operations: importer map/unmap, user mmap, kernel vmap, CPU access, release.
 */
#include <linux/dma-mapping.h>
#include <linux/iosys-map.h>
#include <linux/mm.h>
#include <linux/scatterlist.h>
#include <linux/slab.h>
#include <linux/vmalloc.h>

#include "guest_udmabuf.h"

/*
 * Mappings of one page can overlap: a list may name a page twice (upstream's ABI allows it),
 * two buffers may cover the same guest memory, and a buffer in CPU access stays mapped for our
 * misc device while importers map it too. User space chose those ranges; the DMA API works with
 * them. DMA-API debugging, though, tracks every active mapping's first cacheline across all
 * devices and reports a second one as an error ("overlapping mappings aren't supported")
 * unless it was made with DMA_ATTR_SKIP_CPU_SYNC. So we map and unmap with that attribute and
 * do the cache maintenance (and swiotlb bounce copies) that map and unmap would have done
 * ourselves, with the sync calls: the same work, no false report (drm_gem_map_dma_buf() maps
 * with the attribute too).
 */
#define GUD_DMA_ATTRS DMA_ATTR_SKIP_CPU_SYNC

/* An sg table over the buffer, within @dev's segment limits, mapped for @dev. */
static struct sg_table *gud_map_pages(struct gud_buffer *buf, struct device *dev,
				      enum dma_data_direction dir)
{
	struct sg_table *sgt;
	int ret;

	sgt = kzalloc(sizeof(*sgt), GFP_KERNEL);
	if (!sgt)
		return ERR_PTR(-ENOMEM);
	ret = gud_fill_sgt(buf, sgt, dev);
	if (ret)
		goto err_free;
	ret = dma_map_sgtable(dev, sgt, dir, GUD_DMA_ATTRS);
	if (ret)
		goto err_table;
	/* What dma_map_sgtable() does without the attribute. */
	dma_sync_sgtable_for_device(dev, sgt, dir);
	return sgt;

err_table:
	sg_free_table(sgt);
err_free:
	kfree(sgt);
	return ERR_PTR(ret);
}

static void gud_unmap_pages(struct device *dev, struct sg_table *sgt,
			    enum dma_data_direction dir)
{
	/* What dma_unmap_sgtable() does without the attribute. */
	dma_sync_sgtable_for_cpu(dev, sgt, dir);
	dma_unmap_sgtable(dev, sgt, dir, GUD_DMA_ATTRS);
	sg_free_table(sgt);
	kfree(sgt);
}

static struct sg_table *gud_map_dma_buf(struct dma_buf_attachment *at,
					enum dma_data_direction dir)
{
	return gud_map_pages(at->dmabuf->priv, at->dev, dir);
}

static void gud_unmap_dma_buf(struct dma_buf_attachment *at, struct sg_table *sgt,
			      enum dma_data_direction dir)
{
	gud_unmap_pages(at->dev, sgt, dir);
}

/*
 * Maps the whole range at mmap time with remap_pfn_range(), one call per physically
 * contiguous run: the PTE walk, PAT and pfn_modify_allowed() checks are the core's, and one
 * call covers a whole huge page. A PFN mapping takes no struct-page references, so hugetlb
 * subpage refcounts are never touched. The pages are pinned for the dma-buf's lifetime, which
 * the mapping's file reference outlives. Every PTE exists from the start and a VM_PFNMAP
 * mapping is never zapped short of munmap (madvise refuses it), so no fault handler is
 * needed: the core's dummy vm_ops answer a stray fault with SIGBUS.
 */
static int gud_mmap(struct dma_buf *dmabuf, struct vm_area_struct *vma)
{
	struct gud_buffer *buf = dmabuf->priv;
	unsigned long addr = vma->vm_start;
	pgoff_t pgoff = vma->vm_pgoff;
	unsigned int i;

	/* A private mapping would COW away from the guest's memory: refuse it. */
	if (!(vma->vm_flags & (VM_SHARED | VM_MAYSHARE)))
		return -EINVAL;

	/* dma-buf core has checked that the range lies within the buffer. */
	i = gud_extent_of(buf, pgoff) - buf->extents;
	while (addr < vma->vm_end) {
		const struct gud_extent *e = &buf->extents[i];
		unsigned long pfn = folio_pfn(e->folio) + e->first + (pgoff - e->start);
		unsigned long left = (vma->vm_end - addr) >> PAGE_SHIFT;
		unsigned long n = min_t(unsigned long, e->start + e->npages - pgoff, left);
		int ret;

		/* Later extents that continue the run physically join it. */
		for (i++; n < left && i < buf->nr_extents; i++) {
			const struct gud_extent *next = &buf->extents[i];

			if (folio_pfn(next->folio) + next->first != pfn + n)
				break;
			n = min_t(unsigned long, n + next->npages, left);
		}
		ret = remap_pfn_range(vma, addr, pfn, n << PAGE_SHIFT, vma->vm_page_prot);
		if (ret)
			return ret;
		/* A run ends at an extent's end, or inside one only at the mapping's end. */
		addr += n << PAGE_SHIFT;
		pgoff += n;
	}
	return 0;
}

static int gud_vmap(struct dma_buf *dmabuf, struct iosys_map *map)
{
	struct gud_buffer *buf = dmabuf->priv;
	struct page **pages = gud_page_array(buf);
	void *vaddr;

	if (!pages)
		return -ENOMEM;
	/* vm_map_ram() copies what it needs into the page tables: the array can go at once. */
	vaddr = vm_map_ram(pages, buf->pagecount, -1);
	kvfree(pages);
	if (!vaddr)
		return -ENOMEM;
	iosys_map_set_vaddr(map, vaddr);
	return 0;
}

static void gud_vunmap(struct dma_buf *dmabuf, struct iosys_map *map)
{
	struct gud_buffer *buf = dmabuf->priv;

	vm_unmap_ram(map->vaddr, buf->pagecount);
}

static int gud_begin_cpu_access(struct dma_buf *dmabuf, enum dma_data_direction dir)
{
	struct gud_buffer *buf = dmabuf->priv;
	struct device *dev = buf->dma_dev;
	int ret = 0;

	mutex_lock(&buf->cpu_lock);
	if (!buf->cpu_sgt) {
		struct sg_table *sgt = gud_map_pages(buf, dev, DMA_BIDIRECTIONAL);

		if (IS_ERR(sgt)) {
			ret = PTR_ERR(sgt);
			goto out;
		}
		buf->cpu_sgt = sgt;
	}
	dma_sync_sgtable_for_cpu(dev, buf->cpu_sgt, DMA_BIDIRECTIONAL);
	buf->cpu_access_depth++;
out:
	mutex_unlock(&buf->cpu_lock);
	return ret;
}

/* END without a matching BEGIN is the caller's error: say so, never warn. */
static int gud_end_cpu_access(struct dma_buf *dmabuf, enum dma_data_direction dir)
{
	struct gud_buffer *buf = dmabuf->priv;
	int ret = 0;

	mutex_lock(&buf->cpu_lock);
	if (!buf->cpu_access_depth) {
		ret = -EINVAL;
	} else {
		dma_sync_sgtable_for_device(buf->dma_dev, buf->cpu_sgt, DMA_BIDIRECTIONAL);
		buf->cpu_access_depth--;
	}
	mutex_unlock(&buf->cpu_lock);
	return ret;
}

static void gud_release(struct dma_buf *dmabuf)
{
	struct gud_buffer *buf = dmabuf->priv;

	if (buf->cpu_sgt)
		gud_unmap_pages(buf->dma_dev, buf->cpu_sgt, DMA_BIDIRECTIONAL);
	mutex_destroy(&buf->cpu_lock);
	gud_destroy(buf);
}

const struct dma_buf_ops gud_dmabuf_ops = {
	.map_dma_buf = gud_map_dma_buf,
	.unmap_dma_buf = gud_unmap_dma_buf,
	.mmap = gud_mmap,
	.vmap = gud_vmap,
	.vunmap = gud_vunmap,
	.begin_cpu_access = gud_begin_cpu_access,
	.end_cpu_access = gud_end_cpu_access,
	.release = gud_release,
};
