#pragma once

#include <atomic>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "api/batch_request.h"
#include "api/http_server.h"
#include "api/peers.h"
#include "api/store_reader.h"
#include "core/clock.h"
#include "core/random.h"
#include "engine/engine.h"
#include "store/store.h"

namespace floodgate::api {

/// The API's changes to batches: submission (POST /v1/batches), PATCH /v1/batches/{id} and
/// cancel, pause, resume and redrive. Validates on the listener's thread, stores a new batch
/// there, and makes every change on the engine's thread.
class BatchCommands {
 public:
  /// `random` (batch ids) is used under a lock of this object's own.
  BatchCommands(engine::Engine& engine, store::Store& store, StoreReader& reads,
                RequestLimits limits, const core::WallClock& wall_clock, core::Random& random,
                Peers* peers = nullptr)
      : engine_(engine),
        store_(store),
        reads_(reads),
        limits_(limits),
        wall_clock_(wall_clock),
        random_(random),
        peers_(peers) {}

  void submit(const ServerRequest& req, const std::string& submitted_by, Responder respond);
  void patch(const std::string& id, const ServerRequest& req, Responder respond);
  /// `action`: "cancel", "pause", "resume" or "redrive".
  void control(const std::string& id, const std::string& action, const ServerRequest& req,
               Responder respond);
  /// Refuse new batches (while draining).
  void stop_accepting() { accepting_ = false; }
  /// POST /v1/batches/{id}/runs: appends a chunk of runs to an unsealed batch.
  void append_runs(const std::string& id, const ServerRequest& req, Responder respond);
  /// POST /v1/batches/{id}/seal: no more runs will be appended.
  void seal(const std::string& id, const ServerRequest& req, Responder respond);

 private:
  std::string new_batch_id();
  store::BatchRecord new_record(const BatchRequest& parsed, std::optional<std::string> idem,
                                const std::string& submitted_by);
  /// The batch an Idempotency-Key named again, as it is now (200).
  void answer_existing(const std::string& id, Responder respond);
  /// Hands a batch just stored to the engine and answers 201.
  void start(store::BatchRecord rec, engine::BatchSpec spec, Responder respond);
  /// Redrives a batch the engine holds (engine thread) with what was read for it so far; when
  /// the engine asks for store reads, makes them on the store reader and tries again, a bounded
  /// number of rounds (`round` counts them).
  void redrive(const std::string& id, const engine::RedriveReads& reads, int round,
               const Responder& respond);
  /// Brings a batch that ended before this process started back into memory, with its items
  /// read on the store reader, then redrives it.
  void redrive_stored(const std::string& id, Responder respond);

  /// One chunk of runs on its way to a batch.
  struct Chunk {
    store::AppendRequest request;
    std::vector<std::string> specs;
    engine::ControlAnswer gate;
  };
  void append_here(const std::shared_ptr<Chunk>& chunk, const Responder& respond);
  /// Seals on the store reader's thread, then tells the engine.
  void seal_here(const std::string& id, const Responder& answer);
  /// Runs `here` when this replica's engine holds the batch (or there are no other replicas);
  /// otherwise forwards the request to the replica that holds it (see route_to_holder).
  void at_holder(const std::string& id, const ServerRequest& req, Responder respond,
                 std::function<void(const Responder&)> here);

  engine::Engine& engine_;
  store::Store& store_;
  StoreReader& reads_;
  RequestLimits limits_;
  const core::WallClock& wall_clock_;
  std::mutex random_mutex_;
  core::Random& random_;  // listener threads share it under random_mutex_
  std::atomic<bool> accepting_{true};
  Peers* peers_ = nullptr;  // other replicas of a shared store, or null
};

}  // namespace floodgate::api
