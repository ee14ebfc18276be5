/* SPDX-License-Identifier: GPL-2.0-only WITH Linux-syscall-note */
/*
 * guest-udmabuf user ABI.
 *
 * The create ioctls are upstream udmabuf's (<linux/udmabuf.h>), which this header includes
 * rather than redefines, so it can be used beside it. Extensions get ioctl numbers upstream
 * can never hand out (type 'u' with numbers from 0x80): a driver without them answers ENOTTY,
 * which is how user space probes for them.
 *
 * Where guest-udmabuf answers differently from upstream:
 *  - Pinned-memory accounting is on by default (UDMABUF_FEATURE_ACCOUNTING below), so a
 *    create that upstream accepts can fail with ENOMEM: under a common 8 MiB RLIMIT_MEMLOCK a
 *    64 MiB buffer does. A VMM that exports guest memory raises its limit (prlimit(2),
 *    `ulimit -l`, systemd's LimitMEMLOCK=, limits.conf) or runs with CAP_IPC_LOCK, as VFIO
 *    users do for their pinned guest RAM; an administrator can set the module parameter
 *    account_pinned=N for upstream's behaviour.
 *  - A memfd fd must be open for writing (the dma-buf is writable: mmap, importers, vmap):
 *    a memfd reopened O_RDONLY, e.g. through /proc/<pid>/fd, fails with EACCES. Upstream
 *    checks nothing.
 *  - Unknown create flags fail with EINVAL.
 *  - A list whose items or extent array would need more than INT_MAX bytes (possible only
 *    with raised list_limit or size_limit_mb) fails with E2BIG before anything is pinned.
 *  - The item __pad is ignored in UDMABUF_CREATE_LIST, as upstream ignores it, and must be
 *    zero in UDMABUF_CREATE_NOTIFY (EINVAL).
 */
#ifndef _UAPI_GUEST_UDMABUF_H
#define _UAPI_GUEST_UDMABUF_H

#include <linux/types.h>
#include <linux/ioctl.h>

#if defined(__KERNEL__)
#include <linux/udmabuf.h>
#elif defined(__has_include)
#if __has_include(<linux/udmabuf.h>)
#include <linux/udmabuf.h>
#endif
#endif

#ifndef UDMABUF_CREATE
/* Only where the system has no <linux/udmabuf.h> (before Linux 4.20): upstream's ABI. */
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
#endif

/*
 * Extensions. Numbers from 0x80 up: upstream's udmabuf numbers its ioctls from 0x42 and
 * answers ENOTTY to anything else, so calling UDMABUF_GET_FEATURES is the probe.
 */

/* Release notification: UDMABUF_CREATE_NOTIFY is available. */
#define UDMABUF_FEATURE_RELEASE_EVENTFD	(1ULL << 0)
/*
 * Pinned-memory accounting is on (module parameter account_pinned): a create charges what it
 * pins to the calling user's locked_vm against RLIMIT_MEMLOCK, unless the caller has
 * CAP_IPC_LOCK, and fails with ENOMEM when that would exceed the limit. What is charged is
 * what stays pinned: whole folios, each counted once per buffer, so a 4 KiB range of a 2 MiB
 * huge page (hugetlb or a shmem transparent huge page) is charged 2 MiB, and a page used twice
 * in one list is charged once. The charge is dropped exactly once, when the dma-buf is finally
 * released, even if the creator has exited by then.
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
 * when the head's or an item's __pad is not zero.
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
