#pragma once

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "core/clock.h"
#include "engine/batch_book.h"
#include "engine/request.h"
#include "store/store.h"

namespace floodgate::engine::testing {

/// An Outbox that keeps what the parts ask of it, for tests of one part without a dispatcher.
class RecordingOutbox final : public Outbox {
 public:
  struct Retry {
    core::TimePoint due;
    uint64_t batch;
    int64_t index;
    bool charge;
  };
  void enqueue(std::shared_ptr<Request> request) override { queued.push_back(std::move(request)); }
  void enqueue_after(std::shared_ptr<Request> request, core::Duration delay) override {
    later.emplace_back(std::move(request), delay);
  }
  void retry_at(core::TimePoint due, uint64_t batch, int64_t index, bool charge) override {
    retries.push_back({due, batch, index, charge});
  }
  void wake_at(core::TimePoint when) override { wakes.push_back(when); }
  void dispatch_now() override { ++dispatches; }

  /// Queued requests whose payload is a T.
  template <class T>
  std::vector<T> queued_of() const {
    std::vector<T> out;
    for (const auto& r : queued) {
      if (const auto* p = std::get_if<T>(&r->payload)) out.push_back(*p);
    }
    return out;
  }

  std::vector<std::shared_ptr<Request>> queued;
  std::vector<std::pair<std::shared_ptr<Request>, core::Duration>> later;
  std::vector<Retry> retries;
  std::vector<core::TimePoint> wakes;
  int dispatches = 0;
};

/// A batch record of `total` runs as the API makes it.
inline store::BatchRecord record_of(const std::string& id, int64_t total) {
  store::BatchRecord rec;
  rec.id = id;
  rec.total = total;
  rec.version = 1;
  return rec;
}

/// Holds a new batch of `n` runs (each "{}") in `book` and returns it.
inline Batch& new_batch(BatchBook& book, const std::string& id, BatchSpec spec, int n) {
  Batch& b = book.add(record_of(id, n), std::move(spec));
  book.load_items(b, std::vector<std::string>(static_cast<size_t>(n), "{}"));
  book.announce(b);
  return b;
}

}  // namespace floodgate::engine::testing
