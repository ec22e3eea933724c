// A fileset: N numbered files spread over a directory tree of a given width,
// as filebench lays them out, plus one process's view of which files exist.
#ifndef DFUSE_WORKLOADS_PERSONALITIES_FILESET_H_
#define DFUSE_WORKLOADS_PERSONALITIES_FILESET_H_

#include <cstddef>
#include <cstdint>
#include <mutex>
#include <optional>
#include <random>
#include <string>
#include <vector>

namespace dfuse::personality {

// Where file i lives. Files fill leaf directories `width` at a time; leaf
// directories nest `width` per level, so no directory holds more than
// `width` entries and the tree is as shallow as that allows.
class FilesetLayout {
 public:
  FilesetLayout(std::string root, size_t files, size_t width);

  size_t files() const { return files_; }
  const std::string& root() const { return root_; }
  std::string FilePath(size_t i) const;
  std::string LeafDir(size_t leaf) const;
  size_t leaf_dirs() const { return leaf_dirs_; }
  // Every directory of the tree, parents before children.
  std::vector<std::string> Directories() const;

 private:
  std::string root_;
  size_t files_, width_, leaf_dirs_, depth_;
};

// This process's belief about which files exist. Other nodes may create or
// delete files of a shared fileset behind its back; callers report what they
// found (MarkPresent / MarkAbsent) and the view follows.
class FilesetView {
 public:
  explicit FilesetView(std::vector<bool> present);

  // A random file believed to exist (or not), taken out of circulation until
  // Return() so two threads never create or delete the same file at once.
  std::optional<size_t> TakeExisting(std::mt19937_64& rng);
  std::optional<size_t> TakeAbsent(std::mt19937_64& rng);
  void Return(size_t i, bool present);
  // A random existing file, not taken: for reads and stats that may overlap.
  std::optional<size_t> PickExisting(std::mt19937_64& rng);
  void MarkAbsent(size_t i);
  size_t present() const;

 private:
  enum class State : uint8_t { kExisting, kAbsent, kTaken };
  std::vector<size_t>& Pool(State s) { return s == State::kExisting ? existing_ : absent_; }
  std::optional<size_t> Take(State from, std::mt19937_64& rng);
  void Move(size_t i, State to);  // caller holds mu_

  mutable std::mutex mu_;
  // Two index pools with O(1) random pick, insert and remove: slot_[i] is
  // file i's position in the pool of its state (taken files are in neither).
  std::vector<size_t> existing_, absent_;
  std::vector<State> state_;
  std::vector<size_t> slot_;
};

}  // namespace dfuse::personality

#endif  // DFUSE_WORKLOADS_PERSONALITIES_FILESET_H_
