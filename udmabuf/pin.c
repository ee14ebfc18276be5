// SPDX-License-Identifier: GPL-2.0-only
/*
 * Pinning memfd pages. The seal check and the pin happen under the inode lock, which
 * memfd_add_seals() takes for writing: a racing F_SEAL_WRITE either lands before the check
 * (create fails) or after the pin (the sealer sees the pin and fails with EBUSY).
 *
 * 6.12 has memfd_pin_folios(), a real FOLL_PIN that also allocates missing shmem and hugetlb
 * folios. On 6.1 we take page-cache references, as upstream took there; hugetlb ranges are
 * populated with fallocate first because nothing else allocates them. On both, huge pages a
 * failed create allocated are freed again. guest_udmabuf.h gates the kernel versions.
 */
#include <linux/fs.h>
#include <linux/falloc.h>
#include <linux/hugetlb.h>
#include <linux/magic.h>
#include <linux/memfd.h>
#include <linux/mm.h>
#include <linux/pagemap.h>
#include <linux/shmem_fs.h>
#include <linux/slab.h>
#include <linux/version.h>

#include "guest_udmabuf.h"

#define GUD_HAVE_MEMFD_PIN (LINUX_VERSION_CODE >= KERNEL_VERSION(6, 11, 0))

#define SEALS_WANTED (F_SEAL_SHRINK)
#define SEALS_DENIED (F_SEAL_WRITE | F_SEAL_FUTURE_WRITE)

enum gud_memfd_kind { GUD_NOT_MEMFD, GUD_SHMEM, GUD_HUGETLB };

#if GUD_HAVE_MEMFD_PIN

int gud_pin_init(void)
{
	return 0;
}

/* Upstream's test: shmem_file() and is_file_hugepages(). */
static enum gud_memfd_kind gud_memfd_kind(struct file *file)
{
	if (!S_ISREG(file_inode(file)->i_mode))
		return GUD_NOT_MEMFD;
	if (shmem_file(file))
		return GUD_SHMEM;
	if (is_file_hugepages(file))
		return GUD_HUGETLB;
	return GUD_NOT_MEMFD;
}

#else

/*
 * 6.1 exports neither shmem_mapping() (behind shmem_file()) nor what is_file_hugepages()
 * compares with. A shmem file is recognised by its address_space operations, taken from a
 * shmem file of our own at load; hugetlbfs, whose operations we cannot reach, by its
 * superblock magic, which no other filesystem uses.
 */
static const struct address_space_operations *gud_shmem_aops;

int gud_pin_init(void)
{
	struct file *probe = shmem_file_setup(KBUILD_MODNAME, 0, VM_NORESERVE);

	if (IS_ERR(probe))
		return PTR_ERR(probe);
	gud_shmem_aops = probe->f_mapping->a_ops;
	fput(probe);
	return 0;
}

static enum gud_memfd_kind gud_memfd_kind(struct file *file)
{
	struct inode *inode = file_inode(file);

	if (!S_ISREG(inode->i_mode))
		return GUD_NOT_MEMFD;
	if (file->f_mapping && file->f_mapping->a_ops == gud_shmem_aops)
		return GUD_SHMEM;
#ifdef CONFIG_HUGETLBFS
	if (inode->i_sb->s_magic == HUGETLBFS_MAGIC)
		return GUD_HUGETLB;
#endif
	return GUD_NOT_MEMFD;
}

#endif

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
			       kmalloc_array(nbatch, sizeof(*batch), GFP_KERNEL_ACCOUNT);
	int ret = 0;

	(void)kind;
	if (!batch)
		return -ENOMEM;
	while (left && !ret) {
		pgoff_t first_off;
		long nr, f;

		/* A create pins up to size_limit_mb per item: let others run between batches. */
		cond_resched();
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

/* From 6.7 the hugetlb page cache is indexed by base page. */
#define GUD_HUGE_INDEX(idx, shift) ((pgoff_t)(idx) << ((shift) - PAGE_SHIFT))
/* memfd_pin_folios() allocates missing huge pages itself, under the inode lock. */
#define GUD_POPULATE_BY_FALLOCATE false

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
		struct page *page;
		struct folio *folio;
		int ret;

		/*
		 * Up to size_limit_mb per item, page by page: without a resched point a kernel built
		 * with PREEMPT_NONE (the debug kernel) keeps every other task off this CPU for the
		 * whole create (seconds for 64 MiB there; an event loop on the libuv pool stalled).
		 */
		cond_resched();
		page = gud_get_page(memfd, kind, pgoff + i);

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

/* Before 6.7 the hugetlb page cache is indexed in huge pages. */
#define GUD_HUGE_INDEX(idx, shift) ((pgoff_t)(idx))
/* Nothing else allocates missing huge pages on 6.1. */
#define GUD_POPULATE_BY_FALLOCATE true

#endif

/* A run of huge pages a create allocated in a hugetlb memfd. */
struct gud_populated {
	struct list_head node;
	struct file *memfd;
	loff_t offset;
	loff_t len;
};

/*
 * Records huge pages [first, last] of @memfd, absent now, for gud_populated_undo(); on 6.1 it
 * allocates them too.
 */
static int gud_populate_run(struct gud_buffer *buf, struct file *memfd, loff_t first,
			    loff_t last, unsigned int shift)
{
	struct gud_populated *run = kmalloc(sizeof(*run), GFP_KERNEL_ACCOUNT);
	int ret;

	if (!run)
		return -ENOMEM;
	run->offset = first << shift;
	run->len = (last - first + 1) << shift;
	ret = GUD_POPULATE_BY_FALLOCATE ?
	      vfs_fallocate(memfd, FALLOC_FL_KEEP_SIZE, run->offset, run->len) : 0;
	if (ret) {
		kfree(run);
		return ret;
	}
	run->memfd = get_file(memfd);
	list_add(&run->node, &buf->populated);
	return 0;
}

/*
 * Finds the huge pages of a hugetlb range that are absent, so that a failed create frees
 * exactly what it added, and on 6.1 allocates them, outside the inode lock because fallocate
 * takes it (the seal check under the lock follows). A create that fails also frees a huge page
 * someone else wrote into between this and the failure; shmem ranges are not tracked (their
 * pages cost no reserved pool, and a failed create leaves them as upstream does).
 */
static int gud_populate(struct gud_buffer *buf, struct file *memfd, enum gud_memfd_kind kind,
			u64 offset, u64 size)
{
#ifdef CONFIG_HUGETLBFS
	struct inode *inode = file_inode(memfd);
	unsigned int shift;
	loff_t idx, last, missing = -1;
	int ret = 0;

	/*
	 * A zero-size item (upstream's ABI allows one in a list) has nothing to populate; at
	 * offset 0 the scan below would run to (u64)-1 >> shift, 2^43 lookups without a resched
	 * point (found by the ioctl fuzzer: an RCU stall and an ioctl that never returns).
	 */
	if (!size || kind != GUD_HUGETLB || offset + size > i_size_read(inode) ||
	    gud_check_seals(inode, kind))
		return 0;	/* the checks under the lock will refuse it */
	shift = huge_page_shift(hstate_file(memfd));
	last = (offset + size - 1) >> shift;
	for (idx = offset >> shift; idx <= last && !ret; idx++) {
		struct page *page = pagecache_get_page(memfd->f_mapping, GUD_HUGE_INDEX(idx, shift),
						       0, 0);

		if (page)
			put_page(page);
		if (!page && missing < 0)
			missing = idx;
		if (page && missing >= 0) {
			ret = gud_populate_run(buf, memfd, missing, idx - 1, shift);
			missing = -1;
		}
	}
	if (!ret && missing >= 0)
		ret = gud_populate_run(buf, memfd, missing, last, shift);
	return ret;
#else
	return 0;
#endif
}

void gud_populated_forget(struct gud_buffer *buf)
{
	struct gud_populated *run, *next;

	list_for_each_entry_safe(run, next, &buf->populated, node) {
		list_del(&run->node);
		fput(run->memfd);
		kfree(run);
	}
}

/* After the pins are dropped: frees the huge pages this create allocated. */
void gud_populated_undo(struct gud_buffer *buf)
{
	struct gud_populated *run;

	list_for_each_entry(run, &buf->populated, node)
		vfs_fallocate(run->memfd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, run->offset,
			      run->len);
	gud_populated_forget(buf);
}

/*
 * Writes through the dma-buf (its PFN mmap, importers' DMA, vmap) never dirty the folio, so
 * at release every folio is marked dirty before its pin goes, as unpin_user_pages_dirty_lock()
 * does; otherwise reclaim could drop a clean-looking shmem folio and lose the data.
 */
void gud_unpin_all(struct gud_buffer *buf, bool dirty)
{
	unsigned int i;

	for (i = 0; i < buf->nr_extents; i++) {
		struct folio *folio = buf->extents[i].folio;

		cond_resched();	/* one extent per 4 KiB page for shmem: as long a loop as the pin's */
		/*
		 * A folio still dirty needs nothing: whatever cleans it later writes what is in it
		 * then, which includes every write made through the buffer before its release.
		 */
		if (dirty && !folio_test_dirty(folio))
			set_page_dirty_lock(folio_page(folio, 0));
		gud_unpin_folio(folio);
	}
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
	/*
	 * The dma-buf is writable (mmap, importers, vmap): the fd must grant write access. A
	 * memfd reopened read-only through /proc/<pid>/fd is refused, not silently upgraded.
	 */
	if (!(memfd->f_mode & FMODE_WRITE))
		return -EACCES;
	if (check_add_overflow(offset, size, &end))
		return -EINVAL;

	ret = gud_populate(buf, memfd, kind, offset, size);
	if (ret)
		return ret;

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
