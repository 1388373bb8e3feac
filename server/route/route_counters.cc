#include "server/route/route_counters.h"

#include <string_view>

namespace posthaste::server::route {
namespace {

struct CounterRow {
  std::string_view metric;
  std::string_view label;
  std::string_view help;
  const std::atomic<uint64_t>* value;
};

// The label name of each family: answers by kind, closes by reason, writes by result.
std::string_view LabelName(std::string_view metric) {
  if (metric.find("closed") != std::string_view::npos) return "reason";
  if (metric.find("writes") != std::string_view::npos) return "result";
  if (metric.find("pushes") != std::string_view::npos) return "result";
  return "answer";
}

}  // namespace

std::string RouteMetricsText(const RouteCounters& counters, bool directory_stale,
                             int64_t directory_revision) {
  const CounterRow rows[] = {
#define PH_ROUTE_COUNTER_ROW(member, metric, label, help) {metric, label, help, &counters.member},
      PH_ROUTE_COUNTERS(PH_ROUTE_COUNTER_ROW)
#undef PH_ROUTE_COUNTER_ROW
  };
  std::string out;
  std::string_view family;
  for (const CounterRow& row : rows) {
    if (row.metric != family) {
      family = row.metric;
      out.append("# HELP ").append(row.metric).append(" ").append(row.help).append("\n");
      out.append("# TYPE ").append(row.metric).append(" counter\n");
    }
    out.append(row.metric).append("{").append(LabelName(row.metric)).append("=\"");
    out.append(row.label).append("\"} ").append(std::to_string(row.value->load()));
    out.append("\n");
  }
  out.append(
      "# HELP posthaste_route_directory_stale 1 while the directory cannot be confirmed "
      "current (answers come from the last snapshot)\n"
      "# TYPE posthaste_route_directory_stale gauge\n"
      "posthaste_route_directory_stale ");
  out.append(directory_stale ? "1" : "0").append("\n");
  out.append(
      "# HELP posthaste_route_directory_revision revision of the snapshot answers come from\n"
      "# TYPE posthaste_route_directory_revision gauge\n"
      "posthaste_route_directory_revision ");
  out.append(std::to_string(directory_revision)).append("\n");
  return out;
}

}  // namespace posthaste::server::route
