#include "api/request_guard.h"

#include <gtest/gtest.h>

namespace floodgate::api {
namespace {

using Headers = std::map<std::string, std::string>;

TEST(HostCheckTest, IpLiteralsAndLocalhostAreAccepted) {
  OriginPolicy p;
  for (const char* host : {"127.0.0.1:8080", "127.0.0.1", "localhost:1", "LOCALHOST.:80",
                           "[::1]:8080", "[::1]", "10.1.2.3:9000"}) {
    EXPECT_FALSE(host_problem({{"host", host}}, p).has_value()) << host;
  }
}

TEST(HostCheckTest, OtherNamesNeedAllowedHosts) {
  OriginPolicy p;
  EXPECT_TRUE(host_problem({{"host", "evil.example"}}, p).has_value());
  EXPECT_TRUE(host_problem({{"host", "evil.example:8080"}}, p).has_value());
  EXPECT_TRUE(host_problem({{"host", "127.0.0.1.evil.example"}}, p).has_value());
  EXPECT_TRUE(host_problem({}, p).has_value());
  EXPECT_TRUE(host_problem({{"host", "a:1, b:2"}}, p).has_value());
  EXPECT_TRUE(host_problem({{"host", "[::1"}}, p).has_value());
  EXPECT_TRUE(host_problem({{"host", "x:99999"}}, p).has_value());
  EXPECT_TRUE(host_problem({{"host", "x:1a"}}, p).has_value());
  p.allowed_hosts = {"floodgate.internal", ".svc.cluster.local"};
  EXPECT_FALSE(host_problem({{"host", "Floodgate.Internal:8080"}}, p).has_value());
  EXPECT_FALSE(host_problem({{"host", "fg.ns.svc.cluster.local"}}, p).has_value());
  EXPECT_FALSE(host_problem({{"host", "svc.cluster.local"}}, p).has_value());
  EXPECT_TRUE(host_problem({{"host", "evilsvc.cluster.local"}}, p).has_value());
  EXPECT_TRUE(host_problem({{"host", "evil.example"}}, p).has_value());
  p.allowed_hosts = {"*"};
  EXPECT_FALSE(host_problem({{"host", "evil.example"}}, p).has_value());
}

TEST(OriginCheckTest, OwnOriginAndNoOriginAreAccepted) {
  OriginPolicy p;
  EXPECT_FALSE(origin_problem({{"host", "127.0.0.1:8080"}}, p).has_value());
  EXPECT_FALSE(
      origin_problem({{"host", "127.0.0.1:8080"}, {"origin", "http://127.0.0.1:8080"}}, p));
  EXPECT_FALSE(origin_problem({{"host", "127.0.0.1:8080"}, {"sec-fetch-site", "same-origin"}}, p));
  EXPECT_FALSE(origin_problem({{"host", "127.0.0.1:8080"}, {"sec-fetch-site", "none"}}, p));
}

TEST(OriginCheckTest, ForeignOriginsAreRefused) {
  OriginPolicy p;
  const Headers base = {{"host", "127.0.0.1:8080"}};
  for (const char* origin : {"http://127.0.0.1:9999", "http://localhost:8080", "null",
                             "https://127.0.0.1:8080", "http://evil.example"}) {
    Headers h = base;
    h["origin"] = origin;
    EXPECT_TRUE(origin_problem(h, p).has_value()) << origin;
  }
  Headers h = base;
  h["sec-fetch-site"] = "cross-site";
  EXPECT_TRUE(origin_problem(h, p).has_value());
  h["sec-fetch-site"] = "same-site";
  EXPECT_TRUE(origin_problem(h, p).has_value());
}

TEST(OriginCheckTest, AllowedOriginsAndTls) {
  OriginPolicy p;
  p.allowed_origins = {"https://ui.example.com/"};
  EXPECT_FALSE(
      origin_problem({{"host", "127.0.0.1:8080"}, {"origin", "https://UI.example.com"}}, p));
  EXPECT_TRUE(origin_problem({{"host", "127.0.0.1:8080"}, {"origin", "http://ui.example.com"}}, p));
  p.tls = true;
  EXPECT_FALSE(
      origin_problem({{"host", "127.0.0.1:8080"}, {"origin", "https://127.0.0.1:8080"}}, p));
  EXPECT_TRUE(origin_problem({{"host", "127.0.0.1:8080"}, {"origin", "http://127.0.0.1:8080"}}, p));
}

TEST(MediaTypeTest, OnlyApplicationJsonWithUtf8) {
  for (const char* ok : {"application/json", "Application/JSON", "application/json; charset=utf-8",
                         "application/json;charset=\"UTF-8\"", " application/json ; "}) {
    EXPECT_TRUE(is_json_media_type(ok)) << ok;
  }
  for (const char* bad :
       {"", "text/plain; charset=json", "application/x-www-form-urlencoded; a=json",
        "application/json; charset=latin1", "application/json; a=b", "application/jsonx",
        "application/problem+json", "text/json", "multipart/form-data; boundary=json",
        "application/json; charset"}) {
    EXPECT_FALSE(is_json_media_type(bad)) << bad;
  }
}

TEST(QueryNumberTest, DecimalsOnly) {
  EXPECT_EQ(parse_decimal("0"), 0.0);
  EXPECT_EQ(parse_decimal("2.5"), 2.5);
  EXPECT_EQ(parse_decimal("300"), 300.0);
  for (const char* bad : {"", "nan", "NaN", "inf", "-1", "+1", "0x10", "1e3", " 1", "1 ", ".5",
                          "1.", "1.2.3", "infinity", "0x1p3"}) {
    EXPECT_FALSE(parse_decimal(bad).has_value()) << bad;
  }
  EXPECT_EQ(parse_whole("0"), 0);
  EXPECT_EQ(parse_whole("123456789012345678"), 123456789012345678);
  for (const char* bad : {"", "-1", "+1", "0x10", "1.0", "1234567890123456789", " 1", "1e3"}) {
    EXPECT_FALSE(parse_whole(bad).has_value()) << bad;
  }
}

}  // namespace
}  // namespace floodgate::api
