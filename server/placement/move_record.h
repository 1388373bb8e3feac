// The etcd record of a move in progress, for a user (`moves/<address>`, mailbox_move.h) and for
// a tenant (`tenant_moves/<domain>`, tenant_move.h): {"from":"b1","to":"b2","step":"..."}.
//
// Threading: pure functions.
#ifndef POSTHASTE_SERVER_PLACEMENT_MOVE_RECORD_H_
#define POSTHASTE_SERVER_PLACEMENT_MOVE_RECORD_H_

#include <initializer_list>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"

namespace posthaste::server::placement {

struct MoveRecord {
  std::string from;
  std::string to;
  std::string step;
};

std::string EncodeMoveRecord(const MoveRecord& record);
// InvalidArgument naming `what` ("move record", "tenant move record") for a record that is not
// a JSON object with non-empty "from", "to" and "step", or whose step is not one of `steps`.
absl::StatusOr<MoveRecord> DecodeMoveRecord(std::string_view value, std::string_view what,
                                            std::initializer_list<std::string_view> steps);

}  // namespace posthaste::server::placement

#endif  // POSTHASTE_SERVER_PLACEMENT_MOVE_RECORD_H_
