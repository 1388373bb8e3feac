#include "server/route/directory_file.h"

#include <fstream>

#include "gtest/gtest.h"

namespace posthaste::server::route {
namespace {

TEST(DirectoryFileTest, ReadsEveryKind) {
  auto s = ParseDirectoryFile(R"({
    "backends/b1": {"ip": "127.0.0.1", "pop3": 1110, "pop3s": 1995, "lmtp": 2424, "admin": 8080},
    "backends/b2": {"ip": "::1", "pop3": 110},
    "tenants/One.Example": {"backend": "b1"},
    "users/Boss@one.example": {"backend": "b2", "moving_to": "b1"}
  })");
  ASSERT_TRUE(s.ok()) << s.status();
  ASSERT_EQ(s->backends.size(), 2u);
  EXPECT_EQ(s->backends.at("b1").ip, "127.0.0.1");
  EXPECT_EQ(s->backends.at("b1").pop3_port, 1110);
  EXPECT_EQ(s->backends.at("b1").pop3s_port, 1995);
  EXPECT_EQ(s->backends.at("b1").lmtp_port, 2424);
  EXPECT_EQ(s->backends.at("b1").admin_port, 8080);
  EXPECT_EQ(s->backends.at("b2").lmtp_port, 0);
  EXPECT_EQ(s->tenants.at("one.example").backend, "b1");
  EXPECT_EQ(s->users.at("boss@one.example").moving_to, "b1");
  auto route = s->Resolve("BOSS@one.example");
  ASSERT_TRUE(route.ok());
  EXPECT_TRUE(route->moving);
  EXPECT_EQ(route->backend->name, "b2");
  EXPECT_TRUE(ParseDirectoryFile("{}").ok());
}

TEST(DirectoryFileTest, RefusesBadFilesNamingTheKey) {
  const char* bad[] = {
      "",
      "[]",
      "{",
      R"({"backends/b1": {"ip": "localhost"}})",
      R"({"backends/b1": {"ip": "127.0.0.1", "pop3": 70000}})",
      R"({"backends/b1": {"ip": "127.0.0.1", "pop3": "110"}})",
      R"({"tenants/x.example": {}})",
      R"({"tenants/x.example": {"backend": 1}})",
      R"({"queues/x": {"backend": "b1"}})",
      R"({"tenants/": {"backend": "b1"}})",
      R"({"tenants/x.example": {"backend": "b1"}} trailing)",
      R"({"tenants/x.example": {"backend": "b1"},})",
      R"({"tenants/x.example": "b1"})",
      R"({"tenants/x.example": {"backend": {"nested": 1}}})",
  };
  for (const char* text : bad) {
    auto s = ParseDirectoryFile(text);
    EXPECT_FALSE(s.ok()) << text;
  }
  auto s = ParseDirectoryFile(R"({"backends/b1": {"ip": "localhost"}})");
  EXPECT_NE(s.status().message().find("backends/b1"), absl::string_view::npos);
}

TEST(FileDirectoryTest, ReloadSwapsInTheNextRevisionOrKeepsTheCurrentOne) {
  const std::string path = ::testing::TempDir() + "/directory.json";
  auto write = [&](const char* text) {
    std::ofstream out(path, std::ios::trunc);
    out << text;
  };
  write(R"({"backends/b1": {"ip": "127.0.0.1"}, "tenants/x.example": {"backend": "b1"}})");
  auto directory = FileDirectory::Load(path);
  ASSERT_TRUE(directory.ok()) << directory.status();
  auto first = (*directory)->Current();
  EXPECT_EQ(first->revision, 1);
  write(R"({"backends/b2": {"ip": "127.0.0.2"}, "tenants/x.example": {"backend": "b2"}})");
  ASSERT_TRUE((*directory)->Reload().ok());
  EXPECT_EQ((*directory)->Current()->revision, 2);
  EXPECT_EQ((*directory)->Current()->Resolve("a@x.example")->backend->ip, "127.0.0.2");
  EXPECT_EQ(first->Resolve("a@x.example")->backend->ip, "127.0.0.1");  // old one still valid
  write("{broken");
  EXPECT_FALSE((*directory)->Reload().ok());
  EXPECT_EQ((*directory)->Current()->revision, 2);
  EXPECT_FALSE(FileDirectory::Load(path + ".missing").ok());
}

}  // namespace
}  // namespace posthaste::server::route
