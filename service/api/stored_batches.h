#pragma once

#include <nlohmann/json.hpp>
#include <string>

#include "api/http_server.h"
#include "engine/batch_control.h"
#include "store/store.h"

namespace floodgate::api {

// Answers about batches the engine does not hold, read from the store. Run them on the
// StoreReader's thread, never on the engine's.

/// The API's JSON for a batch as the store has it, with its item counts.
nlohmann::json stored_batch_view(store::Store& store, const store::BatchRecord& record);

/// The answer to a change of a batch the engine does not hold: 404 when the store has no such
/// batch either, else 409 naming the final state it ended in.
ServerResponse refuse_change_of_stored(store::Store& store, const std::string& id);

/// What a redrive of batch `id` asked the store for (`needs`), read; a spec the store does not
/// have comes back as "" so that the engine tells it from one not read.
engine::RedriveReads read_for_redrive(store::Store& store, const std::string& id,
                                      const engine::RedriveNeeds& needs);

}  // namespace floodgate::api
