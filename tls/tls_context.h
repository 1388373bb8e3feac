// TlsContextSet: the server's BoringSSL contexts (one SSL_CTX per certificate), chosen per
// connection by SNI, with session-ticket keys that rotate, and reload from files.
//
// What it holds: an immutable TlsSnapshot (default certificate, per-tenant certificates keyed
// by exact name and by wildcard "*.example.com", the ticket key ring, a fingerprint of the
// files it was built from). Reload() and RotateTicketKeys() build a new snapshot and publish it
// with one atomic store; engines created earlier keep the snapshot they started with (they hold
// a shared_ptr to it), new engines load the current one.
//
// Certificate directory layout (`--tls_cert_dir`), flat so that one Kubernetes Secret mounted as
// a directory works as is:
//   DIR/example.com.crt      PEM chain, leaf first
//   DIR/example.com.key      PEM private key
//   DIR/_.example.com.crt    wildcard "*.example.com" ('*' is not allowed in Secret keys,
//   DIR/_.example.com.key    so a leading "_." stands for "*.")
//   DIR/example.com.client_ca.pem   optional: PEM CA certificates whose client certificates
//                                   this name's connections accept (EXTERNAL, RFC 4422)
// A client CA makes the handshake ask for a client certificate without requiring one
// (SSL_VERIFY_PEER, never FAIL_IF_NO_PEER_CERT), so clients without one are unaffected; a
// certificate that does not verify does not fail the handshake either, it just yields no
// identity (TlsEngine::client_certificate_identity()).
// Names are lower-cased; entries starting with '.' (Kubernetes' `..data` and its timestamped
// directories) are skipped; any other file is ignored. A wildcard matches exactly one label:
// "*.example.com" matches "mail.example.com", not "example.com" nor "a.b.example.com".
//
// Policy of every context: TLS 1.2 and 1.3 only; TLS 1.2 ciphers are ECDHE with AES-GCM or
// CHACHA20-POLY1305 only (TLS 1.3 suites are all AEAD); no stateful session cache, resumption by
// tickets only, encrypted with the snapshot's key ring (current key encrypts, current or
// previous decrypts, so a ticket survives one rotation and not two).
//
// Threading: Current(), NewEngine(), NeedsReload() may be called from any thread at once.
// Publication is an std::atomic<std::shared_ptr> store (libstdc++ guards that pointer with a
// lock bit held for a few instructions), plus a generation counter. Reactor shards should create
// engines through a TlsShardContexts: it keeps the shard's own reference to the snapshot and
// re-reads the shared pointer only when the generation (one relaxed atomic integer load, no
// lock) has moved, so the per-connection path shares nothing but that counter (RCU-like: an old
// snapshot is freed when its last engine and shard reference go). SSL_CTX objects are used
// read-only; BoringSSL's own reference counts are atomic.
// Reload() and RotateTicketKeys() are serialised by an internal mutex that the per-connection
// path never takes; call them from one control thread (SIGHUP handler thread, periodic check).
#ifndef POSTHASTE_TLS_TLS_CONTEXT_H_
#define POSTHASTE_TLS_TLS_CONTEXT_H_

#include <openssl/base.h>
#if !defined(OPENSSL_IS_BORINGSSL)
#error "posthaste //tls needs BoringSSL headers first (-isystem /usr/include/android)"
#endif
#include <openssl/ssl.h>

#include <array>
#include <atomic>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"

namespace posthaste {

class TlsEngine;

struct TlsOptions {
  std::string cert_path;  // --tls_cert: PEM chain of the default certificate.
  std::string key_path;   // --tls_key: its private key.
  std::string cert_dir;   // --tls_cert_dir: per-tenant certificates (layout above); may be empty.
  // A ticket key encrypts for this long, then decrypts only for one more interval.
  absl::Duration ticket_key_rotation = absl::Hours(6);
  // Upper bound on per-tenant certificates loaded from cert_dir (a limit on everything).
  size_t tenant_certs_max = 100000;
};

// One session-ticket key: a public name, an AES-256-CBC key and an HMAC-SHA256 key (the scheme
// BoringSSL's ticket key callback expects).
struct TicketKey {
  std::array<uint8_t, 16> name{};
  std::array<uint8_t, 32> aes_key{};
  std::array<uint8_t, 32> hmac_key{};
  absl::Time created;
};

struct TicketKeyRing {
  TicketKey current;
  std::optional<TicketKey> previous;
};

// A file as seen by stat(2) after following symlinks.
struct FileStamp {
  std::string path;
  uint64_t device = 0;
  uint64_t inode = 0;
  int64_t mtime_ns = 0;
  int64_t size = 0;
  bool operator==(const FileStamp&) const = default;
};

// One loaded certificate and key, as a ready SSL_CTX. Immutable once built.
struct TlsCertEntry {
  std::string name;  // "example.com", "*.example.com", or "" for the default.
  bssl::UniquePtr<SSL_CTX> ctx;
  FileStamp cert_file;
  FileStamp key_file;
  FileStamp client_ca_file;  // path empty when this name verifies no client certificates
  std::string subject;  // Leaf subject, one line, for logs.
};

struct TlsSnapshot {
  uint64_t generation = 0;
  std::shared_ptr<const TlsCertEntry> default_cert;
  // Keys are lower-case names, wildcards stored as "*.example.com".
  absl::flat_hash_map<std::string, std::shared_ptr<const TlsCertEntry>> by_name;
  std::shared_ptr<const TicketKeyRing> ticket_keys;
  // Every file the snapshot was built from (or tried to), for NeedsReload().
  std::vector<FileStamp> fingerprint;

  // The certificate for an SNI name (case-insensitive): exact, then wildcard one label deep,
  // then the default. Never null.
  const TlsCertEntry& Select(std::string_view server_name) const;
};

// What one Reload() did.
struct TlsReloadReport {
  size_t loaded = 0;                // Certificates (re)built from changed files.
  size_t unchanged = 0;             // Reused as is (same inode, mtime, size).
  size_t kept_old = 0;              // Broken new files: the previous certificate stays in service.
  size_t removed = 0;               // Domains whose files disappeared.
  size_t skipped = 0;               // Broken files with no previous certificate to keep.
  std::vector<std::string> errors;  // One line per broken file, also logged.
};

class TlsContextSet {
 public:
  // Loads the default certificate (required) and the directory. A broken tenant file is logged
  // and skipped; a broken default certificate is an error.
  static absl::StatusOr<std::unique_ptr<TlsContextSet>> Create(const TlsOptions& options);

  ~TlsContextSet();
  TlsContextSet(const TlsContextSet&) = delete;
  TlsContextSet& operator=(const TlsContextSet&) = delete;

  // The snapshot new handshakes use. Lock-free for the caller apart from the atomic load.
  std::shared_ptr<const TlsSnapshot> Current() const;

  // A server engine on the current snapshot.
  std::unique_ptr<TlsEngine> NewEngine() const;

  // Re-reads every file, reusing entries whose files did not change, and publishes a new
  // snapshot. A broken file keeps that domain's old certificate. OK when every file loaded;
  // otherwise InvalidArgument naming each broken file and why (the new snapshot is published
  // all the same). *report, when given, gets the details.
  absl::Status Reload(TlsReloadReport* report = nullptr);

  // Cheap check for a periodic timer: true when a file changed (inode, mtime or size after
  // following symlinks, which catches Kubernetes' `..data` symlink swap) or the set of names in
  // the directory changed.
  bool NeedsReload() const;

  // Makes a fresh current ticket key; the old current becomes previous; the old previous is
  // dropped (its tickets no longer resume).
  void RotateTicketKeys();
  // Rotates when the current key is older than options.ticket_key_rotation.
  bool MaybeRotateTicketKeys(absl::Time now);

  const TlsOptions& options() const { return options_; }
  // Bumped after each publication; cheap to poll.
  uint64_t generation() const { return generation_.load(std::memory_order_acquire); }

 private:
  explicit TlsContextSet(TlsOptions options);
  void Publish(std::shared_ptr<const TlsSnapshot> snapshot);

  const TlsOptions options_;
  absl::Mutex control_mu_;  // Serialises Reload and rotation; never on the connection path.
  std::atomic<std::shared_ptr<const TlsSnapshot>> current_;
  std::atomic<uint64_t> generation_{0};
};

// One reactor shard's view of a TlsContextSet. Not thread-safe: one per shard, used only on that
// shard's thread. `set` must outlive it.
class TlsShardContexts {
 public:
  explicit TlsShardContexts(const TlsContextSet& set);
  // A server engine on the latest published snapshot.
  std::unique_ptr<TlsEngine> NewEngine();
  const TlsSnapshot& snapshot();

 private:
  void RefreshIfStale();
  const TlsContextSet& set_;
  uint64_t generation_ = 0;
  std::shared_ptr<const TlsSnapshot> snapshot_;
};

// Builds one SSL_CTX with posthaste's policy from PEM files. Exposed for tests and tools.
// `client_ca_path`, when not empty, names PEM CA certificates: the context then asks clients
// for a certificate (optional) and verifies it against them.
absl::StatusOr<std::shared_ptr<const TlsCertEntry>> LoadTlsCertEntry(
    std::string name, const std::string& cert_path, const std::string& key_path,
    const std::string& client_ca_path = "");

// stat(2) following symlinks. NotFound when missing.
absl::StatusOr<FileStamp> StampFile(const std::string& path);

// The name a cert_dir file stem stands for ("_.example.com" -> "*.example.com"), lower-cased;
// nullopt when the stem is not a plausible DNS name.
std::optional<std::string> CertDirStemToName(std::string_view stem);

}  // namespace posthaste

#endif  // POSTHASTE_TLS_TLS_CONTEXT_H_
