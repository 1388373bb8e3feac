// libFuzzer target: LmtpSession's framing against a reference splitter. A random byte stream
// (with tokens such as "\r\n.\r\n", "\n.\n" and whole commands expanded from marker bytes, so
// the fuzzer reaches DATA often) is cut at the boundaries a simple CRLF-only reader finds, fed
// to the session in random pieces, and the two must agree (PH_CHECK aborts on a finding):
//   - command mode: the session counts exactly one command per CRLF-terminated line, and none
//     before the line's last byte arrives; a line whose first LF is bare closes the session at
//     that LF; an over-long line is one command, whatever bare LFs it holds;
//   - data mode (after the session accepted DATA): the message ends exactly at the first
//     <CRLF>.<CRLF> (or a ".\r\n" at its very start), never earlier, and the delivered bytes
//     are the reference's: CRLF-lines dot-unstuffed, bare LFs turned into CRLF, bare CRs kept,
//     then written in wire form (bare CRs turned into CRLF, lines beginning with '.' stuffed).
// So no byte sequence can end a message early or make message bytes run as commands.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "base/check.h"
#include "server/lmtp/session.h"

namespace posthaste::lmtp {
namespace {

constexpr size_t kCommandLineBytesMax = 64;
constexpr uint64_t kMessageBytesMax = 2048;

// Marker bytes 0xF0.. expand to these, so short inputs reach every state.
constexpr std::string_view kTokens[] = {
    "\r\n",
    "\r\n.\r\n",
    "LHLO x\r\n",
    "MAIL FROM:<a@b.example>\r\n",
    "RCPT TO:<r@t.example>\r\n",
    "DATA\r\n",
    "\n.\n",
    "\r.\r",
    ".\r\n",
    "..",
    "RSET\r\n",
    "\r",
    "\n",
    "NOOP\r\n",
    "\r\n.\n",
    "\n.\r\n",
};

// The message in message bytes the reference framed (before the terminator): unstuffed, bare
// CRs kept. Its size is what the session's size limit counts.
std::string ReferenceMessage(std::string_view content) {
  std::string out;
  while (!content.empty()) {
    const size_t crlf = content.find("\r\n");
    PH_CHECK(crlf != std::string_view::npos);  // content ends with CRLF by construction
    std::string_view line = content.substr(0, crlf);
    content.remove_prefix(crlf + 2);
    if (!line.empty() && line.front() == '.') line.remove_prefix(1);
    for (char c : line) {
      if (c == '\n') {
        out += "\r\n";
      } else {
        out.push_back(c);
      }
    }
    out += "\r\n";
  }
  return out;
}

// The wire form of a ReferenceMessage (whose every LF has its CR): a bare CR ends a line too,
// each line beginning with '.' gets another, and an empty message is one empty line.
std::string WireForm(std::string_view message) {
  std::string out;
  bool line_start = true;
  for (size_t i = 0; i < message.size(); ++i) {
    const char c = message[i];
    if (line_start && c == '.') out.push_back('.');
    line_start = false;
    if (c == '\r') {
      out += "\r\n";
      if (i + 1 < message.size() && message[i + 1] == '\n') ++i;
      line_start = true;
    } else {
      out.push_back(c);
    }
  }
  return out.empty() ? std::string("\r\n") : out;
}

class Harness {
 public:
  Harness(std::string stream, uint32_t seed) : stream_(std::move(stream)), rng_(seed | 1) {
    LmtpSessionOptions options;
    options.hostname = "fuzz.example";
    options.add_return_path = false;
    options.command_line_bytes_max = kCommandLineBytesMax;
    options.message_bytes_max = kMessageBytesMax;
    options.bad_commands_max = 1000000;  // a close would end the comparison early
    session_ = std::make_unique<LmtpSession>(options);
    Drain();
  }

  void Run() {
    size_t pos = 0;
    while (pos < stream_.size() && !closed_) {
      pos = session_->state() == LmtpState::kData ? DataStep(pos) : CommandStep(pos);
    }
  }

 private:
  // One CRLF-line of commands from `pos`; returns where the next one starts.
  size_t CommandStep(size_t pos) {
    const uint64_t before = session_->counters().commands;
    const size_t lf = stream_.find('\n', pos);
    if (lf == std::string::npos) {  // an unterminated tail: at most one (over-long) command
      FeedRange(pos, stream_.size(), [&] { return true; });
      PH_CHECK(session_->counters().commands - before <= 1);
      return stream_.size();
    }
    const bool bare = lf == pos || stream_[lf - 1] != '\r';
    if (lf + 1 - pos > kCommandLineBytesMax) {
      // Over-long: one command, ending at the first CRLF at or after the first LF.
      size_t end = lf + 1;
      if (bare) {
        const size_t crlf = stream_.find("\r\n", lf);
        end = crlf == std::string::npos ? stream_.size() : crlf + 2;
      }
      FeedRange(pos, end, [&] { return session_->counters().commands - before <= 1; });
      PH_CHECK(session_->counters().commands - before == 1 || end == stream_.size());
      PH_CHECK(session_->state() != LmtpState::kData);
      return end;
    }
    // Every byte but the last: no command yet.
    FeedRange(pos, lf, [&] { return session_->counters().commands == before; });
    Feed(std::string_view(stream_).substr(lf, 1));
    if (closed_) {
      // Closes: a bare LF, too many bad commands, after QUIT, or a first line "PROXY ..." (a
      // header from a peer outside --proxy_networks: 554 and close).
      PH_CHECK(bare || session_->counters().bad_command_limit_closes > 0 ||
               session_->counters().proxy_header_refusals > 0 || lost_after_quit_or_close());
      return stream_.size();
    }
    PH_CHECK(!bare);  // a bare LF must close
    PH_CHECK(session_->counters().commands == before + 1);
    return lf + 1;
  }

  // Message bytes from `pos` (the session is in DATA); returns where commands resume.
  size_t DataStep(size_t pos) {
    size_t dot;  // where the terminating ".\r\n" starts
    if (stream_.compare(pos, 3, ".\r\n") == 0) {
      dot = pos;
    } else {
      const size_t found = stream_.find("\r\n.\r\n", pos);
      dot = found == std::string::npos ? std::string::npos : found + 2;
    }
    const uint64_t received = session_->counters().messages_received;
    if (dot == std::string::npos) {
      FeedRange(pos, stream_.size(), [&] { return session_->state() == LmtpState::kData; });
      PH_CHECK(session_->state() == LmtpState::kData);
      return stream_.size();
    }
    const size_t end = dot + 3;
    FeedRange(pos, end - 1, [&] { return session_->state() == LmtpState::kData; });
    PH_CHECK(session_->state() == LmtpState::kData);
    PH_CHECK(session_->counters().messages_received == received);
    const uint64_t delivered = deliveries_;
    Feed(std::string_view(stream_).substr(end - 1, 1));
    PH_CHECK(session_->state() != LmtpState::kData);
    PH_CHECK(session_->counters().messages_received == received + 1);
    const std::string expected = ReferenceMessage(std::string_view(stream_).substr(pos, dot - pos));
    if (expected.size() <= kMessageBytesMax) {
      PH_CHECK(deliveries_ == delivered + 1);
      PH_CHECK(last_message_ == WireForm(expected));
    } else {
      PH_CHECK(deliveries_ == delivered);
    }
    return end;
  }

  bool lost_after_quit_or_close() const { return quit_seen_; }

  // Feeds stream_[begin, end) in random pieces, checking `still_ok` after each but the last.
  template <typename Predicate>
  void FeedRange(size_t begin, size_t end, Predicate still_ok) {
    while (begin < end && !closed_) {
      const size_t piece = std::min<size_t>(end - begin, 1 + Next() % 97);
      Feed(std::string_view(stream_).substr(begin, piece));
      begin += piece;
      if (begin < end && !closed_) PH_CHECK(still_ok());
    }
  }

  void Feed(std::string_view bytes) {
    session_->Feed(bytes);
    Drain();
  }

  // Carries out every action: recipients are accepted, deliveries succeed, output flushes.
  void Drain() {
    for (int guard = 0; guard < 100000; ++guard) {
      LmtpAction action = session_->NextAction();
      if (action.kind == LmtpActionKind::kNone) {
        session_->OnOutputFlushed();  // may let parsing resume
        action = session_->NextAction();
      }
      switch (action.kind) {
        case LmtpActionKind::kNone:
          return;
        case LmtpActionKind::kWrite:
          if (action.bytes.rfind("221 ", 0) == 0) quit_seen_ = true;
          break;
        case LmtpActionKind::kCheckRecipient: {
          LmtpRecipientVerdict verdict;
          verdict.code = LmtpRecipientVerdict::Code::kAccepted;
          session_->OnRecipientChecked(verdict);
          break;
        }
        case LmtpActionKind::kDeliver: {
          ++deliveries_;
          last_message_.assign(action.delivery.message);
          std::vector<LmtpDeliveryResult> results(action.delivery.recipients.size());
          for (LmtpDeliveryResult& result : results) {
            result.code = LmtpDeliveryResult::Code::kDelivered;
          }
          session_->OnDeliveryDone(results);
          break;
        }
        case LmtpActionKind::kClose:
          closed_ = true;
          return;
      }
    }
    PH_CHECK(false);  // the session never stops producing actions
  }

  uint32_t Next() {
    rng_ ^= rng_ << 13;
    rng_ ^= rng_ >> 17;
    rng_ ^= rng_ << 5;
    return rng_;
  }

  const std::string stream_;
  uint32_t rng_;
  std::unique_ptr<LmtpSession> session_;
  bool closed_ = false;
  bool quit_seen_ = false;
  uint64_t deliveries_ = 0;
  std::string last_message_;
};

}  // namespace
}  // namespace posthaste::lmtp

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 2) return 0;
  const uint32_t seed = data[0] | (uint32_t{data[1]} << 8);
  std::string stream;
  for (size_t i = 2; i < size && stream.size() < 16384; ++i) {
    const uint8_t b = data[i];
    if (b >= 0xF0) {
      stream += posthaste::lmtp::kTokens[b - 0xF0];
    } else {
      stream.push_back(static_cast<char>(b));
    }
  }
  posthaste::lmtp::Harness harness(std::move(stream), seed);
  harness.Run();
  return 0;
}
