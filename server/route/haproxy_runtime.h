// Pushes the HAProxy tenant map into a running HAProxy through its runtime API (the "stats
// socket ... level admin" UNIX socket), so routing follows the directory without a reload:
// HAProxy reads map files only when it starts or reloads.
//
// The whole map is replaced atomically with HAProxy's map versions: "prepare map FILE" answers
// "New version created: N"; "add map @N FILE KEY VALUE" fills that version unseen by traffic;
// "commit map @N FILE" makes it current in one step. Each connection carries one line of
// commands separated by ';' (the socket's non-interactive mode: HAProxy answers and closes);
// lines stay under kHaproxyCommandLineBytesMax, below HAProxy's default tune.bufsize.
//
// Threading: pure functions and one blocking call; any thread.
#ifndef POSTHASTE_SERVER_ROUTE_HAPROXY_RUNTIME_H_
#define POSTHASTE_SERVER_ROUTE_HAPROXY_RUNTIME_H_

#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"

namespace posthaste::server::route {

inline constexpr size_t kHaproxyCommandLineBytesMax = 8 * 1024;
inline constexpr size_t kHaproxyReplyBytesMax = 64 * 1024;

// The "KEY VALUE" entries of a map file's text (comments and blank lines left out).
std::vector<std::pair<std::string, std::string>> HaproxyMapEntries(std::string_view map_text);

// The command lines (each without its newline) that replace `map_path`'s contents with
// `entries` in version `version`, the commit last.
std::vector<std::string> HaproxyMapCommitLines(
    std::string_view map_path, int64_t version,
    const std::vector<std::pair<std::string, std::string>>& entries);

// The version in the reply to "prepare map": InvalidArgument for any other reply.
absl::StatusOr<int64_t> ParsePrepareMapReply(std::string_view reply);

// OK when a reply to a line of add/commit commands is empty answers only (newlines); else
// FailedPrecondition carrying HAProxy's first line of text.
absl::Status CheckSilentReply(std::string_view reply);

// Replaces the map `map_path` (as named in HAProxy's configuration) in the HAProxy whose
// runtime API listens on `socket_path` with the entries of `map_text`. Each connection has
// `timeout_ms` for its exchange.
absl::Status PushHaproxyMap(const std::string& socket_path, const std::string& map_path,
                            std::string_view map_text, uint32_t timeout_ms);

}  // namespace posthaste::server::route

#endif  // POSTHASTE_SERVER_ROUTE_HAPROXY_RUNTIME_H_
