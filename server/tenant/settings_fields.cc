#include "server/tenant/settings_fields.h"

#include <algorithm>
#include <cstdint>
#include <optional>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "base/strings.h"

namespace posthaste::server::tenant {
namespace {

constexpr std::string_view kDefault = "default";

template <size_t N>
std::string Joined(const std::array<std::string_view, N>& names, std::string_view separator) {
  std::string out;
  for (std::string_view name : names) {
    if (!out.empty()) out.append(separator);
    out.append(name);
  }
  return out;
}
constexpr std::string_view kNever = "never";

absl::Status Invalid(std::string_view name, std::string_view text, std::string_view expected) {
  return absl::InvalidArgumentError(absl::StrCat(AbslView(name), ": expected ", AbslView(expected),
                                                ", got \"", AbslView(text), "\""));
}

std::optional<uint32_t> ParseU32(std::string_view text) {
  const std::optional<uint64_t> value = ParseDecimalAtMost(text, UINT32_MAX - 1);
  if (!value.has_value()) return std::nullopt;
  return static_cast<uint32_t>(*value);
}

uint32_t* CountField(std::string_view name, storage::TenantServiceSettings* settings) {
  if (name == "list_newest") return &settings->list_newest;
  if (name == "idle_timeout_s") return &settings->idle_timeout_s;
  if (name == "connections_per_user") return &settings->connections_per_user;
  return nullptr;
}

absl::StatusOr<std::string> CanonicalMechanisms(std::string_view text) {
  std::vector<std::string> names;
  for (absl::string_view raw : absl::StrSplit(AbslView(text), ',', absl::SkipWhitespace())) {
    std::string name(absl::StripAsciiWhitespace(raw));
    absl::AsciiStrToUpper(&name);
    if (std::find(kLoginMechanismNames.begin(), kLoginMechanismNames.end(), name) ==
        kLoginMechanismNames.end()) {
      return absl::InvalidArgumentError(absl::StrCat("login_mechanisms: unknown mechanism \"", name,
                                                     "\" (known: ",
                                                     Joined(kLoginMechanismNames, ","), ")"));
    }
    names.push_back(std::move(name));
  }
  if (names.empty()) {
    return absl::InvalidArgumentError(
        "login_mechanisms: name at least one mechanism, or \"default\" for all");
  }
  std::sort(names.begin(), names.end());
  names.erase(std::unique(names.begin(), names.end()), names.end());
  return absl::StrJoin(names, ",");
}

}  // namespace

bool IsTenantSettingName(std::string_view name) {
  return std::find(kTenantSettingNames.begin(), kTenantSettingNames.end(), name) !=
         kTenantSettingNames.end();
}

absl::Status SetTenantSetting(std::string_view name, std::string_view text,
                              storage::TenantServiceSettings* settings) {
  const bool reset = text == kDefault;
  if (name == "login_delay_s") {
    if (reset) {
      settings->login_delay_s.reset();
      return absl::OkStatus();
    }
    const std::optional<uint32_t> value = ParseU32(text);
    if (!value.has_value()) return Invalid(name, text, "seconds or default");
    settings->login_delay_s = *value;
    return absl::OkStatus();
  }
  if (name == "expire_days") {
    if (reset) {
      settings->expire_days.reset();
    } else if (text == kNever) {
      settings->expire_days = storage::TenantServiceSettings::kExpireNever;
    } else {
      const std::optional<uint32_t> value = ParseU32(text);
      if (!value.has_value()) return Invalid(name, text, "days, never or default");
      settings->expire_days = *value;
    }
    return absl::OkStatus();
  }
  if (name == "daily_download_bytes") {
    if (reset) {
      settings->daily_download_bytes = 0;
      return absl::OkStatus();
    }
    const std::optional<uint64_t> value = ParseDecimalU64(text);
    if (!value.has_value()) return Invalid(name, text, "bytes (0: no limit) or default");
    settings->daily_download_bytes = *value;
    return absl::OkStatus();
  }
  if (uint32_t* count = CountField(name, settings); count != nullptr) {
    if (reset) {
      *count = 0;
      return absl::OkStatus();
    }
    const std::optional<uint32_t> value = ParseU32(text);
    if (!value.has_value()) return Invalid(name, text, "a number (0: the default) or default");
    *count = *value;
    return absl::OkStatus();
  }
  if (name == "login_mechanisms") {
    if (reset) {
      settings->login_mechanisms.clear();
      return absl::OkStatus();
    }
    absl::StatusOr<std::string> canonical = CanonicalMechanisms(text);
    if (!canonical.ok()) return canonical.status();
    settings->login_mechanisms = *std::move(canonical);
    return absl::OkStatus();
  }
  if (name == "lang") {
    if (reset) {
      settings->lang.clear();
      return absl::OkStatus();
    }
    std::string tag(text);
    absl::AsciiStrToLower(&tag);
    if (std::find(kTenantLanguageTags.begin(), kTenantLanguageTags.end(), tag) ==
        kTenantLanguageTags.end()) {
      return Invalid(name, text,
                     absl::StrCat("one of ", Joined(kTenantLanguageTags, ", "), " or default"));
    }
    settings->lang = tag == "en" ? std::string() : tag;
    return absl::OkStatus();
  }
  return absl::InvalidArgumentError(
      absl::StrCat("unknown tenant setting \"", AbslView(name), "\" (known: ",
                   Joined(kTenantSettingNames, ", "), ")"));
}

std::string TenantSettingText(std::string_view name, const storage::TenantServiceSettings& settings) {
  if (name == "login_delay_s") {
    return settings.login_delay_s.has_value() ? absl::StrCat(*settings.login_delay_s)
                                              : std::string(kDefault);
  }
  if (name == "expire_days") {
    if (!settings.expire_days.has_value()) return std::string(kDefault);
    if (*settings.expire_days == storage::TenantServiceSettings::kExpireNever) {
      return std::string(kNever);
    }
    return absl::StrCat(*settings.expire_days);
  }
  if (name == "daily_download_bytes") return absl::StrCat(settings.daily_download_bytes);
  storage::TenantServiceSettings copy = settings;
  if (const uint32_t* count = CountField(name, &copy); count != nullptr) {
    return absl::StrCat(*count);
  }
  if (name == "login_mechanisms") {
    return settings.login_mechanisms.empty() ? std::string(kDefault) : settings.login_mechanisms;
  }
  if (name == "lang") return settings.lang.empty() ? std::string(kDefault) : settings.lang;
  return std::string();
}

std::vector<std::pair<std::string_view, std::string>> ChangedTenantSettings(
    const storage::TenantServiceSettings& settings) {
  const storage::TenantServiceSettings defaults;
  std::vector<std::pair<std::string_view, std::string>> out;
  for (std::string_view name : kTenantSettingNames) {
    std::string text = TenantSettingText(name, settings);
    if (text != TenantSettingText(name, defaults)) out.emplace_back(name, std::move(text));
  }
  return out;
}

bool TenantAllowsMechanism(const storage::TenantServiceSettings& settings,
                           std::string_view mechanism) {
  if (settings.login_mechanisms.empty()) return true;
  for (absl::string_view name : absl::StrSplit(settings.login_mechanisms, ',')) {
    if (StdView(name) == mechanism) return true;
  }
  return false;
}

}  // namespace posthaste::server::tenant
