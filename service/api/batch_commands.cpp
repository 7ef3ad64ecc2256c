#include "api/batch_commands.h"

#include <memory>

#include "api/json_scan.h"
#include "api/problem.h"
#include "api/request_guard.h"
#include "api/stored_batches.h"
#include "core/uuid.h"
#include "metrics/log.h"

namespace floodgate::api {

using nlohmann::json;

namespace {

// The 415 to send when a JSON body is not declared as application/json (an empty body is fine
// unless `required`).
std::optional<ServerResponse> refuse_body(const ServerRequest& req, bool required) {
  auto ct = req.headers.find("content-type");
  if (!required && req.body.empty()) return std::nullopt;
  if (ct == req.headers.end()) {
    return problem(415, "the body must be JSON sent as Content-Type: application/json", "body");
  }
  if (!is_json_media_type(ct->second)) {
    return problem(415,
                   "the body must be JSON sent as Content-Type: application/json (optionally "
                   "with charset=utf-8), not " +
                       ct->second.substr(0, 200),
                   "body");
  }
  return std::nullopt;
}

// The 400 for a body check_json refused.
ServerResponse refuse_json(const JsonProblem& bad) {
  return problem(400, bad.field + ": " + bad.message,
                 bad.field.empty() ? std::nullopt : std::optional(bad.field));
}

// Reads the Idempotency-Key header into `idem`; the 400 to send when it is bad.
std::optional<ServerResponse> read_idempotency_key(const ServerRequest& req,
                                                   std::optional<std::string>& idem) {
  auto it = req.headers.find("idempotency-key");
  if (it == req.headers.end()) return std::nullopt;
  if (it->second.empty() || it->second.size() > 255) {
    return problem(400, "Idempotency-Key header must be 1 to 255 characters", "Idempotency-Key");
  }
  idem = it->second;
  return std::nullopt;
}

// Reads the optional body of a control action into `on_cancel` (only cancel takes one
// member); the answer to send when it is bad.
std::optional<ServerResponse> read_control_body(const ServerRequest& req, const std::string& action,
                                                int max_depth,
                                                std::optional<engine::OnCancel>& on_cancel) {
  if (auto bad = refuse_body(req, false)) return bad;
  if (req.body.empty()) return std::nullopt;
  if (auto bad = check_json(req.body, max_depth)) return refuse_json(*bad);
  json body = json::parse(req.body, nullptr, false);
  if (body.is_discarded() || !body.is_object()) {
    return problem(400, "body must be a JSON object (or empty)", "body");
  }
  for (auto it = body.begin(); it != body.end(); ++it) {
    if (action == "cancel" && it.key() == "on_cancel") continue;
    return problem(422, it.key() + ": unknown field", it.key());
  }
  if (body.contains("on_cancel")) {
    if (!body["on_cancel"].is_string() ||
        (body["on_cancel"] != "abandon" && body["on_cancel"] != "cancel_children")) {
      return problem(422, "on_cancel: must be \"abandon\" or \"cancel_children\"", "on_cancel");
    }
    on_cancel = engine::parse_on_cancel(body["on_cancel"].get<std::string>());
  }
  return std::nullopt;
}

// The answer to a control action the engine took or refused (engine thread).
ServerResponse control_response(engine::Engine& engine, const std::string& id,
                                const std::string& action, const engine::ControlAnswer& a) {
  if (a.result == engine::ControlResult::kNotFound) return problem(404, a.message, "id");
  if (a.result == engine::ControlResult::kConflict) {
    return problem(409, "cannot " + action + ": " + a.message);
  }
  return json_response(200, engine.batch_json(id));
}

// Runs cancel, pause or resume on a batch the engine holds (engine thread).
ServerResponse run_control(engine::Engine& engine, const std::string& id, const std::string& action,
                           const std::optional<engine::OnCancel>& on_cancel) {
  engine::ControlAnswer a;
  if (action == "cancel") a = engine.cancel(id, on_cancel);
  if (action == "pause") a = engine.pause(id);
  if (action == "resume") a = engine.resume(id);
  return control_response(engine, id, action, a);
}

// How many times a redrive reads the store for a batch that keeps changing meanwhile.
constexpr int kRedriveReadRounds = 3;

// Merges a PATCH body into the spec of a batch the engine holds and applies it (engine thread).
ServerResponse run_patch(engine::Engine& engine, const std::string& id,
                         const engine::BatchSpec& current, const json& patch) {
  engine::BatchSpec next = current;
  std::vector<FieldError> errors;
  if (!apply_batch_patch(patch, next, errors)) {
    const auto& first = errors.front();
    return problem(first.field == "body" ? 400 : 422, first.field + ": " + first.message,
                   first.field, errors);
  }
  auto a = engine.update_spec(id, next);
  if (a.result != engine::Engine::ControlResult::kOk) {
    return problem(409, "cannot change the batch: " + a.message);
  }
  return json_response(200, engine.batch_json(id));
}

ServerResponse with_location(ServerResponse r, const std::string& id) {
  r.headers["Location"] = "/v1/batches/" + id;
  return r;
}

}  // namespace

std::string BatchCommands::new_batch_id() {
  std::lock_guard lock(random_mutex_);
  return core::new_uuid(random_);
}

store::BatchRecord BatchCommands::new_record(const BatchRequest& parsed,
                                             std::optional<std::string> idem,
                                             const std::string& submitted_by) {
  store::BatchRecord rec;
  rec.id = new_batch_id();
  rec.spec_json = engine::to_json(parsed.spec).dump();
  rec.state = core::BatchState::kQueued;
  rec.total = static_cast<int64_t>(parsed.run_specs.size());
  rec.created_at_ms = rec.updated_at_ms = wall_clock_.unix_ms();
  rec.version = 1;
  rec.idempotency_key = std::move(idem);
  rec.submitted_by = submitted_by;
  rec.sealed = parsed.sealed;
  return rec;
}

void BatchCommands::submit(const ServerRequest& req, const std::string& submitted_by,
                           Responder respond) {
  if (!accepting_) return respond(problem(503, "floodgate is shutting down; submit again later"));
  if (auto bad = refuse_body(req, true)) return respond(std::move(*bad));
  std::vector<FieldError> errors;
  auto parsed = parse_batch_request(std::string_view(req.body), limits_, errors);
  if (!parsed) {
    const auto& first = errors.front();
    int status = first.malformed || first.field == "body" ? 400 : 422;
    return respond(problem(status, first.field + ": " + first.message, first.field, errors));
  }
  std::optional<std::string> idem;
  if (auto bad = read_idempotency_key(req, idem)) return respond(std::move(*bad));

  engine_.apply_defaults(parsed->spec);
  store::BatchRecord rec = new_record(*parsed, std::move(idem), submitted_by);
  store::InsertResult result;
  try {
    result = store_.insert_pending_batch(rec, parsed->run_specs);
  } catch (const std::exception& e) {
    log::error("could not store a batch", {{"error", e.what()}});
    return respond(problem(503, std::string("could not store the batch: ") + e.what()));
  }
  if (!result.inserted) return answer_existing(result.batch_id, std::move(respond));
  if (auto stored = store_.get_batch(rec.id)) rec.seq = stored->seq;
  // The runs are the store's now: the engine reads them back as their turn to launch comes.
  std::vector<std::string>().swap(parsed->run_specs);
  start(std::move(rec), std::move(parsed->spec), std::move(respond));
}

void BatchCommands::answer_existing(const std::string& id, Responder respond) {
  engine_.post([this, id, respond] {
    json view = engine_.batch_json(id);
    if (!view.is_null()) return respond(with_location(json_response(200, view), id));
    reads_.post(respond, [this, id](const Responder& answer) {
      json stored;
      if (auto rec = store_.get_batch(id)) stored = stored_batch_view(store_, *rec);
      answer(with_location(json_response(200, stored), id));
    });
  });
}

void BatchCommands::start(store::BatchRecord rec, engine::BatchSpec spec, Responder respond) {
  auto shared_spec = std::make_shared<engine::BatchSpec>(std::move(spec));
  engine_.post([this, rec = std::move(rec), shared_spec, respond]() mutable {
    std::string id = rec.id;
    engine_.add_batch(std::move(rec), std::move(*shared_spec));
    respond(with_location(json_response(201, engine_.batch_json(id)), id));
  });
}

void BatchCommands::patch(const std::string& id, const ServerRequest& req, Responder respond) {
  if (auto bad = refuse_body(req, true)) return respond(std::move(*bad));
  if (auto bad = check_json(req.body, limits_.max_depth)) return respond(refuse_json(*bad));
  json body = json::parse(req.body, nullptr, false);
  if (body.is_discarded()) return respond(problem(400, "body is not valid JSON", "body"));
  auto shared = std::make_shared<json>(std::move(body));
  engine_.post([this, id, shared, req, respond] {
    const engine::BatchSpec* current = engine_.spec_of(id);
    if (current != nullptr) return respond(run_patch(engine_, id, *current, *shared));
    route_to_holder(peers_, reads_, id, req, respond, [this, id](const Responder& answer) {
      answer(refuse_change_of_stored(store_, id));
    });
  });
}

void BatchCommands::control(const std::string& id, const std::string& action,
                            const ServerRequest& req, Responder respond) {
  std::optional<engine::OnCancel> on_cancel;
  if (auto bad = read_control_body(req, action, limits_.max_depth, on_cancel)) {
    return respond(std::move(*bad));
  }
  engine_.post([this, id, action, on_cancel, req, respond] {
    if (engine_.has_batch(id) && action == "redrive") return redrive(id, {}, 0, respond);
    if (engine_.has_batch(id)) return respond(run_control(engine_, id, action, on_cancel));
    route_to_holder(peers_, reads_, id, req, respond,
                    [this, id, action, respond](const Responder& answer) {
                      if (action == "redrive") return redrive_stored(id, respond);
                      answer(refuse_change_of_stored(store_, id));
                    });
  });
}

void BatchCommands::redrive(const std::string& id, const engine::RedriveReads& reads, int round,
                            const Responder& respond) {
  engine::ControlAnswer a = engine_.redrive(id, reads);
  if (a.result != engine::ControlResult::kReadFirst) {
    return respond(control_response(engine_, id, "redrive", a));
  }
  if (round >= kRedriveReadRounds) {
    return respond(problem(503,
                           "cannot redrive: the batch kept changing while its items were read "
                           "from the store; redrive again"));
  }
  reads_.post(respond, [this, id, needs = std::move(a.needs), round, respond](const Responder&) {
    auto got = std::make_shared<engine::RedriveReads>(read_for_redrive(store_, id, needs));
    engine_.post([this, id, got, round, respond] { redrive(id, *got, round + 1, respond); });
  });
}

void BatchCommands::redrive_stored(const std::string& id, Responder respond) {
  reads_.post(respond, [this, id, respond](const Responder& answer) {
    auto rec = store_.get_batch(id);
    if (!rec) return answer(no_such_batch(id));
    if (peers_ != nullptr && !peers_->take_over(id)) {
      ServerResponse r = problem(503, "another replica took batch " + id + " meanwhile; retry");
      r.headers["Retry-After"] = "1";
      return answer(std::move(r));
    }
    // Its redrivable items are needed anyway. Not held, none was evicted in this process
    // (evictions 0); held and evicted meanwhile by another redrive, the engine asks again.
    engine::RedriveNeeds needs;
    needs.items = true;
    auto got = std::make_shared<engine::RedriveReads>(read_for_redrive(store_, id, needs));
    auto counts = store_.count_items(id);
    engine_.post([this, id, record = std::move(*rec), counts, got, respond]() mutable {
      engine_.hold(std::move(record), counts);
      redrive(id, *got, 1, respond);
    });
  });
}

// ---------------------------------------------------------------------------------------------
// Chunked appends

namespace {

// FNV-1a (64 bits) of the chunk's runs as validated (compact JSON, keys sorted), so that a chunk
// sent again with other spacing or key order still counts as the same. It only tells a repeat
// from another chunk under the same key; it is stored, so it must not change between builds.
std::string chunk_hash(const std::vector<std::string>& run_specs) {
  uint64_t h = 14695981039346656037ULL;
  auto add = [&h](unsigned char byte) {
    h ^= byte;
    h *= 1099511628211ULL;
  };
  for (const std::string& spec : run_specs) {
    for (const char ch : spec) add(static_cast<unsigned char>(ch));
    add('\n');
  }
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out = "fnv1a64:";
  for (int shift = 60; shift >= 0; shift -= 4) out += kHex[(h >> shift) & 0xf];
  return out;
}

// The answer to an append (engine thread): the chunk and the batch as it is now.
json chunk_json(engine::Engine& engine, const std::string& id, const store::AppendResult& r) {
  json out = {{"batch_id", id},
              {"first_index", r.first_index},
              {"count", r.count},
              {"total", r.total},
              {"version", nullptr}};
  const json view = engine.batch_json(id);
  if (!view.is_null()) {
    out["total"] = view["total"];
    out["version"] = view["version"];
    out["state"] = view["state"];
    out["sealed"] = view["sealed"];
  }
  return out;
}

}  // namespace

void BatchCommands::append_runs(const std::string& id, const ServerRequest& req,
                                Responder respond) {
  if (!accepting_) {
    return respond(problem(503, "floodgate is shutting down; append the runs again later"));
  }
  if (auto bad = refuse_body(req, true)) return respond(std::move(*bad));
  std::vector<FieldError> errors;
  auto specs = parse_runs_chunk(std::string_view(req.body), limits_, errors);
  if (!specs) {
    const auto& first = errors.front();
    int status = first.malformed || first.field == "body" ? 400 : 422;
    return respond(problem(status, first.field + ": " + first.message, first.field, errors));
  }
  std::optional<std::string> idem;
  if (auto bad = read_idempotency_key(req, idem)) return respond(std::move(*bad));

  auto chunk = std::make_shared<Chunk>();
  chunk->request.batch_id = id;
  chunk->request.idempotency_key = std::move(idem);
  chunk->request.body_hash = chunk_hash(*specs);
  chunk->specs = std::move(*specs);
  // The engine says first whether the batch takes runs (it knows best whether it ended); the
  // store then appends (or finds the chunk's key) off the engine's thread; the engine takes the
  // runs last. Appends and seals all pass the one StoreReader thread, so the engine gets them
  // in the order the store took them.
  at_holder(id, req, std::move(respond),
            [this, chunk](const Responder& answer) { append_here(chunk, answer); });
}

void BatchCommands::append_here(const std::shared_ptr<Chunk>& chunk, const Responder& respond) {
  engine_.post([this, chunk, respond] {
    chunk->gate = engine_.may_append(chunk->request.batch_id);
    chunk->request.allowed = chunk->gate.result == engine::ControlResult::kOk;
    reads_.post(respond, [this, chunk](const Responder& answer) {
      const store::AppendResult r = store_.append_items(chunk->request, chunk->specs);
      engine_.post([this, chunk, r, answer] {
        const std::string& batch_id = chunk->request.batch_id;
        using store::AppendOutcome;
        switch (r.outcome) {
          case AppendOutcome::kAppended:
            engine_.append_items(batch_id, r.first_index, r.count);
            return answer(json_response(201, chunk_json(engine_, batch_id, r)));
          case AppendOutcome::kRepeated:
            return answer(json_response(200, chunk_json(engine_, batch_id, r)));
          case AppendOutcome::kKeyReused:
            return answer(problem(
                422,
                "Idempotency-Key: this batch already took another chunk of runs under this key "
                "(runs " +
                    std::to_string(r.first_index) + " to " +
                    std::to_string(r.first_index + r.count - 1) +
                    "); send a new chunk under a new key",
                "Idempotency-Key"));
          case AppendOutcome::kNotFound:
            return answer(no_such_batch(batch_id));
          case AppendOutcome::kSealed:
            return answer(problem(409,
                                  "cannot append runs: batch is sealed: it takes no more runs "
                                  "(create it with \"sealed\": false and seal it after the "
                                  "last chunk)"));
          case AppendOutcome::kFinal:
          case AppendOutcome::kRefused:
            break;
        }
        const std::string why = chunk->gate.result == engine::ControlResult::kConflict
                                    ? chunk->gate.message
                                    : "the batch has ended";
        answer(problem(409, "cannot append runs: " + why));
      });
    });
  });
}

void BatchCommands::seal(const std::string& id, const ServerRequest& req, Responder respond) {
  std::optional<engine::OnCancel> unused;
  if (auto bad = read_control_body(req, "seal", limits_.max_depth, unused)) {
    return respond(std::move(*bad));
  }
  // Stored first: the answer promises a seal that a restart keeps. Through the StoreReader
  // thread, as appends, so that the engine sees appends and seals in the store's order. With
  // several replicas, at the batch's holder, whose engine must see the seal.
  at_holder(id, req, std::move(respond), [this, id](const Responder& to_caller) {
    reads_.post(to_caller, [this, id](const Responder& answer) { seal_here(id, answer); });
  });
}

void BatchCommands::seal_here(const std::string& id, const Responder& answer) {
  if (store_.seal_batch(id) == store::SealResult::kNotFound) return answer(no_such_batch(id));
  engine_.post([this, id, answer] {
    if (engine_.seal(id)) return answer(json_response(200, engine_.batch_json(id)));
    reads_.post(answer, [this, id](const Responder& stored) {
      auto rec = store_.get_batch(id);
      if (!rec) return stored(no_such_batch(id));
      stored(json_response(200, stored_batch_view(store_, *rec)));
    });
  });
}

void BatchCommands::at_holder(const std::string& id, const ServerRequest& req, Responder respond,
                              std::function<void(const Responder&)> here) {
  if (peers_ == nullptr) return here(respond);
  engine_.post([this, id, req, respond, here = std::move(here)] {
    if (engine_.has_batch(id)) return here(respond);
    route_to_holder(peers_, reads_, id, req, respond, here);
  });
}

}  // namespace floodgate::api
