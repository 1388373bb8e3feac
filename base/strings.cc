#include "base/strings.h"

namespace posthaste {

bool IsDecimalDigits(std::string_view text) {
  if (text.empty()) return false;
  for (char c : text) {
    if (c < '0' || c > '9') return false;
  }
  return true;
}

std::optional<uint64_t> ParseDecimalU64(std::string_view text) {
  if (!IsDecimalDigits(text)) return std::nullopt;
  uint64_t value = 0;
  for (char c : text) {
    const uint64_t digit = static_cast<uint64_t>(c - '0');
    if (value > (UINT64_MAX - digit) / 10) return std::nullopt;
    value = value * 10 + digit;
  }
  return value;
}

std::optional<uint64_t> ParseDecimalAtMost(std::string_view text, uint64_t max) {
  std::optional<uint64_t> value = ParseDecimalU64(text);
  if (!value.has_value() || *value > max) return std::nullopt;
  return value;
}

}  // namespace posthaste
