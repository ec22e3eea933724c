// Calls that change the namespace: Create, Mknod, Mkdir, Symlink, Link,
// Unlink, Rmdir, Rename.
#include <fcntl.h>
#include <stdio.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>

#include "storage/attr.h"
#include "storage/names.h"
#include "storage/permission.h"
#include "storage/service.h"

namespace dfuse::storage {
namespace {

// The file types Mknod may create; Linux's mknod treats type 0 as regular.
int MknodType(uint32_t mode, mode_t* type) {
  switch (mode & S_IFMT) {
    case 0:
    case S_IFREG:
      *type = S_IFREG;
      return 0;
    case S_IFIFO:
    case S_IFSOCK:
    case S_IFCHR:
    case S_IFBLK:
      *type = mode & S_IFMT;
      return 0;
    case S_IFDIR:
      return EPERM;  // what mknod(2) says; directories come from Mkdir
    default:
      return EINVAL;
  }
}

// The mode, owner and group of `attr` in a struct stat, for the checks.
struct stat StatOf(const proto::Attr& attr) {
  struct stat st = {};
  st.st_mode = attr.mode();
  st.st_uid = attr.uid();
  st.st_gid = attr.gid();
  return st;
}

}  // namespace

int StorageService::MayRemove(const Call& call, const Node& dir, const std::string& name,
                              proto::Attr* victim) {
  if (Privileged(call.caller())) return victim != nullptr ? Entry(dir, name, victim) : 0;
  proto::Attr local;  // the sticky bit needs the victim's owner
  if (victim == nullptr) victim = &local;
  struct stat dst;
  if (int err = Check(call, dir, kMayWrite | kMayExec, &dst); err != 0) return err;
  if (int err = Entry(dir, name, victim); err != 0) return err;
  if (StickyForbids(call.caller(), dst, victim->uid())) {
    permission_refusals_->Add();
    return EPERM;
  }
  return 0;
}

int StorageService::Own(const Node& parent, const Node& node, const Caller& owner,
                        const proto::MakeRequest& req, struct stat* st) {
  struct stat pst;
  if (int err = parent.Stat(&pst); err != 0) return err;
  // In a set-group-ID directory new files take the directory's group; the
  // kernel already gave new subdirectories S_ISGID as it created them.
  const gid_t gid = (pst.st_mode & S_ISGID) ? pst.st_gid : owner.gid;
  if (::fchownat(node.path_fd(), "", owner.uid, gid, AT_EMPTY_PATH) != 0) return errno;
  if (int err = node.Stat(st); err != 0) return err;
  // The client applied its umask already; undo the server's umask, and put
  // back set-ID bits that chown cleared. mkdir keeps only the sticky bit
  // besides the permissions, plus S_ISGID inherited from the parent.
  if (S_ISLNK(st->st_mode)) return 0;
  mode_t want = req.mode() & 07777;
  if (S_ISDIR(st->st_mode)) want = (want & 01777) | (st->st_mode & S_ISGID);
  if ((st->st_mode & 07777) == want) return 0;
  if (::chmod(node.proc_path().c_str(), want) != 0) return errno;
  return node.Stat(st);
}

int StorageService::Make(const Call& call, Rpc rpc, const proto::MakeRequest& req,
                         proto::EntryReply* reply) {
  std::shared_ptr<Node> parent;
  int err = ResolveDir(call, req.parent(), &parent);
  if (err == 0) err = ValidateName(req.name());
  if (err == 0) err = Check(call, *parent, kMayWrite | kMayExec);
  if (err != 0) return err;
  const int dir = parent->path_fd();
  const char* name = req.name().c_str();
  const mode_t perm = req.mode() & 07777;
  std::shared_ptr<Node> node;
  struct stat st;
  auto sys = [](int rc) { return rc == 0 ? 0 : errno; };
  switch (rpc) {
    case kCreate:
      err = table_->CreateFile(*parent, name, perm, &node, &st);
      break;
    case kMknod: {
      mode_t type;
      if ((err = MknodType(req.mode(), &type)) != 0) return err;
      // Device nodes need CAP_MKNOD on Linux: here, an unsquashed root.
      if ((S_ISCHR(type) || S_ISBLK(type)) && !Privileged(call.caller())) return EPERM;
      err = sys(::mknodat(dir, name, type | perm, static_cast<dev_t>(req.rdev())));
      break;
    }
    case kMkdir:
      err = sys(::mkdirat(dir, name, perm));
      break;
    case kSymlink:
      if ((err = ValidateSymlinkTarget(req.target())) != 0) return err;
      err = sys(::symlinkat(req.target().c_str(), dir, name));
      break;
    default:
      return EINVAL;
  }
  const bool created = err == 0;
  if (!created && !(rpc == kCreate && err == EEXIST && !req.exclusive())) return err;

  // A new regular file is already in hand; anything else is found by name.
  // (A directory, node or symlink removed by another client between its
  // creation and this lookup gives ENOENT, as that race would locally.)
  if (!node && (err = table_->Lookup(*parent, name, &node, &st)) != 0) return err;
  if (created) {
    if ((err = Own(*parent, *node, call.caller(), req, &st)) != 0) return err;
  } else if (S_ISDIR(st.st_mode)) {
    return EISDIR;  // as open(O_CREAT) of an existing directory
  } else if (S_ISLNK(st.st_mode)) {
    return ELOOP;  // as open(O_CREAT | O_NOFOLLOW) of a symlink
  }
  FillAttr(st, node->gfid(), node->generation(), reply->mutable_attr());
  IssueKey(reply->mutable_attr());
  return 0;
}

grpc::Status StorageService::Create(Ctx* ctx, const proto::MakeRequest* req,
                                    proto::EntryReply* reply) {
  const Call call = Begin(kCreate, ctx, reply);
  if (!call.admitted()) return call.refusal();
  return Once(kCreate, req->request_id(), *req, reply,
              [&] { reply->set_err(Make(call, kCreate, *req, reply)); });
}

grpc::Status StorageService::Mknod(Ctx* ctx, const proto::MakeRequest* req,
                                   proto::EntryReply* reply) {
  const Call call = Begin(kMknod, ctx, reply);
  if (!call.admitted()) return call.refusal();
  return Once(kMknod, req->request_id(), *req, reply,
              [&] { reply->set_err(Make(call, kMknod, *req, reply)); });
}

grpc::Status StorageService::Mkdir(Ctx* ctx, const proto::MakeRequest* req,
                                   proto::EntryReply* reply) {
  const Call call = Begin(kMkdir, ctx, reply);
  if (!call.admitted()) return call.refusal();
  return Once(kMkdir, req->request_id(), *req, reply,
              [&] { reply->set_err(Make(call, kMkdir, *req, reply)); });
}

grpc::Status StorageService::Symlink(Ctx* ctx, const proto::MakeRequest* req,
                                     proto::EntryReply* reply) {
  const Call call = Begin(kSymlink, ctx, reply);
  if (!call.admitted()) return call.refusal();
  return Once(kSymlink, req->request_id(), *req, reply,
              [&] { reply->set_err(Make(call, kSymlink, *req, reply)); });
}

grpc::Status StorageService::Link(Ctx* ctx, const proto::LinkRequest* req,
                                  proto::EntryReply* reply) {
  const Call call = Begin(kLink, ctx, reply);
  if (!call.admitted()) return call.refusal();
  return Once(kLink, req->request_id(), *req, reply, [&] {
    std::shared_ptr<Node> node, parent;
    int err = Resolve(call, req->gfid(), &node);
    if (err == 0) err = ResolveDir(call, req->new_parent(), &parent);
    if (err == 0) err = ValidateName(req->new_name());
    if (err == 0) err = Check(call, *parent, kMayWrite | kMayExec);
    // As Linux's protected_hardlinks: linking another user's file needs
    // read and write permission on it.
    if (err == 0 && !Privileged(call.caller())) {
      struct stat st;
      err = node->Stat(&st);
      if (err == 0 && st.st_uid != call.caller().uid &&
          Permission(call.caller(), st, kMayRead | kMayWrite) != 0) {
        permission_refusals_->Add();
        err = EPERM;
      }
    }
    // AT_EMPTY_PATH links the inode itself (needs CAP_DAC_READ_SEARCH); the
    // kernel refuses directories with EPERM, as link(2) does.
    if (err == 0 && ::linkat(node->path_fd(), "", parent->path_fd(), req->new_name().c_str(),
                             AT_EMPTY_PATH) != 0) {
      err = errno;
    }
    if (err == 0) err = Entry(*parent, req->new_name(), reply->mutable_attr());
    reply->set_err(err);
  });
}

int StorageService::Remove(const Call& call, const proto::NameRequest& req, int flags,
                           proto::Attr* unlinked) {
  std::shared_ptr<Node> parent;
  int err = ResolveDir(call, req.parent(), &parent);
  if (err == 0) err = ValidateName(req.name());
  if (err != 0) return err;
  auto locked = dir_locks_.Lock(req.parent());
  // What the name refers to; if the lookup fails, unlinkat says why.
  proto::Attr before;
  err = MayRemove(call, *parent, req.name(), unlinked != nullptr ? &before : nullptr);
  if (err != 0 && err != ENOENT) return err;
  const bool found = err == 0;
  if (::unlinkat(parent->path_fd(), req.name().c_str(), flags) != 0) return errno;
  if (found && unlinked != nullptr) *unlinked = before;
  return 0;
}

grpc::Status StorageService::Unlink(Ctx* ctx, const proto::NameRequest* req,
                                    proto::UnlinkReply* reply) {
  const Call call = Begin(kUnlink, ctx, reply);
  if (!call.admitted()) return call.refusal();
  return Once(kUnlink, req->request_id(), *req, reply, [&] {
    proto::Attr unlinked;
    reply->set_err(Remove(call, *req, 0, &unlinked));
    if (unlinked.gfid() != 0) *reply->mutable_unlinked() = unlinked;
  });
}

grpc::Status StorageService::Rmdir(Ctx* ctx, const proto::NameRequest* req,
                                   proto::ErrReply* reply) {
  const Call call = Begin(kRmdir, ctx, reply);
  if (!call.admitted()) return call.refusal();
  return Once(kRmdir, req->request_id(), *req, reply,
              [&] { reply->set_err(Remove(call, *req, AT_REMOVEDIR, nullptr)); });
}

grpc::Status StorageService::Rename(Ctx* ctx, const proto::RenameRequest* req,
                                    proto::UnlinkReply* reply) {
  const Call call = Begin(kRename, ctx, reply);
  if (!call.admitted()) return call.refusal();
  return Once(kRename, req->request_id(), *req, reply, [&] {
    proto::Attr replaced;
    reply->set_err(Move(call, *req, &replaced));
    if (replaced.gfid() != 0) *reply->mutable_unlinked() = replaced;
  });
}

int StorageService::Move(const Call& call, const proto::RenameRequest& req,
                         proto::Attr* replaced) {
  std::shared_ptr<Node> parent, new_parent;
  int err = ResolveDir(call, req.parent(), &parent);
  if (err == 0) err = ResolveDir(call, req.new_parent(), &new_parent);
  if (err == 0) err = ValidateName(req.name());
  if (err == 0) err = ValidateName(req.new_name());
  // RENAME_WHITEOUT is for overlay file systems, not for clients.
  if (err == 0 && (req.flags() & ~uint32_t{RENAME_NOREPLACE | RENAME_EXCHANGE}) != 0) err = EINVAL;
  if (err != 0) return err;
  auto locked = dir_locks_.Lock(req.parent(), req.new_parent());
  if ((err = MayMove(call, *parent, req.name(), *new_parent, req.new_name(), req.flags())) != 0) {
    return err;
  }
  // Only a plain rename replaces a file; EXCHANGE keeps both, NOREPLACE fails.
  proto::Attr source, target;
  const bool replaces = req.flags() == 0 && Entry(*new_parent, req.new_name(), &target) == 0 &&
                        Entry(*parent, req.name(), &source) == 0 &&
                        source.gfid() != target.gfid();  // two names of one file: a no-op
  if (::renameat2(parent->path_fd(), req.name().c_str(), new_parent->path_fd(),
                  req.new_name().c_str(), req.flags()) != 0) {
    return errno;
  }
  if (replaces) *replaced = target;
  return 0;
}

int StorageService::MayMove(const Call& call, const Node& parent, const std::string& name,
                            const Node& new_parent, const std::string& new_name,
                            uint32_t flags) {
  if (Privileged(call.caller())) return 0;
  proto::Attr source, target;
  if (int err = MayRemove(call, parent, name, &source); err != 0) return err;
  int err = MayRemove(call, new_parent, new_name, &target);
  if (err == ENOENT) {
    // No target: adding a name needs write and search on its directory.
    target.Clear();
    err = Check(call, new_parent, kMayWrite | kMayExec);
  }
  if (err != 0) return err;
  // A directory that changes parent has its ".." rewritten: Linux wants
  // write permission on it (on both, for an exchange).
  if (parent.gfid() == new_parent.gfid()) return 0;
  const bool exchange = flags & RENAME_EXCHANGE;
  for (const proto::Attr* moved : {&source, exchange ? &target : nullptr}) {
    if (moved == nullptr || moved->gfid() == 0 || !S_ISDIR(moved->mode())) continue;
    if (Permission(call.caller(), StatOf(*moved), kMayWrite) != 0) {
      permission_refusals_->Add();
      return EACCES;
    }
  }
  return 0;
}

}  // namespace dfuse::storage
