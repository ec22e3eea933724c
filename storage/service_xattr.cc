// Extended attributes: SetXattr, GetXattr, ListXattr, RemoveXattr.
//
// Linux has no *at() form of the xattr calls before 6.13, so they go through
// /proc/self/fd/N of the node's O_PATH descriptor. That magic link names the
// node's own inode (a symlink too) and is not resolved any further, so no
// client-controlled path is ever walked.
#include <sys/xattr.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <string>

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

}  // namespace

grpc::Status StorageService::SetXattr(Ctx*, const proto::XattrRequest* req,
                                      proto::ErrReply* reply) {
  auto t = Time(kSetXattr);
  std::shared_ptr<Node> node;
  int err = table_->Resolve(req->gfid(), &node);
  if (err == 0) err = ValidateXattrName(req->name());
  if (err == 0 && req->value().size() > XATTR_SIZE_MAX) err = E2BIG;
  if (err == 0 && (req->flags() & ~(XATTR_CREATE | XATTR_REPLACE)) != 0) err = EINVAL;
  if (err == 0 && ::setxattr(node->proc_path().c_str(), req->name().c_str(), req->value().data(),
                             req->value().size(), req->flags()) != 0) {
    err = errno;
  }
  reply->set_err(err);
  return grpc::Status::OK;
}

grpc::Status StorageService::GetXattr(Ctx*, const proto::XattrRequest* req,
                                      proto::XattrReply* reply) {
  auto t = Time(kGetXattr);
  std::shared_ptr<Node> node;
  int err = table_->Resolve(req->gfid(), &node);
  if (err == 0) err = ValidateXattrName(req->name());
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
  return grpc::Status::OK;
}

grpc::Status StorageService::ListXattr(Ctx*, const proto::XattrRequest* req,
                                       proto::XattrReply* reply) {
  auto t = Time(kListXattr);
  std::shared_ptr<Node> node;
  int err = table_->Resolve(req->gfid(), &node);
  if (err == 0) {
    std::string names(std::min<uint32_t>(req->size(), XATTR_LIST_MAX), '\0');
    const ssize_t n =
        ::listxattr(node->proc_path().c_str(), req->size() ? names.data() : nullptr, names.size());
    if (n < 0) {
      err = errno;
    } else {
      reply->set_size(static_cast<uint32_t>(n));
      if (req->size() != 0) reply->set_value(names.data(), static_cast<size_t>(n));
    }
  }
  reply->set_err(err);
  return grpc::Status::OK;
}

grpc::Status StorageService::RemoveXattr(Ctx*, const proto::XattrRequest* req,
                                         proto::ErrReply* reply) {
  auto t = Time(kRemoveXattr);
  std::shared_ptr<Node> node;
  int err = table_->Resolve(req->gfid(), &node);
  if (err == 0) err = ValidateXattrName(req->name());
  if (err == 0 && ::removexattr(node->proc_path().c_str(), req->name().c_str()) != 0) {
    err = errno;
  }
  reply->set_err(err);
  return grpc::Status::OK;
}

}  // namespace dfuse::storage
