// FakeTransport: a Transport with no socket, for unit tests of protocol adapters. It records
// what the adapter asked for and lets the test play the peer and the kernel: deliver bytes,
// finish the peer's side, complete queued output, finish a TLS handshake, advance the clock and
// fire the deadline, and complete the close.
//
// Like the real transport it never calls the client from inside a Transport call; the test's
// calls (Receive, DrainOutput, ...) are where callbacks happen.
//
// Threading: the test's thread. Ownership: the adapter owns it; keep a raw pointer in the test.
#ifndef POSTHASTE_SERVER_TRANSPORT_TESTING_FAKE_TRANSPORT_H_
#define POSTHASTE_SERVER_TRANSPORT_TESTING_FAKE_TRANSPORT_H_

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "server/transport/transport.h"

namespace posthaste::server::transport {

class FakeTransport final : public Transport {
 public:
  // One queued output item: bytes, or a file range.
  struct Output {
    bool is_file = false;
    std::string bytes;
    FileRange file;
    bool under_tls = false;  // queued after TLS took effect (STLS: after the +OK went out)
  };

  explicit FakeTransport(PeerInfo peer = {}, bool tls_available = false,
                         bool implicit_tls = false);

  // ---- Transport ----
  void Start(TransportClient* client) override;
  void Send(std::string_view bytes) override;
  void SendFile(const FileRange& range) override;
  void Flush() override;
  bool OutputPending() const override;
  void PauseReceive() override { receive_paused_ = true; }
  void ResumeReceive() override { receive_paused_ = false; }
  void StartTls() override;
  bool tls_available() const override { return tls_available_; }
  bool tls_active() const override { return tls_active_; }
  void SetDeadline(uint64_t deadline_ns) override { deadline_ns_ = deadline_ns; }
  uint64_t NowNs() const override { return now_ns_; }
  void Close() override;
  void Abort() override;
  const PeerInfo& peer() const override { return peer_; }
  const TransportTotals& totals() const override { return totals_; }

  // ---- The test plays the peer and the kernel ----
  // Delivers `bytes` as received plaintext. REQUIRES: started, not paused, not closing.
  void Receive(std::string_view bytes);
  // The peer sends FIN.
  void PeerFinishes();
  // Completes every flushed output item (moves it to sent()) and, when anything was flushed,
  // tells the client OnOutputDrained. Returns whether anything was completed.
  bool DrainOutput();
  // Finishes the handshake StartTls() began (or the implicit one).
  void CompleteTlsHandshake(const TlsSessionInfo& info = {.version = "TLSv1.3"});
  // Moves the clock; fires OnDeadline when a set deadline is reached (and clears it).
  void AdvanceTo(uint64_t now_ns);
  void AdvanceBy(uint64_t ns) { AdvanceTo(now_ns_ + ns); }
  // The peer resets / stops acknowledging: the connection ends with `reason`.
  void FailConnection(CloseReason reason);
  // After Close(): completes outstanding output (if closing gracefully) and ends the connection.
  // Close() alone leaves the test to call this, so "closing but not yet closed" can be tested.
  void CompleteClose();

  // ---- What the adapter did ----
  // The bytes of every Send() taken so far (flushed and drained), files as "<file fd:off+len>".
  std::string SentText() const;
  // Everything sent since the last TakeSentText(), then forgotten.
  std::string TakeSentText();
  const std::vector<Output>& sent() const { return sent_; }
  const std::vector<Output>& queued() const { return queued_; }  // not yet flushed
  bool started() const { return client_ != nullptr; }
  bool receive_paused() const { return receive_paused_; }
  bool tls_start_requested() const { return tls_start_requested_; }
  uint64_t deadline_ns() const { return deadline_ns_; }
  bool close_requested() const { return close_requested_; }
  bool abort_requested() const { return abort_requested_; }
  bool peer_finished() const { return peer_finished_; }
  std::optional<CloseReason> closed_reason() const { return closed_reason_; }

 private:
  void EndWith(CloseReason reason);

  PeerInfo peer_;
  TransportClient* client_ = nullptr;
  const bool tls_available_;
  bool tls_active_;
  bool tls_start_requested_ = false;
  bool receive_paused_ = false;
  bool peer_finished_ = false;
  bool close_requested_ = false;
  bool abort_requested_ = false;
  std::optional<CloseReason> closed_reason_;
  uint64_t now_ns_ = 1'000'000'000;
  uint64_t deadline_ns_ = 0;
  std::vector<Output> queued_;   // Send/SendFile since the last Flush
  std::vector<Output> flushed_;  // handed to the "kernel", not yet drained
  std::vector<Output> sent_;
  size_t taken_ = 0;  // sent_ items already returned by TakeSentText
  TransportTotals totals_;
};

}  // namespace posthaste::server::transport

#endif  // POSTHASTE_SERVER_TRANSPORT_TESTING_FAKE_TRANSPORT_H_
