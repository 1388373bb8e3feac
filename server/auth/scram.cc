#include "server/auth/scram.h"

#include <openssl/base64.h>
#include <openssl/crypto.h>
#include <openssl/digest.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/mem.h>
#include <openssl/rand.h>

#include <initializer_list>
#include <utility>

#include "absl/status/status.h"

namespace posthaste::auth {
namespace {

const EVP_MD* Md(ScramHash hash) { return hash == ScramHash::kSha1 ? EVP_sha1() : EVP_sha256(); }
size_t HashBytes(ScramHash hash) { return hash == ScramHash::kSha1 ? 20 : 32; }
std::string_view HashPrefix(ScramHash hash) {
  return hash == ScramHash::kSha1 ? "SCRAM-SHA-1" : "SCRAM-SHA-256";
}

std::string Hmac(ScramHash hash, std::string_view key, std::string_view data) {
  uint8_t out[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  HMAC(Md(hash), key.data(), key.size(), reinterpret_cast<const uint8_t*>(data.data()), data.size(),
       out, &len);
  return std::string(reinterpret_cast<const char*>(out), len);
}

std::string Digest(ScramHash hash, std::string_view data) {
  uint8_t out[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  EVP_Digest(data.data(), data.size(), out, &len, Md(hash), nullptr);
  return std::string(reinterpret_cast<const char*>(out), len);
}

std::string Base64(std::string_view bytes) {
  size_t len = 0;
  EVP_EncodedLength(&len, bytes.size());
  std::string out(len, '\0');
  const size_t written =
      EVP_EncodeBlock(reinterpret_cast<uint8_t*>(out.data()),
                      reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size());
  out.resize(written);
  return out;
}

std::optional<std::string> Unbase64(std::string_view text) {
  size_t len = 0;
  if (!EVP_DecodedLength(&len, text.size())) return std::nullopt;
  std::string out(len, '\0');
  if (!EVP_DecodeBase64(reinterpret_cast<uint8_t*>(out.data()), &len, len,
                        reinterpret_cast<const uint8_t*>(text.data()), text.size())) {
    return std::nullopt;
  }
  out.resize(len);
  return out;
}

void Cleanse(std::string* s) {
  OPENSSL_cleanse(s->data(), s->size());
  s->clear();
}

// RFC 5802 section 7 "value": printable ASCII but ','.
bool IsValueChar(char c) { return c >= 0x21 && c <= 0x7e && c != ','; }

// saslname: "=2C" and "=3D" stand for ',' and '='; any other '=' and ',' are errors. UTF-8
// beyond ASCII passes as bytes; control octets are refused.
std::optional<std::string> DecodeSaslName(std::string_view text) {
  if (text.empty()) return std::nullopt;
  std::string out;
  for (size_t i = 0; i < text.size(); ++i) {
    const auto c = static_cast<unsigned char>(text[i]);
    if (c < 0x20 || c == 0x7f || c == ',') return std::nullopt;
    if (c != '=') {
      out.push_back(static_cast<char>(c));
      continue;
    }
    const std::string_view escape = text.substr(i + 1, 2);
    if (escape == "2C") {
      out.push_back(',');
    } else if (escape == "3D") {
      out.push_back('=');
    } else {
      return std::nullopt;
    }
    i += 2;
  }
  return out;
}

// Splits "a=..,b=.." into attributes; each must be one letter, '=', a value.
bool NextAttribute(std::string_view* rest, char* name, std::string_view* value) {
  if (rest->size() < 2 || (*rest)[1] != '=') return false;
  const char n = (*rest)[0];
  if (!((n >= 'a' && n <= 'z') || (n >= 'A' && n <= 'Z'))) return false;
  const size_t comma = rest->find(',');
  *name = n;
  *value = rest->substr(2, comma == std::string_view::npos ? std::string_view::npos : comma - 2);
  *rest = comma == std::string_view::npos ? std::string_view() : rest->substr(comma + 1);
  return true;
}

bool IsNonce(std::string_view nonce) {
  if (nonce.empty()) return false;
  for (char c : nonce) {
    if (!IsValueChar(c)) return false;
  }
  return true;
}

SaslStep Challenge(std::string text) {
  SaslStep step;
  step.kind = SaslStep::Kind::kChallenge;
  step.challenge = std::move(text);
  return step;
}

ScramHash HashOf(SaslMechanism mechanism) {
  return mechanism == SaslMechanism::kScramSha1 || mechanism == SaslMechanism::kScramSha1Plus
             ? ScramHash::kSha1
             : ScramHash::kSha256;
}

// Concatenation of string views (Debian's abseil keeps its own string_view, so no StrCat).
std::string Concat(std::initializer_list<std::string_view> parts) {
  size_t size = 0;
  for (std::string_view part : parts) size += part.size();
  std::string out;
  out.reserve(size);
  for (std::string_view part : parts) out.append(part);
  return out;
}

bool IsPlus(SaslMechanism mechanism) {
  return mechanism == SaslMechanism::kScramSha1Plus || mechanism == SaslMechanism::kScramSha256Plus;
}

}  // namespace

// ---- Stored keys ----

ScramKeys DeriveScramKeysWithSalt(ScramHash hash, std::string_view password, std::string_view salt,
                                  uint32_t iterations) {
  std::string salted(HashBytes(hash), '\0');
  PKCS5_PBKDF2_HMAC(password.data(), password.size(), reinterpret_cast<const uint8_t*>(salt.data()),
                    salt.size(), iterations, Md(hash), salted.size(),
                    reinterpret_cast<uint8_t*>(salted.data()));
  std::string client_key = Hmac(hash, salted, "Client Key");
  ScramKeys keys{.hash = hash,
                 .iterations = iterations,
                 .salt = std::string(salt),
                 .stored_key = Digest(hash, client_key),
                 .server_key = Hmac(hash, salted, "Server Key")};
  Cleanse(&client_key);
  Cleanse(&salted);
  return keys;
}

absl::StatusOr<ScramKeys> DeriveScramKeys(ScramHash hash, std::string_view password,
                                          uint32_t iterations) {
  std::string salt(kScramSaltBytes, '\0');
  if (!RAND_bytes(reinterpret_cast<uint8_t*>(salt.data()), salt.size())) {
    return absl::InternalError("no random bytes for a SCRAM salt");
  }
  return DeriveScramKeysWithSalt(hash, password, salt, iterations);
}

absl::StatusOr<ScramVerifierPair> MakeScramVerifiers(std::string_view password) {
  absl::StatusOr<ScramKeys> sha1 = DeriveScramKeys(ScramHash::kSha1, password);
  if (!sha1.ok()) return sha1.status();
  absl::StatusOr<ScramKeys> sha256 = DeriveScramKeys(ScramHash::kSha256, password);
  if (!sha256.ok()) return sha256.status();
  return ScramVerifierPair{FormatScramKeys(*sha1), FormatScramKeys(*sha256)};
}

std::string FormatScramKeys(const ScramKeys& keys) {
  return Concat({HashPrefix(keys.hash), "$", std::to_string(keys.iterations), ":",
                 Base64(keys.salt), "$", Base64(keys.stored_key), ":", Base64(keys.server_key)});
}

absl::StatusOr<ScramKeys> ParseScramKeys(std::string_view text) {
  const absl::Status invalid = absl::InvalidArgumentError("not RFC 5803 SCRAM keys");
  ScramKeys keys;
  const size_t dollar = text.find('$');
  if (dollar == std::string_view::npos) return invalid;
  const std::string_view prefix = text.substr(0, dollar);
  if (prefix == HashPrefix(ScramHash::kSha1)) {
    keys.hash = ScramHash::kSha1;
  } else if (prefix == HashPrefix(ScramHash::kSha256)) {
    keys.hash = ScramHash::kSha256;
  } else {
    return invalid;
  }
  std::string_view rest = text.substr(dollar + 1);
  const size_t colon1 = rest.find(':');
  const size_t dollar2 = rest.find('$');
  if (colon1 == std::string_view::npos || dollar2 == std::string_view::npos || dollar2 < colon1) {
    return invalid;
  }
  const size_t colon2 = rest.find(':', dollar2);
  if (colon2 == std::string_view::npos) return invalid;
  const std::string_view digits = rest.substr(0, colon1);
  uint64_t iterations = 0;
  if (digits.empty() || digits.size() > 7) return invalid;
  for (char c : digits) {
    if (c < '0' || c > '9') return invalid;
    iterations = iterations * 10 + static_cast<uint64_t>(c - '0');
  }
  if (iterations == 0 || iterations > kScramIterationsMax) return invalid;
  std::optional<std::string> salt = Unbase64(rest.substr(colon1 + 1, dollar2 - colon1 - 1));
  std::optional<std::string> stored = Unbase64(rest.substr(dollar2 + 1, colon2 - dollar2 - 1));
  std::optional<std::string> server = Unbase64(rest.substr(colon2 + 1));
  if (!salt || salt->empty() || !stored || !server || stored->size() != HashBytes(keys.hash) ||
      server->size() != HashBytes(keys.hash)) {
    return invalid;
  }
  keys.iterations = static_cast<uint32_t>(iterations);
  keys.salt = *std::move(salt);
  keys.stored_key = *std::move(stored);
  keys.server_key = *std::move(server);
  return keys;
}

// ---- Message parsers ----

std::optional<ScramClientFirst> ParseScramClientFirst(std::string_view message) {
  if (message.size() > kScramMessageBytesMax) return std::nullopt;
  ScramClientFirst first;
  // gs2-cbind-flag "," [authzid] ","
  std::string_view rest = message;
  const size_t comma1 = rest.find(',');
  if (comma1 == std::string_view::npos) return std::nullopt;
  const std::string_view flag = rest.substr(0, comma1);
  if (flag == "n" || flag == "y") {
    first.channel_binding_flag = flag[0];
  } else if (flag.size() > 2 && flag.starts_with("p=")) {
    first.channel_binding_flag = 'p';
    for (char c : flag.substr(2)) {
      const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                      c == '.' || c == '-';
      if (!ok) return std::nullopt;
    }
    first.channel_binding_name = std::string(flag.substr(2));
  } else {
    return std::nullopt;
  }
  rest.remove_prefix(comma1 + 1);
  const size_t comma2 = rest.find(',');
  if (comma2 == std::string_view::npos) return std::nullopt;
  const std::string_view authzid = rest.substr(0, comma2);
  if (!authzid.empty()) {
    if (!authzid.starts_with("a=")) return std::nullopt;
    std::optional<std::string> decoded = DecodeSaslName(authzid.substr(2));
    if (!decoded) return std::nullopt;
    first.authzid = *std::move(decoded);
  }
  rest.remove_prefix(comma2 + 1);
  first.gs2_header = std::string(message.substr(0, message.size() - rest.size()));
  first.bare = std::string(rest);
  if (rest.ends_with(',')) return std::nullopt;  // an empty extension
  // client-first-message-bare: [reserved-mext ","] username "," nonce ["," extensions]
  char name = 0;
  std::string_view value;
  if (!NextAttribute(&rest, &name, &value)) return std::nullopt;
  if (name == 'm') return std::nullopt;  // a mandatory extension we do not know
  if (name != 'n') return std::nullopt;
  std::optional<std::string> username = DecodeSaslName(value);
  if (!username) return std::nullopt;
  first.username = *std::move(username);
  if (!NextAttribute(&rest, &name, &value) || name != 'r' || !IsNonce(value)) return std::nullopt;
  first.client_nonce = std::string(value);
  while (!rest.empty()) {  // extensions: each attr=value, ignored
    if (!NextAttribute(&rest, &name, &value)) return std::nullopt;
  }
  return first;
}

std::optional<ScramClientFinal> ParseScramClientFinal(std::string_view message) {
  if (message.size() > kScramMessageBytesMax) return std::nullopt;
  ScramClientFinal final_message;
  const size_t proof_at = message.rfind(",p=");
  if (proof_at == std::string_view::npos) return std::nullopt;
  final_message.without_proof = std::string(message.substr(0, proof_at));
  std::optional<std::string> proof = Unbase64(message.substr(proof_at + 3));
  if (!proof || proof->empty()) return std::nullopt;
  final_message.proof = *std::move(proof);
  std::string_view rest = message.substr(0, proof_at);
  char name = 0;
  std::string_view value;
  if (!NextAttribute(&rest, &name, &value) || name != 'c') return std::nullopt;
  std::optional<std::string> binding = Unbase64(value);
  if (!binding) return std::nullopt;
  final_message.channel_binding = *std::move(binding);
  if (!NextAttribute(&rest, &name, &value) || name != 'r' || !IsNonce(value)) return std::nullopt;
  final_message.nonce = std::string(value);
  while (!rest.empty()) {  // extensions
    if (!NextAttribute(&rest, &name, &value)) return std::nullopt;
  }
  return final_message;
}

// ---- The exchange ----

ScramServerExchange::ScramServerExchange(SaslMechanism mechanism, const SaslConnectionFacts& facts,
                                         std::string_view secret)
    : mechanism_(mechanism),
      hash_(HashOf(mechanism)),
      plus_(IsPlus(mechanism)),
      tls_exporter_(facts.tls_exporter),
      secret_(secret) {}

ScramServerExchange::~ScramServerExchange() {
  Cleanse(&keys_.stored_key);
  Cleanse(&keys_.server_key);
  Cleanse(&server_signature_);
}

SaslStep ScramServerExchange::Fail(SaslFailure failure) {
  stage_ = Stage::kDone;
  return SaslStep::Failed(failure);
}

SaslStep ScramServerExchange::Start(std::optional<std::string_view> initial_response) {
  if (plus_ && tls_exporter_.empty()) return Fail(SaslFailure::kNotAllowed);
  if (!initial_response.has_value()) return Challenge("");  // the client-first comes next
  return OnClientFirst(*initial_response);
}

SaslStep ScramServerExchange::Continue(std::string_view response) {
  switch (stage_) {
    case Stage::kClientFirst:
      return OnClientFirst(response);
    case Stage::kClientFinal:
      return OnClientFinal(response);
    case Stage::kFinalAck: {
      // RFC 5034: success data goes out as a challenge; the client answers with nothing.
      if (!response.empty()) return Fail(SaslFailure::kMalformed);
      stage_ = Stage::kDone;
      SaslStep step;
      step.kind = SaslStep::Kind::kSuccess;
      step.authcid = first_.username;
      step.authzid = first_.authzid;
      return step;
    }
    case Stage::kAccount:
    case Stage::kDone:
      break;
  }
  return Fail(SaslFailure::kMalformed);
}

SaslStep ScramServerExchange::OnClientFirst(std::string_view message) {
  std::optional<ScramClientFirst> first = ParseScramClientFirst(message);
  if (!first) return Fail(SaslFailure::kMalformed);
  switch (first->channel_binding_flag) {
    case 'p':
      if (!plus_) return Fail(SaslFailure::kMalformed);  // binding asked of a plain mechanism
      if (first->channel_binding_name != "tls-exporter") {
        return Fail(SaslFailure::kChannelBindingMismatch);
      }
      break;
    case 'y':
      // The client could bind but thinks we cannot: someone removed -PLUS from our list.
      if (plus_ || !tls_exporter_.empty()) return Fail(SaslFailure::kChannelBindingMismatch);
      break;
    default:  // 'n'
      if (plus_) return Fail(SaslFailure::kChannelBindingMismatch);
      break;
  }
  if (server_nonce_.empty()) {
    std::string raw(kScramNonceBytes, '\0');
    RAND_bytes(reinterpret_cast<uint8_t*>(raw.data()), raw.size());
    server_nonce_ = Base64(raw);
  }
  first_ = *std::move(first);
  stage_ = Stage::kAccount;
  SaslStep step;
  step.kind = SaslStep::Kind::kNeedAccount;
  step.authcid = first_.username;
  return step;
}

SaslStep ScramServerExchange::AccountFound(const absl::StatusOr<SaslAccount>& account) {
  if (stage_ != Stage::kAccount) return Fail(SaslFailure::kMalformed);
  if (!account.ok() && !absl::IsNotFound(account.status())) {
    return Fail(SaslFailure::kTempFailure);
  }
  std::optional<ScramKeys> keys;
  if (account.ok()) {
    const std::string& stored =
        hash_ == ScramHash::kSha1 ? account->scram_sha1 : account->scram_sha256;
    absl::StatusOr<ScramKeys> parsed = ParseScramKeys(stored);
    if (parsed.ok() && parsed->hash == hash_) keys = *std::move(parsed);
    if (account->disabled) doomed_ = SaslFailure::kBadCredentials;
  } else {
    doomed_ = SaslFailure::kUnknownUser;
  }
  if (!keys.has_value()) {
    // No keys (unknown user, or a password set before SCRAM keys were kept): a salt that looks
    // like a real one and stays the same for this name, so probing learns nothing.
    if (!doomed_.has_value()) doomed_ = SaslFailure::kBadCredentials;
    const std::string fake =
        Hmac(ScramHash::kSha256, secret_,
             Concat({"scram salt\n", HashPrefix(hash_), "\n", first_.username}));
    keys = ScramKeys{.hash = hash_,
                     .iterations = kScramIterationsDefault,
                     .salt = fake.substr(0, kScramSaltBytes),
                     .stored_key = std::string(HashBytes(hash_), '\0'),
                     .server_key = std::string(HashBytes(hash_), '\0')};
  }
  keys_ = *std::move(keys);
  server_first_ = Concat({"r=", first_.client_nonce, server_nonce_, ",s=", Base64(keys_.salt),
                          ",i=", std::to_string(keys_.iterations)});
  stage_ = Stage::kClientFinal;
  return Challenge(server_first_);
}

SaslStep ScramServerExchange::OnClientFinal(std::string_view message) {
  std::optional<ScramClientFinal> final_message = ParseScramClientFinal(message);
  if (!final_message) return Fail(SaslFailure::kMalformed);
  if (final_message->nonce != Concat({first_.client_nonce, server_nonce_})) {
    return Fail(SaslFailure::kMalformed);
  }
  std::string expected_binding = first_.gs2_header;
  if (plus_) expected_binding += tls_exporter_;
  if (final_message->channel_binding.size() != expected_binding.size() ||
      CRYPTO_memcmp(final_message->channel_binding.data(), expected_binding.data(),
                    expected_binding.size()) != 0) {
    return Fail(plus_ ? SaslFailure::kChannelBindingMismatch : SaslFailure::kMalformed);
  }
  if (final_message->proof.size() != HashBytes(hash_)) return Fail(SaslFailure::kMalformed);
  const std::string auth_message =
      Concat({first_.bare, ",", server_first_, ",", final_message->without_proof});
  std::string client_key = Hmac(hash_, keys_.stored_key, auth_message);  // ClientSignature
  for (size_t i = 0; i < client_key.size(); ++i) client_key[i] ^= final_message->proof[i];
  const std::string stored = Digest(hash_, client_key);
  Cleanse(&client_key);
  const bool match = CRYPTO_memcmp(stored.data(), keys_.stored_key.data(), stored.size()) == 0;
  if (doomed_.has_value()) return Fail(*doomed_);
  if (!match) return Fail(SaslFailure::kBadCredentials);
  server_signature_ = Hmac(hash_, keys_.server_key, auth_message);
  stage_ = Stage::kFinalAck;
  return Challenge(Concat({"v=", Base64(server_signature_)}));
}

}  // namespace posthaste::auth
