#include "api/problem.h"

namespace floodgate::api {

using nlohmann::json;

namespace {

const char* title_for(int status) {
  switch (status) {
    case 400:
      return "Bad Request";
    case 404:
      return "Not Found";
    case 401:
      return "Unauthorized";
    case 403:
      return "Forbidden";
    case 405:
      return "Method Not Allowed";
    case 409:
      return "Conflict";
    case 413:
      return "Payload Too Large";
    case 415:
      return "Unsupported Media Type";
    case 422:
      return "Unprocessable Content";
    case 500:
      return "Internal Server Error";
    case 429:
      return "Too Many Requests";
    case 503:
      return "Service Unavailable";
    default:
      return "Error";
  }
}

}  // namespace

ServerResponse json_response(int status, const json& body) {
  ServerResponse r;
  r.status = status;
  r.body = body.dump(-1, ' ', false, json::error_handler_t::replace);
  return r;
}

ServerResponse problem(int status, const std::string& detail,
                       const std::optional<std::string>& field,
                       const std::vector<FieldError>& errors) {
  json j = {{"type", "about:blank"},
            {"title", title_for(status)},
            {"status", status},
            {"detail", detail}};
  if (field) j["field"] = *field;
  if (!errors.empty()) {
    json list = json::array();
    for (const auto& e : errors) list.push_back({{"field", e.field}, {"message", e.message}});
    j["errors"] = std::move(list);
  }
  ServerResponse r = json_response(status, j);
  r.content_type = "application/problem+json";
  return r;
}

ServerResponse no_such_batch(const std::string& id) {
  return problem(404, "no batch with id " + id, "id");
}

}  // namespace floodgate::api
