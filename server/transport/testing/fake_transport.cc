#include "server/transport/testing/fake_transport.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "base/check.h"

namespace posthaste::server::transport {

FakeTransport::FakeTransport(PeerInfo peer, bool tls_available, bool implicit_tls)
    : peer_(std::move(peer)), tls_available_(tls_available || implicit_tls),
      tls_active_(implicit_tls) {}

void FakeTransport::Start(TransportClient* client) {
  PH_CHECK(client_ == nullptr && client != nullptr);
  client_ = client;
}

void FakeTransport::Send(std::string_view bytes) {
  if (closed_reason_.has_value() || abort_requested_) return;
  Output out;
  out.bytes = std::string(bytes);
  out.under_tls = tls_active_ && !tls_start_requested_;
  queued_.push_back(std::move(out));
}

void FakeTransport::SendFile(const FileRange& range) {
  if (closed_reason_.has_value() || abort_requested_) return;
  Output out;
  out.is_file = true;
  out.file = range;
  out.under_tls = tls_active_ && !tls_start_requested_;
  queued_.push_back(std::move(out));
}

void FakeTransport::Flush() {
  for (Output& out : queued_) flushed_.push_back(std::move(out));
  queued_.clear();
}

bool FakeTransport::OutputPending() const { return !queued_.empty() || !flushed_.empty(); }

void FakeTransport::StartTls() {
  PH_CHECK(tls_available_ && !tls_active_);
  tls_active_ = true;
  tls_start_requested_ = true;  // cleared by CompleteTlsHandshake
}

void FakeTransport::Close() {
  if (closed_reason_.has_value()) return;
  close_requested_ = true;
}

void FakeTransport::Abort() {
  if (closed_reason_.has_value()) return;
  abort_requested_ = true;
  queued_.clear();
  flushed_.clear();
}

void FakeTransport::Receive(std::string_view bytes) {
  PH_CHECK(client_ != nullptr && !receive_paused_ && !close_requested_ && !abort_requested_ &&
           !closed_reason_.has_value());
  totals_.bytes_received += bytes.size();
  client_->OnReceive(bytes);
}

void FakeTransport::PeerFinishes() {
  PH_CHECK(client_ != nullptr && !peer_finished_);
  peer_finished_ = true;
  if (close_requested_ || abort_requested_ || closed_reason_.has_value()) return;
  client_->OnPeerFinished();
}

bool FakeTransport::DrainOutput() {
  if (flushed_.empty() || closed_reason_.has_value()) return false;
  for (Output& out : flushed_) {
    (out.is_file ? totals_.file_bytes_sent : totals_.reply_bytes_sent) +=
        out.is_file ? out.file.length : out.bytes.size();
    sent_.push_back(std::move(out));
  }
  flushed_.clear();
  if (!close_requested_ && !abort_requested_) client_->OnOutputDrained();
  return true;
}

void FakeTransport::CompleteTlsHandshake(const TlsSessionInfo& info) {
  PH_CHECK(tls_active_);
  tls_start_requested_ = false;
  if (close_requested_ || abort_requested_ || closed_reason_.has_value()) return;
  client_->OnTlsStarted(info);
}

void FakeTransport::AdvanceTo(uint64_t now_ns) {
  now_ns_ = now_ns;
  if (deadline_ns_ == 0 || now_ns_ < deadline_ns_ || closed_reason_.has_value()) return;
  deadline_ns_ = 0;
  if (close_requested_ || abort_requested_) return;
  client_->OnDeadline();
}

void FakeTransport::FailConnection(CloseReason reason) {
  queued_.clear();
  flushed_.clear();
  EndWith(reason);
}

void FakeTransport::CompleteClose() {
  PH_CHECK(close_requested_ || abort_requested_);
  if (abort_requested_) {
    EndWith(CloseReason::kAborted);
    return;
  }
  Flush();
  for (Output& out : flushed_) sent_.push_back(std::move(out));
  flushed_.clear();
  EndWith(CloseReason::kClosed);
}

void FakeTransport::EndWith(CloseReason reason) {
  if (closed_reason_.has_value()) return;
  closed_reason_ = reason;
  deadline_ns_ = 0;
  client_->OnClosed(reason);  // the client may destroy this object: touch nothing after
}

std::string FakeTransport::SentText() const {
  std::string text;
  for (const Output& out : sent_) {
    if (out.is_file) {
      absl::StrAppend(&text, "<file ", out.file.fd, ":", out.file.offset, "+", out.file.length,
                      ">");
    } else {
      text += out.bytes;
    }
  }
  return text;
}

std::string FakeTransport::TakeSentText() {
  std::string text;
  for (size_t i = taken_; i < sent_.size(); ++i) {
    const Output& out = sent_[i];
    if (out.is_file) {
      absl::StrAppend(&text, "<file ", out.file.fd, ":", out.file.offset, "+", out.file.length,
                      ">");
    } else {
      text += out.bytes;
    }
  }
  taken_ = sent_.size();
  return text;
}

}  // namespace posthaste::server::transport
