#pragma once

#include <chrono>
#include <cstdint>
#include <string>

namespace floodgate::engine {

/// Unix milliseconds now, from the wall clock (for timestamps shown to users).
int64_t wall_ms();
/// RFC 3339 UTC with milliseconds, e.g. "2026-11-28T12:00:00.123Z".
std::string format_time_ms(int64_t unix_ms);

}  // namespace floodgate::engine
