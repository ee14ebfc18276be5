/* SPDX-License-Identifier: GPL-2.0-only WITH Linux-syscall-note */
/*
 * guest-udmabuf user ABI.
 *
 * The create ioctls are byte-for-byte upstream udmabuf's (include/uapi/linux/udmabuf.h), so
 * existing users work unchanged. Extensions get ioctl numbers upstream can never hand out
 * (type 'u' with numbers from 0x80): a driver without them answers ENOTTY, which is how
 * user space probes for them.
 */
#ifndef _UAPI_GUEST_UDMABUF_H
#define _UAPI_GUEST_UDMABUF_H

#include <linux/types.h>
#include <linux/ioctl.h>

#define UDMABUF_FLAGS_CLOEXEC	0x01

struct udmabuf_create {
	__u32 memfd;
	__u32 flags;
	__u64 offset;
	__u64 size;
};

struct udmabuf_create_item {
	__u32 memfd;
	__u32 __pad;
	__u64 offset;
	__u64 size;
};

struct udmabuf_create_list {
	__u32 flags;
	__u32 count;
	struct udmabuf_create_item list[];
};

#define UDMABUF_CREATE       _IOW('u', 0x42, struct udmabuf_create)
#define UDMABUF_CREATE_LIST  _IOW('u', 0x43, struct udmabuf_create_list)

/*
 * Extensions. Numbers from 0x80 up: upstream's udmabuf numbers its ioctls from 0x42 and
 * answers ENOTTY to anything else, so calling UDMABUF_GET_FEATURES is the probe.
 */

/* Release notification: UDMABUF_CREATE_NOTIFY is available. */
#define UDMABUF_FEATURE_RELEASE_EVENTFD	(1ULL << 0)
/*
 * Pinned-memory accounting is on (module parameter account_pinned): a create charges its pages
 * to the calling user's locked_vm against RLIMIT_MEMLOCK, unless the caller has CAP_IPC_LOCK,
 * and fails with ENOMEM when that would exceed the limit. The charge is dropped exactly once,
 * when the dma-buf is finally released, even if the creator has exited by then.
 */
#define UDMABUF_FEATURE_ACCOUNTING	(1ULL << 1)

struct udmabuf_features {
	__u64 features;		/* out: UDMABUF_FEATURE_* */
	__u64 __reserved[3];	/* out: zero */
};

/*
 * UDMABUF_CREATE_NOTIFY: create a buffer exactly like UDMABUF_CREATE_LIST and bind an eventfd
 * to it. The eventfd is signalled (its counter incremented by 1) exactly once: when the
 * dma-buf is finally released, meaning every fd is closed, every mmap is unmapped and every
 * importer has detached and dropped it, and after its pages are unpinned and its charge is
 * dropped. The driver holds its own reference to the eventfd, so the caller may close its fd.
 *
 *	int efd = eventfd(0, EFD_CLOEXEC);
 *	struct { struct udmabuf_create_notify head; struct udmabuf_create_item item; } arg = {
 *		.head = { .flags = UDMABUF_FLAGS_CLOEXEC, .count = 1, .eventfd = efd },
 *		.item = { .memfd = memfd, .offset = 0, .size = size },
 *	};
 *	int buf = ioctl(dev, UDMABUF_CREATE_NOTIFY, &arg);	// a dma-buf fd, or -1 and errno
 *	...hand buf to a compositor, close it...
 *	uint64_t n;
 *	read(efd, &n, sizeof(n));	// blocks until the last holder let go; n == 1
 *
 * Errors are CREATE_LIST's, plus EBADF or EINVAL when eventfd is not an eventfd and EINVAL
 * when __pad is not zero.
 */
struct udmabuf_create_notify {
	__u32 flags;
	__u32 count;
	__s32 eventfd;
	__u32 __pad;
	struct udmabuf_create_item list[];
};

#define UDMABUF_GET_FEATURES	_IOR('u', 0x80, struct udmabuf_features)
#define UDMABUF_CREATE_NOTIFY	_IOW('u', 0x81, struct udmabuf_create_notify)

#endif /* _UAPI_GUEST_UDMABUF_H */
