#include "metrics/batch_rate.h"

namespace floodgate::metrics {

void BatchRate::add(const BatchSample& s) {
  // Counts only grow; a smaller one means the batch was reloaded: start the window again.
  if (!samples_.empty() && (s.started < samples_.back().started || s.done < samples_.back().done ||
                            s.t_s < samples_.back().t_s)) {
    samples_.clear();
  }
  samples_.push_back(s);
  // Keep one sample at or before the window's start, so the rate spans the whole window.
  while (samples_.size() > 2 && s.t_s - samples_[1].t_s >= window_s_) samples_.pop_front();
}

double BatchRate::rate(int64_t BatchSample::*field) const {
  if (samples_.size() < 2) return 0;
  const BatchSample& a = samples_.front();
  const BatchSample& b = samples_.back();
  const double dt = b.t_s - a.t_s;
  if (dt < 1) return 0;
  return static_cast<double>(b.*field - a.*field) / dt;
}

double BatchRate::launch_rate() const { return rate(&BatchSample::started); }

double BatchRate::completion_rate() const { return rate(&BatchSample::done); }

std::optional<double> BatchRate::eta_s() const {
  if (samples_.empty()) return std::nullopt;
  const BatchSample& last = samples_.back();
  const int64_t left = last.total - last.done;
  if (left <= 0) return 0.0;
  const double r = completion_rate();
  if (r <= 0) return std::nullopt;
  return static_cast<double>(left) / r;
}

}  // namespace floodgate::metrics
