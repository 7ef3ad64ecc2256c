#include "core/contention_pause.h"

#include <algorithm>

namespace floodgate::core {

ContentionPause::ContentionPause(Duration base, Duration max, Duration spacing, Duration quiet)
    : base_(base), max_(std::max(base, max)), spacing_(spacing), quiet_(std::max(spacing, quiet)) {}

Duration ContentionPause::on_signal(TimePoint now) {
  signals_ += 1;
  if (last_pause_end_ && now < *last_pause_end_ + spacing_) return Duration(0);
  if (last_pause_end_ && now - *last_pause_end_ <= quiet_) {
    level_ = std::min(level_ + 1, 30);
  } else {
    level_ = 0;
  }
  Duration pause = base_;
  for (int i = 0; i < level_ && pause < max_; ++i) pause *= 2;
  pause = std::min(pause, max_);
  last_pause_end_ = now + pause;
  pauses_ += 1;
  return pause;
}

}  // namespace floodgate::core
