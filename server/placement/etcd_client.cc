#include "server/placement/etcd_client.h"

#include <sys/eventfd.h>
#include <unistd.h>

#include "absl/status/status.h"
#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "base/strings.h"

namespace posthaste::server::placement {
namespace {

std::string B64(std::string_view bytes) { return JsonQuote(absl::Base64Escape(AbslView(bytes))); }

absl::Status Garbled(std::string_view what) {
  return absl::DataLossError(absl::StrCat("etcd: unexpected response: ", AbslView(what)));
}

// A base64 member (absent: empty).
absl::StatusOr<std::string> BytesOf(const JsonValue& object, std::string_view name) {
  const JsonValue* v = object.Find(name);
  if (v == nullptr) return std::string();
  std::string out;
  if (!v->is_string() || !absl::Base64Unescape(AbslView(v->text()), &out)) {
    return Garbled(absl::StrCat("member ", AbslView(name), " is not base64"));
  }
  return out;
}

// An int64 member (absent: 0, as protobuf's JSON leaves out zero values).
absl::StatusOr<int64_t> IntOf(const JsonValue& object, std::string_view name) {
  const JsonValue* v = object.Find(name);
  if (v == nullptr) return 0;
  const std::optional<int64_t> n = v->AsInt64();
  if (!n.has_value()) return Garbled(absl::StrCat("member ", AbslView(name), " is not an int64"));
  return *n;
}

bool BoolOf(const JsonValue& object, std::string_view name) {
  const JsonValue* v = object.Find(name);
  return v != nullptr && v->boolean();
}

absl::StatusOr<int64_t> HeaderRevision(const JsonValue& response) {
  const JsonValue* header = response.Find("header");
  if (header == nullptr) return Garbled("no header");
  return IntOf(*header, "revision");
}

absl::StatusOr<EtcdKeyValue> KeyValueOf(const JsonValue& kv) {
  if (!kv.is_object()) return Garbled("a key-value that is not an object");
  EtcdKeyValue out;
  auto key = BytesOf(kv, "key");
  auto value = BytesOf(kv, "value");
  auto create = IntOf(kv, "create_revision");
  auto mod = IntOf(kv, "mod_revision");
  auto version = IntOf(kv, "version");
  auto lease = IntOf(kv, "lease");
  for (const absl::Status& s : {key.status(), value.status(), create.status(), mod.status(),
                                version.status(), lease.status()}) {
    if (!s.ok()) return s;
  }
  out.key = *std::move(key);
  out.value = *std::move(value);
  out.create_revision = *create;
  out.mod_revision = *mod;
  out.version = *version;
  out.lease = *lease;
  return out;
}

std::string OpJson(const EtcdOp& op) {
  if (op.kind == EtcdOp::Kind::kDelete) {
    return absl::StrCat("{\"request_delete_range\":{\"key\":", B64(op.key), "}}");
  }
  return absl::StrCat("{\"request_put\":{\"key\":", B64(op.key), ",\"value\":", B64(op.value),
                      ",\"lease\":\"", op.lease, "\"}}");
}

std::string OpsJson(const std::vector<EtcdOp>& ops) {
  std::string out = "[";
  for (size_t i = 0; i < ops.size(); ++i) absl::StrAppend(&out, i ? "," : "", OpJson(ops[i]));
  return out + "]";
}

std::string CompareJson(const EtcdCompare& c) {
  if (c.target == EtcdCompare::Target::kValue) {
    return absl::StrCat("{\"key\":", B64(c.key),
                        ",\"target\":\"VALUE\",\"result\":\"EQUAL\","
                        "\"value\":",
                        B64(c.value), "}");
  }
  return absl::StrCat("{\"key\":", B64(c.key),
                      ",\"target\":\"MOD\",\"result\":\"EQUAL\","
                      "\"mod_revision\":\"",
                      c.mod_revision, "\"}");
}

// The gateway's error body: {"error":"...","code":N,"message":"..."}, N a gRPC code (the same
// numbers as absl::StatusCode).
absl::Status ErrorOf(int http_status, const std::string& body) {
  auto parsed = ParseJson(body, {.bytes_max = 64 * 1024});
  int code = 0;
  std::string message = absl::StrCat("HTTP ", http_status);
  if (parsed.ok() && parsed->is_object()) {
    if (const JsonValue* c = parsed->Find("code"); c != nullptr && c->AsInt64().has_value()) {
      code = static_cast<int>(*c->AsInt64());
    }
    if (const JsonValue* m = parsed->Find("message"); m != nullptr && m->is_string()) {
      message = std::string(m->text());
    } else if (const JsonValue* e = parsed->Find("error"); e != nullptr && e->is_string()) {
      message = std::string(e->text());
    }
  }
  if (code <= 0 || code > 16) {
    code = http_status >= 500 ? static_cast<int>(absl::StatusCode::kUnavailable)
                              : static_cast<int>(absl::StatusCode::kUnknown);
  }
  return absl::Status(static_cast<absl::StatusCode>(code), absl::StrCat("etcd: ", message));
}

// Worth trying another member: this one has no leader, timed out, or is going away.
bool MemberTrouble(const absl::Status& s) {
  return absl::IsUnavailable(s) || absl::IsDeadlineExceeded(s);
}

}  // namespace

absl::StatusOr<std::vector<HttpEndpoint>> ParseEtcdEndpoints(std::string_view text) {
  std::vector<HttpEndpoint> out;
  for (absl::string_view part : absl::StrSplit(AbslView(text), ',', absl::SkipEmpty())) {
    auto endpoint = ParseHttpEndpoint(StdView(part));
    if (!endpoint.ok()) return endpoint.status();
    out.push_back(*std::move(endpoint));
  }
  if (out.empty()) return absl::InvalidArgumentError("no etcd endpoint given");
  return out;
}

std::string PrefixRangeEnd(std::string_view prefix) {
  std::string end(prefix);
  while (!end.empty()) {
    if (static_cast<unsigned char>(end.back()) < 0xff) {
      end.back() = static_cast<char>(static_cast<unsigned char>(end.back()) + 1);
      return end;
    }
    end.pop_back();
  }
  return std::string(1, '\0');  // every key
}

EtcdClient::EtcdClient(EtcdClientOptions options)
    : options_(std::move(options)), cancel_fd_(eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)) {}

EtcdClient::~EtcdClient() {
  if (cancel_fd_ >= 0) close(cancel_fd_);
}

void EtcdClient::Cancel() {
  const uint64_t one = 1;
  [[maybe_unused]] ssize_t n = write(cancel_fd_, &one, sizeof(one));
}

const HttpEndpoint& EtcdClient::current_endpoint() const {
  return options_.endpoints[current_.load() % options_.endpoints.size()];
}

void EtcdClient::RotateEndpoint() {
  current_.store((current_.load() + 1) % options_.endpoints.size());
}

absl::StatusOr<JsonValue> EtcdClient::Call(std::string_view path, const std::string& json_body,
                                           bool retry_after_send) {
  if (options_.endpoints.empty()) return absl::FailedPreconditionError("no etcd endpoints");
  const size_t n = options_.endpoints.size();
  const size_t first = current_.load() % n;
  absl::Status last = absl::UnavailableError("etcd: no member answered");
  for (size_t attempt = 0; attempt < n; ++attempt) {
    const size_t index = (first + attempt) % n;
    const HttpEndpoint& endpoint = options_.endpoints[index];
    const absl::Time deadline = absl::Now() + options_.request_timeout;
    auto conn = HttpConnection::Connect(endpoint, deadline, cancel_fd_);
    if (!conn.ok()) {
      if (absl::IsCancelled(conn.status())) return conn.status();
      last = conn.status();
      continue;
    }
    HttpResponseDecoder decoder({.body_bytes_max = options_.response_bytes_max});
    std::string body;
    absl::Status io = (*conn)->SendPost(path, json_body, deadline);
    while (io.ok() && !decoder.done()) io = (*conn)->ReadSome(decoder, &body, deadline);
    if (!io.ok()) {
      if (absl::IsCancelled(io)) return io;
      last = absl::Status(io.code(), absl::StrCat(endpoint.ToString(), ": ", io.message()));
      if (!retry_after_send) {
        current_.store((index + 1) % n);
        return absl::UnavailableError(
            absl::StrCat("etcd: outcome unknown (the request was sent): ", io.message()));
      }
      continue;
    }
    if (decoder.status_code() != 200) {
      absl::Status s = ErrorOf(decoder.status_code(), body);
      if (MemberTrouble(s) && retry_after_send) {
        last = s;
        continue;
      }
      if (MemberTrouble(s)) current_.store((index + 1) % n);
      return s;
    }
    current_.store(index);
    auto parsed = ParseJson(
        body,
        {.bytes_max = options_.response_bytes_max, .depth_max = 16, .values_max = 16'000'000});
    if (!parsed.ok()) return Garbled(StdView(parsed.status().message()));
    if (!parsed->is_object()) return Garbled("not an object");
    return parsed;
  }
  // The next call starts past the member that failed first.
  current_.store((first + 1) % n);
  return absl::UnavailableError(absl::StrCat("etcd: no member answered; last: ", last.message()));
}

absl::StatusOr<EtcdRangeResult> EtcdClient::Range(std::string_view key,
                                                  const EtcdRangeOptions& options) {
  std::string body = absl::StrCat("{\"key\":", B64(key));
  if (!options.range_end.empty()) absl::StrAppend(&body, ",\"range_end\":", B64(options.range_end));
  if (options.serializable) absl::StrAppend(&body, ",\"serializable\":true");
  if (options.limit > 0) absl::StrAppend(&body, ",\"limit\":\"", options.limit, "\"");
  if (options.count_only) absl::StrAppend(&body, ",\"count_only\":true");
  if (options.keys_only) absl::StrAppend(&body, ",\"keys_only\":true");
  if (options.newest_first) {
    absl::StrAppend(&body, ",\"sort_order\":\"DESCEND\",\"sort_target\":\"MOD\"");
  }
  if (options.min_mod_revision > 0) {
    absl::StrAppend(&body, ",\"min_mod_revision\":\"", options.min_mod_revision, "\"");
  }
  body += "}";
  auto response = Call("/v3/kv/range", body, /*retry_after_send=*/true);
  if (!response.ok()) return response.status();
  EtcdRangeResult result;
  auto revision = HeaderRevision(*response);
  if (!revision.ok()) return revision.status();
  result.revision = *revision;
  auto count = IntOf(*response, "count");
  if (!count.ok()) return count.status();
  result.count = *count;
  result.more = BoolOf(*response, "more");
  if (const JsonValue* kvs = response->Find("kvs"); kvs != nullptr) {
    if (!kvs->is_array()) return Garbled("kvs is not an array");
    result.kvs.reserve(kvs->elements().size());
    for (const JsonValue& kv : kvs->elements()) {
      auto parsed = KeyValueOf(kv);
      if (!parsed.ok()) return parsed.status();
      result.kvs.push_back(*std::move(parsed));
    }
  }
  return result;
}

absl::StatusOr<int64_t> EtcdClient::Put(std::string_view key, std::string_view value,
                                        int64_t lease) {
  const std::string body =
      absl::StrCat("{\"key\":", B64(key), ",\"value\":", B64(value), ",\"lease\":\"", lease, "\"}");
  // A put of the same value twice leaves the same state: it may be retried.
  auto response = Call("/v3/kv/put", body, /*retry_after_send=*/true);
  if (!response.ok()) return response.status();
  return HeaderRevision(*response);
}

absl::StatusOr<int64_t> EtcdClient::Delete(std::string_view key, std::string_view range_end) {
  std::string body = absl::StrCat("{\"key\":", B64(key));
  if (!range_end.empty()) absl::StrAppend(&body, ",\"range_end\":", B64(range_end));
  body += "}";
  auto response = Call("/v3/kv/deleterange", body, /*retry_after_send=*/true);
  if (!response.ok()) return response.status();
  return IntOf(*response, "deleted");
}

absl::StatusOr<EtcdTxnResult> EtcdClient::Txn(const std::vector<EtcdCompare>& compares,
                                              const std::vector<EtcdOp>& success,
                                              const std::vector<EtcdOp>& failure) {
  std::string body = "{\"compare\":[";
  for (size_t i = 0; i < compares.size(); ++i) {
    absl::StrAppend(&body, i ? "," : "", CompareJson(compares[i]));
  }
  absl::StrAppend(&body, "],\"success\":", OpsJson(success), ",\"failure\":", OpsJson(failure),
                  "}");
  auto response = Call("/v3/kv/txn", body, /*retry_after_send=*/false);
  if (!response.ok()) return response.status();
  EtcdTxnResult result;
  result.succeeded = BoolOf(*response, "succeeded");
  auto revision = HeaderRevision(*response);
  if (!revision.ok()) return revision.status();
  result.revision = *revision;
  return result;
}

absl::StatusOr<bool> EtcdClient::CompareAndSwap(std::string_view key, int64_t expected_mod_revision,
                                                const EtcdOp& op, int64_t* revision) {
  auto result = Txn({EtcdCompare::ModRevisionIs(std::string(key), expected_mod_revision)}, {op});
  if (!result.ok()) return result.status();
  if (revision != nullptr) *revision = result->revision;
  return result->succeeded;
}

absl::StatusOr<int64_t> EtcdClient::LeaseGrant(int64_t ttl_s) {
  auto response =
      Call("/v3/lease/grant", absl::StrCat("{\"TTL\":\"", ttl_s, "\"}"), /*retry_after_send=*/true);
  if (!response.ok()) return response.status();
  if (const JsonValue* error = response->Find("error");
      error != nullptr && error->is_string() && !error->text().empty()) {
    return absl::UnavailableError(absl::StrCat("etcd: lease grant: ", AbslView(error->text())));
  }
  auto id = IntOf(*response, "ID");
  if (!id.ok()) return id.status();
  if (*id == 0) return Garbled("lease grant without an ID");
  return *id;
}

absl::StatusOr<int64_t> EtcdClient::LeaseKeepAlive(int64_t lease) {
  // A stream on the gRPC side: one request in, one {"result":...} out, then the stream ends.
  auto response = Call("/v3/lease/keepalive", absl::StrCat("{\"ID\":\"", lease, "\"}"),
                       /*retry_after_send=*/true);
  if (!response.ok()) return response.status();
  const JsonValue* result = response->Find("result");
  if (result == nullptr) {
    if (const JsonValue* error = response->Find("error"); error != nullptr) {
      auto code = IntOf(*error, "grpc_code");
      const JsonValue* message = error->Find("message");
      return absl::Status(code.ok() && *code > 0 && *code <= 16
                              ? static_cast<absl::StatusCode>(*code)
                              : absl::StatusCode::kUnavailable,
                          absl::StrCat("etcd: lease keepalive: ",
                                       message != nullptr ? AbslView(message->text()) : ""));
    }
    return Garbled("lease keepalive without a result");
  }
  auto ttl = IntOf(*result, "TTL");
  if (!ttl.ok()) return ttl.status();
  if (*ttl <= 0) return absl::NotFoundError(absl::StrCat("etcd: lease ", lease, " expired"));
  return *ttl;
}

absl::Status EtcdClient::LeaseRevoke(int64_t lease) {
  auto response = Call("/v3/lease/revoke", absl::StrCat("{\"ID\":\"", lease, "\"}"),
                       /*retry_after_send=*/true);
  return response.status();
}

absl::StatusOr<std::unique_ptr<EtcdWatch>> EtcdClient::Watch(std::string_view key,
                                                             std::string_view range_end,
                                                             int64_t start_revision) {
  std::string body = absl::StrCat("{\"create_request\":{\"key\":", B64(key));
  if (!range_end.empty()) absl::StrAppend(&body, ",\"range_end\":", B64(range_end));
  if (start_revision > 0) absl::StrAppend(&body, ",\"start_revision\":\"", start_revision, "\"");
  body += "}}";
  const size_t n = options_.endpoints.size();
  const size_t first = current_.load() % n;
  absl::Status last = absl::UnavailableError("etcd: no member accepted the watch");
  for (size_t attempt = 0; attempt < n; ++attempt) {
    const size_t index = (first + attempt) % n;
    const HttpEndpoint& endpoint = options_.endpoints[index];
    const absl::Time deadline = absl::Now() + options_.request_timeout;
    auto conn = HttpConnection::Connect(endpoint, deadline, cancel_fd_);
    absl::Status s = conn.status();
    if (s.ok()) s = (*conn)->SendPost("/v3/watch", body, deadline);
    if (!s.ok()) {
      if (absl::IsCancelled(s)) return s;
      last = s;
      continue;
    }
    std::unique_ptr<EtcdWatch> watch(
        new EtcdWatch(*std::move(conn), endpoint, options_.watch_message_bytes_max));
    while (s.ok() && !watch->decoder_.head_done()) {
      s = watch->conn_->ReadSome(watch->decoder_, &watch->buffer_, deadline);
    }
    if (s.ok() && watch->decoder_.status_code() != 200) {
      std::string error_body = watch->buffer_;
      while (s.ok() && !watch->decoder_.done()) {
        s = watch->conn_->ReadSome(watch->decoder_, &error_body, deadline);
      }
      s = ErrorOf(watch->decoder_.status_code(), error_body);
    }
    if (!s.ok()) {
      if (absl::IsCancelled(s)) return s;
      last = s;
      continue;
    }
    current_.store(index);
    return watch;
  }
  current_.store((first + 1) % n);
  return absl::UnavailableError(
      absl::StrCat("etcd: watch: no member accepted; last: ", last.message()));
}

absl::StatusOr<EtcdWatchResponse> EtcdWatch::Next(absl::Time deadline) {
  for (;;) {
    // The gateway ends each message with a newline: parse only once one (or a closing brace)
    // has arrived, so a large message arriving in many reads is not parsed again each time.
    const bool worth_parsing = buffer_.find('\n', scanned_) != std::string::npos ||
                               (!buffer_.empty() && buffer_.back() == '}');
    if (!worth_parsing) {
      scanned_ = buffer_.size();
      if (decoder_.done()) return absl::UnavailableError("etcd: watch stream ended");
      if (absl::Status s = conn_->ReadSome(decoder_, &buffer_, deadline); !s.ok()) return s;
      continue;
    }
    size_t consumed = 0;
    auto message = ParseJsonPrefix(
        buffer_, &consumed,
        {.bytes_max = message_bytes_max_, .depth_max = 16, .values_max = 4'000'000});
    scanned_ = buffer_.size();
    if (message.ok()) {
      buffer_.erase(0, consumed);
      scanned_ = 0;
      if (!message->is_object()) return Garbled("watch message is not an object");
      if (const JsonValue* error = message->Find("error"); error != nullptr) {
        const JsonValue* text = error->Find("message");
        return absl::UnavailableError(absl::StrCat("etcd: watch stream error: ",
                                                   text != nullptr ? AbslView(text->text()) : ""));
      }
      const JsonValue* result = message->Find("result");
      if (result == nullptr || !result->is_object()) return Garbled("watch message without result");
      EtcdWatchResponse response;
      auto revision = HeaderRevision(*result);
      auto compact = IntOf(*result, "compact_revision");
      if (!revision.ok()) return revision.status();
      if (!compact.ok()) return compact.status();
      response.revision = *revision;
      response.compact_revision = *compact;
      response.created = BoolOf(*result, "created");
      response.canceled = BoolOf(*result, "canceled");
      if (const JsonValue* reason = result->Find("cancel_reason"); reason != nullptr) {
        response.cancel_reason = std::string(reason->text());
      }
      if (const JsonValue* events = result->Find("events"); events != nullptr) {
        if (!events->is_array()) return Garbled("events is not an array");
        for (const JsonValue& e : events->elements()) {
          const JsonValue* kv = e.Find("kv");
          if (kv == nullptr) return Garbled("event without kv");
          auto parsed = KeyValueOf(*kv);
          if (!parsed.ok()) return parsed.status();
          const JsonValue* type = e.Find("type");
          response.events.push_back(
              {.is_delete = type != nullptr && type->text() == "DELETE", .kv = *std::move(parsed)});
        }
      }
      return response;
    }
    if (!absl::IsUnavailable(message.status())) return message.status();
    if (decoder_.done()) return absl::UnavailableError("etcd: watch stream ended");
    if (absl::Status s = conn_->ReadSome(decoder_, &buffer_, deadline); !s.ok()) return s;
  }
}

}  // namespace posthaste::server::placement
