#include "util/fencing_key.h"

#include <sys/stat.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>

#include "util/hmac.h"

namespace dfuse {

std::unique_ptr<FencingKey> FencingKey::Load(const std::string& path, std::string* error) {
  struct stat st;
  if (::stat(path.c_str(), &st) != 0) {
    *error = "cannot read the fencing key " + path + ": " + std::strerror(errno);
    return nullptr;
  }
  if ((st.st_mode & 077) != 0) {
    *error = "the fencing key " + path + " may be read by others: chmod 600 it";
    return nullptr;
  }
  std::ifstream in(path, std::ios::binary);
  std::stringstream s;
  if (in) s << in.rdbuf();
  if (!in) {
    *error = "cannot read the fencing key " + path;
    return nullptr;
  }
  std::string secret = s.str();
  while (!secret.empty() && (secret.back() == '\n' || secret.back() == '\r')) secret.pop_back();
  if (secret.size() < kMinSecretBytes) {
    *error = "the fencing key " + path + " is shorter than " + std::to_string(kMinSecretBytes) +
             " bytes (tools/dfuse-certs fencing-key makes one)";
    return nullptr;
  }
  return std::make_unique<FencingKey>(std::move(secret));
}

namespace {

// The domain (which kind of proof), fixed-width little-endian integers,
// then the rest: no two inputs encode the same, and a proof of one kind
// is never one of the other.
std::string Message(std::string_view domain, uint64_t gfid, uint64_t token, std::string_view rest) {
  std::string message(domain);
  for (uint64_t v : {gfid, token}) {
    for (int i = 0; i < 8; i++) message.push_back(static_cast<char>((v >> (8 * i)) & 0xff));
  }
  message.append(rest);
  return message;
}

}  // namespace

std::string FencingKey::Prove(uint64_t gfid, uint64_t token, std::string_view holder) const {
  return HmacSha256(secret_, Message("dfuse-fence-v1", gfid, token, holder)).substr(0, kProofBytes);
}

bool FencingKey::Verify(uint64_t gfid, uint64_t token, std::string_view holder,
                        std::string_view proof) const {
  return SameSecret(Prove(gfid, token, holder), proof);
}

std::string FencingKey::ProveHandoff(uint64_t gfid, uint64_t token,
                                     std::string_view handoff) const {
  return HmacSha256(secret_, Message("dfuse-handoff-v2", gfid, token, handoff))
      .substr(0, kProofBytes);
}

bool FencingKey::VerifyHandoff(uint64_t gfid, uint64_t token, std::string_view handoff,
                               std::string_view proof) const {
  return SameSecret(ProveHandoff(gfid, token, handoff), proof);
}

}  // namespace dfuse
