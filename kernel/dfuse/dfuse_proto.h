/* SPDX-License-Identifier: GPL-2.0 WITH Linux-syscall-note */
/*
 * DFUSE additions to the FUSE protocol: kernel-level leases.
 *
 * Shared by dfuse.ko and the dfuse client daemon, which speaks these
 * messages in its own request loop next to stock libfuse3.
 *
 * DFUSE_LEASE (request, kernel -> daemon): the kernel needs at least
 * @mode on the inode's byte range [@start, @end] before it serves or
 * changes cached state.  The daemon answers once the lease manager has
 * granted it, with the mode it grants (at least the one asked for) and the
 * grant's number (@grant: increasing per daemon, 0 if it has none), or an
 * error.  The kernel drops a grant that raced a release notify and asks
 * again.  With DFUSE_LEASE_ATTR (asked for from NONE), the daemon may
 * send the file's attributes as of the grant along (@attr, flagged
 * DFUSE_LEASE_ATTR in @flags): the kernel then needs no GETATTR before it
 * trusts its cached size and times.
 *
 * DFUSE_NOTIFY_RELEASE (notify, daemon -> kernel): the inode's lease drops
 * to @mode.  With @grant (the number of the grant it takes back), the
 * kernel first lets a task that asked for that grant and has yet to take
 * it in do so and use it once, however long the task takes to run (up to
 * DFUSE_LINGER_MAX_MS): a grant taken back before its first use is only
 * asked for again, and nodes that keep taking a file from each other that
 * way make no progress at all.  With @linger_ms, the kernel then goes on
 * using the lease for up to that long while it is in use: until a grant
 * asked for has been used and nothing is entered any more.  The write(2)
 * of the notify returns when the kernel has stopped
 * new I/O, drained I/O in flight, written back dirty pages and times, and
 * dropped what the new mode no longer covers (pages when dropping to
 * NONE, cached attributes always).  With DFUSE_RELEASE_KEEP_PAGES (to
 * NONE only) the pages stay once written back, unmapped and out of use
 * until the next grant, before which the daemon drops what other nodes
 * wrote in between (FUSE_NOTIFY_INVAL_INODE), or releases again without
 * the flag if it cannot tell what they wrote.  A failed write-back drops
 * them regardless.  DFUSE_RELEASE_UPGRADE (to NONE, with @grant, no
 * linger) marks the release that gives up a READ lease for an upgrade to
 * WRITE a task asked for: @grant is the newest grant it gives up, and
 * answers with later grant numbers, the upgrade's among them, stay valid.
 * It returns -ENOENT for an inode the
 * kernel does not know, which holds nothing.  Because write-back goes
 * through the daemon, the notify must come from a thread that is not
 * serving FUSE requests.
 *
 * Leases are enabled per mount with the "leases" mount option and need the
 * writeback cache.  The first version always asks for the whole file.
 */
#ifndef _DFUSE_PROTO_H
#define _DFUSE_PROTO_H

#include <linux/fuse.h>
#include <linux/types.h>

#define DFUSE_LEASE		4196	/* opcode, above CUSE_INIT (4096) */
#define DFUSE_NOTIFY_RELEASE	100		/* notify code */

enum dfuse_lease_mode {
	DFUSE_LEASE_NONE = 0,
	DFUSE_LEASE_READ = 1,
	DFUSE_LEASE_WRITE = 2,
};

#define DFUSE_LEASE_NOINTR	0x1	/* the kernel cannot back out: ignore interrupts */
#define DFUSE_LEASE_DIR		0x2	/* a directory's: no pages to keep */
#define DFUSE_LEASE_ATTR	0x4	/* in: send @attr along; out: @attr is set */

struct dfuse_lease_in {
	__u32	mode;
	__u32	flags;
	__u64	start;
	__u64	end;
};

struct dfuse_lease_out {
	__u32	mode;
	__u32	grant;
	__u64	attr_valid;	/* as in fuse_attr_out */
	__u32	attr_valid_nsec;
	__u32	flags;
	struct fuse_attr attr;
};

/* The longest linger a release may ask for, and wait for a grant's use. */
#define DFUSE_LINGER_MAX_MS	1000

#define DFUSE_RELEASE_KEEP_PAGES	0x1	/* see DFUSE_NOTIFY_RELEASE */
#define DFUSE_RELEASE_UPGRADE		0x2	/* ditto */

struct dfuse_notify_release_out {
	__u64	nodeid;
	__u32	mode;
	__u32	linger_ms;
	__u64	start;
	__u64	end;
	__u32	flags;
	__u32	grant;
};

#endif /* _DFUSE_PROTO_H */
