#include "base/strings.h"

#include "absl/strings/str_cat.h"

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

std::string_view FlagName(std::string_view arg) {
  if (arg.substr(0, 2) == "--") arg.remove_prefix(2);
  return arg.substr(0, arg.find('='));
}

absl::StatusOr<std::string> FlagValue(const std::vector<std::string>& args, size_t* i) {
  std::string_view arg = args[*i];
  const std::string_view name = FlagName(arg);
  if (const size_t equals = arg.find('='); equals != std::string_view::npos) {
    return std::string(arg.substr(equals + 1));
  }
  if (*i + 1 < args.size()) return args[++*i];
  return absl::InvalidArgumentError(
      absl::StrCat("flag --", absl::string_view(name.data(), name.size()), " needs a value"));
}

}  // namespace posthaste
