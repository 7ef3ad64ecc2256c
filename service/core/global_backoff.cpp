#include "core/global_backoff.h"

#include <algorithm>
#include <array>
#include <cctype>
#include <charconv>
#include <cmath>

namespace floodgate::core {

GlobalBackoff::GlobalBackoff(const Clock& clock, Duration ramp, double start_fraction)
    : clock_(clock),
      ramp_(std::max(Duration::zero(), ramp)),
      start_fraction_(std::isfinite(start_fraction) ? std::clamp(start_fraction, 0.0, 1.0) : 0.1) {}

void GlobalBackoff::pause_until(TimePoint t) {
  if (until_ && t <= *until_) return;
  until_ = t;
  ++pause_count_;
}

void GlobalBackoff::pause_for(Duration d) {
  pause_until(clock_.now() + std::max(Duration::zero(), d));
}

bool GlobalBackoff::paused() const { return until_ && clock_.now() < *until_; }

Duration GlobalBackoff::remaining() const {
  if (!until_) return Duration::zero();
  return std::max(Duration::zero(), *until_ - clock_.now());
}

double GlobalBackoff::resume_fraction() const {
  if (!until_) return 1.0;
  TimePoint now = clock_.now();
  if (now < *until_) return 0.0;
  if (ramp_ <= Duration::zero()) return 1.0;
  double progress = std::min(1.0, to_seconds(now - *until_) / to_seconds(ramp_));
  return start_fraction_ + (1.0 - start_fraction_) * progress;
}

bool GlobalBackoff::ramping() const {
  if (!until_) return false;
  TimePoint now = clock_.now();
  return now >= *until_ && now - *until_ < ramp_;
}

namespace {

bool ieq(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    if (std::tolower(static_cast<unsigned char>(a[i])) !=
        std::tolower(static_cast<unsigned char>(b[i]))) {
      return false;
    }
  }
  return true;
}

bool is_digit(char c) { return c >= '0' && c <= '9'; }

// Reads an HTTP-date field by field; any mismatch leaves ok() false.
class DateCursor {
 public:
  explicit DateCursor(std::string_view s) : s_(s) {}

  bool ok() const { return ok_; }
  bool done() const { return ok_ && pos_ == s_.size(); }

  void expect(char c) {
    if (ok_ && pos_ < s_.size() && s_[pos_] == c) {
      ++pos_;
    } else {
      ok_ = false;
    }
  }
  void skip_optional(char c) {
    if (ok_ && pos_ < s_.size() && s_[pos_] == c) ++pos_;
  }
  // Exactly n digits when min_digits == n, else between min_digits and n.
  int number(size_t min_digits, size_t max_digits) {
    if (!ok_) return 0;
    size_t start = pos_;
    int value = 0;
    while (pos_ < s_.size() && pos_ - start < max_digits && is_digit(s_[pos_])) {
      value = value * 10 + (s_[pos_] - '0');
      ++pos_;
    }
    if (pos_ - start < min_digits) ok_ = false;
    return value;
  }
  std::string_view word() {
    if (!ok_) return {};
    size_t start = pos_;
    while (pos_ < s_.size() && std::isalpha(static_cast<unsigned char>(s_[pos_])) != 0) ++pos_;
    if (pos_ == start) ok_ = false;
    return s_.substr(start, pos_ - start);
  }
  void fail() { ok_ = false; }

 private:
  std::string_view s_;
  size_t pos_ = 0;
  bool ok_ = true;
};

constexpr std::array<std::string_view, 7> kDayNames = {"Mon", "Tue", "Wed", "Thu",
                                                       "Fri", "Sat", "Sun"};
constexpr std::array<std::string_view, 7> kLongDayNames = {
    "Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"};
constexpr std::array<std::string_view, 12> kMonthNames = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                                          "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};

template <size_t N>
bool one_of(std::string_view w, const std::array<std::string_view, N>& names) {
  return std::any_of(names.begin(), names.end(), [w](std::string_view n) { return ieq(w, n); });
}

int month_number(DateCursor& c) {
  std::string_view w = c.word();
  for (size_t i = 0; i < kMonthNames.size(); ++i) {
    if (ieq(w, kMonthNames[i])) return static_cast<int>(i) + 1;
  }
  c.fail();
  return 0;
}

struct Clock24 {
  int hour = 0;
  int minute = 0;
  int second = 0;
};

Clock24 time_of_day(DateCursor& c) {
  Clock24 t;
  t.hour = c.number(2, 2);
  c.expect(':');
  t.minute = c.number(2, 2);
  c.expect(':');
  t.second = c.number(2, 2);
  if (t.hour > 23 || t.minute > 59 || t.second > 60) c.fail();  // 60: a leap second
  return t;
}

void expect_gmt(DateCursor& c) {
  std::string_view zone = c.word();
  if (!ieq(zone, "GMT") && !ieq(zone, "UTC")) c.fail();
}

std::optional<std::chrono::sys_seconds> to_time_point(int year, int month, int day,
                                                      const Clock24& t) {
  using namespace std::chrono;
  year_month_day ymd{std::chrono::year{year}, std::chrono::month{static_cast<unsigned>(month)},
                     std::chrono::day{static_cast<unsigned>(day)}};
  if (!ymd.ok()) return std::nullopt;
  return sys_days{ymd} + hours{t.hour} + minutes{t.minute} + seconds{t.second};
}

// "Sun, 06 Nov 1994 08:49:37 GMT"
std::optional<std::chrono::sys_seconds> parse_imf_fixdate(std::string_view s) {
  DateCursor c(s);
  if (!one_of(c.word(), kDayNames)) return std::nullopt;
  c.expect(',');
  c.expect(' ');
  int day = c.number(1, 2);
  c.expect(' ');
  int month = month_number(c);
  c.expect(' ');
  int year = c.number(4, 4);
  c.expect(' ');
  Clock24 t = time_of_day(c);
  c.expect(' ');
  expect_gmt(c);
  if (!c.done()) return std::nullopt;
  return to_time_point(year, month, day, t);
}

// "Sunday, 06-Nov-94 08:49:37 GMT"
std::optional<std::chrono::sys_seconds> parse_rfc850(std::string_view s) {
  DateCursor c(s);
  if (!one_of(c.word(), kLongDayNames)) return std::nullopt;
  c.expect(',');
  c.expect(' ');
  int day = c.number(2, 2);
  c.expect('-');
  int month = month_number(c);
  c.expect('-');
  int yy = c.number(2, 2);
  c.expect(' ');
  Clock24 t = time_of_day(c);
  c.expect(' ');
  expect_gmt(c);
  if (!c.done()) return std::nullopt;
  // Two-digit years: RFC 9110 reads them as the nearest matching past year; 70..99 is the
  // 1900s and 00..69 the 2000s for any date this service will see.
  int year = yy >= 70 ? 1900 + yy : 2000 + yy;
  return to_time_point(year, month, day, t);
}

// "Sun Nov  6 08:49:37 1994"
std::optional<std::chrono::sys_seconds> parse_asctime(std::string_view s) {
  DateCursor c(s);
  if (!one_of(c.word(), kDayNames)) return std::nullopt;
  c.expect(' ');
  int month = month_number(c);
  c.expect(' ');
  c.skip_optional(' ');
  int day = c.number(1, 2);
  c.expect(' ');
  Clock24 t = time_of_day(c);
  c.expect(' ');
  int year = c.number(4, 4);
  if (!c.done()) return std::nullopt;
  return to_time_point(year, month, day, t);
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.front())) != 0) s.remove_prefix(1);
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.back())) != 0) s.remove_suffix(1);
  return s;
}

// "120" or "1.5": digits, optionally a dot and more digits.
std::optional<Duration> parse_delta_seconds(std::string_view s) {
  size_t dot = s.find('.');
  std::string_view whole = s.substr(0, dot);
  std::string_view fraction =
      dot == std::string_view::npos ? std::string_view{} : s.substr(dot + 1);
  auto all_digits = [](std::string_view p) { return std::all_of(p.begin(), p.end(), is_digit); };
  if (whole.empty() || !all_digits(whole)) return std::nullopt;
  if (dot != std::string_view::npos && (fraction.empty() || !all_digits(fraction))) {
    return std::nullopt;
  }
  double seconds = 0;
  auto [ptr, ec] = std::from_chars(s.data(), s.data() + s.size(), seconds);
  // Digit strings too long for a double come back as out of range; they are "very long".
  if (ec == std::errc::result_out_of_range) return kMaxRetryAfter;
  if (ec != std::errc() || ptr != s.data() + s.size()) return std::nullopt;
  if (!(seconds < to_seconds(kMaxRetryAfter))) return kMaxRetryAfter;
  return from_seconds(seconds);
}

}  // namespace

std::optional<Duration> parse_retry_after(std::string_view value,
                                          std::chrono::system_clock::time_point wall_now) {
  std::string_view s = trim(value);
  if (s.empty()) return std::nullopt;
  if (is_digit(s.front())) return parse_delta_seconds(s);

  auto when = parse_imf_fixdate(s);
  if (!when) when = parse_rfc850(s);
  if (!when) when = parse_asctime(s);
  if (!when) return std::nullopt;
  // Compare in whole seconds first: years far from now overflow a nanosecond difference.
  auto ahead_s = *when - std::chrono::floor<std::chrono::seconds>(wall_now);
  if (ahead_s > std::chrono::duration_cast<std::chrono::seconds>(kMaxRetryAfter)) {
    return kMaxRetryAfter;
  }
  if (ahead_s <= std::chrono::seconds(0)) return Duration::zero();
  auto ahead = std::chrono::duration_cast<Duration>(*when - wall_now);
  return std::clamp(ahead, Duration::zero(), kMaxRetryAfter);
}

}  // namespace floodgate::core
