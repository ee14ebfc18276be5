// SPDX-License-Identifier: GPL-2.0-only
/*
 * /sys/kernel/debug/guest_udmabuf/buffers: one line per live buffer, so an administrator (and
 * the tests) can see what each buffer pins and charges. A buffer is named by the inode number
 * of its dma-buf file, which fstat() on any fd of the buffer reports.
 */
#include <linux/debugfs.h>
#include <linux/mutex.h>
#include <linux/seq_file.h>
#include <linux/uidgid.h>
#include <linux/sched/user.h>

#include "guest_udmabuf.h"

static DEFINE_MUTEX(gud_buffers_lock);
static LIST_HEAD(gud_buffers);
static struct dentry *gud_debugfs_dir;

void gud_track(struct gud_buffer *buf, struct dma_buf *dmabuf)
{
	buf->ino = file_inode(dmabuf->file)->i_ino;
	mutex_lock(&gud_buffers_lock);
	list_add_tail(&buf->node, &gud_buffers);
	mutex_unlock(&gud_buffers_lock);
}

void gud_untrack(struct gud_buffer *buf)
{
	mutex_lock(&gud_buffers_lock);
	list_del(&buf->node);
	mutex_unlock(&gud_buffers_lock);
}

static int gud_buffers_show(struct seq_file *s, void *unused)
{
	struct gud_buffer *buf;

	seq_puts(s, "ino pages creator_pid charged_uid charged_pages release_eventfd extents\n");
	mutex_lock(&gud_buffers_lock);
	list_for_each_entry(buf, &gud_buffers, node) {
		long uid = buf->charged_user ?
			(long)from_kuid_munged(&init_user_ns, buf->charged_user->uid) : -1;

		seq_printf(s, "%lu %lu %d %ld %lu %d %u\n", buf->ino, (unsigned long)buf->pagecount,
			   buf->creator, uid, buf->charged_pages, buf->release_event ? 1 : 0,
			   buf->nr_extents);
	}
	mutex_unlock(&gud_buffers_lock);
	return 0;
}
DEFINE_SHOW_ATTRIBUTE(gud_buffers);

/* debugfs is a debugging aid: failing to create it must not fail the module. */
void gud_debugfs_init(void)
{
	gud_debugfs_dir = debugfs_create_dir(KBUILD_MODNAME, NULL);
	debugfs_create_file("buffers", 0400, gud_debugfs_dir, NULL, &gud_buffers_fops);
}

void gud_debugfs_exit(void)
{
	debugfs_remove_recursive(gud_debugfs_dir);
}
