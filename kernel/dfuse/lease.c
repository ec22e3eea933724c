// SPDX-License-Identifier: GPL-2.0
/*
 * DFUSE kernel-level leases: strongly consistent write-back caching for
 * distributed FUSE file systems.  See lease.h for the rules and
 * dfuse_proto.h for the protocol.
 */

#include "fuse_i.h"

#include <linux/fs.h>
#include <linux/mm.h>
#include <linux/module.h>
#include <linux/pagemap.h>
#include <linux/sched/signal.h>
#include <linux/writeback.h>

enum dfuse_enter_how {
	DFUSE_ENTER_WAIT,	/* top of a system call: wait out any release */
	DFUSE_ENTER_NESTED,	/* may join a release that is still draining */
	DFUSE_ENTER_TRY,	/* neither sleep nor ask the daemon */
};

static bool dfuse_nested(enum dfuse_enter_how how)
{
	return how == DFUSE_ENTER_NESTED;
}

static bool dfuse_try(enum dfuse_enter_how how)
{
	return how == DFUSE_ENTER_TRY;
}

static struct dfuse_lease *lease_of(struct inode *inode)
{
	return &get_fuse_inode(inode)->lease;
}

static bool dfuse_leased(struct inode *inode)
{
	struct fuse_conn *fc = get_fuse_conn(inode);

	if (!fc->dfuse_leases || !fc->writeback_cache)
		return false;
	return S_ISREG(inode->i_mode) ||
	       (S_ISDIR(inode->i_mode) && fc->dfuse_dirleases);
}

/* Whether the lease is held and no release is under way. */
static bool dfuse_lease_held(struct inode *inode)
{
	struct dfuse_lease *l = lease_of(inode);
	bool held;

	spin_lock(&l->lock);
	held = l->mode != DFUSE_LEASE_NONE && !l->releasing;
	spin_unlock(&l->lock);
	return held;
}

/*
 * Directory cache generations come from one counter for all mounts, so a
 * marked name that d_move() takes to another directory never matches its
 * new parent by accident.
 */
static atomic64_t dfuse_cache_gens = ATOMIC64_INIT(0);

u64 dfuse_lease_new_cache_gen(void)
{
	return atomic64_inc_return(&dfuse_cache_gens);
}

void dfuse_lease_init(struct dfuse_lease *lease)
{
	spin_lock_init(&lease->lock);
	init_waitqueue_head(&lease->waitq);
	lease->gen = 0;
	lease->upgrades = 0;
	lease->upgrade_gone = 0;
	lease->mode = DFUSE_LEASE_NONE;
	lease->users = 0;
	lease->releasing = false;
	lease->lingering = false;
	lease->fresh = false;
	lease->attr_stale = false;
	lease->cache_gen = 0;
	lease->asking = 0;
	lease->grant_seen = 0;
}

/*
 * Whether an entry must wait for the running release.  A nested entry may
 * come from a page fault of a task that already entered (read(2) into a
 * mapping of the same file), or run under an i_rwsem that a task entered by
 * one of the stock write-through paths waits for (see
 * dfuse_lease_writes_back), so it joins while the release still waits for
 * users; it only waits once the release is past that point, which never
 * blocks on either.
 */
static bool dfuse_must_wait(struct dfuse_lease *l, enum dfuse_enter_how how)
{
	if (!READ_ONCE(l->releasing))
		return false;
	return !dfuse_nested(how) || READ_ONCE(l->users) == 0;
}

/*
 * Asks the daemon for @mode; @want_attr: and for the file's attributes as
 * of the grant, which it may or may not send along.  Fills @outarg.
 */
static int dfuse_lease_upcall(struct inode *inode, unsigned int mode,
			      enum dfuse_enter_how how, bool want_attr,
			      struct dfuse_lease_out *outarg)
{
	struct fuse_mount *fm = get_fuse_mount(inode);
	struct dfuse_lease_in inarg = {
		.mode = mode,
		.start = 0,
		.end = U64_MAX,
	};
	struct fuse_args args = {};
	int err;

	memset(outarg, 0, sizeof(*outarg));
	if (dfuse_nested(how))
		inarg.flags |= DFUSE_LEASE_NOINTR;
	if (S_ISDIR(inode->i_mode))
		inarg.flags |= DFUSE_LEASE_DIR;
	if (want_attr)
		inarg.flags |= DFUSE_LEASE_ATTR;
	args.opcode = DFUSE_LEASE;
	args.nodeid = get_node_id(inode);
	args.in_numargs = 1;
	args.in_args[0].size = sizeof(inarg);
	args.in_args[0].value = &inarg;
	args.out_numargs = 1;
	args.out_args[0].size = sizeof(*outarg);
	args.out_args[0].value = outarg;
	err = fuse_simple_request(fm, &args);
	if (err == -EINTR && signal_pending(current))
		return -ERESTARTSYS;
	if (err && err != -EINTR && err != -ENOMEM) {
		pr_warn_ratelimited("dfuse: lease request for inode %llu failed: %d\n",
				    get_node_id(inode), err);
		return -EIO;
	}
	if (err)
		return err;
	if (outarg->mode < mode || outarg->mode > DFUSE_LEASE_WRITE ||
	    (outarg->flags & ~DFUSE_LEASE_ATTR))
		return -EIO;
	/* Attributes nobody asked for are not looked at. */
	if (!want_attr)
		outarg->flags &= ~DFUSE_LEASE_ATTR;
	return 0;
}

/* Whether grant number @a is newer than @b (the numbers wrap). */
static bool dfuse_grant_after(u32 a, u32 b)
{
	return (s32)(a - b) > 0;
}

/*
 * Makes fuse_change_attributes drop the reply to any attribute request sent
 * before this point: its attributes may come from before a grant or a
 * release that is being installed.
 */
static void dfuse_lease_new_attr_version(struct inode *inode)
{
	struct fuse_conn *fc = get_fuse_conn(inode);
	struct fuse_inode *fi = get_fuse_inode(inode);

	spin_lock(&fi->lock);
	fi->attr_version = atomic64_inc_return(&fc->attr_version);
	spin_unlock(&fi->lock);
}

/*
 * The attributes cached under the lease are not covered once it is
 * lowered: replies to requests sent before now are dropped, and requests
 * sent from here on see the release (dfuse_lease_attr_valid).
 */
static void dfuse_lease_drop_attrs(struct inode *inode)
{
	dfuse_lease_new_attr_version(inode);
	fuse_invalidate_attr(inode);
}

/*
 * Which grant a task entered under: the lease has not been released since
 * while both counts stand.
 */
struct dfuse_lease_epoch {
	u64 gen;
	u64 upgrades;
};

static struct dfuse_lease_epoch dfuse_lease_epoch(struct dfuse_lease *l)
{
	return (struct dfuse_lease_epoch){ l->gen, l->upgrades };
}

/*
 * The attributes are fresh: unless a release came in between (which drops
 * them, and may be followed by another grant that needs them fetched).
 */
static void dfuse_lease_attrs_fresh(struct inode *inode,
				    struct dfuse_lease_epoch since)
{
	struct dfuse_lease *l = lease_of(inode);

	spin_lock(&l->lock);
	if (l->gen == since.gen && l->upgrades == since.upgrades)
		l->attr_stale = false;
	spin_unlock(&l->lock);
}

/*
 * After a grant that followed NONE, the cached size and times are older
 * than the lease: fetch them before anything trusts them.
 */
static int dfuse_lease_refresh_attrs(struct inode *inode,
				     struct dfuse_lease_epoch since)
{
	int err;

	fuse_invalidate_attr(inode);
	err = fuse_update_attributes(inode, NULL, STATX_BASIC_STATS);
	if (!err)
		dfuse_lease_attrs_fresh(inode, since);
	return err;
}

/*
 * The same, with the attributes the grant brought (DFUSE_LEASE_ATTR):
 * installed as a GETATTR's reply sent when the grant was taken in
 * (@attr_version), so that a release or a change made under the lease
 * since then wins over them.
 */
static int dfuse_lease_install_attrs(struct inode *inode,
				     struct dfuse_lease_out *out,
				     u64 attr_version,
				     struct dfuse_lease_epoch since)
{
	struct fuse_entry_out valid = {
		.attr_valid = out->attr_valid,
		.attr_valid_nsec = out->attr_valid_nsec,
	};

	if (fuse_invalid_attr(&out->attr) ||
	    inode_wrong_type(inode, out->attr.mode)) {
		fuse_make_bad(inode);
		return -EIO;
	}
	fuse_change_attributes(inode, &out->attr, entry_attr_timeout(&valid),
			       attr_version);
	dfuse_lease_attrs_fresh(inode, since);
	return 0;
}

/*
 * Whether an inode has a lease depends on the daemon's answer to FUSE_INIT
 * (the writeback cache), and the root directory can be reached before it
 * comes: an entry decided before it would be left by an exit decided after.
 */
static int dfuse_wait_init(struct fuse_conn *fc, enum dfuse_enter_how how)
{
	if (!READ_ONCE(fc->initialized)) {
		if (dfuse_try(how))
			return -EAGAIN;
		if (dfuse_nested(how))
			wait_event(fc->blocked_waitq, READ_ONCE(fc->initialized));
		else if (wait_event_killable(fc->blocked_waitq,
					     READ_ONCE(fc->initialized)))
			return -EINTR;
	}
	/* Matches smp_wmb() in fuse_set_initialized(). */
	smp_rmb();
	return 0;
}

/*
 * Takes in an upcall's answer (@out's mode and grant number): the newest
 * grant number seen, and the grant itself unless a release processed since
 * the upcall was sent (@gen, @upgrades) may have taken this very grant away.
 * An upgrade's release gives up only the grants up to the one it names, so
 * the WRITE grant the upgrade asked for, numbered after it, is taken in
 * rather than asked for again.  Called with the lease's lock held; the
 * caller enters at once if the grant is installed (true), before a release
 * waiting for the grant's first use can go on.
 */
static bool dfuse_lease_take_in(struct inode *inode, u64 gen, u64 upgrades,
				const struct dfuse_lease_out *out)
{
	struct dfuse_lease *l = lease_of(inode);
	u32 grant = out->grant;

	if (grant && dfuse_grant_after(grant, l->grant_seen))
		l->grant_seen = grant;
	if (l->gen != gen || l->releasing || out->mode <= l->mode)
		return false;
	if (l->upgrades != upgrades &&
	    !(grant && dfuse_grant_after(grant, l->upgrade_gone)))
		return false;
	if (l->mode == DFUSE_LEASE_NONE) {
		/*
		 * A directory's attributes are only trusted once fetched
		 * under the lease anyway.
		 */
		l->attr_stale = S_ISREG(inode->i_mode);
		l->cache_gen = dfuse_lease_new_cache_gen();
	}
	l->mode = out->mode;
	return true;
}

/*
 * Unlocks the lease, waking a release that lingers for a grant to be
 * taken in or used (dfuse_lease_linger) if this task took in an answer
 * since it last unlocked.
 */
static void dfuse_lease_unlock(struct dfuse_lease *l, bool *answered)
{
	bool wake = *answered && l->lingering;

	*answered = false;
	spin_unlock(&l->lock);
	if (wake)
		wake_up_all(&l->waitq);
}

static int __dfuse_lease_enter(struct inode *inode, unsigned int mode,
			       enum dfuse_enter_how how)
{
	struct fuse_conn *fc = get_fuse_conn(inode);
	struct dfuse_lease *l = lease_of(inode);
	struct dfuse_lease_epoch epoch;
	struct dfuse_lease_out out;
	bool answered = false;
	bool carried = false;	/* this task installed @out with its attr */
	u64 attr_version = 0;
	bool want_attr;
	bool stale;
	u64 gen, upgrades;
	int err;

	if (!fc->dfuse_leases)
		return 0;
	err = dfuse_wait_init(fc, how);
	if (err)
		return err;
	if (!dfuse_leased(inode))
		return 0;
	spin_lock(&l->lock);
	for (;;) {
		if (dfuse_must_wait(l, how)) {
			dfuse_lease_unlock(l, &answered);
			if (dfuse_try(how))
				return -EAGAIN;
			if (dfuse_nested(how))
				wait_event(l->waitq, !dfuse_must_wait(l, how));
			else if (wait_event_killable(l->waitq,
						     !dfuse_must_wait(l, how)))
				return -EINTR;
			spin_lock(&l->lock);
			continue;
		}
		if (l->mode >= mode)
			break;
		if (dfuse_try(how)) {
			spin_unlock(&l->lock);
			return -EAGAIN;
		}
		gen = l->gen;
		upgrades = l->upgrades;
		want_attr = l->mode == DFUSE_LEASE_NONE && S_ISREG(inode->i_mode);
		l->fresh = true;
		l->asking++;
		dfuse_lease_unlock(l, &answered);

		err = dfuse_lease_upcall(inode, mode, how, want_attr, &out);
		/*
		 * Attributes asked for before the grant (a LOOKUP, a
		 * permission check) must not come in with the lease's long
		 * timeout.
		 */
		if (!err)
			dfuse_lease_new_attr_version(inode);
		spin_lock(&l->lock);
		l->asking--;
		answered = true;
		if (err) {
			/* No grant is on its way for this task to use. */
			l->fresh = false;
			dfuse_lease_unlock(l, &answered);
			return err;
		}
		carried = dfuse_lease_take_in(inode, gen, upgrades, &out) &&
			  (out.flags & DFUSE_LEASE_ATTR);
		if (carried)
			attr_version = fuse_get_attr_version(fc);
	}
	stale = l->attr_stale;
	epoch = dfuse_lease_epoch(l);
	if (stale && dfuse_try(how)) {
		spin_unlock(&l->lock);
		return -EAGAIN;
	}
	l->users++;
	l->fresh = false;
	dfuse_lease_unlock(l, &answered);
	if (stale) {
		if (carried)
			err = dfuse_lease_install_attrs(inode, &out,
							attr_version, epoch);
		else
			err = dfuse_lease_refresh_attrs(inode, epoch);
		if (err) {
			dfuse_lease_exit(inode);
			return err;
		}
	}
	return 0;
}

int dfuse_lease_enter(struct inode *inode, unsigned int mode)
{
	return __dfuse_lease_enter(inode, mode, DFUSE_ENTER_WAIT);
}

/*
 * An open's permission check needs the file's attributes: without the
 * lease it would fetch them with a GETATTR of its own, and the first
 * read(2) or write(2) would then ask for the lease, whose grant brings
 * them again (DFUSE_LEASE_ATTR).  Entering here the lease the open is for
 * (WRITE if it opens for writing) makes that one upcall do for both.  An
 * open for no access (of a file it has just created) asks for nothing.
 * No lock is held: may_open() runs after the path walk let go of the
 * parent's i_rwsem.
 */
int dfuse_open_enter(struct inode *inode, int mask)
{
	if (!(mask & MAY_OPEN) || !(mask & (MAY_READ | MAY_WRITE | MAY_EXEC)) ||
	    !S_ISREG(inode->i_mode) || !dfuse_leased(inode))
		return -ENOENT;
	return dfuse_lease_enter(inode, (mask & MAY_WRITE) ?
				 DFUSE_LEASE_WRITE : DFUSE_LEASE_READ);
}

/*
 * A permission check for no access at all (an open of a file the task has
 * just created) passes whatever the mode says: on a mount with leases it
 * fetches no attributes for it, where stock FUSE sends a GETATTR.
 */
bool dfuse_perm_needs_attrs(struct inode *inode, int mask)
{
	return !get_fuse_conn(inode)->dfuse_leases ||
	       (mask & (MAY_READ | MAY_WRITE | MAY_EXEC));
}

int dfuse_lease_enter_nested(struct inode *inode, unsigned int mode)
{
	return __dfuse_lease_enter(inode, mode, DFUSE_ENTER_NESTED);
}

int dfuse_lease_try_enter(struct inode *inode, unsigned int mode)
{
	return __dfuse_lease_enter(inode, mode, DFUSE_ENTER_TRY);
}

void dfuse_lease_exit(struct inode *inode)
{
	struct dfuse_lease *l;
	bool wake;

	if (!dfuse_leased(inode))
		return;
	l = lease_of(inode);
	spin_lock(&l->lock);
	if (WARN_ON_ONCE(!l->users)) {
		spin_unlock(&l->lock);
		return;
	}
	wake = --l->users == 0 && (l->releasing || l->lingering);
	spin_unlock(&l->lock);
	if (wake)
		wake_up_all(&l->waitq);
}

bool dfuse_lease_applies(struct inode *inode)
{
	return dfuse_leased(inode);
}

/*
 * The stock write paths that write through (FOPEN_DIRECT_IO, and
 * handle_killpriv_v2 when a set-ID bit is to be cleared) take i_rwsem
 * themselves, inside the lease; a daemon with leases asks for neither
 * (libfuse 3.14 cannot ask for the second).
 */
bool dfuse_lease_writes_back(struct file *file)
{
	struct fuse_file *ff = file->private_data;
	struct inode *inode = file_inode(file);

	return dfuse_leased(inode) && S_ISREG(inode->i_mode) &&
	       !(ff->open_flags & FOPEN_DIRECT_IO) &&
	       !get_fuse_conn(inode)->handle_killpriv_v2;
}

/*
 * write(2) through the page cache, as generic_file_write_iter() does, with
 * the lease entered after i_rwsem (see lease.h).  Entered first, a write
 * waiting for i_rwsem held up the lease's release, and so every node
 * waiting for that lease, behind whatever held i_rwsem: an unlink of the
 * same file on this node, holding it while it waits for the parent's lease
 * another node holds, which in turn waits for this release.  The lease
 * covers the attributes the write trusts (the size for O_APPEND and the end
 * of file, the mode for clearing set-ID bits) and the pages it dirties.  A
 * sync for O_SYNC runs after both are let go: fsync takes i_rwsem itself.
 */
ssize_t dfuse_lease_write_iter(struct kiocb *iocb, struct iov_iter *from)
{
	struct file *file = iocb->ki_filp;
	struct inode *inode = file_inode(file);
	ssize_t ret;

	if (fuse_is_bad(inode))
		return -EIO;
	inode_lock(inode);
	ret = dfuse_lease_enter_nested(inode, DFUSE_LEASE_WRITE);
	if (ret)
		goto out_unlock;
	ret = fuse_update_attributes(inode, file, STATX_SIZE | STATX_MODE);
	if (!ret)
		ret = generic_write_checks(iocb, from);
	if (ret > 0)
		ret = __generic_file_write_iter(iocb, from);
	dfuse_lease_exit(inode);
out_unlock:
	inode_unlock(inode);
	if (ret > 0)
		ret = generic_write_sync(iocb, ret);
	return ret;
}

/* Whether @set[i] already appeared before it. */
static bool dfuse_set_repeats(struct inode **set, unsigned int i)
{
	unsigned int j;

	for (j = 0; j < i; j++) {
		if (set[j] == set[i])
			return true;
	}
	return false;
}

/*
 * Fills @order with @set's inodes, NULL and repeated entries left out, in
 * the order of their node IDs; returns how many there are.
 */
static unsigned int dfuse_set_order(struct inode **set, unsigned int n,
				    struct inode **order)
{
	unsigned int i, j, k = 0;

	for (i = 0; i < n; i++) {
		if (!set[i] || dfuse_set_repeats(set, i))
			continue;
		for (j = k++; j > 0 &&
		     get_node_id(order[j - 1]) > get_node_id(set[i]); j--)
			order[j] = order[j - 1];
		order[j] = set[i];
	}
	return k;
}

/*
 * The leases are entered one by one in the order of their node IDs, and
 * each is waited for with the ones before it held.  Node IDs are storage's
 * file IDs, the same on every node (the root is 1 everywhere), so a set
 * only ever waits for a lease later in that order than all it holds, on
 * whichever node, and sets cannot wait for each other in a circle.  Asking
 * for a missing lease with nothing held instead, then trying the whole set
 * again, let two nodes' mutations of one directory take its lease and the
 * victim's from each other over and over (fileserver at 100% contention:
 * unlink(2)s going round for minutes).  That a release, which waits for the
 * tasks entered in the lease, never waits for a set rests on the lock
 * order: no entered task waits for an i_rwsem (see lease.h).  Nested: the
 * VFS holds i_rwsem of the parents and the victims.
 */
int dfuse_lease_enter_set(struct inode **set, unsigned int n)
{
	struct inode *order[DFUSE_SET_MAX];
	unsigned int i, k;
	int err;

	if (!get_fuse_conn(set[0])->dfuse_dirleases)
		return 0;
	if (WARN_ON_ONCE(n > DFUSE_SET_MAX))
		return -EINVAL;
	k = dfuse_set_order(set, n, order);
	for (i = 0; i < k; i++) {
		err = dfuse_lease_enter_nested(order[i], DFUSE_LEASE_WRITE);
		if (err) {
			while (i--)
				dfuse_lease_exit(order[i]);
			return err;
		}
	}
	return 0;
}

void dfuse_lease_exit_set(struct inode **set, unsigned int n)
{
	unsigned int i;

	if (!get_fuse_conn(set[0])->dfuse_dirleases)
		return;
	for (i = 0; i < n; i++) {
		if (set[i] && !dfuse_set_repeats(set, i))
			dfuse_lease_exit(set[i]);
	}
}

vm_fault_t dfuse_lease_fault(struct vm_fault *vmf)
{
	struct inode *inode = file_inode(vmf->vma->vm_file);
	vm_fault_t ret;
	int err;

	err = dfuse_lease_enter_nested(inode, DFUSE_LEASE_READ);
	if (err)
		return vmf_error(err);
	ret = filemap_fault(vmf);
	dfuse_lease_exit(inode);
	return ret;
}

/* Fault-around maps cached pages only while a lease is at hand. */
vm_fault_t dfuse_lease_map_pages(struct vm_fault *vmf, pgoff_t start_pgoff,
				 pgoff_t end_pgoff)
{
	struct inode *inode = file_inode(vmf->vma->vm_file);
	vm_fault_t ret;

	if (__dfuse_lease_enter(inode, DFUSE_LEASE_READ, DFUSE_ENTER_TRY))
		return 0;
	ret = filemap_map_pages(vmf, start_pgoff, end_pgoff);
	dfuse_lease_exit(inode);
	return ret;
}

/*
 * Another node changes a file's mode, owner or times only under a WRITE
 * lease, which revokes this node's lease first: what this node holds no
 * lease for may change at any time, with nothing to tell it.  Attributes
 * that came without a lease (a LOOKUP, READDIRPLUS, or the GETATTR of a
 * permission check) therefore serve the request that fetched them and are
 * asked for again by the next, as with an attribute timeout of 0; the
 * daemon's long timeout only holds under a lease.  A grant from NONE
 * brings them along (dfuse_lease_install_attrs) or has them fetched again
 * (dfuse_lease_refresh_attrs) before anything trusts them, and a release
 * drops them.
 */
u64 dfuse_lease_attr_valid(struct inode *inode, u64 attr_valid)
{
	if (!dfuse_leased(inode))
		return attr_valid;
	/* Both fields at once: a release lowers the mode and ends together. */
	return dfuse_lease_held(inode) ? attr_valid : 0;
}

bool dfuse_lease_owns_attrs(struct inode *inode)
{
	struct dfuse_lease *l;

	if (!dfuse_leased(inode))
		return true;
	l = lease_of(inode);
	return READ_ONCE(l->mode) == DFUSE_LEASE_WRITE &&
	       !READ_ONCE(l->attr_stale);
}

/*
 * Stock FUSE drops S_NOSEC on every attribute refresh, as another client
 * may have set a set-ID bit or a file capability, and the next write(2)
 * asks for security.capability again.  Under a lease nobody else can: the
 * change would take the lease away first, and every release drops S_NOSEC
 * itself (this node's own chmod and setxattr drop it in the VFS).
 */
bool dfuse_lease_keeps_nosec(struct inode *inode)
{
	return dfuse_leased(inode) && dfuse_lease_held(inode);
}

/*
 * A ctime changed in the cache is sent to the daemon at once (a SETATTR),
 * except for a leased file whose last name is gone: the unlink changed it
 * in storage too, and nobody can look the file up to see it.  The inode is
 * not marked dirty then either: eviction expects a clean one.
 */
bool dfuse_lease_sends_ctime(struct inode *inode)
{
	return !dfuse_leased(inode) || inode->i_nlink;
}

/*
 * A close makes stock FUSE ask the daemon for i_blocks at the next stat(2),
 * since the pages it wrote back may have changed them.  A file opened
 * read-only wrote nothing: on a leased file that GETATTR is saved.
 */
bool dfuse_lease_flush_keeps_blocks(struct file *file)
{
	return dfuse_leased(file_inode(file)) && !(file->f_mode & FMODE_WRITE);
}

bool dfuse_lease_may_cache(struct inode *inode)
{
	return !dfuse_leased(inode) ||
	       READ_ONCE(lease_of(inode)->mode) != DFUSE_LEASE_NONE;
}

/*
 * Stock FUSE marks atime stale after every read, so that the next stat(2)
 * asks the daemon what the read did to it: on a leased inode, whose other
 * attributes stay cached under the lease, that is one GETATTR per stat(2)
 * after a read.  Keep the atime the last grant or GETATTR brought instead,
 * as a noatime mount would (FUSE inodes have S_NOATIME: the kernel never
 * sets atime itself).  Without a lease the attributes are not trusted
 * anyway, and a grant from NONE brings the daemon's atime again.
 */
bool dfuse_lease_keeps_atime(struct inode *inode)
{
	return dfuse_leased(inode);
}

static bool dfuse_writes_done(struct fuse_inode *fi)
{
	bool done;

	spin_lock(&fi->lock);
	done = list_empty(&fi->queued_writes) &&
	       (fi->writectr == 0 || fi->writectr == FUSE_NOWRITE);
	spin_unlock(&fi->lock);
	return done;
}

/*
 * Write back dirty pages and times without i_rwsem (see lease.h).  With
 * temporary pages, page writeback ends before the WRITE request does, so
 * wait for the requests themselves: the daemon must have the data.  Only
 * then the times (as fsync does): sent beside the page writes, as
 * write_inode_now() sends them, they can reach the daemon first.
 *
 * A failed page write is reported to the daemon without being consumed:
 * the application still gets it from its next fsync (the errseq) and its
 * next close (AS_EIO, which fuse_flush tests and clears).
 */
static int dfuse_write_back(struct inode *inode)
{
	struct address_space *mapping = inode->i_mapping;
	struct fuse_inode *fi = get_fuse_inode(inode);
	errseq_t since = filemap_sample_wb_err(mapping);
	int err, err2;

	err = filemap_fdatawrite(mapping);
	filemap_fdatawait_keep_errors(mapping);
	wait_event(fi->page_waitq, dfuse_writes_done(fi));
	err2 = sync_inode_metadata(inode, 1);
	return err ?: err2 ?: filemap_check_wb_err(mapping, since);
}

static bool dfuse_done_with(struct dfuse_lease *l)
{
	bool done;

	spin_lock(&l->lock);
	done = !l->users && !l->fresh;
	spin_unlock(&l->lock);
	return done;
}

/* Whether a task that asked for grant @grant has yet to take it in. */
static bool dfuse_grant_pending(struct dfuse_lease *l, u32 grant)
{
	bool pending;

	spin_lock(&l->lock);
	pending = l->asking && dfuse_grant_after(grant, l->grant_seen);
	spin_unlock(&l->lock);
	return pending;
}

/*
 * Before a release of grant @grant, let a task that asked for it take it
 * in, and so enter it once (dfuse_lease_take_in), however long the task
 * takes to run: the daemon may answer it after sending this release.
 * Then keep the lease for up to @linger_ms while it is in use: the
 * manager revokes early and leaves it to the node to tell a lease it is
 * using (entered, or just granted to a task that has not run yet) from
 * one it merely holds; the release goes ahead as soon as nothing is
 * entered.  Once the grant taken back has been taken in, a task still
 * asking (for a newer grant: an upgrade that waits for this very release)
 * is not waited for.
 */
static void dfuse_lease_linger(struct dfuse_lease *l, u32 grant,
			       unsigned int linger_ms)
{
	if (!grant && !linger_ms)
		return;
	spin_lock(&l->lock);
	l->lingering = true;
	spin_unlock(&l->lock);
	if (grant)
		wait_event_timeout(l->waitq, !dfuse_grant_pending(l, grant),
				   msecs_to_jiffies(DFUSE_LINGER_MAX_MS));
	if (linger_ms)
		wait_event_timeout(l->waitq, dfuse_done_with(l),
				   msecs_to_jiffies(linger_ms));
	spin_lock(&l->lock);
	l->lingering = false;
	spin_unlock(&l->lock);
}

/*
 * DFUSE_RELEASE_KEEP_PAGES: keep the clean pages on a release to NONE (see
 * dfuse_proto.h).  Nothing is entered until the next grant, so they stay
 * unused until the daemon has dropped what is no longer current; mappings
 * are torn down so that a mapped read faults and enters the lease too.
 * Pages whose write-back failed never reached the daemon's storage: they
 * are dropped, keep or not.
 */
static int dfuse_lease_do_release(struct inode *inode,
				  const struct dfuse_notify_release_out *arg)
{
	bool keep_pages = arg->flags & DFUSE_RELEASE_KEEP_PAGES;
	bool upgrade = arg->flags & DFUSE_RELEASE_UPGRADE;
	struct dfuse_lease *l = lease_of(inode);
	unsigned int to = arg->mode;
	unsigned int from;
	int err = 0;
	int ret;

	/* An upgrade's task waits for a grant that needs this release done. */
	if (!upgrade)
		dfuse_lease_linger(l, arg->grant, arg->linger_ms);
	spin_lock(&l->lock);
	while (l->releasing) {
		spin_unlock(&l->lock);
		wait_event(l->waitq, !READ_ONCE(l->releasing));
		spin_lock(&l->lock);
	}
	/*
	 * From here on grants in flight are stale and new I/O waits.  Names
	 * cached under a directory's lease stop being valid at once: they
	 * only ever need the daemon again.
	 */
	l->releasing = true;
	if (upgrade) {
		l->upgrades++;
		if (dfuse_grant_after(arg->grant, l->upgrade_gone))
			l->upgrade_gone = arg->grant;
	} else {
		l->gen++;
	}
	if (to == DFUSE_LEASE_NONE)
		l->cache_gen = dfuse_lease_new_cache_gen();
	while (l->users) {
		spin_unlock(&l->lock);
		wait_event(l->waitq, !READ_ONCE(l->users));
		spin_lock(&l->lock);
	}
	from = l->mode;
	spin_unlock(&l->lock);

	if (S_ISDIR(inode->i_mode))
		goto attrs;	/* no pages of its own */
	if (from == DFUSE_LEASE_WRITE && to != DFUSE_LEASE_WRITE)
		err = dfuse_write_back(inode);
	if (to == DFUSE_LEASE_NONE && keep_pages && !err) {
		unmap_mapping_range(inode->i_mapping, 0, 0, 0);
	} else if (to == DFUSE_LEASE_NONE) {
		ret = invalidate_inode_pages2(inode->i_mapping);
		if (ret)
			pr_warn("dfuse: inode %llu: pages busy on release: %d\n",
				get_node_id(inode), ret);
		err = err ?: ret;
	}
attrs:
	dfuse_lease_drop_attrs(inode);
	/*
	 * S_NOSEC (nothing for a write to clear) was learnt under the lease;
	 * once it is lowered another node may set a set-ID bit.  The flags
	 * change atomically: this path does not take i_rwsem.
	 */
	inode_set_flags(inode, 0, S_NOSEC);

	spin_lock(&l->lock);
	if (l->mode > to)
		l->mode = to;
	l->releasing = false;
	spin_unlock(&l->lock);
	wake_up_all(&l->waitq);
	return err;
}

int dfuse_lease_release(struct fuse_conn *fc,
			const struct dfuse_notify_release_out *arg)
{
	bool keep_pages = arg->flags & DFUSE_RELEASE_KEEP_PAGES;
	struct inode *inode;
	int err = 0;

	if (arg->mode > DFUSE_LEASE_WRITE ||
	    arg->linger_ms > DFUSE_LINGER_MAX_MS ||
	    (arg->flags & ~(DFUSE_RELEASE_KEEP_PAGES | DFUSE_RELEASE_UPGRADE)) ||
	    (keep_pages && arg->mode != DFUSE_LEASE_NONE) ||
	    ((arg->flags & DFUSE_RELEASE_UPGRADE) &&
	     (arg->mode != DFUSE_LEASE_NONE || !arg->grant || arg->linger_ms)))
		return -EINVAL;

	down_read(&fc->killsb);
	inode = fuse_ilookup(fc, arg->nodeid, NULL);
	if (inode) {
		if (dfuse_leased(inode))
			err = dfuse_lease_do_release(inode, arg);
		iput(inode);
	} else {
		err = -ENOENT;
	}
	up_read(&fc->killsb);
	return err;
}

/*
 * A version makes modpost record the sources' hash (srcversion), so a
 * deploy can tell whether the dfuse.ko a node has loaded is the one it
 * installs.
 */
MODULE_VERSION("1");
