#pragma once

#include <nlohmann/json.hpp>
#include <optional>
#include <string>

#include "api/http_server.h"
#include "api/store_reader.h"
#include "store/leases.h"

namespace floodgate::api {

/// The other replicas of a shared store, as the API needs them: any replica answers any
/// request, and one about a batch another live replica holds is forwarded to that replica.
class Peers {
 public:
  virtual ~Peers() = default;

  virtual const std::string& replica_id() const = 0;
  /// This replica's API as the others reach it.
  virtual const std::string& url() const = 0;
  /// Ready while this replica keeps its heartbeat; `why` says what is wrong otherwise.
  virtual bool healthy(std::string* why) const = 0;
  /// This replica, the live ones and what it holds, for /readyz.
  virtual nlohmann::json status_json() const = 0;
  /// Who holds a batch; nullopt for an unknown batch. Blocks on the store (store reader only).
  virtual std::optional<store::BatchOwner> owner_of(const std::string& batch_id) = 0;
  /// Holds a batch that no live replica holds (to redrive it here); false when one does.
  virtual bool take_over(const std::string& batch_id) = 0;
  /// Sends `req` to the replica whose API is at `url` and answers with what it answers; when
  /// that replica does not answer at all, calls `unreachable` instead (if given).
  virtual void forward(const std::string& url, const ServerRequest& req, Responder respond,
                       std::function<void()> unreachable = nullptr) = 0;
};

/// The header a forwarded request carries (the forwarding replica's id): a replica never
/// forwards a request again, so two replicas that disagree for a moment on who holds a batch
/// answer 503 instead of passing it back and forth.
inline constexpr const char* kForwardedHeader = "x-floodgate-forwarded-by";

/// For a request about batch `id` that this replica's engine does not hold: on the store
/// reader, forwards it to the live replica that holds the batch; answers 503 while the batch
/// waits to be taken over (its holder stopped) or is being taken by this replica; otherwise
/// (no peers, an unknown batch, a batch nobody holds or this one holds) runs `here`.
void route_to_holder(Peers* peers, StoreReader& reads, const std::string& id,
                     const ServerRequest& req, Responder respond,
                     std::function<void(const Responder&)> here);

}  // namespace floodgate::api
