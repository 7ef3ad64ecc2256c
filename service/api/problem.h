#pragma once

#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "api/batch_request.h"
#include "api/http_server.h"

namespace floodgate::api {

/// An application/problem+json response (RFC 9457) naming the field at fault.
/// `field` is left out only when absent: an empty name is a real key (a body member named "").
ServerResponse problem(int status, const std::string& detail,
                       const std::optional<std::string>& field = std::nullopt,
                       const std::vector<FieldError>& errors = {});

/// A JSON response; invalid UTF-8 in strings is replaced, never thrown on.
ServerResponse json_response(int status, const nlohmann::json& body);

/// The 404 for a batch id nobody knows.
ServerResponse no_such_batch(const std::string& id);

}  // namespace floodgate::api
