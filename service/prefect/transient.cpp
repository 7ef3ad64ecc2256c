#include "prefect/transient.h"

#include <cctype>
#include <nlohmann/json.hpp>

#include "prefect/bulk_errors.h"

namespace floodgate::prefect {

Classification classify_bulk_item(std::string_view error) {
  Classification c;
  const BulkError e = classify_bulk_error(error);
  c.message = "Prefect could not create the run: " + std::string(error);
  switch (e.kind) {
    case BulkErrorClass::kContention:
      c.verdict = Verdict::kRetryable;
      c.transient = true;
      c.reason = "bulk_contention";
      break;
    case BulkErrorClass::kRejected:
      c.verdict = Verdict::kPermanent;
      c.reason = "bulk_rejected";
      c.message = "Prefect rejected the run: " + std::string(error);
      break;
    case BulkErrorClass::kUnknown:
      c.verdict = Verdict::kRetryable;
      c.transient = true;
      c.unclassified = true;
      c.reason = "bulk_item_error";
      break;
  }
  return c;
}

int bulk_contention_count(const std::string& body) {
  if (body.find("FAILED") == std::string::npos) return 0;
  auto results = parse_bulk_results(body);
  if (!results) return 0;
  int n = 0;
  for (const auto& r : *results) {
    if (!r.created && classify_bulk_item(r.error).reason == "bulk_contention") ++n;
  }
  return n;
}

bool is_locked_database(const HttpResponse& response) {
  if (response.status != 503) return false;
  auto j = nlohmann::json::parse(response.body, nullptr, false);
  return j.is_object() && j.contains("exception_message");
}

bool is_stale_connection(const HttpResponse& response) {
  return response.status == 0 && response.transport == TransportError::kStaleConnection;
}

bool is_outage(const HttpResponse& response, const Classification& c) {
  return c.verdict == Verdict::kRetryable && !is_stale_connection(response) &&
         !is_locked_database(response);
}

bool is_final_state_type(std::string_view type) {
  return type == "COMPLETED" || type == "FAILED" || type == "CRASHED" || type == "CANCELLED";
}

bool may_have_created(const HttpResponse& response) {
  if (response.status == 0) {
    // Failing to write the request on a connection the server had closed sends nothing.
    return response.timed_out ||
           response.error.find("Failed to write request body") == std::string::npos;
  }
  // SQLite's and PostgreSQL's contention roll the transaction back and Prefect answers 503; any
  // other 5xx may come from a proxy in front of a server that committed.
  return response.status >= 500 && response.status != 503;
}

std::string first_line(std::string_view text, size_t max_chars) {
  size_t end = text.find_first_of("\r\n");
  std::string_view line = text.substr(0, end);
  // SQLAlchemy puts the statement on the next line; some drivers keep it on the same one.
  for (std::string_view marker :
       {std::string_view(" [SQL: "), std::string_view(" [parameters: ")}) {
    size_t at = line.find(marker);
    if (at != std::string_view::npos) line = line.substr(0, at);
  }
  while (!line.empty() && std::isspace(static_cast<unsigned char>(line.back()))) {
    line.remove_suffix(1);
  }
  if (line.size() <= max_chars) return std::string(line);
  // Cut on a UTF-8 character boundary.
  size_t cut = max_chars;
  while (cut > 0 && (static_cast<unsigned char>(line[cut]) & 0xC0) == 0x80) --cut;
  return std::string(line.substr(0, cut)) + "\u2026";
}

bool OnceFilter::first(std::string_view text) {
  std::string key(text);
  if (seen_.count(key) != 0) return false;
  if (seen_.size() < max_entries_) seen_.insert(std::move(key));
  return true;
}

}  // namespace floodgate::prefect
