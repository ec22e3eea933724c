// Fuzzes the storage service's request handling with what a client on the
// network controls: protocol buffers in the wire format, parsed as the RPC's
// request and handed to the service's handler, as gRPC does.
//
// An input is a sequence of calls, each [rpc byte][length byte][request
// bytes]. A GFID field whose value is below 16 is replaced by the n-th GFID
// the service has handed out in this input (the root first), so that the
// fuzzer reaches files beyond the root without guessing 64-bit values; any
// other value is passed as is, as a client guessing GFIDs would. The rpc
// byte also says whom the call acts for (util/caller.h): root, an ordinary
// user, or no one named (the anonymous user), under a rule that squashes
// nothing, so that the permission checks are reached from both sides.
//
// After every input the test checks confinement: nothing outside the
// export changed. Each input starts from an empty export on a small tmpfs
// in a private mount namespace, so that a Fallocate or Write cannot fill
// the machine's memory or disk. Needs root (mount namespace, mknod, chown).
#include <fcntl.h>
#include <ftw.h>
#include <sched.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include <google/protobuf/descriptor.h>
#include <google/protobuf/message.h>
#include <grpcpp/test/server_context_test_spouse.h>

#include "proto/storage.pb.h"
#include "storage/handle_table.h"
#include "storage/service.h"
#include "tests/fuzz/records.h"
#include "util/stats.h"

namespace dfuse::storage {
namespace {

constexpr char kRoot[] = "/tmp/dfuse-fuzz-storage";
const std::string kExport = std::string(kRoot) + "/export";
const std::string kState = std::string(kRoot) + "/state";
const std::string kOutside = std::string(kRoot) + "/outside";
const std::string kSecret = kOutside + "/secret";
constexpr char kSecretData[] = "outside the export";
constexpr size_t kMaxCalls = 24;
constexpr int kRpcs = 23;  // the handlers Dispatch calls

[[noreturn]] void Die(const char* what) {
  std::fprintf(stderr, "fuzz_storage_service: %s: %s\n", what, std::strerror(errno));
  std::abort();
}

int RemoveEntry(const char* path, const struct stat*, int, struct FTW* ftw) {
  if (ftw->level == 0) return 0;  // keep the directory itself
  return ::remove(path) == 0 ? 0 : -1;
}

// Empties a directory (files the service made may be read-only, special or
// have odd names; root removes them all).
void EmptyDir(const std::string& dir) {
  if (::nftw(dir.c_str(), RemoveEntry, 16, FTW_DEPTH | FTW_PHYS) != 0) Die(dir.c_str());
}

// Everything outside the export as it must stay: the secret file's bytes
// and mode, and the entries of the fuzzing root.
std::string OutsideState() {
  std::string state;
  struct stat st;
  if (::stat(kSecret.c_str(), &st) != 0) return "secret gone";
  state += std::to_string(st.st_mode) + ":" + std::to_string(st.st_uid) + ":" +
           std::to_string(st.st_size) + ":" + std::to_string(st.st_nlink) + ";";
  if (FILE* f = std::fopen(kSecret.c_str(), "r")) {
    char buf[64] = {};
    state += std::string(buf, std::fread(buf, 1, sizeof(buf), f));
    std::fclose(f);
  }
  for (const char* dir : {kRoot, kOutside.c_str()}) {
    if (::stat(dir, &st) != 0) return "root gone";
    state += ";" + std::to_string(st.st_nlink) + ":" + std::to_string(st.st_mtim.tv_nsec);
  }
  return state;
}

std::string* expected_outside = nullptr;

void SetUpOnce() {
  // A private tmpfs of 64 MiB: what the service writes stays small and
  // vanishes with the process.
  if (::unshare(CLONE_NEWNS) != 0) Die("unshare(CLONE_NEWNS) (run as root)");
  if (::mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr) != 0) Die("private /");
  ::mkdir(kRoot, 0700);
  if (::mount("dfuse-fuzz", kRoot, "tmpfs", 0, "size=64m,mode=0700") != 0) Die("tmpfs");
  for (const std::string& d : {kExport, kState, kOutside}) {
    if (::mkdir(d.c_str(), 0755) != 0) Die("mkdir");
  }
  FILE* f = std::fopen(kSecret.c_str(), "w");
  if (f == nullptr || std::fputs(kSecretData, f) < 0 || std::fclose(f) != 0) Die("secret");
  if (::chmod(kSecret.c_str(), 0600) != 0) Die("chmod secret");
  expected_outside = new std::string(OutsideState());
}

// The GFID-carrying fields of a request.
bool IsGfidField(const google::protobuf::FieldDescriptor* field) {
  return field->cpp_type() == google::protobuf::FieldDescriptor::CPPTYPE_UINT64 &&
         !field->is_repeated() &&
         (field->name() == "gfid" || field->name() == "parent" || field->name() == "new_parent");
}

class Session {
 public:
  Session() {
    std::string error;
    table_ = HandleTable::Open(kExport, kState, /*shard_id=*/1, /*max_nodes=*/8, &error);
    if (!table_) {
      std::fprintf(stderr, "fuzz_storage_service: %s\n", error.c_str());
      std::abort();
    }
    service_ = std::make_unique<StorageService>(table_.get(), &stats_);
    gfids_.push_back(table_->root()->gfid());
  }

  // Parses `bytes` as request type Req and calls `handler` with it.
  template <typename Req, typename Rep>
  void Call(grpc::Status (StorageService::*handler)(grpc::ServerContext*, const Req*, Rep*),
            std::string_view bytes, int caller) {
    Req req;
    // gRPC would refuse what does not parse too.
    if (!req.ParseFromArray(bytes.data(), static_cast<int>(bytes.size()))) return;
    MapGfids(&req);
    Rep rep;
    grpc::ServerContext ctx;
    grpc::testing::ServerContextTestSpouse spouse(&ctx);
    if (caller == 0) spouse.AddClientMetadata(kCallerKey, "0:0");
    if (caller == 1) spouse.AddClientMetadata(kCallerKey, "1000:1000:100");
    (service_.get()->*handler)(&ctx, &req, &rep);
    Collect(rep);
  }

  void Run(const uint8_t* data, size_t size) {
    fuzz::ForEachRecord(data, size, kMaxCalls,
                        [this](uint8_t rpc, std::string_view bytes) { Dispatch(rpc, bytes); });
  }

 private:
  void Dispatch(uint8_t rpc, std::string_view b) {
    using S = StorageService;
    const int c = (rpc / kRpcs) % 3;
    switch (rpc % kRpcs) {
      case 0:
        return Call(&S::Lookup, b, c);
      case 1:
        return Call(&S::GetAttr, b, c);
      case 2:
        return Call(&S::SetAttr, b, c);
      case 3:
        return Call(&S::Create, b, c);
      case 4:
        return Call(&S::Mknod, b, c);
      case 5:
        return Call(&S::Mkdir, b, c);
      case 6:
        return Call(&S::Symlink, b, c);
      case 7:
        return Call(&S::Link, b, c);
      case 8:
        return Call(&S::Unlink, b, c);
      case 9:
        return Call(&S::Rmdir, b, c);
      case 10:
        return Call(&S::Rename, b, c);
      case 11:
        return Call(&S::Readlink, b, c);
      case 12:
        return Call(&S::ReadDir, b, c);
      case 13:
        return Call(&S::StatFs, b, c);
      case 14:
        return Call(&S::Read, b, c);
      case 15:
        return Call(&S::Write, b, c);
      case 16:
        return Call(&S::Fsync, b, c);
      case 17:
        return Call(&S::Fallocate, b, c);
      case 18:
        return Call(&S::SetXattr, b, c);
      case 19:
        return Call(&S::GetXattr, b, c);
      case 20:
        return Call(&S::ListXattr, b, c);
      case 21:
        return Call(&S::RemoveXattr, b, c);
      case 22:
        return Call(&S::Access, b, c);
    }
  }

  void MapGfids(google::protobuf::Message* req) {
    const auto* desc = req->GetDescriptor();
    const auto* refl = req->GetReflection();
    for (int i = 0; i < desc->field_count(); i++) {
      const auto* field = desc->field(i);
      if (!IsGfidField(field)) continue;
      const uint64_t v = refl->GetUInt64(*req, field);
      if (v < 16) refl->SetUInt64(req, field, gfids_[v % gfids_.size()]);
    }
  }

  // Remembers the GFIDs a reply handed out, as a client would.
  void Collect(const google::protobuf::Message& rep) {
    if (const auto* e = dynamic_cast<const proto::EntryReply*>(&rep)) {
      Remember(e->attr().gfid());
    } else if (const auto* d = dynamic_cast<const proto::ReadDirReply*>(&rep)) {
      for (const auto& entry : d->entries()) Remember(entry.gfid());
    }
  }
  void Remember(uint64_t gfid) {
    if (gfid != 0 && gfids_.size() < 16) gfids_.push_back(gfid);
  }

  StatsRegistry stats_;
  std::unique_ptr<HandleTable> table_;
  std::unique_ptr<StorageService> service_;
  std::vector<uint64_t> gfids_;
};

}  // namespace
}  // namespace dfuse::storage

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  dfuse::storage::SetUpOnce();
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace dfuse::storage;
  {
    Session session;
    session.Run(data, size);
  }
  if (OutsideState() != *expected_outside) {
    std::fprintf(stderr, "fuzz_storage_service: a request changed a file outside the export\n");
    std::abort();
  }
  EmptyDir(kExport);
  EmptyDir(kState);  // the handle log: every input starts afresh
  return 0;
}
