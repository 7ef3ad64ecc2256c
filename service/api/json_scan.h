#pragma once

#include <cstddef>
#include <functional>
#include <optional>
#include <string>
#include <string_view>

namespace floodgate::api {

/// Why a JSON text was refused by check_json: the field at fault ("runs[3].parameters.a") and
/// what is wrong with it.
struct JsonProblem {
  std::string field;
  std::string message;
};

/// Checks JSON text without building it: syntax (strings must be valid UTF-8), nesting no deeper
/// than `max_depth` containers, and every number one that floodgate's JSON library carries
/// exactly (integers within 64 bits; other numbers whose decimal value survives a 64-bit float).
/// Iterative, so no input can exhaust the stack; `field_prefix` starts the names it reports.
std::optional<JsonProblem> check_json(std::string_view text, int max_depth,
                                      const std::string& field_prefix = "");

/// Visits the members of a JSON object in text already accepted by check_json: each decoded key
/// with its value's text. Stops early when `visit` returns false. False if `text` is no object.
bool for_each_member(std::string_view text,
                     const std::function<bool(const std::string&, std::string_view)>& visit);

/// Visits the elements of a JSON array in text already accepted by check_json. Stops early when
/// `visit` returns false. False if `text` is no array.
bool for_each_element(std::string_view text, const std::function<bool(std::string_view)>& visit);

/// The first non-blank character of a JSON text, or 0.
char json_kind(std::string_view text);

}  // namespace floodgate::api
