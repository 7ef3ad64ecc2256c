#pragma once

#include <nlohmann/json.hpp>
#include <string>
#include <string_view>

namespace floodgate::log {

enum class Level { kDebug, kInfo, kWarn, kError };

/// Sets the lowest level written; "debug", "info", "warn", "error". False on an unknown name.
bool set_level(std::string_view name);

/// Writes one structured log line (JSON) to stderr: {"ts","level","msg", ...fields}.
void write(Level level, std::string_view msg, const nlohmann::json& fields = nullptr);

inline void debug(std::string_view m, const nlohmann::json& f = nullptr) {
  write(Level::kDebug, m, f);
}
inline void info(std::string_view m, const nlohmann::json& f = nullptr) {
  write(Level::kInfo, m, f);
}
inline void warn(std::string_view m, const nlohmann::json& f = nullptr) {
  write(Level::kWarn, m, f);
}
inline void error(std::string_view m, const nlohmann::json& f = nullptr) {
  write(Level::kError, m, f);
}

}  // namespace floodgate::log
