#include "http/beast_connection.h"

#include <boost/beast/http/error.hpp>
#include <cctype>
#include <nlohmann/json.hpp>
#include <stdexcept>

namespace floodgate::http::beast_detail {

namespace beast = boost::beast;
namespace bhttp = boost::beast::http;

namespace {
constexpr const char* kProblemType = "application/problem+json";
}  // namespace

api::ServerResponse problem(int status, const std::string& title, const std::string& detail) {
  api::ServerResponse response;
  response.status = status;
  response.content_type = kProblemType;
  nlohmann::ordered_json body;
  body["type"] = "about:blank";
  body["title"] = title;
  body["status"] = status;
  body["detail"] = detail;
  response.body = body.dump();
  return response;
}

api::ServerResponse closing(api::ServerResponse response) {
  response.headers["Connection"] = "close";
  return response;
}

api::ServerResponse too_large(size_t limit) {
  return closing(problem(413, "Payload Too Large",
                         "request body exceeds the limit of " + std::to_string(limit) + " bytes"));
}

api::ServerResponse busy() {
  auto response = problem(503, "Service Unavailable",
                          "floodgate is parsing as much as its memory budget allows "
                          "(--max-parse-memory); send the request again shortly");
  response.headers["Retry-After"] = "1";
  return closing(std::move(response));
}

api::ServerResponse bad_request(const std::string& detail) {
  return closing(problem(400, "Bad Request", detail));
}

std::string lower(std::string s) {
  for (auto& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

std::string decode_path(std::string_view in) {
  std::string out;
  out.reserve(in.size());
  auto hex = [](char c) -> int {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
  };
  for (size_t i = 0; i < in.size(); ++i) {
    if (in[i] != '%') {
      out += in[i];
      continue;
    }
    if (i + 2 >= in.size()) {
      throw std::invalid_argument("truncated percent escape in the path");
    }
    const int high = hex(in[i + 1]);
    const int low = hex(in[i + 2]);
    if (high < 0 || low < 0) throw std::invalid_argument("invalid percent escape in the path");
    out += static_cast<char>(high * 16 + low);
    i += 2;
  }
  return out;
}

api::ServerResponse bad_length() {
  return bad_request(
      "Content-Length must be one decimal number (repeated or conflicting headers are refused)");
}

std::optional<api::ServerResponse> answer_for_head_error(const beast::error_code& ec) {
  if (ec == bhttp::error::bad_content_length) return bad_length();
  if (ec == bhttp::error::bad_transfer_encoding) {
    return bad_request(
        "Content-Length and Transfer-Encoding may not both be sent, nor Transfer-Encoding twice");
  }
  if (ec == bhttp::error::header_limit) {
    return closing(
        problem(431, "Request Header Fields Too Large",
                "the request head exceeds " + std::to_string(kMaxHeaderBytes) + " bytes"));
  }
  if (ec == beast::error::timeout || ec == bhttp::error::end_of_stream ||
      ec == bhttp::error::partial_message || ec == asio::error::eof ||
      ec == asio::error::connection_reset || ec == asio::error::operation_aborted) {
    return std::nullopt;
  }
  if (ec.category() == beast::error_code(bhttp::error::bad_target).category()) {
    return bad_request("malformed request: " + ec.message());
  }
  return std::nullopt;
}

}  // namespace floodgate::http::beast_detail
