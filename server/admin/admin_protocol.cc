#include "server/admin/admin_protocol.h"

#include <algorithm>

#include "absl/strings/str_cat.h"

namespace posthaste::server::admin {
namespace {

void PutU32(std::string* out, uint32_t v) {
  for (int i = 0; i < 4; ++i) out->push_back(static_cast<char>((v >> (8 * i)) & 0xff));
}

void PutU64(std::string* out, uint64_t v) {
  for (int i = 0; i < 8; ++i) out->push_back(static_cast<char>((v >> (8 * i)) & 0xff));
}

// A cursor over a possibly incomplete buffer: reads return false when the bytes end.
class Reader {
 public:
  explicit Reader(std::string_view bytes) : bytes_(bytes) {}

  bool U32(uint32_t* v) {
    if (bytes_.size() - pos_ < 4) return false;
    *v = 0;
    for (int i = 0; i < 4; ++i) {
      *v |= uint32_t{static_cast<uint8_t>(bytes_[pos_ + i])} << (8 * i);
    }
    pos_ += 4;
    return true;
  }
  bool U64(uint64_t* v) {
    if (bytes_.size() - pos_ < 8) return false;
    *v = 0;
    for (int i = 0; i < 8; ++i) {
      *v |= uint64_t{static_cast<uint8_t>(bytes_[pos_ + i])} << (8 * i);
    }
    pos_ += 8;
    return true;
  }
  bool Bytes(uint64_t n, std::string* out) {
    if (bytes_.size() - pos_ < n) return false;
    out->assign(bytes_.data() + pos_, static_cast<size_t>(n));
    pos_ += static_cast<size_t>(n);
    return true;
  }
  // Checks as much of the magic as is there: false + *bad when it differs.
  bool Magic(bool* bad) {
    const size_t have = std::min(bytes_.size() - pos_, kAdminMagic.size());
    if (bytes_.substr(pos_, have) != kAdminMagic.substr(0, have)) {
      *bad = true;
      return false;
    }
    if (have < kAdminMagic.size()) return false;
    pos_ += kAdminMagic.size();
    return true;
  }
  size_t pos() const { return pos_; }

 private:
  std::string_view bytes_;
  size_t pos_ = 0;
};

absl::Status Bad(const std::string& what) {
  return absl::InvalidArgumentError(absl::StrCat("admin protocol: ", what));
}

}  // namespace

std::string EncodeAdminRequest(const AdminRequest& request) {
  std::string out(kAdminMagic);
  PutU32(&out, static_cast<uint32_t>(request.args.size()));
  for (const std::string& arg : request.args) {
    PutU32(&out, static_cast<uint32_t>(arg.size()));
    out += arg;
  }
  PutU64(&out, request.stdin_bytes.size());
  out += request.stdin_bytes;
  return out;
}

std::string EncodeAdminResponse(const AdminResponse& response) {
  std::string out(kAdminMagic);
  PutU32(&out, static_cast<uint32_t>(response.exit_status));
  PutU64(&out, response.out.size());
  out += response.out;
  PutU64(&out, response.err.size());
  out += response.err;
  return out;
}

absl::StatusOr<std::optional<DecodedAdminRequest>> DecodeAdminRequest(std::string_view bytes) {
  using Result = std::optional<DecodedAdminRequest>;
  Reader r(bytes);
  bool bad = false;
  if (!r.Magic(&bad)) {
    if (bad) return Bad("not an admin request (bad magic)");
    return Result();
  }
  uint32_t argc = 0;
  if (!r.U32(&argc)) return Result();
  if (argc == 0 || argc > kAdminArgsMax) {
    return Bad(absl::StrCat("argument count ", argc, " outside 1..", kAdminArgsMax));
  }
  DecodedAdminRequest decoded;
  decoded.request.args.resize(argc);
  for (uint32_t i = 0; i < argc; ++i) {
    uint32_t length = 0;
    if (!r.U32(&length)) return Result();
    if (length > kAdminArgBytesMax) {
      return Bad(absl::StrCat("argument of ", length, " bytes (limit ", kAdminArgBytesMax, ")"));
    }
    if (!r.Bytes(length, &decoded.request.args[i])) return Result();
  }
  uint64_t stdin_length = 0;
  if (!r.U64(&stdin_length)) return Result();
  if (stdin_length > kAdminStdinBytesMax) {
    return Bad(absl::StrCat("stdin of ", stdin_length, " bytes (limit ", kAdminStdinBytesMax, ")"));
  }
  if (!r.Bytes(stdin_length, &decoded.request.stdin_bytes)) return Result();
  decoded.consumed = r.pos();
  return Result(std::move(decoded));
}

absl::StatusOr<std::optional<AdminResponse>> DecodeAdminResponse(std::string_view bytes) {
  using Result = std::optional<AdminResponse>;
  Reader r(bytes);
  bool bad = false;
  if (!r.Magic(&bad)) {
    if (bad) return Bad("not an admin response (bad magic)");
    return Result();
  }
  AdminResponse response;
  uint32_t status = 0;
  if (!r.U32(&status)) return Result();
  if (status > 255) return Bad("exit status out of range");
  response.exit_status = static_cast<int>(status);
  uint64_t length = 0;
  if (!r.U64(&length)) return Result();
  if (length > kAdminOutputBytesMax) return Bad("stdout too long");
  if (!r.Bytes(length, &response.out)) return Result();
  if (!r.U64(&length)) return Result();
  if (length > kAdminOutputBytesMax) return Bad("stderr too long");
  if (!r.Bytes(length, &response.err)) return Result();
  return Result(std::move(response));
}

}  // namespace posthaste::server::admin
