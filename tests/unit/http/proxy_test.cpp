#include "http/proxy.h"

#include <gtest/gtest.h>

#include <map>
#include <string>

namespace floodgate::http {
namespace {

using Env = std::map<std::string, std::string>;

TEST(SelectProxy, NoVariablesMeansDirect) {
  EXPECT_EQ(select_proxy("https://api.prefect.cloud/api", {}), "");
}

TEST(SelectProxy, HttpsTargetUsesHttpsProxy) {
  const Env env{{"HTTPS_PROXY", "http://secure:3128"}, {"HTTP_PROXY", "http://plain:3128"}};
  EXPECT_EQ(select_proxy("https://api.prefect.cloud/api", env), "http://secure:3128");
}

TEST(SelectProxy, HttpTargetUsesHttpProxy) {
  const Env env{{"HTTPS_PROXY", "http://secure:3128"}, {"HTTP_PROXY", "http://plain:3128"}};
  EXPECT_EQ(select_proxy("http://prefect:4200/api", env), "http://plain:3128");
}

TEST(SelectProxy, HttpProxyDoesNotServeHttpsTargets) {
  EXPECT_EQ(select_proxy("https://prefect/api", {{"http_proxy", "http://plain:3128"}}), "");
}

TEST(SelectProxy, AllProxyIsTheFallback) {
  const Env env{{"ALL_PROXY", "http://every:8080"}};
  EXPECT_EQ(select_proxy("https://prefect/api", env), "http://every:8080");
  EXPECT_EQ(select_proxy("http://prefect/api", env), "http://every:8080");
}

TEST(SelectProxy, SchemeSpecificBeatsAllProxy) {
  const Env env{{"all_proxy", "http://every:8080"}, {"https_proxy", "http://secure:3128"}};
  EXPECT_EQ(select_proxy("https://prefect/api", env), "http://secure:3128");
}

TEST(SelectProxy, LowerCaseBeatsUpperCase) {
  const Env env{{"https_proxy", "http://lower:1"}, {"HTTPS_PROXY", "http://upper:2"}};
  EXPECT_EQ(select_proxy("https://prefect/api", env), "http://lower:1");
}

TEST(SelectProxy, UpperCaseAloneIsHonoured) {
  EXPECT_EQ(select_proxy("http://prefect/api", {{"HTTP_PROXY", "http://upper:2"}}),
            "http://upper:2");
}

TEST(SelectProxy, EmptyLowerCaseSwitchesTheProxyOff) {
  const Env env{{"https_proxy", ""}, {"HTTPS_PROXY", "http://upper:2"}};
  EXPECT_EQ(select_proxy("https://prefect/api", env), "");
}

TEST(SelectProxy, EmptySchemeProxyFallsBackToAllProxy) {
  const Env env{{"https_proxy", ""}, {"all_proxy", "http://every:8080"}};
  EXPECT_EQ(select_proxy("https://prefect/api", env), "http://every:8080");
}

TEST(SelectProxy, ProxyWithoutSchemeGetsHttp) {
  EXPECT_EQ(select_proxy("https://prefect/api", {{"https_proxy", "squid.corp:3128"}}),
            "http://squid.corp:3128");
}

TEST(SelectProxy, BlanksAroundTheProxyAreIgnored) {
  EXPECT_EQ(select_proxy("https://prefect/api", {{"https_proxy", "  http://squid:3128 "}}),
            "http://squid:3128");
}

TEST(SelectProxy, OtherSchemesOnlyUseAllProxy) {
  const Env env{{"http_proxy", "http://plain:1"}, {"all_proxy", "http://every:2"}};
  EXPECT_EQ(select_proxy("ws://prefect/api/events", env), "http://every:2");
}

TEST(SelectProxy, UnparseableTargetIsDirect) {
  const Env env{{"all_proxy", "http://every:2"}};
  EXPECT_EQ(select_proxy("not a url", env), "");
  EXPECT_EQ(select_proxy("http://", env), "");
}

TEST(SelectProxy, NoProxyExcludesListedHost) {
  const Env env{{"https_proxy", "http://secure:3128"}, {"no_proxy", "prefect.internal"}};
  EXPECT_EQ(select_proxy("https://prefect.internal/api", env), "");
  EXPECT_EQ(select_proxy("https://api.prefect.cloud/api", env), "http://secure:3128");
}

TEST(SelectProxy, NoProxyAlsoExcludesFromAllProxy) {
  const Env env{{"ALL_PROXY", "http://every:2"}, {"NO_PROXY", "prefect.internal"}};
  EXPECT_EQ(select_proxy("http://prefect.internal:4200/api", env), "");
}

TEST(SelectProxy, LowerCaseNoProxyWinsWhenNotEmpty) {
  const Env both{{"https_proxy", "http://p:1"}, {"no_proxy", "a.com"}, {"NO_PROXY", "b.com"}};
  EXPECT_EQ(select_proxy("https://a.com/", both), "");
  EXPECT_EQ(select_proxy("https://b.com/", both), "http://p:1");
  const Env empty_lower{{"https_proxy", "http://p:1"}, {"no_proxy", ""}, {"NO_PROXY", "b.com"}};
  EXPECT_EQ(select_proxy("https://b.com/", empty_lower), "");
}

TEST(SelectProxy, UserInfoInTheTargetIsNotTheHost) {
  const Env env{{"https_proxy", "http://p:1"}, {"no_proxy", "prefect.internal"}};
  EXPECT_EQ(select_proxy("https://user:pw@prefect.internal/api", env), "");
  EXPECT_EQ(select_proxy("https://prefect.internal@evil.example/api", env), "http://p:1");
}

TEST(BypassesProxy, EmptyListBypassesNothing) {
  EXPECT_FALSE(bypasses_proxy("https://prefect/api", ""));
  EXPECT_FALSE(bypasses_proxy("https://prefect/api", " , ,"));
}

TEST(BypassesProxy, StarBypassesEverything) {
  EXPECT_TRUE(bypasses_proxy("https://api.prefect.cloud/api", "*"));
  EXPECT_TRUE(bypasses_proxy("http://10.1.2.3:4200/api", " * "));
  EXPECT_TRUE(bypasses_proxy("http://10.1.2.3:4200/api", "example.com,*"));
}

TEST(BypassesProxy, DomainMatchesItselfAndSubdomains) {
  EXPECT_TRUE(bypasses_proxy("https://example.com/", "example.com"));
  EXPECT_TRUE(bypasses_proxy("https://api.example.com/", "example.com"));
  EXPECT_TRUE(bypasses_proxy("https://a.b.example.com/", "example.com"));
}

TEST(BypassesProxy, DomainMatchesOnLabelBoundariesOnly) {
  EXPECT_FALSE(bypasses_proxy("https://notexample.com/", "example.com"));
  EXPECT_FALSE(bypasses_proxy("https://example.com.evil.io/", "example.com"));
}

TEST(BypassesProxy, LeadingDotAndStarDotAreTheSameAsPlain) {
  EXPECT_TRUE(bypasses_proxy("https://api.example.com/", ".example.com"));
  EXPECT_TRUE(bypasses_proxy("https://example.com/", ".example.com"));
  EXPECT_TRUE(bypasses_proxy("https://api.example.com/", "*.example.com"));
  EXPECT_FALSE(bypasses_proxy("https://notexample.com/", ".example.com"));
}

TEST(BypassesProxy, CaseAndBlanksDoNotMatter) {
  EXPECT_TRUE(bypasses_proxy("https://API.Example.COM/", " other.org , EXAMPLE.com "));
}

TEST(BypassesProxy, TrailingDotOnTheTargetIsIgnored) {
  EXPECT_TRUE(bypasses_proxy("https://api.example.com./", "example.com"));
}

TEST(BypassesProxy, HostWithPortMatchesOnlyThatPort) {
  EXPECT_TRUE(bypasses_proxy("http://prefect:4200/api", "prefect:4200"));
  EXPECT_FALSE(bypasses_proxy("http://prefect:4201/api", "prefect:4200"));
  EXPECT_TRUE(bypasses_proxy("http://prefect:4201/api", "prefect"));
}

TEST(BypassesProxy, PortImpliedByTheSchemeCounts) {
  EXPECT_TRUE(bypasses_proxy("https://prefect.internal/api", "prefect.internal:443"));
  EXPECT_FALSE(bypasses_proxy("http://prefect.internal/api", "prefect.internal:443"));
  EXPECT_TRUE(bypasses_proxy("http://prefect.internal/api", "prefect.internal:80"));
}

TEST(BypassesProxy, LoopbackIsNotImplicit) {
  EXPECT_FALSE(bypasses_proxy("http://localhost:4200/api", "example.com"));
  EXPECT_FALSE(bypasses_proxy("http://127.0.0.1:4200/api", "example.com"));
  EXPECT_TRUE(bypasses_proxy("http://localhost:4200/api", "localhost,127.0.0.1"));
  EXPECT_TRUE(bypasses_proxy("http://127.0.0.1:4200/api", "localhost,127.0.0.1"));
}

TEST(BypassesProxy, IpMatchesExactly) {
  EXPECT_TRUE(bypasses_proxy("http://10.0.0.1:4200/", "10.0.0.1"));
  EXPECT_FALSE(bypasses_proxy("http://10.0.0.12:4200/", "10.0.0.1"));
  // No suffix matching for addresses.
  EXPECT_FALSE(bypasses_proxy("http://10.0.0.1:4200/", "0.0.1"));
  EXPECT_FALSE(bypasses_proxy("http://10.0.0.1:4200/", ".0.0.1"));
}

TEST(BypassesProxy, IpWithPort) {
  EXPECT_TRUE(bypasses_proxy("http://10.0.0.1:4200/", "10.0.0.1:4200"));
  EXPECT_FALSE(bypasses_proxy("http://10.0.0.1:4201/", "10.0.0.1:4200"));
}

TEST(BypassesProxy, Ipv4Cidr) {
  EXPECT_TRUE(bypasses_proxy("http://10.20.30.40/", "10.0.0.0/8"));
  EXPECT_TRUE(bypasses_proxy("http://192.168.1.7/", "192.168.1.0/24"));
  EXPECT_FALSE(bypasses_proxy("http://192.168.2.7/", "192.168.1.0/24"));
  EXPECT_TRUE(bypasses_proxy("http://8.8.8.8/", "0.0.0.0/0"));
  EXPECT_TRUE(bypasses_proxy("http://10.0.0.1/", "10.0.0.1/32"));
  // A CIDR never matches a name, and a malformed CIDR matches nothing.
  EXPECT_FALSE(bypasses_proxy("http://host.corp/", "10.0.0.0/8"));
  EXPECT_FALSE(bypasses_proxy("http://10.0.0.1/", "10.0.0.0/33"));
  EXPECT_FALSE(bypasses_proxy("http://10.0.0.1/", "10.0.0/8"));
}

TEST(BypassesProxy, Ipv6Literals) {
  EXPECT_TRUE(bypasses_proxy("http://[::1]:4200/api", "::1"));
  EXPECT_TRUE(bypasses_proxy("http://[::1]:4200/api", "[::1]"));
  EXPECT_TRUE(bypasses_proxy("http://[::1]:4200/api", "[::1]:4200"));
  EXPECT_FALSE(bypasses_proxy("http://[::1]:4201/api", "[::1]:4200"));
  EXPECT_FALSE(bypasses_proxy("http://[::2]/api", "::1"));
}

TEST(BypassesProxy, MalformedEntriesAreSkipped) {
  EXPECT_TRUE(bypasses_proxy("http://prefect/", "prefect:notaport,prefect"));
  EXPECT_FALSE(bypasses_proxy("http://prefect/", "prefect:notaport"));
  EXPECT_FALSE(bypasses_proxy("http://prefect/", "[::1"));
}

TEST(BypassesProxy, PathAndQueryAreNotPartOfTheHost) {
  EXPECT_TRUE(bypasses_proxy("http://prefect/api?x=example.com", "prefect"));
  EXPECT_FALSE(bypasses_proxy("http://other/prefect", "prefect"));
  EXPECT_TRUE(bypasses_proxy("http://prefect#frag", "prefect"));
}

}  // namespace
}  // namespace floodgate::http
