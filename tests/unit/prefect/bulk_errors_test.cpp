#include "prefect/bulk_errors.h"

#include <gtest/gtest.h>

#include <string>

#include "prefect/transient.h"

namespace floodgate::prefect {
namespace {

// Each text below is what Prefect's bulk create puts in "error" for one FAILED run, built the
// way the server builds it (src/prefect/server/api/deployments.py, 3.9.1, with SQLAlchemy 2.0
// and 2.1 as Prefect 3.2-3.9 install them).

// str(sqlalchemy.exc.OperationalError) on a locked SQLite database.
const std::string kSqliteLocked =
    "(sqlite3.OperationalError) database is locked\n"
    "[SQL: INSERT INTO flow_run (flow_id, deployment_id, parameters, idempotency_key, id) VALUES "
    "(:flow_id, :deployment_id, :parameters, :idempotency_key, :id) ON CONFLICT DO NOTHING]\n"
    "[parameters: {'flow_id': 'f', 'parameters': '{\"note\": \"Parameter validation failed: "
    "Invalid jinja\"}'}]\n"
    "(Background on this error at: https://sqlalche.me/e/20/e3q8)";

// A later run of the same request once an insert broke the shared transaction.
const std::string kPendingRollback =
    "This Session's transaction has been rolled back due to a previous exception during flush. "
    "To begin a new transaction with this Session, first issue Session.rollback(). Original "
    "exception was: (sqlite3.IntegrityError) UNIQUE constraint failed: flow_run.flow_id, "
    "flow_run.idempotency_key\n(Background on this error at: https://sqlalche.me/e/20/gkpj) "
    "(Background on this error at: https://sqlalche.me/e/20/7s2a)";

// asyncpg's server errors: SQLAlchemy 2.0 quotes the asyncpg class, 2.1 only its message.
const std::string kPgSerialize20 =
    "(sqlalchemy.dialects.postgresql.asyncpg.Error) <class "
    "'asyncpg.exceptions.SerializationError'>: could not serialize access due to concurrent "
    "update\n[SQL: INSERT INTO flow_run ...]\n"
    "(Background on this error at: https://sqlalche.me/e/20/dbapi)";
const std::string kPgDeadlock21 =
    "(sqlalchemy.dialects.postgresql.asyncpg.Error) deadlock detected\n"
    "[SQL: INSERT INTO flow_run ...]\n(Background on this error at: "
    "https://sqlalche.me/e/21/dbapi)";
const std::string kPgLockTimeout =
    "(sqlalchemy.dialects.postgresql.asyncpg.Error) <class "
    "'asyncpg.exceptions.LockNotAvailableError'>: canceling statement due to lock timeout\n"
    "(Background on this error at: https://sqlalche.me/e/20/dbapi)";
const std::string kPgConnectionLost =
    "(sqlalchemy.dialects.postgresql.asyncpg.InterfaceError) <class "
    "'asyncpg.exceptions.ConnectionDoesNotExistError'>: connection was closed in the middle of "
    "operation\n(Background on this error at: https://sqlalche.me/e/20/rvf5)";
const std::string kPoolTimeout =
    "QueuePool limit of size 5 overflow 10 reached, connection timed out, timeout 30.00 "
    "(Background on this error at: https://sqlalche.me/e/20/3o7r)";

BulkErrorClass kind(const std::string& text) { return classify_bulk_error(text).kind; }

TEST(BulkErrorsTest, DatabaseContentionIsTransient) {
  for (const auto& t : {kSqliteLocked, kPendingRollback, kPgSerialize20, kPgDeadlock21,
                        kPgLockTimeout, kPgConnectionLost, kPoolTimeout}) {
    EXPECT_EQ(kind(t), BulkErrorClass::kContention) << t;
  }
  EXPECT_EQ(classify_bulk_error(kSqliteLocked).rule, "sqlalchemy:e3q8");
  // The last code wins: a rolled-back transaction is not the run's fault, whatever the insert
  // before it hit.
  EXPECT_EQ(classify_bulk_error(kPendingRollback).rule, "sqlalchemy:7s2a");
  EXPECT_EQ(classify_bulk_error(kPgSerialize20).rule, "postgres:transient");
  // A text cut before its code still names the driver's OperationalError.
  EXPECT_EQ(kind("(sqlite3.OperationalError) database is locked"), BulkErrorClass::kContention);
}

TEST(BulkErrorsTest, ParametersQuotedInADatabaseErrorDoNotMakeItAVerdict) {
  // kSqliteLocked quotes parameters that read like Prefect's verdicts.
  const Classification c = classify_bulk_item(kSqliteLocked);
  EXPECT_EQ(c.verdict, Verdict::kRetryable);
  EXPECT_TRUE(c.transient);
  EXPECT_FALSE(c.unclassified);
  EXPECT_EQ(c.reason, "bulk_contention");
}

TEST(BulkErrorsTest, PrefectsVerdictsOnTheRunArePermanent) {
  const std::pair<const char*, const char*> verdicts[] = {
      {"Parameter validation failed: Validation failed for field 'n'. Failure reason: 'x' is "
       "not of type 'integer'",
       "prefect:parameter_validation"},
      {"Parameter validation failed: Validation failed. Failure reason: 'n' is a required "
       "property",
       "prefect:parameter_validation"},
      {"Parameter schema enforcement is enabled but deployment has no valid schema.",
       "prefect:no_parameter_schema"},
      {"Invalid schema: circular references detected.", "prefect:circular_schema"},
      {"Cannot create flow run in work queue gpu because deployment is not associated with a "
       "work pool.",
       "prefect:work_queue"},
      {"Error creating flow run: Validation failed for field 'image'. Failure reason: 5 is not "
       "of type 'string'",
       "prefect:job_variables"},
      {"Invalid jinja: unexpected '}'", "prefect:hydration"},
      {"Invalid JSON: Expecting value: line 1 column 1 (char 0)", "prefect:hydration"},
      {"Missing 'value' key in __prefect object", "prefect:hydration"},
      {"Variable 'bucket' not found in workspace.", "prefect:hydration"},
      {"1 validation error for FlowRun\nname\n  Input should be a valid string "
       "[type=string_type, input_value=5, input_type=int]",
       "pydantic:validation"},
      {"2 validation errors for FlowRun\nname\n  ...", "pydantic:validation"},
      {"(sqlite3.DataError) string or blob too big\n"
       "(Background on this error at: https://sqlalche.me/e/20/9h9h)",
       "sqlalchemy:9h9h"},
  };
  for (const auto& [text, rule] : verdicts) {
    const BulkError e = classify_bulk_error(text);
    EXPECT_EQ(e.kind, BulkErrorClass::kRejected) << text;
    EXPECT_EQ(e.rule, rule) << text;
    const Classification c = classify_bulk_item(text);
    EXPECT_EQ(c.verdict, Verdict::kPermanent) << text;
    EXPECT_FALSE(c.transient) << text;
    EXPECT_EQ(c.reason, "bulk_rejected") << text;
    EXPECT_NE(c.message.find(text), std::string::npos);
  }
}

TEST(BulkErrorsTest, AnythingElseIsUnknownAndRetriedAsTransient) {
  const char* unknown[] = {
      "",           // str(asyncio.TimeoutError())
      "'flow_id'",  // str(KeyError('flow_id'))
      // A unique or foreign-key race: a retry either finds the run by its key or fails for good
      // on Prefect's own checks.
      "(sqlite3.IntegrityError) FOREIGN KEY constraint failed\n"
      "(Background on this error at: https://sqlalche.me/e/20/gkpj)",
      "(sqlalchemy.dialects.postgresql.asyncpg.Error) <class "
      "'asyncpg.exceptions.UndefinedColumnError'>: column \"labels\" does not exist\n"
      "(Background on this error at: https://sqlalche.me/e/20/dbapi)",
      // Words of a verdict, but not where Prefect puts them.
      "something about Parameter validation failed: later in the text",
      "a work queue was not found",
  };
  for (const char* text : unknown) {
    EXPECT_EQ(kind(text), BulkErrorClass::kUnknown) << text;
    const Classification c = classify_bulk_item(text);
    EXPECT_EQ(c.verdict, Verdict::kRetryable) << text;
    EXPECT_TRUE(c.transient) << text;
    EXPECT_TRUE(c.unclassified) << text;
    EXPECT_EQ(c.reason, "bulk_item_error") << text;
  }
}

}  // namespace
}  // namespace floodgate::prefect
