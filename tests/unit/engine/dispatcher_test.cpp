// The dispatcher alone, on simulated time: the order of its gates, the retry heap, and that
// each answer is recorded once and handed to the request's owner.

#include "engine/dispatcher.h"

#include <gtest/gtest.h>

#include <chrono>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "core/clock.h"
#include "core/launch_scheduler.h"
#include "core/random.h"
#include "core/timer_queue.h"
#include "engine_test_support.h"
#include "metrics/metrics.h"
#include "prefect/prefect_api.h"

namespace floodgate::engine {
namespace {

using namespace std::chrono_literals;
using testing::answer;
using testing::FakePrefect;

// Asks for GET /x/<n> and writes down each answer's path and verdict.
class Owner final : public RequestOwner {
 public:
  std::shared_ptr<Request> request(int n) {
    auto r = std::make_shared<Request>(Request{CancelChild{0, std::to_string(n), ""}, this});
    return r;
  }
  std::optional<prefect::HttpRequest> build(Request& r) override {
    prefect::HttpRequest http;
    http.method = "GET";
    http.path = "/x/" + r.as<CancelChild>().flow_run_id;
    return http;
  }
  bool resend_stale(Request& r) override {
    stale.push_back(r.as<CancelChild>().flow_run_id);
    return true;
  }
  void on_answer(Request& r, const prefect::HttpResponse& response,
                 const prefect::Classification&) override {
    answers.push_back(r.as<CancelChild>().flow_run_id + ":" + std::to_string(response.status));
  }
  std::vector<std::string> answers;
  std::vector<std::string> stale;
};

// Hands due retries back, and makes one launch request per grant.
class Source final : public LaunchSource {
 public:
  explicit Source(Owner& owner) : owner_(owner) {}
  int max_items() const override { return 1; }
  bool retry_wanted(uint64_t, int64_t index) const override { return index != unwanted; }
  void retry_ready(uint64_t, int64_t index) override { ready.push_back(index); }
  std::optional<Launch> launch(const core::LaunchScheduler::Grant& grant) override {
    grants.push_back(grant.batch);
    auto r = owner_.request(100 + static_cast<int>(grants.size()));
    auto http = owner_.build(*r);
    return Launch{r, *http, true};
  }
  int64_t unwanted = -1;
  std::vector<int64_t> ready;
  std::vector<uint64_t> grants;

 private:
  Owner& owner_;
};

class DispatcherTest : public ::testing::Test {
 protected:
  void make(DispatchOptions o = defaults()) {
    dispatcher = std::make_unique<Dispatcher>(clock, wall, random, timers, o, scheduler, prefect,
                                              api, metrics);
    dispatcher->set_launch_source(&source);
  }
  static DispatchOptions defaults() {
    DispatchOptions o;
    o.adaptive = false;
    o.max_in_flight = 4;
    return o;
  }
  std::vector<std::string> paths() const {
    std::vector<std::string> out;
    for (const auto& r : prefect.requests) out.push_back(r.path);
    return out;
  }

  core::SimulatedClock clock;
  core::SimulatedWallClock wall{clock};
  core::FixedRandom random{0.5};
  core::ManualTimerQueue timers{clock};
  core::LaunchScheduler scheduler{clock};
  FakePrefect prefect;
  prefect::PrefectApi api{prefect::Credentials{}, "floodgate"};
  metrics::Metrics metrics{"test"};
  Owner owner;
  Source source{owner};
  std::unique_ptr<Dispatcher> dispatcher;
};

TEST_F(DispatcherTest, TheCsrfTokenGoesFirstThenControlRequestsInTheirOrder) {
  make();
  dispatcher->enqueue(owner.request(1));
  dispatcher->enqueue(owner.request(2));
  dispatcher->dispatch_now();
  timers.run_ready();
  EXPECT_EQ(paths(), (std::vector<std::string>{"/csrf-token?client=floodgate", "/x/1", "/x/2"}));
  EXPECT_EQ(owner.answers, (std::vector<std::string>{"1:404", "2:404"}));
  EXPECT_EQ(dispatcher->in_flight(), 0);
}

TEST_F(DispatcherTest, TheTokenBucketSpacesRequests) {
  auto o = defaults();
  o.rate = 1;
  o.burst = 1;
  make(o);
  dispatcher->enqueue(owner.request(1));
  dispatcher->enqueue(owner.request(2));
  dispatcher->dispatch_now();
  timers.run_ready();
  EXPECT_EQ(owner.answers.size(), 1u);
  timers.advance(990ms);
  EXPECT_EQ(owner.answers.size(), 1u);
  timers.advance(20ms);
  EXPECT_EQ(owner.answers.size(), 2u);
}

TEST_F(DispatcherTest, AReplicasShareScalesTheBucketAndTheInFlightCeiling) {
  auto o = defaults();
  o.rate = 10;
  o.burst = 10;
  o.max_in_flight = 8;
  make(o);
  dispatcher->dispatch_now();
  timers.run_ready();  // the CSRF token
  // A quarter of the budget: 2.5 requests a second, bursts of 2.5, 2 in flight.
  dispatcher->set_share(0.25, 1.0);
  EXPECT_EQ(dispatcher->effective_limit(), 2);
  timers.advance(10s);
  for (int i = 1; i <= 20; ++i) dispatcher->enqueue(owner.request(i));
  dispatcher->dispatch_now();
  timers.run_ready();
  EXPECT_EQ(owner.answers.size(), 2u);  // the burst, clamped to the new size
  timers.advance(2000ms);
  EXPECT_EQ(owner.answers.size(), 7u);  // 2.5 a second
  // The most cautious replica's limit (a quarter of the ceiling) binds before the share does.
  dispatcher->set_share(1.0, 0.25);
  EXPECT_EQ(dispatcher->effective_limit(), 2);
  dispatcher->set_share(1.0, 1.0);
  EXPECT_EQ(dispatcher->effective_limit(), 8);
  EXPECT_DOUBLE_EQ(dispatcher->limit_ratio(), 1.0);
}

TEST_F(DispatcherTest, AShareOfNothingSendsNothingUntilTheShareComesBack) {
  make();
  dispatcher->dispatch_now();
  timers.run_ready();
  dispatcher->set_share(0.0, 1.0);
  dispatcher->enqueue(owner.request(1));
  dispatcher->dispatch_now();
  timers.advance(5s);
  EXPECT_TRUE(owner.answers.empty());
  EXPECT_TRUE(dispatcher->gates().token_bucket);
  dispatcher->set_share(0.5, 1.0);
  timers.run_ready();
  EXPECT_EQ(owner.answers, (std::vector<std::string>{"1:404"}));
}

TEST_F(DispatcherTest, ARetryAfterPausesEveryRequestAndTheOwnerStillGetsTheAnswer) {
  make();
  prefect.script("GET", "/x/1", answer(429, {}, {{"Retry-After", "5"}}));
  dispatcher->enqueue(owner.request(1));
  dispatcher->dispatch_now();
  timers.run_ready();
  EXPECT_EQ(owner.answers, (std::vector<std::string>{"1:429"}));
  EXPECT_GT(dispatcher->status_json()["paused_s"].get<double>(), 4.9);
  dispatcher->enqueue(owner.request(2));
  dispatcher->dispatch_now();
  timers.advance(4900ms);
  EXPECT_EQ(owner.answers.size(), 1u);
  timers.advance(200ms);
  EXPECT_EQ(owner.answers.size(), 2u);
}

TEST_F(DispatcherTest, TheConcurrencyLimitHoldsTheRestBack) {
  auto o = defaults();
  o.max_in_flight = 2;
  make(o);
  dispatcher->dispatch_now();
  timers.run_ready();  // the CSRF token
  prefect.hold_all = true;
  for (int i = 1; i <= 3; ++i) dispatcher->enqueue(owner.request(i));
  dispatcher->dispatch_now();
  EXPECT_EQ(dispatcher->in_flight(), 2);
  EXPECT_EQ(prefect.held.size(), 2u);
  prefect.hold_all = false;
  prefect.release_all();
  timers.run_ready();
  EXPECT_EQ(owner.answers.size(), 3u);
}

TEST_F(DispatcherTest, DueRetriesGoBackInLineInDueOrderAndUnwantedOnesAreDropped) {
  make();
  const auto t0 = clock.now();
  dispatcher->retry_at(t0 + 2s, 1, 7, false);
  dispatcher->retry_at(t0 + 1s, 1, 3, false);
  dispatcher->retry_at(t0 + 1s, 1, 5, false);
  source.unwanted = 5;
  dispatcher->dispatch_now();
  timers.run_ready();
  EXPECT_TRUE(source.ready.empty());
  timers.advance(1s);
  EXPECT_EQ(source.ready, (std::vector<int64_t>{3}));
  timers.advance(1s);
  EXPECT_EQ(source.ready, (std::vector<int64_t>{3, 7}));
  EXPECT_EQ(dispatcher->status_json()["pending_retries"], 0);
}

TEST_F(DispatcherTest, ARetryThatCostsWaitsForTheRetryBudget) {
  auto o = defaults();
  o.retry_budget_ratio = 0;
  o.retry_budget_min_per_s = 0;
  make(o);
  dispatcher->retry_at(clock.now(), 1, 1, /*charge=*/true);
  dispatcher->retry_at(clock.now(), 1, 2, /*charge=*/false);
  dispatcher->dispatch_now();
  timers.advance(2s);
  // The free one went; the one that costs is held back while the budget has nothing.
  EXPECT_EQ(source.ready, (std::vector<int64_t>{2}));
  EXPECT_EQ(dispatcher->status_json()["pending_retries"], 1);
}

TEST_F(DispatcherTest, LaunchesComeFromTheSourceOnlyWhenTheSchedulerGrants) {
  make();
  dispatcher->dispatch_now();
  timers.run_ready();
  EXPECT_TRUE(source.grants.empty());
  scheduler.add_batch(9, core::BatchQuota{});
  scheduler.set_ready(9, 2);
  dispatcher->dispatch_now();
  timers.run_ready();
  EXPECT_EQ(source.grants, (std::vector<uint64_t>{9, 9}));
  EXPECT_EQ(owner.answers, (std::vector<std::string>{"101:404", "102:404"}));
}

TEST_F(DispatcherTest, AStaleConnectionGoesBackToItsOwnerWithoutAnAnswer) {
  make();
  auto stale = testing::transport_error(false, "Failed to write request body");
  stale.transport = prefect::TransportError::kStaleConnection;
  prefect.script("GET", "/x/1", stale);
  dispatcher->enqueue(owner.request(1));
  dispatcher->dispatch_now();
  timers.run_ready();
  EXPECT_EQ(owner.stale, (std::vector<std::string>{"1"}));
  EXPECT_TRUE(owner.answers.empty());
}

TEST_F(DispatcherTest, StopSendingCallsBackOnceNothingIsInFlight) {
  make();
  dispatcher->dispatch_now();
  timers.run_ready();
  prefect.hold_all = true;
  dispatcher->enqueue(owner.request(1));
  dispatcher->dispatch_now();
  int idle = 0;
  dispatcher->stop_sending([&] { ++idle; });
  EXPECT_EQ(idle, 0);
  dispatcher->enqueue(owner.request(2));
  prefect.hold_all = false;
  prefect.release_all();
  timers.run_ready();
  EXPECT_EQ(idle, 1);
  EXPECT_EQ(owner.answers, (std::vector<std::string>{"1:404"}));  // nothing new went out
}

}  // namespace
}  // namespace floodgate::engine
