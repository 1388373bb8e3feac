// The placement directory read from a JSON file (`posthaste route --directory_file=FILE`): a
// static DirectorySource for tests and small installations without etcd. The file is one JSON
// object whose member names are the directory's keys without the prefix and whose values are
// the keys' values (server/placement/directory.h):
//   {"backends/b1": {"ip":"10.0.0.7","pop3":110,"pop3s":995,"lmtp":24,"admin":8080},
//    "tenants/example.com": {"backend":"b1"},
//    "users/boss@example.com": {"backend":"b2","moving_to":"b3"}}
// A key of another kind, a value of the wrong shape, a port out of range or an address that is
// not an IP literal makes the whole file refused, naming the key.
//
// Threading: ParseDirectoryFile is pure. FileDirectory is thread-safe (immutable once loaded).
#ifndef POSTHASTE_SERVER_ROUTE_DIRECTORY_FILE_H_
#define POSTHASTE_SERVER_ROUTE_DIRECTORY_FILE_H_

#include <memory>
#include <mutex>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "server/placement/directory.h"

namespace posthaste::server::route {

inline constexpr size_t kDirectoryFileBytesMax = 64 * 1024 * 1024;

// The snapshot `text` describes (revision 1). InvalidArgument naming the offending key.
absl::StatusOr<placement::DirectorySnapshot> ParseDirectoryFile(std::string_view text);

// A DirectorySource that hands out the snapshot read from a file; never stale. Reload reads
// the file again and, when it parses, swaps in the new snapshot with the next revision.
class FileDirectory final : public placement::DirectorySource {
 public:
  // NotFound when the file cannot be read; InvalidArgument for bad contents.
  static absl::StatusOr<std::unique_ptr<FileDirectory>> Load(const std::string& path);

  std::shared_ptr<const placement::DirectorySnapshot> Current() const override;
  bool stale() const override { return false; }

  // Same errors as Load; on error the current snapshot stays. Any thread.
  absl::Status Reload();

 private:
  FileDirectory(std::string path, std::shared_ptr<const placement::DirectorySnapshot> snapshot)
      : path_(std::move(path)), snapshot_(std::move(snapshot)) {}
  const std::string path_;
  mutable std::mutex mu_;
  std::shared_ptr<const placement::DirectorySnapshot> snapshot_;  // guarded by mu_
};

}  // namespace posthaste::server::route

#endif  // POSTHASTE_SERVER_ROUTE_DIRECTORY_FILE_H_
