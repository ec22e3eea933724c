// The persistent half of the handle table: an append-only log in the state
// directory mapping shard-local ids to file handles, so that GFIDs handed to
// clients still resolve after the storage process restarts.
#ifndef DFUSE_STORAGE_HANDLE_LOG_H_
#define DFUSE_STORAGE_HANDLE_LOG_H_

#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>

#include "storage/fd.h"

namespace dfuse::storage {

// One exported file as the log remembers it.
struct HandleRecord {
  uint64_t local_id = 0;
  uint64_t generation = 0;
  std::string handle;  // a whole struct file_handle (header included), as bytes
};

using HandleRecords = std::unordered_map<uint64_t, HandleRecord>;

// The file is text: a header line naming the export by its root's handle,
// then one line per record; a later line for the same local id replaces an
// earlier one (inode numbers are reused). A torn last line, left by a crash
// in the middle of a write, is ignored.
class HandleLog {
 public:
  // Opens or creates `<state_dir>/handles.log` and loads its records. Fails
  // (false, *error set) if the file cannot be used or was written for an
  // export other than the one whose root handle is `root_handle`: resolving
  // that export's handles here would reach files outside this export. A log
  // that is mostly superseded lines is rewritten compactly.
  static std::unique_ptr<HandleLog> Open(const std::string& state_dir,
                                         const std::string& root_handle, HandleRecords* records,
                                         std::string* error);

  // Appends one record with a single write(2), so it survives a kill of this
  // process at once and a crash of the machine after the next Sync().
  // Returns 0 or an errno. Safe to call from several threads.
  int Append(const HandleRecord& record);

  // Makes every record appended before the call durable. Returns 0 or an
  // errno. Safe to call from several threads.
  int Sync();

 private:
  explicit HandleLog(Fd fd) : fd_(std::move(fd)) {}

  Fd fd_;
  std::atomic<bool> dirty_{false};
  // One Sync at a time: a caller that finds nothing dirty because another
  // took the flag must not return before that other's fdatasync has.
  std::mutex sync_mu_;
};

}  // namespace dfuse::storage

#endif  // DFUSE_STORAGE_HANDLE_LOG_H_
