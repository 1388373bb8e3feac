#include "server/placement/move_record.h"

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "base/json.h"
#include "base/status_macros.h"
#include "base/strings.h"

namespace posthaste::server::placement {

std::string EncodeMoveRecord(const MoveRecord& record) {
  return absl::StrCat("{\"from\":", JsonQuote(record.from), ",\"to\":", JsonQuote(record.to),
                      ",\"step\":", JsonQuote(record.step), "}");
}

absl::StatusOr<MoveRecord> DecodeMoveRecord(std::string_view value, std::string_view what,
                                            std::initializer_list<std::string_view> steps) {
  PH_ASSIGN_OR_RETURN(JsonValue json, ParseJson(value));
  MoveRecord record;
  for (auto [name, field] : {std::pair<std::string_view, std::string*>{"from", &record.from},
                             {"to", &record.to},
                             {"step", &record.step}}) {
    const JsonValue* v = json.Find(name);
    if (v == nullptr || !v->is_string() || v->text().empty()) {
      return absl::InvalidArgumentError(
          absl::StrCat(AbslView(what), " without \"", AbslView(name), "\""));
    }
    *field = std::string(v->text());
  }
  if (std::find(steps.begin(), steps.end(), record.step) == steps.end()) {
    return absl::InvalidArgumentError(
        absl::StrCat(AbslView(what), " with step \"", record.step, "\""));
  }
  return record;
}

}  // namespace posthaste::server::placement
