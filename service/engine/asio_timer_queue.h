#pragma once

#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <memory>
#include <unordered_map>

#include "core/timer_queue.h"

namespace floodgate::engine {

/// The production timer queue: Boost.Asio steady timers on the io_context the engine runs on.
class AsioTimerQueue final : public core::TimerQueue {
 public:
  explicit AsioTimerQueue(boost::asio::io_context& io) : io_(io) {}
  ~AsioTimerQueue() override;
  AsioTimerQueue(const AsioTimerQueue&) = delete;
  AsioTimerQueue& operator=(const AsioTimerQueue&) = delete;

  Id schedule(core::TimePoint when, std::function<void()> fn) override;
  void cancel(Id id) override;
  void post(std::function<void()> fn) override;

 private:
  boost::asio::io_context& io_;
  Id next_id_ = 1;
  std::unordered_map<Id, std::shared_ptr<boost::asio::steady_timer>> timers_;
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
};

}  // namespace floodgate::engine
