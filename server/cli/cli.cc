#include "server/cli/cli.h"

#include <openssl/mem.h>
#include <sys/stat.h>
#include <termios.h>
#include <unistd.h>

#include <algorithm>
#include <fstream>
#include <istream>
#include <map>
#include <memory>
#include <optional>
#include <ostream>
#include <sstream>
#include <string_view>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "base/status_macros.h"
#include "base/strings.h"
#include "base/utf8.h"
#include "server/admin/admin_socket.h"
#include "server/auth/passwd_file.h"
#include "server/auth/password_hash.h"
#include "server/auth/scram.h"
#include "server/auth/utf8_credential.h"
#include "server/placement/mailbox_move.h"
#include "server/placement/placement_admin.h"
#include "server/placement/tenant_move.h"
#include "server/pop3_import/pop3_import.h"
#include "server/retention/retention_job.h"
#include "server/route/route_service.h"
#include "server/serve.h"
#include "server/tenant/policy_fields.h"
#include "server/tenant/settings_fields.h"
#include "storage/mail_store.h"
#include "storage/migration/maildir_import.h"
#include "storage/migration/mbox_import.h"
#include "storage/store_error.h"

namespace posthaste::server::cli {
namespace {

// The largest message `deliver` reads from stdin; the store applies the real (smaller) limit.
constexpr size_t kDeliverInputBytesMax = size_t{1} << 30;

struct ParsedArgs {
  std::map<std::string, std::string, std::less<>> flags;
  std::vector<std::string> positional;
  // Set when the command arrived on a running server's admin socket: its open store.
  storage::MailStore* online_store = nullptr;
  // Likewise: its retention job (`store expire` runs a pass of it).
  retention::RetentionJob* online_retention = nullptr;

  const std::string& data_dir() const { return flags.at("data_dir"); }
};

using Handler = absl::Status (*)(const ParsedArgs&, const CliStreams&);

struct Command {
  std::vector<std::string_view> words;
  std::string_view positional_usage;  // after --data_dir=DIR
  std::string_view summary;
  size_t min_positional;
  size_t max_positional;
  Handler run;
  std::vector<std::string_view> flags = {};  // accepted besides --data_dir
  // What the command reads from stdin (forwarded to a running server by the client).
  enum class Stdin { kNone, kPasswordLine, kAll } stdin_use = Stdin::kNone;
  // Needs the store to itself: refused while the server runs.
  bool offline_only = false;
};

// ---- helpers ----

std::string OneLine(std::string_view text) {
  std::string out(text);
  std::replace(out.begin(), out.end(), '\n', ' ');
  std::replace(out.begin(), out.end(), '\r', ' ');
  return out;
}

// The store the command works on: the running server's (online), or opened here.
absl::StatusOr<std::shared_ptr<storage::MailStore>> OpenStore(const ParsedArgs& args, bool create) {
  if (args.online_store != nullptr) {
    return std::shared_ptr<storage::MailStore>(args.online_store, [](storage::MailStore*) {});
  }
  const std::string& data_dir = args.data_dir();
  if (!create) {
    struct stat st;
    if (stat(data_dir.c_str(), &st) != 0) {
      return absl::NotFoundError(absl::StrCat("no data directory at ", data_dir));
    }
  }
  storage::StoreOptions options;
  options.data_dir = data_dir;
  options.create_if_missing = create;
  PH_ASSIGN_OR_RETURN(std::unique_ptr<storage::MailStore> store, storage::MailStore::Open(options));
  return std::shared_ptr<storage::MailStore>(std::move(store));
}

// The address as typed (domain lowercased), validated. The store finds the account whatever
// the case; messages echo the operator's spelling.
absl::StatusOr<std::string> Address(std::string_view raw) {
  absl::StatusOr<storage::ParsedAddress> address = storage::ParseAddress(raw);
  if (!address.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat("malformed address \"", AbslView(raw), "\": ", address.status().message()));
  }
  return std::move(address->display);
}

// What the store said, by its error kind (storage/store_error.h).
bool IsUnknownAccount(const absl::Status& status) {
  return storage::ErrorOf(status) == storage::StoreError::kUnknownAccount;
}
bool IsUnknownTenant(const absl::Status& status) {
  return storage::ErrorOf(status) == storage::StoreError::kUnknownTenant;
}

absl::Status UnknownUser(std::string_view address) {
  return absl::NotFoundError(absl::StrCat("unknown user ", AbslView(address)));
}

// Turns terminal echo off on fd 0 for its lifetime (password prompts).
class EchoOff {
 public:
  EchoOff() {
    if (tcgetattr(0, &saved_) == 0) {
      termios quiet = saved_;
      quiet.c_lflag &= ~static_cast<tcflag_t>(ECHO);
      active_ = tcsetattr(0, TCSAFLUSH, &quiet) == 0;
    }
  }
  ~EchoOff() {
    if (active_) tcsetattr(0, TCSAFLUSH, &saved_);
  }

 private:
  termios saved_{};
  bool active_ = false;
};

// Reads the first line of stdin (without its LF or CRLF) as a password; on a terminal,
// prompts without echo.
absl::StatusOr<std::string> ReadPassword(const CliStreams& io) {
  std::optional<EchoOff> echo_off;
  if (io.in_is_terminal) {
    *io.err << "Password: " << std::flush;
    echo_off.emplace();
  }
  std::istream& in = *io.in;
  std::string line;
  char c;
  while (in.get(c) && c != '\n') {
    line.push_back(c);
    if (line.size() > auth::kPasswordBytesMax + 1) {
      return absl::InvalidArgumentError(
          absl::StrCat("password longer than ", auth::kPasswordBytesMax, " bytes"));
    }
  }
  if (io.in_is_terminal) *io.err << "\n" << std::flush;
  if (!line.empty() && line.back() == '\r') line.pop_back();
  if (line.empty()) {
    return absl::InvalidArgumentError("empty password (give the password as one line on stdin)");
  }
  if (line.size() > auth::kPasswordBytesMax) {
    return absl::InvalidArgumentError(
        absl::StrCat("password longer than ", auth::kPasswordBytesMax, " bytes"));
  }
  return line;
}

absl::StatusOr<std::string> ReadAll(std::istream& in, size_t max_bytes) {
  std::string data;
  char buffer[1 << 16];
  while (in.read(buffer, sizeof(buffer)) || in.gcount() > 0) {
    data.append(buffer, static_cast<size_t>(in.gcount()));
    if (data.size() > max_bytes) {
      return absl::ResourceExhaustedError(
          absl::StrCat("message on stdin is larger than ", max_bytes, " octets"));
    }
  }
  return data;
}

// Progress on stderr: redrawn in place on a terminal, one line per report otherwise.
void ShowProgress(const CliStreams& io, std::string_view text, bool final_report) {
  if (io.err_is_terminal) {
    *io.err << "\r" << text << (final_report ? "\n" : "") << std::flush;
  } else {
    *io.err << text << "\n" << std::flush;
  }
}

// A limit flag: a non-negative integer, 0 or "unlimited" meaning no limit.
absl::StatusOr<std::optional<uint64_t>> LimitFlag(const ParsedArgs& args, std::string_view name) {
  auto it = args.flags.find(name);
  if (it == args.flags.end()) return std::optional<uint64_t>();
  if (it->second == "unlimited") return std::optional<uint64_t>(0);
  const std::optional<uint64_t> value = ParseDecimalU64(it->second);
  if (!value.has_value()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "--", AbslView(name), ": expected a number or \"unlimited\", got \"", it->second, "\""));
  }
  return value;
}

std::string LimitText(uint64_t value) {
  return value == 0 ? std::string("unlimited") : absl::StrCat(value);
}

// ---- stored hashes: --hash, --password_scheme, passwd-file import ----

// What `user add` and `user passwd` store: the --hash given (checked, stored as given; no SCRAM
// verifiers, since there is no password to derive them from), or the password on stdin hashed
// with its SCRAM verifiers.
struct StoredPassword {
  std::string hash;
  storage::ScramVerifiers scram;
};

// What the command line and stdin give, checked before any store is opened.
struct PasswordInput {
  std::optional<std::string> hash;           // --hash
  std::string password;                      // else, from stdin
  std::optional<auth::HashSetting> setting;  // --password_scheme
};

absl::StatusOr<PasswordInput> ReadPasswordInput(const ParsedArgs& args, const CliStreams& io) {
  PasswordInput input;
  if (auto given = args.flags.find("hash"); given != args.flags.end()) {
    if (args.flags.count("password_scheme") != 0) {
      return absl::InvalidArgumentError("--hash and --password_scheme exclude each other");
    }
    absl::StatusOr<auth::ParsedStoredHash> parsed = auth::ParseStoredHash(given->second);
    if (!parsed.ok())
      return absl::InvalidArgumentError(absl::StrCat("--hash: ", parsed.status().message()));
    if (absl::Status cost = auth::CheckHashCost(*parsed, auth::HashCostLimits{}); !cost.ok()) {
      return absl::InvalidArgumentError(absl::StrCat("--hash: ", cost.message()));
    }
    input.hash = given->second;
    return input;
  }
  if (auto scheme = args.flags.find("password_scheme"); scheme != args.flags.end()) {
    PH_ASSIGN_OR_RETURN(input.setting, auth::ParseHashSetting(scheme->second));
  }
  PH_ASSIGN_OR_RETURN(input.password, ReadPassword(io));
  return input;
}

// The hash at --password_scheme, else the tenant's scheme (`tenant policy --password_scheme`),
// else auth::kDefaultHashSetting; with its SCRAM verifiers.
absl::StatusOr<StoredPassword> MakeStoredPassword(PasswordInput input, storage::MailStore& store,
                                                  std::string_view address) {
  if (input.hash.has_value()) return StoredPassword{.hash = *std::move(input.hash)};
  auth::HashSetting setting = auth::kDefaultHashSetting;
  if (input.setting.has_value()) {
    setting = *input.setting;
  } else if (absl::StatusOr<storage::TenantInfo> tenant =
                 store.GetTenant(address.substr(address.rfind('@') + 1));
             tenant.ok()) {
    setting = auth::TenantHashSetting(tenant->policy.password_scheme, setting);
  }
  // RFC 6856 "UTF8 USER" and RFC 4616: logins compare SASLprep'd passwords, so the hash is
  // made of the prepared form (server/auth/utf8_credential.h). Bytes that are not UTF-8 are
  // kept as given: a login in another charset sends them unprepared too.
  if (IsValidUtf8(input.password)) {
    absl::StatusOr<std::string> prepared =
        auth::NormalizeUtf8Credential(input.password, auth::Utf8CredentialUse::kStored);
    if (!prepared.ok()) {
      OPENSSL_cleanse(input.password.data(), input.password.size());
      return absl::InvalidArgumentError(absl::StrCat("password has ", prepared.status().message()));
    }
    OPENSSL_cleanse(input.password.data(), input.password.size());
    input.password = *std::move(prepared);
  }
  StoredPassword stored;
  PH_ASSIGN_OR_RETURN(stored.hash, auth::HashPassword(input.password, setting));
  PH_ASSIGN_OR_RETURN(auth::ScramVerifierPair scram, auth::MakeScramVerifiers(input.password));
  OPENSSL_cleanse(input.password.data(), input.password.size());
  stored.scram = {.sha1 = std::move(scram.sha1), .sha256 = std::move(scram.sha256)};
  return stored;
}

struct PasswdImportCounts {
  uint64_t added = 0, updated = 0, unchanged = 0, failed = 0;
};

// One passwd-file entry into the store: created, its hash replaced when it differs, or left.
absl::Status ImportPasswdEntry(storage::MailStore& store, const auth::PasswdFileEntry& entry,
                               const std::optional<std::string>& domain,
                               PasswdImportCounts* counts) {
  std::string user = entry.user;
  if (user.find('@') == std::string::npos) {
    if (!domain.has_value()) {
      return absl::InvalidArgumentError(
          absl::StrCat("user \"", user, "\" has no @domain (give --domain=DOMAIN)"));
    }
    absl::StrAppend(&user, "@", *domain);
  }
  PH_ASSIGN_OR_RETURN(std::string address, Address(user));
  absl::StatusOr<storage::AccountInfo> account = store.GetAccount(address);
  if (IsUnknownAccount(account.status())) {
    PH_RETURN_IF_ERROR(store.CreateAccount(address, entry.stored_hash).status());
    ++counts->added;
    return absl::OkStatus();
  }
  PH_RETURN_IF_ERROR(account.status());
  if (account->password_hash == entry.stored_hash) {
    ++counts->unchanged;
    return absl::OkStatus();
  }
  PH_RETURN_IF_ERROR(store.SetPasswordHash(address, entry.stored_hash));
  ++counts->updated;
  return absl::OkStatus();
}

absl::Status ImportPasswdFileCommand(const ParsedArgs& args, const CliStreams& io) {
  const std::string& path = args.positional[0];
  std::optional<std::string> domain;
  if (auto it = args.flags.find("domain"); it != args.flags.end()) {
    absl::StatusOr<std::string> normalized = storage::NormalizeDomain(it->second);
    if (!normalized.ok()) {
      return absl::InvalidArgumentError(absl::StrCat("--domain: malformed domain \"", it->second,
                                                     "\": ", normalized.status().message()));
    }
    domain = *normalized;
  }
  std::string default_scheme = "CRYPT";
  if (auto it = args.flags.find("scheme"); it != args.flags.end()) default_scheme = it->second;
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat("cannot open ", path));
  PH_ASSIGN_OR_RETURN(auto store, OpenStore(args, /*create=*/true));
  constexpr uint64_t kProgressEveryLines = 1000;
  PasswdImportCounts counts;
  std::string line;
  bool too_long = false;
  uint64_t line_number = 0;
  auto report = [&](const absl::Status& error) {
    ++counts.failed;
    *io.err << path << ":" << line_number << ": " << OneLine(StdView(error.message())) << "\n";
  };
  while (auth::ReadPasswdFileLine(in, &line, &too_long)) {
    ++line_number;
    if (too_long) {
      report(absl::InvalidArgumentError(
          absl::StrCat("line longer than ", auth::kPasswdFileLineBytesMax, " bytes")));
      continue;
    }
    absl::StatusOr<std::optional<auth::PasswdFileEntry>> entry =
        auth::ParsePasswdFileLine(line, default_scheme);
    if (!entry.ok()) {
      report(entry.status());
    } else if (entry->has_value()) {
      if (absl::Status imported = ImportPasswdEntry(*store, **entry, domain, &counts);
          !imported.ok()) {
        report(imported);
      }
    }
    if (line_number % kProgressEveryLines == 0) {
      ShowProgress(io, absl::StrCat("posthaste: import passwd-file: ", line_number, " lines"),
                   false);
    }
  }
  if (line_number >= kProgressEveryLines) {
    ShowProgress(io, absl::StrCat("posthaste: import passwd-file: ", line_number, " lines"), true);
  }
  if (in.bad()) return absl::DataLossError(absl::StrCat("read error in ", path));
  *io.out << "passwd-file " << path << ": " << line_number << " lines; " << counts.added
          << " added, " << counts.updated << " updated, " << counts.unchanged << " unchanged, "
          << counts.failed << " refused\n";
  if (counts.failed != 0) {
    return absl::InvalidArgumentError(
        absl::StrCat(counts.failed, " lines refused (listed above with their line numbers)"));
  }
  return absl::OkStatus();
}

// ---- subcommands ----

absl::Status UserAdd(const ParsedArgs& args, const CliStreams& io) {
  PH_ASSIGN_OR_RETURN(std::string address, Address(args.positional[0]));
  PH_ASSIGN_OR_RETURN(PasswordInput input, ReadPasswordInput(args, io));
  PH_ASSIGN_OR_RETURN(auto store, OpenStore(args, /*create=*/true));
  PH_ASSIGN_OR_RETURN(StoredPassword stored, MakeStoredPassword(std::move(input), *store, address));
  absl::StatusOr<storage::AccountInfo> created =
      store->CreateAccount(address, stored.hash, stored.scram);
  // AlreadyExists names the existing account's spelling when it differs.
  PH_RETURN_IF_ERROR(created.status());
  *io.out << "added " << created->display_address << "\n";
  return absl::OkStatus();
}

absl::Status UserDel(const ParsedArgs& args, const CliStreams& io) {
  PH_ASSIGN_OR_RETURN(std::string address, Address(args.positional[0]));
  PH_ASSIGN_OR_RETURN(auto store, OpenStore(args, /*create=*/false));
  absl::Status deleted = store->DeleteAccount(address);
  if (IsUnknownAccount(deleted)) return UnknownUser(address);
  PH_RETURN_IF_ERROR(deleted);
  *io.out << "deleted " << address << "\n";
  return absl::OkStatus();
}

absl::Status UserPasswd(const ParsedArgs& args, const CliStreams& io) {
  PH_ASSIGN_OR_RETURN(std::string address, Address(args.positional[0]));
  PH_ASSIGN_OR_RETURN(PasswordInput input, ReadPasswordInput(args, io));
  PH_ASSIGN_OR_RETURN(auto store, OpenStore(args, /*create=*/false));
  PH_ASSIGN_OR_RETURN(StoredPassword stored, MakeStoredPassword(std::move(input), *store, address));
  absl::Status set = store->SetPasswordHash(address, stored.hash, stored.scram);
  if (IsUnknownAccount(set)) return UnknownUser(address);
  PH_RETURN_IF_ERROR(set);
  *io.out << "password changed for " << address << "\n";
  return absl::OkStatus();
}

// APOP and CRAM-MD5 need the secret itself on the server (RFC 1939 section 7, RFC 2195), so it
// is stored as given, beside (not instead of) the password hash: say so where it is set.
absl::Status UserApopSecret(const ParsedArgs& args, const CliStreams& io) {
  PH_ASSIGN_OR_RETURN(std::string address, Address(args.positional[0]));
  bool remove = false;
  if (auto it = args.flags.find("remove"); it != args.flags.end()) {
    if (it->second != "yes") {
      return absl::InvalidArgumentError("--remove: give --remove=yes to delete the secret");
    }
    remove = true;
  }
  std::string secret;
  if (!remove) {
    PH_ASSIGN_OR_RETURN(secret, ReadPassword(io));
    if (secret.size() > storage::kMaxSharedSecretLength) {
      return absl::InvalidArgumentError(
          absl::StrCat("APOP secret longer than ", storage::kMaxSharedSecretLength, " bytes"));
    }
  }
  PH_ASSIGN_OR_RETURN(auto store, OpenStore(args, /*create=*/false));
  absl::Status set = store->SetSharedSecret(address, secret);
  if (IsUnknownAccount(set)) return UnknownUser(address);
  PH_RETURN_IF_ERROR(set);
  *io.out << (remove ? "APOP secret removed for " : "APOP secret set for ") << address
          << (remove ? "" : " (stored recoverably; used where its tenant allows APOP)") << "\n";
  return absl::OkStatus();
}

absl::Status UserList(const ParsedArgs& args, const CliStreams& io) {
  std::optional<std::string> domain;
  if (!args.positional.empty()) {
    absl::StatusOr<std::string> normalized = storage::NormalizeDomain(args.positional[0]);
    if (!normalized.ok()) {
      return absl::InvalidArgumentError(absl::StrCat("malformed domain \"", args.positional[0],
                                                     "\": ", normalized.status().message()));
    }
    domain = *normalized;
  }
  PH_ASSIGN_OR_RETURN(auto store, OpenStore(args, /*create=*/false));
  std::optional<std::string_view> filter;
  if (domain.has_value()) filter = *domain;
  PH_ASSIGN_OR_RETURN(std::vector<storage::AccountSummary> accounts, store->ListAccounts(filter));
  for (const storage::AccountSummary& account : accounts) {
    *io.out << account.display_address << "\t" << account.stats.messages << "\t"
            << account.stats.octets << "\n";
  }
  return absl::OkStatus();
}

absl::Status UserShow(const ParsedArgs& args, const CliStreams& io) {
  PH_ASSIGN_OR_RETURN(std::string address, Address(args.positional[0]));
  PH_ASSIGN_OR_RETURN(auto store, OpenStore(args, /*create=*/false));
  absl::StatusOr<storage::AccountUsage> usage = store->GetUsage(address);
  if (IsUnknownAccount(usage.status())) return UnknownUser(address);
  PH_RETURN_IF_ERROR(usage.status());
  auto source = [](uint64_t own) { return own != 0 ? "" : " (tenant default)"; };
  *io.out << "address\t" << usage->display_address << "\n"
          << "state\t" << (usage->disabled ? "disabled" : "enabled") << "\n"
          << "messages\t" << usage->stats.messages << "\n"
          << "octets\t" << usage->stats.octets << "\n"
          << "quota_messages\t" << LimitText(usage->effective_quota.messages)
          << source(usage->quota.messages) << "\n"
          << "quota_octets\t" << LimitText(usage->effective_quota.octets)
          << source(usage->quota.octets) << "\n"
          << "max_message_bytes\t" << usage->message_bytes_max << "\n";
  absl::StatusOr<storage::TenantInfo> tenant =
      store->GetTenant(address.substr(address.rfind('@') + 1));
  if (!tenant.ok() && !IsUnknownTenant(tenant.status())) return tenant.status();
  *io.out << "plaintext_auth\t"
          << storage::PlaintextAuthName(tenant.ok() ? tenant->policy.plaintext_auth
                                                    : storage::PlaintextAuth::kDefault)
          << " (tenant)\n";
  absl::StatusOr<storage::AccountInfo> account = store->GetAccount(address);
  if (account.ok() && !account->shared_secret.empty()) *io.out << "apop_secret\tset\n";
  return absl::OkStatus();
}

absl::Status UserQuota(const ParsedArgs& args, const CliStreams& io) {
  PH_ASSIGN_OR_RETURN(std::string address, Address(args.positional[0]));
  PH_ASSIGN_OR_RETURN(std::optional<uint64_t> messages, LimitFlag(args, "messages"));
  PH_ASSIGN_OR_RETURN(std::optional<uint64_t> octets, LimitFlag(args, "octets"));
  if (!messages.has_value() && !octets.has_value()) {
    return absl::InvalidArgumentError("give --messages=N and/or --octets=N (0: tenant default)");
  }
  PH_ASSIGN_OR_RETURN(auto store, OpenStore(args, /*create=*/false));
  absl::StatusOr<storage::AccountInfo> account = store->GetAccount(address);
  if (IsUnknownAccount(account.status())) return UnknownUser(address);
  PH_RETURN_IF_ERROR(account.status());
  storage::AccountQuota quota = account->quota;
  if (messages.has_value()) quota.messages = *messages;
  if (octets.has_value()) quota.octets = *octets;
  absl::Status set = store->SetQuota(address, quota);
  if (IsUnknownAccount(set)) return UnknownUser(address);
  PH_RETURN_IF_ERROR(set);
  *io.out << "quota of " << address << ": " << quota.messages << " messages, " << quota.octets
          << " octets (0: tenant default)\n";
  return absl::OkStatus();
}

absl::Status SetDisabled(const ParsedArgs& args, const CliStreams& io, bool disabled) {
  PH_ASSIGN_OR_RETURN(std::string address, Address(args.positional[0]));
  PH_ASSIGN_OR_RETURN(auto store, OpenStore(args, /*create=*/false));
  absl::Status set = store->SetDisabled(address, disabled);
  if (IsUnknownAccount(set)) return UnknownUser(address);
  PH_RETURN_IF_ERROR(set);
  *io.out << (disabled ? "disabled " : "enabled ") << address << "\n";
  return absl::OkStatus();
}

absl::Status UserDisable(const ParsedArgs& args, const CliStreams& io) {
  return SetDisabled(args, io, true);
}

absl::Status UserEnable(const ParsedArgs& args, const CliStreams& io) {
  return SetDisabled(args, io, false);
}

absl::Status TenantLimitsCommand(const ParsedArgs& args, const CliStreams& io) {
  absl::StatusOr<std::string> domain = storage::NormalizeDomain(args.positional[0]);
  if (!domain.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat("malformed domain \"", args.positional[0], "\": ", domain.status().message()));
  }
  PH_ASSIGN_OR_RETURN(std::optional<uint64_t> messages, LimitFlag(args, "quota_messages"));
  PH_ASSIGN_OR_RETURN(std::optional<uint64_t> octets, LimitFlag(args, "quota_octets"));
  PH_ASSIGN_OR_RETURN(std::optional<uint64_t> max_bytes, LimitFlag(args, "message_bytes_max"));
  // --max_message_bytes is the flag's earlier name, still accepted (scripts use it).
  PH_ASSIGN_OR_RETURN(std::optional<uint64_t> old_name, LimitFlag(args, "max_message_bytes"));
  if (max_bytes.has_value() && old_name.has_value()) {
    return absl::InvalidArgumentError(
        "--max_message_bytes is the old name of --message_bytes_max: give only one");
  }
  if (!max_bytes.has_value()) max_bytes = old_name;
  const bool change = messages.has_value() || octets.has_value() || max_bytes.has_value();
  PH_ASSIGN_OR_RETURN(auto store, OpenStore(args, /*create=*/change));
  storage::TenantLimits limits;
  absl::StatusOr<storage::TenantInfo> tenant = store->GetTenant(*domain);
  if (tenant.ok()) {
    limits = tenant->limits;
  } else if (!IsUnknownTenant(tenant.status())) {
    return tenant.status();
  }
  if (change) {
    if (messages.has_value()) limits.quota_messages = *messages;
    if (octets.has_value()) limits.quota_octets = *octets;
    if (max_bytes.has_value()) limits.message_bytes_max = *max_bytes;
    PH_RETURN_IF_ERROR(store->SetTenantLimits(*domain, limits));
  }
  *io.out << *domain << "\tquota_messages=" << LimitText(limits.quota_messages)
          << "\tquota_octets=" << LimitText(limits.quota_octets) << "\tmax_message_bytes="
          << (limits.message_bytes_max == 0
                  ? absl::StrCat("default(", store->options().message_bytes_max, ")")
                  : absl::StrCat(limits.message_bytes_max))
          << "\n";
  return absl::OkStatus();
}

absl::StatusOr<std::string> Domain(std::string_view raw) {
  absl::StatusOr<std::string> domain = storage::NormalizeDomain(raw);
  if (!domain.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat("malformed domain \"", AbslView(raw), "\": ", domain.status().message()));
  }
  return domain;
}

// The APOP and master-user settings, shown only when not at their defaults (so the output of
// tenants without them stays what it was).
std::string AuthPolicyText(const storage::TenantPolicy& policy) {
  std::string text;
  if (policy.apop_allowed) text += "\tapop=allow";
  if (!policy.master_users.empty()) {
    absl::StrAppend(&text, "\tmaster_users=", absl::StrJoin(policy.master_users, ","));
  }
  if (!policy.password_scheme.empty())
    absl::StrAppend(&text, "\tpassword_scheme=", policy.password_scheme);
  for (const auto& [name, value] : tenant::ChangedTenantSettings(policy.service)) {
    absl::StrAppend(&text, "\t", AbslView(name), "=", value);
  }
  return text;
}

absl::Status TenantPolicyCommand(const ParsedArgs& args, const CliStreams& io) {
  PH_ASSIGN_OR_RETURN(std::string domain, Domain(args.positional[0]));
  // Every field by name (server/tenant/policy_fields.h, shared with the HTTP admin API),
  // checked before anything is opened: one bad value changes nothing.
  std::vector<std::pair<std::string_view, std::string>> given;
  storage::TenantPolicy checked;
  for (std::string_view name : tenant::TenantPolicyFieldNames()) {
    auto it = args.flags.find(std::string(name));
    if (it == args.flags.end()) continue;
    absl::Status valid = tenant::SetTenantPolicyField(name, it->second, &checked);
    if (!valid.ok()) return absl::InvalidArgumentError(absl::StrCat("--", valid.message()));
    given.emplace_back(name, it->second);
  }
  const bool change = !given.empty();
  PH_ASSIGN_OR_RETURN(auto store, OpenStore(args, /*create=*/change));
  storage::TenantPolicy policy;
  absl::StatusOr<storage::TenantInfo> tenant = store->GetTenant(domain);
  if (tenant.ok()) {
    policy = tenant->policy;
  } else if (!IsUnknownTenant(tenant.status())) {
    return tenant.status();
  }
  if (change) {
    for (const auto& [name, text] : given) {
      PH_RETURN_IF_ERROR(tenant::SetTenantPolicyField(name, text, &policy));
    }
    // A running server re-reads tenant policies before this command's answer goes back.
    PH_RETURN_IF_ERROR(store->SetTenantPolicy(domain, policy));
    PH_ASSIGN_OR_RETURN(storage::TenantInfo stored, store->GetTenant(domain));
    policy = stored.policy;
  }
  *io.out << domain << "\tplaintext_auth=" << storage::PlaintextAuthName(policy.plaintext_auth)
          << AuthPolicyText(policy) << "\n";
  return absl::OkStatus();
}

absl::Status TenantList(const ParsedArgs& args, const CliStreams& io) {
  PH_ASSIGN_OR_RETURN(auto store, OpenStore(args, /*create=*/false));
  PH_ASSIGN_OR_RETURN(std::vector<storage::TenantInfo> tenants, store->ListTenants());
  for (const storage::TenantInfo& tenant : tenants) {
    *io.out << tenant.domain << "\tquota_messages=" << LimitText(tenant.limits.quota_messages)
            << "\tquota_octets=" << LimitText(tenant.limits.quota_octets) << "\tmax_message_bytes="
            << (tenant.limits.message_bytes_max == 0
                    ? std::string("default")
                    : absl::StrCat(tenant.limits.message_bytes_max))
            << "\tplaintext_auth=" << storage::PlaintextAuthName(tenant.policy.plaintext_auth)
            << AuthPolicyText(tenant.policy) << "\n";
  }
  return absl::OkStatus();
}

absl::Status Deliver(const ParsedArgs& args, const CliStreams& io) {
  PH_ASSIGN_OR_RETURN(std::string address, Address(args.positional[0]));
  PH_ASSIGN_OR_RETURN(std::string message, ReadAll(*io.in, kDeliverInputBytesMax));
  PH_ASSIGN_OR_RETURN(auto store, OpenStore(args, /*create=*/false));
  absl::StatusOr<storage::DeliverResult> delivered = store->Deliver(address, message);
  if (IsUnknownAccount(delivered.status())) return UnknownUser(address);
  PH_RETURN_IF_ERROR(delivered.status());
  *io.out << delivered->uidl << "\n";
  return absl::OkStatus();
}

absl::Status ImportMaildirCommand(const ParsedArgs& args, const CliStreams& io) {
  PH_ASSIGN_OR_RETURN(std::string address, Address(args.positional[0]));
  const std::string& maildir = args.positional[1];
  PH_ASSIGN_OR_RETURN(auto store, OpenStore(args, /*create=*/false));
  auto progress = [&io](const storage::migration::ImportProgress& p) {
    ShowProgress(io, absl::StrCat("posthaste: import: ", p.done, "/", p.total, " messages"),
                 p.done == p.total);
  };
  PH_ASSIGN_OR_RETURN(storage::migration::ImportResult result,
                      storage::migration::ImportMaildir(*store, address, maildir, progress));
  *io.out << "imported " << result.imported << " messages (" << result.octets << " octets) into "
          << address << "; skipped " << result.skipped << " already present; "
          << result.uidls_from_dovecot << " UIDLs kept from dovecot-uidlist\n";
  return absl::OkStatus();
}

absl::Status ImportMboxCommand(const ParsedArgs& args, const CliStreams& io) {
  PH_ASSIGN_OR_RETURN(std::string address, Address(args.positional[0]));
  const std::string& file = args.positional[1];
  PH_ASSIGN_OR_RETURN(auto store, OpenStore(args, /*create=*/false));
  auto progress = [&io](const storage::migration::MboxImportProgress& p) {
    ShowProgress(io, absl::StrCat("posthaste: import: ", p.done, "/", p.total, " messages"),
                 p.done == p.total);
  };
  PH_ASSIGN_OR_RETURN(storage::migration::MboxImportResult result,
                      storage::migration::ImportMbox(*store, address, file, progress));
  *io.out << "imported " << result.imported << " messages (" << result.octets << " octets) into "
          << address << "; skipped " << result.skipped << " already present\n";
  return absl::OkStatus();
}

// `import pop3`: the source password is one line on stdin; the import itself is
// server/pop3_import/pop3_import.h.
absl::Status ImportPop3Command(const ParsedArgs& args, const CliStreams& io) {
  namespace pi = pop3_import;
  PH_ASSIGN_OR_RETURN(std::string address, Address(args.positional[0]));
  pi::Pop3ImportOptions options;
  auto from = args.flags.find("from");
  if (from == args.flags.end()) return absl::InvalidArgumentError("missing --from=HOST:PORT");
  PH_RETURN_IF_ERROR(pi::ParseHostPort(from->second, &options.source));
  if (auto tls = args.flags.find("tls"); tls != args.flags.end()) {
    PH_ASSIGN_OR_RETURN(options.source.tls, pi::ParseSourceTls(tls->second));
  }
  if (auto ca = args.flags.find("ca_file"); ca != args.flags.end()) {
    options.source.ca_file = ca->second;
  }
  if (auto user = args.flags.find("source_user"); user != args.flags.end()) {
    options.source_user = user->second;
  }
  PH_ASSIGN_OR_RETURN(options.password, ReadPassword(io));
  PH_ASSIGN_OR_RETURN(auto store, OpenStore(args, /*create=*/false));
  auto progress = [&io](const pi::Pop3ImportProgress& p) {
    ShowProgress(io,
                 absl::StrCat("posthaste: import: ", p.done, "/", p.total, " messages, ", p.octets,
                              " octets imported"),
                 p.done == p.total);
  };
  absl::StatusOr<pi::Pop3ImportResult> result = pi::ImportPop3(*store, address, options, progress);
  OPENSSL_cleanse(options.password.data(), options.password.size());
  PH_RETURN_IF_ERROR(result.status());
  *io.out << "imported " << result->imported << " messages (" << result->octets << " octets) into "
          << address << " from " << from->second << "; skipped " << result->skipped
          << " already present; " << result->total << " UIDLs kept from the source\n";
  return absl::OkStatus();
}

absl::Status Check(const ParsedArgs& args, const CliStreams& io) {
  PH_ASSIGN_OR_RETURN(auto store, OpenStore(args, /*create=*/false));
  PH_ASSIGN_OR_RETURN(storage::CheckReport report, store->Check());
  for (const std::string& problem : report.problems) *io.out << OneLine(problem) << "\n";
  const std::string counts = absl::StrCat(report.accounts, " accounts, ", report.messages,
                                          " messages, ", report.segments, " segments");
  if (!report.ok()) {
    return absl::DataLossError(
        absl::StrCat(report.problems.size(), " problems found (", counts, ")"));
  }
  *io.out << "ok: " << counts << "\n";
  return absl::OkStatus();
}

absl::Status Compact(const ParsedArgs& args, const CliStreams& io) {
  PH_ASSIGN_OR_RETURN(auto store, OpenStore(args, /*create=*/false));
  auto progress = [&io](const storage::CompactionProgress& p) {
    ShowProgress(io,
                 absl::StrCat("posthaste: compact: ", p.segments_done, "/", p.segments_total,
                              " segments, ", p.bytes_reclaimed, " bytes reclaimed"),
                 p.segments_done == p.segments_total);
  };
  PH_ASSIGN_OR_RETURN(storage::CompactionResult result, store->Compact(progress));
  *io.out << "compacted " << result.segments_rewritten << " segments: moved "
          << result.messages_moved << " messages (" << result.bytes_copied << " bytes), reclaimed "
          << result.bytes_reclaimed << " bytes\n";
  return absl::OkStatus();
}

// One EXPIRE n pass (server/retention) at --now (default: now): the running server's job, which
// skips mailboxes its sessions hold, or offline a job of this process's own.
absl::Status StoreExpire(const ParsedArgs& args, const CliStreams& io) {
  absl::Time now = absl::Now();
  if (auto it = args.flags.find("now"); it != args.flags.end()) {
    const std::optional<uint64_t> seconds = ParseDecimalAtMost(it->second, uint64_t{1} << 40);
    if (!seconds.has_value()) {
      return absl::InvalidArgumentError(
          absl::StrCat("--now takes unix seconds, not \"", it->second, "\""));
    }
    now = absl::FromUnixSeconds(static_cast<int64_t>(*seconds));
  }
  auto progress = [&io](const std::string& line) { *io.err << "posthaste: " << line << "\n"; };
  absl::StatusOr<retention::PassResult> pass;
  if (args.online_retention != nullptr) {
    pass = args.online_retention->RunPass(now, nullptr, progress, /*use_cursor=*/false);
  } else {
    PH_ASSIGN_OR_RETURN(auto store, OpenStore(args, /*create=*/false));
    retention::RetentionJob job(*store, nullptr, {.messages_per_second = 0}, nullptr);
    pass = job.RunPass(now, nullptr, progress, /*use_cursor=*/false);
  }
  if (!pass.ok()) return pass.status();
  *io.out << "expired " << pass->messages_deleted << " messages (" << pass->octets_deleted
          << " octets) in " << pass->accounts << " accounts of " << pass->tenants
          << " tenants; skipped " << pass->accounts_in_use << " accounts in use, "
          << pass->account_errors << " on errors\n";
  return absl::OkStatus();
}

const std::vector<Command>& Commands() {
  static const auto* commands = new std::vector<Command>{
      {{"user", "add"},
       "ADDRESS",
       "add an account; password: one line on stdin (--password_scheme=S[:COST]), or "
       "--hash='{SCHEME}...'",
       1,
       1,
       UserAdd,
       {"hash", "password_scheme"},
       Command::Stdin::kPasswordLine},
      {{"user", "del"}, "ADDRESS", "delete an account and its messages", 1, 1, UserDel},
      {{"user", "passwd"},
       "ADDRESS",
       "set a password: one line on stdin (--password_scheme=S[:COST]), or --hash='{SCHEME}...'",
       1,
       1,
       UserPasswd,
       {"hash", "password_scheme"},
       Command::Stdin::kPasswordLine},
      {{"user", "apop-secret"},
       "[--remove=yes] ADDRESS",
       "set the APOP/CRAM-MD5 secret: one line on stdin; stored recoverably (APOP needs the "
       "secret itself), so use one that is not the password; --remove=yes deletes it",
       1,
       1,
       UserApopSecret,
       {"remove"},
       Command::Stdin::kPasswordLine},
      {{"user", "list"}, "[DOMAIN]", "list accounts: address, messages, octets", 0, 1, UserList},
      {{"user", "show"}, "ADDRESS", "usage, limits and state of an account", 1, 1, UserShow},
      {{"user", "quota"},
       "ADDRESS [--messages=N] [--octets=N]",
       "set an account's quota (0: the tenant default)",
       1,
       1,
       UserQuota,
       {"messages", "octets"}},
      {{"user", "disable"}, "ADDRESS", "refuse logins and deliveries", 1, 1, UserDisable},
      {{"user", "enable"}, "ADDRESS", "undo user disable", 1, 1, UserEnable},
      {{"tenant", "limits"},
       "DOMAIN [--quota_messages=N] [--quota_octets=N] [--message_bytes_max=N]",
       "show or set a domain's default quotas and size limit (0: none)",
       1,
       1,
       TenantLimitsCommand,
       {"quota_messages", "quota_octets", "message_bytes_max", "max_message_bytes"}},
      {{"tenant", "policy"},
       "DOMAIN [--plaintext_auth=default|allow|require_tls] [--apop=allow|deny] "
       "[--master_users=ADDR,...|none] [--password_scheme=SCHEME[:COST]|default] "
       "[--login_delay_s=N|default] [--expire_days=N|never|default] [--daily_download_bytes=N] "
       "[--list_newest=N] [--idle_timeout_s=N] [--connections_per_user=N] "
       "[--login_mechanisms=NAME,...|default] [--lang=TAG|default]",
       "show or set a domain's login rules: logins without TLS, APOP and CRAM-MD5 (off by "
       "default), master users (log in as any user of the domain with their own password), and "
       "the scheme of its new password hashes (default: the server's, yescrypt:3)",
       1,
       1,
       TenantPolicyCommand,
       {"plaintext_auth", "apop", "master_users", "password_scheme", "login_delay_s",
        "expire_days", "daily_download_bytes", "list_newest", "idle_timeout_s",
        "connections_per_user", "login_mechanisms", "lang"}},
      {{"tenant", "list"}, "", "list domains: limits and plaintext_auth", 0, 0, TenantList},
      {{"deliver"},
       "ADDRESS < message",
       "deliver one message from stdin; prints its UIDL",
       1,
       1,
       Deliver,
       {},
       Command::Stdin::kAll},
      {{"import", "maildir"},
       "ADDRESS MAILDIR",
       "import a Maildir, keeping dovecot-uidlist UIDLs",
       2,
       2,
       ImportMaildirCommand},
      {{"import", "mbox"},
       "ADDRESS FILE",
       "import an mbox file (mboxo or mboxrd); running it again imports only what is new",
       2,
       2,
       ImportMboxCommand},
      {{"import", "pop3"},
       "--from=HOST:PORT [--tls=stls|implicit|none] [--ca_file=PEM] [--source_user=NAME] "
       "ADDRESS",
       "copy a mailbox from a POP3 server, keeping its UIDLs (source password: one line on "
       "stdin; never deletes at the source); run again to resume",
       1,
       1,
       ImportPop3Command,
       {"from", "tls", "ca_file", "source_user"},
       Command::Stdin::kPasswordLine},
      {{"import", "passwd-file"},
       "[--domain=DOMAIN] [--scheme=DOVECOT_SCHEME] FILE",
       "add or update accounts from a Dovecot passwd-file (user:password:...); errors by line",
       1,
       1,
       ImportPasswdFileCommand,
       {"domain", "scheme"}},
      {{"check"},
       "",
       "verify the index against the segments (server stopped)",
       0,
       0,
       Check,
       {},
       Command::Stdin::kNone,
       /*offline_only=*/true},
      {{"compact"}, "", "reclaim the space of deleted messages", 0, 0, Compact},
      {{"store", "expire"},
       "[--now=UNIX_SECONDS]",
       "run one EXPIRE n pass: delete what was retrieved more than n days before now in the "
       "tenants that set --expire_days=N (a mailbox a session holds is skipped)",
       0,
       0,
       StoreExpire,
       {"now"}},
  };
  return *commands;
}

std::string CommandName(const Command& command) {
  std::string name;
  for (std::string_view word : command.words) {
    if (!name.empty()) name += " ";
    name += std::string(word);
  }
  return name;
}

std::string CommandUsage(const Command& command) {
  std::string usage = absl::StrCat("posthaste ", CommandName(command), " --data_dir=DIR");
  if (!command.positional_usage.empty()) {
    absl::StrAppend(&usage, " ", AbslView(command.positional_usage));
  }
  return usage;
}

// Parses flags and positional arguments after the subcommand words.
absl::StatusOr<ParsedArgs> ParseArgs(const std::vector<std::string>& args, size_t start,
                                     const Command& command) {
  ParsedArgs parsed;
  bool flags_done = false;
  for (size_t i = start; i < args.size(); ++i) {
    std::string_view arg = args[i];
    if (flags_done || arg.size() < 2 || arg.substr(0, 2) != "--") {
      if (!flags_done && arg.size() > 1 && arg[0] == '-') {
        return absl::InvalidArgumentError(absl::StrCat("unknown option ", AbslView(arg)));
      }
      parsed.positional.emplace_back(arg);
      continue;
    }
    if (arg == "--") {
      flags_done = true;
      continue;
    }
    const std::string_view name = FlagName(arg);
    if (name != "data_dir" &&
        std::find(command.flags.begin(), command.flags.end(), name) == command.flags.end()) {
      return absl::InvalidArgumentError(absl::StrCat("unknown flag --", AbslView(name)));
    }
    absl::StatusOr<std::string> value = FlagValue(args, &i);
    if (!value.ok()) return value.status();
    if (value->empty()) {
      return absl::InvalidArgumentError(absl::StrCat("flag --", AbslView(name), " is empty"));
    }
    parsed.flags[std::string(name)] = *std::move(value);
  }
  return parsed;
}

bool WantsHelp(const std::vector<std::string>& args) {
  if (!args.empty() && args[0] == "help") return true;
  for (const std::string& arg : args) {
    if (arg == "--") return false;
    if (arg == "--help" || arg == "-h") return true;
  }
  return false;
}

}  // namespace

std::string CliUsage() {
  std::string usage = "usage:\n";
  for (const Command& command : Commands()) {
    std::string line = CommandUsage(command);
    line.resize(std::max<size_t>(line.size() + 2, 62), ' ');
    absl::StrAppend(&usage, "  ", line, AbslView(command.summary), "\n");
  }
  absl::StrAppend(&usage,
                  "  posthaste serve --data_dir=DIR [--pop3_listen=HOST:PORT] "
                  "[--metrics_listen=HOST:PORT] [--shards=N] ...   run the POP3 server "
                  "(serve --help lists every flag)\n"
                  "  posthaste route --directory_file=FILE [--auth_http_listen=HOST:PORT] "
                  "[--socketmap_listen=HOST:PORT] [--haproxy_map=FILE] ...   route logins and "
                  "mail to the owning backend (route --help lists every flag)\n"
                  "  posthaste placement --etcd_endpoints=URL,... set-tenant|set-user|clear-user|"
                  "list ...   place tenants and users (placement --help)\n"
                  "  posthaste user move ADDRESS --to=BACKEND --etcd_endpoints=URLS "
                  "--admin_token_file=FILE   move a mailbox to another backend, live "
                  "(run again to finish an interrupted move)\n"
                  "  posthaste tenant move DOMAIN --to=BACKEND --etcd_endpoints=URLS "
                  "--admin_token_file=FILE   move every mailbox of a tenant and its placement, "
                  "live (run again to finish)\n"
                  "Flags may also be given as --flag value. Exit status: 0 ok, 1 failure, "
                  "2 usage.\n");
  return usage;
}

namespace {

// Sends the parsed command to the running server on `fd` (its admin socket) with what it
// reads from stdin, and prints the server's output. Same forms, same output, same status.
int RunOnline(const Command& command, const ParsedArgs& parsed, int fd, const CliStreams& io) {
  const std::string name = CommandName(command);
  auto fail = [&](const absl::Status& status) {
    *io.err << "posthaste: " << name << ": " << OneLine(StdView(status.message())) << "\n";
    return kExitFailure;
  };
  admin::AdminRequest request;
  for (std::string_view word : command.words) request.args.emplace_back(word);
  for (const auto& [flag, value] : parsed.flags) {
    std::string path_value = value;
    // import pop3's CA file, like the import files below, is read by the server.
    if (flag == "ca_file" && !value.empty() && value[0] != '/') {
      char cwd[4096];
      if (getcwd(cwd, sizeof(cwd)) != nullptr) path_value = absl::StrCat(cwd, "/", value);
    }
    request.args.push_back(absl::StrCat("--", flag, "=", path_value));
  }
  request.args.push_back("--");
  for (size_t i = 0; i < parsed.positional.size(); ++i) {
    std::string arg = parsed.positional[i];
    // The server resolves paths from its own working directory: send absolute ones.
    if (command.words.size() == 2 && command.words[0] == "import" && command.words[1] != "pop3" &&
        i + 1 == parsed.positional.size() && !arg.empty() && arg[0] != '/') {
      char cwd[4096];
      if (getcwd(cwd, sizeof(cwd)) != nullptr) arg = absl::StrCat(cwd, "/", arg);
    }
    request.args.push_back(std::move(arg));
  }
  switch (command.stdin_use) {
    case Command::Stdin::kNone:
      break;
    case Command::Stdin::kPasswordLine: {
      // user apop-secret --remove=yes reads nothing; with --hash the stored hash is the flag
      if (parsed.flags.contains("remove") || parsed.flags.contains("hash")) break;
      if (!parsed.positional.empty()) {
        if (absl::StatusOr<std::string> a = Address(parsed.positional[0]); !a.ok()) {
          close(fd);
          return fail(a.status());
        }
      }
      absl::StatusOr<std::string> password = ReadPassword(io);
      if (!password.ok()) {
        close(fd);
        return fail(password.status());
      }
      request.stdin_bytes = *password + "\n";
      break;
    }
    case Command::Stdin::kAll: {
      absl::StatusOr<std::string> all = ReadAll(*io.in, kDeliverInputBytesMax);
      if (!all.ok()) {
        close(fd);
        return fail(all.status());
      }
      request.stdin_bytes = *std::move(all);
      break;
    }
  }
  absl::StatusOr<admin::AdminResponse> response = admin::ExchangeAdminCommand(fd, request);
  if (!response.ok()) return fail(response.status());
  *io.out << response->out << std::flush;
  *io.err << response->err << std::flush;
  return response->exit_status;
}

// Runs `args` (a non-serve command). `online_store`: the command came through the admin
// socket of the server owning that store; otherwise a running server is looked for first.
int RunCommand(const std::vector<std::string>& args, const CliStreams& io,
               storage::MailStore* online_store,
               retention::RetentionJob* online_retention = nullptr) {
  const Command* match = nullptr;
  for (const Command& command : Commands()) {
    if (args.size() < command.words.size()) continue;
    if (std::equal(command.words.begin(), command.words.end(), args.begin())) {
      match = &command;
      break;
    }
  }
  if (match == nullptr || WantsHelp(args)) {
    if (match == nullptr && !args.empty() && !WantsHelp(args)) {
      *io.err << "posthaste: unknown command \"" << OneLine(args[0]) << "\"\n";
    }
    *io.err << CliUsage();
    return kExitUsage;
  }
  const std::string name = CommandName(*match);
  auto usage_error = [&](std::string_view why) {
    *io.err << "posthaste: " << name << ": " << OneLine(why) << " (usage: " << CommandUsage(*match)
            << ")\n";
    return kExitUsage;
  };
  absl::StatusOr<ParsedArgs> parsed = ParseArgs(args, match->words.size(), *match);
  if (!parsed.ok()) return usage_error(StdView(parsed.status().message()));
  if (parsed->flags.count("data_dir") == 0) return usage_error("missing --data_dir");
  if (parsed->positional.size() < match->min_positional) {
    return usage_error("missing arguments");
  }
  if (parsed->positional.size() > match->max_positional) {
    return usage_error(
        absl::StrCat("unexpected argument \"", parsed->positional[match->max_positional], "\""));
  }
  if (online_store == nullptr) {
    // A running server holds the data directory: hand it the command.
    absl::StatusOr<std::optional<int>> admin_fd = admin::ConnectAdminSocket(parsed->data_dir());
    if (!admin_fd.ok()) {
      *io.err << "posthaste: " << name << ": " << OneLine(StdView(admin_fd.status().message()))
              << "\n";
      return kExitFailure;
    }
    if (admin_fd->has_value() && !match->offline_only) {
      return RunOnline(*match, *parsed, **admin_fd, io);
    }
    if (admin_fd->has_value()) {
      close(**admin_fd);
      *io.err << "posthaste: " << name << ": the server is running on " << parsed->data_dir()
              << " and this command needs the data directory to itself: stop the server first\n";
      return kExitFailure;
    }
  } else if (match->offline_only) {
    *io.err << "posthaste: " << name << ": needs the data directory to itself: stop the server "
            << "first\n";
    return kExitFailure;
  }
  parsed->online_store = online_store;
  parsed->online_retention = online_retention;
  absl::Status status = match->run(*parsed, io);
  io.out->flush();
  if (!status.ok()) {
    *io.err << "posthaste: " << name << ": " << OneLine(StdView(status.message())) << "\n";
    return kExitFailure;
  }
  return kExitOk;
}

}  // namespace

admin::AdminResponse RunAdminCommand(const admin::AdminRequest& request, storage::MailStore& store,
                                     retention::RetentionJob* retention) {
  admin::AdminResponse response;
  if (!request.args.empty() && request.args[0] == "serve") {
    response.exit_status = kExitUsage;
    response.err = "posthaste: serve: the server is already running\n";
    return response;
  }
  std::istringstream in(request.stdin_bytes);
  std::ostringstream out, err;
  response.exit_status = RunCommand(request.args, CliStreams{&in, &out, &err}, &store, retention);
  response.out = out.str();
  response.err = err.str();
  return response;
}

int RunCli(const std::vector<std::string>& args, const CliStreams& io) {
  if (!args.empty() && args[0] == "route") {
    return route::RunRoute(std::vector<std::string>(args.begin() + 1, args.end()), *io.err);
  }
  if (!args.empty() && args[0] == "placement") {
    return placement::RunPlacementCommand(std::vector<std::string>(args.begin() + 1, args.end()),
                                          *io.out, *io.err);
  }
  if (args.size() >= 2 && args[0] == "user" && args[1] == "move") {
    return placement::RunUserMove(std::vector<std::string>(args.begin() + 2, args.end()), *io.out,
                                  *io.err);
  }
  if (args.size() >= 2 && args[0] == "tenant" && args[1] == "move") {
    return placement::RunTenantMove(std::vector<std::string>(args.begin() + 2, args.end()), *io.out,
                                    *io.err);
  }
  if (!args.empty() && args[0] == "serve") {
    return RunServe(std::vector<std::string>(args.begin() + 1, args.end()), *io.err,
                    RunAdminCommand);
  }
  return RunCommand(args, io, /*online_store=*/nullptr);
}

}  // namespace posthaste::server::cli
