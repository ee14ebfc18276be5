// SPDX-License-Identifier: GPL-2.0-only
/*
 * guest-udmabuf: memfd ranges -> dma-buf, ABI-compatible with upstream udmabuf.
 *
 * This file owns the misc device, the module parameters and ioctl decoding. The device name is
 * a parameter so the module can run beside a kernel that has udmabuf built in.
 */
#include <linux/dma-mapping.h>
#include <linux/module.h>
#include <linux/overflow.h>
#include <linux/slab.h>
#include <linux/string.h>
#include <linux/uaccess.h>

#include "guest_udmabuf.h"

unsigned int gud_list_limit = 1024;
module_param_named(list_limit, gud_list_limit, uint, 0644);
MODULE_PARM_DESC(list_limit, "Most items in one UDMABUF_CREATE_LIST. Default 1024.");

unsigned int gud_size_limit_mb = 64;
module_param_named(size_limit_mb, gud_size_limit_mb, uint, 0644);
MODULE_PARM_DESC(size_limit_mb, "Largest buffer, in MiB. Default 64.");

bool gud_account_pinned = true;
module_param_named(account_pinned, gud_account_pinned, bool, 0644);
MODULE_PARM_DESC(account_pinned,
		 "Charge pinned pages to the creator's RLIMIT_MEMLOCK (CAP_IPC_LOCK exempt). Default Y; N behaves like upstream.");

static char *devname = "udmabuf";
module_param(devname, charp, 0444);
MODULE_PARM_DESC(devname, "Name of the device node under /dev. Default udmabuf.");

static long gud_ioctl_create(struct file *filp, unsigned long arg)
{
	struct udmabuf_create create;
	struct udmabuf_create_item item;

	if (copy_from_user(&create, (void __user *)arg, sizeof(create)))
		return -EFAULT;

	item.memfd = create.memfd;
	item.__pad = 0;
	item.offset = create.offset;
	item.size = create.size;
	return gud_create(filp->private_data, create.flags, 1, &item, -1);
}

/* The item array that follows a list header of @head_size bytes at @arg. */
static long gud_create_from_user_list(struct file *filp, unsigned long arg, size_t head_size,
				      u32 flags, u32 count, int eventfd)
{
	struct udmabuf_create_item *items;
	long ret;

	if (count == 0 || count > gud_list_limit)
		return -EINVAL;

	/* array_size() saturates, so a raised list_limit cannot wrap the length. */
	items = memdup_user((void __user *)(arg + head_size), array_size(sizeof(*items), count));
	if (IS_ERR(items))
		return PTR_ERR(items);

	ret = gud_create(filp->private_data, flags, count, items, eventfd);
	kfree(items);
	return ret;
}

static long gud_ioctl_create_list(struct file *filp, unsigned long arg)
{
	struct udmabuf_create_list head;

	if (copy_from_user(&head, (void __user *)arg, sizeof(head)))
		return -EFAULT;
	return gud_create_from_user_list(filp, arg, sizeof(head), head.flags, head.count, -1);
}

static long gud_ioctl_create_notify(struct file *filp, unsigned long arg)
{
	struct udmabuf_create_notify head;

	if (copy_from_user(&head, (void __user *)arg, sizeof(head)))
		return -EFAULT;
	if (head.__pad || head.eventfd < 0)
		return head.__pad ? -EINVAL : -EBADF;
	return gud_create_from_user_list(filp, arg, sizeof(head), head.flags, head.count,
					 head.eventfd);
}

static long gud_ioctl_get_features(unsigned long arg)
{
	struct udmabuf_features features = {
		.features = UDMABUF_FEATURE_RELEASE_EVENTFD |
			    (gud_account_pinned ? UDMABUF_FEATURE_ACCOUNTING : 0),
	};

	return copy_to_user((void __user *)arg, &features, sizeof(features)) ? -EFAULT : 0;
}

static long gud_ioctl(struct file *filp, unsigned int cmd, unsigned long arg)
{
	switch (cmd) {
	case UDMABUF_CREATE:
		return gud_ioctl_create(filp, arg);
	case UDMABUF_CREATE_LIST:
		return gud_ioctl_create_list(filp, arg);
	case UDMABUF_CREATE_NOTIFY:
		return gud_ioctl_create_notify(filp, arg);
	case UDMABUF_GET_FEATURES:
		return gud_ioctl_get_features(arg);
	default:
		return -ENOTTY;
	}
}

static const struct file_operations gud_fops = {
	.owner = THIS_MODULE,
	.unlocked_ioctl = gud_ioctl,
#ifdef CONFIG_COMPAT
	.compat_ioctl = gud_ioctl,
#endif
};

static struct miscdevice gud_misc = {
	.minor = MISC_DYNAMIC_MINOR,
	.fops = &gud_fops,
};

static int __init gud_init(void)
{
	int ret;

	gud_misc.name = devname;
	ret = misc_register(&gud_misc);
	if (ret) {
		pr_err("guest_udmabuf: cannot register /dev/%s: %d\n", devname, ret);
		return ret;
	}

	/* CPU access maps the pages for the misc device itself: it needs a DMA mask. */
	ret = dma_coerce_mask_and_coherent(gud_misc.this_device, DMA_BIT_MASK(64));
	if (ret) {
		pr_err("guest_udmabuf: cannot set the DMA mask: %d\n", ret);
		misc_deregister(&gud_misc);
		return ret;
	}
	gud_debugfs_init();
	return 0;
}

static void __exit gud_exit(void)
{
	gud_debugfs_exit();
	misc_deregister(&gud_misc);
}

module_init(gud_init);
module_exit(gud_exit);

MODULE_DESCRIPTION("memfd ranges to dma-buf (udmabuf-compatible, with extensions)");
MODULE_LICENSE("GPL");
MODULE_IMPORT_NS(DMA_BUF);
