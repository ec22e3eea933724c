#include "storage/handle_secret.h"

#include <fcntl.h>
#include <openssl/rand.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "storage/fd.h"
#include "util/hmac.h"

namespace dfuse::storage {

std::unique_ptr<HandleSecret> HandleSecret::OpenOrCreate(const std::string& state_dir,
                                                         std::string* error) {
  const std::string path = state_dir + "/handle.key";
  std::string secret;
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
  if (fd < 0 && errno == ENOENT) {
    // First start: a new secret, written whole before it is used, so a
    // crash leaves either no file or a complete one.
    secret.resize(kSecretBytes);
    if (RAND_bytes(reinterpret_cast<unsigned char*>(secret.data()), kSecretBytes) != 1) {
      *error = "cannot make a handle key: no randomness";
      return nullptr;
    }
    const std::string tmp = path + ".tmp";
    fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600);
    const bool written =
        fd >= 0 &&
        ::write(fd, secret.data(), secret.size()) == static_cast<ssize_t>(secret.size()) &&
        ::fsync(fd) == 0;
    if (fd >= 0) ::close(fd);
    if (!written || ::rename(tmp.c_str(), path.c_str()) != 0) {
      *error = "cannot write the handle key " + path + ": " + std::strerror(errno);
      return nullptr;
    }
    const int dir = ::open(state_dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    const bool synced = dir >= 0 && ::fsync(dir) == 0;
    if (dir >= 0) ::close(dir);
    if (!synced) {
      *error = "cannot sync the state dir " + state_dir + ": " + std::strerror(errno);
      return nullptr;
    }
    return std::make_unique<HandleSecret>(std::move(secret));
  }
  if (fd < 0) {
    *error = "cannot read the handle key " + path + ": " + std::strerror(errno);
    return nullptr;
  }
  const bool read = ReadAll(fd, &secret);
  ::close(fd);
  if (!read || secret.size() != kSecretBytes) {
    *error = "the handle key " + path + " is damaged (" + std::to_string(secret.size()) +
             " bytes): handles clients hold would all be stale; remove it only with the "
             "state directory";
    return nullptr;
  }
  return std::make_unique<HandleSecret>(std::move(secret));
}

uint64_t HandleSecret::KeyOf(uint64_t gfid, uint64_t generation) const {
  std::string message = "dfuse-handle-v1";
  for (uint64_t v : {gfid, generation}) {
    for (int i = 0; i < 8; i++) message.push_back(static_cast<char>((v >> (8 * i)) & 0xff));
  }
  const std::string mac = HmacSha256(secret_, message);
  uint64_t key = 0;
  for (int i = 0; i < 8; i++) key = (key << 8) | static_cast<unsigned char>(mac[i]);
  return key != 0 ? key : 1;  // 0 means "no key" on the wire
}

}  // namespace dfuse::storage
