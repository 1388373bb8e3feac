#include "server/pop3_service/testing/fake_pop3_backend.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "base/check.h"

namespace posthaste::server::pop3_service {

FakeMaildrop::FakeMaildrop(const std::vector<uint64_t>& sizes) : sizes_(sizes) {
  pop3::MailboxSnapshot::Builder builder;
  for (size_t i = 0; i < sizes.size(); ++i) {
    PH_CHECK(builder.Add(sizes[i], absl::StrCat("u", i + 1), i).ok());
  }
  view_ = std::move(builder).Build();
}

transport::FileRange FakeMaildrop::Locate(pop3::MessageIndex message) const {
  ++locate_calls_;
  const uint64_t i = view_->ref(message);
  return {.fd = kFd, .offset = 1000 * i, .length = sizes_[i]};
}

absl::StatusOr<uint64_t> FakeMaildrop::TopLength(pop3::MessageIndex message,
                                                 uint64_t body_lines) const {
  return sizes_[view_->ref(message)];
}

absl::Status FakeMaildrop::VerifyStored(pop3::MessageIndex message) const {
  return absl::OkStatus();
}

absl::Status FakeMaildrop::CommitDeletions(std::span<const pop3::MessageIndex> deletions) const {
  return absl::OkStatus();
}

absl::Status FakeMaildrop::RecordRetrievals(std::span<const pop3::MessageIndex> retrieved) const {
  return absl::OkStatus();
}

bool FakePop3Backend::Admit(uint64_t id, const transport::PeerInfo& peer) {
  calls_.push_back(absl::StrCat("admit ", id, " ", peer.ip));
  return admit_at_once;
}

void FakePop3Backend::ClientNamed(uint64_t id, std::string_view ip) {
  calls_.push_back(absl::StrCat("client ", id, " ", std::string(ip)));
}

std::string_view FakePop3Backend::SaslMechanismsOffered(bool tls, bool channel_binding,
                                                        bool client_certificate) const {
  if (client_certificate) {
    return channel_binding ? "EXTERNAL SCRAM-SHA-256-PLUS SCRAM-SHA-256" : "EXTERNAL SCRAM-SHA-256";
  }
  return channel_binding ? "SCRAM-SHA-256-PLUS SCRAM-SHA-256" : "SCRAM-SHA-256";
}

void FakePop3Backend::StepSasl(uint64_t id, const pop3::Pop3Credentials& credentials,
                               const auth::SaslConnectionFacts& connection) {
  calls_.push_back(absl::StrCat("sasl ", id, " ", std::string(credentials.sasl_mechanism),
                                credentials.sasl_start ? " start" : " step",
                                " binding=", connection.tls_exporter.size()));
  last_secret_.assign(credentials.secret);
}

void FakePop3Backend::AbandonSasl(uint64_t id, bool cancelled) {
  calls_.push_back(absl::StrCat("abandon-sasl ", id, cancelled ? " cancelled" : " malformed"));
}

void FakePop3Backend::Authenticate(uint64_t id, const pop3::Pop3Credentials& credentials) {
  calls_.push_back(absl::StrCat("auth ", id, " ", std::string(credentials.user)));
  last_secret_ = std::string(credentials.secret);
}

void FakePop3Backend::OpenMaildrop(uint64_t id, std::string_view user) {
  calls_.push_back(absl::StrCat("open ", id, " ", std::string(user)));
}

void FakePop3Backend::CheckMessage(uint64_t id, std::shared_ptr<const Pop3Maildrop> maildrop,
                                   pop3::MessageIndex message) {
  calls_.push_back(absl::StrCat("check ", id, " ", message.value()));
}

void FakePop3Backend::FindTopLength(uint64_t id, std::shared_ptr<const Pop3Maildrop> maildrop,
                                    pop3::MessageIndex message, uint64_t body_lines) {
  calls_.push_back(absl::StrCat("top ", id, " ", message.value(), " ", body_lines));
}

void FakePop3Backend::Commit(uint64_t id, std::shared_ptr<const Pop3Maildrop> maildrop,
                             std::vector<pop3::MessageIndex> deletions,
                             std::vector<pop3::MessageIndex> retrieved) {
  std::vector<uint32_t> indexes;
  for (pop3::MessageIndex i : deletions) indexes.push_back(i.value());
  std::string call = absl::StrCat("commit ", id, " ", absl::StrJoin(indexes, ","));
  if (!retrieved.empty()) {
    std::vector<uint32_t> sent;
    for (pop3::MessageIndex i : retrieved) sent.push_back(i.value());
    absl::StrAppend(&call, " retrieved ", absl::StrJoin(sent, ","));
  }
  calls_.push_back(std::move(call));
}

void FakePop3Backend::Downloaded(uint64_t id, uint64_t octets) {
  calls_.push_back(absl::StrCat("downloaded ", id, " ", octets));
}

void FakePop3Backend::Ended(uint64_t id) {
  ++ended_count_;
  calls_.push_back(absl::StrCat("ended ", id));
}

void FakePop3Backend::Finished(uint64_t id, const Pop3ConnectionEnd& end) {
  PH_CHECK(!finished_.has_value());
  finished_ = end;
  calls_.push_back(
      absl::StrCat("finished ", id, " ", std::string(transport::CloseReasonName(end.reason))));
}

std::vector<std::string> FakePop3Backend::TakeCalls() {
  std::vector<std::string> calls = std::move(calls_);
  calls_.clear();
  return calls;
}

}  // namespace posthaste::server::pop3_service
