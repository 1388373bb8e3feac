#include "server/pop3_service/storage_adapter.h"

#include <utility>

#include "base/status_macros.h"

namespace posthaste::server {

absl::StatusOr<OpenMaildrop> AdaptSnapshot(std::shared_ptr<const storage::MailboxSnapshot> stored) {
  pop3::MailboxSnapshot::Builder builder;
  const size_t n = stored->size();
  size_t uidl_bytes = 0;
  for (size_t i = 0; i < n; ++i) uidl_bytes += stored->entry(i).uidl_length;
  builder.Reserve(static_cast<uint32_t>(n), uidl_bytes);
  for (size_t i = 0; i < n; ++i) {
    PH_RETURN_IF_ERROR(builder.Add(stored->pop3_size(i), stored->uidl(i), i));
  }
  OpenMaildrop out;
  out.view = std::move(builder).Build();
  out.stored = std::move(stored);
  return out;
}

}  // namespace posthaste::server
