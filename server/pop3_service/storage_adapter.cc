#include "server/pop3_service/storage_adapter.h"

#include <utility>

#include "base/status_macros.h"

namespace posthaste::server {

absl::StatusOr<OpenMaildrop> AdaptSnapshot(std::shared_ptr<const storage::MailboxSnapshot> stored,
                                           uint32_t list_newest) {
  pop3::MailboxSnapshot::Builder builder;
  const size_t n = stored->size();
  // The stored snapshot is in arrival order: the newest messages are its last ones.
  const size_t first = list_newest != 0 && n > list_newest ? n - list_newest : 0;
  size_t uidl_bytes = 0;
  for (size_t i = first; i < n; ++i) uidl_bytes += stored->entry(i).uidl_length;
  builder.Reserve(static_cast<uint32_t>(n - first), uidl_bytes);
  for (size_t i = first; i < n; ++i) {
    PH_RETURN_IF_ERROR(builder.Add(stored->pop3_size(i), stored->uidl(i), i));
  }
  OpenMaildrop out;
  out.view = std::move(builder).Build();
  out.stored = std::move(stored);
  return out;
}

}  // namespace posthaste::server
