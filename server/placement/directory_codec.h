// The directory's key schema and value encoding (directory.h describes both), shared by every
// writer (the backend's registration, moves) and the reader (directory_cache.h).
//
// Pure functions; thread-safe. Values come from etcd, i.e. from any writer: decoding checks
// every field and fails with InvalidArgument rather than guessing.
#ifndef POSTHASTE_SERVER_PLACEMENT_DIRECTORY_CODEC_H_
#define POSTHASTE_SERVER_PLACEMENT_DIRECTORY_CODEC_H_

#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "server/placement/directory.h"

namespace posthaste::server::placement {

inline constexpr std::string_view kDefaultDirectoryPrefix = "/posthaste/";

std::string BackendKey(std::string_view prefix, std::string_view name);
std::string TenantKey(std::string_view prefix, std::string_view domain);  // lower-cased
std::string UserKey(std::string_view prefix, std::string_view address);   // lower-cased

std::string EncodeBackend(const BackendEndpoint& backend);  // the name is the key's
std::string EncodePlacement(const PlacementEntry& entry);

// `value` decoded; `name` becomes the backend's name. The ip must be an IPv4 or IPv6 literal,
// ports 0..65535 (absent: 0), the backend name non-empty.
absl::StatusOr<BackendEndpoint> DecodeBackend(std::string_view name, std::string_view value);
absl::StatusOr<PlacementEntry> DecodePlacement(std::string_view value);

// Applies one key's value (empty `value` with `deleted`: the key went) to `snapshot`. Keys
// outside the schema are ignored (OK); a value that does not decode leaves the snapshot without
// that entry and returns InvalidArgument (the caller counts it).
absl::Status ApplyDirectoryKey(std::string_view prefix, std::string_view key,
                               std::string_view value, bool deleted, DirectorySnapshot* snapshot);

}  // namespace posthaste::server::placement

#endif  // POSTHASTE_SERVER_PLACEMENT_DIRECTORY_CODEC_H_
