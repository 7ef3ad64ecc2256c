#include "prefect/bulk_errors.h"

#include <array>
#include <cctype>

namespace floodgate::prefect {

namespace {

bool starts_with(std::string_view text, std::string_view prefix) {
  return text.substr(0, prefix.size()) == prefix;
}

bool contains(std::string_view text, std::string_view needle) {
  return text.find(needle) != std::string_view::npos;
}

struct PrefixRule {
  std::string_view prefix;
  std::string_view rule;
};

// Prefect's own words for a run it will not create, each the start of an f-string in
// deployments.py (bulk_create_flow_runs_from_deployment), validation.py
// (validate_job_variables_for_deployment_flow_run) or hydration.py (HydrationError.message).
constexpr std::array<PrefixRule, 9> kVerdicts = {{
    {"Parameter validation failed: ", "prefect:parameter_validation"},
    {"Parameter schema enforcement is enabled but deployment has no valid schema",
     "prefect:no_parameter_schema"},
    {"Invalid schema: circular references", "prefect:circular_schema"},
    {"Cannot create flow run in work queue ", "prefect:work_queue"},
    {"Error creating flow run: ", "prefect:job_variables"},
    {"Invalid jinja", "prefect:hydration"},
    {"Invalid JSON", "prefect:hydration"},
    {"Missing '", "prefect:hydration"},   // "Missing 'value' key in __prefect object"
    {"Variable '", "prefect:hydration"},  // "Variable 'x' not found in workspace."
}};

// pydantic's str() of a ValidationError: "1 validation error for FlowRun\n...",
// "3 validation errors for FlowRun\n...".
bool is_pydantic_validation(std::string_view text) {
  size_t i = 0;
  while (i < text.size() && std::isdigit(static_cast<unsigned char>(text[i]))) ++i;
  if (i == 0) return false;
  std::string_view rest = text.substr(i);
  return starts_with(rest, " validation error for ") ||
         starts_with(rest, " validation errors for ");
}

// The code of SQLAlchemy's "(Background on this error at: https://sqlalche.me/e/20/e3q8)",
// the last one in the text (a PendingRollbackError quotes its original error, code and all,
// before its own).
std::string_view sqlalchemy_code(std::string_view text) {
  constexpr std::string_view kLink = "https://sqlalche.me/e/";
  size_t at = text.rfind(kLink);
  if (at == std::string_view::npos) return {};
  std::string_view tail = text.substr(at + kLink.size());  // "20/e3q8)"
  size_t slash = tail.find('/');
  if (slash == std::string_view::npos) return {};
  tail = tail.substr(slash + 1);
  size_t end = 0;
  while (end < tail.size() && std::isalnum(static_cast<unsigned char>(tail[end]))) ++end;
  return tail.substr(0, end);
}

// The driver's exception class SQLAlchemy names first: "(sqlite3.OperationalError) database is
// locked" -> "sqlite3.OperationalError".
std::string_view driver_class(std::string_view text) {
  if (!starts_with(text, "(")) return {};
  size_t close = text.find(") ");
  if (close == std::string_view::npos || close > 120) return {};
  std::string_view name = text.substr(1, close - 1);
  for (char c : name) {
    if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '_')) return {};
  }
  return name;
}

// PostgreSQL's server messages for contention and for a server that is momentarily out of
// reach (SQLSTATE 40001 serialization_failure, 40P01 deadlock_detected, 55P03
// lock_not_available, 57014 query_canceled by a lock or statement timeout, 53300
// too_many_connections, 57P01-57P03 shutdown/start-up), and asyncpg's text for a connection lost
// mid-query. Only looked for inside a database error SQLAlchemy wrapped: they name the
// database's state, never the run.
constexpr std::array<std::string_view, 11> kPostgresTransient = {
    "could not serialize access",
    "deadlock detected",
    "could not obtain lock",
    "canceling statement due to lock timeout",
    "canceling statement due to statement timeout",
    "sorry, too many clients already",
    "remaining connection slots are reserved",
    "the database system is starting up",
    "the database system is shutting down",
    "terminating connection due to administrator command",
    "connection was closed in the middle of operation",
};

BulkError database_error(std::string_view text, std::string_view code, std::string_view driver) {
  // SQLAlchemy's codes (sqlalchemy/exc.py, pool/impl.py, engine/base.py, orm/session.py).
  if (code == "e3q8") return {BulkErrorClass::kContention, "sqlalchemy:e3q8"};  // Operational
  if (code == "7s2a") return {BulkErrorClass::kContention, "sqlalchemy:7s2a"};  // PendingRollback
  if (code == "8s2b") return {BulkErrorClass::kContention, "sqlalchemy:8s2b"};  // invalid txn
  if (code == "3o7r") return {BulkErrorClass::kContention, "sqlalchemy:3o7r"};  // pool timeout
  if (code == "rvf5") return {BulkErrorClass::kContention, "sqlalchemy:rvf5"};  // Interface
  if (code == "9h9h") return {BulkErrorClass::kRejected, "sqlalchemy:9h9h"};    // DataError
  // Without a code (a cut text), the driver's class says as much.
  if (code.empty() &&
      (driver.ends_with("OperationalError") || driver.ends_with("InterfaceError"))) {
    return {BulkErrorClass::kContention, "driver:operational"};
  }
  if (code.empty() && driver.ends_with("DataError")) {
    return {BulkErrorClass::kRejected, "driver:data"};
  }
  // asyncpg's server errors arrive as the generic DBAPIError ("dbapi") or InternalError: the
  // PostgreSQL message tells contention apart. It sits on the first line, before "[SQL: ...]".
  std::string_view head = text.substr(0, text.find('\n'));
  head = head.substr(0, head.find(" [SQL: "));
  for (std::string_view m : kPostgresTransient) {
    if (contains(head, m)) return {BulkErrorClass::kContention, "postgres:transient"};
  }
  return {BulkErrorClass::kUnknown, "unknown:database"};
}

}  // namespace

BulkError classify_bulk_error(std::string_view error) {
  for (const auto& v : kVerdicts) {
    if (starts_with(error, v.prefix)) return {BulkErrorClass::kRejected, v.rule};
  }
  if (is_pydantic_validation(error)) return {BulkErrorClass::kRejected, "pydantic:validation"};
  // QueuePool exhaustion carries its code, but a text cut before it is still recognisable.
  if (starts_with(error, "QueuePool limit of size ")) {
    return {BulkErrorClass::kContention, "sqlalchemy:3o7r"};
  }
  const std::string_view code = sqlalchemy_code(error);
  const std::string_view driver = driver_class(error);
  if (!code.empty() || !driver.empty()) return database_error(error, code, driver);
  return {BulkErrorClass::kUnknown, "unknown"};
}

}  // namespace floodgate::prefect
