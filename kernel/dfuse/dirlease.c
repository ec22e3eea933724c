// SPDX-License-Identifier: GPL-2.0
/*
 * DFUSE directory leases: a directory's READ lease covers its attributes
 * and the names looked up under it, so path walks stop asking the daemon
 * for a LOOKUP and a GETATTR per component.  See lease.h for the rules and
 * kernel/directory-leases.md for the design.
 *
 * A name is marked with the generation its parent's lease had when the
 * LOOKUP was sent.  Any mutation by another node first takes WRITE on the
 * parent, which releases this node's lease to NONE, and that release
 * replaces the generation before it lets the mutation go ahead: a marker
 * whose generation still matches names what storage holds.  A marker is
 * set after the reply without any check, since one that raced a release
 * simply never matches.
 */

#include "fuse_i.h"

#include <linux/dcache.h>
#include <linux/fs.h>
#include <linux/namei.h>
#include <linux/rcupdate.h>
#include <linux/stat.h>

/*
 * The top two bits.  Jiffies never reach them, so a timeout and a marker
 * cannot be confused, and the stock timeout checks (time_before64) take a
 * marker for a time long past: a name whose marker stopped matching is
 * looked up again.
 */
#define DFUSE_DENTRY_LEASED	(BIT_ULL(63) | BIT_ULL(62))

static bool dfuse_dir_leased(struct inode *dir)
{
	struct fuse_conn *fc = get_fuse_conn(dir);

	return fc->dfuse_dirleases && S_ISDIR(dir->i_mode);
}

u64 dfuse_dir_gen(struct inode *dir)
{
	struct dfuse_lease *l = &get_fuse_inode(dir)->lease;
	u64 gen = 0;

	if (!dfuse_dir_leased(dir))
		return 0;
	spin_lock(&l->lock);
	if (l->mode != DFUSE_LEASE_NONE && !l->releasing)
		gen = l->cache_gen;
	spin_unlock(&l->lock);
	return gen;
}

/*
 * Asks for READ when the directory has no lease.  A failed request only
 * means the name is looked up uncached, as without directory leases.
 *
 * A lookup for an exclusive create (LOOKUP_EXCL: O_CREAT|O_EXCL, mkdir,
 * mknod, symlink, link) or of a rename's target asks for WRITE at once: the
 * change that follows needs it, and taking READ first would cost a second
 * request and make the other nodes give their leases up twice, first to
 * READ and then to NONE.
 */
u64 dfuse_dir_sample(struct inode *dir, unsigned int lookup_flags)
{
	unsigned int mode = DFUSE_LEASE_READ;
	u64 gen;

	if (lookup_flags & (LOOKUP_EXCL | LOOKUP_RENAME_TARGET))
		mode = DFUSE_LEASE_WRITE;
	if (!dfuse_dir_leased(dir))
		return 0;
	if (dfuse_lease_enter_nested(dir, mode))
		return 0;
	gen = dfuse_dir_gen(dir);
	dfuse_lease_exit(dir);
	return gen;
}

u64 dfuse_dentry_marker(u64 gen)
{
	return DFUSE_DENTRY_LEASED | gen;
}

/*
 * Also called under LOOKUP_RCU: nothing here sleeps, and the parent's
 * inode is freed only after a grace period.  A dead connection serves no
 * cached names.  LOOKUP_REVAL (a retry after ESTALE) always asks.
 */
bool dfuse_dentry_leased(const struct dentry *entry, u64 time,
			 unsigned int flags)
{
	struct dfuse_lease *l;
	struct inode *dir;
	bool valid = false;

	if ((time & DFUSE_DENTRY_LEASED) != DFUSE_DENTRY_LEASED ||
	    (flags & LOOKUP_REVAL))
		return false;
	rcu_read_lock();
	dir = d_inode_rcu(READ_ONCE(entry->d_parent));
	if (dir && dfuse_dir_leased(dir) &&
	    READ_ONCE(get_fuse_conn(dir)->connected)) {
		l = &get_fuse_inode(dir)->lease;
		valid = READ_ONCE(l->mode) != DFUSE_LEASE_NONE &&
			READ_ONCE(l->cache_gen) == (time & ~DFUSE_DENTRY_LEASED);
	}
	rcu_read_unlock();
	return valid;
}

/*
 * What a change to a directory's names leaves stale of its attributes.
 * Stock FUSE drops them all, so the next permission check on the directory
 * asked the daemon for its mode again: a GETATTR per create or unlink in a
 * directory a node keeps changing.  A change of names moves only the
 * times, the size and the link count.  With directory leases the mode and
 * the owner stay as long as a lease covers them: a change of those on
 * another node takes the lease away first, and a release drops them all.
 */
u32 dfuse_dir_changed_mask(struct inode *dir)
{
	if (!dfuse_dir_leased(dir))
		return STATX_BASIC_STATS;
	return STATX_BASIC_STATS &
	       ~(STATX_TYPE | STATX_MODE | STATX_UID | STATX_GID | STATX_INO);
}

/*
 * A directory's attributes fetched while its lease is entered keep the
 * daemon's timeout (dfuse_lease_attr_valid) until the lease is released.
 * A permission check does not ask for the lease: the lookup or the change
 * that follows it asks for what it needs, and an exclusive create would
 * otherwise take READ first and make the other nodes give their lease up
 * twice.  Without the lease the attributes serve this check only.
 */
int dfuse_dir_enter_attrs(struct inode *dir)
{
	if (!dfuse_dir_leased(dir))
		return -ENOENT;
	return dfuse_lease_try_enter(dir, DFUSE_LEASE_READ);
}

void dfuse_dir_exit_attrs(struct inode *dir)
{
	dfuse_lease_exit(dir);
}
