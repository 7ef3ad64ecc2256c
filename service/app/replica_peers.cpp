#include "app/replica_peers.h"

#include <algorithm>
#include <cctype>
#include <utility>

#include "api/problem.h"
#include "metrics/log.h"

namespace floodgate::app {
namespace {

// What a forwarded request keeps of its headers: who asks, what the body is, its key.
constexpr const char* kKeptRequestHeaders[] = {"authorization", "content-type", "idempotency-key",
                                               "accept"};
// What an answer keeps of the holder's headers.
constexpr const char* kKeptAnswerHeaders[] = {"location", "retry-after", "www-authenticate",
                                              "allow"};

std::string lower(std::string s) {
  std::transform(s.begin(), s.end(), s.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return s;
}

}  // namespace

prefect::HttpClient& ReplicaPeers::client_for(const std::string& url) {
  std::lock_guard lock(mutex_);
  // Replicas come and go (new pod addresses): forget the clients of old ones now and then.
  // Requests in flight on a client that goes complete normally.
  if (clients_.size() >= 32 && clients_.count(url) == 0) clients_.clear();
  auto& client = clients_[url];
  if (!client) client = make_client_(url);
  return *client;
}

void ReplicaPeers::forward(const std::string& url, const api::ServerRequest& req,
                           api::Responder respond, std::function<void()> unreachable) {
  prefect::HttpRequest out;
  out.method = req.method;
  out.path = req.path + (req.query.empty() ? "" : "?" + req.query);
  out.body = req.body;
  out.timeout = timeout_;
  for (const char* name : kKeptRequestHeaders) {
    if (auto it = req.headers.find(name); it != req.headers.end()) {
      out.headers.emplace_back(name, it->second);
    }
  }
  out.headers.emplace_back(api::kForwardedHeader, replica_id());
  prefect::HttpClient* client = nullptr;
  try {
    client = &client_for(url);
  } catch (const std::exception& e) {
    return respond(api::problem(
        502, "cannot reach the replica holding the batch at " + url + ": " + e.what()));
  }
  client->send(std::move(out), [url, respond = std::move(respond),
                                unreachable = std::move(unreachable)](prefect::HttpResponse in) {
    if (in.status == 0) {
      floodgate::log::warn("forwarding to the batch's replica failed",
                           {{"url", url}, {"error", in.error}});
      if (unreachable) return unreachable();
      api::ServerResponse r = api::problem(
          503, "the replica holding the batch (" + url + ") did not answer: " + in.error);
      r.headers["Retry-After"] = "1";
      return respond(std::move(r));
    }
    api::ServerResponse r;
    r.status = in.status;
    r.body = std::move(in.body);
    r.content_type = in.header("Content-Type");
    for (const auto& [name, value] : in.headers) {
      const std::string key = lower(name);
      if (std::find_if(std::begin(kKeptAnswerHeaders), std::end(kKeptAnswerHeaders),
                       [&key](const char* kept) { return key == kept; }) !=
          std::end(kKeptAnswerHeaders)) {
        r.headers[name] = value;
      }
    }
    respond(std::move(r));
  });
}

}  // namespace floodgate::app
