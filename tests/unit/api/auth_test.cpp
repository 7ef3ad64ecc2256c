#include "api/auth.h"

#include <gtest/gtest.h>

#include <stdexcept>
#include <string>

namespace floodgate::api {
namespace {

constexpr const char* kLines =
    "# floodgate tokens\n"
    "write ci-bot   wwwwwwwwwwwwwwwwwwwwwwwwwwwwwwww   # the pipeline\n"
    "\n"
    "read  grafana  rrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrr\n";

TEST(ApiTokensTest, ParsesLinesAndComments) {
  auto tokens = parse_api_tokens(kLines, "tokens.txt");
  ASSERT_EQ(tokens.size(), 2u);
  EXPECT_EQ(tokens[0].name, "ci-bot");
  EXPECT_EQ(tokens[0].scope, Scope::kWrite);
  EXPECT_EQ(tokens[0].secret, std::string(32, 'w'));
  EXPECT_EQ(tokens[1].name, "grafana");
  EXPECT_EQ(tokens[1].scope, Scope::kRead);
  EXPECT_TRUE(parse_api_tokens("# nothing\n\n", "x").empty());
}

TEST(ApiTokensTest, BadLinesNameTheLineButNeverTheSecret) {
  const std::string secret = "s3cr3t-value-that-must-not-leak";
  for (const std::string& text :
       {"admin bob " + secret, "write bob " + secret + " extra", "write b/o/b " + secret,
        std::string("write bob short"), "write bob " + secret + "\nread bob " + secret + "x",
        "write bob " + secret + "\nread alice " + secret}) {
    try {
      parse_api_tokens(text, "tokens.txt");
      ADD_FAILURE() << "accepted: " << text;
    } catch (const std::invalid_argument& e) {
      const std::string what = e.what();
      EXPECT_NE(what.find("tokens.txt line "), std::string::npos) << what;
      EXPECT_EQ(what.find("s3cr3t"), std::string::npos) << what;
    }
  }
}

TEST(AuthenticatorTest, OffWithoutTokens) {
  Authenticator auth;
  EXPECT_FALSE(auth.enabled());
  EXPECT_EQ(auth.identify(nullptr).result, Caller::Result::kAnonymous);
}

TEST(AuthenticatorTest, IdentifiesBearerTokens) {
  Authenticator auth;
  auth.set_tokens(parse_api_tokens(kLines, "t"));
  EXPECT_EQ(auth.identify(nullptr).result, Caller::Result::kMissing);
  const std::string write = "Bearer " + std::string(32, 'w');
  auto caller = auth.identify(&write);
  EXPECT_EQ(caller.result, Caller::Result::kOk);
  EXPECT_EQ(caller.name, "ci-bot");
  EXPECT_EQ(caller.scope, Scope::kWrite);
  const std::string read = "bearer   " + std::string(32, 'r') + " ";
  caller = auth.identify(&read);
  EXPECT_EQ(caller.result, Caller::Result::kOk);
  EXPECT_EQ(caller.name, "grafana");
  EXPECT_EQ(caller.scope, Scope::kRead);
  for (const std::string& bad :
       {std::string("Bearer ") + std::string(31, 'w'), "Bearer " + std::string(33, 'w'),
        "Basic " + std::string(32, 'w'), std::string(32, 'w'), std::string("Bearer"),
        std::string("Bearer "), "Bearer " + std::string(31, 'w') + "x", std::string("")}) {
    EXPECT_EQ(auth.identify(&bad).result, Caller::Result::kInvalid) << bad;
  }
}

TEST(AuthenticatorTest, ReplacingTokensTakesEffectAtOnce) {
  Authenticator auth;
  auth.set_tokens(parse_api_tokens(kLines, "t"));
  const std::string old_token = "Bearer " + std::string(32, 'w');
  auth.set_tokens(parse_api_tokens("write ci-bot " + std::string(32, 'n'), "t"));
  EXPECT_EQ(auth.identify(&old_token).result, Caller::Result::kInvalid);
  const std::string new_token = "Bearer " + std::string(32, 'n');
  EXPECT_EQ(auth.identify(&new_token).result, Caller::Result::kOk);
  auth.set_tokens({});
  EXPECT_FALSE(auth.enabled());
}

}  // namespace
}  // namespace floodgate::api
