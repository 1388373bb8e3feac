#include "server/placement/tenant_move.h"

#include <algorithm>
#include <cstdint>
#include <optional>
#include <set>
#include <string_view>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "base/json.h"
#include "base/status_macros.h"
#include "base/strings.h"
#include "server/placement/directory.h"
#include "server/placement/directory_codec.h"
#include "server/placement/etcd_client.h"
#include "server/placement/mailbox_move.h"
#include "server/placement/move_record.h"

namespace posthaste::server::placement {
namespace {

// Keys read per etcd range call when scanning users/ and moves/ for the tenant's entries.
constexpr int64_t kRangePageKeys = 1000;
// Range pages per scan (a bound on the loop: a billion keys).
constexpr int kRangePagesMax = 1'000'000;
// Rounds of "read the record, run its step" per run; each step advances or fails.
constexpr int kRoundsMax = 8;

class TenantMover {
 public:
  TenantMover(const MoveContext& context, std::string domain, std::string to,
              std::ostream& progress)
      : context_(context),
        etcd_(*context.etcd),
        domain_(std::move(domain)),
        to_(std::move(to)),
        record_key_(absl::StrCat(context.prefix, "tenant_moves/", domain_)),
        tenant_key_(TenantKey(context.prefix, domain_)),
        progress_(progress) {}

  // OK once the tenant is placed on the target with no user entry naming it and no record.
  absl::StatusOr<int> Run() {
    for (int round = 0; round < kRoundsMax; ++round) {
      PH_ASSIGN_OR_RETURN(std::optional<EtcdKeyValue> record_kv, Get(record_key_));
      if (!record_kv.has_value()) {
        PH_ASSIGN_OR_RETURN(std::optional<EtcdKeyValue> tenant_kv, Get(tenant_key_));
        if (!tenant_kv.has_value()) {
          return absl::NotFoundError(absl::StrCat(domain_, " is not placed in the directory"));
        }
        PH_ASSIGN_OR_RETURN(PlacementEntry tenant, DecodePlacement(tenant_kv->value));
        if (tenant.backend == to_) {
          Progress(absl::StrCat(domain_, " is on ", to_));
          return 0;
        }
        const MoveRecord record{tenant.backend, to_, "pin"};
        PH_ASSIGN_OR_RETURN(
            bool created, etcd_.CompareAndSwap(record_key_, 0,
                                               EtcdOp::Put(record_key_, EncodeMoveRecord(record))));
        if (created)
          Progress(absl::StrCat("tenant move ", domain_, ": ", tenant.backend, " -> ", to_));
        continue;  // read it back with its revision
      }
      PH_ASSIGN_OR_RETURN(
          MoveRecord record,
          DecodeMoveRecord(record_kv->value, "tenant move record", {"pin", "users"}));
      if (record.to != to_) {
        return absl::FailedPreconditionError(
            absl::StrCat("a move of ", domain_, " to ", record.to,
                         " is in progress: run it with --to=", record.to, " to finish it first"));
      }
      if (record.step == "pin") {
        PH_RETURN_IF_ERROR(StepPin(record, *record_kv));
        continue;
      }
      return StepUsers(record, *record_kv);
    }
    return absl::AbortedError("the directory kept changing under the move; run it again");
  }

 private:
  void Progress(std::string_view line) {
    progress_ << line << "\n";
    progress_.flush();
  }

  absl::StatusOr<std::optional<EtcdKeyValue>> Get(const std::string& key) {
    PH_ASSIGN_OR_RETURN(EtcdRangeResult range, etcd_.Range(key));
    if (range.kvs.empty()) return std::optional<EtcdKeyValue>();
    return std::optional<EtcdKeyValue>(range.kvs.front());
  }

  // The addresses of the tenant among the keys under `kind` ("users/" or "moves/"), with the
  // value of each, in pages.
  absl::StatusOr<std::vector<std::pair<std::string, std::string>>> ScanTenantKeys(
      std::string_view kind) {
    const std::string prefix = absl::StrCat(context_.prefix, AbslView(kind));
    const std::string suffix = absl::StrCat("@", domain_);
    std::vector<std::pair<std::string, std::string>> found;
    std::string from = prefix;
    for (int page = 0; page < kRangePagesMax; ++page) {
      EtcdRangeOptions options;
      options.range_end = PrefixRangeEnd(prefix);
      options.limit = kRangePageKeys;
      PH_ASSIGN_OR_RETURN(EtcdRangeResult range, etcd_.Range(from, options));
      for (const EtcdKeyValue& kv : range.kvs) {
        if (absl::EndsWith(kv.key, suffix)) {
          found.emplace_back(kv.key.substr(prefix.size()), kv.value);
        }
      }
      if (!range.more || range.kvs.empty()) return found;
      from = range.kvs.back().key + std::string(1, '\0');
    }
    return absl::ResourceExhaustedError(absl::StrCat("too many keys under ", prefix));
  }

  // Gives `address` the entry {"backend":from} unless it has an entry already. Returns whether
  // it wrote one.
  absl::StatusOr<bool> Pin(const std::string& address, const std::string& from) {
    const std::string key = UserKey(context_.prefix, address);
    return etcd_.CompareAndSwap(key, 0,
                                EtcdOp::Put(key, EncodePlacement(PlacementEntry{from, ""})));
  }

  absl::Status StepPin(const MoveRecord& record, const EtcdKeyValue& record_kv) {
    // The tenant's placement as read before pinning: the switch below fails if it changed since.
    PH_ASSIGN_OR_RETURN(std::optional<EtcdKeyValue> tenant_kv, Get(tenant_key_));
    if (!tenant_kv.has_value()) {
      return absl::NotFoundError(absl::StrCat(domain_, " left the directory during its move"));
    }
    PH_ASSIGN_OR_RETURN(std::vector<std::string> accounts,
                        ListBackendAccounts(context_, record.from, domain_));
    size_t pinned = 0;
    for (const std::string& address : accounts) {
      PH_ASSIGN_OR_RETURN(bool wrote, Pin(address, record.from));
      if (wrote) ++pinned;
    }
    Progress(absl::StrCat("pinned ", pinned, " of ", accounts.size(), " accounts of ", domain_,
                          " to ", record.from, " (the others have entries of their own)"));
    PH_ASSIGN_OR_RETURN(
        EtcdTxnResult result,
        etcd_.Txn({EtcdCompare::ModRevisionIs(record_key_, record_kv.mod_revision),
                   EtcdCompare::ModRevisionIs(tenant_key_, tenant_kv->mod_revision)},
                  {EtcdOp::Put(tenant_key_, EncodePlacement(PlacementEntry{record.to, ""})),
                   EtcdOp::Put(record_key_,
                               EncodeMoveRecord(MoveRecord{record.from, record.to, "users"}))}));
    if (!result.succeeded) {
      return absl::AbortedError(
          "the directory changed under the tenant move (another mover?); run it again");
    }
    Progress(absl::StrCat("placed ", domain_, " on ", record.to, "; its users follow one by one"));
    return absl::OkStatus();
  }

  absl::StatusOr<int> StepUsers(const MoveRecord& record, const EtcdKeyValue& record_kv) {
    PH_ASSIGN_OR_RETURN(std::vector<std::string> on_source,
                        ListBackendAccounts(context_, record.from, domain_));
    PH_ASSIGN_OR_RETURN(auto moving, ScanTenantKeys("moves/"));
    std::set<std::string> to_move(on_source.begin(), on_source.end());
    for (const auto& [address, value] : moving) to_move.insert(address);
    int moved = 0;
    const size_t total = to_move.size();
    for (const std::string& address : to_move) {
      // An account that reached the source after the pin step: give it its entry before
      // moving it (without one, the user move would find it placed on the target already).
      PH_RETURN_IF_ERROR(Pin(address, record.from).status());
      Progress(absl::StrCat("user ", address, " (", moved + 1, " of ", total, ")"));
      PH_RETURN_IF_ERROR(MoveMailbox(context_, address, record.to, progress_));
      ++moved;
    }
    // Every entry of the tenant that names the target is redundant now; one naming the source
    // without an account there (deleted meanwhile) routes nowhere either way.
    PH_ASSIGN_OR_RETURN(auto entries, ScanTenantKeys("users/"));
    size_t unpinned = 0;
    for (const auto& [address, value] : entries) {
      absl::StatusOr<PlacementEntry> entry = DecodePlacement(value);
      if (!entry.ok() || !entry->moving_to.empty()) continue;
      if (entry->backend != record.to && entry->backend != record.from) continue;
      const std::string key = UserKey(context_.prefix, address);
      PH_ASSIGN_OR_RETURN(std::optional<EtcdKeyValue> kv, Get(key));
      if (!kv.has_value() || kv->value != value) continue;
      PH_ASSIGN_OR_RETURN(
          EtcdTxnResult result,
          etcd_.Txn({EtcdCompare::ModRevisionIs(key, kv->mod_revision),
                     EtcdCompare::ModRevisionIs(MoveKey(context_.prefix, address), 0)},
                    {EtcdOp::Delete(key)}));
      if (result.succeeded) ++unpinned;
    }
    Progress(absl::StrCat("unpinned ", unpinned, " users of ", domain_));
    // Nothing of the tenant may be left on the source: an account created there during the
    // move is moved by the next run.
    PH_ASSIGN_OR_RETURN(std::vector<std::string> left,
                        ListBackendAccounts(context_, record.from, domain_));
    if (!left.empty()) {
      return absl::AbortedError(absl::StrCat(left.size(), " accounts of ", domain_, " appeared on ",
                                             record.from, " during the move; run it again"));
    }
    PH_ASSIGN_OR_RETURN(EtcdTxnResult result,
                        etcd_.Txn({EtcdCompare::ModRevisionIs(record_key_, record_kv.mod_revision)},
                                  {EtcdOp::Delete(record_key_)}));
    if (!result.succeeded)
      return absl::AbortedError("the tenant move record changed; run it again");
    return moved;
  }

  const MoveContext& context_;
  EtcdClient& etcd_;
  const std::string domain_;
  const std::string to_;
  const std::string record_key_;
  const std::string tenant_key_;
  std::ostream& progress_;
};

}  // namespace

int RunTenantMove(const std::vector<std::string>& args, std::ostream& out, std::ostream& err) {
  absl::StatusOr<MoveCommand> command = ParseMoveCommand("tenant move DOMAIN", args);
  if (!command.ok()) {
    err << "posthaste: tenant move: " << StdView(command.status().message()) << "\n";
    return 2;
  }
  if (command->name.empty() || command->name.find('@') != std::string::npos ||
      command->name.find('/') != std::string::npos) {
    err << "posthaste: tenant move: DOMAIN must be a domain name\n";
    return 2;
  }
  auto fail = [&](const absl::Status& status) {
    err << "posthaste: tenant move: " << StdView(status.message()) << "\n";
    return 1;
  };
  absl::StatusOr<std::string> token = ReadAdminToken(command->token_file);
  if (!token.ok()) return fail(token.status());
  EtcdClientOptions options;
  options.endpoints = command->endpoints;
  EtcdClient etcd(std::move(options));
  const MoveContext context{&etcd, command->prefix, *std::move(token)};
  TenantMover mover(context, command->name, command->to, err);
  absl::StatusOr<int> moved = mover.Run();
  if (!moved.ok()) return fail(moved.status());
  out << "done: " << command->name << " is on " << command->to << " (" << *moved
      << " mailboxes moved by this run)\n";
  out.flush();
  return 0;
}

}  // namespace posthaste::server::placement
