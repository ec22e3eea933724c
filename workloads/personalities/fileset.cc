#include "workloads/personalities/fileset.h"

#include <utility>

namespace dfuse::personality {

FilesetLayout::FilesetLayout(std::string root, size_t files, size_t width)
    : root_(std::move(root)), files_(files), width_(width < 2 ? 2 : width) {
  leaf_dirs_ = (files_ + width_ - 1) / width_;
  if (leaf_dirs_ == 0) leaf_dirs_ = 1;
  depth_ = 1;
  for (size_t span = width_; span < leaf_dirs_; span *= width_) depth_++;
}

std::string FilesetLayout::LeafDir(size_t leaf) const {
  // The leaf's index written in base `width`, one digit per level.
  std::vector<size_t> digits(depth_);
  for (size_t l = depth_; l-- > 0; leaf /= width_) digits[l] = leaf % width_;
  std::string path = root_;
  for (size_t d : digits) path += "/d" + std::to_string(d);
  return path;
}

std::string FilesetLayout::FilePath(size_t i) const {
  return LeafDir(i / width_) + "/f" + std::to_string(i);
}

std::vector<std::string> FilesetLayout::Directories() const {
  std::vector<std::string> dirs;
  // Level by level, only prefixes of leaf directories that hold files.
  for (size_t level = 1; level <= depth_; level++) {
    size_t per = 1;
    for (size_t l = level; l < depth_; l++) per *= width_;
    for (size_t leaf = 0; leaf < leaf_dirs_; leaf += per) {
      std::string dir = LeafDir(leaf);
      // Cut the path down to `level` components below the root.
      size_t pos = root_.size();
      for (size_t l = 0; l < level; l++) pos = dir.find('/', pos + 1);
      dirs.push_back(pos == std::string::npos ? dir : dir.substr(0, pos));
    }
  }
  return dirs;
}

FilesetView::FilesetView(std::vector<bool> present)
    : state_(present.size()), slot_(present.size()) {
  for (size_t i = 0; i < present.size(); i++) {
    state_[i] = present[i] ? State::kExisting : State::kAbsent;
    std::vector<size_t>& pool = Pool(state_[i]);
    slot_[i] = pool.size();
    pool.push_back(i);
  }
}

void FilesetView::Move(size_t i, State to) {
  if (state_[i] == to) return;
  if (state_[i] != State::kTaken) {
    // Swap-remove from the current pool.
    std::vector<size_t>& pool = Pool(state_[i]);
    const size_t last = pool.back();
    pool[slot_[i]] = last;
    slot_[last] = slot_[i];
    pool.pop_back();
  }
  state_[i] = to;
  if (to != State::kTaken) {
    std::vector<size_t>& pool = Pool(to);
    slot_[i] = pool.size();
    pool.push_back(i);
  }
}

std::optional<size_t> FilesetView::Take(State from, std::mt19937_64& rng) {
  std::lock_guard<std::mutex> l(mu_);
  const std::vector<size_t>& pool = Pool(from);
  if (pool.empty()) return std::nullopt;
  const size_t i = pool[std::uniform_int_distribution<size_t>(0, pool.size() - 1)(rng)];
  Move(i, State::kTaken);
  return i;
}

std::optional<size_t> FilesetView::TakeExisting(std::mt19937_64& rng) {
  return Take(State::kExisting, rng);
}

std::optional<size_t> FilesetView::TakeAbsent(std::mt19937_64& rng) {
  return Take(State::kAbsent, rng);
}

void FilesetView::Return(size_t i, bool present) {
  std::lock_guard<std::mutex> l(mu_);
  Move(i, present ? State::kExisting : State::kAbsent);
}

std::optional<size_t> FilesetView::PickExisting(std::mt19937_64& rng) {
  std::lock_guard<std::mutex> l(mu_);
  if (existing_.empty()) return std::nullopt;
  return existing_[std::uniform_int_distribution<size_t>(0, existing_.size() - 1)(rng)];
}

void FilesetView::MarkAbsent(size_t i) {
  std::lock_guard<std::mutex> l(mu_);
  if (state_[i] == State::kExisting) Move(i, State::kAbsent);
}

size_t FilesetView::present() const {
  std::lock_guard<std::mutex> l(mu_);
  return existing_.size();
}

}  // namespace dfuse::personality
