#include "api/peers.h"

#include <utility>

#include "api/problem.h"

namespace floodgate::api {

void route_to_holder(Peers* peers, StoreReader& reads, const std::string& id,
                     const ServerRequest& req, Responder respond,
                     std::function<void(const Responder&)> here) {
  if (peers == nullptr) return reads.post(std::move(respond), std::move(here));
  reads.post(respond, [peers, &reads, id, req, here = std::move(here)](const Responder& answer) {
    const auto owner = peers->owner_of(id);
    if (!owner) return here(answer);
    const bool ours = owner->owner_id == peers->replica_id();
    const bool forwarded = req.headers.count(kForwardedHeader) > 0;
    if (owner->finished) {
      // Its holder may have it in memory (a redrive goes there); otherwise the store answers.
      if (owner->alive && !ours && !forwarded) return peers->forward(owner->url, req, answer);
      return here(answer);
    }
    auto retry = [&answer](const std::string& detail, int seconds) {
      ServerResponse r = problem(503, detail);
      r.headers["Retry-After"] = std::to_string(seconds);
      answer(std::move(r));
    };
    if (ours) return retry("batch " + id + " is being taken over by this replica; retry", 1);
    // A replica that died at this one's address (this one restarted) is not asked again.
    if (!owner->alive || owner->url == peers->url()) {
      return retry("no live replica holds batch " + id +
                       " (its replica stopped); another takes it over when the lease ends",
                   2);
    }
    if (forwarded) return retry("batch " + id + " is moving between replicas; retry", 1);
    // A read whose holder does not answer (it died and its lease has not ended yet) is
    // answered from the store; a change gets the 503.
    std::function<void()> unreachable;
    if (req.method == "GET") {
      unreachable = [&reads, answer, here] { reads.post(answer, here); };
    }
    peers->forward(owner->url, req, answer, std::move(unreachable));
  });
}

}  // namespace floodgate::api
