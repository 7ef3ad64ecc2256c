#include "core/token_bucket.h"

#include <algorithm>
#include <cctype>
#include <charconv>
#include <cmath>
#include <cstdint>
#include <limits>
#include <string>

namespace floodgate::core {
namespace {

std::string_view trim(std::string_view s) {
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.front())) != 0) s.remove_prefix(1);
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.back())) != 0) s.remove_suffix(1);
  return s;
}

std::string lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

// A plain non-negative decimal ("5", "0.5", "12.75"); no sign, exponent, inf or nan.
std::optional<double> parse_decimal(std::string_view s) {
  if (s.empty()) return std::nullopt;
  bool digit_seen = false;
  for (char c : s) {
    if (std::isdigit(static_cast<unsigned char>(c)) != 0) {
      digit_seen = true;
    } else if (c != '.') {
      return std::nullopt;
    }
  }
  if (!digit_seen) return std::nullopt;
  double value = 0;
  auto [ptr, ec] = std::from_chars(s.data(), s.data() + s.size(), value);
  if (ec != std::errc() || ptr != s.data() + s.size() || !std::isfinite(value)) {
    return std::nullopt;
  }
  return value;
}

}  // namespace

TokenBucket::TokenBucket(const Clock& clock, double rate_per_s, double burst)
    : clock_(clock), last_(clock.now()) {
  set_rate(rate_per_s, burst);
  if (!unlimited_) tokens_ = burst_;
}

double TokenBucket::level_at(TimePoint now) const {
  if (unlimited_) return std::numeric_limits<double>::infinity();
  if (rate_ <= 0 || now <= last_) return std::min(tokens_, burst_);
  return std::min(burst_, tokens_ + to_seconds(now - last_) * rate_);
}

void TokenBucket::refill(TimePoint now) {
  if (now <= last_) return;
  tokens_ = level_at(now);
  last_ = now;
}

bool TokenBucket::try_consume(double n) {
  if (unlimited_ || n <= 0) return true;
  // A failed consume leaves the state alone: level(), time_until() and try_consume() then all
  // compute from the same stored point, so a wait time_until() gave is never a rounding short.
  TimePoint now = clock_.now();
  double have = level_at(now);
  if (!(have >= n)) return false;
  tokens_ = have - n;
  last_ = std::max(last_, now);
  return true;
}

Duration TokenBucket::time_until(double n) const {
  if (unlimited_ || n <= 0) return Duration::zero();
  TimePoint now = clock_.now();
  double have = level_at(now);
  if (have >= n) return Duration::zero();
  if (rate_ <= 0 || !(n <= burst_)) return kMaxWait;
  double seconds = (n - have) / rate_;
  if (!(seconds < to_seconds(kMaxWait))) return kMaxWait;
  Duration wait(static_cast<int64_t>(std::ceil(seconds * 1e9)));
  // Rounding may leave the level a hair short at now + wait; callers rely on the tokens being
  // there when the wait is over, so step forward until they are.
  Duration step(1);
  while (wait < kMaxWait && level_at(now + wait) < n) {
    wait += step;
    step *= 2;
  }
  return std::min(wait, kMaxWait);
}

double TokenBucket::level() const { return level_at(clock_.now()); }

double TokenBucket::burst() const {
  return unlimited_ ? std::numeric_limits<double>::infinity() : burst_;
}

void TokenBucket::set_rate(double rate_per_s, double burst) {
  TimePoint now = clock_.now();
  refill(now);
  last_ = std::max(last_, now);
  if (std::isnan(rate_per_s)) rate_per_s = 0;
  if (std::isnan(burst)) burst = 0;
  bool was_unlimited = unlimited_;
  unlimited_ = rate_per_s <= 0 && burst <= 0;
  if (unlimited_) {
    rate_ = 0;
    burst_ = 0;
    tokens_ = 0;
    return;
  }
  rate_ = std::max(0.0, rate_per_s);
  burst_ = burst > 0 ? burst : std::max(1.0, rate_);
  tokens_ = was_unlimited ? burst_ : std::min(tokens_, burst_);
}

void TokenBucket::refund(double n) {
  if (unlimited_ || n <= 0) return;
  TimePoint now = clock_.now();
  tokens_ = std::min(burst_, level_at(now) + n);
  last_ = std::max(last_, now);
}

void TokenBucket::drain() {
  if (unlimited_) return;
  last_ = std::max(last_, clock_.now());
  tokens_ = 0;
}

std::optional<double> TokenBucket::parse_rate(std::string_view text) {
  std::string s = lower(trim(text));
  if (s == "off" || s == "unlimited" || s == "none") return 0.0;
  std::string_view view(s);
  std::string_view number = view;
  double per_seconds = 1;
  if (auto slash = view.find('/'); slash != std::string_view::npos) {
    number = trim(view.substr(0, slash));
    std::string_view unit = trim(view.substr(slash + 1));
    if (unit == "s" || unit == "sec" || unit == "second") {
      per_seconds = 1;
    } else if (unit == "m" || unit == "min" || unit == "minute") {
      per_seconds = 60;
    } else if (unit == "h" || unit == "hr" || unit == "hour") {
      per_seconds = 3600;
    } else {
      return std::nullopt;
    }
  }
  auto value = parse_decimal(number);
  if (!value) return std::nullopt;
  return *value / per_seconds;
}

}  // namespace floodgate::core
