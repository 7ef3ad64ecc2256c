#include "core/retry_budget.h"

#include <algorithm>
#include <cmath>

namespace floodgate::core {
namespace {

constexpr int64_t kMilli = 1000;

int64_t to_milli(double tokens) {
  if (!(tokens > 0)) return 0;
  constexpr double kMaxTokens = 1e12;
  return std::llround(std::min(tokens, kMaxTokens) * kMilli);
}

int slot_count(Duration window) {
  auto slots = std::chrono::ceil<std::chrono::seconds>(window).count();
  return static_cast<int>(std::clamp<int64_t>(slots, 1, 3600));
}

}  // namespace

RetryBudget::RetryBudget(const Clock& clock, double ratio, double min_retries_per_s,
                         Duration window)
    : clock_(clock),
      deposit_milli_(to_milli(ratio)),
      reserve_milli_(to_milli(min_retries_per_s * to_seconds(window))),
      ledger_(std::max(window, Duration(1)), slot_count(window)) {}

void RetryBudget::on_request() {
  ++requests_;
  if (deposit_milli_ > 0) ledger_.add(clock_.now(), deposit_milli_);
}

bool RetryBudget::try_acquire_retry() {
  TimePoint now = clock_.now();
  if (balance_milli(now) < kMilli) {
    ++retries_denied_;
    return false;
  }
  ledger_.add(now, -kMilli);
  ++retries_allowed_;
  return true;
}

int64_t RetryBudget::balance_milli(TimePoint now) const {
  return reserve_milli_ + ledger_.sum(now);
}

double RetryBudget::balance() const {
  return static_cast<double>(balance_milli(clock_.now())) / static_cast<double>(kMilli);
}

}  // namespace floodgate::core
