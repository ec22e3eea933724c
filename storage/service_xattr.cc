// Extended attributes: SetXattr, GetXattr, ListXattr, RemoveXattr.
//
// Linux has no *at() form of the xattr calls before 6.13, so they go through
// /proc/self/fd/N of the node's O_PATH descriptor. That magic link names the
// node's own inode (a symlink too) and is not resolved any further, so no
// client-controlled path is ever walked.
//
// The fencing token's attribute (kFencingXattr) is the server's own: to
// clients it does not exist. Getting or removing it says ENODATA, setting it
// EPERM (what an unprivileged caller gets for a trusted.* name), and lists
// leave it out.
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/xattr.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <string>
#include <string_view>

#include "storage/fencing.h"
#include "storage/permission.h"
#include "storage/service.h"

namespace dfuse::storage {
namespace {

// What Linux checks before touching the file: ERANGE for an empty or too
// long name, EINVAL for a NUL inside it.
int ValidateXattrName(const std::string& name) {
  if (name.empty() || name.size() > XATTR_NAME_MAX) return ERANGE;
  if (name.find('\0') != std::string::npos) return EINVAL;
  return 0;
}

bool IsHidden(std::string_view name) { return name == kFencingXattr; }

// The node's attribute names ("name\0" each) that `caller` may see,
// without hidden ones.
int ListVisible(const Caller& caller, const std::string& path, std::string* names) {
  // The list may grow between sizing and reading it: then size it again.
  for (;;) {
    const ssize_t size = ::listxattr(path.c_str(), nullptr, 0);
    if (size < 0) return errno;
    names->resize(static_cast<size_t>(size));
    const ssize_t n = ::listxattr(path.c_str(), names->data(), names->size());
    if (n < 0 && errno == ERANGE) continue;
    if (n < 0) return errno;
    names->resize(static_cast<size_t>(n));
    break;
  }
  std::string visible;
  for (size_t pos = 0; pos < names->size();) {
    size_t end = names->find('\0', pos);
    if (end == std::string::npos) end = names->size();
    const std::string_view name(names->data() + pos, end - pos);
    if (!IsHidden(name) && XattrListed(caller, name)) visible.append(name).push_back('\0');
    pos = end + 1;
  }
  *names = std::move(visible);
  return 0;
}

}  // namespace

int StorageService::CheckXattr(const Call& call, const Node& node, const std::string& name,
                               bool change, bool remove) {
  if (Privileged(call.caller())) return 0;
  struct stat st;
  if (int err = node.Stat(&st); err != 0) return err;
  const int err = XattrPermission(call.caller(), st, name, change, remove);
  if (err == EACCES || err == EPERM) permission_refusals_->Add();
  return err;
}

grpc::Status StorageService::SetXattr(Ctx* ctx, const proto::XattrRequest* req,
                                      proto::ErrReply* reply) {
  const Call call = Begin(kSetXattr, ctx, reply);
  if (!call.admitted()) return call.refusal();
  std::shared_ptr<Node> node;
  int err = Resolve(call, req->gfid(), &node);
  if (err == 0) err = ValidateXattrName(req->name());
  if (err == 0 && req->value().size() > XATTR_SIZE_MAX) err = E2BIG;
  if (err == 0 && (req->flags() & ~(XATTR_CREATE | XATTR_REPLACE)) != 0) err = EINVAL;
  if (err == 0 && IsHidden(req->name())) err = EPERM;
  if (err == 0) err = CheckXattr(call, *node, req->name(), /*change=*/true, /*remove=*/false);
  if (err == 0 && ::setxattr(node->proc_path().c_str(), req->name().c_str(), req->value().data(),
                             req->value().size(), req->flags()) != 0) {
    err = errno;
  }
  reply->set_err(err);
  return Done(kSetXattr);
}

grpc::Status StorageService::GetXattr(Ctx* ctx, const proto::XattrRequest* req,
                                      proto::XattrReply* reply) {
  const Call call = Begin(kGetXattr, ctx, reply);
  if (!call.admitted()) return call.refusal();
  std::shared_ptr<Node> node;
  int err = Resolve(call, req->gfid(), &node);
  if (err == 0) err = ValidateXattrName(req->name());
  if (err == 0 && IsHidden(req->name())) err = ENODATA;
  if (err == 0) err = CheckXattr(call, *node, req->name(), /*change=*/false, /*remove=*/false);
  if (err == 0) {
    // No value is larger than XATTR_SIZE_MAX, so a larger buffer is useless.
    std::string value(std::min<uint32_t>(req->size(), XATTR_SIZE_MAX), '\0');
    const ssize_t n = ::getxattr(node->proc_path().c_str(), req->name().c_str(),
                                 req->size() ? value.data() : nullptr, value.size());
    if (n < 0) {
      err = errno;
    } else {
      reply->set_size(static_cast<uint32_t>(n));
      if (req->size() != 0) reply->set_value(value.data(), static_cast<size_t>(n));
    }
  }
  reply->set_err(err);
  return Done(kGetXattr);
}

grpc::Status StorageService::ListXattr(Ctx* ctx, const proto::XattrRequest* req,
                                       proto::XattrReply* reply) {
  const Call call = Begin(kListXattr, ctx, reply);
  if (!call.admitted()) return call.refusal();
  std::shared_ptr<Node> node;
  int err = Resolve(call, req->gfid(), &node);
  // Always read in full: the size a client is told must leave hidden names
  // out as the list does.
  std::string names;
  if (err == 0) err = ListVisible(call.caller(), node->proc_path(), &names);
  if (err == 0 && req->size() != 0 && names.size() > req->size()) err = ERANGE;
  if (err == 0) {
    reply->set_size(static_cast<uint32_t>(names.size()));
    if (req->size() != 0) reply->set_value(std::move(names));
  }
  reply->set_err(err);
  return Done(kListXattr);
}

grpc::Status StorageService::RemoveXattr(Ctx* ctx, const proto::XattrRequest* req,
                                         proto::ErrReply* reply) {
  const Call call = Begin(kRemoveXattr, ctx, reply);
  if (!call.admitted()) return call.refusal();
  std::shared_ptr<Node> node;
  int err = Resolve(call, req->gfid(), &node);
  if (err == 0) err = ValidateXattrName(req->name());
  if (err == 0 && IsHidden(req->name())) err = ENODATA;
  if (err == 0) err = CheckXattr(call, *node, req->name(), /*change=*/true, /*remove=*/true);
  if (err == 0 && ::removexattr(node->proc_path().c_str(), req->name().c_str()) != 0) {
    err = errno;
  }
  reply->set_err(err);
  return Done(kRemoveXattr);
}

}  // namespace dfuse::storage
