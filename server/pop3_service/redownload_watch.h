// RedownloadWatch: notices a POP3 session that retrieves more than a set share of a large
// mailbox: a client that lost its UIDL state (or a migration that changed the UIDLs) downloading
// everything again. Such sessions are logged and counted per tenant by the SessionRecorder
// (posthaste_pop3_redownload_sessions_total) so an operator sees them before the traffic bill.
//
// Distinct messages count (RETR of the same message twice is one), TOP does not. The alarm
// fires once per session, on the RETR that takes the count past the share.
//
// Threading: owned by one connection's SessionRecorder, used on its shard's thread.
#ifndef POSTHASTE_SERVER_POP3_SERVICE_REDOWNLOAD_WATCH_H_
#define POSTHASTE_SERVER_POP3_SERVICE_REDOWNLOAD_WATCH_H_

#include <cstdint>
#include <vector>

namespace posthaste::server {

struct RedownloadAlarmOptions {
  // The share of the mailbox's messages, in percent, that a session must retrieve more than
  // (--redownload_alarm_percent). 0: no alarm.
  uint32_t percent = 50;
  // Mailboxes with fewer messages never raise it (--redownload_alarm_messages_min).
  uint32_t messages_min = 500;
};

class RedownloadWatch {
 public:
  explicit RedownloadWatch(RedownloadAlarmOptions options) : options_(options) {}

  // The maildrop is open with `messages` messages of `octets` in all.
  void MaildropOpened(uint32_t messages, uint64_t octets);
  // RETR of the message at 0-based `index`, `octets` long. True exactly once per session: when
  // this retrieval takes the distinct messages retrieved past the share.
  bool Retrieved(uint32_t index, uint64_t octets);

  bool alarmed() const { return alarmed_; }
  uint32_t messages() const { return messages_; }
  uint64_t mailbox_octets() const { return mailbox_octets_; }
  uint32_t retrieved() const { return retrieved_; }                // distinct messages
  uint64_t retrieved_octets() const { return retrieved_octets_; }  // of those messages

 private:
  bool Watching() const { return options_.percent > 0 && messages_ >= options_.messages_min; }

  const RedownloadAlarmOptions options_;
  uint32_t messages_ = 0;
  uint64_t mailbox_octets_ = 0;
  uint32_t retrieved_ = 0;
  uint64_t retrieved_octets_ = 0;
  bool alarmed_ = false;
  std::vector<bool> seen_;  // by message index; sized only for a watched mailbox
};

}  // namespace posthaste::server

#endif  // POSTHASTE_SERVER_POP3_SERVICE_REDOWNLOAD_WATCH_H_
