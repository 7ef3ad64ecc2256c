#pragma once

#include <string_view>

namespace floodgate::prefect {

// What one FAILED element of `POST /deployments/{id}/create_flow_run/bulk` carries, read off
// Prefect's server (src/prefect/server/api/deployments.py, bulk_create_flow_runs_from_deployment,
// 3.6.16 to 3.9.x). The server creates the runs one after the other inside ONE transaction and
// turns each failure into {"status": "FAILED", "error": <text>}:
//   - its own verdicts on the run, fixed f-strings: "Parameter validation failed: <reason>",
//     "Parameter schema enforcement is enabled but deployment has no valid schema.",
//     "Invalid schema: circular references detected.", "Cannot create flow run in work queue
//     <q> because deployment is not associated with a work pool.", and the 422 detail of the
//     job-variable check "Error creating flow run: Validation failed ..." (validation.py);
//   - str(exc) of anything else raised while creating that run. Of those, what a run's own data
//     causes: hydration errors (utilities/schema_tools/hydration.py: "Invalid jinja: ...",
//     "Invalid JSON: ...", "Missing 'value' key in __prefect object", "Variable 'x' not found
//     in workspace.") and pydantic's "1 validation error for FlowRun ..."; and what the
//     database causes, SQLAlchemy's exceptions, whose str() is "(<driver module>.<Class>)
//     <driver message>" then "[SQL: ...]", "[parameters: ...]" and "(Background on this error
//     at: https://sqlalche.me/e/20/<code>)", the code naming SQLAlchemy's class (e3q8
//     OperationalError, 7s2a PendingRollbackError, ...). Once one insert failed, the shared
//     transaction is dead and every later run of the request fails with PendingRollbackError
//     ("This Session's transaction has been rolled back due to a previous exception during
//     flush. ... Original exception was: ...").

/// The class of one per-item error of a bulk create.
enum class BulkErrorClass {
  kContention,  // the database was busy or out of reach: the same run will succeed later
  kRejected,    // Prefect's verdict on the run itself: retrying the same body fails the same way
  kUnknown,     // a text none of the rules recognise: retried as transient, logged once
};

/// A classified per-item error: its class and which rule said so (for logs and tests).
struct BulkError {
  BulkErrorClass kind = BulkErrorClass::kUnknown;
  std::string_view rule;  // e.g. "sqlalchemy:e3q8", "prefect:parameter_validation", "unknown"
};

/// Classifies the `error` text of one FAILED element of a bulk create answer.
BulkError classify_bulk_error(std::string_view error);

}  // namespace floodgate::prefect
