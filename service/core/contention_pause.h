#pragma once

#include <chrono>
#include <cstdint>
#include <optional>

#include "core/clock.h"

namespace floodgate::core {

/// How long all requests to Prefect pause after it reports congestion (a contended database,
/// a 503, a timeout): short at first, doubling while the signals keep coming, back to short
/// after a quiet spell.
///
/// A pause is a global one (GlobalBackoff, which then ramps back up), so the answers of
/// requests sent before it began, or in the first `spacing` after it, ask for nothing more:
/// between pauses the adaptive limit does the slowing down. Without that spacing a load-blind
/// stream of errors would keep floodgate paused nearly all the time.
class ContentionPause {
 public:
  explicit ContentionPause(Duration base = std::chrono::milliseconds(100),
                           Duration max = std::chrono::seconds(1),
                           Duration spacing = std::chrono::seconds(2),
                           Duration quiet = std::chrono::seconds(10));

  /// A congestion signal at `now`: the pause to start now, or zero while one still runs or
  /// less than `spacing` has passed since it ended.
  Duration on_signal(TimePoint now);

  /// Signals seen, and pauses asked for.
  int64_t signals() const { return signals_; }
  int64_t pauses() const { return pauses_; }

 private:
  Duration base_;
  Duration max_;
  Duration spacing_;
  Duration quiet_;
  int level_ = 0;
  std::optional<TimePoint> last_pause_end_;
  int64_t signals_ = 0;
  int64_t pauses_ = 0;
};

}  // namespace floodgate::core
