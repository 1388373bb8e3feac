// The systemd file descriptor store protocol against a notify socket made here (as systemd's).
#include "server/handoff/systemd_fd_store.h"

#include <fcntl.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <string>
#include <utility>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"

namespace posthaste::server::handoff {
namespace {

class FdStoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    // Not under TEST_TMPDIR: a socket path must fit in sun_path (108 bytes).
    path_ = absl::StrCat("/tmp/posthaste-notify-test-", getpid());
    unlink(path_.c_str());
    // Far above 3 and 4, where the test puts the descriptors systemd would hand over.
    const int low = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    ASSERT_GE(low, 0);
    sock_ = fcntl(low, F_DUPFD_CLOEXEC, 100);
    close(low);
    ASSERT_GE(sock_, 100);
    sockaddr_un address{};
    address.sun_family = AF_UNIX;
    std::strncpy(address.sun_path, path_.c_str(), sizeof(address.sun_path) - 1);
    ASSERT_EQ(bind(sock_, reinterpret_cast<sockaddr*>(&address), sizeof(address)), 0);
    setenv("NOTIFY_SOCKET", path_.c_str(), 1);
  }
  void TearDown() override {
    unsetenv("NOTIFY_SOCKET");
    close(sock_);
    unlink(path_.c_str());
  }

  // One datagram: its text and the descriptor it carried (-1 when none).
  std::string Receive(int* fd) {
    char text[256] = {};
    iovec iov{text, sizeof(text)};
    alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int))] = {};
    msghdr message{};
    message.msg_iov = &iov;
    message.msg_iovlen = 1;
    message.msg_control = control;
    message.msg_controllen = sizeof(control);
    const ssize_t n = recvmsg(sock_, &message, MSG_DONTWAIT);
    *fd = -1;
    if (n < 0) return "";
    for (cmsghdr* h = CMSG_FIRSTHDR(&message); h != nullptr; h = CMSG_NXTHDR(&message, h)) {
      if (h->cmsg_level == SOL_SOCKET && h->cmsg_type == SCM_RIGHTS) {
        std::memcpy(fd, CMSG_DATA(h), sizeof(int));
      }
    }
    return std::string(text, static_cast<size_t>(n));
  }

  std::string path_;
  int sock_ = -1;
};

TEST_F(FdStoreTest, StoredBlobComesBackOnceInTheNextProcess) {
  const std::string blob = std::string(100000, 'x') + "end";
  ASSERT_TRUE(StoreBlob("posthaste-test", blob).ok());
  int stored = -1;
  EXPECT_EQ(Receive(&stored), "FDSTORE=1\nFDNAME=posthaste-test");
  ASSERT_GE(stored, 0);
  EXPECT_EQ(write(stored, "y", 1), -1);  // sealed

  // As systemd starts the next process: two descriptors from 3, the named one second.
  const int high = fcntl(stored, F_DUPFD_CLOEXEC, 200);
  close(stored);
  ASSERT_GE(high, 200);
  const int saved3 = fcntl(3, F_DUPFD_CLOEXEC, 10);
  const int saved4 = fcntl(4, F_DUPFD_CLOEXEC, 10);
  ASSERT_EQ(dup2(high, 3), 3);
  ASSERT_EQ(dup2(high, 4), 4);
  close(high);
  setenv("LISTEN_PID", std::to_string(getpid()).c_str(), 1);
  setenv("LISTEN_FDS", "2", 1);
  setenv("LISTEN_FDNAMES", "other:posthaste-test", 1);
  auto taken = TakeBlob("posthaste-test", 1 << 20);
  ASSERT_TRUE(taken.ok()) << taken.status();
  ASSERT_TRUE(taken->has_value());
  EXPECT_EQ(**taken, blob);
  EXPECT_EQ(std::getenv("LISTEN_FDS"), nullptr);  // cleared for children
  int none = -1;
  EXPECT_EQ(Receive(&none), "FDSTOREREMOVE=1\nFDNAME=posthaste-test");
  // Taken once: nothing the second time.
  auto again = TakeBlob("posthaste-test", 1 << 20);
  ASSERT_TRUE(again.ok());
  EXPECT_FALSE(again->has_value());
  for (auto [saved, fd] : {std::pair{saved3, 3}, std::pair{saved4, 4}}) {
    if (saved >= 0) {
      dup2(saved, fd);
      close(saved);
    }
  }
}

TEST_F(FdStoreTest, AnotherProcessesDescriptorsAreNotTaken) {
  setenv("LISTEN_PID", "1", 1);
  setenv("LISTEN_FDS", "1", 1);
  setenv("LISTEN_FDNAMES", "posthaste-test", 1);
  auto taken = TakeBlob("posthaste-test", 1 << 20);
  ASSERT_TRUE(taken.ok());
  EXPECT_FALSE(taken->has_value());
  unsetenv("LISTEN_PID");
  unsetenv("LISTEN_FDS");
  unsetenv("LISTEN_FDNAMES");
}

TEST(FdStoreNoSystemdTest, WithoutANotifySocketNothingIsStored) {
  unsetenv("NOTIFY_SOCKET");
  EXPECT_FALSE(NotifySocketPresent());
  EXPECT_EQ(StoreBlob("x", "y").code(), absl::StatusCode::kFailedPrecondition);
}

}  // namespace
}  // namespace posthaste::server::handoff
