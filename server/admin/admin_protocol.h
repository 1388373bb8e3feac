// The admin socket's wire format (DIR/admin.sock, AF_UNIX stream): how `posthaste user ...`,
// `deliver`, `import` reach a running server with the same command forms as offline.
//
// Request (client -> server), all integers little-endian:
//   "PHADMIN1"                 8 bytes, magic and version
//   u32 argc                   1..kAdminArgsMax
//   argc x { u32 length, bytes }   each 0..kAdminArgBytesMax: the argv after the program name
//   u64 stdin length, bytes    0..kAdminStdinBytesMax: what the command reads from stdin
// Response (server -> client):
//   "PHADMIN1", u32 exit status, u64 stdout length, bytes, u64 stderr length, bytes
//
// Decoders are incremental: given a prefix they answer "need more" (std::nullopt), and they
// refuse (InvalidArgument) malformed or over-limit input at the first byte that shows it, before
// buffering the rest. Pure functions of their input; thread-safe.
#ifndef POSTHASTE_SERVER_ADMIN_ADMIN_PROTOCOL_H_
#define POSTHASTE_SERVER_ADMIN_ADMIN_PROTOCOL_H_

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"

namespace posthaste::server::admin {

inline constexpr std::string_view kAdminMagic = "PHADMIN1";
inline constexpr uint32_t kAdminArgsMax = 64;
inline constexpr uint32_t kAdminArgBytesMax = 4096;
inline constexpr uint64_t kAdminStdinBytesMax = uint64_t{1} << 30;  // deliver's own limit
inline constexpr uint64_t kAdminOutputBytesMax = uint64_t{1} << 30;

inline constexpr std::string_view kAdminSocketName = "admin.sock";

struct AdminRequest {
  std::vector<std::string> args;
  std::string stdin_bytes;
};

struct AdminResponse {
  int exit_status = 0;
  std::string out;
  std::string err;
};

std::string EncodeAdminRequest(const AdminRequest& request);
std::string EncodeAdminResponse(const AdminResponse& response);

// A complete request and the bytes it used, or std::nullopt when `bytes` is a valid prefix.
struct DecodedAdminRequest {
  AdminRequest request;
  size_t consumed = 0;
};
absl::StatusOr<std::optional<DecodedAdminRequest>> DecodeAdminRequest(std::string_view bytes);
// Like DecodeAdminRequest, for the response (read by the CLI).
absl::StatusOr<std::optional<AdminResponse>> DecodeAdminResponse(std::string_view bytes);

}  // namespace posthaste::server::admin

#endif  // POSTHASTE_SERVER_ADMIN_ADMIN_PROTOCOL_H_
