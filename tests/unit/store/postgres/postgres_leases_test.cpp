// Work sharing between replicas in the PostgreSQL store (leases.h): who holds a batch, claims of
// dead replicas' batches, the fence on writes, and the budget's shares. Several stores on one
// schema play the replicas. Needs FLOODGATE_TEST_PG_URL, like postgres_store_test.cpp.

#include <gtest/gtest.h>

#include <chrono>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "pg_test_support.h"
#include "store/leases.h"
#include "store/postgres_store.h"
#include "store_test_support.h"

namespace floodgate::store::testing {
namespace {

using std::chrono::milliseconds;

class LeasesTest : public ::testing::Test {
 protected:
  void SetUp() override {
    FLOODGATE_REQUIRE_PG();
    schema_ = std::make_unique<PgTestSchema>(*pg_test_url());
  }
  /// A replica: a store with a replica id and a short TTL.
  std::unique_ptr<PostgresStore> replica(const std::string& id,
                                         milliseconds ttl = milliseconds(400)) {
    PostgresStore::Options o;
    o.replica_id = id;
    o.lease_ttl = ttl;
    o.connections = 2;
    return std::make_unique<PostgresStore>(schema_->url(), o);
  }
  std::string query(const std::string& sql) { return RawPg(schema_->url()).query(sql); }
  static ItemUpdate launched(const std::string& batch, int64_t index) {
    ItemUpdate u;
    u.batch_id = batch;
    u.index = index;
    u.state = core::ItemState::kLaunched;
    u.attempts = 1;
    u.flow_run_id = "run-" + std::to_string(index);
    return u;
  }

  std::unique_ptr<PgTestSchema> schema_;
};

TEST_F(LeasesTest, TheAcceptingReplicaHoldsABatchAndOnlyItsWritesLand) {
  auto a = replica("a");
  auto b = replica("b");
  a->insert_batch(make_batch("x", 2), make_items(2));
  EXPECT_EQ(query("SELECT owner_id, lease_expires_at > 0 FROM batches"), "a|t");
  // b's write to a's batch is fenced off and counted as skipped.
  b->apply({launched("x", 0)}, {});
  EXPECT_EQ(b->skipped_updates(), 1);
  EXPECT_EQ(query("SELECT state FROM items WHERE idx = 0"), "PENDING");
  a->apply({launched("x", 1)}, {});
  EXPECT_EQ(a->skipped_updates(), 0);
  EXPECT_EQ(query("SELECT state FROM items WHERE idx = 1"), "LAUNCHED");
  const auto owner = b->leases()->owner_of("x");
  ASSERT_TRUE(owner);
  EXPECT_EQ(owner->owner_id, "a");
  EXPECT_FALSE(owner->finished);
  EXPECT_FALSE(b->leases()->owner_of("nope"));
}

TEST_F(LeasesTest, ABatchIsClaimedOnlyOnceItsOwnerStoppedBeatingAndItsLeaseEnded) {
  auto a = replica("a");
  auto b = replica("b");
  a->insert_batch(make_batch("x", 1), make_items(1));
  a->leases()->heartbeat("http://a", 1, 1.0);
  b->leases()->heartbeat("http://b", 0, 1.0);
  EXPECT_TRUE(b->leases()->claim(10).empty());  // a lives and holds it
  const auto owner = b->leases()->owner_of("x");
  EXPECT_TRUE(owner->alive);
  EXPECT_EQ(owner->url, "http://a");
  EXPECT_FALSE(b->leases()->take_over("x"));

  // a goes silent: neither heartbeat nor renewal for longer than the TTL.
  std::this_thread::sleep_for(milliseconds(600));
  b->leases()->heartbeat("http://b", 0, 1.0);
  const auto claimed = b->leases()->claim(10);
  ASSERT_EQ(claimed.size(), 1u);
  EXPECT_EQ(claimed[0].id, "x");
  EXPECT_EQ(claimed[0].total, 1);
  EXPECT_TRUE(b->leases()->claim(10).empty());  // not twice
  // a, waking up, learns it lost the batch, and its writes no longer land.
  EXPECT_EQ(a->leases()->taken_from_us({"x"}), std::vector<std::string>{"x"});
  EXPECT_TRUE(a->leases()->renew().empty());
  a->apply({launched("x", 0)}, {});
  EXPECT_EQ(a->skipped_updates(), 1);
  b->apply({launched("x", 0)}, {});
  EXPECT_EQ(query("SELECT state FROM items"), "LAUNCHED");
  EXPECT_EQ(b->leases()->renew(), std::vector<std::string>{"x"});
}

TEST_F(LeasesTest, RenewingKeepsABatchFromBeingClaimed) {
  auto a = replica("a");
  auto b = replica("b");
  a->insert_batch(make_batch("x", 1), make_items(1));
  for (int i = 0; i < 6; ++i) {
    std::this_thread::sleep_for(milliseconds(150));
    a->leases()->heartbeat("http://a", 1, 1.0);
    EXPECT_EQ(a->leases()->renew(), std::vector<std::string>{"x"});
    EXPECT_TRUE(b->leases()->claim(10).empty()) << "round " << i;
  }
}

TEST_F(LeasesTest, GivingLeasesUpLetsTheOthersClaimAtOnce) {
  auto a = replica("a", milliseconds(60000));
  auto b = replica("b", milliseconds(60000));
  a->insert_batch(make_batch("x", 1), make_items(1));
  a->leases()->heartbeat("http://a", 1, 1.0);
  a->leases()->release_all();
  EXPECT_EQ(query("SELECT count(*) FROM replicas"), "0");
  ASSERT_EQ(b->leases()->claim(10).size(), 1u);
  EXPECT_EQ(query("SELECT owner_id FROM batches"), "b");
}

TEST_F(LeasesTest, FinishedBatchesAreNeverClaimedButCanBeTakenOverForARedrive) {
  auto a = replica("a");
  auto b = replica("b");
  a->insert_batch(make_batch("x", 1), make_items(1));
  BatchUpdate done;
  done.id = "x";
  done.state = core::BatchState::kCompleted;
  done.version = 3;
  a->apply({}, {done});
  std::this_thread::sleep_for(milliseconds(600));
  EXPECT_TRUE(b->leases()->claim(10).empty());
  EXPECT_TRUE(b->leases()->owner_of("x")->finished);
  EXPECT_TRUE(b->leases()->take_over("x"));
  EXPECT_EQ(query("SELECT owner_id, state FROM batches"), "b|COMPLETED");
}

TEST_F(LeasesTest, AnEndedBatchIsClaimedWhileItStillFollowsChildrenAndNoLonger) {
  auto a = replica("a");
  auto b = replica("b");
  a->insert_batch(make_batch("x", 2), make_items(2));
  BatchUpdate failed;
  failed.id = "x";
  failed.state = core::BatchState::kFailed;
  failed.version = 3;
  failed.followed = true;  // ended early, one child still running
  a->apply({}, {failed});
  EXPECT_EQ(a->leases()->renew(), std::vector<std::string>{"x"});  // still held, still renewed
  std::this_thread::sleep_for(milliseconds(600));
  const auto claimed = b->leases()->claim(10);
  ASSERT_EQ(claimed.size(), 1u);
  EXPECT_EQ(claimed[0].state, core::BatchState::kFailed);
  EXPECT_EQ(query("SELECT owner_id, followed FROM batches"), "b|t");
  // Its last child ended: the new owner writes so, and nobody needs to hold it any more.
  failed.version = 4;
  failed.followed = false;
  b->apply({}, {failed});
  EXPECT_TRUE(b->leases()->renew().empty());
  std::this_thread::sleep_for(milliseconds(600));
  auto c = replica("c");
  EXPECT_TRUE(c->leases()->claim(10).empty());
}

TEST_F(LeasesTest, ReplicasClaimingAtOnceNeverTakeTheSameBatch) {
  {
    PostgresStore unowned(schema_->url(), PostgresStore::Options{});  // nobody holds these
    for (int i = 0; i < 24; ++i) unowned.insert_batch(make_batch("b" + std::to_string(i)), {});
  }
  std::mutex mutex;
  std::multiset<std::string> taken;
  std::vector<std::thread> threads;
  for (int r = 0; r < 4; ++r) {
    threads.emplace_back([&, r] {
      auto store = replica("r" + std::to_string(r), milliseconds(60000));
      for (int round = 0; round < 10; ++round) {
        for (const auto& rec : store->leases()->claim(2)) {
          std::lock_guard lock(mutex);
          taken.insert(rec.id);
        }
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(taken.size(), 24u);
  EXPECT_EQ(std::set<std::string>(taken.begin(), taken.end()).size(), 24u);
}

TEST_F(LeasesTest, SharesFollowDemandAndNeverSumAboveOne) {
  auto a = replica("a", milliseconds(60000));
  auto b = replica("b", milliseconds(60000));
  auto c = replica("c", milliseconds(60000));
  auto sum = [&] { return std::stod(query("SELECT coalesce(sum(share), 0) FROM replicas")); };
  EXPECT_DOUBLE_EQ(a->leases()->heartbeat("", 1, 1.0).share, 1.0);
  // b's fair half waits until a has let it go.
  EXPECT_DOUBLE_EQ(b->leases()->heartbeat("", 1, 1.0).share, 0.0);
  EXPECT_LE(sum(), 1.0 + 1e-9);
  EXPECT_DOUBLE_EQ(a->leases()->heartbeat("", 1, 1.0).share, 0.5);
  EXPECT_DOUBLE_EQ(b->leases()->heartbeat("", 1, 1.0).share, 0.5);
  EXPECT_LE(sum(), 1.0 + 1e-9);
  // c holds two batches: half of the budget, once a and b have given a quarter each.
  EXPECT_DOUBLE_EQ(c->leases()->heartbeat("", 2, 1.0).share, 0.0);
  EXPECT_DOUBLE_EQ(a->leases()->heartbeat("", 1, 1.0).share, 0.25);
  EXPECT_LE(sum(), 1.0 + 1e-9);
  EXPECT_DOUBLE_EQ(c->leases()->heartbeat("", 2, 1.0).share, 0.25);
  EXPECT_DOUBLE_EQ(b->leases()->heartbeat("", 1, 1.0).share, 0.25);
  EXPECT_DOUBLE_EQ(c->leases()->heartbeat("", 2, 1.0).share, 0.5);
  EXPECT_NEAR(sum(), 1.0, 1e-9);
  // A replica with nothing to do takes nothing while others have work.
  EXPECT_DOUBLE_EQ(a->leases()->heartbeat("", 0, 1.0).share, 0.0);
}

TEST_F(LeasesTest, IdleReplicasKeepEqualPartsSoTheFirstBatchStartsAtOnce) {
  auto a = replica("a", milliseconds(60000));
  auto b = replica("b", milliseconds(60000));
  EXPECT_DOUBLE_EQ(a->leases()->heartbeat("", 0, 1.0).share, 1.0);  // alone
  EXPECT_DOUBLE_EQ(b->leases()->heartbeat("", 0, 1.0).share, 0.0);  // a has not let go yet
  EXPECT_DOUBLE_EQ(a->leases()->heartbeat("", 0, 1.0).share, 0.5);
  EXPECT_DOUBLE_EQ(b->leases()->heartbeat("", 0, 1.0).share, 0.5);
  // b gets a batch: it has its half at once, and all once a has let go.
  EXPECT_DOUBLE_EQ(b->leases()->heartbeat("", 1, 1.0).share, 0.5);
  const Heartbeat a_beat = a->leases()->heartbeat("", 0, 1.0);
  EXPECT_DOUBLE_EQ(a_beat.share, 0.0);
  EXPECT_FALSE(a_beat.settled);  // b still waits for its whole part: beat quickly
  const Heartbeat b_beat = b->leases()->heartbeat("", 1, 1.0);
  EXPECT_DOUBLE_EQ(b_beat.share, 1.0);
  EXPECT_TRUE(b_beat.settled);
}

TEST_F(LeasesTest, TheMostCautiousReplicasLimitIsEveryones) {
  auto a = replica("a", milliseconds(60000));
  auto b = replica("b", milliseconds(60000));
  a->leases()->heartbeat("http://a", 1, 0.25);
  const Heartbeat beat = b->leases()->heartbeat("http://b", 1, 1.0);
  EXPECT_DOUBLE_EQ(beat.limit_ratio, 0.25);
  ASSERT_EQ(beat.live.size(), 2u);
  EXPECT_EQ(beat.live[0].id, "a");
  EXPECT_EQ(beat.live[0].url, "http://a");
}

TEST_F(LeasesTest, ADeadReplicasShareIsFreedAfterTheTtl) {
  auto a = replica("a");
  auto b = replica("b");
  EXPECT_DOUBLE_EQ(a->leases()->heartbeat("", 1, 1.0).share, 1.0);
  EXPECT_DOUBLE_EQ(b->leases()->heartbeat("", 1, 1.0).share, 0.0);
  std::this_thread::sleep_for(milliseconds(600));  // a stops beating
  const Heartbeat beat = b->leases()->heartbeat("", 1, 1.0);
  EXPECT_DOUBLE_EQ(beat.share, 1.0);
  EXPECT_EQ(beat.live.size(), 1u);
}

}  // namespace
}  // namespace floodgate::store::testing
