// Differential libFuzzer target for Pop3Session (issue 18): after a successful login, random
// and mostly well-formed TRANSACTION command sequences go both to the session and to a small
// reference model of RFC 1939 written here, a vector of {size, uidl, deleted} for a maildrop
// drawn from the input (0..50 messages). The model predicts, for every command line, +OK or
// -ERR and, for +OK, the exact values:
//   - STAT: count and octets of the undeleted messages;
//   - LIST / UIDL n: "+OK n size" / "+OK n uidl"; whole listings: one line per undeleted
//     message in ascending order, deleted ones skipped, numbers never renumbered;
//   - RETR / TOP: the message index streamed (and TOP's line count);
//   - DELE of a deleted or out-of-range message is -ERR; RSET undeletes everything;
//   - QUIT: the kCommit action names exactly the deleted set; then the sign-off and close.
//   - LANG (RFC 6856 section 3): the listing, the tag a range picks (RFC 4647 lookup) or -ERR
//     for a well-formed range nothing matches (not a syntax error); after "LANG de" the texts
//     of DELE, RSET and QUIT are the German ones and STAT, LIST, UIDL and RETR stay as above.
//   - after each batch: the session's bad-command counter and IsMarkedDeletedForTest() agree too.
// Argument grammar (RFC 1939 section 3, as the session reads it): a case-insensitive keyword,
// then arguments each after exactly one space, printable octets only, at most 255 octets with
// CRLF (RFC 2449 section 4), numbers are digits that fit in 64 bits. Syntax errors count
// towards bad_commands_max, after which the session answers -ERR and closes; a bare LF closes.
// Any disagreement prints the command and aborts (PH_CHECK).
//
// Lines are fed in fragments of sizes drawn from the input, and several lines are sometimes
// pipelined in one batch; the output queue limit is sometimes tiny, so listings come in pieces.
//
// Input layout: byte 0 message count, byte 1 options, 3 bytes per message (size, UIDL style),
// then batches: a control byte, the batch's command lines, and fragment/flush bytes.
//
// This file is compiled without libFuzzer's coverage instrumentation (server/pop3/BUILD.bazel):
// libFuzzer steers by the session's code only, not by the model's and checker's own branches.
#include <algorithm>
#include <charconv>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "base/check.h"
#include "base/uidl.h"
#include "server/pop3/mailbox_snapshot.h"
#include "server/pop3/session.h"
#include "tools/build/fuzz_input.h"

namespace posthaste::pop3 {
namespace {

using Input = ::posthaste::testing::FuzzInput;

constexpr uint32_t kMessagesMax = 50;
constexpr size_t kCommandLineBytesMax = 255;  // RFC 2449 section 4, CRLF included
constexpr std::string_view kHostname = "fuzz.example";
constexpr std::string_view kUser = "fuzz";

// ---------------------------------------------------------------------------------------------
// The reference model

struct ModelMessage {
  uint64_t size = 0;
  std::string uidl;
  bool deleted = false;
};

// What the session must answer to one command line.
struct Expectation {
  enum class Kind {
    kErr,            // a -ERR line, nothing else
    kCloseAfterErr,  // a -ERR line, then close (bad-command limit or bare LF)
    kStat,           // "+OK count octets"
    kListOne,        // "+OK n size"
    kListAll,        // "+OK ..." then "n size" per undeleted message, then "."
    kUidlOne,        // "+OK n uidl"
    kUidlAll,        // "+OK" then "n uidl" per undeleted message, then "."
    kRetr,           // "+OK size octets", then a stream of the message
    kTop,            // "+OK", then a TOP stream of the message
    kDele,           // "+OK ..."
    kRset,           // "+OK maildrop has ..."
    kCapa,           // "+OK ..." then capability lines, then "."
    kOk,             // a single "+OK ..." line (NOOP, UTF8)
    kLangListing,    // "+OK ..." then "tag description" lines, then "."
    kLangChanged,    // "+OK <tag> <text in that language>"
    kQuit,           // commit of exactly the deleted set, sign-off, close
  };
  Kind kind = Kind::kErr;
  uint32_t number = 0;  // 1-based message number
  uint64_t top_lines = 0;
  std::string line;  // the command line, for diagnostics
  std::string tag;   // kLangChanged
};

class Rfc1939Model {
 public:
  Rfc1939Model(std::vector<ModelMessage> messages, uint32_t bad_commands_max)
      : messages_(std::move(messages)), bad_commands_max_(bad_commands_max) {}

  const std::vector<ModelMessage>& messages() const { return messages_; }
  bool closed() const { return closed_; }
  bool german() const { return german_; }
  uint64_t bad_commands() const { return bad_commands_; }

  uint32_t LiveCount() const {
    uint32_t n = 0;
    for (const ModelMessage& m : messages_) n += m.deleted ? 0 : 1;
    return n;
  }
  uint64_t LiveOctets() const {
    uint64_t n = 0;
    for (const ModelMessage& m : messages_) n += m.deleted ? 0 : m.size;
    return n;
  }
  uint64_t TotalOctets() const {
    uint64_t n = 0;
    for (const ModelMessage& m : messages_) n += m.size;
    return n;
  }

  // Predicts the reply to `raw` (one command line with its line ending) in TRANSACTION and
  // applies the command's effect to the model, so the state the caller checks the reply
  // against is the state right after the command.
  Expectation Apply(std::string_view raw) {
    PH_CHECK(!closed_);
    Expectation e;
    e.line.assign(raw);
    if (!raw.ends_with("\r\n")) {
      PH_CHECK(raw.ends_with("\n"));  // the generator ends every line in CRLF or a bare LF
      ++bad_commands_;
      closed_ = true;
      e.kind = Expectation::Kind::kCloseAfterErr;
      return e;
    }
    if (raw.size() > kCommandLineBytesMax) return Bad(e);
    const std::string_view line = raw.substr(0, raw.size() - 2);
    for (char c : line) {
      const auto u = static_cast<unsigned char>(c);
      if (u < 0x20 || u == 0x7f) return Bad(e);
    }
    std::vector<std::string_view> words;
    size_t begin = 0;
    while (true) {
      const size_t space = line.find(' ', begin);
      words.push_back(
          line.substr(begin, space == std::string_view::npos ? line.npos : space - begin));
      if (space == std::string_view::npos) break;
      begin = space + 1;
    }
    std::string keyword(words[0]);
    for (char& c : keyword) {
      if (c >= 'a' && c <= 'z') c = static_cast<char>(c - 'a' + 'A');
    }
    const std::vector<std::string_view> args(words.begin() + 1, words.end());
    // Commands of the AUTHORIZATION state only.
    if (keyword == "USER" || keyword == "PASS" || keyword == "APOP" || keyword == "AUTH" ||
        keyword == "STLS") {
      return Bad(e);
    }
    size_t min_args = 0;
    size_t max_args = 0;
    if (keyword == "LIST" || keyword == "UIDL") {
      max_args = 1;
    } else if (keyword == "RETR" || keyword == "DELE") {
      min_args = max_args = 1;
    } else if (keyword == "TOP") {
      min_args = max_args = 2;
    } else if (keyword == "LANG") {
      max_args = 1;
    } else if (keyword != "STAT" && keyword != "NOOP" && keyword != "RSET" && keyword != "QUIT" &&
               keyword != "CAPA" && keyword != "UTF8") {
      return Bad(e);  // unknown or empty
    }
    for (std::string_view arg : args) {
      if (arg.empty()) return Bad(e);  // a leading, trailing or doubled space
    }
    if (args.size() < min_args || args.size() > max_args) return Bad(e);

    if (keyword == "STAT") return Ok(e, Expectation::Kind::kStat);
    if (keyword == "NOOP" || keyword == "UTF8") return Ok(e, Expectation::Kind::kOk);
    if (keyword == "CAPA") return Ok(e, Expectation::Kind::kCapa);
    if (keyword == "LANG") return Lang(e, args);
    if (keyword == "RSET") {
      for (ModelMessage& m : messages_) m.deleted = false;
      return Ok(e, Expectation::Kind::kRset);
    }
    if (keyword == "QUIT") {
      closed_ = true;
      return Ok(e, Expectation::Kind::kQuit);
    }
    if ((keyword == "LIST" || keyword == "UIDL") && args.empty()) {
      return Ok(e, keyword == "LIST" ? Expectation::Kind::kListAll : Expectation::Kind::kUidlAll);
    }
    if (keyword == "TOP") {
      const std::optional<uint64_t> lines = Number(args[1]);
      if (!lines) return Bad(e);
      e.top_lines = *lines;
    }
    // One message-number argument: syntax first (a protocol error), then existence.
    const std::optional<uint64_t> number = Number(args[0]);
    if (!number) return Bad(e);
    if (*number == 0 || *number > messages_.size() || messages_[*number - 1].deleted) {
      e.kind = Expectation::Kind::kErr;
      return e;
    }
    e.number = static_cast<uint32_t>(*number);
    if (keyword == "DELE") {
      messages_[e.number - 1].deleted = true;
      return Ok(e, Expectation::Kind::kDele);
    }
    if (keyword == "LIST") return Ok(e, Expectation::Kind::kListOne);
    if (keyword == "UIDL") return Ok(e, Expectation::Kind::kUidlOne);
    if (keyword == "RETR") return Ok(e, Expectation::Kind::kRetr);
    return Ok(e, Expectation::Kind::kTop);
  }

 private:
  // RFC 4647 section 2.1: subtags of 1 to 8 letters or digits joined by '-', the first letters
  // only; or "*".
  static bool IsRange(std::string_view range) {
    if (range == "*") return true;
    size_t begin = 0;
    bool first = true;
    while (true) {
      const size_t dash = range.find('-', begin);
      const std::string_view subtag = range.substr(begin, dash - begin);
      if (subtag.empty() || subtag.size() > 8) return false;
      for (char c : subtag) {
        const bool letter = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
        if (!letter && (first || c < '0' || c > '9')) return false;
      }
      if (dash == std::string_view::npos) return true;
      first = false;
      begin = dash + 1;
    }
  }

  // The session offers i-default, en and de; "*" is i-default (no preference is configured).
  Expectation Lang(Expectation& e, const std::vector<std::string_view>& args) {
    if (args.empty()) return Ok(e, Expectation::Kind::kLangListing);
    if (!IsRange(args[0])) return Bad(e);
    std::string range(args[0]);
    for (char& c : range) c = (c >= 'A' && c <= 'Z') ? static_cast<char>(c + 32) : c;
    if (range == "*") range = "i-default";
    while (range != "de" && range != "en" && range != "i-default") {
      const size_t dash = range.rfind('-');
      if (dash == std::string::npos) {
        e.kind = Expectation::Kind::kErr;  // unsupported, not a syntax error
        return e;
      }
      range.resize(dash);
      if (range.size() >= 2 && range[range.size() - 2] == '-') range.resize(range.size() - 2);
    }
    german_ = range == "de";
    e.tag = range;
    return Ok(e, Expectation::Kind::kLangChanged);
  }

  // A decimal number (RFC 1939 section 3: "numeric arguments ... are in decimal"); the
  // session accepts 64-bit values, so larger ones are syntax errors.
  static std::optional<uint64_t> Number(std::string_view text) {
    if (text.empty()) return std::nullopt;
    uint64_t value = 0;
    const auto [end, error] = std::from_chars(text.data(), text.data() + text.size(), value);
    if (error != std::errc() || end != text.data() + text.size()) return std::nullopt;
    return value;
  }

  static Expectation Ok(Expectation& e, Expectation::Kind kind) {
    e.kind = kind;
    return e;
  }

  Expectation Bad(Expectation& e) {
    ++bad_commands_;
    if (bad_commands_ >= bad_commands_max_) {
      closed_ = true;
      e.kind = Expectation::Kind::kCloseAfterErr;
    } else {
      e.kind = Expectation::Kind::kErr;
    }
    return e;
  }

  std::vector<ModelMessage> messages_;
  uint32_t bad_commands_max_;
  uint64_t bad_commands_ = 0;
  bool closed_ = false;
  bool german_ = false;
};

// ---------------------------------------------------------------------------------------------
// Command generator: mostly well-formed TRANSACTION commands, some malformed.

class CommandGenerator {
 public:
  CommandGenerator(Input* input, uint32_t messages) : input_(input), messages_(messages) {}

  std::string Next() {
    const uint8_t op = input_->Byte();
    switch (op % 32) {
      case 0:
      case 1:
        return Line("STAT");
      case 2:
        return Line("LIST");
      case 3:
      case 4:
        return Line("LIST " + Number());
      case 5:
        return Line("UIDL");
      case 6:
      case 7:
        return Line("UIDL " + Number());
      case 8:
      case 9:
        return Line("RETR " + Number());
      case 10:
      case 11:
        return Line(Top());
      case 12:
      case 13:
      case 14:
      case 15:
        return Line("DELE " + Number());
      case 16:
        return Line("RSET");
      case 17:
        return Line("NOOP");
      case 18:
        // QUIT ends the session: keep it rare.
        return Line((op & 0x80) ? "QUIT" : "NOOP");
      case 19: {
        static constexpr std::string_view kBothStates[] = {
            "CAPA",     "UTF8",       "LANG",      "LANG de",         "LANG en",
            "LANG *",   "LANG DE-at", "LANG fr",   "LANG i-default",  "LANG d_e",
            "LANG en-", "LANG deu",   "LANG x-de", "LANG de-CH-x-zh", "LANG abcdefghi"};
        return Line(std::string(kBothStates[input_->Byte() % std::size(kBothStates)]));
      }
      case 20: {
        static constexpr std::string_view kOtherState[] = {
            "USER fuzz",  "PASS secret", "APOP fuzz 0123456789abcdef0123456789abcdef",
            "AUTH PLAIN", "AUTH",        "STLS"};
        return Line(std::string(kOtherState[input_->Byte() % std::size(kOtherState)]));
      }
      case 21:
      case 22:
      case 23:
      case 24:
        return Malformed();
      case 25:
      case 26:
        return Line(MixCase(WellFormed()));
      case 27: {
        static constexpr std::string_view kUnknown[] = {
            "", "STATS", "LISTX", "LST", "X", "RETRIEVE 1", "DEL 1", "TOPS 1 1", "STAT\x80"};
        return Line(std::string(kUnknown[input_->Byte() % std::size(kUnknown)]));
      }
      case 28: {
        // Raw bytes from the input up to a line's length; LF would end the line early.
        std::string raw(input_->Bytes(input_->Byte() % 40));
        std::replace(raw.begin(), raw.end(), '\n', ' ');
        return Line(raw);
      }
      case 29: {
        // A valid LIST whose number is zero-padded to a line of 253..258 octets with CRLF:
        // straddles the 255-octet limit.
        const size_t total = 253 + input_->Byte() % 6;
        const std::string number = std::to_string(1 + input_->Byte() % (messages_ + 1));
        std::string line = (op & 0x40) ? "RETR " : "LIST ";
        line.append(total - 2 - line.size() - number.size(), '0');
        line.append(number);
        return Line(line);
      }
      case 30: {
        std::string line = "NOOP";
        line.append(252 + input_->Byte(), 'x');
        return Line(line);
      }
      default:
        // A bare LF ends the session: keep it rare.
        if ((op & 0xc0) == 0xc0) return WellFormed() + "\n";
        return Line(WellFormed());
    }
  }

 private:
  static std::string Line(std::string text) { return text + "\r\n"; }

  std::string Number() {
    const uint8_t mode = input_->Byte();
    switch (mode % 16) {
      case 11:
        return "0";
      case 12:
        return "00" + std::to_string(1 + input_->Byte() % (messages_ + 1));
      case 13: {
        static constexpr std::string_view kLarge[] = {
            "4294967295",           "4294967296",           "4294967297",
            "18446744073709551615", "18446744073709551616", "99999999999999999999999"};
        return std::string(kLarge[input_->Byte() % std::size(kLarge)]);
      }
      case 14: {
        static constexpr std::string_view kGarbage[] = {"-1",  "+1",  "1a",           "a",
                                                        "1.0", "0x1", "\xef\xbc\x91", "1,2"};
        return std::string(kGarbage[input_->Byte() % std::size(kGarbage)]);
      }
      case 15:
        return std::to_string(input_->Byte());
      default:
        return std::to_string(1 + input_->Byte() % (messages_ + 1));
    }
  }

  // The operands of + are not sequenced: read the input in a fixed order, so a corpus file
  // means the same under g++ and clang.
  std::string Top() {
    const std::string number = Number();
    const std::string lines = LineCount();
    return "TOP " + number + " " + lines;
  }

  std::string LineCount() {
    const uint8_t mode = input_->Byte();
    switch (mode % 8) {
      case 6:
        return "18446744073709551615";
      case 7:
        return (mode & 0x80) ? "18446744073709551616" : "-0";
      default:
        return std::to_string(input_->Byte() % 12);
    }
  }

  std::string WellFormed() {
    switch (input_->Byte() % 8) {
      case 0:
        return "STAT";
      case 1:
        return "LIST " + Number();
      case 2:
        return "UIDL " + Number();
      case 3:
        return "RETR " + Number();
      case 4:
        return Top();
      case 5:
        return "DELE " + Number();
      case 6:
        return "RSET";
      default:
        return "NOOP";
    }
  }

  // A well-formed command with one mutation.
  std::string Malformed() {
    std::string line = WellFormed();
    const uint8_t mutation = input_->Byte();
    const size_t space = line.find(' ');
    const size_t at = space == std::string::npos ? line.size() : space;
    switch (mutation % 10) {
      case 0:
        line.insert(at, " ");  // doubled space (or a trailing one)
        break;
      case 1:
        line.append(" ");
        break;
      case 2:
        line.insert(0, " ");
        break;
      case 3:
        if (space != std::string::npos)
          line[space] = '\t';
        else
          line.append("\t1");
        break;
      case 4:
        line.resize(at);  // no arguments
        break;
      case 5:
        line.append(" 1");  // one argument too many
        break;
      case 6:
        line.insert(input_->Byte() % (line.size() + 1), 1, '\0');
        break;
      case 7:
        line.insert(input_->Byte() % (line.size() + 1), 1, '\r');
        break;
      case 8:
        line.insert(input_->Byte() % (line.size() + 1), 1, '\x7f');
        break;
      default:
        line.append(" ");
        line.append(std::to_string(input_->Byte()));
        line.append(" ");
        break;
    }
    return Line(line);
  }

  std::string MixCase(std::string text) {
    const uint8_t bits = input_->Byte();
    for (size_t i = 0; i < text.size() && i < 8; ++i) {
      if ((bits >> i) & 1) {
        char& c = text[i];
        if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
      }
    }
    return text;
  }

  Input* input_;
  uint32_t messages_;
};

// ---------------------------------------------------------------------------------------------
// The driver: carries out the session's actions and records what the client would see.

struct Event {
  enum class Kind { kLine, kStream, kCommit, kClose };
  Kind kind = Kind::kLine;
  std::string line;                   // kLine, without CRLF
  uint32_t index = 0;                 // kStream
  std::optional<uint64_t> top_lines;  // kStream
  uint64_t octets = 0;                // kStream
  std::vector<uint32_t> deletions;    // kCommit
};

class Harness {
 public:
  explicit Harness(Input* input) : input_(input) {
    const uint32_t count = input_->Byte() % (kMessagesMax + 1);
    const uint8_t flags = input_->Byte();
    Pop3SessionOptions options;
    options.hostname = std::string(kHostname);
    options.policy.plaintext_requires_tls = false;
    switch (flags & 3) {
      case 0:
        break;  // the default, 64 KiB
      case 1:
        options.output_queued_bytes_max = 0;  // one listing line per flush
        break;
      case 2:
        options.output_queued_bytes_max = 1 + input_->Byte();
        break;
      default:
        options.output_queued_bytes_max = 512;
    }
    commit_ok_ = (flags & 4) == 0;
    static constexpr uint32_t kBadCommandsMax[] = {20, 1000, 1, 3};
    const uint32_t bad_commands_max = kBadCommandsMax[(flags >> 3) & 3];
    options.bad_commands_max = bad_commands_max;
    static constexpr int kSizeShift[] = {0, 0, 2, 4, 8, 16, 24, 32};
    const int size_shift = kSizeShift[flags >> 5];

    std::vector<ModelMessage> messages(count);
    MailboxSnapshot::Builder builder;
    for (uint32_t i = 0; i < count; ++i) {
      const uint64_t high = input_->Byte();  // one read per statement: a fixed order
      const uint64_t raw = (high << 8) | input_->Byte();
      messages[i].size = raw << size_shift;
      messages[i].uidl = Uidl(i, input_->Byte());
      PH_CHECK(builder.Add(messages[i].size, messages[i].uidl, 1000 + i).ok());
    }
    snapshot_ = std::move(builder).Build();
    model_ = std::make_unique<Rfc1939Model>(std::move(messages), bad_commands_max);
    session_ = std::make_unique<Pop3Session>(std::move(options));
  }

  void Run() {
    Login();
    CommandGenerator generator(input_, snapshot_->count());
    for (int batches = 0; batches < 256 && !input_->empty() && !model_->closed(); ++batches) {
      const uint8_t control = input_->Byte();
      // A quarter of the batches pipeline several commands in one go.
      const int lines = (control & 3) == 0 ? 2 + (control >> 2) % 7 : 1;
      std::string bytes;
      std::vector<std::string> batch;
      for (int i = 0; i < lines; ++i) {
        batch.push_back(generator.Next());
        bytes += batch.back();
      }
      FeedInFragments(bytes);
      Settle();
      // The replies come in command order, so the model steps through the batch as it checks
      // them. The session reads nothing after QUIT or a close; neither does the model.
      for (const std::string& line : batch) {
        if (!model_->closed()) Check(model_->Apply(line));
      }
      ExpectAgreement(events_.empty(), "output beyond what the model expects", bytes);
      ExpectAgreement(session_->counters().bad_commands == model_->bad_commands(),
                      "bad-command count", bytes);
      if (session_->state() == Pop3State::kTransaction) {
        for (uint32_t i = 0; i < model_->messages().size(); ++i) {
          ExpectAgreement(
              session_->IsMarkedDeletedForTest(MessageIndex(i)) == model_->messages()[i].deleted,
              "IsMarkedDeleted", bytes);
        }
      }
    }
    if (!model_->closed()) {
      // Every run ends with QUIT so the committed set is always checked.
      FeedInFragments("QUIT\r\n");
      Settle();
      Check(model_->Apply("QUIT\r\n"));
      ExpectAgreement(events_.empty(), "output after QUIT", "QUIT");
    }
    PH_CHECK(session_->state() == Pop3State::kClosed);
    // To see what a seed does: POP3_MODEL_FUZZER_TRACE=1 pop3_model_fuzzer FILE
    if (std::getenv("POP3_MODEL_FUZZER_TRACE") != nullptr) {
      std::fprintf(stderr, "%s\n", TranscriptText().c_str());
    }
  }

 private:
  // UIDLs of every legal shape (RFC 1939 section 7: 1..70 octets in 0x21..0x7E).
  static std::string Uidl(uint32_t index, uint8_t style) {
    std::string uidl;
    switch (style % 4) {
      case 0:
        return "uid-" + std::to_string(index);
      case 1:
        uidl.assign(1 + style % 70, '!');
        break;
      case 2:
        uidl.assign(kUidlBytesMax, '~');
        break;
      default:
        uidl.assign(1, '.');
        break;
    }
    uint32_t state = index * 2654435761u + style;
    for (char& c : uidl) {
      state = state * 1103515245u + 12345u;
      c = static_cast<char>(0x21 + (state >> 16) % (0x7e - 0x21 + 1));
    }
    return uidl;
  }

  static std::string Printable(std::string_view text) {
    std::string shown;
    for (char c : text) {
      if (c == '\r') {
        shown += "\\r";
      } else if (c == '\n') {
        shown += "\\n";
      } else if (static_cast<unsigned char>(c) < 0x20 || static_cast<unsigned char>(c) >= 0x7f) {
        char hex[8];
        std::snprintf(hex, sizeof(hex), "\\x%02x", static_cast<unsigned char>(c));
        shown += hex;
      } else {
        shown += c;
      }
    }
    return shown;
  }

  // The transcript is kept raw (a tag, a length, the bytes) and made readable only when shown:
  // formatting it on every run halved the executions per second.
  void Record(char tag, std::string_view bytes) {
    const uint32_t size = static_cast<uint32_t>(bytes.size());
    transcript_.push_back(tag);
    transcript_.append(reinterpret_cast<const char*>(&size), sizeof(size));
    transcript_.append(bytes);
  }

  std::string TranscriptText() const {
    std::string text;
    std::string_view rest = transcript_;
    while (!rest.empty()) {
      const char tag = rest[0];
      uint32_t size = 0;
      std::memcpy(&size, rest.data() + 1, sizeof(size));
      const std::string_view bytes = rest.substr(1 + sizeof(size), size);
      rest.remove_prefix(1 + sizeof(size) + size);
      if (tag == 'M') {
        uint32_t index = 0;
        std::memcpy(&index, bytes.data(), sizeof(index));
        text += "S: <message " + std::to_string(index + 1) + ">\n";
      } else {
        text += tag == 'C' ? "C: " : "S: ";
        text += Printable(bytes) + "\n";
      }
    }
    return text;
  }

  void ExpectAgreement(bool agree, std::string_view what, std::string_view command) {
    if (agree) return;
    std::fprintf(stderr, "pop3_model_fuzzer: session and RFC 1939 model disagree: %.*s\n",
                 static_cast<int>(what.size()), what.data());
    std::fprintf(stderr, "  session so far (C: fed, S: replies):\n%s\n", TranscriptText().c_str());
    std::fprintf(stderr, "  command: %s\n", Printable(command).c_str());
    std::fprintf(stderr, "  last reply line: %s\n", last_line_.c_str());
    std::string deleted;
    for (uint32_t i = 0; i < model_->messages().size(); ++i) {
      if (model_->messages()[i].deleted) deleted += " " + std::to_string(i + 1);
    }
    std::fprintf(stderr, "  model: %u of %zu messages undeleted, %llu octets; deleted:%s\n",
                 model_->LiveCount(), model_->messages().size(),
                 static_cast<unsigned long long>(model_->LiveOctets()), deleted.c_str());
    PH_CHECK(agree);
  }

  void Login() {
    Pump();  // the greeting
    FeedInFragments("USER " + std::string(kUser) + "\r\nPASS secret\r\n");
    Settle();
    ExpectAgreement(NextLine("").starts_with("+OK"), "greeting", "");
    ExpectAgreement(NextLine("USER").starts_with("+OK"), "USER", "USER");
    ExpectAgreement(NextLine("PASS") == "+OK " + std::string(kUser) + "'s " + MaildropSummary(),
                    "login maildrop summary", "PASS");
    ExpectAgreement(session_->state() == Pop3State::kTransaction, "state after login", "PASS");
  }

  // "maildrop has N messages (M octets)" for the undeleted messages.
  std::string MaildropSummary() const {
    if (!model_->german()) return "maildrop has " + CountAndOctets();
    const uint32_t count = model_->LiveCount();
    return "Postfach enthält " + std::to_string(count) +
           (count == 1 ? " Nachricht (" : " Nachrichten (") + std::to_string(model_->LiveOctets()) +
           " Oktette)";
  }
  std::string CountAndOctets() const {
    const uint32_t count = model_->LiveCount();
    return std::to_string(count) + (count == 1 ? " message (" : " messages (") +
           std::to_string(model_->LiveOctets()) + " octets)";
  }

  void FeedInFragments(std::string_view bytes) {
    while (!bytes.empty()) {
      const uint8_t choice = input_->Byte();
      size_t n = bytes.size();
      if (choice & 1)
        n = 1 + (choice >> 1) % 8;
      else if (choice & 2)
        n = 1 + (choice >> 2) % 64;
      n = std::min(n, bytes.size());
      Record('C', bytes.substr(0, n));
      session_->Feed(bytes.substr(0, n));
      bytes.remove_prefix(n);
      Pump();
      if (choice & 0x80) Flush();
    }
  }

  void Flush() {
    session_->OnOutputFlushed();
    Pump();
  }

  // Flushes until the session has nothing more to say.
  void Settle() {
    Pump();
    for (int i = 0; i < 100000; ++i) {
      session_->OnOutputFlushed();
      if (!Pump()) return;
    }
    PH_CHECK(false);  // output without end
  }

  // Takes every action the session has; returns whether there was any.
  bool Pump() {
    bool took = false;
    for (int guard = 0; guard < 100000; ++guard) {
      const Pop3Action action = session_->NextAction();
      switch (action.kind) {
        case Pop3ActionKind::kNone:
          return took;
        case Pop3ActionKind::kWrite:
          PH_CHECK(!closed_);
          AddText(action.bytes);
          break;
        case Pop3ActionKind::kCheckMessage:
          PH_CHECK(false);  // check_stored_messages is off here
          break;
        case Pop3ActionKind::kStreamMessage: {
          PH_CHECK(!closed_ && partial_line_.empty());
          Event event{Event::Kind::kStream};
          event.index = action.message.value();
          event.top_lines = action.top_body_lines;
          event.octets = action.message_octets;
          Record('M', std::string_view(reinterpret_cast<const char*>(&event.index),
                                       sizeof(event.index)));
          events_.push_back(std::move(event));
          break;
        }
        case Pop3ActionKind::kAuthenticate: {
          PH_CHECK(action.credentials.user == kUser);
          Pop3AuthResult result;
          result.code = Pop3AuthResult::Code::kOk;
          session_->OnAuthResult(result);
          break;
        }
        case Pop3ActionKind::kOpenMaildrop: {
          Pop3MaildropResult result;
          result.code = Pop3MaildropResult::Code::kOk;
          result.snapshot = snapshot_;
          session_->OnMaildropOpened(std::move(result));
          break;
        }
        case Pop3ActionKind::kCommit: {
          PH_CHECK(!closed_ && partial_line_.empty());
          Event event{Event::Kind::kCommit};
          for (MessageIndex index : action.deletions) event.deletions.push_back(index.value());
          events_.push_back(std::move(event));
          session_->OnCommitResult(commit_ok_ ? Pop3CommitResult::kOk
                                              : Pop3CommitResult::kTempFailure);
          break;
        }
        case Pop3ActionKind::kClose:
          PH_CHECK(!closed_ && partial_line_.empty());
          closed_ = true;
          events_.push_back(Event{Event::Kind::kClose});
          break;
        case Pop3ActionKind::kStartTls:
        case Pop3ActionKind::kDelay:
        case Pop3ActionKind::kAbandonSasl:
          PH_CHECK(false);  // no STLS, failed login or SASL exchange in these sessions
      }
      took = true;
    }
    PH_CHECK(false);  // actions without end
    return took;
  }

  void AddText(std::string_view bytes) {
    partial_line_.append(bytes);
    size_t start = 0;
    while (true) {
      const size_t crlf = partial_line_.find("\r\n", start);
      if (crlf == std::string::npos) break;
      Event event{Event::Kind::kLine};
      event.line = partial_line_.substr(start, crlf - start);
      Record('S', event.line);
      PH_CHECK(event.line.find_first_of("\r\n") == std::string::npos);
      events_.push_back(std::move(event));
      start = crlf + 2;
    }
    partial_line_.erase(0, start);
  }

  Event NextEvent(std::string_view command) {
    ExpectAgreement(!events_.empty(), "a reply is missing", command);
    Event event = std::move(events_.front());
    events_.pop_front();
    return event;
  }

  std::string NextLine(std::string_view command) {
    Event event = NextEvent(command);
    ExpectAgreement(event.kind == Event::Kind::kLine, "expected a reply line", command);
    last_line_ = event.line;
    return event.line;
  }

  void CheckStatusOk(const std::string& line, const Expectation& e) {
    ExpectAgreement(line.starts_with("+OK"), "model says +OK", e.line);
  }

  // One "n value" line per undeleted message, then ".".
  void CheckListing(const Expectation& e, bool sizes) {
    const std::vector<ModelMessage>& messages = model_->messages();
    for (uint32_t i = 0; i < messages.size(); ++i) {
      if (messages[i].deleted) continue;
      const std::string expected = std::to_string(i + 1) + " " +
                                   (sizes ? std::to_string(messages[i].size) : messages[i].uidl);
      ExpectAgreement(NextLine(e.line) == expected, "listing line", e.line);
    }
    ExpectAgreement(NextLine(e.line) == ".", "listing end", e.line);
  }

  void CheckStream(const Expectation& e, std::optional<uint64_t> top_lines) {
    const Event event = NextEvent(e.line);
    ExpectAgreement(event.kind == Event::Kind::kStream, "expected a message stream", e.line);
    ExpectAgreement(event.index == e.number - 1, "streamed message number", e.line);
    ExpectAgreement(event.top_lines == top_lines, "TOP line count", e.line);
    ExpectAgreement(event.octets == model_->messages()[e.number - 1].size, "stream octets", e.line);
  }

  void Check(const Expectation& e) {
    using Kind = Expectation::Kind;
    const std::vector<ModelMessage>& messages = model_->messages();
    switch (e.kind) {
      case Kind::kErr:
        ExpectAgreement(NextLine(e.line).starts_with("-ERR"), "model says -ERR", e.line);
        return;
      case Kind::kCloseAfterErr:
        ExpectAgreement(NextLine(e.line).starts_with("-ERR"), "model says -ERR", e.line);
        ExpectAgreement(NextEvent(e.line).kind == Event::Kind::kClose, "model says close", e.line);
        return;
      case Kind::kStat:
        ExpectAgreement(NextLine(e.line) == "+OK " + std::to_string(model_->LiveCount()) + " " +
                                                std::to_string(model_->LiveOctets()),
                        "STAT", e.line);
        return;
      case Kind::kListOne:
        ExpectAgreement(NextLine(e.line) == "+OK " + std::to_string(e.number) + " " +
                                                std::to_string(messages[e.number - 1].size),
                        "LIST n", e.line);
        return;
      case Kind::kUidlOne:
        ExpectAgreement(NextLine(e.line) ==
                            "+OK " + std::to_string(e.number) + " " + messages[e.number - 1].uidl,
                        "UIDL n", e.line);
        return;
      case Kind::kListAll:
        ExpectAgreement(NextLine(e.line) == "+OK " + CountAndOctets(), "LIST summary", e.line);
        CheckListing(e, /*sizes=*/true);
        return;
      case Kind::kUidlAll:
        CheckStatusOk(NextLine(e.line), e);
        CheckListing(e, /*sizes=*/false);
        return;
      case Kind::kRetr:
        ExpectAgreement(
            NextLine(e.line) == "+OK " + std::to_string(messages[e.number - 1].size) + " octets",
            "RETR status", e.line);
        CheckStream(e, std::nullopt);
        return;
      case Kind::kTop:
        CheckStatusOk(NextLine(e.line), e);
        CheckStream(e, e.top_lines);
        return;
      case Kind::kDele:
        ExpectAgreement(
            NextLine(e.line) == (model_->german()
                                     ? "+OK Nachricht " + std::to_string(e.number) + " gelöscht"
                                     : "+OK message " + std::to_string(e.number) + " deleted"),
            "DELE", e.line);
        return;
      case Kind::kRset:
        ExpectAgreement(NextLine(e.line) == "+OK " + MaildropSummary(), "RSET", e.line);
        return;
      case Kind::kCapa: {
        CheckStatusOk(NextLine(e.line), e);
        bool top = false;
        bool uidl = false;
        for (int i = 0; i < 64; ++i) {
          const std::string line = NextLine(e.line);
          if (line == ".") {
            ExpectAgreement(top && uidl, "CAPA lists TOP and UIDL", e.line);
            return;
          }
          top |= line == "TOP";
          uidl |= line == "UIDL";
        }
        ExpectAgreement(false, "CAPA without end", e.line);
        return;
      }
      case Kind::kOk:
        CheckStatusOk(NextLine(e.line), e);
        return;
      case Kind::kLangListing: {
        CheckStatusOk(NextLine(e.line), e);
        std::vector<std::string> listing;
        for (std::string line = NextLine(e.line); line != "."; line = NextLine(e.line)) {
          ExpectAgreement(listing.size() < 8, "LANG listing without end", e.line);
          listing.push_back(line);
        }
        ExpectAgreement(listing == std::vector<std::string>{"i-default Default language",
                                                            "en English", "de Deutsch"},
                        "LANG listing", e.line);
        return;
      }
      case Kind::kLangChanged:
        ExpectAgreement(
            NextLine(e.line) ==
                "+OK " + e.tag + (e.tag == "de" ? " Sprache gewechselt" : " Language changed"),
            "LANG", e.line);
        return;
      case Kind::kQuit: {
        const Event commit = NextEvent(e.line);
        ExpectAgreement(commit.kind == Event::Kind::kCommit, "QUIT commits", e.line);
        std::vector<uint32_t> deleted;
        for (uint32_t i = 0; i < messages.size(); ++i) {
          if (messages[i].deleted) deleted.push_back(i);
        }
        ExpectAgreement(commit.deletions == deleted, "committed set", e.line);
        const std::string reply = NextLine(e.line);
        if (commit_ok_) {
          const uint32_t left = model_->LiveCount();
          std::string ending = left == 0 ? "(maildrop empty)"
                                         : "(" + std::to_string(left) +
                                               (left == 1 ? " message left)" : " messages left)");
          if (model_->german()) {
            ending = left == 0
                         ? "(Postfach leer)"
                         : "(" + std::to_string(left) +
                               (left == 1 ? " Nachricht verbleibt)" : " Nachrichten verbleiben)");
          }
          ExpectAgreement(reply.starts_with("+OK") && reply.ends_with(ending), "QUIT sign-off",
                          e.line);
        } else {
          ExpectAgreement(reply.starts_with("-ERR"), "failed commit", e.line);
        }
        ExpectAgreement(NextEvent(e.line).kind == Event::Kind::kClose, "close after QUIT", e.line);
        return;
      }
    }
  }

  Input* input_;
  std::shared_ptr<const MailboxSnapshot> snapshot_;
  std::unique_ptr<Rfc1939Model> model_;
  std::unique_ptr<Pop3Session> session_;
  bool commit_ok_ = true;
  bool closed_ = false;
  std::string partial_line_;
  std::string last_line_;   // for diagnostics
  std::string transcript_;  // for diagnostics; see Record()
  std::deque<Event> events_;
};

}  // namespace
}  // namespace posthaste::pop3

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  posthaste::pop3::Input input(data, size);
  posthaste::pop3::Harness harness(&input);
  harness.Run();
  return 0;
}
