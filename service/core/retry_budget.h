#pragma once

#include <chrono>
#include <cstdint>

#include "core/clock.h"
#include "core/windowed_counter.h"

namespace floodgate::core {

/// Keeps retries under a share of recent requests, as Finagle's and gRPC's retry budgets do.
///
/// Every first attempt deposits `ratio` tokens and every retry withdraws one; both are kept in
/// one-second slots over `window` and expire with it. On top of the deposits sits a reserve of
/// `min_retries_per_s * window` tokens, which refills as the withdrawals expire, so a quiet
/// service can still retry a little. Over a run of length T the retries allowed stay at most
/// ratio * requests + min_retries_per_s * (T + window). Tokens are counted in integer
/// milli-tokens, so the arithmetic is exact. balance() can dip below zero for a while when
/// deposits expire before the retries they paid for.
class RetryBudget {
 public:
  explicit RetryBudget(const Clock& clock, double ratio = 0.2, double min_retries_per_s = 10,
                       Duration window = std::chrono::seconds(10));

  /// A first attempt was sent.
  void on_request();
  /// Takes one retry token; false when the budget is spent and the retry must not be sent.
  [[nodiscard]] bool try_acquire_retry();
  /// Retry tokens available now (deposits in the window plus the reserve, minus withdrawals).
  double balance() const;

  int64_t requests() const { return requests_; }
  int64_t retries_allowed() const { return retries_allowed_; }
  int64_t retries_denied() const { return retries_denied_; }
  double ratio() const { return static_cast<double>(deposit_milli_) / 1000.0; }
  double reserve() const { return static_cast<double>(reserve_milli_) / 1000.0; }

 private:
  int64_t balance_milli(TimePoint now) const;

  const Clock& clock_;
  int64_t deposit_milli_;
  int64_t reserve_milli_;
  WindowedCounter ledger_;
  int64_t requests_ = 0;
  int64_t retries_allowed_ = 0;
  int64_t retries_denied_ = 0;
};

}  // namespace floodgate::core
