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

#endif /* _UAPI_GUEST_UDMABUF_H */
