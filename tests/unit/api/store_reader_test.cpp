#include "api/store_reader.h"

#include <gtest/gtest.h>

#include <future>
#include <nlohmann/json.hpp>
#include <stdexcept>
#include <thread>
#include <vector>

namespace floodgate::api {
namespace {

TEST(StoreReaderTest, RunsReadsInOrderOnItsOwnThread) {
  std::vector<int> order;
  std::promise<std::thread::id> ran_on;
  std::promise<void> done;
  {
    StoreReader reader;
    for (int i = 0; i < 3; ++i) {
      reader.post([](ServerResponse) {}, [&order, i](const Responder&) { order.push_back(i); });
    }
    reader.post([](ServerResponse) {},
                [&](const Responder&) {
                  ran_on.set_value(std::this_thread::get_id());
                  done.set_value();
                });
    done.get_future().wait();
  }
  EXPECT_EQ(order, (std::vector<int>{0, 1, 2}));
  EXPECT_NE(ran_on.get_future().get(), std::this_thread::get_id());
}

TEST(StoreReaderTest, AReadThatThrowsAnswers503AndTheNextStillRuns) {
  std::promise<ServerResponse> failed;
  std::promise<ServerResponse> next;
  StoreReader reader;
  reader.post([&](ServerResponse r) { failed.set_value(std::move(r)); },
              [](const Responder&) -> void { throw std::runtime_error("disk I/O error"); });
  reader.post([&](ServerResponse r) { next.set_value(std::move(r)); },
              [](const Responder& answer) {
                ServerResponse r;
                r.status = 200;
                answer(std::move(r));
              });
  ServerResponse r = failed.get_future().get();
  EXPECT_EQ(r.status, 503);
  EXPECT_EQ(nlohmann::json::parse(r.body)["detail"], "could not read the store: disk I/O error");
  EXPECT_EQ(next.get_future().get().status, 200);
}

TEST(StoreReaderTest, DestructionFinishesTheQueuedReads) {
  int ran = 0;
  {
    StoreReader reader;
    for (int i = 0; i < 100; ++i)
      reader.post([](ServerResponse) {}, [&ran](const Responder&) { ++ran; });
  }
  EXPECT_EQ(ran, 100);
}

}  // namespace
}  // namespace floodgate::api
