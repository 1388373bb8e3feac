#include "server/placement/placement_admin.h"

#include <sstream>

#include "gtest/gtest.h"
#include "server/placement/directory_codec.h"
#include "server/placement/etcd_client.h"
#include "server/placement/testing/etcd_cluster.h"

namespace posthaste::server::placement {
namespace {

struct CommandRun {
  int status = -1;
  std::string out;
  std::string err;
};

class PlacementAdminTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    auto cluster = testing::EtcdCluster::Start(/*members=*/1);
    ASSERT_TRUE(cluster.ok()) << cluster.status();
    cluster_ = cluster->release();
  }
  static void TearDownTestSuite() {
    delete cluster_;
    cluster_ = nullptr;
  }

  CommandRun Placement(std::vector<std::string> args) {
    args.insert(args.begin(), "--etcd_endpoints=" + cluster_->EndpointsFlag());
    std::ostringstream out, err;
    CommandRun run;
    run.status = RunPlacementCommand(args, out, err);
    run.out = out.str();
    run.err = err.str();
    return run;
  }

  EtcdClient Client() { return EtcdClient(EtcdClientOptions{.endpoints = cluster_->endpoints()}); }

  static testing::EtcdCluster* cluster_;
};

testing::EtcdCluster* PlacementAdminTest::cluster_ = nullptr;

TEST_F(PlacementAdminTest, SetListAndClear) {
  EtcdClient client = Client();
  ASSERT_TRUE(client
                  .Put(BackendKey(kDefaultDirectoryPrefix, "b1"),
                       EncodeBackend({.ip = "127.0.0.1", .pop3_port = 110, .lmtp_port = 24}))
                  .ok());
  CommandRun tenant = Placement({"set-tenant", "Example.TEST", "b1"});
  EXPECT_EQ(tenant.status, 0) << tenant.err;
  EXPECT_EQ(tenant.err, "");  // b1 is registered: no warning
  auto stored = client.Range(TenantKey(kDefaultDirectoryPrefix, "example.test"));
  ASSERT_TRUE(stored.ok());
  ASSERT_EQ(stored->kvs.size(), 1u);
  EXPECT_EQ(DecodePlacement(stored->kvs[0].value)->backend, "b1");

  // A backend that is not registered: written, with a warning.
  CommandRun user = Placement({"set-user", "Ann@example.test", "b9"});
  EXPECT_EQ(user.status, 0);
  EXPECT_NE(user.err.find("warning: backend b9 is not registered"), std::string::npos) << user.err;

  CommandRun list = Placement({"list"});
  EXPECT_EQ(list.status, 0) << list.err;
  EXPECT_NE(list.out.find("backend\tb1\t127.0.0.1\tpop3=110\tpop3s=0\tlmtp=24\tadmin=0\n"),
            std::string::npos)
      << list.out;
  EXPECT_NE(list.out.find("tenant\texample.test\tb1\n"), std::string::npos) << list.out;
  EXPECT_NE(list.out.find("user\tann@example.test\tb9\n"), std::string::npos) << list.out;

  EXPECT_EQ(Placement({"clear-user", "ann@example.test"}).status, 0);
  CommandRun again = Placement({"clear-user", "ann@example.test"});
  EXPECT_EQ(again.status, 1);
  EXPECT_NE(again.err.find("has no override"), std::string::npos);
}

TEST_F(PlacementAdminTest, AMoveInProgressIsNotOverwritten) {
  EtcdClient client = Client();
  const std::string key = TenantKey(kDefaultDirectoryPrefix, "moving.test");
  ASSERT_TRUE(client.Put(key, EncodePlacement({.backend = "b1", .moving_to = "b2"})).ok());
  CommandRun run = Placement({"set-tenant", "moving.test", "b3"});
  EXPECT_EQ(run.status, 1);
  EXPECT_NE(run.err.find("is being moved from b1 to b2"), std::string::npos) << run.err;
  EXPECT_EQ(DecodePlacement(client.Range(key)->kvs[0].value)->backend, "b1");
}

TEST_F(PlacementAdminTest, UsageAndBadNames) {
  EXPECT_EQ(Placement({}).status, 2);
  EXPECT_EQ(Placement({"frob"}).status, 2);
  EXPECT_EQ(Placement({"set-tenant", "a.test"}).status, 2);
  EXPECT_EQ(Placement({"list", "--bogus=1"}).status, 2);
  EXPECT_EQ(Placement({"set-tenant", "a/b.test", "b1"}).status, 1);
  EXPECT_EQ(Placement({"set-user", "no-at.test", "b1"}).status, 1);
  EXPECT_EQ(Placement({"set-tenant", "a.test", "b 1"}).status, 1);
  std::ostringstream out, err;
  EXPECT_EQ(RunPlacementCommand({"list"}, out, err), 2);  // no --etcd_endpoints
  EXPECT_NE(err.str().find("--etcd_endpoints is required"), std::string::npos);
}

TEST_F(PlacementAdminTest, NoEtcdIsAClearFailure) {
  std::ostringstream out, err;
  EXPECT_EQ(RunPlacementCommand({"--etcd_endpoints=http://127.0.0.1:1", "list"}, out, err), 1);
  EXPECT_NE(err.str().find("posthaste: placement: "), std::string::npos);
}

}  // namespace
}  // namespace posthaste::server::placement
