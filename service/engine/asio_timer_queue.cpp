#include "engine/asio_timer_queue.h"

#include <boost/asio/post.hpp>

namespace floodgate::engine {

AsioTimerQueue::~AsioTimerQueue() {
  *alive_ = false;
  for (auto& [id, timer] : timers_) timer->cancel();
}

core::TimerQueue::Id AsioTimerQueue::schedule(core::TimePoint when, std::function<void()> fn) {
  const Id id = next_id_++;
  auto timer = std::make_shared<boost::asio::steady_timer>(io_);
  timer->expires_at(std::chrono::time_point_cast<boost::asio::steady_timer::duration>(when));
  timers_.emplace(id, timer);
  std::weak_ptr<bool> alive = alive_;
  timer->async_wait(
      [this, alive, id, fn = std::move(fn)](const boost::system::error_code& ec) mutable {
        if (alive.expired()) return;
        timers_.erase(id);
        if (!ec) fn();
      });
  return id;
}

void AsioTimerQueue::cancel(Id id) {
  auto it = timers_.find(id);
  if (it == timers_.end()) return;
  it->second->cancel();
  timers_.erase(it);
}

void AsioTimerQueue::post(std::function<void()> fn) { boost::asio::post(io_, std::move(fn)); }

}  // namespace floodgate::engine
