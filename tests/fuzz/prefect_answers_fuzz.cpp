// libFuzzer target: Prefect's answers as floodgate reads them. The first byte picks the parser
// (create answer, bulk answer, filter answer, deployment, deployment reference, error detail,
// classification of a whole response); the rest is the body.
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <string>

#include "prefect/prefect_api.h"

namespace prefect = floodgate::prefect;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  uint8_t which = data[0];
  std::string body(reinterpret_cast<const char*>(data + 1), size - 1);
  switch (which % 7) {
    case 0:
      (void)prefect::parse_flow_run(body);
      break;
    case 1:
      (void)prefect::parse_bulk_results(body);
      break;
    case 2:
      (void)prefect::parse_flow_run_list(body);
      break;
    case 3:
      (void)prefect::parse_deployment(body);
      break;
    case 4:
      if (auto ref = prefect::parse_deployment_ref(body)) (void)ref->display();
      break;
    case 5:
      (void)prefect::error_message(400 + which, body);
      break;
    default: {
      // A response: a status picked by the second byte, a Retry-After header from the body's first
      // line, the rest as the body.
      prefect::HttpResponse r;
      static constexpr int kStatuses[] = {0,   200, 201, 204, 400, 401, 403, 404,
                                          408, 409, 422, 429, 500, 502, 503, 504};
      r.status = size > 1 ? kStatuses[data[1] % 16] : 503;
      size_t nl = body.find('\n');
      r.headers.emplace_back("Retry-After", body.substr(0, nl));
      r.body = nl == std::string::npos ? "" : body.substr(nl + 1);
      (void)prefect::classify(r, std::chrono::system_clock::time_point{});
      break;
    }
  }
  return 0;
}
