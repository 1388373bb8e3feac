#include "server/admin/json_body.h"

#include <optional>

#include "absl/strings/str_cat.h"
#include "base/strings.h"

namespace posthaste::server::admin {
namespace {

class Parser {
 public:
  explicit Parser(std::string_view text) : text_(text) {}

  absl::StatusOr<JsonObject> Object() {
    if (text_.size() > kJsonBodyBytesMax) {
      return absl::InvalidArgumentError(
          absl::StrCat("JSON body over ", kJsonBodyBytesMax, " bytes"));
    }
    JsonObject object;
    SkipSpace();
    if (!Take('{')) return Error("expected '{'");
    SkipSpace();
    if (!Take('}')) {
      for (;;) {
        SkipSpace();
        std::string name;
        if (absl::Status s = String(&name); !s.ok()) return s;
        SkipSpace();
        if (!Take(':')) return Error("expected ':'");
        SkipSpace();
        JsonScalar value;
        if (absl::Status s = Value(name, &value); !s.ok()) return s;
        if (!object.emplace(name, std::move(value)).second) {
          return Error(absl::StrCat("duplicate member \"", name, "\""));
        }
        SkipSpace();
        if (Take(',')) continue;
        if (Take('}')) break;
        return Error("expected ',' or '}'");
      }
    }
    SkipSpace();
    if (pos_ != text_.size()) return Error("unexpected bytes after the object");
    return object;
  }

 private:
  absl::Status Error(const std::string& what) const {
    return absl::InvalidArgumentError(absl::StrCat("bad JSON at offset ", pos_, ": ", what));
  }
  bool Take(char c) {
    if (pos_ < text_.size() && text_[pos_] == c) {
      ++pos_;
      return true;
    }
    return false;
  }
  bool TakeWord(std::string_view word) {
    if (text_.substr(pos_, word.size()) == word) {
      pos_ += word.size();
      return true;
    }
    return false;
  }
  void SkipSpace() {
    while (pos_ < text_.size() && (text_[pos_] == ' ' || text_[pos_] == '\t' ||
                                   text_[pos_] == '\n' || text_[pos_] == '\r')) {
      ++pos_;
    }
  }

  absl::Status Value(const std::string& name, JsonScalar* out) {
    if (pos_ >= text_.size()) return Error("value expected");
    const char c = text_[pos_];
    if (c == '"') {
      out->type = JsonScalar::Type::kString;
      return String(&out->string);
    }
    if (c >= '0' && c <= '9') {
      out->type = JsonScalar::Type::kInteger;
      return Integer(&out->integer);
    }
    if (TakeWord("true")) {
      out->type = JsonScalar::Type::kBool;
      out->boolean = true;
      return absl::OkStatus();
    }
    if (TakeWord("false")) {
      out->type = JsonScalar::Type::kBool;
      return absl::OkStatus();
    }
    if (TakeWord("null")) {
      out->type = JsonScalar::Type::kNull;
      return absl::OkStatus();
    }
    if (c == '{' || c == '[') {
      return Error(absl::StrCat("member \"", name, "\": nested values are not accepted"));
    }
    if (c == '-') return Error(absl::StrCat("member \"", name, "\": negative numbers refused"));
    return Error("value expected");
  }

  absl::Status Integer(uint64_t* out) {
    // Value() calls this on a digit, so the run below is never empty.
    const size_t start = pos_;
    while (pos_ < text_.size() && text_[pos_] >= '0' && text_[pos_] <= '9') ++pos_;
    const std::optional<uint64_t> value = ParseDecimalU64(text_.substr(start, pos_ - start));
    if (!value.has_value()) return Error("number too large");
    if (pos_ - start > 1 && text_[start] == '0') return Error("leading zero");
    if (pos_ < text_.size() && (text_[pos_] == '.' || text_[pos_] == 'e' || text_[pos_] == 'E')) {
      return Error("only integers are accepted");
    }
    *out = *value;
    return absl::OkStatus();
  }

  bool Hex4(uint32_t* out) {
    if (text_.size() - pos_ < 4) return false;
    uint32_t v = 0;
    for (int i = 0; i < 4; ++i) {
      const char c = text_[pos_ + i];
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
    pos_ += 4;
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
    if (!Take('"')) return Error("expected a string");
    for (;;) {
      if (pos_ >= text_.size()) return Error("unterminated string");
      const char c = text_[pos_++];
      if (c == '"') return absl::OkStatus();
      if (static_cast<unsigned char>(c) < 0x20) return Error("control character in a string");
      if (c != '\\') {
        out->push_back(c);
        continue;
      }
      if (pos_ >= text_.size()) return Error("unterminated escape");
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
          uint32_t cp = 0;
          if (!Hex4(&cp)) return Error("bad \\u escape");
          if (cp >= 0xDC00 && cp <= 0xDFFF) return Error("lone low surrogate");
          if (cp >= 0xD800 && cp <= 0xDBFF) {
            uint32_t low = 0;
            if (!TakeWord("\\u") || !Hex4(&low) || low < 0xDC00 || low > 0xDFFF) {
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
  size_t pos_ = 0;
};

}  // namespace

absl::StatusOr<JsonObject> ParseJsonObject(std::string_view text) { return Parser(text).Object(); }

std::string JsonString(std::string_view text) {
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

}  // namespace posthaste::server::admin
