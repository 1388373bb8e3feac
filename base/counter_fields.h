// Counter tables: the members of a plain counter struct written once, as an X-macro.
//
// A counter table is a macro that takes one argument X and calls X(member, ...) once per
// counter, e.g.
//   #define PH_FOO_COUNTERS(X)
//     X(widgets_made, "widgets finished")
//     X(widgets_refused, "limit: widgets_max")
//   struct FooCounters { PH_FOO_COUNTERS(PH_COUNTER_MEMBER) };
//   PH_COUNTER_BLOCK_SUM(FooCounters, PH_FOO_COUNTERS)
// What follows the member name is the table's business: a description for a component's own
// counters, or the Prometheus name, labels and help where the server exports a block
// (metrics/counter_table.h). Every member is a uint64_t starting at 0, so a block is trivially
// copyable and its counters sit at fixed offsets: the exporter reads them through a table of
// offsets instead of copying them field by field.
//
// Threading: none here. A block of plain integers has one writer thread (its owner says which);
// a block of atomics may be written by several.
#ifndef POSTHASTE_BASE_COUNTER_FIELDS_H_
#define POSTHASTE_BASE_COUNTER_FIELDS_H_

#include <atomic>
#include <cstdint>

// One uint64_t member per table row.
#define PH_COUNTER_MEMBER(member, ...) uint64_t member = 0;

// One std::atomic<uint64_t> member per table row, for blocks written by several threads.
#define PH_ATOMIC_COUNTER_MEMBER(member, ...) std::atomic<uint64_t> member{0};

// `into.member += from.member` per table row (used by PH_COUNTER_BLOCK_SUM).
#define PH_COUNTER_ADD_MEMBER(member, ...) into.member += from.member;

// Defines `Block& operator+=(Block&, const Block&)` adding every counter of TABLE; for blocks
// summed into a larger one (e.g. a session's counters into its shard's when the session ends).
#define PH_COUNTER_BLOCK_SUM(Block, TABLE)                   \
  inline Block& operator+=(Block& into, const Block& from) { \
    TABLE(PH_COUNTER_ADD_MEMBER)                             \
    return into;                                             \
  }

#endif  // POSTHASTE_BASE_COUNTER_FIELDS_H_
