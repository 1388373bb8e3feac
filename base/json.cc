#include "base/json.h"

#include <charconv>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

namespace posthaste {
namespace {

// Debian's abseil has its own string_view.
absl::string_view Av(std::string_view s) { return {s.data(), s.size()}; }

}  // namespace

const JsonValue* JsonValue::Find(std::string_view name) const {
  for (const Member& m : members_) {
    if (m.first == name) return &m.second;
  }
  return nullptr;
}

std::optional<int64_t> JsonValue::AsInt64() const {
  if (type_ != Type::kNumber && type_ != Type::kString) return std::nullopt;
  const std::string_view t = text_;
  const size_t digits_at = !t.empty() && t[0] == '-' ? 1 : 0;
  if (t.size() == digits_at) return std::nullopt;
  for (size_t i = digits_at; i < t.size(); ++i) {
    if (t[i] < '0' || t[i] > '9') return std::nullopt;
  }
  int64_t value = 0;
  const auto [end, ec] = std::from_chars(t.data(), t.data() + t.size(), value);
  if (ec != std::errc() || end != t.data() + t.size()) return std::nullopt;
  return value;
}

// Recursive descent; the depth limit bounds the recursion. Running out of input is told apart
// from bad syntax (ParseJsonPrefix waits for more bytes then).
class JsonParser {
 public:
  JsonParser(std::string_view text, const JsonLimits& limits, bool prefix)
      : text_(text), limits_(limits), prefix_(prefix) {}

  absl::Status Value(JsonValue* out, uint32_t depth) {
    if (++values_ > limits_.values_max) {
      return absl::ResourceExhaustedError(
          absl::StrCat("json: more than ", limits_.values_max, " values"));
    }
    SkipSpace();
    if (pos_ >= text_.size()) return End("a value");
    const char c = text_[pos_];
    switch (c) {
      case '{':
        return Object(out, depth + 1);
      case '[':
        return Array(out, depth + 1);
      case '"':
        out->type_ = JsonValue::Type::kString;
        return String(&out->text_);
      case 't':
        out->type_ = JsonValue::Type::kBool;
        out->boolean_ = true;
        return Word("true");
      case 'f':
        out->type_ = JsonValue::Type::kBool;
        return Word("false");
      case 'n':
        out->type_ = JsonValue::Type::kNull;
        return Word("null");
      default:
        if (c == '-' || (c >= '0' && c <= '9')) return Number(out);
        return Error("unexpected character");
    }
  }

  void SkipSpace() {
    while (pos_ < text_.size() && (text_[pos_] == ' ' || text_[pos_] == '\t' ||
                                   text_[pos_] == '\n' || text_[pos_] == '\r')) {
      ++pos_;
    }
  }

  size_t pos() const { return pos_; }
  bool at_end() const { return pos_ >= text_.size(); }

  absl::Status Error(std::string_view what) const {
    return absl::InvalidArgumentError(absl::StrCat("json: ", Av(what), " at offset ", pos_));
  }

 private:
  // The input ended inside a value.
  absl::Status End(std::string_view expected) const {
    return absl::UnavailableError(absl::StrCat("json: input ends at offset ", pos_, " where ",
                                               Av(expected), " was expected"));
  }

  absl::Status Word(std::string_view word) {
    for (const char w : word) {
      if (pos_ >= text_.size()) return End(word);
      if (text_[pos_] != w) return Error("unknown literal");
      ++pos_;
    }
    return absl::OkStatus();
  }

  absl::Status Object(JsonValue* out, uint32_t depth) {
    if (depth > limits_.depth_max) return TooDeep();
    out->type_ = JsonValue::Type::kObject;
    ++pos_;  // '{'
    SkipSpace();
    if (pos_ >= text_.size()) return End("a member or '}'");
    if (text_[pos_] == '}') {
      ++pos_;
      return absl::OkStatus();
    }
    for (;;) {
      SkipSpace();
      if (pos_ >= text_.size()) return End("a member name");
      if (text_[pos_] != '"') return Error("expected a member name");
      JsonValue::Member member;
      if (absl::Status s = String(&member.first); !s.ok()) return s;
      if (out->Find(member.first) != nullptr) return Error("duplicate member name");
      SkipSpace();
      if (pos_ >= text_.size()) return End("':'");
      if (text_[pos_++] != ':') return Error("expected ':'");
      if (absl::Status s = Value(&member.second, depth); !s.ok()) return s;
      out->members_.push_back(std::move(member));
      SkipSpace();
      if (pos_ >= text_.size()) return End("',' or '}'");
      const char c = text_[pos_++];
      if (c == '}') return absl::OkStatus();
      if (c != ',') return Error("expected ',' or '}'");
    }
  }

  absl::Status Array(JsonValue* out, uint32_t depth) {
    if (depth > limits_.depth_max) return TooDeep();
    out->type_ = JsonValue::Type::kArray;
    ++pos_;  // '['
    SkipSpace();
    if (pos_ >= text_.size()) return End("an element or ']'");
    if (text_[pos_] == ']') {
      ++pos_;
      return absl::OkStatus();
    }
    for (;;) {
      out->elements_.emplace_back();
      if (absl::Status s = Value(&out->elements_.back(), depth); !s.ok()) return s;
      SkipSpace();
      if (pos_ >= text_.size()) return End("',' or ']'");
      const char c = text_[pos_++];
      if (c == ']') return absl::OkStatus();
      if (c != ',') return Error("expected ',' or ']'");
    }
  }

  absl::Status TooDeep() const {
    return absl::ResourceExhaustedError(
        absl::StrCat("json: nested deeper than ", limits_.depth_max, " at offset ", pos_));
  }

  bool Digits() {
    const size_t start = pos_;
    while (pos_ < text_.size() && text_[pos_] >= '0' && text_[pos_] <= '9') ++pos_;
    return pos_ > start;
  }

  // -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?
  absl::Status Number(JsonValue* out) {
    const size_t start = pos_;
    if (text_[pos_] == '-') ++pos_;
    if (pos_ >= text_.size()) return End("a digit");
    if (text_[pos_] == '0') {
      ++pos_;
    } else if (!Digits()) {
      return Error("expected a digit");
    }
    if (pos_ < text_.size() && text_[pos_] == '.') {
      ++pos_;
      if (!Digits()) return pos_ >= text_.size() ? End("a digit") : Error("expected a digit");
    }
    if (pos_ < text_.size() && (text_[pos_] == 'e' || text_[pos_] == 'E')) {
      ++pos_;
      if (pos_ < text_.size() && (text_[pos_] == '+' || text_[pos_] == '-')) ++pos_;
      if (!Digits()) return pos_ >= text_.size() ? End("a digit") : Error("expected a digit");
    }
    // In a stream the number may go on in the next bytes.
    if (prefix_ && pos_ >= text_.size()) return End("the end of a number");
    if (pos_ < text_.size() && text_[pos_] >= '0' && text_[pos_] <= '9') {
      return Error("leading zero");
    }
    out->type_ = JsonValue::Type::kNumber;
    out->text_.assign(text_.substr(start, pos_ - start));
    return absl::OkStatus();
  }

  bool Hex4(uint32_t* out) {
    if (text_.size() - pos_ < 4) return false;
    uint32_t v = 0;
    for (int i = 0; i < 4; ++i) {
      const char c = text_[pos_++];
      v <<= 4;
      if (c >= '0' && c <= '9') {
        v |= static_cast<uint32_t>(c - '0');
      } else if (c >= 'a' && c <= 'f') {
        v |= static_cast<uint32_t>(c - 'a' + 10);
      } else if (c >= 'A' && c <= 'F') {
        v |= static_cast<uint32_t>(c - 'A' + 10);
      } else {
        return false;
      }
    }
    *out = v;
    return true;
  }

  static void AppendUtf8(uint32_t cp, std::string* out) {
    if (cp < 0x80) {
      out->push_back(static_cast<char>(cp));
    } else if (cp < 0x800) {
      out->push_back(static_cast<char>(0xC0 | (cp >> 6)));
      out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
    } else if (cp < 0x10000) {
      out->push_back(static_cast<char>(0xE0 | (cp >> 12)));
      out->push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
      out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
    } else {
      out->push_back(static_cast<char>(0xF0 | (cp >> 18)));
      out->push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3F)));
      out->push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
      out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
    }
  }

  absl::Status String(std::string* out) {
    ++pos_;  // '"'
    for (;;) {
      if (pos_ >= text_.size()) return End("the end of a string");
      const char c = text_[pos_++];
      if (c == '"') return absl::OkStatus();
      if (static_cast<unsigned char>(c) < 0x20) return Error("control character in a string");
      if (c != '\\') {
        out->push_back(c);
        continue;
      }
      if (pos_ >= text_.size()) return End("an escape");
      const char e = text_[pos_++];
      switch (e) {
        case '"':
        case '\\':
        case '/':
          out->push_back(e);
          break;
        case 'b':
          out->push_back('\b');
          break;
        case 'f':
          out->push_back('\f');
          break;
        case 'n':
          out->push_back('\n');
          break;
        case 'r':
          out->push_back('\r');
          break;
        case 't':
          out->push_back('\t');
          break;
        case 'u': {
          // Needs the escape's 4 digits, and for a high surrogate the low half's 6 bytes.
          if (text_.size() - pos_ < 4) return End("\\u digits");
          uint32_t cp = 0;
          if (!Hex4(&cp)) return Error("bad \\u escape");
          if (cp >= 0xDC00 && cp <= 0xDFFF) return Error("lone low surrogate");
          if (cp >= 0xD800 && cp <= 0xDBFF) {
            if (text_.size() - pos_ < 6) return End("a low surrogate");
            uint32_t low = 0;
            if (text_[pos_] != '\\' || text_[pos_ + 1] != 'u') {
              return Error("high surrogate without its low half");
            }
            pos_ += 2;
            if (!Hex4(&low) || low < 0xDC00 || low > 0xDFFF) {
              return Error("high surrogate without its low half");
            }
            cp = 0x10000 + ((cp - 0xD800) << 10) + (low - 0xDC00);
          }
          AppendUtf8(cp, out);
          break;
        }
        default:
          return Error("unknown escape");
      }
    }
  }

  std::string_view text_;
  const JsonLimits& limits_;
  const bool prefix_;
  size_t pos_ = 0;
  uint32_t values_ = 0;
};

absl::StatusOr<JsonValue> ParseJson(std::string_view text, const JsonLimits& limits) {
  if (text.size() > limits.bytes_max) {
    return absl::ResourceExhaustedError(
        absl::StrCat("json: text of ", text.size(), " bytes, more than ", limits.bytes_max));
  }
  JsonParser parser(text, limits, /*prefix=*/false);
  JsonValue value;
  absl::Status s = parser.Value(&value, 0);
  if (absl::IsUnavailable(s)) return absl::InvalidArgumentError(s.message());
  if (!s.ok()) return s;
  parser.SkipSpace();
  if (!parser.at_end()) return parser.Error("trailing bytes after the value");
  return value;
}

absl::StatusOr<JsonValue> ParseJsonPrefix(std::string_view text, size_t* consumed,
                                          const JsonLimits& limits) {
  const bool clipped = text.size() > limits.bytes_max;
  if (clipped) text = text.substr(0, limits.bytes_max);
  JsonParser parser(text, limits, /*prefix=*/true);
  JsonValue value;
  absl::Status s = parser.Value(&value, 0);
  if (absl::IsUnavailable(s) && clipped) {
    return absl::ResourceExhaustedError(
        absl::StrCat("json: value longer than ", limits.bytes_max, " bytes"));
  }
  if (!s.ok()) return s;
  *consumed = parser.pos();
  return value;
}

std::string JsonQuote(std::string_view text) {
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out = "\"";
  for (const char c : text) {
    const unsigned char u = static_cast<unsigned char>(c);
    if (c == '"' || c == '\\') {
      out.push_back('\\');
      out.push_back(c);
    } else if (u < 0x20 || u >= 0x7f) {
      out += "\\u00";
      out.push_back(kHex[u >> 4]);
      out.push_back(kHex[u & 0xf]);
    } else {
      out.push_back(c);
    }
  }
  out.push_back('"');
  return out;
}

}  // namespace posthaste
