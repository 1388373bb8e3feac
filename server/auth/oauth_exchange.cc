#include "server/auth/oauth_exchange.h"

#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "base/json.h"
#include "base/strings.h"

namespace posthaste::auth {
namespace {

constexpr char kKvSep = '\x01';

absl::Status Malformed(std::string_view why) {
  return absl::InvalidArgumentError(absl::StrCat("malformed OAuth message: ", AbslView(why)));
}

bool IsValueChar(unsigned char c) {
  return (c >= 0x21 && c <= 0x7e) || c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

// RFC 6750 b64token: 1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"="
bool IsB64Token(std::string_view token) {
  size_t i = 0;
  while (i < token.size() &&
         (absl::ascii_isalnum(token[i]) || token[i] == '-' || token[i] == '.' || token[i] == '_' ||
          token[i] == '~' || token[i] == '+' || token[i] == '/')) {
    ++i;
  }
  if (i == 0) return false;
  while (i < token.size() && token[i] == '=') ++i;
  return i == token.size();
}

// `auth` value: "Bearer" (any case, RFC 7235 schemes are case-insensitive) 1*SP b64token.
absl::StatusOr<std::string> BearerToken(std::string_view auth) {
  constexpr std::string_view kScheme = "bearer";
  if (auth.size() <= kScheme.size() ||
      !absl::EqualsIgnoreCase(AbslView(auth.substr(0, kScheme.size())), AbslView(kScheme)) ||
      auth[kScheme.size()] != ' ') {
    return Malformed("auth is not \"Bearer <token>\"");
  }
  std::string_view token = auth.substr(kScheme.size());
  while (!token.empty() && token.front() == ' ') token.remove_prefix(1);
  if (!IsB64Token(token)) return Malformed("the bearer token is not a b64token");
  return std::string(token);
}

using Pairs = std::vector<std::pair<std::string_view, std::string_view>>;

// `text` is *kvpair kvsep, and must end there.
absl::StatusOr<Pairs> ParsePairs(std::string_view text) {
  Pairs pairs;
  while (true) {
    if (text.empty()) return Malformed("missing the closing %x01");
    if (text.front() == kKvSep) {
      if (text.size() != 1) return Malformed("bytes after the closing %x01");
      return pairs;
    }
    const size_t end = text.find(kKvSep);
    if (end == std::string_view::npos) return Malformed("a pair without %x01");
    const std::string_view pair = text.substr(0, end);
    const size_t eq = pair.find('=');
    if (eq == std::string_view::npos || eq == 0) return Malformed("a pair without key=");
    const std::string_view key = pair.substr(0, eq);
    const std::string_view value = pair.substr(eq + 1);
    for (const char c : key) {
      if (!absl::ascii_isalpha(c)) return Malformed("a key that is not ALPHA");
    }
    for (const unsigned char c : value) {
      if (!IsValueChar(c)) return Malformed("a control byte in a value");
    }
    for (const auto& earlier : pairs) {
      if (earlier.first == key) return Malformed(absl::StrCat("key ", AbslView(key), " repeated"));
    }
    if (pairs.size() == kOAuthMessagePairsMax) return Malformed("too many pairs");
    pairs.emplace_back(key, value);
    text.remove_prefix(end + 1);
  }
}

// RFC 5801 saslname: "=2C" is ',' and "=3D" is '='; any other '=' or a NUL is refused.
absl::StatusOr<std::string> DecodeSaslName(std::string_view text) {
  std::string out;
  for (size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    if (c == '\0') return Malformed("NUL in the authzid");
    if (c != '=') {
      out.push_back(c);
      continue;
    }
    const std::string_view escape = text.substr(i, 3);
    if (escape == "=2C") {
      out.push_back(',');
    } else if (escape == "=3D") {
      out.push_back('=');
    } else {
      return Malformed("a bad escape in the authzid");
    }
    i += 2;
  }
  return out;
}

std::string ErrorJson(std::string_view status, std::string_view scope,
                      std::string_view openid_configuration) {
  std::string json = absl::StrCat("{\"status\":", JsonQuote(status), ",\"schemes\":\"bearer\"");
  if (!scope.empty()) absl::StrAppend(&json, ",\"scope\":", JsonQuote(scope));
  if (!openid_configuration.empty()) {
    absl::StrAppend(&json, ",\"openid-configuration\":", JsonQuote(openid_configuration));
  }
  json.push_back('}');
  return json;
}

}  // namespace

absl::StatusOr<OAuthBearerMessage> ParseOAuthBearerMessage(std::string_view message) {
  if (message.size() > kOAuthMessageBytesMax) return Malformed("too long");
  // gs2-header: gs2-cbind-flag "," [authzid] ","
  if (message.size() < 2 || (message[0] != 'n' && message[0] != 'y') || message[1] != ',') {
    return Malformed("the gs2 header must start \"n,\" or \"y,\" (no channel binding)");
  }
  std::string_view rest = message.substr(2);
  const size_t comma = rest.find(',');
  if (comma == std::string_view::npos) return Malformed("the gs2 header has no second ','");
  const std::string_view authzid_field = rest.substr(0, comma);
  OAuthBearerMessage out;
  if (!authzid_field.empty()) {
    if (!absl::StartsWith(AbslView(authzid_field), "a=") || authzid_field.size() == 2) {
      return Malformed("the gs2 header's authzid is not a=<name>");
    }
    auto authzid = DecodeSaslName(authzid_field.substr(2));
    if (!authzid.ok()) return authzid.status();
    out.authzid = std::move(*authzid);
  }
  rest.remove_prefix(comma + 1);
  if (rest.empty() || rest.front() != kKvSep) return Malformed("no %x01 after the gs2 header");
  rest.remove_prefix(1);
  auto pairs = ParsePairs(rest);
  if (!pairs.ok()) return pairs.status();
  bool has_auth = false;
  for (const auto& [key, value] : *pairs) {
    if (key == "auth") {
      auto token = BearerToken(value);
      if (!token.ok()) return token.status();
      out.token = std::move(*token);
      has_auth = true;
    } else if (key == "host") {
      out.host = std::string(value);
    } else if (key == "port") {
      out.port = std::string(value);
    }
  }
  if (!has_auth) return Malformed("no auth pair");
  return out;
}

absl::StatusOr<XOAuth2Message> ParseXOAuth2Message(std::string_view message) {
  if (message.size() > kOAuthMessageBytesMax) return Malformed("too long");
  auto pairs = ParsePairs(message);
  if (!pairs.ok()) return pairs.status();
  XOAuth2Message out;
  bool has_user = false, has_auth = false;
  for (const auto& [key, value] : *pairs) {
    if (key == "user") {
      if (value.empty()) return Malformed("empty user");
      out.user = std::string(value);
      has_user = true;
    } else if (key == "auth") {
      auto token = BearerToken(value);
      if (!token.ok()) return token.status();
      out.token = std::move(*token);
      has_auth = true;
    }
  }
  if (!has_user || !has_auth) return Malformed("want user= and auth= pairs");
  return out;
}

std::string OAuthBearerErrorJson(std::string_view scope, std::string_view openid_configuration) {
  return ErrorJson("invalid_token", scope, openid_configuration);
}

std::string XOAuth2ErrorJson(std::string_view scope) { return ErrorJson("401", scope, ""); }

OAuthExchange::OAuthExchange(SaslMechanism mechanism, std::shared_ptr<const OAuthSnapshot> snapshot,
                             UnixSecondsClock clock)
    : mechanism_(mechanism), snapshot_(std::move(snapshot)), clock_(std::move(clock)) {}

SaslStep OAuthExchange::Start(std::optional<std::string_view> initial_response) {
  if (state_ != State::kStart) return Fail(SaslFailure::kMalformed);
  if (!initial_response.has_value()) {
    // Both mechanisms are client-first: an empty challenge asks for the message.
    state_ = State::kAwaitingMessage;
    SaslStep step;
    step.kind = SaslStep::Kind::kChallenge;
    return step;
  }
  return OnClientMessage(*initial_response);
}

SaslStep OAuthExchange::Continue(std::string_view response) {
  switch (state_) {
    case State::kAwaitingMessage:
      return OnClientMessage(response);
    case State::kAwaitingErrorAck:
      // RFC 7628 section 3.2.3: the client answers the error with %x01; the login fails
      // whatever it sent.
      return Fail(pending_failure_);
    case State::kStart:
    case State::kDone:
      break;
  }
  return Fail(SaslFailure::kMalformed);
}

SaslStep OAuthExchange::AccountFound(const absl::StatusOr<SaslAccount>& account) {
  // Never asked for: a token carries its own proof.
  failure_detail_ = "AccountFound without kNeedAccount";
  return Fail(SaslFailure::kMalformed);
}

SaslStep OAuthExchange::OnClientMessage(std::string_view message) {
  std::string user;
  std::string token;
  if (mechanism_ == SaslMechanism::kXOAuth2) {
    auto parsed = ParseXOAuth2Message(message);
    if (!parsed.ok()) {
      failure_detail_ = std::string(parsed.status().message());
      return Fail(SaslFailure::kMalformed);
    }
    user = std::move(parsed->user);
    token = std::move(parsed->token);
  } else {
    auto parsed = ParseOAuthBearerMessage(message);
    if (!parsed.ok()) {
      failure_detail_ = std::string(parsed.status().message());
      return Fail(SaslFailure::kMalformed);
    }
    user = std::move(parsed->authzid);
    token = std::move(parsed->token);
  }
  BearerVerdict verdict;
  if (snapshot_ != nullptr) {
    verdict = VerifyBearerToken(*snapshot_, token, user, clock_());
  } else {
    verdict.detail = "no tenant has OAuth";
  }
  if (verdict.ok) {
    state_ = State::kDone;
    SaslStep step;
    step.kind = SaslStep::Kind::kSuccess;
    step.authcid = std::move(verdict.mailbox);
    return step;
  }
  failure_detail_ = std::move(verdict.detail);
  pending_failure_ = verdict.failure;
  state_ = State::kAwaitingErrorAck;
  SaslStep step;
  step.kind = SaslStep::Kind::kChallenge;
  step.challenge = mechanism_ == SaslMechanism::kXOAuth2
                       ? XOAuth2ErrorJson(verdict.scope)
                       : OAuthBearerErrorJson(verdict.scope, verdict.openid_configuration);
  return step;
}

SaslStep OAuthExchange::Fail(SaslFailure failure) {
  state_ = State::kDone;
  return SaslStep::Failed(failure);
}

std::unique_ptr<SaslServerExchange> NewOAuthBearerExchange(
    std::shared_ptr<const OAuthSnapshot> snapshot, UnixSecondsClock clock) {
  return std::make_unique<OAuthExchange>(SaslMechanism::kOAuthBearer, std::move(snapshot),
                                         std::move(clock));
}

std::unique_ptr<SaslServerExchange> NewXOAuth2Exchange(
    std::shared_ptr<const OAuthSnapshot> snapshot, UnixSecondsClock clock) {
  return std::make_unique<OAuthExchange>(SaslMechanism::kXOAuth2, std::move(snapshot),
                                         std::move(clock));
}

}  // namespace posthaste::auth
