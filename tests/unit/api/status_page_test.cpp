#include "api/status_page.h"

#include <gtest/gtest.h>

namespace floodgate::api {
namespace {

TEST(StatusPage, ServesThePageItsScriptAndStyleWithTheCsp) {
  auto page = status_page_response({}, "");
  ASSERT_TRUE(page);
  EXPECT_EQ(page->route, "/");
  EXPECT_EQ(page->response.content_type, "text/html; charset=utf-8");
  auto js = status_page_response({"status.js"}, "");
  ASSERT_TRUE(js);
  EXPECT_EQ(js->response.content_type, "text/javascript; charset=utf-8");
  auto css = status_page_response({"status.css"}, "");
  ASSERT_TRUE(css);
  EXPECT_EQ(css->response.content_type, "text/css; charset=utf-8");
  for (const auto* a : {&*page, &*js, &*css}) {
    EXPECT_EQ(a->response.headers.at("Content-Security-Policy"), status_page_csp());
    EXPECT_EQ(a->response.headers.at("X-Frame-Options"), "DENY");
  }
  EXPECT_NE(status_page_csp().find("frame-ancestors 'none'"), std::string::npos);
  EXPECT_EQ(status_page_csp().find("unsafe-inline"), std::string::npos);
  EXPECT_FALSE(status_page_response({"status.js", "x"}, ""));
  EXPECT_FALSE(status_page_response({"v1"}, ""));
}

TEST(StatusPage, PrefectUiUrlIsAnEscapedAttribute) {
  auto page = status_page_response({}, "http://ui/\"><script>alert(1)</script>");
  ASSERT_TRUE(page);
  const std::string& body = page->response.body;
  EXPECT_EQ(body.find("<script>alert"), std::string::npos);
  EXPECT_NE(body.find("content=\"http://ui/&quot;&gt;&lt;script&gt;alert(1)&lt;/script&gt;\""),
            std::string::npos);
  // No inline script or style for the CSP to refuse.
  EXPECT_EQ(body.find("<style"), std::string::npos);
  EXPECT_EQ(body.find("<script>"), std::string::npos);
  EXPECT_EQ(body.find(" style="), std::string::npos);
}

}  // namespace
}  // namespace floodgate::api
