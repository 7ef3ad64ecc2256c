#include "prefect/transient.h"

#include <gtest/gtest.h>

#include <chrono>
#include <string>

#include "prefect/prefect_api.h"

namespace floodgate::prefect {
namespace {

// The per-run error of Prefect's bulk create on a locked SQLite database: str() of SQLAlchemy's
// OperationalError, statement and parameters included.
const std::string kSqliteLocked =
    "(sqlite3.OperationalError) database is locked\n"
    "[SQL: INSERT INTO flow_run (flow_id, deployment_id, parameters, idempotency_key, id) VALUES "
    "(:flow_id, :deployment_id, :parameters, :idempotency_key, :id)]\n"
    "[parameters: {'flow_id': 'f', 'parameters': '{\"note\": \"schema validation\"}'}]\n"
    "(Background on this error at: https://sqlalche.me/e/20/e3q8)";
const std::string kPgSerialize =
    "(sqlalchemy.dialects.postgresql.asyncpg.Error) <class "
    "'asyncpg.exceptions.SerializationError'>: could not serialize access due to concurrent "
    "update";
const std::string kPgDeadlock =
    "(sqlalchemy.dialects.postgresql.asyncpg.Error) <class "
    "'asyncpg.exceptions.DeadlockDetectedError'>: deadlock detected";
const std::string kPgLockTimeout =
    "(sqlalchemy.dialects.postgresql.asyncpg.Error) <class "
    "'asyncpg.exceptions.LockNotAvailableError'>: canceling statement due to lock timeout";
const std::string kPool =
    "QueuePool limit of size 5 overflow 10 reached, connection timed out, timeout 30.00";

TEST(TransientTest, BulkItemContentionIsTransientEvenWhenItsParametersSayValidation) {
  // The parameters quoted after the first line must not make a locked insert a rejection.
  Classification c = classify_bulk_item(kSqliteLocked);
  EXPECT_EQ(c.verdict, Verdict::kRetryable);
  EXPECT_TRUE(c.transient);
  EXPECT_FALSE(c.unclassified);
  EXPECT_EQ(c.reason, "bulk_contention");
  EXPECT_NE(c.message.find("[SQL:"), std::string::npos);  // the full text, for the debug log
  for (const auto& t : {kPgSerialize, kPgDeadlock, kPgLockTimeout, kPool}) {
    EXPECT_EQ(classify_bulk_item(t).reason, "bulk_contention") << t;
  }
}

TEST(TransientTest, BulkContentionCount) {
  nlohmann::json body = {
      {"results",
       {{{"flow_run_id", "a"}, {"status", "CREATED"}, {"error", nullptr}},
        {{"flow_run_id", nullptr}, {"status", "FAILED"}, {"error", kSqliteLocked}},
        {{"flow_run_id", nullptr}, {"status", "FAILED"}, {"error", kPgDeadlock}},
        {{"flow_run_id", nullptr},
         {"status", "FAILED"},
         {"error", "Parameter validation failed for run 'x'"}}}}};
  EXPECT_EQ(bulk_contention_count(body.dump()), 2);
  nlohmann::json ok = {{"results", {{{"flow_run_id", "a"}, {"status", "CREATED"}}}}};
  EXPECT_EQ(bulk_contention_count(ok.dump()), 0);
  EXPECT_EQ(bulk_contention_count("FAILED, not JSON"), 0);
}

HttpResponse answer(int status, bool timed_out = false, std::string error = "") {
  HttpResponse r;
  r.status = status;
  r.timed_out = timed_out;
  r.error = std::move(error);
  return r;
}

TEST(TransientTest, EveryTransientAnswerIsMarkedTransient) {
  const auto now = std::chrono::system_clock::now();
  for (int s : {408, 429, 500, 502, 503, 504, 599}) {
    Classification c = classify(answer(s), now);
    EXPECT_TRUE(c.transient) << s;
    EXPECT_FALSE(c.unclassified) << s;
  }
  EXPECT_TRUE(classify(answer(0, true), now).transient);
  EXPECT_TRUE(classify(answer(0, false, "Connection reset"), now).transient);
  for (int s : {400, 401, 404, 409, 422}) EXPECT_FALSE(classify(answer(s), now).transient) << s;
  Classification odd = classify(answer(302), now);
  EXPECT_EQ(odd.verdict, Verdict::kRetryable);
  EXPECT_TRUE(odd.transient);
  EXPECT_TRUE(odd.unclassified);
}

TEST(TransientTest, PrefectsOwnRetryableAnswerIsALockedDatabase) {
  HttpResponse locked = answer(503);
  locked.body = R"({"exception_message":"Service Unavailable"})";
  EXPECT_TRUE(is_locked_database(locked));
  HttpResponse proxy = answer(503);
  proxy.body = "<html>503 Service Temporarily Unavailable</html>";
  EXPECT_FALSE(is_locked_database(proxy));
  HttpResponse detail = answer(503);
  detail.body = R"({"detail":"Service Unavailable"})";
  EXPECT_FALSE(is_locked_database(detail));
  HttpResponse other = answer(500);
  other.body = R"({"exception_message":"Internal Server Error"})";
  EXPECT_FALSE(is_locked_database(other));
}

TEST(TransientTest, WhichAnswersMayHaveCreatedTheRun) {
  EXPECT_TRUE(may_have_created(answer(0, true)));
  EXPECT_TRUE(may_have_created(answer(0, false, "Connection reset by peer")));
  EXPECT_FALSE(may_have_created(answer(0, false, "Failed to write request body")));
  EXPECT_TRUE(may_have_created(answer(502)));
  EXPECT_TRUE(may_have_created(answer(500)));
  EXPECT_FALSE(may_have_created(answer(503)));  // contention rolled the insert back
  EXPECT_FALSE(may_have_created(answer(422)));
  EXPECT_FALSE(may_have_created(answer(201)));
}

TEST(TransientTest, FirstLineDropsTheStatementAndParameters) {
  EXPECT_EQ(first_line(kSqliteLocked), "(sqlite3.OperationalError) database is locked");
  EXPECT_EQ(first_line("(x) database is locked [SQL: INSERT INTO t] [parameters: (1,)]"),
            "(x) database is locked");
  EXPECT_EQ(first_line("one line  \r\nsecond"), "one line");
  EXPECT_EQ(first_line(""), "");
  std::string long_text(1000, 'a');
  std::string cut = first_line(long_text, 10);
  EXPECT_EQ(cut, std::string(10, 'a') + "\u2026");
  // Never cuts inside a UTF-8 sequence.
  std::string utf = "aaaaaaaaa\u00e9bbb";  // the é's two bytes are at 9 and 10
  EXPECT_EQ(first_line(utf, 10), "aaaaaaaaa\u2026");
}

TEST(TransientTest, OnceFilterSaysYesOncePerText) {
  OnceFilter once(2);
  EXPECT_TRUE(once.first("a"));
  EXPECT_FALSE(once.first("a"));
  EXPECT_TRUE(once.first("b"));
  EXPECT_FALSE(once.first("b"));
  EXPECT_TRUE(once.first("c"));  // full: better a repeated line than a lost one
  EXPECT_TRUE(once.first("c"));
}

TEST(TransientTest, LookupByIdempotencyKey) {
  PrefectApi api({}, "c");
  HttpRequest r = api.filter_flow_runs_by_keys({"k1", "k2"}, {"dep"});
  EXPECT_EQ(r.method, "POST");
  EXPECT_EQ(r.path, "/flow_runs/filter");
  auto j = nlohmann::json::parse(r.body);
  EXPECT_EQ(j["flow_runs"]["idempotency_key"]["any_"], nlohmann::json({"k1", "k2"}));
  EXPECT_EQ(j["flow_runs"]["deployment_id"]["any_"], nlohmann::json({"dep"}));
  EXPECT_EQ(j["limit"], 2);
}

}  // namespace
}  // namespace floodgate::prefect
