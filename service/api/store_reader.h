#pragma once

#include <condition_variable>
#include <deque>
#include <functional>
#include <mutex>
#include <thread>

#include "api/http_server.h"

namespace floodgate::api {

/// Runs the API's store reads on a thread of its own, one at a time, so that the engine's thread
/// never waits on the disk for a query (and the listener's threads, shared with the Prefect
/// client, never wait for the engine). One thread is enough: the store serves reads through one
/// connection anyway.
class StoreReader {
 public:
  StoreReader();
  /// Runs the reads already queued, then stops.
  ~StoreReader();
  StoreReader(const StoreReader&) = delete;
  StoreReader& operator=(const StoreReader&) = delete;

  /// Queues `read` (thread-safe). When it throws (a failing disk), `respond` gets a 503 that
  /// names the failure; `read` answers through `respond` otherwise.
  void post(Responder respond, std::function<void(const Responder&)> read);

 private:
  void run();

  std::mutex mutex_;
  std::condition_variable wake_;
  struct Read {
    Responder respond;
    std::function<void(const Responder&)> fn;
  };
  std::deque<Read> queue_;
  bool stopping_ = false;
  std::thread thread_;  // last: starts once the members above exist
};

}  // namespace floodgate::api
