#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <unordered_map>

#include "core/random.h"
#include "engine/batch_book.h"
#include "engine/request.h"
#include "prefect/prefect_api.h"

namespace floodgate::engine {

/// Cancels children in Prefect: up to 50 a request through bulk_set_state, one request each
/// on a server without it (found out once, from its first answer).
class ChildCanceller final : public RequestOwner {
 public:
  /// `new_id` makes transition ids (UUIDs); `on_accepted` runs for a batch whose cancel Prefect
  /// accepted (its children will end soon).
  ChildCanceller(core::Random& random, std::function<std::string()> new_id, BatchBook& book,
                 Outbox& outbox, prefect::PrefectApi& api, std::function<void(Batch&)> on_accepted);

  /// Queues a cancel of one child of batch `b`; joins a bulk cancel of `b` not yet sent.
  void cancel(Batch& b, const std::string& flow_run_id);

  std::optional<prefect::HttpRequest> build(Request& request) override;
  void on_answer(Request& request, const prefect::HttpResponse& response,
                 const prefect::Classification& c) override;

  bool bulk_supported() const { return bulk_; }

 private:
  void queue_single(uint64_t batch, const std::string& flow_run_id);
  /// Transient failures are asked again, backing off, up to 8 tries; true when queued again.
  bool retry(Request& request, const prefect::Classification& c);

  core::Random& random_;
  std::function<std::string()> new_id_;
  BatchBook& book_;
  Outbox& outbox_;
  prefect::PrefectApi& api_;
  std::function<void(Batch&)> on_accepted_;
  bool bulk_ = true;  // until a server answers that it has no bulk_set_state
  // Per batch, the bulk cancel queued and not yet sent, which still takes ids.
  std::unordered_map<uint64_t, std::weak_ptr<Request>> open_;
};

}  // namespace floodgate::engine
