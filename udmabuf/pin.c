// SPDX-License-Identifier: GPL-2.0-only
/*
 * Pinning memfd pages. The seal check and the pin happen under the inode lock, which
 * memfd_add_seals() takes for writing: a racing F_SEAL_WRITE either lands before the check
 * (create fails) or after the pin (the sealer sees the pin and fails with EBUSY).
 *
 * Kernels from 6.11 have memfd_pin_folios(), a real FOLL_PIN that also allocates missing
 * shmem and hugetlb folios. Older kernels get page-cache references, as upstream took there;
 * hugetlb ranges are populated with fallocate first because nothing else allocates them.
 */
#include <linux/fs.h>
#include <linux/falloc.h>
#include <linux/hugetlb.h>
#include <linux/magic.h>
#include <linux/memfd.h>
#include <linux/mm.h>
#include <linux/pagemap.h>
#include <linux/shmem_fs.h>
#include <linux/version.h>

#include "guest_udmabuf.h"

#define GUD_HAVE_MEMFD_PIN (LINUX_VERSION_CODE >= KERNEL_VERSION(6, 11, 0))

#define SEALS_WANTED (F_SEAL_SHRINK)
#define SEALS_DENIED (F_SEAL_WRITE | F_SEAL_FUTURE_WRITE)

enum gud_memfd_kind { GUD_NOT_MEMFD, GUD_SHMEM, GUD_HUGETLB };

/* Identified by filesystem magic: shmem_file() is not exported on every kernel we support. */
static enum gud_memfd_kind gud_memfd_kind(struct file *file)
{
	unsigned long magic = file_inode(file)->i_sb->s_magic;

	if (magic == TMPFS_MAGIC && S_ISREG(file_inode(file)->i_mode))
		return GUD_SHMEM;
#ifdef CONFIG_HUGETLBFS
	if (magic == HUGETLBFS_MAGIC && S_ISREG(file_inode(file)->i_mode))
		return GUD_HUGETLB;
#endif
	return GUD_NOT_MEMFD;
}

static unsigned int gud_seals(struct inode *inode, enum gud_memfd_kind kind)
{
#ifdef CONFIG_HUGETLBFS
	if (kind == GUD_HUGETLB)
		return HUGETLBFS_I(inode)->seals;
#endif
	return SHMEM_I(inode)->seals;
}

static int gud_check_seals(struct inode *inode, enum gud_memfd_kind kind)
{
	unsigned int seals = gud_seals(inode, kind);

	if ((seals & SEALS_WANTED) != SEALS_WANTED || (seals & SEALS_DENIED))
		return -EINVAL;
	return 0;
}

#if GUD_HAVE_MEMFD_PIN

/* Most folios pinned per memfd_pin_folios() call: each call has a fixed cost. */
#define GUD_PIN_BATCH 1024

static int gud_pin_pages(struct gud_buffer *buf, struct file *memfd,
			 enum gud_memfd_kind kind, u64 offset, pgoff_t npages)
{
	unsigned int nbatch = min_t(pgoff_t, npages, GUD_PIN_BATCH);
	u64 end = offset + ((u64)npages << PAGE_SHIFT) - 1;
	pgoff_t left = npages;
	struct folio *small[8];
	struct folio **batch = nbatch <= ARRAY_SIZE(small) ? small :
			       kmalloc_array(nbatch, sizeof(*batch), GFP_KERNEL);
	int ret = 0;

	(void)kind;
	if (!batch)
		return -ENOMEM;
	while (left && !ret) {
		pgoff_t first_off;
		long nr, f;

		nr = memfd_pin_folios(memfd, offset, end, batch, nbatch, &first_off);
		if (nr <= 0) {
			ret = nr ? nr : -EFAULT;
			break;
		}
		for (f = 0; f < nr; f++) {
			/* Only the first folio of a call starts part-way in. */
			unsigned int first = f == 0 ? first_off >> PAGE_SHIFT : 0;
			unsigned int n = min_t(pgoff_t, folio_nr_pages(batch[f]) - first, left);

			/* On failure the extent list keeps what it took; the rest is unpinned here. */
			if (!ret && n)
				ret = gud_add_extent(buf, batch[f], first, n);
			else
				n = 0;
			if (ret || !n) {
				unpin_folio(batch[f]);
				continue;
			}
			offset += (u64)n << PAGE_SHIFT;
			left -= n;
		}
	}
	if (batch != small)
		kfree(batch);
	return ret;
}

void gud_unpin_folio(struct folio *folio)
{
	unpin_folio(folio);
}

#else /* page-cache references */

static struct page *gud_get_page(struct file *memfd, enum gud_memfd_kind kind, pgoff_t pgoff)
{
	struct address_space *mapping = memfd->f_mapping;
#ifdef CONFIG_HUGETLBFS
	if (kind == GUD_HUGETLB) {
		/* Before 6.7 the hugetlb page cache is indexed in huge pages. */
		struct hstate *h = hstate_file(memfd);
		pgoff_t per_huge = pages_per_huge_page(h);
		struct page *head;

		head = pagecache_get_page(mapping, pgoff / per_huge, FGP_ACCESSED, 0);
		if (!head)
			return ERR_PTR(-EFAULT);
		return nth_page(head, pgoff % per_huge);
	}
#endif
	return shmem_read_mapping_page(mapping, pgoff);
}

static int gud_pin_pages(struct gud_buffer *buf, struct file *memfd,
			 enum gud_memfd_kind kind, u64 offset, pgoff_t npages)
{
	pgoff_t pgoff = offset >> PAGE_SHIFT;
	pgoff_t i;

	for (i = 0; i < npages; i++) {
		struct page *page = gud_get_page(memfd, kind, pgoff + i);
		struct folio *folio;
		int ret;

		if (IS_ERR(page))
			return PTR_ERR(page);
		folio = page_folio(page);
		ret = gud_add_extent(buf, folio, page_to_pfn(page) - folio_pfn(folio), 1);
		if (ret) {
			folio_put(folio);
			return ret;
		}
	}
	return 0;
}

void gud_unpin_folio(struct folio *folio)
{
	folio_put(folio);
}

#endif

void gud_unpin_all(struct gud_buffer *buf)
{
	unsigned int i;

	for (i = 0; i < buf->nr_extents; i++)
		gud_unpin_folio(buf->extents[i].folio);
	buf->nr_extents = 0;
}

static pgoff_t gud_max_extents(struct file *memfd, enum gud_memfd_kind kind, pgoff_t npages)
{
#ifdef CONFIG_HUGETLBFS
	if (kind == GUD_HUGETLB)
		return min_t(pgoff_t, npages, npages / pages_per_huge_page(hstate_file(memfd)) + 2);
#endif
	return npages;
}

int gud_pin_range(struct gud_buffer *buf, struct file *memfd, u64 offset, u64 size)
{
	enum gud_memfd_kind kind = gud_memfd_kind(memfd);
	struct inode *inode = file_inode(memfd);
	u64 end;
	int ret;

	if (kind == GUD_NOT_MEMFD)
		return -EBADFD;
	if (check_add_overflow(offset, size, &end))
		return -EINVAL;

#if !GUD_HAVE_MEMFD_PIN && defined(CONFIG_HUGETLBFS)
	/* Allocate missing huge pages now: fallocate takes the inode lock itself. */
	if (kind == GUD_HUGETLB && end <= i_size_read(inode) &&
	    !gud_check_seals(inode, kind)) {
		ret = vfs_fallocate(memfd, FALLOC_FL_KEEP_SIZE, offset, size);
		if (ret)
			return ret;
	}
#endif

	inode_lock_shared(inode);
	ret = gud_check_seals(inode, kind);
	if (!ret && end > i_size_read(inode))
		ret = -EINVAL;
	/* One extent per page at most, one per huge page (plus a partial one at each end) on hugetlb. */
	if (!ret)
		ret = gud_reserve_extents(buf, gud_max_extents(memfd, kind, size >> PAGE_SHIFT));
	if (!ret)
		ret = gud_pin_pages(buf, memfd, kind, offset, size >> PAGE_SHIFT);
	inode_unlock_shared(inode);
	return ret;
}
