#pragma once

#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>

#include "api/peers.h"
#include "app/replica_keeper.h"
#include "prefect/http_client.h"
#include "store/leases.h"

namespace floodgate::app {

/// api::Peers over the replica keeper, the store's leases and an HTTP client per replica.
class ReplicaPeers final : public api::Peers {
 public:
  /// `make_client(url)`: an HTTP client whose request paths are appended to `url`.
  using ClientFactory = std::function<std::unique_ptr<prefect::HttpClient>(const std::string&)>;

  ReplicaPeers(ReplicaKeeper& keeper, store::Leases& leases, ClientFactory make_client,
               std::chrono::milliseconds timeout)
      : keeper_(keeper), leases_(leases), make_client_(std::move(make_client)), timeout_(timeout) {}

  const std::string& replica_id() const override { return leases_.replica_id(); }
  const std::string& url() const override { return keeper_.url(); }
  bool healthy(std::string* why) const override { return keeper_.healthy(why); }
  nlohmann::json status_json() const override { return keeper_.status_json(); }
  std::optional<store::BatchOwner> owner_of(const std::string& batch_id) override {
    return leases_.owner_of(batch_id);
  }
  bool take_over(const std::string& batch_id) override { return leases_.take_over(batch_id); }
  void forward(const std::string& url, const api::ServerRequest& req, api::Responder respond,
               std::function<void()> unreachable) override;

 private:
  prefect::HttpClient& client_for(const std::string& url);

  ReplicaKeeper& keeper_;
  store::Leases& leases_;
  ClientFactory make_client_;
  std::chrono::milliseconds timeout_;
  std::mutex mutex_;
  std::map<std::string, std::unique_ptr<prefect::HttpClient>> clients_;  // by url, guarded
};

}  // namespace floodgate::app
