#include "server/pop3_import/pop3_reply_parser.h"

#include <utility>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "base/strings.h"
#include "base/uidl.h"

namespace posthaste::server::pop3_import {
namespace {

// A line for an error message: at most 80 bytes, control bytes shown as '?'.
std::string Quoted(std::string_view line) {
  std::string out(line.substr(0, 80));
  for (char& c : out) {
    if (static_cast<unsigned char>(c) < 0x20 || static_cast<unsigned char>(c) > 0x7e) c = '?';
  }
  return absl::StrCat("\"", out, line.size() > 80 ? "...\"" : "\"");
}

// The terminator line ".\r\n" (or ".\n", from a sloppy server) or a beginning of it.
bool IsTerminatorPrefix(std::string_view line) {
  return line == "." || line == ".\r" || line == ".\r\n" || line == ".\n";
}

std::string_view WithoutLineEnd(std::string_view line) {
  if (!line.empty() && line.back() == '\n') line.remove_suffix(1);
  if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
  return line;
}

// Calls `each` with every line of a listing body (without its line end).
template <typename Each>
absl::Status ForEachLine(std::string_view body, Each each) {
  size_t line_number = 0;
  while (!body.empty()) {
    size_t end = body.find('\n');
    std::string_view line = body.substr(0, end == std::string_view::npos ? body.size() : end + 1);
    body.remove_prefix(line.size());
    ++line_number;
    line = WithoutLineEnd(line);
    if (!line.empty() && line[0] == '.') line.remove_prefix(1);  // dot-stuffed
    absl::Status status = each(line);
    if (!status.ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat("listing line ", line_number, " ", Quoted(line), ": ", status.message()));
    }
  }
  return absl::OkStatus();
}

// "n rest": the number and what follows the first space.
absl::Status SplitNumbered(std::string_view line, uint64_t* number, std::string_view* rest) {
  const size_t space = line.find(' ');
  if (space == std::string_view::npos) return absl::InvalidArgumentError("no space");
  if (!absl::SimpleAtoi(AbslView(line.substr(0, space)), number) || *number == 0 ||
      line.substr(0, space).find_first_not_of("0123456789") != std::string_view::npos) {
    return absl::InvalidArgumentError("not a message number");
  }
  *rest = line.substr(space + 1);
  return absl::OkStatus();
}

}  // namespace

void Pop3ReplyParser::Expect(ReplyShape shape, uint64_t body_bytes_max) {
  state_ = State::kStatus;
  shape_ = shape;
  body_bytes_max_ = body_bytes_max;
  line_.clear();
  reply_ = Pop3Reply();
  error_ = absl::OkStatus();
}

Pop3Reply Pop3ReplyParser::TakeReply() {
  state_ = State::kIdle;
  return std::exchange(reply_, Pop3Reply());
}

Pop3ReplyParser::Progress Pop3ReplyParser::Fail(std::string_view why) {
  state_ = State::kError;
  error_ = absl::InvalidArgumentError(AbslView(why));
  reply_ = Pop3Reply();
  line_.clear();
  return Progress::kError;
}

Pop3ReplyParser::Progress Pop3ReplyParser::OnStatusLine(std::string_view line) {
  line = WithoutLineEnd(line);
  std::string_view rest;
  if (line.substr(0, 3) == "+OK") {
    reply_.ok = true;
    rest = line.substr(3);
  } else if (line.substr(0, 4) == "-ERR") {
    reply_.ok = false;
    rest = line.substr(4);
  } else {
    return Fail(absl::StrCat("the source sent ", Quoted(line), " where +OK or -ERR belongs"));
  }
  if (!rest.empty() && rest[0] != ' ') {
    return Fail(absl::StrCat("the source sent ", Quoted(line), " where +OK or -ERR belongs"));
  }
  if (!rest.empty()) rest.remove_prefix(1);
  reply_.text = std::string(rest);
  if (reply_.ok && shape_ == ReplyShape::kMultiLine) {
    state_ = State::kBody;
    body_line_start_ = true;
    return Progress::kNeedMore;
  }
  state_ = State::kComplete;
  return Progress::kComplete;
}

Pop3ReplyParser::Progress Pop3ReplyParser::Feed(std::string_view data, size_t* consumed) {
  *consumed = 0;
  if (state_ == State::kError) return Progress::kError;
  if (state_ == State::kComplete) return Progress::kComplete;
  if (state_ == State::kIdle) return Fail("the source sent bytes nobody asked for");
  size_t at = 0;
  while (at < data.size()) {
    const size_t newline = data.find('\n', at);
    const size_t end = newline == std::string_view::npos ? data.size() : newline + 1;
    const std::string_view piece = data.substr(at, end - at);
    at = end;
    *consumed = at;
    if (state_ == State::kStatus) {
      if (line_.size() + piece.size() > kStatusLineBytesMax) {
        return Fail(
            absl::StrCat("the source sent a status line over ", kStatusLineBytesMax, " octets"));
      }
      line_.append(piece);
      if (newline == std::string_view::npos) return Progress::kNeedMore;
      std::string line = std::move(line_);
      line_.clear();
      const Progress progress = OnStatusLine(line);
      if (progress != Progress::kNeedMore) return progress;
      continue;
    }
    // State::kBody: lines go straight into the body; line_ holds only the start of a line
    // that might be the terminator (at most 3 bytes).
    if (reply_.body.size() + line_.size() + piece.size() > body_bytes_max_ + 3) {
      return Fail(absl::StrCat("a reply body exceeds ", body_bytes_max_, " octets"));
    }
    if (line_.empty() && !(body_line_start_ && piece[0] == '.')) {
      reply_.body.append(piece);
      body_line_start_ = piece.back() == '\n';
      continue;
    }
    line_.append(piece);
    if (!IsTerminatorPrefix(line_)) {
      reply_.body.append(line_);
      body_line_start_ = line_.back() == '\n';
      line_.clear();
      continue;
    }
    if (newline == std::string_view::npos) return Progress::kNeedMore;
    line_.clear();
    if (reply_.body.size() > body_bytes_max_) {
      return Fail(absl::StrCat("a reply body exceeds ", body_bytes_max_, " octets"));
    }
    state_ = State::kComplete;
    return Progress::kComplete;
  }
  return Progress::kNeedMore;
}

absl::StatusOr<std::vector<UidlEntry>> ParseUidlListing(std::string_view body, size_t entries_max) {
  std::vector<UidlEntry> entries;
  absl::flat_hash_set<std::string_view> seen;
  absl::Status status = ForEachLine(body, [&](std::string_view line) -> absl::Status {
    if (entries.size() >= entries_max) {
      return absl::InvalidArgumentError(absl::StrCat("more than ", entries_max, " messages"));
    }
    UidlEntry entry;
    std::string_view uidl;
    if (absl::Status s = SplitNumbered(line, &entry.number, &uidl); !s.ok()) return s;
    if (!IsValidUidl(uidl)) {
      return absl::InvalidArgumentError("a UIDL must be 1-70 characters 0x21-0x7E");
    }
    if (!entries.empty() && entry.number <= entries.back().number) {
      return absl::InvalidArgumentError("message numbers out of order");
    }
    entry.uidl = std::string(uidl);
    entries.push_back(std::move(entry));
    return absl::OkStatus();
  });
  if (!status.ok()) return status;
  for (const UidlEntry& entry : entries) {
    if (!seen.insert(entry.uidl).second) {
      return absl::InvalidArgumentError(
          absl::StrCat("the source lists UIDL ", Quoted(entry.uidl),
                       " for two messages: its UIDLs are not unique and cannot be kept"));
    }
  }
  return entries;
}

absl::StatusOr<std::vector<ListEntry>> ParseListListing(std::string_view body, size_t entries_max) {
  std::vector<ListEntry> entries;
  absl::Status status = ForEachLine(body, [&](std::string_view line) -> absl::Status {
    if (entries.size() >= entries_max) {
      return absl::InvalidArgumentError(absl::StrCat("more than ", entries_max, " messages"));
    }
    ListEntry entry;
    std::string_view rest;
    if (absl::Status s = SplitNumbered(line, &entry.number, &rest); !s.ok()) return s;
    const std::string_view size = rest.substr(0, rest.find(' '));
    if (size.empty() || size.find_first_not_of("0123456789") != std::string_view::npos ||
        !absl::SimpleAtoi(AbslView(size), &entry.octets)) {
      return absl::InvalidArgumentError("not a size");
    }
    if (!entries.empty() && entry.number <= entries.back().number) {
      return absl::InvalidArgumentError("message numbers out of order");
    }
    entries.push_back(entry);
    return absl::OkStatus();
  });
  if (!status.ok()) return status;
  return entries;
}

std::string UnstuffBody(std::string_view body) {
  std::string text;
  text.reserve(body.size());
  bool line_start = true;
  for (size_t i = 0; i < body.size(); ++i) {
    if (line_start && body[i] == '.') {
      line_start = false;
      continue;
    }
    text.push_back(body[i]);
    line_start = body[i] == '\n';
  }
  return text;
}

}  // namespace posthaste::server::pop3_import
