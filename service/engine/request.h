#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <variant>
#include <vector>

#include "core/clock.h"
#include "core/launch_scheduler.h"
#include "prefect/http_client.h"
#include "prefect/prefect_api.h"

namespace floodgate::engine {

// What a request is about, one type per kind. The order is the order of the metric names and
// of the adaptive limit's sample classes (see dispatcher.cpp).
struct ResolveDeployment {
  uint64_t batch = 0;
  int deployment = 0;
};
struct CreateRun {
  uint64_t batch = 0;
  int64_t index = 0;
};
struct CreateRuns {
  uint64_t batch = 0;
  std::vector<int64_t> indexes;
  size_t body_bytes = 0;  // the encoded request body, for learning a smaller budget on 413
};
/// A tracking read; index -1 stands for the parent flow run.
struct ReadRuns {
  uint64_t batch = 0;
  std::vector<int64_t> indexes;
  std::vector<std::string> ids;  // flow run ids, aligned with indexes
  bool parent_only = false;      // a read of the parent alone, before launches
};
struct CancelChild {
  uint64_t batch = 0;
  std::string flow_run_id;
  std::string transition_id;
};
struct CsrfToken {};
struct HealthProbe {};
struct CreatePlaceholder {
  uint64_t batch = 0;
  int64_t index = 0;
};
/// A search by idempotency key for runs whose create may have succeeded unseen.
struct LookUpRuns {
  uint64_t batch = 0;
  std::vector<int64_t> indexes;
  std::vector<std::string> keys;  // aligned with indexes
  std::string failure;            // the error for runs that do not exist; empty: launch again
};
/// A cancel of up to 50 children of one batch in one bulk_set_state request.
struct CancelChildren {
  uint64_t batch = 0;
  std::vector<std::string> flow_run_ids;
  std::string transition_id;
};
using Payload = std::variant<ResolveDeployment, CreateRun, CreateRuns, ReadRuns, CancelChild,
                             CsrfToken, HealthProbe, CreatePlaceholder, LookUpRuns, CancelChildren>;

class RequestOwner;

/// One request to Prefect: what it is about and the part that gets its answer.
struct Request {
  Payload payload;
  RequestOwner* owner = nullptr;
  int attempts = 0;  // earlier tries of a control request (cancel, lookup)
  core::TimePoint sent{};
  core::TimePoint first_sent{};

  template <class T>
  T& as() {
    return std::get<T>(payload);
  }
  template <class T>
  const T& as() const {
    return std::get<T>(payload);
  }
};

/// A part that sends requests and takes their answers, after the dispatcher has recorded them
/// for the limits.
class RequestOwner {
 public:
  virtual ~RequestOwner() = default;
  /// The HTTP request for a queued request, built when it may go out; nullopt drops it (its
  /// batch is gone).
  virtual std::optional<prefect::HttpRequest> build(Request& request) = 0;
  /// A pooled connection the server had closed failed at once: true when the owner sends the
  /// request again itself (nothing is recorded for the limits then).
  virtual bool resend_stale(Request& /*request*/) { return false; }
  virtual void on_answer(Request& request, const prefect::HttpResponse& response,
                         const prefect::Classification& c) = 0;
};

/// A request ready to go out now, with the launch bookkeeping the dispatcher does for it.
struct Launch {
  std::shared_ptr<Request> request;
  prefect::HttpRequest http;
  bool first_attempt = false;  // a new launch, not a retry: it earns the retry budget a share
};

/// How parts ask for sends without knowing the dispatcher: queue a request, ask for an item's
/// launch to be retried at a time, wake the dispatch loop.
class Outbox {
 public:
  virtual ~Outbox() = default;
  /// Queues a control request (resolve, read, cancel, lookup); they go before launches.
  virtual void enqueue(std::shared_ptr<Request> request) = 0;
  virtual void enqueue_after(std::shared_ptr<Request> request, core::Duration delay) = 0;
  /// Makes item `index` of batch `batch` ready again at `due`; `charge`: the retry takes a
  /// retry-budget token.
  virtual void retry_at(core::TimePoint due, uint64_t batch, int64_t index, bool charge) = 0;
  /// Runs the dispatch loop at `when` (from the timer queue, not from inside the caller).
  virtual void wake_at(core::TimePoint when) = 0;
  /// Runs the dispatch loop now.
  virtual void dispatch_now() = 0;
};

/// Where the dispatcher gets launches from and hands due retries back.
class LaunchSource {
 public:
  virtual ~LaunchSource() = default;
  /// How many runs one launch request may carry now (1 without the bulk endpoint).
  virtual int max_items() const = 0;
  /// Whether the item of a retry now due still waits for it.
  virtual bool retry_wanted(uint64_t batch, int64_t index) const = 0;
  /// Puts the item of a due retry back in line.
  virtual void retry_ready(uint64_t batch, int64_t index) = 0;
  /// Uses a grant of the launch scheduler: the request to send, or nullopt when the grant went
  /// into something else (a read of the parent first, a stale view of the ready items).
  virtual std::optional<Launch> launch(const core::LaunchScheduler::Grant& grant) = 0;
};

}  // namespace floodgate::engine
