#include "http/thread_pool.h"

// clang-format off
#include <utility>  // Boost 1.74's asio uses std::exchange without including it (C++20)
#include <pplx/threadpool.h>
// clang-format on

#include <stdexcept>
#include <string>

namespace floodgate::http {

void init_http_threads(std::size_t threads) {
  if (threads == 0) throw std::runtime_error("the HTTP thread pool needs at least one thread");
  try {
    crossplat::threadpool::initialize_with_threads(threads);
  } catch (const std::exception& e) {
    throw std::runtime_error(std::string("cannot size the HTTP thread pool: ") + e.what());
  }
}

}  // namespace floodgate::http
