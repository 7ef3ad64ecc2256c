#pragma once

#include <cstddef>
#include <string>
#include <string_view>
#include <unordered_set>

#include "prefect/http_client.h"
#include "prefect/prefect_api.h"

namespace floodgate::prefect {

// Prefect's answers that say "not now" rather than "no". A self-hosted server on SQLite makes a
// contended write wait (its busy timeout), then fails it with "database is locked": a whole
// request answers 503 {"exception_message": "Service Unavailable"}, one run of a bulk create
// answers {"status": "FAILED", "error": "(sqlite3.OperationalError) database is locked\n[SQL:
// ...]\n[parameters: ...]"} (str() of SQLAlchemy's exception). On PostgreSQL the same load shows
// as serialization failures, deadlocks and lock timeouts.

/// How one FAILED element of a bulk create must be treated (classes in bulk_errors.h):
/// kPermanent for Prefect's verdict on the run ("bulk_rejected"), otherwise kRetryable and
/// transient: "bulk_contention" for database contention, "bulk_item_error" (unclassified = true)
/// for any text not recognised.
Classification classify_bulk_item(std::string_view error);

/// How many FAILED elements of a bulk create answer name database contention; cheap when none
/// failed. 0 for a body that is not a bulk answer.
int bulk_contention_count(const std::string& body);

/// Whether a whole-request answer is Prefect's own "retry later" for a database error it knows
/// to be transient (SQLite busy/locked, PostgreSQL connection trouble): 503 with the body
/// {"exception_message": "Service Unavailable"}. That is load on a server that answers, not an
/// outage: it slows floodgate down but does not count towards the circuit breaker.
bool is_locked_database(const HttpResponse& response);

/// Whether the request failed at once on a pooled connection the server had already closed:
/// nothing was sent, so it says nothing about Prefect's health or load.
bool is_stale_connection(const HttpResponse& response);

/// Whether an answer counts towards the circuit breaker: Prefect failing or out of reach, not
/// a stale pooled connection and not a locked database (load on a server that answers).
bool is_outage(const HttpResponse& response, const Classification& c);

/// Whether Prefect's state type is final (the run will not change state again by itself).
bool is_final_state_type(std::string_view type);

/// Whether a create that got this answer may still have created its run: the request reached
/// the server (or may have) and no answer says what happened (a timeout, a lost connection, a
/// 5xx from a proxy or a server that failed after its commit).
bool may_have_created(const HttpResponse& response);

/// The first line of an error text, without the SQL statement and parameters SQLAlchemy appends,
/// at most `max_chars` characters (a longer line ends with "…"). For `last_error`: the full text
/// goes to the debug log.
std::string first_line(std::string_view text, size_t max_chars = 300);

/// Says yes once per distinct text (up to a bound): errors not recognised are logged in full
/// the first time they are seen, not on every retry.
class OnceFilter {
 public:
  explicit OnceFilter(size_t max_entries = 256) : max_entries_(max_entries) {}
  /// True the first time `text` is seen (and always once `max_entries` distinct texts were
  /// remembered: better a repeated log line than a lost one).
  bool first(std::string_view text);

 private:
  size_t max_entries_;
  std::unordered_set<std::string> seen_;
};

}  // namespace floodgate::prefect
