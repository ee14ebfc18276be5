// SPDX-License-Identifier: GPL-2.0-only
/*
 * guest-udmabuf: memfd ranges -> dma-buf, ABI-compatible with upstream udmabuf.
 *
 * This file owns the misc device, the device CPU access maps buffers for, the module
 * parameters and ioctl decoding. The device name is a parameter so the module can run beside a
 * kernel that has udmabuf built in.
 */
#include <linux/dma-mapping.h>
#include <linux/module.h>
#include <linux/overflow.h>
#include <linux/platform_device.h>
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

static struct device *gud_dma_dev(void);

static long gud_ioctl_create(unsigned long arg)
{
	struct udmabuf_create create;
	struct udmabuf_create_item item;

	if (copy_from_user(&create, (void __user *)arg, sizeof(create)))
		return -EFAULT;

	item.memfd = create.memfd;
	item.__pad = 0;
	item.offset = create.offset;
	item.size = create.size;
	return gud_create(gud_dma_dev(), create.flags, 1, &item, -1);
}

/*
 * The item array that follows a list header of @head_size bytes at @arg. Upstream ignores
 * each item's __pad in CREATE_LIST, and so do we; our own CREATE_NOTIFY (@strict_pad)
 * refuses a non-zero one, so the field stays free for a later extension there.
 */
static long gud_create_from_user_list(unsigned long arg, size_t head_size, u32 flags, u32 count,
				      int eventfd, bool strict_pad)
{
	struct udmabuf_create_item *items;
	size_t bytes;
	long ret;
	u32 i;

	if (count == 0 || count > gud_list_limit)
		return -EINVAL;
	/* A raised list_limit must not reach kvmalloc's INT_MAX warning. */
	bytes = array_size(sizeof(*items), count);
	if (bytes > INT_MAX)
		return -E2BIG;

	items = kvmalloc(bytes, GFP_KERNEL_ACCOUNT);
	if (!items)
		return -ENOMEM;
	ret = -EFAULT;
	if (copy_from_user(items, (void __user *)(arg + head_size), bytes))
		goto out;
	ret = -EINVAL;
	for (i = 0; strict_pad && i < count; i++)
		if (items[i].__pad)
			goto out;

	ret = gud_create(gud_dma_dev(), flags, count, items, eventfd);
out:
	kvfree(items);
	return ret;
}

static long gud_ioctl_create_list(unsigned long arg)
{
	struct udmabuf_create_list head;

	if (copy_from_user(&head, (void __user *)arg, sizeof(head)))
		return -EFAULT;
	return gud_create_from_user_list(arg, sizeof(head), head.flags, head.count, -1, false);
}

static long gud_ioctl_create_notify(unsigned long arg)
{
	struct udmabuf_create_notify head;

	if (copy_from_user(&head, (void __user *)arg, sizeof(head)))
		return -EFAULT;
	if (head.__pad || head.eventfd < 0)
		return head.__pad ? -EINVAL : -EBADF;
	return gud_create_from_user_list(arg, sizeof(head), head.flags, head.count, head.eventfd,
					 true);
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
		return gud_ioctl_create(arg);
	case UDMABUF_CREATE_LIST:
		return gud_ioctl_create_list(arg);
	case UDMABUF_CREATE_NOTIFY:
		return gud_ioctl_create_notify(arg);
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

/*
 * CPU access (begin/end_cpu_access) maps a buffer for a device of ours. It is a platform
 * device set up completely (DMA mask, segment limits) before the misc device exists, so no
 * create can ever see it half-configured, and it is the misc device's parent.
 */
static struct platform_device *gud_pdev;
static struct device_dma_parameters gud_dma_parms;

static struct device *gud_dma_dev(void)
{
	return &gud_pdev->dev;
}

static int gud_dma_dev_init(void)
{
	struct device *dev;
	int ret;

	gud_pdev = platform_device_register_simple(KBUILD_MODNAME, PLATFORM_DEVID_NONE, NULL, 0);
	if (IS_ERR(gud_pdev))
		return PTR_ERR(gud_pdev);
	dev = gud_dma_dev();
	ret = dma_coerce_mask_and_coherent(dev, DMA_BIT_MASK(64));
	if (ret) {
		platform_device_unregister(gud_pdev);
		return ret;
	}
	/* Without dma_parms the DMA API assumes 64 KiB segments; CPU access maps whole runs. */
	if (!dev->dma_parms)
		dev->dma_parms = &gud_dma_parms;
	dev->dma_parms->max_segment_size = UINT_MAX & PAGE_MASK;
	dev->dma_parms->segment_boundary_mask = ULONG_MAX;
	return 0;
}

static int __init gud_init(void)
{
	int ret;

	ret = gud_pin_init();
	if (ret)
		return ret;
	ret = gud_dma_dev_init();
	if (ret) {
		pr_err("guest_udmabuf: cannot set up the DMA device: %d\n", ret);
		return ret;
	}
	gud_debugfs_init();

	gud_misc.name = devname;
	gud_misc.parent = gud_dma_dev();
	ret = misc_register(&gud_misc);
	if (ret) {
		pr_err("guest_udmabuf: cannot register /dev/%s: %d\n", devname, ret);
		gud_debugfs_exit();
		platform_device_unregister(gud_pdev);
		return ret;
	}
	return 0;
}

static void __exit gud_exit(void)
{
	misc_deregister(&gud_misc);
	gud_debugfs_exit();
	platform_device_unregister(gud_pdev);
}

module_init(gud_init);
module_exit(gud_exit);

MODULE_DESCRIPTION("memfd ranges to dma-buf (udmabuf-compatible, with extensions)");
MODULE_LICENSE("GPL");
MODULE_IMPORT_NS(DMA_BUF);
