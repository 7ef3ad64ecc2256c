#include "api/store_reader.h"

#include <exception>

#include "api/problem.h"
#include "metrics/log.h"

namespace floodgate::api {

StoreReader::StoreReader() : thread_([this] { run(); }) {}

StoreReader::~StoreReader() {
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
  }
  wake_.notify_one();
  thread_.join();
}

void StoreReader::post(Responder respond, std::function<void(const Responder&)> read) {
  {
    std::lock_guard lock(mutex_);
    queue_.push_back(Read{std::move(respond), std::move(read)});
  }
  wake_.notify_one();
}

void StoreReader::run() {
  while (true) {
    Read read;
    {
      std::unique_lock lock(mutex_);
      wake_.wait(lock, [this] { return stopping_ || !queue_.empty(); });
      if (queue_.empty()) return;
      read = std::move(queue_.front());
      queue_.pop_front();
    }
    try {
      read.fn(read.respond);
    } catch (const std::exception& e) {
      log::error("a store read for the API failed", {{"error", e.what()}});
      read.respond(problem(503, std::string("could not read the store: ") + e.what()));
    }
  }
}

}  // namespace floodgate::api
