#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace floodgate::core {

/// RFC 3339 UTC with milliseconds, e.g. "2026-11-28T12:00:00.123Z", for Unix milliseconds.
std::string format_time_ms(int64_t unix_ms);

/// An ISO 8601 / RFC 3339 date and time as Prefect writes it ("2026-11-28T12:00:00.123456Z",
/// "…+00:00", or without a zone, read as UTC; any number of fraction digits, kept to the
/// microsecond); none when `text` is not one.
std::optional<std::chrono::system_clock::time_point> parse_time(std::string_view text);

}  // namespace floodgate::core
