// Logging setup shared by every daemon: spdlog to stderr, one line per event.
#ifndef DFUSE_UTIL_LOG_H_
#define DFUSE_UTIL_LOG_H_

#include <string>

namespace dfuse {

// Sets the default logger's name and level ("trace", "debug", "info",
// "warn", "error"). Returns false for an unknown level name.
bool InitLogging(const std::string& name, const std::string& level);

}  // namespace dfuse

#endif  // DFUSE_UTIL_LOG_H_
