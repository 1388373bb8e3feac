#include "server/auth/scram.h"

#include <string>

#include "absl/status/status.h"
#include "gtest/gtest.h"

namespace posthaste::auth {
namespace {

constexpr std::string_view kSecret = "0123456789abcdef0123456789abcdef";

// Keys as `user add` would store them, with the examples' salt.
std::string StoredKeysFor(ScramHash hash, std::string_view password, std::string_view salt_b64) {
  // Decode the salt through the RFC 5803 parser: a keys string with dummy keys of the right size.
  const std::string zeros = hash == ScramHash::kSha1
                                ? "AAAAAAAAAAAAAAAAAAAAAAAAAAA="
                                : "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=";
  const std::string prefix = hash == ScramHash::kSha1 ? "SCRAM-SHA-1" : "SCRAM-SHA-256";
  absl::StatusOr<ScramKeys> dummy =
      ParseScramKeys(prefix + "$4096:" + std::string(salt_b64) + "$" + zeros + ":" + zeros);
  EXPECT_TRUE(dummy.ok()) << dummy.status();
  return FormatScramKeys(DeriveScramKeysWithSalt(hash, password, dummy->salt, 4096));
}

struct Example {
  SaslMechanism mechanism;
  ScramHash hash;
  std::string salt_b64;
  std::string server_nonce;
  std::string client_first;
  std::string server_first;
  std::string client_final;
  std::string server_final;
};

Example Rfc5802Example() {
  // RFC 5802 section 5.
  return {SaslMechanism::kScramSha1,
          ScramHash::kSha1,
          "QSXCR+Q6sek8bf92",
          "3rfcNHYJY1ZVvWVs7j",
          "n,,n=user,r=fyko+d2lbbFgONRv9qkxdawL",
          "r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,s=QSXCR+Q6sek8bf92,i=4096",
          "c=biws,r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,p=v0X8v3Bz2T0CJGbJQyF0X+HI4Ts=",
          "v=rmF9pqV8S7suAoZWja4dJRkFsKQ="};
}

Example Rfc7677Example() {
  // RFC 7677 section 3.
  return {SaslMechanism::kScramSha256,
          ScramHash::kSha256,
          "W22ZaJ0SNY7soEsUEjb6gQ==",
          "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0",
          "n,,n=user,r=rOprNGfwEbeRWgbNEkqO",
          "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096",
          "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,"
          "p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=",
          "v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4="};
}

SaslAccount AccountWithKeys(const Example& example, std::string_view password) {
  SaslAccount account;
  account.address = "user";
  const std::string keys = StoredKeysFor(example.hash, password, example.salt_b64);
  (example.hash == ScramHash::kSha1 ? account.scram_sha1 : account.scram_sha256) = keys;
  return account;
}

void RunExample(const Example& example, bool initial_response) {
  ScramServerExchange exchange(example.mechanism, SaslConnectionFacts{}, kSecret);
  exchange.SetServerNonceForTest(example.server_nonce);
  SaslStep step;
  if (initial_response) {
    step = exchange.Start(example.client_first);
  } else {
    step = exchange.Start(std::nullopt);
    ASSERT_EQ(step.kind, SaslStep::Kind::kChallenge);
    EXPECT_EQ(step.challenge, "");
    step = exchange.Continue(example.client_first);
  }
  ASSERT_EQ(step.kind, SaslStep::Kind::kNeedAccount);
  EXPECT_EQ(step.authcid, "user");
  step = exchange.AccountFound(AccountWithKeys(example, "pencil"));
  ASSERT_EQ(step.kind, SaslStep::Kind::kChallenge);
  EXPECT_EQ(step.challenge, example.server_first);
  step = exchange.Continue(example.client_final);
  ASSERT_EQ(step.kind, SaslStep::Kind::kChallenge) << SaslFailureName(step.failure);
  EXPECT_EQ(step.challenge, example.server_final);
  step = exchange.Continue("");
  ASSERT_EQ(step.kind, SaslStep::Kind::kSuccess);
  EXPECT_EQ(step.authcid, "user");
  EXPECT_EQ(step.authzid, "");
}

TEST(ScramTest, Rfc5802ExampleWithAndWithoutInitialResponse) {
  RunExample(Rfc5802Example(), true);
  RunExample(Rfc5802Example(), false);
}

TEST(ScramTest, Rfc7677ExampleWithAndWithoutInitialResponse) {
  RunExample(Rfc7677Example(), true);
  RunExample(Rfc7677Example(), false);
}

SaslStep RunToProof(const Example& example, const absl::StatusOr<SaslAccount>& account,
                    std::string* server_first = nullptr) {
  ScramServerExchange exchange(example.mechanism, SaslConnectionFacts{}, kSecret);
  exchange.SetServerNonceForTest(example.server_nonce);
  SaslStep step = exchange.Start(example.client_first);
  EXPECT_EQ(step.kind, SaslStep::Kind::kNeedAccount);
  step = exchange.AccountFound(account);
  if (step.kind != SaslStep::Kind::kChallenge) return step;
  if (server_first != nullptr) *server_first = step.challenge;
  return exchange.Continue(example.client_final);
}

TEST(ScramTest, WrongPasswordFailsAtTheProof) {
  const Example example = Rfc7677Example();
  const SaslStep step = RunToProof(example, AccountWithKeys(example, "pencils"));
  ASSERT_EQ(step.kind, SaslStep::Kind::kFailure);
  EXPECT_EQ(step.failure, SaslFailure::kBadCredentials);
}

TEST(ScramTest, UnknownUserGetsAStablePlausibleSaltAndFailsAtTheProof) {
  const Example example = Rfc7677Example();
  std::string first, second;
  SaslStep step = RunToProof(example, absl::NotFoundError("no such account"), &first);
  ASSERT_EQ(step.kind, SaslStep::Kind::kFailure);
  EXPECT_EQ(step.failure, SaslFailure::kUnknownUser);
  RunToProof(example, absl::NotFoundError("no such account"), &second);
  EXPECT_EQ(first, second);  // the same salt each time, as for a real user
  EXPECT_NE(first.find(",i=4096"), std::string::npos);
  // 16 bytes of salt: 24 base64 characters, like a real one.
  const size_t s = first.find(",s=");
  EXPECT_EQ(first.find(",i=") - s - 3, 24u);
}

TEST(ScramTest, DisabledAccountAndAccountWithoutKeysFail) {
  const Example example = Rfc7677Example();
  SaslAccount disabled = AccountWithKeys(example, "pencil");
  disabled.disabled = true;
  EXPECT_EQ(RunToProof(example, disabled).kind, SaslStep::Kind::kFailure);
  SaslAccount no_keys;
  no_keys.address = "user";
  no_keys.password_hash = "$y$...";
  const SaslStep step = RunToProof(example, no_keys);
  ASSERT_EQ(step.kind, SaslStep::Kind::kFailure);
  EXPECT_EQ(step.failure, SaslFailure::kBadCredentials);
}

TEST(ScramTest, StoreErrorIsATemporaryFailure) {
  const SaslStep step = RunToProof(Rfc7677Example(), absl::UnavailableError("rocksdb"));
  ASSERT_EQ(step.kind, SaslStep::Kind::kFailure);
  EXPECT_EQ(step.failure, SaslFailure::kTempFailure);
}

TEST(ScramTest, TamperedNonceOrBindingIsRefused) {
  Example example = Rfc7677Example();
  example.client_final.replace(example.client_final.find("k0,"), 2, "k1");
  EXPECT_EQ(RunToProof(example, AccountWithKeys(example, "pencil")).failure,
            SaslFailure::kMalformed);
  example = Rfc7677Example();
  example.client_final.replace(0, 6, "c=eSws");  // "y,," where "n,," was sent
  EXPECT_EQ(RunToProof(example, AccountWithKeys(example, "pencil")).failure,
            SaslFailure::kMalformed);
}

TEST(ScramTest, NonEmptyAnswerToServerFinalFails) {
  const Example example = Rfc5802Example();
  ScramServerExchange exchange(example.mechanism, {}, kSecret);
  exchange.SetServerNonceForTest(example.server_nonce);
  exchange.Start(example.client_first);
  exchange.AccountFound(AccountWithKeys(example, "pencil"));
  ASSERT_EQ(exchange.Continue(example.client_final).kind, SaslStep::Kind::kChallenge);
  EXPECT_EQ(exchange.Continue("x").kind, SaslStep::Kind::kFailure);
}

// ---- Channel binding ----

TEST(ScramTest, ClientSayingYIsRefusedWhenTheServerOffersPlus) {
  SaslConnectionFacts tls13{.tls = true, .tls_exporter = std::string(32, 'x')};
  ScramServerExchange exchange(SaslMechanism::kScramSha256, tls13, kSecret);
  const SaslStep step = exchange.Start("y,,n=user,r=abc");
  ASSERT_EQ(step.kind, SaslStep::Kind::kFailure);
  EXPECT_EQ(step.failure, SaslFailure::kChannelBindingMismatch);
  // Without an exporter (no -PLUS offered) "y" is fine.
  ScramServerExchange plain(SaslMechanism::kScramSha256, {}, kSecret);
  EXPECT_EQ(plain.Start("y,,n=user,r=abc").kind, SaslStep::Kind::kNeedAccount);
}

TEST(ScramTest, PlusNeedsTlsExporterBinding) {
  SaslConnectionFacts tls13{.tls = true, .tls_exporter = std::string(32, 'x')};
  ScramServerExchange n(SaslMechanism::kScramSha256Plus, tls13, kSecret);
  EXPECT_EQ(n.Start("n,,n=user,r=abc").failure, SaslFailure::kChannelBindingMismatch);
  ScramServerExchange unique(SaslMechanism::kScramSha256Plus, tls13, kSecret);
  EXPECT_EQ(unique.Start("p=tls-unique,,n=user,r=abc").failure,
            SaslFailure::kChannelBindingMismatch);
  ScramServerExchange no_tls(SaslMechanism::kScramSha256Plus, {}, kSecret);
  EXPECT_EQ(no_tls.Start("p=tls-exporter,,n=user,r=abc").failure, SaslFailure::kNotAllowed);
  ScramServerExchange p_on_plain(SaslMechanism::kScramSha256, tls13, kSecret);
  EXPECT_EQ(p_on_plain.Start("p=tls-exporter,,n=user,r=abc").kind, SaslStep::Kind::kFailure);
}

// A whole -PLUS exchange, the client side computed here (the RFC 7677 keys, our binding).
TEST(ScramTest, PlusWithMatchingAndMismatchedExporter) {
  const Example example = Rfc7677Example();
  const std::string exporter(32, '\x5a');
  for (const bool matching : {true, false}) {
    SaslConnectionFacts facts{.tls = true, .tls_exporter = exporter};
    ScramServerExchange exchange(SaslMechanism::kScramSha256Plus, facts, kSecret);
    exchange.SetServerNonceForTest("srv");
    const std::string gs2 = "p=tls-exporter,,";
    ASSERT_EQ(exchange.Start(gs2 + "n=user,r=cli").kind, SaslStep::Kind::kNeedAccount);
    const SaslStep first = exchange.AccountFound(AccountWithKeys(example, "pencil"));
    ASSERT_EQ(first.kind, SaslStep::Kind::kChallenge);
    // c= carries gs2 header and the binding; a client on another TLS session has another one.
    const std::string binding = gs2 + (matching ? exporter : std::string(32, '\x11'));
    // Base64 through the RFC 5803 formatter: a ScramKeys whose salt is the binding.
    ScramKeys carrier{.hash = ScramHash::kSha256,
                      .iterations = 1,
                      .salt = binding,
                      .stored_key = std::string(32, '\0'),
                      .server_key = std::string(32, '\0')};
    const std::string formatted = FormatScramKeys(carrier);
    const size_t from = formatted.find(':') + 1;
    const std::string binding_b64 = formatted.substr(from, formatted.find('$', from) - from);
    const std::string without_proof = "c=" + binding_b64 + ",r=clisrv";
    // A proof that cannot match: the binding check must come first and name the mismatch.
    const SaslStep step = exchange.Continue(without_proof + ",p=" + std::string(43, 'A') + "=");
    ASSERT_EQ(step.kind, SaslStep::Kind::kFailure);
    EXPECT_EQ(step.failure,
              matching ? SaslFailure::kBadCredentials : SaslFailure::kChannelBindingMismatch);
  }
}

// ---- Parsers and stored keys ----

TEST(ScramTest, ClientFirstParser) {
  auto first = ParseScramClientFirst("n,a=ad=3Dmin=2Cx,n=us=2Cer,r=abc,x=ext");
  ASSERT_TRUE(first.has_value());
  EXPECT_EQ(first->authzid, "ad=min,x");
  EXPECT_EQ(first->username, "us,er");
  EXPECT_EQ(first->client_nonce, "abc");
  EXPECT_EQ(first->gs2_header, "n,a=ad=3Dmin=2Cx,");
  EXPECT_EQ(first->bare, "n=us=2Cer,r=abc,x=ext");
  for (std::string_view bad :
       {"", "n", "n,", "n,,", "x,,n=user,r=a", "n,,m=ext,n=user,r=a", "n,,n=,r=a", "n,,n=u=2X,r=a",
        "n,,r=a,n=user", "n,,n=user", "n,,n=user,r=", "n,b=x,n=user,r=a", "p=,,n=user,r=a",
        "p=a b,,n=user,r=a", "n,,n=user,r=a,", "n,,n=us\x01r,r=a"}) {
    EXPECT_FALSE(ParseScramClientFirst(bad).has_value()) << bad;
  }
}

TEST(ScramTest, ClientFinalParser) {
  auto final_message = ParseScramClientFinal("c=biws,r=abc,x=1,p=AAAA");
  ASSERT_TRUE(final_message.has_value());
  EXPECT_EQ(final_message->channel_binding, "n,,");
  EXPECT_EQ(final_message->nonce, "abc");
  EXPECT_EQ(final_message->without_proof, "c=biws,r=abc,x=1");
  EXPECT_EQ(final_message->proof, std::string(3, '\0'));
  for (std::string_view bad : {"", "c=biws,r=abc", "c=biws,p=AAAA", "r=abc,c=biws,p=AAAA",
                               "c=b!ws,r=abc,p=AAAA", "c=biws,r=abc,p=", "c=biws,r=abc,p=A"}) {
    EXPECT_FALSE(ParseScramClientFinal(bad).has_value()) << bad;
  }
}

TEST(ScramTest, StoredKeysRoundTripInRfc5803Form) {
  for (ScramHash hash : {ScramHash::kSha1, ScramHash::kSha256}) {
    absl::StatusOr<ScramKeys> keys = DeriveScramKeys(hash, "secret", 4096);
    ASSERT_TRUE(keys.ok());
    const std::string text = FormatScramKeys(*keys);
    EXPECT_TRUE(
        text.starts_with(hash == ScramHash::kSha1 ? "SCRAM-SHA-1$4096:" : "SCRAM-SHA-256$4096:"))
        << text;
    absl::StatusOr<ScramKeys> parsed = ParseScramKeys(text);
    ASSERT_TRUE(parsed.ok()) << parsed.status();
    EXPECT_EQ(parsed->salt, keys->salt);
    EXPECT_EQ(parsed->stored_key, keys->stored_key);
    EXPECT_EQ(parsed->server_key, keys->server_key);
    EXPECT_EQ(parsed->salt.size(), kScramSaltBytes);
  }
  // Two derivations of one password get different salts.
  EXPECT_NE(DeriveScramKeys(ScramHash::kSha256, "x", 1)->salt,
            DeriveScramKeys(ScramHash::kSha256, "x", 1)->salt);
  for (std::string_view bad :
       {"", "SCRAM-SHA-256", "SCRAM-SHA-512$4096:QUJD$AAAA:AAAA", "SCRAM-SHA-1$0:QUJD$AAAA:AAAA",
        "SCRAM-SHA-1$4096:QUJD$AAAA:AAAA", "SCRAM-SHA-1$99999999999:QUJD$AAAA:AAAA"}) {
    EXPECT_FALSE(ParseScramKeys(bad).ok()) << bad;
  }
}

}  // namespace
}  // namespace posthaste::auth
