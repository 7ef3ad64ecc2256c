#pragma once

#include <chrono>
#include <cstdint>

namespace floodgate::core {

/// Monotonic time as a value; the core never reads the wall clock itself.
using Duration = std::chrono::nanoseconds;
using TimePoint = std::chrono::time_point<std::chrono::steady_clock, Duration>;

/// Source of monotonic time, passed into everything in the core that needs the time.
class Clock {
 public:
  virtual ~Clock() = default;
  virtual TimePoint now() const = 0;
};

/// The real steady clock.
class SteadyClock final : public Clock {
 public:
  TimePoint now() const override { return std::chrono::steady_clock::now(); }
};

/// A clock that moves only when a test moves it.
class SimulatedClock final : public Clock {
 public:
  explicit SimulatedClock(TimePoint start = TimePoint{} + std::chrono::hours(1)) : now_(start) {}
  TimePoint now() const override { return now_; }
  void advance(Duration d) { now_ += d; }
  void set(TimePoint t) { now_ = t; }

 private:
  TimePoint now_;
};

/// Source of wall-clock time, for timestamps shown to users and HTTP dates; passed in like Clock.
class WallClock {
 public:
  virtual ~WallClock() = default;
  virtual std::chrono::system_clock::time_point now() const = 0;
  /// Unix milliseconds now.
  int64_t unix_ms() const {
    return std::chrono::duration_cast<std::chrono::milliseconds>(now().time_since_epoch()).count();
  }
};

/// The real wall clock.
class SystemWallClock final : public WallClock {
 public:
  std::chrono::system_clock::time_point now() const override {
    return std::chrono::system_clock::now();
  }
};

/// Wall time that follows a simulated monotonic clock from a fixed start.
class SimulatedWallClock final : public WallClock {
 public:
  explicit SimulatedWallClock(const Clock& clock, std::chrono::system_clock::time_point start =
                                                      std::chrono::system_clock::time_point{} +
                                                      std::chrono::milliseconds(1'800'000'000'000))
      : clock_(clock), origin_(clock.now()), start_(start) {}
  std::chrono::system_clock::time_point now() const override {
    return start_ +
           std::chrono::duration_cast<std::chrono::system_clock::duration>(clock_.now() - origin_);
  }

 private:
  const Clock& clock_;
  TimePoint origin_;
  std::chrono::system_clock::time_point start_;
};

inline double to_seconds(Duration d) { return std::chrono::duration<double>(d).count(); }
inline Duration from_seconds(double s) {
  return std::chrono::duration_cast<Duration>(std::chrono::duration<double>(s));
}

}  // namespace floodgate::core
