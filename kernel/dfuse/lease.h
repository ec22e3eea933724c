/* SPDX-License-Identifier: GPL-2.0 */
/*
 * DFUSE kernel-level leases: the per-inode state and the hooks the FUSE
 * code calls on every path that serves or changes cached state.
 *
 * A leased inode (a regular file on a mount with leases and the writeback
 * cache, and a directory if the mount also has "dirleases") may only use
 * its page cache, cached names and cached attributes under a lease
 * from the daemon: READ to serve them, WRITE to change them.  I/O "enters"
 * the lease for its whole duration; a release notify stops new entries,
 * waits for the entered ones to leave, writes back and drops what the new
 * mode no longer covers, and only then lowers the mode.  A release first
 * lets the task that asked for the grant it takes back use it once.  A
 * release that may linger then lets I/O go on until the lease is done
 * with: no task entered and no grant asked for still unused.  The release
 * an upgrade from READ starts with may keep the pages: nothing enters
 * until the next grant, and the daemon releases again first if they went
 * stale.
 *
 * A mount with leases has SB_NOSEC: after one check finds no set-ID bit
 * and no file capability, writes under the lease stop asking the daemon
 * for security.capability before each write(2).  Every attribute refresh
 * and every release clears S_NOSEC again, so a change made on another
 * node (which takes the lease away first) is checked; the storage service
 * drops set-ID bits and capabilities on every unprivileged write itself,
 * so an xattr set elsewhere without a lease is no way around it either.
 *
 * Lock order: i_rwsem, then the lease; fi->lock, then the lease's spinlock.
 * A task entered in a lease never waits for an i_rwsem: a release waits for
 * the tasks entered, and a directory mutation holds its parents' and
 * victims' i_rwsem while it waits for leases other nodes may give up only
 * after releases of their own.  So write(2), fallocate(2), setattr and
 * llseek enter with i_rwsem held, by dfuse_lease_enter_nested(), which
 * joins a release still draining; copy_file_range(2) copies through the
 * page cache; and a release never takes i_rwsem.  No lease state is held
 * across the acquire upcall; a directory mutation's set keeps the leases
 * it has entered while it asks for the next, in node-ID order.
 */
#ifndef _FS_DFUSE_LEASE_H
#define _FS_DFUSE_LEASE_H

#include <linux/mm_types.h>
#include <linux/spinlock.h>
#include <linux/types.h>
#include <linux/wait.h>

#include "dfuse_proto.h"

struct dentry;
struct file;
struct fuse_conn;
struct inode;
struct iov_iter;
struct kiocb;

struct dfuse_lease {
	spinlock_t lock;		/* protects the fields below */
	wait_queue_head_t waitq;	/* users left, release done */
	u64 gen;			/* bumped by every release but an upgrade's */
	u64 upgrades;			/* upgrades' releases (DFUSE_RELEASE_UPGRADE) */
	u32 upgrade_gone;		/* the newest grant they gave up */
	unsigned int mode;		/* enum dfuse_lease_mode */
	unsigned int users;		/* I/O entered and not yet left */
	bool releasing;			/* a release is running */
	bool lingering;			/* a release waits for a grant's use */
	bool fresh;			/* a grant is asked for or unused */
	bool attr_stale;		/* attributes predate the lease */
	unsigned int asking;		/* tasks waiting for an upcall's answer */
	u32 grant_seen;			/* the newest grant an answer brought */
	u64 cache_gen;			/* directories: names cached under it */
};

void dfuse_lease_init(struct dfuse_lease *lease);

/*
 * Enter the inode's lease in at least @mode for one operation, asking the
 * daemon for it when needed.  Returns 0 (leave with dfuse_lease_exit()) or
 * a negative errno.  A no-op for inodes without leases.
 */
int dfuse_lease_enter(struct inode *inode, unsigned int mode);
/* The same for callers that may hold i_rwsem or be a page fault. */
int dfuse_lease_enter_nested(struct inode *inode, unsigned int mode);
/* Only if held now: neither waits nor asks (-EAGAIN). */
int dfuse_lease_try_enter(struct inode *inode, unsigned int mode);
void dfuse_lease_exit(struct inode *inode);

/* Whether @inode's cached state is only used under a lease. */
bool dfuse_lease_applies(struct inode *inode);

/*
 * write(2): whether @file's writes go through dfuse_lease_write_iter(),
 * which takes i_rwsem and then the lease, and writes to the page cache.
 */
bool dfuse_lease_writes_back(struct file *file);
ssize_t dfuse_lease_write_iter(struct kiocb *iocb, struct iov_iter *from);

/* mmap: the page fault and fault-around hooks. */
vm_fault_t dfuse_lease_fault(struct vm_fault *vmf);
vm_fault_t dfuse_lease_map_pages(struct vm_fault *vmf, pgoff_t start_pgoff,
				 pgoff_t end_pgoff);

/*
 * Until when attributes the daemon just sent may be used without asking
 * again: @attr_valid under a lease, and not past this request without one.
 * Called with fi->lock held.
 */
u64 dfuse_lease_attr_valid(struct inode *inode, u64 attr_valid);
/* Whether the kernel's size and times win over the daemon's (WRITE). */
bool dfuse_lease_owns_attrs(struct inode *inode);
/* Whether an attribute refresh leaves S_NOSEC (called with fi->lock held). */
bool dfuse_lease_keeps_nosec(struct inode *inode);
/* Whether a ctime changed in the cache goes to the daemon at once. */
bool dfuse_lease_sends_ctime(struct inode *inode);
/* Whether a close of @file leaves the cached i_blocks valid. */
bool dfuse_lease_flush_keeps_blocks(struct file *file);
/* Whether a permission check for @mask needs the attributes refreshed. */
bool dfuse_perm_needs_attrs(struct inode *inode, int mask);
/* Whether pages may be read into the page cache now (readahead). */
bool dfuse_lease_may_cache(struct inode *inode);
/* Whether a read leaves @inode's atime as it is (fuse_invalidate_atime()). */
bool dfuse_lease_keeps_atime(struct inode *inode);

/*
 * The leases of a directory mutation's parents and victims (WRITE on
 * each; NULL and repeated entries are skipped; at most DFUSE_SET_MAX),
 * entered together, in an order every node shares.  A no-op without
 * "dirleases".  For callers that hold i_rwsem of the parents and victims
 * (the VFS does).
 */
#define DFUSE_SET_MAX 4
int dfuse_lease_enter_set(struct inode **set, unsigned int n);
void dfuse_lease_exit_set(struct inode **set, unsigned int n);

/* A fresh directory cache generation: never 0, never reused. */
u64 dfuse_lease_new_cache_gen(void);

/*
 * Directory leases (mount option "dirleases", dirlease.c).  A READ lease
 * on a directory covers its attributes and the names cached under it,
 * positive and negative: a name looked up while the lease was held is
 * marked in d_fsdata with the directory's cache generation, which every
 * release to NONE replaces, and is served without asking the daemon while
 * the marker matches.  Creating, removing or renaming a name takes WRITE on
 * the parents (dfuse_lease_enter_set), which revokes every other node's
 * READ first.
 */

/*
 * The generation to mark names with that are looked up now, 0 for none;
 * @lookup_flags with LOOKUP_EXCL or LOOKUP_RENAME_TARGET when the name is
 * about to be created or replaced.
 */
u64 dfuse_dir_sample(struct inode *dir, unsigned int lookup_flags);
/* The same without asking the daemon (the caller has entered the lease). */
u64 dfuse_dir_gen(struct inode *dir);
/* The d_fsdata value of a name looked up under @gen (not 0). */
u64 dfuse_dentry_marker(u64 gen);
/* Whether @entry, whose d_fsdata is @time, is covered by its parent's lease. */
bool dfuse_dentry_leased(const struct dentry *entry, u64 time,
			 unsigned int flags);
/*
 * The permission check of an open (@mask with MAY_OPEN) enters the lease of
 * the regular file it opens; 0 if entered, -ENOENT if it does not apply.
 */
int dfuse_open_enter(struct inode *inode, int mask);
/* The attributes (STATX_*) a change of @dir's names leaves stale. */
u32 dfuse_dir_changed_mask(struct inode *dir);
/*
 * Enter a directory's lease, if held, to fetch attributes under it; 0 if
 * entered.
 */
int dfuse_dir_enter_attrs(struct inode *dir);
void dfuse_dir_exit_attrs(struct inode *dir);

/* DFUSE_NOTIFY_RELEASE. */
int dfuse_lease_release(struct fuse_conn *fc,
			const struct dfuse_notify_release_out *arg);

#endif /* _FS_DFUSE_LEASE_H */
