#include "server/placement/mailbox_move.h"

#include <cstdint>
#include <fstream>
#include <optional>
#include <string_view>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "base/json.h"
#include "base/status_macros.h"
#include "base/strings.h"
#include "server/placement/directory.h"
#include "server/placement/directory_codec.h"
#include "server/placement/etcd_client.h"
#include "server/placement/http_client.h"
#include "server/placement/move_record.h"

namespace posthaste::server::placement {
namespace {

// One admin API call (a page holds up to 4 MiB and one message; the disk may be slow).
constexpr absl::Duration kAdminCallTimeout = absl::Seconds(120);
// What one page answer may hold: a page and the largest configurable message.
constexpr size_t kPageResponseBytesMax = (size_t{64} << 20) + (size_t{1} << 30);
// Pages in one pass (a bound on the loop; 4 MiB pages: far beyond any mailbox).
constexpr int kPagesPerPassMax = 10'000'000;
constexpr size_t kTokenBytesMax = 4096;
// One backend's account list for a domain (about 100 bytes and 5 JSON values per account).
constexpr size_t kAccountListBytesMax = size_t{256} << 20;
constexpr uint32_t kAccountListValuesMax = 20'000'000;

// Percent-encodes everything but unreserved characters and '@' (admin_path.h decodes once).
std::string PathSegment(std::string_view s) {
  std::string out;
  for (unsigned char c : s) {
    if (absl::ascii_isalnum(c) || c == '.' || c == '_' || c == '-' || c == '@' || c == '+') {
      out.push_back(static_cast<char>(c));
    } else {
      absl::StrAppend(&out, "%", absl::Hex(c, absl::kZeroPad2));
    }
  }
  return out;
}

// The admin API of one backend, as registered in the directory.
class AdminClient {
 public:
  AdminClient(BackendEndpoint backend, std::string token)
      : backend_(std::move(backend)), token_(std::move(token)) {
    endpoint_.host = backend_.ip;
    endpoint_.port = backend_.admin_port;
  }

  absl::StatusOr<HttpResponse> Call(std::string_view method, std::string_view path,
                                    std::string_view content_type, std::string_view body) {
    HttpResponseLimits limits;
    limits.body_bytes_max = kPageResponseBytesMax;
    PH_ASSIGN_OR_RETURN(
        HttpResponse response,
        HttpCall(endpoint_, method, path, absl::StrCat("Authorization: Bearer ", token_, "\r\n"),
                 content_type, body, absl::Now() + kAdminCallTimeout, limits));
    return response;
  }

  absl::Status Expect(const absl::StatusOr<HttpResponse>& response, std::string_view what,
                      std::initializer_list<int> ok_codes) {
    if (!response.ok()) {
      return absl::UnavailableError(
          absl::StrCat(backend_.name, ": ", AbslView(what), ": ", response.status().message()));
    }
    for (int code : ok_codes) {
      if (response->status_code == code) return absl::OkStatus();
    }
    std::string_view body = response->body;
    if (body.size() > 300) body = body.substr(0, 300);
    while (!body.empty() && (body.back() == '\n' || body.back() == '\r')) body.remove_suffix(1);
    return absl::UnavailableError(absl::StrCat(backend_.name, ": ", AbslView(what), ": HTTP ",
                                               response->status_code, " ", AbslView(body)));
  }

  const std::string& name() const { return backend_.name; }

 private:
  BackendEndpoint backend_;
  HttpEndpoint endpoint_;
  std::string token_;
};

absl::StatusOr<AdminClient> RegisteredBackend(EtcdClient& etcd, const std::string& prefix,
                                              const std::string& name, const std::string& token) {
  PH_ASSIGN_OR_RETURN(EtcdRangeResult range, etcd.Range(BackendKey(prefix, name)));
  if (range.kvs.empty()) {
    return absl::UnavailableError(
        absl::StrCat("backend ", name, " is not registered (down or draining)"));
  }
  PH_ASSIGN_OR_RETURN(BackendEndpoint endpoint, DecodeBackend(name, range.kvs.front().value));
  if (endpoint.admin_port == 0) {
    return absl::FailedPreconditionError(
        absl::StrCat("backend ", name, " registered no admin API port (--admin_listen)"));
  }
  return AdminClient(std::move(endpoint), token);
}

class Mover {
 public:
  Mover(const MoveContext& context, std::string address, std::string to, std::ostream& out)
      : flags_{std::move(address), std::move(to), context.prefix},
        etcd_(*context.etcd),
        token_(context.token),
        out_(out) {}

  absl::Status Run() {
    const std::string move_key = MoveKey(flags_.prefix, flags_.address);
    for (int round = 0; round < 8; ++round) {
      PH_ASSIGN_OR_RETURN(std::optional<EtcdKeyValue> record_kv, Get(move_key));
      PH_ASSIGN_OR_RETURN(std::optional<EtcdKeyValue> user_kv,
                          Get(UserKey(flags_.prefix, flags_.address)));
      if (!record_kv.has_value()) {
        PH_ASSIGN_OR_RETURN(std::string current, CurrentBackend(user_kv));
        if (current == flags_.to) {
          out_ << flags_.address << " is on " << flags_.to << "\n";
          return absl::OkStatus();
        }
        const MoveRecord record{current, flags_.to, "copy"};
        PH_ASSIGN_OR_RETURN(
            bool created,
            etcd_.CompareAndSwap(move_key, 0, EtcdOp::Put(move_key, EncodeMoveRecord(record))));
        if (created)
          out_ << "move " << flags_.address << ": " << current << " -> " << flags_.to << "\n";
        out_.flush();
        continue;  // read it back with its revision
      }
      PH_ASSIGN_OR_RETURN(MoveRecord record, DecodeMoveRecord(record_kv->value, "move record",
                                                              {"copy", "hold", "switched"}));
      if (record.to != flags_.to) {
        return absl::FailedPreconditionError(
            absl::StrCat("a move of ", flags_.address, " to ", record.to,
                         " is in progress: run it with --to=", record.to, " to finish it first"));
      }
      if (record.step == "copy") {
        PH_RETURN_IF_ERROR(StepCopy(record, *record_kv, user_kv, move_key));
      } else if (record.step == "hold") {
        PH_RETURN_IF_ERROR(StepHold(record, *record_kv, user_kv, move_key));
      } else {
        PH_RETURN_IF_ERROR(StepSwitched(record, *record_kv, move_key));
        out_ << "done: " << flags_.address << " is on " << record.to << "\n";
        return absl::OkStatus();
      }
    }
    return absl::AbortedError("the directory kept changing under the move; run it again");
  }

 private:
  absl::StatusOr<std::optional<EtcdKeyValue>> Get(const std::string& key) {
    PH_ASSIGN_OR_RETURN(EtcdRangeResult range, etcd_.Range(key));
    if (range.kvs.empty()) return std::optional<EtcdKeyValue>();
    return std::optional<EtcdKeyValue>(range.kvs.front());
  }

  // The user's backend: its own entry, else its tenant's.
  absl::StatusOr<std::string> CurrentBackend(const std::optional<EtcdKeyValue>& user_kv) {
    if (user_kv.has_value()) {
      PH_ASSIGN_OR_RETURN(PlacementEntry entry, DecodePlacement(user_kv->value));
      return entry.backend;
    }
    const std::string domain(flags_.address.substr(flags_.address.rfind('@') + 1));
    PH_ASSIGN_OR_RETURN(std::optional<EtcdKeyValue> tenant_kv,
                        Get(TenantKey(flags_.prefix, domain)));
    if (!tenant_kv.has_value()) {
      return absl::NotFoundError(
          absl::StrCat("neither ", flags_.address, " nor ", domain, " is placed in the directory"));
    }
    PH_ASSIGN_OR_RETURN(PlacementEntry entry, DecodePlacement(tenant_kv->value));
    return entry.backend;
  }

  absl::StatusOr<AdminClient> Backend(const std::string& name) {
    return RegisteredBackend(etcd_, flags_.prefix, name, token_);
  }

  std::string AccountPath() const {
    return absl::StrCat("/api/v1/accounts/", PathSegment(flags_.address));
  }

  // One pass of pages from `from` to `to`, starting at the first message.
  absl::Status CopyPass(AdminClient& from, AdminClient& to, std::string_view label) {
    uint64_t after = 0;
    uint64_t imported = 0, skipped = 0, deleted = 0;
    for (int pages = 0; pages < kPagesPerPassMax; ++pages) {
      auto page = from.Call("GET", absl::StrCat(AccountPath(), "/mailbox?after=", after), "", "");
      PH_RETURN_IF_ERROR(from.Expect(page, "export", {200}));
      auto stored = to.Call("PUT", absl::StrCat(AccountPath(), "/mailbox"),
                            "application/octet-stream", page->body);
      PH_RETURN_IF_ERROR(to.Expect(stored, "import", {200}));
      PH_ASSIGN_OR_RETURN(JsonValue answer, ParseJson(stored->body));
      auto number = [&](std::string_view name) -> uint64_t {
        const JsonValue* v = answer.Find(name);
        std::optional<int64_t> n = v == nullptr ? std::nullopt : v->AsInt64();
        return n.has_value() && *n > 0 ? static_cast<uint64_t>(*n) : 0;
      };
      imported += number("imported");
      skipped += number("skipped");
      deleted += number("deleted");
      const JsonValue* complete = answer.Find("complete");
      out_ << label << ": " << imported << " copied, " << skipped << " already there, " << deleted
           << " removed\n";
      out_.flush();
      if (complete != nullptr && complete->boolean()) return absl::OkStatus();
      const uint64_t next = number("next_after_seq");
      if (next <= after) return absl::InternalError("the source's page cursor did not advance");
      after = next;
    }
    return absl::ResourceExhaustedError("too many pages");
  }

  // The transaction every step ends with: both keys still as read, then both written.
  absl::Status Commit(const std::string& move_key, int64_t record_revision,
                      const std::optional<EtcdKeyValue>& user_kv, const PlacementEntry& entry,
                      const MoveRecord& next) {
    const std::string user_key = UserKey(flags_.prefix, flags_.address);
    PH_ASSIGN_OR_RETURN(
        EtcdTxnResult result,
        etcd_.Txn({EtcdCompare::ModRevisionIs(move_key, record_revision),
                   EtcdCompare::ModRevisionIs(user_key, user_kv ? user_kv->mod_revision : 0)},
                  {EtcdOp::Put(user_key, EncodePlacement(entry)),
                   EtcdOp::Put(move_key, EncodeMoveRecord(next))}));
    if (!result.succeeded) {
      return absl::AbortedError(
          "the directory changed under the move (another mover?); run it again");
    }
    return absl::OkStatus();
  }

  absl::Status StepCopy(const MoveRecord& record, const EtcdKeyValue& record_kv,
                        const std::optional<EtcdKeyValue>& user_kv, const std::string& move_key) {
    PH_ASSIGN_OR_RETURN(AdminClient from, Backend(record.from));
    PH_ASSIGN_OR_RETURN(AdminClient to, Backend(record.to));
    PH_RETURN_IF_ERROR(CopyPass(from, to, "copy (source serving)"));
    PH_RETURN_IF_ERROR(Commit(move_key, record_kv.mod_revision, user_kv,
                              PlacementEntry{record.from, record.to},
                              MoveRecord{record.from, record.to, "hold"}));
    out_ << "switching: deliveries to " << flags_.address << " wait\n";
    out_.flush();
    return absl::OkStatus();
  }

  absl::Status StepHold(const MoveRecord& record, const EtcdKeyValue& record_kv,
                        const std::optional<EtcdKeyValue>& user_kv, const std::string& move_key) {
    PH_ASSIGN_OR_RETURN(AdminClient from, Backend(record.from));
    PH_ASSIGN_OR_RETURN(AdminClient to, Backend(record.to));
    auto held = from.Call("PUT", absl::StrCat(AccountPath(), "/hold"), "application/json",
                          "{\"held\":true}");
    PH_RETURN_IF_ERROR(from.Expect(held, "hold", {200}));
    PH_RETURN_IF_ERROR(CopyPass(from, to, "final copy (source held)"));
    PH_RETURN_IF_ERROR(Commit(move_key, record_kv.mod_revision, user_kv,
                              PlacementEntry{record.to, ""},
                              MoveRecord{record.from, record.to, "switched"}));
    out_ << "switched: " << flags_.address << " is served by " << record.to << "\n";
    out_.flush();
    return absl::OkStatus();
  }

  absl::Status StepSwitched(const MoveRecord& record, const EtcdKeyValue& record_kv,
                            const std::string& move_key) {
    PH_ASSIGN_OR_RETURN(AdminClient from, Backend(record.from));
    auto deleted = from.Call("DELETE", AccountPath(), "", "");
    PH_RETURN_IF_ERROR(from.Expect(deleted, "delete the old copy", {204, 404}));
    auto released = from.Call("PUT", absl::StrCat(AccountPath(), "/hold"), "application/json",
                              "{\"held\":false}");
    PH_RETURN_IF_ERROR(from.Expect(released, "release the hold", {200, 404}));
    out_ << "removed the copy on " << record.from << "\n";
    out_.flush();
    PH_ASSIGN_OR_RETURN(EtcdTxnResult result,
                        etcd_.Txn({EtcdCompare::ModRevisionIs(move_key, record_kv.mod_revision)},
                                  {EtcdOp::Delete(move_key)}));
    if (!result.succeeded) return absl::AbortedError("the move record changed; run it again");
    return absl::OkStatus();
  }

  struct {
    std::string address;  // lower-cased
    std::string to;
    std::string prefix;
  } const flags_;
  EtcdClient& etcd_;
  const std::string token_;
  std::ostream& out_;
};

}  // namespace

std::string MoveKey(std::string_view prefix, std::string_view address) {
  return absl::StrCat(AbslView(prefix), "moves/", absl::AsciiStrToLower(AbslView(address)));
}

absl::Status MoveMailbox(const MoveContext& context, std::string_view address, std::string_view to,
                         std::ostream& progress) {
  Mover mover(context, absl::AsciiStrToLower(AbslView(address)), std::string(to), progress);
  absl::Status status = mover.Run();
  progress.flush();
  return status;
}

absl::StatusOr<std::vector<std::string>> ListBackendAccounts(const MoveContext& context,
                                                             const std::string& backend,
                                                             std::string_view domain) {
  PH_ASSIGN_OR_RETURN(AdminClient admin,
                      RegisteredBackend(*context.etcd, context.prefix, backend, context.token));
  auto listed =
      admin.Call("GET", absl::StrCat("/api/v1/accounts?domain=", PathSegment(domain)), "", "");
  PH_RETURN_IF_ERROR(admin.Expect(listed, "list accounts", {200}));
  // Unpaged: a tenant of a million accounts lists in about 100 MB.
  PH_ASSIGN_OR_RETURN(JsonValue answer,
                      ParseJson(listed->body, JsonLimits{.bytes_max = kAccountListBytesMax,
                                                         .values_max = kAccountListValuesMax}));
  const JsonValue* accounts = answer.Find("accounts");
  if (accounts == nullptr || !accounts->is_array()) {
    return absl::DataLossError(absl::StrCat(backend, ": an account list without \"accounts\""));
  }
  std::vector<std::string> addresses;
  for (const JsonValue& account : accounts->elements()) {
    const JsonValue* address = account.Find("address");
    if (address == nullptr || !address->is_string() || address->text().empty()) {
      return absl::DataLossError(absl::StrCat(backend, ": an account without \"address\""));
    }
    addresses.push_back(absl::AsciiStrToLower(AbslView(address->text())));
  }
  return addresses;
}

absl::StatusOr<std::string> ReadAdminToken(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat("cannot read --admin_token_file ", path));
  std::string token;
  std::getline(in, token);
  if (!token.empty() && token.back() == '\r') token.pop_back();
  if (token.empty() || token.size() > kTokenBytesMax) {
    return absl::InvalidArgumentError(absl::StrCat("no usable token in ", path));
  }
  return token;
}

absl::StatusOr<MoveCommand> ParseMoveCommand(std::string_view command,
                                             const std::vector<std::string>& args) {
  MoveCommand flags;
  auto usage = [&](std::string_view why) {
    return absl::InvalidArgumentError(
        absl::StrCat(AbslView(why), " (usage: posthaste ", AbslView(command),
                     " --to=BACKEND --etcd_endpoints=URLS --admin_token_file=FILE "
                     "[--directory_prefix=/posthaste/])"));
  };
  std::vector<std::string> positional;
  for (size_t i = 0; i < args.size(); ++i) {
    std::string_view arg = args[i];
    if (arg.substr(0, 2) != "--") {
      positional.emplace_back(arg);
      continue;
    }
    arg.remove_prefix(2);
    std::string name, value;
    const size_t eq = arg.find('=');
    if (eq != std::string_view::npos) {
      name = std::string(arg.substr(0, eq));
      value = std::string(arg.substr(eq + 1));
    } else {
      name = std::string(arg);
      if (i + 1 >= args.size()) return usage(absl::StrCat("--", name, " needs a value"));
      value = args[++i];
    }
    if (name == "to") {
      flags.to = value;
    } else if (name == "etcd_endpoints") {
      flags.etcd_endpoints = value;
    } else if (name == "admin_token_file") {
      flags.token_file = value;
    } else if (name == "directory_prefix") {
      flags.prefix = value;
    } else {
      return usage(absl::StrCat("unknown flag --", name));
    }
  }
  if (positional.size() != 1) return usage("one name");
  if (flags.to.empty() || flags.etcd_endpoints.empty() || flags.token_file.empty()) {
    return usage("--to, --etcd_endpoints and --admin_token_file are required");
  }
  flags.name = absl::AsciiStrToLower(positional[0]);
  absl::StatusOr<std::vector<HttpEndpoint>> endpoints = ParseEtcdEndpoints(flags.etcd_endpoints);
  if (!endpoints.ok()) return usage(StdView(endpoints.status().message()));
  flags.endpoints = *std::move(endpoints);
  return flags;
}

int RunUserMove(const std::vector<std::string>& args, std::ostream& out, std::ostream& err) {
  absl::StatusOr<MoveCommand> command = ParseMoveCommand("user move ADDRESS", args);
  if (!command.ok()) {
    err << "posthaste: user move: " << StdView(command.status().message()) << "\n";
    return 2;
  }
  if (command->name.find('@') == std::string::npos) {
    err << "posthaste: user move: ADDRESS must be local@domain\n";
    return 2;
  }
  auto fail = [&](const absl::Status& status) {
    err << "posthaste: user move: " << StdView(status.message()) << "\n";
    return 1;
  };
  absl::StatusOr<std::string> token = ReadAdminToken(command->token_file);
  if (!token.ok()) return fail(token.status());
  EtcdClientOptions options;
  options.endpoints = command->endpoints;
  EtcdClient etcd(std::move(options));
  const MoveContext context{&etcd, command->prefix, *std::move(token)};
  absl::Status status = MoveMailbox(context, command->name, command->to, out);
  if (!status.ok()) return fail(status);
  return 0;
}

}  // namespace posthaste::server::placement
