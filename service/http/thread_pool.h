#pragma once

#include <cstddef>

namespace floodgate::http {

/// Sizes the thread pool that runs all HTTP I/O and completions (client and server).
/// Call once at start-up, before any HTTP object exists; throws std::runtime_error when the
/// pool is already running (cpprest starts it with 40 threads on first use).
void init_http_threads(std::size_t threads);

}  // namespace floodgate::http
