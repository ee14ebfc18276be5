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
	return gud_create(filp->private_data, create.flags, 1, &item);
}

static long gud_ioctl_create_list(struct file *filp, unsigned long arg)
{
	struct udmabuf_create_list head;
	struct udmabuf_create_item *items;
	long ret;

	if (copy_from_user(&head, (void __user *)arg, sizeof(head)))
		return -EFAULT;
	if (head.count == 0 || head.count > gud_list_limit)
		return -EINVAL;

	/* array_size() saturates, so a raised list_limit cannot wrap the length. */
	items = memdup_user((void __user *)(arg + sizeof(head)),
			    array_size(sizeof(*items), head.count));
	if (IS_ERR(items))
		return PTR_ERR(items);

	ret = gud_create(filp->private_data, head.flags, head.count, items);
	kfree(items);
	return ret;
}

static long gud_ioctl(struct file *filp, unsigned int cmd, unsigned long arg)
{
	switch (cmd) {
	case UDMABUF_CREATE:
		return gud_ioctl_create(filp, arg);
	case UDMABUF_CREATE_LIST:
		return gud_ioctl_create_list(filp, arg);
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
	return 0;
}

static void __exit gud_exit(void)
{
	misc_deregister(&gud_misc);
}

module_init(gud_init);
module_exit(gud_exit);

MODULE_DESCRIPTION("memfd ranges to dma-buf (udmabuf-compatible, with extensions)");
MODULE_LICENSE("GPL");
MODULE_IMPORT_NS(DMA_BUF);
