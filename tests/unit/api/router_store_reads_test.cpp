// The router's answers about batches the engine does not hold: the same answers as before, read
// from the store on the API's store reader thread, never on the engine's thread (issue 12).
#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <functional>
#include <future>
#include <mutex>
#include <set>
#include <thread>

#include "../engine/engine_test_support.h"
#include "api/router.h"

namespace floodgate::api {
namespace {

using engine::testing::EngineHarness;
using engine::testing::TempDir;
using nlohmann::json;

/// Forwards to a real store and notes the threads that read it.
class RecordingStore final : public store::Store {
 public:
  explicit RecordingStore(store::Store& inner) : inner_(inner) {}

  store::InsertResult insert_batch(const store::BatchRecord& b,
                                   const std::vector<store::ItemRecord>& items) override {
    return inner_.insert_batch(b, items);
  }
  void apply(const std::vector<store::ItemUpdate>& items,
             const std::vector<store::BatchUpdate>& batches) override {
    inner_.apply(items, batches);
  }
  std::optional<store::BatchRecord> get_batch(const std::string& id) override {
    note("get_batch");
    return inner_.get_batch(id);
  }
  std::vector<store::BatchRecord> list_batches(std::optional<core::BatchState> state,
                                               int64_t after_seq, int limit) override {
    note("list_batches");
    return inner_.list_batches(state, after_seq, limit);
  }
  std::vector<store::BatchRecord> load_unfinished_batches() override {
    return inner_.load_unfinished_batches();
  }
  std::vector<store::ItemRecord> load_items(const std::string& id, bool with_spec) override {
    note("load_items");
    return inner_.load_items(id, with_spec);
  }
  std::vector<store::ItemRecord> list_items(const std::string& id,
                                            std::optional<core::ItemState> state, int64_t after,
                                            int limit) override {
    note("list_items");
    return inner_.list_items(id, state, after, limit);
  }
  std::array<int64_t, core::kItemStateCount> count_items(const std::string& id) override {
    note("count_items");
    return inner_.count_items(id);
  }
  std::vector<std::pair<int64_t, std::string>> load_item_specs(
      const std::string& id, const std::vector<int64_t>& indexes) override {
    note("load_item_specs");
    if (before_specs) before_specs();
    return inner_.load_item_specs(id, indexes);
  }

  /// Called on the reading thread before each load_item_specs (to hold the reader there).
  std::function<void()> before_specs;

  /// The reads `thread` made, by name.
  std::multiset<std::string> reads_on(std::thread::id thread) {
    std::lock_guard lock(mutex_);
    std::multiset<std::string> out;
    for (const auto& [t, what] : reads_) {
      if (t == thread) out.insert(what);
    }
    return out;
  }
  size_t reads() {
    std::lock_guard lock(mutex_);
    return reads_.size();
  }
  /// How many reads named `what` were made, on any thread.
  size_t reads_of(const std::string& what) {
    std::lock_guard lock(mutex_);
    return static_cast<size_t>(std::count_if(reads_.begin(), reads_.end(),
                                             [&](const auto& r) { return r.second == what; }));
  }

 private:
  void note(const char* what) {
    std::lock_guard lock(mutex_);
    reads_.emplace_back(std::this_thread::get_id(), what);
  }
  store::Store& inner_;
  std::mutex mutex_;
  std::vector<std::pair<std::thread::id, std::string>> reads_;
};

/// Holds the store reader inside its reads, one at a time, until the test lets each go.
class ReadGate {
 public:
  /// On the reader: waits until the test opens this read.
  void pass() {
    std::unique_lock lock(mutex_);
    const int mine = ++entered_;
    changed_.notify_all();
    changed_.wait(lock, [&] { return opened_ >= mine; });
  }
  /// Whether `n` reads have come in, waiting a little for them.
  bool entered(int n) {
    std::unique_lock lock(mutex_);
    return changed_.wait_for(lock, std::chrono::milliseconds(10), [&] { return entered_ >= n; });
  }
  /// Lets the first `n` reads go on.
  void open(int n) {
    std::lock_guard lock(mutex_);
    opened_ = n;
    changed_.notify_all();
  }

 private:
  std::mutex mutex_;
  std::condition_variable changed_;
  int entered_ = 0;
  int opened_ = 0;
};

class RouterStoreReadsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto spec = engine::testing::spec_for();
    stored_.id = "done-before";
    stored_.spec_json = engine::to_json(spec).dump();
    stored_.state = core::BatchState::kCompleted;
    stored_.total = 3;
    stored_.created_at_ms = stored_.updated_at_ms = stored_.finished_at_ms = 1'800'000'000'000;
    stored_.version = 5;
    std::vector<store::ItemRecord> items(3);
    for (int i = 0; i < 3; ++i) {
      items[i].index = i;
      items[i].state = i == 2 ? core::ItemState::kFailed : core::ItemState::kCompleted;
      items[i].flow_run_id = "run-" + std::to_string(i);
      items[i].spec_json = R"({"parameters":{"i":)" + std::to_string(i) + "}}";
    }
    inner_ = store::open_store("sqlite://" + dir_.file("floodgate.db"));
    ASSERT_TRUE(inner_->insert_batch(stored_, items).inserted);
    recording_ = std::make_unique<RecordingStore>(*inner_);
    engine_ = std::make_unique<engine::Engine>(
        engine::EngineRuntime{h_.clock, h_.wall, h_.random, h_.timers}, EngineHarness::defaults(),
        *recording_, h_.prefect, prefect::Credentials{}, h_.metrics);
    engine_->start();
    h_.settle();
    ApiOptions options;
    options.clock = &h_.clock;
    options.wall_clock = &h_.wall;
    router_ = std::make_unique<Router>(options, *engine_, *recording_, h_.metrics);
  }
  void TearDown() override {
    router_.reset();
    engine_.reset();
  }

  /// Sends a request; its answer comes once the engine's queue runs (on this thread).
  std::future<ServerResponse> send(const std::string& method, const std::string& path,
                                   const std::string& query = "", const std::string& body = "") {
    ServerRequest req;
    req.method = method;
    req.path = path;
    req.query = query;
    req.headers["host"] = "127.0.0.1:8080";
    if (!body.empty()) req.headers["content-type"] = "application/json";
    req.body = body;
    auto answer = std::make_shared<std::promise<ServerResponse>>();
    auto got = answer->get_future();
    router_->handle(req, [answer](ServerResponse r) { answer->set_value(std::move(r)); });
    return got;
  }

  /// Runs the engine's queue until `got` is ready (or some seconds passed).
  ServerResponse answer_of(std::future<ServerResponse>& got, const std::string& what) {
    for (int i = 0; i < 1000; ++i) {
      h_.settle();
      if (got.wait_for(std::chrono::milliseconds(10)) == std::future_status::ready) {
        return got.get();
      }
    }
    ADD_FAILURE() << "no answer to " << what;
    return {};
  }

  /// Sends a request and runs the engine's queue (on this thread) until the answer comes.
  ServerResponse call(const std::string& method, const std::string& path,
                      const std::string& query = "") {
    auto got = send(method, path, query);
    return answer_of(got, method + " " + path);
  }

  /// The JSON of an answer that must be 200.
  json ok_json(const std::string& method, const std::string& path, const std::string& query = "") {
    ServerResponse r = call(method, path, query);
    EXPECT_EQ(r.status, 200) << method << " " << path << ": " << r.body;
    return json::parse(r.body, nullptr, false);
  }

  /// The reads the engine's thread (this one, which runs the queue) made.
  std::multiset<std::string> engine_thread_reads() {
    return recording_->reads_on(std::this_thread::get_id());
  }

  /// Submits a tracked batch of `n` runs through the API and lets it launch them all.
  std::string submit_tracked(int n) {
    json runs = json::array();
    for (int i = 0; i < n; ++i) runs.push_back({{"parameters", {{"i", i}}}});
    json body = {{"deployment", "flow/dep"},
                 {"track", true},
                 {"tolerated_failure_count", n},
                 {"runs", runs}};
    auto got = send("POST", "/v1/batches", "", body.dump());
    ServerResponse r = answer_of(got, "POST /v1/batches");
    EXPECT_EQ(r.status, 201) << r.body;
    h_.advance(std::chrono::seconds(1));
    return json::parse(r.body, nullptr, false).value("id", "");
  }
  /// Ends the child run of item `i` FAILED in Prefect and lets tracking see it.
  void fail_run(int i) {
    for (auto& [id, run] : h_.prefect.runs) {
      if (run.parameters.value("i", -1) == i &&
          run.idempotency_key.find(":r") == std::string::npos) {
        h_.prefect.set_run_state(id, "FAILED");
      }
    }
    h_.advance(std::chrono::seconds(3));
  }
  /// Sends a redrive of `id` while the runs of `fail_meanwhile` end FAILED, one during each
  /// store read the redrive makes for the specs it lacks; returns its answer.
  ServerResponse redrive_while_runs_fail(const std::string& id, std::vector<int> fail_meanwhile) {
    ReadGate gate;
    recording_->before_specs = [&gate] { gate.pass(); };
    auto got = send("POST", "/v1/batches/" + id + "/redrive");
    int reads = 0;
    for (int i : fail_meanwhile) {
      ++reads;
      for (int tries = 0; tries < 500 && !gate.entered(reads); ++tries) h_.settle();
      EXPECT_TRUE(gate.entered(reads)) << "no store read " << reads;
      fail_run(i);
      gate.open(reads);
    }
    gate.open(1000);
    ServerResponse r = answer_of(got, "redrive");
    recording_->before_specs = nullptr;
    return r;
  }

  EngineHarness h_;
  TempDir dir_;
  store::BatchRecord stored_;
  std::unique_ptr<store::Store> inner_;
  std::unique_ptr<RecordingStore> recording_;
  std::unique_ptr<engine::Engine> engine_;
  std::unique_ptr<Router> router_;
};

TEST_F(RouterStoreReadsTest, BatchNotHeldIsReadOffTheEngineThread) {
  json body = ok_json("GET", "/v1/batches/done-before");
  EXPECT_EQ(body, engine::Engine::stored_batch_json(stored_, inner_->count_items(stored_.id)));
  EXPECT_EQ(body["state"], "COMPLETED");
  EXPECT_EQ(body["counts"]["COMPLETED"], 2);
  EXPECT_EQ(body["counts"]["FAILED"], 1);
  EXPECT_EQ(body["failures"], 1);
  EXPECT_GE(recording_->reads(), 2u);
  EXPECT_TRUE(engine_thread_reads().empty());
}

TEST_F(RouterStoreReadsTest, UnknownBatchIsNotFound) {
  ServerResponse r = call("GET", "/v1/batches/nobody");
  EXPECT_EQ(r.status, 404);
  EXPECT_EQ(json::parse(r.body)["detail"], "no batch with id nobody");
  EXPECT_TRUE(engine_thread_reads().empty());
}

TEST_F(RouterStoreReadsTest, RunsOfABatchNotHeldComeFromTheStorePageByPage) {
  json body = ok_json("GET", "/v1/batches/done-before/runs", "limit=2");
  ASSERT_EQ(body["runs"].size(), 2u);
  EXPECT_EQ(body["runs"][1]["flow_run_id"], "run-1");
  EXPECT_EQ(body["next"], "1");
  body = ok_json("GET", "/v1/batches/done-before/runs", "limit=2&after=1");
  ASSERT_EQ(body["runs"].size(), 1u);
  EXPECT_EQ(body["runs"][0]["state"], "FAILED");
  EXPECT_TRUE(body["next"].is_null());
  EXPECT_TRUE(engine_thread_reads().empty());
}

TEST_F(RouterStoreReadsTest, ListingMixesHeldAndStoredBatchesWithoutEngineThreadReads) {
  json body = ok_json("GET", "/v1/batches", "limit=10");
  ASSERT_EQ(body["batches"].size(), 1u);
  EXPECT_EQ(body["batches"][0]["id"], "done-before");
  EXPECT_EQ(body["batches"][0]["counts"]["FAILED"], 1);
  body = ok_json("GET", "/v1/batches", "submitted_by=&state=COMPLETED");
  ASSERT_EQ(body["batches"].size(), 1u);
  EXPECT_EQ(body["batches"][0]["failures"], 1);
  // The listing's first page is read on the listener's thread (this one, here), as before.
  auto on_this_thread = engine_thread_reads();
  EXPECT_EQ(on_this_thread.count("count_items"), 0u);
  EXPECT_EQ(on_this_thread.count("get_batch"), 0u);
}

TEST_F(RouterStoreReadsTest, ChangesOfABatchNotHeldAreRefusedAsBefore) {
  ServerResponse r = call("POST", "/v1/batches/done-before/cancel");
  EXPECT_EQ(r.status, 409);
  EXPECT_EQ(json::parse(r.body)["detail"], "batch done-before is already COMPLETED");
  r = call("POST", "/v1/batches/nobody/pause");
  EXPECT_EQ(r.status, 404);
  EXPECT_TRUE(engine_thread_reads().empty());
}

TEST_F(RouterStoreReadsTest, RedriveBringsTheStoredBatchBackWithoutReadingItOnTheEngineThread) {
  EXPECT_EQ(ok_json("POST", "/v1/batches/done-before/redrive")["state"], "RUNNING");
  EXPECT_TRUE(engine_->has_batch("done-before"));
  auto on_engine = engine_thread_reads();
  EXPECT_EQ(on_engine.count("get_batch"), 0u);
  EXPECT_EQ(on_engine.count("count_items"), 0u);
  EXPECT_EQ(on_engine.count("list_items"), 0u);
  EXPECT_EQ(on_engine.count("load_item_specs"), 0u);
  EXPECT_GE(recording_->reads_of("list_items"), 1u);  // on the store reader
  EXPECT_EQ(call("POST", "/v1/batches/nobody/redrive").status, 404);
}

TEST_F(RouterStoreReadsTest, RedriveOfABatchWhoseItemsWereFreedReadsThemOnTheStoreReader) {
  using namespace std::chrono_literals;
  h_.prefect.reject_parameter = "i";  // the redriven item 2 is refused again
  EXPECT_EQ(ok_json("POST", "/v1/batches/done-before/redrive")["state"], "RUNNING");
  h_.advance(1s);
  EXPECT_EQ(engine_->batch_json("done-before")["state"], "FAILED");
  // Evicted once the store writer (a thread of its own) has written them.
  for (int i = 0; i < 1000 && engine_->held_items("done-before") > 0; ++i) {
    std::this_thread::sleep_for(1ms);
    h_.advance(1s);
  }
  ASSERT_EQ(engine_->held_items("done-before"), 0u);

  h_.prefect.reject_parameter.clear();
  const size_t item_reads = recording_->reads_of("list_items");
  json body = ok_json("POST", "/v1/batches/done-before/redrive");
  EXPECT_EQ(body["state"], "RUNNING");
  // Redriven: waiting to launch, or already being launched.
  EXPECT_EQ(body["counts"]["PENDING"].get<int>() + body["counts"]["LAUNCHING"].get<int>(), 1)
      << body.dump();
  EXPECT_GT(recording_->reads_of("list_items"), item_reads);
  auto on_engine = engine_thread_reads();
  EXPECT_EQ(on_engine.count("list_items"), 0u);
  EXPECT_EQ(on_engine.count("load_item_specs"), 0u);
  h_.advance(1s);
  json runs = ok_json("GET", "/v1/batches/done-before/runs")["runs"];
  ASSERT_EQ(runs.size(), 3u);
  EXPECT_EQ(runs[2]["state"], "LAUNCHED");
}

TEST_F(RouterStoreReadsTest, ARunThatFailsWhileTheSpecsAreReadIsRedrivenToo) {
  const std::string id = submit_tracked(3);
  fail_run(0);
  // The engine's thread reads only the pages of items to launch, never for a redrive.
  const size_t on_engine = engine_thread_reads().count("load_item_specs");
  const size_t before = recording_->reads_of("load_item_specs");
  // Item 0's spec is read on the store reader; meanwhile item 1's run fails too.
  ServerResponse r = redrive_while_runs_fail(id, {1});
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(json::parse(r.body)["counts"]["FAILED"], 0);
  EXPECT_GE(recording_->reads_of("load_item_specs"), before + 2);  // asked again for item 1's
  EXPECT_EQ(engine_thread_reads().count("load_item_specs"), on_engine);
  h_.advance(std::chrono::seconds(1));
  std::set<std::string> keys;
  for (const auto& [run_id, run] : h_.prefect.runs) keys.insert(run.idempotency_key);
  EXPECT_EQ(keys, (std::set<std::string>{"floodgate:" + id + ":0", "floodgate:" + id + ":1",
                                         "floodgate:" + id + ":2", "floodgate:" + id + ":0:r1",
                                         "floodgate:" + id + ":1:r1"}));
}

// Whether a redrive that keeps meeting runs failing during its reads catches up with them
// (their specs come with the items read) or gives up after its rounds depends on when the
// store writer (a thread) wrote them: either way no failed item is left out, and a redrive that
// gives up changes nothing.
TEST_F(RouterStoreReadsTest, ARedriveWhileRunsKeepFailingLeavesNoneOutOrChangesNothing) {
  const std::string id = submit_tracked(4);
  fail_run(0);
  ServerResponse r = redrive_while_runs_fail(id, {1, 2, 3});
  h_.advance(std::chrono::seconds(1));
  if (r.status == 503) {
    EXPECT_NE(json::parse(r.body)["detail"].get<std::string>().find("redrive again"),
              std::string::npos);
    EXPECT_EQ(engine_->batch_json(id)["counts"]["FAILED"], 4);
    EXPECT_EQ(h_.prefect.runs.size(), 4u);  // nothing relaunched
    // Asked again now that nothing changes, it goes through.
    EXPECT_EQ(ok_json("POST", "/v1/batches/" + id + "/redrive")["counts"]["FAILED"], 0);
  } else {
    ASSERT_EQ(r.status, 200) << r.body;
    EXPECT_EQ(json::parse(r.body)["counts"]["FAILED"], 0);
  }
  h_.advance(std::chrono::seconds(1));
  EXPECT_EQ(h_.prefect.runs.size(), 8u);  // each failed item relaunched once
}

}  // namespace
}  // namespace floodgate::api
