#pragma once

#include <cstdint>
#include <string>

namespace floodgate::core {

/// RFC 3339 UTC with milliseconds, e.g. "2026-11-28T12:00:00.123Z", for Unix milliseconds.
std::string format_time_ms(int64_t unix_ms);

}  // namespace floodgate::core
