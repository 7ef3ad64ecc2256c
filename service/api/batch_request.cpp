#include "api/batch_request.h"

#include <cmath>
#include <limits>
#include <set>

#include "api/json_scan.h"
#include "prefect/prefect_api.h"

namespace floodgate::api {

using nlohmann::json;

namespace {

class Checker {
 public:
  explicit Checker(std::vector<FieldError>& errors) : errors_(errors) {}

  bool fail(std::string field, std::string message) {
    if (errors_.size() < 50) errors_.push_back({std::move(field), std::move(message)});
    return false;
  }
  bool ok() const { return errors_.empty(); }

  bool only_keys(const json& obj, const std::string& prefix,
                 std::initializer_list<const char*> keys) {
    bool good = true;
    for (auto it = obj.begin(); it != obj.end(); ++it) {
      bool known = false;
      for (const char* k : keys) known = known || it.key() == k;
      if (!known) good = fail(prefix + it.key(), "unknown field");
    }
    return good;
  }

  std::optional<int64_t> integer(const json& v, const std::string& field, int64_t lo, int64_t hi) {
    if (v.is_number_float()) {
      double d = v.get<double>();
      if (std::floor(d) != d) {
        fail(field, "must be a whole number");
        return std::nullopt;
      }
    } else if (!v.is_number_integer() && !v.is_number_unsigned()) {
      fail(field, std::string("must be a whole number, not ") + v.type_name());
      return std::nullopt;
    }
    double d = v.get<double>();
    if (d < static_cast<double>(lo) || d > static_cast<double>(hi)) {
      fail(field, "must be between " + std::to_string(lo) + " and " + std::to_string(hi));
      return std::nullopt;
    }
    return static_cast<int64_t>(d);
  }

  std::optional<double> number(const json& v, const std::string& field, double lo, double hi,
                               bool lo_exclusive = false) {
    if (!v.is_number()) {
      fail(field, std::string("must be a number, not ") + v.type_name());
      return std::nullopt;
    }
    double d = v.get<double>();
    if (!std::isfinite(d) || d < lo || d > hi || (lo_exclusive && d == lo)) {
      std::string range = lo_exclusive ? "greater than " + trim(lo) : "at least " + trim(lo);
      fail(field, "must be " + range + " and at most " + trim(hi));
      return std::nullopt;
    }
    return d;
  }

  std::optional<std::string> string(const json& v, const std::string& field, size_t max_len,
                                    bool allow_empty = false) {
    if (!v.is_string()) {
      fail(field, std::string("must be a string, not ") + v.type_name());
      return std::nullopt;
    }
    auto s = v.get<std::string>();
    if (!allow_empty && s.empty()) {
      fail(field, "must not be empty");
      return std::nullopt;
    }
    if (s.size() > max_len) {
      fail(field, "must be at most " + std::to_string(max_len) + " characters");
      return std::nullopt;
    }
    return s;
  }

  bool string_list(const json& v, const std::string& field) {
    if (!v.is_array())
      return fail(field, std::string("must be a list of strings, not ") + v.type_name());
    for (size_t i = 0; i < v.size(); ++i) {
      if (!string(v[i], field + "[" + std::to_string(i) + "]", 1000)) return false;
    }
    return true;
  }

  bool deployment_text(const json& v, const std::string& field) {
    auto s = string(v, field, 1000);
    if (!s) return false;
    if (!prefect::parse_deployment_ref(*s)) {
      return fail(field,
                  "must be \"flow-name/deployment-name\" (exactly one '/') or a deployment id");
    }
    return true;
  }

 private:
  static std::string trim(double d) {
    if (d >= 1e15) return "1e15";
    std::string s = std::to_string(d);
    s.erase(s.find_last_not_of('0') + 1);
    if (!s.empty() && s.back() == '.') s.pop_back();
    return s;
  }
  std::vector<FieldError>& errors_;
};

constexpr double kMaxSeconds = 30.0 * 24 * 3600;

void parse_limits(Checker& c, const json& v, engine::LimitSpec& out) {
  if (!v.is_object()) {
    c.fail("limits", std::string("must be an object, not ") + v.type_name());
    return;
  }
  c.only_keys(v, "limits.",
              {"max_in_flight", "max_running", "launches_per_second", "burst", "max_backlog"});
  auto get = [&](const char* key) -> const json* {
    auto it = v.find(key);
    return it == v.end() || it->is_null() ? nullptr : &*it;
  };
  if (const json* x = get("max_in_flight")) {
    if (auto n = c.integer(*x, "limits.max_in_flight", 1, 100000))
      out.max_in_flight = static_cast<int>(*n);
  } else if (v.contains("max_in_flight")) {
    out.max_in_flight.reset();
  }
  if (const json* x = get("max_running")) {
    if (auto n = c.integer(*x, "limits.max_running", 1, 10000000))
      out.max_running = static_cast<int>(*n);
  } else if (v.contains("max_running")) {
    out.max_running.reset();
  }
  if (const json* x = get("max_backlog")) {
    if (auto n = c.integer(*x, "limits.max_backlog", 0, 10000000))
      out.max_backlog = static_cast<int>(*n);
  } else if (v.contains("max_backlog")) {
    out.max_backlog.reset();
  }
  if (const json* x = get("launches_per_second")) {
    if (auto n = c.number(*x, "limits.launches_per_second", 0, 1e6, true))
      out.launches_per_second = *n;
  } else if (v.contains("launches_per_second")) {
    out.launches_per_second.reset();
  }
  if (const json* x = get("burst")) {
    if (auto n = c.number(*x, "limits.burst", 1, 1e6)) out.burst = *n;
  } else if (v.contains("burst")) {
    out.burst.reset();
  }
}

void parse_retry(Checker& c, const json& v, engine::RetrySpec& out) {
  if (!v.is_object()) {
    c.fail("retry", std::string("must be an object, not ") + v.type_name());
    return;
  }
  c.only_keys(v, "retry.", {"max_attempts", "initial_delay_s", "max_delay_s", "max_elapsed_s"});
  if (v.contains("max_attempts")) {
    if (auto n = c.integer(v["max_attempts"], "retry.max_attempts", 1, 1000))
      out.max_attempts = static_cast<int>(*n);
  }
  if (v.contains("initial_delay_s")) {
    if (auto n = c.number(v["initial_delay_s"], "retry.initial_delay_s", 0, 3600))
      out.initial_delay_s = *n;
  }
  if (v.contains("max_delay_s")) {
    if (auto n = c.number(v["max_delay_s"], "retry.max_delay_s", 0, 86400)) out.max_delay_s = *n;
  }
  if (v.contains("max_elapsed_s")) {
    if (auto n = c.number(v["max_elapsed_s"], "retry.max_elapsed_s", 0, kMaxSeconds, true))
      out.max_elapsed_s = *n;
  }
  if (c.ok() && out.max_delay_s < out.initial_delay_s) {
    c.fail("retry.max_delay_s", "must not be less than retry.initial_delay_s");
  }
}

void parse_tolerance(Checker& c, const json& body, engine::BatchSpec& spec) {
  if (body.contains("tolerated_failure_percentage")) {
    if (auto n = c.number(body["tolerated_failure_percentage"], "tolerated_failure_percentage", 0,
                          100)) {
      spec.tolerated_failure_percentage = *n;
    }
  }
  if (body.contains("tolerated_failure_count")) {
    const json& v = body["tolerated_failure_count"];
    if (v.is_null()) {
      spec.tolerated_failure_count.reset();
    } else if (auto n = c.integer(v, "tolerated_failure_count", 0,
                                  std::numeric_limits<int32_t>::max())) {
      spec.tolerated_failure_count = *n;
    }
  }
}

void parse_priority(Checker& c, const json& body, engine::BatchSpec& spec) {
  if (body.contains("priority")) {
    if (auto n = c.integer(body["priority"], "priority", -1000, 1000))
      spec.priority = static_cast<int>(*n);
  }
}

}  // namespace

namespace {

// Validates deployment or deployment_id (at most one) into `spec`; says which was given.
void parse_deployment(Checker& c, const json& body, engine::BatchSpec& spec, bool& has_dep,
                      bool& has_id) {
  has_dep = body.contains("deployment") && !body["deployment"].is_null();
  has_id = body.contains("deployment_id") && !body["deployment_id"].is_null();
  if (has_dep && has_id) {
    c.fail("deployment_id", "give either deployment or deployment_id, not both");
  } else if (has_dep) {
    if (c.deployment_text(body["deployment"], "deployment")) spec.deployment = body["deployment"];
  } else if (has_id) {
    auto s = c.string(body["deployment_id"], "deployment_id", 100);
    if (s && !prefect::is_uuid(*s)) {
      c.fail("deployment_id", "must be a UUID");
    } else if (s) {
      spec.deployment = *s;
    }
  }
}

void parse_on_cancel(Checker& c, const json& body, engine::BatchSpec& spec) {
  if (body.contains("on_cancel")) {
    auto s = c.string(body["on_cancel"], "on_cancel", 100);
    auto v = s ? engine::parse_on_cancel(*s) : std::nullopt;
    if (s && !v) {
      c.fail("on_cancel", "must be \"abandon\" or \"cancel_children\"");
    } else if (v) {
      spec.on_cancel = *v;
    }
  }
}

// start_deadline_s, run_deadline_s (seconds, 0 for none, at most 30 days) and on_deadline.
void parse_deadlines(Checker& c, const json& body, engine::BatchSpec& spec) {
  constexpr double kMaxDeadlineS = 30.0 * 24 * 3600;
  for (const char* key : {"start_deadline_s", "run_deadline_s"}) {
    if (!body.contains(key) || body[key].is_null()) continue;
    if (auto d = c.number(body[key], key, 0, kMaxDeadlineS)) {
      (std::string_view(key) == "start_deadline_s" ? spec.deadlines.start_s
                                                   : spec.deadlines.run_s) = *d;
    }
  }
  if (body.contains("on_deadline") && !body["on_deadline"].is_null()) {
    auto s = c.string(body["on_deadline"], "on_deadline", 100);
    auto v = s ? engine::parse_on_deadline(*s) : std::nullopt;
    if (s && !v) {
      c.fail("on_deadline", "must be \"report\", \"fail\" or \"relaunch\"");
    } else if (v) {
      spec.deadlines.on_deadline = *v;
    }
  }
}

void parse_labels(Checker& c, const json& body, engine::BatchSpec& spec) {
  if (body.contains("labels")) {
    const json& l = body["labels"];
    if (!l.is_object()) {
      c.fail("labels", std::string("must be an object of strings, not ") + l.type_name());
    } else {
      for (auto it = l.begin(); it != l.end(); ++it) {
        if (!it->is_string()) c.fail("labels." + it.key(), "must be a string");
      }
      spec.labels = l;
    }
  }
}

// Validates the batch's own fields (everything but "runs") into `spec`.
void parse_batch_fields(Checker& c, const json& body, engine::BatchSpec& spec, bool& has_dep,
                        bool& has_id) {
  parse_deployment(c, body, spec, has_dep, has_id);
  if (body.contains("tags") && c.string_list(body["tags"], "tags")) {
    spec.tags = body["tags"].get<std::vector<std::string>>();
  }
  if (body.contains("parent_flow_run_id") && !body["parent_flow_run_id"].is_null()) {
    auto s = c.string(body["parent_flow_run_id"], "parent_flow_run_id", 100);
    if (s && !prefect::is_uuid(*s)) {
      c.fail("parent_flow_run_id", "must be a UUID");
    } else if (s) {
      spec.parent_flow_run_id = *s;
    }
  }
  if (body.contains("limits") && !body["limits"].is_null())
    parse_limits(c, body["limits"], spec.limits);
  if (body.contains("retry") && !body["retry"].is_null()) parse_retry(c, body["retry"], spec.retry);
  if (body.contains("track")) {
    if (!body["track"].is_boolean()) {
      c.fail("track", "must be true or false");
    } else {
      spec.track = body["track"];
    }
  }
  if (body.contains("relaunch_crashed")) {
    if (auto n = c.integer(body["relaunch_crashed"], "relaunch_crashed", 0, 100)) {
      spec.relaunch_crashed = static_cast<int>(*n);
    }
  }
  if (body.contains("start_pacing")) {
    if (!body["start_pacing"].is_boolean()) {
      c.fail("start_pacing", "must be true or false");
    } else {
      spec.start_pacing = body["start_pacing"];
    }
  }
  parse_tolerance(c, body, spec);
  parse_on_cancel(c, body, spec);
  parse_deadlines(c, body, spec);
  parse_priority(c, body, spec);
  parse_labels(c, body, spec);
}

}  // namespace

namespace {

std::string kind_name(char kind) {
  switch (kind) {
    case '{':
      return "object";
    case '[':
      return "array";
    case '"':
      return "string";
    case 't':
    case 'f':
      return "boolean";
    case 'n':
      return "null";
    default:
      return "number";
  }
}

// Validates one run into the JSON that the engine keeps for it; nullopt when it is refused.
std::optional<json> parse_run(Checker& c, const json& r, const std::string& f,
                              std::set<std::string>& keys) {
  if (!r.is_object()) {
    c.fail(f, std::string("must be an object, not ") + r.type_name());
    return std::nullopt;
  }
  c.only_keys(r, f + ".",
              {"parameters", "name", "tags", "job_variables", "work_queue_name", "idempotency_key",
               "deployment"});
  json run = json::object();
  for (auto it = r.begin(); it != r.end(); ++it) {
    const std::string& k = it.key();
    const json& v = it.value();
    if (v.is_null()) continue;
    if (k == "parameters" || k == "job_variables") {
      if (!v.is_object()) {
        c.fail(f + "." + k, std::string("must be an object, not ") + v.type_name());
        continue;
      }
    } else if (k == "name" || k == "work_queue_name") {
      if (!c.string(v, f + "." + k, 1000)) continue;
    } else if (k == "tags") {
      if (!c.string_list(v, f + ".tags")) continue;
    } else if (k == "idempotency_key") {
      auto s = c.string(v, f + ".idempotency_key", 500);
      if (!s) continue;
      if (!keys.insert(*s).second) {
        c.fail(f + ".idempotency_key", "repeats the key of an earlier run in this batch");
        continue;
      }
    } else if (k == "deployment") {
      if (!c.deployment_text(v, f + ".deployment")) continue;
    } else {
      continue;
    }
    run[k] = v;
  }
  return run;
}

const std::initializer_list<const char*> kBatchFields = {"deployment",
                                                         "deployment_id",
                                                         "runs",
                                                         "tags",
                                                         "parent_flow_run_id",
                                                         "limits",
                                                         "retry",
                                                         "track",
                                                         "relaunch_crashed",
                                                         "tolerated_failure_percentage",
                                                         "tolerated_failure_count",
                                                         "on_cancel",
                                                         "start_deadline_s",
                                                         "run_deadline_s",
                                                         "on_deadline",
                                                         "start_pacing",
                                                         "priority",
                                                         "labels",
                                                         "sealed"};

}  // namespace

namespace {

// Reads the body's members other than "runs" into `body` (each a tree of its own, at most
// max_field_bytes of text) and finds the text of "runs".
void read_batch_members(Checker& c, std::string_view text, const RequestLimits& limits,
                        const std::vector<FieldError>& errors, json& body,
                        std::optional<std::string_view>& runs_text) {
  for_each_member(text, [&](const std::string& key, std::string_view value) {
    if (key == "runs") {
      runs_text = value;
      return true;
    }
    bool known = false;
    for (const char* k : kBatchFields) known = known || key == k;
    if (!known) {
      c.fail(key, "unknown field");
    } else if (value.size() > limits.max_field_bytes) {
      c.fail(key, "is " + std::to_string(value.size()) + " bytes of JSON; at most " +
                      std::to_string(limits.max_field_bytes) + " are allowed");
    } else {
      body[key] = json::parse(value);
    }
    return errors.size() < 50;
  });
}

// How many runs the "runs" text lists; nullopt when it is missing, not a list or too long.
// `may_be_empty`: an unsealed batch may start with no runs ("runs": []).
std::optional<size_t> count_runs(Checker& c, const std::optional<std::string_view>& runs_text,
                                 const RequestLimits& limits, bool may_be_empty = false) {
  if (!runs_text) {
    c.fail("runs", "is required: a list of runs, e.g. [{\"parameters\": {}}]");
    return std::nullopt;
  }
  if (json_kind(*runs_text) != '[') {
    c.fail("runs", "must be a list, not " + kind_name(json_kind(*runs_text)));
    return std::nullopt;
  }
  size_t count = 0;
  for_each_element(*runs_text, [&](std::string_view) {
    ++count;
    return true;
  });
  if (count == 0 && !may_be_empty) c.fail("runs", "must hold at least one run");
  if (count > limits.max_runs) {
    c.fail("runs", "holds " + std::to_string(count) + " runs; at most " +
                       std::to_string(limits.max_runs) +
                       " are allowed in one request (--max-runs-per-batch; a larger batch is "
                       "created with \"sealed\": false and its runs appended in chunks)");
    return std::nullopt;
  }
  return count;
}

// Validates each run, one tree at a time, into `out.run_specs`. `batch_deployment`: the batch
// names a deployment, so a run need not.
void parse_runs(Checker& c, std::string_view runs_text, const RequestLimits& limits,
                bool batch_deployment, std::vector<FieldError>& errors, BatchRequest& out) {
  std::set<std::string> keys;
  size_t i = 0;
  for_each_element(runs_text, [&](std::string_view r_text) {
    const std::string f = "runs[" + std::to_string(i++) + "]";
    if (r_text.size() > limits.max_run_bytes) {
      errors.push_back({f,
                        "is " + std::to_string(r_text.size()) + " bytes of JSON; at most " +
                            std::to_string(limits.max_run_bytes) +
                            " are allowed for one run (--max-run-bytes)",
                        true});
      return errors.size() < 50;
    }
    auto run = parse_run(c, json::parse(r_text), f, keys);
    if (!run) return errors.size() < 50;
    if (!batch_deployment && !run->contains("deployment") && errors.empty()) {
      c.fail("deployment",
             "is required: give deployment (\"flow/deployment\"), deployment_id, "
             "or a deployment on every run (" +
                 f + " has none)");
    }
    if (errors.empty()) out.run_specs.push_back(run->dump());
    return errors.size() < 50;
  });
}

// The checks every body gets first, as text: its depth and numbers, and that it is an object.
bool body_is_object(Checker& c, std::string_view text, const RequestLimits& limits,
                    std::vector<FieldError>& errors) {
  if (auto bad = check_json(text, limits.max_depth)) {
    errors.push_back({bad->field, bad->message, true});
    return false;
  }
  if (json_kind(text) != '{') {
    c.fail("body", "must be a JSON object, not " + kind_name(json_kind(text)));
    return false;
  }
  return true;
}

}  // namespace

std::optional<BatchRequest> parse_batch_request(std::string_view text, const RequestLimits& limits,
                                                std::vector<FieldError>& errors) {
  Checker c(errors);
  // Checked as text first: depth and numbers are settled before any tree is built, and only
  // one run at a time is ever a tree, so no body costs much more memory than its own size.
  if (!body_is_object(c, text, limits, errors)) return std::nullopt;
  json body = json::object();
  std::optional<std::string_view> runs_text;
  read_batch_members(c, text, limits, errors, body, runs_text);
  BatchRequest out;
  bool has_dep = false;
  bool has_id = false;
  parse_batch_fields(c, body, out.spec, has_dep, has_id);
  if (body.contains("sealed")) {
    if (!body["sealed"].is_boolean()) {
      c.fail("sealed", "must be true or false");
    } else {
      out.sealed = body["sealed"];
    }
  }
  body = json();

  const auto count = count_runs(c, runs_text, limits, !out.sealed);
  if (!count) return std::nullopt;
  out.run_specs.reserve(*count);
  parse_runs(c, *runs_text, limits, has_dep || has_id, errors, out);
  if (c.ok() && out.run_specs.empty() && !has_dep && !has_id) {
    c.fail("deployment",
           "is required: a batch created without runs must name its deployment (\"flow/"
           "deployment\") or deployment_id");
  }
  if (!c.ok()) return std::nullopt;
  if (out.spec.deployment.empty()) {
    // Every run names its own deployment; the batch's slot is never used.
    out.spec.deployment = json::parse(out.run_specs.front())["deployment"].get<std::string>();
  }
  return out;
}

std::optional<BatchRequest> parse_batch_request(const json& body, const RequestLimits& limits,
                                                std::vector<FieldError>& errors) {
  const std::string text = body.dump();
  return parse_batch_request(std::string_view(text), limits, errors);
}

std::optional<std::vector<std::string>> parse_runs_chunk(std::string_view text,
                                                         const RequestLimits& limits,
                                                         std::vector<FieldError>& errors) {
  Checker c(errors);
  if (!body_is_object(c, text, limits, errors)) return std::nullopt;
  std::optional<std::string_view> runs_text;
  for_each_member(text, [&](const std::string& key, std::string_view value) {
    if (key != "runs") c.fail(key, "unknown field (the body of an append is {\"runs\": [...]})");
    if (key == "runs") runs_text = value;
    return errors.size() < 50;
  });
  if (!c.ok()) return std::nullopt;
  const auto count = count_runs(c, runs_text, limits);
  if (!count) return std::nullopt;
  BatchRequest out;
  out.run_specs.reserve(*count);
  parse_runs(c, *runs_text, limits, true, errors, out);
  return c.ok() ? std::optional(std::move(out.run_specs)) : std::nullopt;
}

bool apply_batch_patch(const json& body, engine::BatchSpec& spec, std::vector<FieldError>& errors) {
  Checker c(errors);
  if (!body.is_object()) {
    c.fail("body", std::string("must be a JSON object, not ") + body.type_name());
    return false;
  }
  c.only_keys(body, "",
              {"limits", "retry", "tolerated_failure_percentage", "tolerated_failure_count",
               "priority", "on_cancel", "start_deadline_s", "run_deadline_s", "on_deadline"});
  engine::BatchSpec next = spec;
  if (body.contains("limits") && !body["limits"].is_null())
    parse_limits(c, body["limits"], next.limits);
  if (body.contains("retry") && !body["retry"].is_null()) parse_retry(c, body["retry"], next.retry);
  parse_tolerance(c, body, next);
  parse_priority(c, body, next);
  parse_on_cancel(c, body, next);
  parse_deadlines(c, body, next);
  if (!c.ok()) return false;
  spec = std::move(next);
  return true;
}

}  // namespace floodgate::api
