#include "storage/store_error.h"

#include <string>
#include <utility>

#include "absl/strings/cord.h"
#include "base/strings.h"

namespace posthaste::storage {
namespace {

// The payload's type URL (abseil's convention is a URL-like name; nothing resolves it).
constexpr std::string_view kPayloadUrl = "type.posthaste/storage.StoreError";

struct KindInfo {
  StoreError kind;
  std::string_view name;
  absl::StatusCode code;
};

// One row per kind, in enum order.
constexpr KindInfo kKinds[] = {
    {StoreError::kNone, "none", absl::StatusCode::kUnknown},
    {StoreError::kUnknownAccount, "unknown_account", absl::StatusCode::kNotFound},
    {StoreError::kUnknownTenant, "unknown_tenant", absl::StatusCode::kNotFound},
    {StoreError::kAccountExists, "account_exists", absl::StatusCode::kAlreadyExists},
    {StoreError::kDisabled, "disabled", absl::StatusCode::kFailedPrecondition},
    {StoreError::kOverQuota, "over_quota", absl::StatusCode::kResourceExhausted},
    {StoreError::kMessageTooBig, "message_too_big", absl::StatusCode::kResourceExhausted},
    {StoreError::kInvalidAddress, "invalid_address", absl::StatusCode::kInvalidArgument},
    {StoreError::kInvalidUidl, "invalid_uidl", absl::StatusCode::kInvalidArgument},
    {StoreError::kUidlInUse, "uidl_in_use", absl::StatusCode::kAlreadyExists},
    {StoreError::kNotWireForm, "not_wire_form", absl::StatusCode::kInvalidArgument},
    {StoreError::kInvalidArgument, "invalid_argument", absl::StatusCode::kInvalidArgument},
    {StoreError::kNoSuchMessage, "no_such_message", absl::StatusCode::kOutOfRange},
    {StoreError::kNoStore, "no_store", absl::StatusCode::kNotFound},
    {StoreError::kStoreLocked, "store_locked", absl::StatusCode::kUnavailable},
    {StoreError::kNewerSchema, "newer_schema", absl::StatusCode::kFailedPrecondition},
    {StoreError::kTemporary, "temporary", absl::StatusCode::kUnavailable},
    {StoreError::kCorrupt, "corrupt", absl::StatusCode::kDataLoss},
    {StoreError::kIo, "io", absl::StatusCode::kInternal},
    {StoreError::kAccountHeld, "account_held", absl::StatusCode::kUnavailable},
    {StoreError::kTenantExists, "tenant_exists", absl::StatusCode::kAlreadyExists},
    {StoreError::kTenantNotEmpty, "tenant_not_empty", absl::StatusCode::kFailedPrecondition},
    {StoreError::kStaleRevision, "stale_revision", absl::StatusCode::kFailedPrecondition},
    {StoreError::kNoSpace, "no_space", absl::StatusCode::kResourceExhausted},
};

const KindInfo& Info(StoreError kind) {
  const auto index = static_cast<size_t>(kind);
  return index < std::size(kKinds) ? kKinds[index] : kKinds[0];
}

}  // namespace

std::string_view StoreErrorName(StoreError kind) { return Info(kind).name; }

StoreError ErrorOf(const absl::Status& status) {
  if (status.ok()) return StoreError::kNone;
  const auto payload = status.GetPayload(AbslView(kPayloadUrl));
  if (!payload.has_value()) return StoreError::kNone;
  const std::string name(*payload);
  for (const KindInfo& info : kKinds) {
    if (info.name == name) return info.kind;
  }
  return StoreError::kNone;
}

absl::Status StoreErrorStatus(StoreError kind, std::string_view message) {
  return WithStoreError(absl::Status(Info(kind).code, AbslView(message)), kind);
}

absl::Status WithStoreError(absl::Status status, StoreError kind) {
  if (status.ok() || kind == StoreError::kNone) return status;
  status.SetPayload(AbslView(kPayloadUrl), absl::Cord(AbslView(Info(kind).name)));
  return status;
}

}  // namespace posthaste::storage
