#include "tls/tls_context.h"

#include <dirent.h>
#include <openssl/digest.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>
#include <openssl/sha.h>
#include <openssl/x509.h>
#include <sys/stat.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <map>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "base/log.h"
#include "base/strings.h"
#include "tls/tls_engine.h"

namespace posthaste {
namespace {

// ECDHE only, AEAD only. TLS 1.3 suites are not configurable in BoringSSL and are all AEAD.
constexpr char kTls12Ciphers[] =
    "[ECDHE-ECDSA-AES128-GCM-SHA256|ECDHE-ECDSA-CHACHA20-POLY1305]:"
    "[ECDHE-RSA-AES128-GCM-SHA256|ECDHE-RSA-CHACHA20-POLY1305]:"
    "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384";

std::string SslErrorString() {
  uint32_t error = ERR_get_error();
  if (error == 0) return "unknown error";
  char buf[256];
  ERR_error_string_n(error, buf, sizeof(buf));
  ERR_clear_error();
  return buf;
}

// Picks the certificate by SNI and moves the connection onto that certificate's SSL_CTX. Runs
// during ClientHello processing, before session resumption is decided, so each certificate's
// session-id context (its name) keeps tickets from one tenant out of another.
int ServerNameCallback(SSL* ssl, int* alert, void* arg) {
  TlsEngine* engine = TlsEngine::FromSsl(ssl);
  if (engine == nullptr) return SSL_TLSEXT_ERR_OK;
  const char* name = SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name);
  std::string_view server_name = name != nullptr ? std::string_view(name) : std::string_view();
  const TlsCertEntry& entry = engine->snapshot().Select(server_name);
  if (entry.ctx.get() != SSL_get_SSL_CTX(ssl)) {
    if (SSL_set_SSL_CTX(ssl, entry.ctx.get()) == nullptr) {
      *alert = SSL_AD_INTERNAL_ERROR;
      return SSL_TLSEXT_ERR_ALERT_FATAL;
    }
    // The verify mode belongs to the connection, copied from the context it started on: take
    // the chosen name's (a client CA there asks for client certificates).
    SSL_set_verify(ssl, SSL_CTX_get_verify_mode(entry.ctx.get()),
                   SSL_CTX_get_verify_callback(entry.ctx.get()));
  }
  engine->OnCertificateSelected(entry, server_name);
  return SSL_TLSEXT_ERR_OK;
}

// Ticket encryption with the connection's snapshot's key ring: current encrypts; current or
// previous decrypts; a ticket under the previous key is accepted and renewed (return 2).
int TicketKeyCallback(SSL* ssl, uint8_t* key_name, uint8_t* iv, EVP_CIPHER_CTX* cipher_ctx,
                      HMAC_CTX* hmac_ctx, int encrypt) {
  TlsEngine* engine = TlsEngine::FromSsl(ssl);
  if (engine == nullptr || engine->snapshot().ticket_keys == nullptr) return encrypt ? -1 : 0;
  const TicketKeyRing& ring = *engine->snapshot().ticket_keys;
  if (encrypt) {
    const TicketKey& key = ring.current;
    std::memcpy(key_name, key.name.data(), key.name.size());
    if (!RAND_bytes(iv, EVP_CIPHER_iv_length(EVP_aes_256_cbc()))) return -1;
    if (!EVP_EncryptInit_ex(cipher_ctx, EVP_aes_256_cbc(), nullptr, key.aes_key.data(), iv) ||
        !HMAC_Init_ex(hmac_ctx, key.hmac_key.data(), key.hmac_key.size(), EVP_sha256(), nullptr)) {
      return -1;
    }
    return 1;
  }
  const TicketKey* key = nullptr;
  int result = 0;
  if (std::memcmp(key_name, ring.current.name.data(), ring.current.name.size()) == 0) {
    key = &ring.current;
    result = 1;
  } else if (ring.previous.has_value() &&
             std::memcmp(key_name, ring.previous->name.data(), ring.previous->name.size()) == 0) {
    key = &*ring.previous;
    result = 2;  // Valid but old: issue a ticket under the current key.
  }
  if (key == nullptr) return 0;  // Unknown or expired key: full handshake.
  if (!HMAC_Init_ex(hmac_ctx, key->hmac_key.data(), key->hmac_key.size(), EVP_sha256(), nullptr) ||
      !EVP_DecryptInit_ex(cipher_ctx, EVP_aes_256_cbc(), nullptr, key->aes_key.data(), iv)) {
    return -1;
  }
  return result;
}

// Client certificates are optional and a failed verification must not end the handshake
// (other clients of the name are unaffected): accept here; BoringSSL keeps the verdict in
// the session (SSL_get_verify_result), which TlsEngine checks before naming an identity.
int AcceptClientCertificate(int /*preverify_ok*/, X509_STORE_CTX* /*store*/) { return 1; }

TicketKey NewTicketKey(absl::Time now) {
  TicketKey key;
  RAND_bytes(key.name.data(), key.name.size());
  RAND_bytes(key.aes_key.data(), key.aes_key.size());
  RAND_bytes(key.hmac_key.data(), key.hmac_key.size());
  key.created = now;
  return key;
}

bool HasSuffix(std::string_view s, std::string_view suffix) {
  return s.size() >= suffix.size() && s.substr(s.size() - suffix.size()) == suffix;
}

struct DirFiles {
  std::string cert_path;
  std::string key_path;
  std::string client_ca_path;  // NAME.client_ca.pem, when present
};

constexpr std::string_view kClientCaSuffix = ".client_ca.pem";

// name -> files, for every plausible `NAME.crt` / `NAME.key` in dir. Errors (unreadable dir)
// go to *error.
std::map<std::string, DirFiles> ScanCertDir(const std::string& dir, size_t max_entries,
                                            std::string* error) {
  std::map<std::string, DirFiles> out;
  if (dir.empty()) return out;
  DIR* d = opendir(dir.c_str());
  if (d == nullptr) {
    *error = absl::StrCat("cannot open --tls_cert_dir ", dir, ": ", std::strerror(errno));
    return out;
  }
  while (dirent* entry = readdir(d)) {
    std::string_view file = entry->d_name;
    if (file.empty() || file[0] == '.') continue;  // ., .., ..data, ..2026_11_22_...
    if (HasSuffix(file, kClientCaSuffix)) {
      std::optional<std::string> name =
          CertDirStemToName(file.substr(0, file.size() - kClientCaSuffix.size()));
      if (!name.has_value()) continue;
      if (out.size() >= max_entries && !out.contains(*name)) continue;
      out[*name].client_ca_path = absl::StrCat(dir, "/", AbslView(file));
      continue;
    }
    bool is_cert = HasSuffix(file, ".crt");
    bool is_key = HasSuffix(file, ".key");
    if (!is_cert && !is_key) continue;
    std::optional<std::string> name = CertDirStemToName(file.substr(0, file.size() - 4));
    if (!name.has_value()) continue;
    if (out.size() >= max_entries && !out.contains(*name)) {
      *error = absl::StrCat("--tls_cert_dir holds more than ", max_entries, " certificates");
      break;
    }
    DirFiles& files = out[*name];
    (is_cert ? files.cert_path : files.key_path) = absl::StrCat(dir, "/", AbslView(file));
  }
  closedir(d);
  return out;
}

FileStamp StampOrMissing(const std::string& path) {
  absl::StatusOr<FileStamp> stamp = StampFile(path);
  if (stamp.ok()) return *stamp;
  FileStamp missing;
  missing.path = path;
  return missing;
}

std::vector<FileStamp> Fingerprint(const TlsOptions& options,
                                   const std::map<std::string, DirFiles>& dir_files) {
  std::vector<FileStamp> stamps;
  stamps.push_back(StampOrMissing(options.cert_path));
  stamps.push_back(StampOrMissing(options.key_path));
  for (const auto& [name, files] : dir_files) {
    // A missing half is recorded by its expected path so that its arrival is noticed.
    stamps.push_back(StampOrMissing(files.cert_path.empty()
                                        ? absl::StrCat(options.cert_dir, "/", name, ".crt")
                                        : files.cert_path));
    stamps.push_back(StampOrMissing(files.key_path.empty()
                                        ? absl::StrCat(options.cert_dir, "/", name, ".key")
                                        : files.key_path));
    if (!files.client_ca_path.empty()) stamps.push_back(StampOrMissing(files.client_ca_path));
  }
  return stamps;
}

const FileStamp* FindStamp(const std::vector<FileStamp>& stamps, const std::string& path) {
  for (const FileStamp& stamp : stamps) {
    if (stamp.path == path) return &stamp;
  }
  return nullptr;
}

}  // namespace

absl::StatusOr<FileStamp> StampFile(const std::string& path) {
  struct stat st;
  if (stat(path.c_str(), &st) != 0) {
    int error = errno;
    std::string message = absl::StrCat(path, ": ", std::strerror(error));
    if (error == ENOENT) return absl::NotFoundError(message);
    return absl::PermissionDeniedError(message);
  }
  FileStamp stamp;
  stamp.path = path;
  stamp.device = st.st_dev;
  stamp.inode = st.st_ino;
  stamp.mtime_ns = int64_t{st.st_mtim.tv_sec} * 1000000000 + st.st_mtim.tv_nsec;
  stamp.size = st.st_size;
  return stamp;
}

std::optional<std::string> CertDirStemToName(std::string_view stem) {
  std::string name;
  if (stem.substr(0, 2) == "_.") {
    name = "*.";
    stem.remove_prefix(2);
  }
  if (stem.empty() || stem.size() > 253) return std::nullopt;
  for (char c : stem) {
    bool ok = absl::ascii_isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '.';
    if (!ok) return std::nullopt;
  }
  if (stem.front() == '.' || stem.back() == '.' || stem.find("..") != std::string_view::npos) {
    return std::nullopt;
  }
  name += absl::AsciiStrToLower(AbslView(stem));
  return name;
}

const TlsCertEntry& TlsSnapshot::Select(std::string_view server_name) const {
  if (!server_name.empty() && server_name.size() <= 253) {
    std::string name = absl::AsciiStrToLower(AbslView(server_name));
    if (!name.empty() && name.back() == '.') name.pop_back();  // Absolute form.
    if (auto it = by_name.find(name); it != by_name.end()) return *it->second;
    size_t dot = name.find('.');
    if (dot != std::string::npos && dot > 0) {
      std::string wildcard = absl::StrCat("*", name.substr(dot));
      if (auto it = by_name.find(wildcard); it != by_name.end()) return *it->second;
    }
  }
  return *default_cert;
}

absl::StatusOr<std::shared_ptr<const TlsCertEntry>> LoadTlsCertEntry(
    std::string name, const std::string& cert_path, const std::string& key_path,
    const std::string& client_ca_path) {
  ERR_clear_error();
  auto entry = std::make_shared<TlsCertEntry>();
  entry->name = std::move(name);
  if (cert_path.empty()) return absl::InvalidArgumentError("no certificate file");
  if (key_path.empty()) return absl::InvalidArgumentError(absl::StrCat(cert_path, ": no key file"));
  // Stamp before reading: if the file changes during the read, the next check sees it.
  auto cert_stamp = StampFile(cert_path);
  if (!cert_stamp.ok()) return cert_stamp.status();
  auto key_stamp = StampFile(key_path);
  if (!key_stamp.ok()) return key_stamp.status();
  entry->cert_file = *cert_stamp;
  entry->key_file = *key_stamp;

  bssl::UniquePtr<SSL_CTX> ctx(SSL_CTX_new(TLS_method()));
  if (ctx == nullptr) return absl::InternalError("SSL_CTX_new failed");
  if (!SSL_CTX_set_min_proto_version(ctx.get(), TLS1_2_VERSION) ||
      !SSL_CTX_set_max_proto_version(ctx.get(), TLS1_3_VERSION) ||
      !SSL_CTX_set_strict_cipher_list(ctx.get(), kTls12Ciphers)) {
    return absl::InternalError(absl::StrCat("TLS policy rejected: ", SslErrorString()));
  }
  SSL_CTX_set_options(ctx.get(), SSL_OP_CIPHER_SERVER_PREFERENCE | SSL_OP_NO_RENEGOTIATION);
  SSL_CTX_set_session_cache_mode(ctx.get(), SSL_SESS_CACHE_OFF);
  SSL_CTX_set_tlsext_ticket_key_cb(ctx.get(), TicketKeyCallback);
  SSL_CTX_set_tlsext_servername_callback(ctx.get(), ServerNameCallback);
  // Tickets live two rotation periods at most anyway (one as current, one as previous key).
  SSL_CTX_set_timeout(ctx.get(), 24 * 3600);
  SSL_CTX_set_session_psk_dhe_timeout(ctx.get(), 24 * 3600);
  uint8_t sid_ctx[SHA256_DIGEST_LENGTH];
  std::string sid_input = absl::StrCat("posthaste-tls:", entry->name);
  SHA256(reinterpret_cast<const uint8_t*>(sid_input.data()), sid_input.size(), sid_ctx);
  SSL_CTX_set_session_id_context(ctx.get(), sid_ctx, sizeof(sid_ctx));

  if (!SSL_CTX_use_certificate_chain_file(ctx.get(), cert_path.c_str())) {
    return absl::InvalidArgumentError(
        absl::StrCat(cert_path, ": bad certificate chain: ", SslErrorString()));
  }
  if (!SSL_CTX_use_PrivateKey_file(ctx.get(), key_path.c_str(), SSL_FILETYPE_PEM)) {
    uint32_t error = ERR_peek_last_error();
    if (ERR_GET_LIB(error) == ERR_LIB_X509 && ERR_GET_REASON(error) == X509_R_KEY_VALUES_MISMATCH) {
      ERR_clear_error();
      return absl::InvalidArgumentError(
          absl::StrCat(key_path, ": key does not match certificate ", cert_path));
    }
    return absl::InvalidArgumentError(
        absl::StrCat(key_path, ": bad private key: ", SslErrorString()));
  }
  if (!SSL_CTX_check_private_key(ctx.get())) {
    return absl::InvalidArgumentError(
        absl::StrCat(key_path, ": key does not match ", cert_path, ": ", SslErrorString()));
  }
  if (!client_ca_path.empty()) {
    auto ca_stamp = StampFile(client_ca_path);
    if (!ca_stamp.ok()) return ca_stamp.status();
    entry->client_ca_file = *ca_stamp;
    bssl::UniquePtr<STACK_OF(X509_NAME)> ca_names(SSL_load_client_CA_file(client_ca_path.c_str()));
    if (ca_names == nullptr || sk_X509_NAME_num(ca_names.get()) == 0 ||
        !SSL_CTX_load_verify_locations(ctx.get(), client_ca_path.c_str(), nullptr)) {
      return absl::InvalidArgumentError(
          absl::StrCat(client_ca_path, ": bad client CA certificates: ", SslErrorString()));
    }
    SSL_CTX_set_client_CA_list(ctx.get(), ca_names.release());
    SSL_CTX_set_verify(ctx.get(), SSL_VERIFY_PEER, AcceptClientCertificate);
    SSL_CTX_set_verify_depth(ctx.get(), 4);
  }
  char subject[256] = "";
  if (X509* leaf = SSL_CTX_get0_certificate(ctx.get())) {
    X509_NAME_oneline(X509_get_subject_name(leaf), subject, sizeof(subject));
  }
  entry->subject = subject;
  entry->ctx = std::move(ctx);
  return std::shared_ptr<const TlsCertEntry>(std::move(entry));
}

TlsContextSet::TlsContextSet(TlsOptions options) : options_(std::move(options)) {}
TlsContextSet::~TlsContextSet() = default;

absl::StatusOr<std::unique_ptr<TlsContextSet>> TlsContextSet::Create(const TlsOptions& options) {
  if (options.cert_path.empty() || options.key_path.empty()) {
    return absl::InvalidArgumentError("--tls_cert and --tls_key are required for TLS");
  }
  // The default certificate must load; a broken tenant file only loses that tenant.
  auto default_cert = LoadTlsCertEntry("", options.cert_path, options.key_path);
  if (!default_cert.ok()) return default_cert.status();
  std::unique_ptr<TlsContextSet> set(new TlsContextSet(options));
  auto initial = std::make_shared<TlsSnapshot>();
  initial->default_cert = *std::move(default_cert);
  auto ring = std::make_shared<TicketKeyRing>();
  ring->current = NewTicketKey(absl::Now());
  initial->ticket_keys = std::move(ring);
  set->Publish(std::move(initial));
  TlsReloadReport report;
  absl::Status status = set->Reload(&report);
  if (!status.ok()) {
    LogEvent(LogLevel::kWarning, "tls: some tenant certificates did not load",
             {{"skipped", absl::StrCat(report.skipped)}});
  }
  return set;
}

std::shared_ptr<const TlsSnapshot> TlsContextSet::Current() const {
  return current_.load(std::memory_order_acquire);
}

void TlsContextSet::Publish(std::shared_ptr<const TlsSnapshot> snapshot) {
  uint64_t generation = snapshot->generation;
  current_.store(std::move(snapshot), std::memory_order_release);
  generation_.store(generation, std::memory_order_release);
}

TlsShardContexts::TlsShardContexts(const TlsContextSet& set) : set_(set) { RefreshIfStale(); }

void TlsShardContexts::RefreshIfStale() {
  uint64_t generation = set_.generation();
  if (snapshot_ != nullptr && generation == generation_) return;
  // Read the counter first: if a publish races, the next call sees a newer counter and
  // refreshes again, never the reverse.
  snapshot_ = set_.Current();
  generation_ = generation;
}

std::unique_ptr<TlsEngine> TlsShardContexts::NewEngine() {
  RefreshIfStale();
  return std::make_unique<TlsEngine>(snapshot_);
}

const TlsSnapshot& TlsShardContexts::snapshot() {
  RefreshIfStale();
  return *snapshot_;
}

std::unique_ptr<TlsEngine> TlsContextSet::NewEngine() const {
  return std::make_unique<TlsEngine>(Current());
}

absl::Status TlsContextSet::Reload(TlsReloadReport* report_out) {
  absl::MutexLock lock(&control_mu_);
  std::shared_ptr<const TlsSnapshot> old = Current();
  TlsReloadReport report;
  auto next = std::make_shared<TlsSnapshot>();
  next->generation = old->generation + 1;
  next->ticket_keys = old->ticket_keys;

  std::string dir_error;
  std::map<std::string, DirFiles> dir_files =
      ScanCertDir(options_.cert_dir, options_.tenant_certs_max, &dir_error);
  bool dir_unreadable = !options_.cert_dir.empty() && dir_files.empty() && !dir_error.empty();
  if (!dir_error.empty()) {
    report.errors.push_back(dir_error);
    LogEvent(LogLevel::kError, "tls: certificate directory problem", {{"error", dir_error}});
  }
  next->fingerprint = Fingerprint(options_, dir_files);

  // Reuses `old_entry` when its files are unchanged; otherwise loads; a failed load keeps
  // `old_entry` (may be null).
  auto load_or_keep = [&](const std::string& name, const std::string& cert_path,
                          const std::string& key_path, const std::string& client_ca_path,
                          const std::shared_ptr<const TlsCertEntry>& old_entry)
      -> std::shared_ptr<const TlsCertEntry> {
    const FileStamp* cert_stamp = FindStamp(next->fingerprint, cert_path);
    const FileStamp* key_stamp = FindStamp(next->fingerprint, key_path);
    const FileStamp* ca_stamp =
        client_ca_path.empty() ? nullptr : FindStamp(next->fingerprint, client_ca_path);
    const bool same_ca =
        client_ca_path.empty()
            ? old_entry == nullptr || old_entry->client_ca_file.path.empty()
            : old_entry != nullptr && ca_stamp != nullptr && *ca_stamp == old_entry->client_ca_file;
    if (old_entry != nullptr && cert_stamp != nullptr && key_stamp != nullptr &&
        *cert_stamp == old_entry->cert_file && *key_stamp == old_entry->key_file && same_ca) {
      ++report.unchanged;
      return old_entry;
    }
    auto loaded = LoadTlsCertEntry(name, cert_path, key_path, client_ca_path);
    if (loaded.ok()) {
      ++report.loaded;
      LogEvent(LogLevel::kInfo, "tls: certificate loaded",
               {{"name", name.empty() ? "(default)" : name}, {"subject", (*loaded)->subject}});
      return *std::move(loaded);
    }
    std::string why(loaded.status().message());
    report.errors.push_back(absl::StrCat(name.empty() ? "(default)" : name, ": ", why));
    if (old_entry != nullptr) {
      ++report.kept_old;
      LogEvent(LogLevel::kError, "tls: new certificate is broken, keeping the old one",
               {{"name", name.empty() ? "(default)" : name}, {"error", why}});
    } else {
      ++report.skipped;
      LogEvent(LogLevel::kError, "tls: certificate is broken, not served",
               {{"name", name}, {"error", why}});
    }
    return old_entry;
  };

  next->default_cert =
      load_or_keep("", options_.cert_path, options_.key_path, "", old->default_cert);
  for (const auto& [name, files] : dir_files) {
    std::string cert_path = files.cert_path.empty()
                                ? absl::StrCat(options_.cert_dir, "/", name, ".crt")
                                : files.cert_path;
    std::string key_path = files.key_path.empty()
                               ? absl::StrCat(options_.cert_dir, "/", name, ".key")
                               : files.key_path;
    auto old_it = old->by_name.find(name);
    std::shared_ptr<const TlsCertEntry> old_entry =
        old_it != old->by_name.end() ? old_it->second : nullptr;
    std::shared_ptr<const TlsCertEntry> entry =
        load_or_keep(name, cert_path, key_path, files.client_ca_path, old_entry);
    if (entry != nullptr) next->by_name.emplace(name, std::move(entry));
  }
  if (dir_unreadable) {
    // A directory that cannot be read (mid-remount, permissions) is not a reason to drop every
    // tenant: keep the certificates in service until it reads again.
    for (const auto& [name, entry] : old->by_name) next->by_name.emplace(name, entry);
    report.kept_old += old->by_name.size();
  }
  for (const auto& [name, entry] : old->by_name) {
    if (!dir_unreadable && !dir_files.contains(name)) {
      ++report.removed;
      LogEvent(LogLevel::kInfo, "tls: certificate removed", {{"name", name}});
    }
  }
  Publish(std::move(next));
  absl::Status status = absl::OkStatus();
  if (!report.errors.empty()) {
    status = absl::InvalidArgumentError(
        absl::StrCat("tls reload: ", absl::StrJoin(report.errors, "; ")));
  }
  if (report_out != nullptr) *report_out = std::move(report);
  return status;
}

bool TlsContextSet::NeedsReload() const {
  std::shared_ptr<const TlsSnapshot> snapshot = Current();
  std::string dir_error;
  std::vector<FileStamp> now =
      Fingerprint(options_, ScanCertDir(options_.cert_dir, options_.tenant_certs_max, &dir_error));
  return now != snapshot->fingerprint;
}

void TlsContextSet::RotateTicketKeys() {
  absl::MutexLock lock(&control_mu_);
  std::shared_ptr<const TlsSnapshot> old = Current();
  auto ring = std::make_shared<TicketKeyRing>();
  ring->current = NewTicketKey(absl::Now());
  ring->previous = old->ticket_keys->current;
  // The certificate entries are shared, not copied: only the key ring changes.
  auto next = std::make_shared<TlsSnapshot>(*old);
  next->generation = old->generation + 1;
  next->ticket_keys = std::move(ring);
  Publish(std::move(next));
  LogEvent(LogLevel::kInfo, "tls: session ticket keys rotated");
}

bool TlsContextSet::MaybeRotateTicketKeys(absl::Time now) {
  std::shared_ptr<const TlsSnapshot> snapshot = Current();
  if (now - snapshot->ticket_keys->current.created < options_.ticket_key_rotation) return false;
  RotateTicketKeys();
  return true;
}

}  // namespace posthaste
