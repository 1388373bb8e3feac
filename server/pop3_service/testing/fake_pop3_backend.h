// FakePop3Backend and FakeMaildrop: a Pop3Backend with no shards, pools or store, for unit
// tests of Pop3Adapter. The backend records each request as a line of text ("auth 7 mrose",
// "open 7 mrose", "top 7 1 10", "commit 7 0,2", "ended 7", ...) and answers nothing by itself:
// the test answers through the adapter's On* methods, as the real backend would later.
//
// Threading: the test's thread.
#ifndef POSTHASTE_SERVER_POP3_SERVICE_TESTING_FAKE_POP3_BACKEND_H_
#define POSTHASTE_SERVER_POP3_SERVICE_TESTING_FAKE_POP3_BACKEND_H_

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "server/pop3_service/pop3_backend.h"

namespace posthaste::server::pop3_service {

// Messages of the given sizes, stored at fd 50, message i at offset 1000 * i.
class FakeMaildrop final : public Pop3Maildrop {
 public:
  static constexpr int kFd = 50;
  explicit FakeMaildrop(const std::vector<uint64_t>& sizes);

  std::shared_ptr<const pop3::MailboxSnapshot> view() const override { return view_; }
  transport::FileRange Locate(pop3::MessageIndex message) const override;
  absl::StatusOr<uint64_t> TopLength(pop3::MessageIndex message,
                                     uint64_t body_lines) const override;
  absl::Status CommitDeletions(std::span<const pop3::MessageIndex> deletions) const override;
  absl::Status RecordRetrievals(std::span<const pop3::MessageIndex> retrieved) const override;

  absl::Status VerifyStored(pop3::MessageIndex message) const override;

  int locate_calls() const { return locate_calls_; }

 private:
  std::shared_ptr<const pop3::MailboxSnapshot> view_;
  std::vector<uint64_t> sizes_;
  mutable int locate_calls_ = 0;
};

class FakePop3Backend final : public Pop3Backend {
 public:
  // Admit() answers at once with this (true); false leaves the answer to the test.
  bool admit_at_once = true;

  bool Admit(uint64_t id, const transport::PeerInfo& peer) override;
  void ClientNamed(uint64_t id, std::string_view ip) override;
  void Authenticate(uint64_t id, const pop3::Pop3Credentials& credentials) override;
  // Offers SCRAM-SHA-256, plus SCRAM-SHA-256-PLUS with a binding and EXTERNAL (first) with a
  // client certificate; steps are recorded ("sasl ID MECH start|step binding=N") and answered
  // by the test.
  std::string_view SaslMechanismsOffered(bool tls, bool channel_binding,
                                         bool client_certificate) const override;
  void StepSasl(uint64_t id, const pop3::Pop3Credentials& credentials,
                const auth::SaslConnectionFacts& connection) override;
  void AbandonSasl(uint64_t id, bool cancelled) override;
  void OpenMaildrop(uint64_t id, std::string_view user) override;
  // Recorded as "check ID INDEX"; the test answers.
  void CheckMessage(uint64_t id, std::shared_ptr<const Pop3Maildrop> maildrop,
                    pop3::MessageIndex message) override;
  void FindTopLength(uint64_t id, std::shared_ptr<const Pop3Maildrop> maildrop,
                     pop3::MessageIndex message, uint64_t body_lines) override;
  // Recorded as "commit ID [DELETIONS...]" and, when it has any, " retrieved [INDEXES...]".
  void Commit(uint64_t id, std::shared_ptr<const Pop3Maildrop> maildrop,
              std::vector<pop3::MessageIndex> deletions,
              std::vector<pop3::MessageIndex> retrieved) override;
  void Downloaded(uint64_t id, uint64_t octets) override;
  void Ended(uint64_t id) override;
  void Finished(uint64_t id, const Pop3ConnectionEnd& end) override;

  // Every request so far, one line each, in order; TakeCalls() returns and forgets them.
  const std::vector<std::string>& calls() const { return calls_; }
  std::vector<std::string> TakeCalls();
  std::string last_secret() const { return last_secret_; }
  std::optional<Pop3ConnectionEnd> finished() const { return finished_; }
  int ended_count() const { return ended_count_; }

 private:
  std::vector<std::string> calls_;
  std::string last_secret_;
  std::optional<Pop3ConnectionEnd> finished_;
  int ended_count_ = 0;
};

}  // namespace posthaste::server::pop3_service

#endif  // POSTHASTE_SERVER_POP3_SERVICE_TESTING_FAKE_POP3_BACKEND_H_
