// libFuzzer target for LmtpSession: arbitrary byte streams (raw, line-sized, or canned LMTP
// commands) against a fake driver whose answers (recipient verdicts, delivery outcomes,
// flushes, connection loss, a shutdown drain, an idle timeout) are drawn from the same input.
// Invariants are checked with PH_CHECK (abort = finding):
//   - replies are well-formed: whole CRLF lines "ddd text" or "ddd-text" with a 3-digit code,
//     no stray CR or LF (no injection from client bytes), continuation lines share the code;
//   - after "354", exactly one reply per accepted RCPT follows (RFC 2033 section 4.2), with
//     per-recipient codes; all 250 when every copy was delivered, none when none was, all 552
//     when the message was over the size limit;
//   - no deliver action without a preceding 354, and at most one per 354; its recipients are
//     distinct, at most the accepted RCPTs, its message is in wire form (CRLF line ends only,
//     lines beginning with '.' stuffed, ending in CRLF) and at most twice the size limit once
//     unstuffed (tests/lmtp_wire_form_fuzzer checks the exact bytes and count);
//   - nothing at all is emitted while a check or delivery result is pending, or after close;
//   - after a shutdown drain, its 421 comes only between transactions;
//   - reply bytes taken between flushes stay within the output limit plus one burst of replies.
//
// Input layout: bytes 0..2 configure the session; the rest is a sequence of steps, each a
// control byte and its operands (see Step()).
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "base/check.h"
#include "server/lmtp/session.h"
#include "tools/build/fuzz_input.h"

namespace posthaste::lmtp {
namespace {

using Input = ::posthaste::testing::FuzzInput;

constexpr const char* kCanned[] = {
    "LHLO fuzz.example\r\n",
    "MAIL FROM:<a@b.example>\r\n",
    "MAIL FROM:<> SIZE=100 BODY=8BITMIME\r\n",
    "RCPT TO:<x@y.example>\r\n",
    "RCPT TO:<z@y.example>\r\n",
    "DATA\r\n",
    "line\r\n..\r\n.\r\n",
    ".\r\n",
    "RSET\r\n",
    "NOOP\r\n",
    "QUIT\r\n",
    "EHLO x\r\n",
    "VRFY x\r\n",
    "MAIL FROM:<a@b.example> SIZE=999999999999\r\n",
    "RCPT TO:<@r.example:q@y.example>\r\n",
    "\n",
};

enum class Pending { kNone, kCheck, kDeliver };

constexpr size_t kBurstBytes = 8192;  // LHLO reply plus one reply per recipient, generously

class Harness {
 public:
  explicit Harness(Input* input) : input_(input) {
    const uint8_t flags = input_->Byte();
    options_.enhanced_status_codes = !(flags & 1);
    options_.eight_bit_mime = !(flags & 2);
    options_.add_return_path = !(flags & 4);
    options_.advertise_size_limit = !(flags & 8);
    options_.command_line_bytes_max = (flags & 16) ? 40 : 512;
    const uint8_t limits = input_->Byte();
    options_.message_bytes_max = (limits & 1) ? 64 : 64 * 1024;
    options_.recipients_max = 1 + (limits >> 1) % 5;
    options_.bad_commands_max = 1 + (limits >> 4) % 16;
    const uint8_t output = input_->Byte();
    options_.output_queued_bytes_max = (output & 1) ? (output >> 1) : 64 * 1024;
    options_.hostname = "fuzz.example";
    session_ = std::make_unique<LmtpSession>(options_);
    Drain();
  }

  void Run() {
    int steps = 0;
    while (!input_->empty() && steps++ < 4096) Step();
    for (int i = 0; i < 64 && !closed_; ++i) {
      if (pending_ != Pending::kNone) Answer(input_->Byte());
      Flush();
      if (pending_ == Pending::kNone) break;
    }
    if (pending_ == Pending::kDeliver) Answer(0);  // storage always reports back
  }

 private:
  void Step() {
    const uint8_t control = input_->Byte();
    switch (control % 8) {
      case 0:
      case 1:
        Feed(input_->Bytes(1 + control / 8));
        break;
      case 2:
        Feed(input_->Bytes(16 * (1 + control / 8)));  // pipelined groups
        break;
      case 3: {
        std::string chunk;
        while (!input_->empty()) {
          const char c = static_cast<char>(input_->Byte());
          chunk.push_back(c);
          if (c == '\n' || chunk.size() > 700) break;
        }
        Feed(chunk);
        break;
      }
      case 4:
        Feed(kCanned[(control / 8) % (sizeof(kCanned) / sizeof(kCanned[0]))]);
        break;
      case 5:
        if (pending_ != Pending::kNone) Answer(input_->Byte());
        break;
      case 6:
        Flush();
        break;
      case 7:
        if (control / 8 == 0) {
          lost_ = true;
          closed_ = true;
          session_->OnConnectionLost();
          Drain();
        } else if (control / 8 == 1) {
          Shutdown();
        } else if (control / 8 == 2) {
          IdleTimeout();
        } else {
          Feed(std::string(control, 'a') + "\r\n");  // long lines
        }
        break;
    }
  }

  void Feed(std::string_view bytes) {
    if (lost_) return;
    accepted_before_call_ = session_->accepted_rcpt_count();
    session_->Feed(bytes);
    Drain();
  }

  // SIGTERM drain: the 421 may come only between transactions (checked in CheckReplies).
  void Shutdown() {
    if (lost_) return;
    shutdown_requested_ = true;
    accepted_before_call_ = session_->accepted_rcpt_count();
    session_->OnShutdown();
    Drain();
  }

  // The driver's idle timeout, which never fires while a result is pending. It abandons any
  // transaction: no per-recipient replies are owed any more.
  void IdleTimeout() {
    if (lost_ || pending_ != Pending::kNone) return;
    expected_replies_ = 0;
    replies_seen_ = 0;
    data_open_ = false;
    delivered_this_data_ = false;
    session_->OnIdleTimeout();
    Drain();
  }

  void Flush() {
    if (lost_) return;
    taken_since_flush_ = 0;
    accepted_before_call_ = session_->accepted_rcpt_count();
    session_->OnOutputFlushed();
    Drain();
  }

  void Answer(uint8_t choice) {
    const Pending pending = pending_;
    pending_ = Pending::kNone;
    accepted_before_call_ = session_->accepted_rcpt_count();
    if (pending == Pending::kCheck) {
      LmtpRecipientVerdict verdict;
      verdict.code = static_cast<LmtpRecipientVerdict::Code>(choice % 7);
      if (choice & 0x10) verdict.mailbox = "shared@y.example";  // duplicates
      if (choice & 0x20) verdict.text = (choice & 0x40) ? "bad\r\ntext" : "custom text";
      if (verdict.code == LmtpRecipientVerdict::Code::kAccepted) ++accepted_before_call_;
      session_->OnRecipientChecked(std::move(verdict));
    } else if (pending == Pending::kDeliver) {
      std::vector<LmtpDeliveryResult> results;
      size_t count = deliver_recipients_;
      if ((choice & 0xC0) == 0xC0 && count > 0) --count;  // a driver that forgot one
      all_delivered_ = count == deliver_recipients_;
      none_delivered_ = true;
      for (size_t i = 0; i < count; ++i) {
        const uint8_t c = (i == 0) ? choice : static_cast<uint8_t>(choice * 31 + i * 7);
        LmtpDeliveryResult result;
        result.code = (c & 1) ? static_cast<LmtpDeliveryResult::Code>((c >> 1) % 8)
                              : LmtpDeliveryResult::Code::kDelivered;
        if (c & 0x20) result.text = "stored";
        if (result.code == LmtpDeliveryResult::Code::kDelivered) {
          none_delivered_ = false;
        } else {
          all_delivered_ = false;
        }
        results.push_back(std::move(result));
      }
      session_->OnDeliveryDone(results);
    } else {
      return;
    }
    Drain();
  }

  void Drain() {
    for (int guard = 0; guard < 100000; ++guard) {
      const LmtpAction action = session_->NextAction();
      if (action.kind == LmtpActionKind::kNone) return;
      PH_CHECK(!closed_);
      PH_CHECK(pending_ == Pending::kNone);
      switch (action.kind) {
        case LmtpActionKind::kNone:
          return;
        case LmtpActionKind::kWrite:
          taken_since_flush_ += action.bytes.size();
          PH_CHECK(taken_since_flush_ <= options_.output_queued_bytes_max + kBurstBytes);
          CheckReplies(action.bytes);
          break;
        case LmtpActionKind::kCheckRecipient:
          PH_CHECK(!action.recipient.empty());
          PH_CHECK(expected_replies_ == 0 && !data_open_);
          pending_ = Pending::kCheck;
          break;
        case LmtpActionKind::kDeliver:
          CheckDelivery(action.delivery);
          pending_ = Pending::kDeliver;
          break;
        case LmtpActionKind::kClose:
          PH_CHECK(expected_replies_ == 0);
          closed_ = true;
          break;
      }
    }
    PH_CHECK(false);  // an endless action stream
  }

  void CheckDelivery(const LmtpDelivery& delivery) {
    // Only after 354, once per 354, before any per-recipient reply.
    PH_CHECK(data_open_);
    PH_CHECK(!delivered_this_data_);
    PH_CHECK(expected_replies_ > 0 && replies_seen_ == 0);
    delivered_this_data_ = true;
    PH_CHECK(!delivery.recipients.empty());
    PH_CHECK(delivery.recipients.size() <= expected_replies_);
    std::set<std::string_view> mailboxes;
    for (const LmtpRecipient& r : delivery.recipients) {
      PH_CHECK(mailboxes.insert(r.mailbox).second);
    }
    const std::string_view m = delivery.message;
    size_t header = 0;
    if (options_.add_return_path) {
      PH_CHECK(m.substr(0, 14) == "Return-Path: <");
      header = m.find("\r\n") + 2;
    }
    PH_CHECK(m.size() >= 2 && m.substr(m.size() - 2) == "\r\n");
    uint64_t stuffing = 0;
    for (size_t i = 0; i < m.size(); ++i) {
      if (m[i] == '\n') PH_CHECK(i > 0 && m[i - 1] == '\r');
      if (m[i] == '\r') PH_CHECK(i + 1 < m.size() && m[i + 1] == '\n');
      if (m[i] == '.' && (i == 0 || m[i - 1] == '\n')) {
        PH_CHECK(m[i + 1] == '.');
        ++stuffing;
      }
    }
    PH_CHECK(m.size() - header - stuffing <= 2 * options_.message_bytes_max);
    deliver_recipients_ = delivery.recipients.size();
  }

  void CheckReplies(std::string_view bytes) {
    // Writes hold whole reply lines.
    while (!bytes.empty()) {
      const size_t lf = bytes.find('\n');
      PH_CHECK(lf != std::string_view::npos);
      const std::string_view line = bytes.substr(0, lf + 1);
      bytes.remove_prefix(lf + 1);
      PH_CHECK(line.size() >= 6);
      PH_CHECK(line[line.size() - 2] == '\r');
      for (size_t i = 0; i + 2 < line.size(); ++i) PH_CHECK(line[i] != '\r' && line[i] != '\n');
      for (int i = 0; i < 3; ++i) PH_CHECK(line[i] >= '0' && line[i] <= '9');
      PH_CHECK(line[0] >= '2' && line[0] <= '5');
      PH_CHECK(line[3] == ' ' || line[3] == '-');
      const std::string_view code = line.substr(0, 3);
      if (!continuation_code_.empty()) PH_CHECK(code == continuation_code_);
      continuation_code_ = line[3] == '-' ? std::string(code) : std::string();
      if (!greeted_) {
        PH_CHECK(code == "220");
        greeted_ = true;
        continue;
      }
      if (expected_replies_ > 0) {
        // One reply per accepted RCPT after the end of the message.
        PH_CHECK(line[3] == ' ');
        PH_CHECK(code == "250" || code == "452" || code == "552" || code == "451" || code == "554");
        if (!delivered_this_data_) {
          PH_CHECK(code == "552");  // over the size limit: nothing was delivered
        } else {
          if (all_delivered_) PH_CHECK(code == "250");
          if (none_delivered_) PH_CHECK(code != "250");
        }
        ++replies_seen_;
        if (replies_seen_ == expected_replies_) {
          expected_replies_ = 0;
          replies_seen_ = 0;
          data_open_ = false;
          delivered_this_data_ = false;
        }
        continue;
      }
      if (code == "421" && shutdown_requested_) PH_CHECK(!data_open_);
      if (code == "354") {
        PH_CHECK(!data_open_);
        // RCPTs can only be accepted by OnRecipientChecked, so the count at the start of this
        // call (plus the verdict it delivered) is the transaction's count.
        PH_CHECK(accepted_before_call_ > 0);
        data_open_ = true;
        delivered_this_data_ = false;
        expected_replies_ = accepted_before_call_;
        replies_seen_ = 0;
      }
    }
  }

  Input* input_;
  LmtpSessionOptions options_;
  std::unique_ptr<LmtpSession> session_;
  Pending pending_ = Pending::kNone;
  bool closed_ = false;
  bool lost_ = false;
  bool shutdown_requested_ = false;
  bool greeted_ = false;
  size_t taken_since_flush_ = 0;
  std::string continuation_code_;
  size_t accepted_before_call_ = 0;
  bool data_open_ = false;
  bool delivered_this_data_ = false;
  size_t expected_replies_ = 0;
  size_t replies_seen_ = 0;
  size_t deliver_recipients_ = 0;
  bool all_delivered_ = false;
  bool none_delivered_ = false;
};

}  // namespace
}  // namespace posthaste::lmtp

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  posthaste::lmtp::Input input(data, size);
  posthaste::lmtp::Harness harness(&input);
  harness.Run();
  return 0;
}
