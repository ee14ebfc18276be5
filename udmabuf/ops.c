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
#include <linux/version.h>

#include "guest_udmabuf.h"

/* An sg table over the buffer, physically contiguous runs merged, mapped for @dev. */
static struct sg_table *gud_map_pages(struct gud_buffer *buf, struct device *dev,
				      enum dma_data_direction dir)
{
	struct sg_table *sgt;
	int ret;

	sgt = kzalloc(sizeof(*sgt), GFP_KERNEL);
	if (!sgt)
		return ERR_PTR(-ENOMEM);
	ret = gud_fill_sgt(buf, sgt);
	if (ret)
		goto err_free;
	ret = dma_map_sgtable(dev, sgt, dir, 0);
	if (ret)
		goto err_table;
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
	dma_unmap_sgtable(dev, sgt, dir, 0);
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

static vm_fault_t gud_vm_fault(struct vm_fault *vmf)
{
	struct gud_buffer *buf = vmf->vma->vm_private_data;

	if (vmf->pgoff >= buf->pagecount)
		return VM_FAULT_SIGBUS;
	return vmf_insert_pfn(vmf->vma, vmf->address, page_to_pfn(gud_page(buf, vmf->pgoff)));
}

static const struct vm_operations_struct gud_vm_ops = {
	.fault = gud_vm_fault,
};

/* Where the PTE walk is in the extent list. */
struct gud_pte_fill {
	struct mm_struct *mm;
	const struct gud_extent *extent;
	unsigned int page;	/* within *extent */
	pgprot_t prot;
};

static int gud_fill_pte(pte_t *pte, unsigned long addr, void *data)
{
	struct gud_pte_fill *fill = data;
	unsigned long pfn = folio_pfn(fill->extent->folio) + fill->extent->first + fill->page;

	set_pte_at(fill->mm, addr, pte, pte_mkspecial(pfn_pte(pfn, fill->prot)));
	if (++fill->page == fill->extent->npages) {
		fill->extent++;
		fill->page = 0;
	}
	return 0;
}

static int gud_mmap(struct dma_buf *dmabuf, struct vm_area_struct *vma)
{
	struct gud_buffer *buf = dmabuf->priv;
	struct gud_pte_fill fill;

	/* A private mapping would COW away from the guest's memory: refuse it. */
	if (!(vma->vm_flags & (VM_SHARED | VM_MAYSHARE)))
		return -EINVAL;

	vma->vm_ops = &gud_vm_ops;
	vma->vm_private_data = buf;
	/* PFN map: no struct-page refcounting on possibly compound (hugetlb) pages. */
#if LINUX_VERSION_CODE >= KERNEL_VERSION(6, 3, 0)
	vm_flags_set(vma, VM_PFNMAP | VM_DONTEXPAND | VM_DONTDUMP);
#else
	vma->vm_flags |= VM_PFNMAP | VM_DONTEXPAND | VM_DONTDUMP;
#endif
	/*
	 * Fill every PTE now, in one page-table walk, instead of taking one fault per page as
	 * upstream does: a compositor or encoder reads the whole frame. The pages are pinned for
	 * the dma-buf's lifetime, which the mapping's file reference outlives. dma-buf core has
	 * checked that the range lies within the buffer; the fault handler stays as a fallback.
	 */
	fill.mm = vma->vm_mm;
	fill.extent = gud_extent_of(buf, vma->vm_pgoff);
	fill.page = vma->vm_pgoff - fill.extent->start;
	fill.prot = vma->vm_page_prot;
	return apply_to_page_range(vma->vm_mm, vma->vm_start, vma->vm_end - vma->vm_start,
				   gud_fill_pte, &fill);
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
	struct device *dev = buf->misc->this_device;
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
		dma_sync_sgtable_for_device(buf->misc->this_device, buf->cpu_sgt,
					    DMA_BIDIRECTIONAL);
		buf->cpu_access_depth--;
	}
	mutex_unlock(&buf->cpu_lock);
	return ret;
}

static void gud_release(struct dma_buf *dmabuf)
{
	struct gud_buffer *buf = dmabuf->priv;

	if (buf->cpu_sgt)
		gud_unmap_pages(buf->misc->this_device, buf->cpu_sgt, DMA_BIDIRECTIONAL);
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
