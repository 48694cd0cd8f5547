// tool_strategy/rules: rule parsing with exact error paths, matching, chains and policies.
#define BOOST_TEST_MODULE strategy_rules
#include <boost/json.hpp>
#include <boost/test/unit_test.hpp>

#include "rules_strategy.hpp"

namespace json = boost::json;
using namespace kiln;
using namespace kiln::plugins::strategy_rules;

namespace {

RulesToolStrategy make(const char* rules_json, const char* kind_config = "{}") {
  return RulesToolStrategy(
      nodes::ToolStrategySettings::from_json(json::parse(kind_config).as_object()),
      parse_rules(json::parse(rules_json)));
}

std::string parse_error(const char* rules_json) {
  try {
    parse_rules(json::parse(rules_json));
  } catch (const std::invalid_argument& e) {
    return e.what();
  }
  return "";
}

const std::vector<std::string> kProviders{"tts_torch", "tts_espeak", "cloud"};

}  // namespace

BOOST_AUTO_TEST_CASE(globs) {
  BOOST_TEST(glob_match("*", ""));
  BOOST_TEST(glob_match("tts.*", "tts.synthesize"));
  BOOST_TEST(!glob_match("tts.*", "roast.analyze"));
  BOOST_TEST(glob_match("*.analyze", "roast.analyze"));
  BOOST_TEST(glob_match("r?ast.*e", "roast.analyze"));
  BOOST_TEST(!glob_match("roast", "roast.analyze"));
  BOOST_TEST(glob_match("a*b*c", "axxbyyc"));
}

BOOST_AUTO_TEST_CASE(rule_errors_name_the_exact_path) {
  BOOST_TEST(parse_error(R"([{"match": {}, "providers": ["a"]}])") ==
             "plugin_config.strategy_rules.rules[0].name: required string is missing");
  BOOST_TEST(
      parse_error(
          R"([{"name": "a", "providers": ["x"]}, {"name": "b", "match": {"tool": 3}, "providers": ["x"]}])") ==
      "plugin_config.strategy_rules.rules[1].match.tool: expected a string, got 3");
  BOOST_TEST(parse_error(R"([{"name": "a", "providers": []}])").find("rules[0].providers") !=
             std::string::npos);
  BOOST_TEST(
      parse_error(
          R"([{"name": "a", "providers": ["x"], "match": {"input": [{"pointer": "voice", "equals": 1}]}}])") ==
      "plugin_config.strategy_rules.rules[0].match.input[0].pointer: a JSON Pointer starts with "
      "'/', e.g. /voice");
  BOOST_TEST(
      parse_error(
          R"([{"name": "a", "providers": ["x"], "match": {"input": [{"pointer": "/v", "equals": 1, "exists": true}]}}])")
          .find("needs exactly one of equals, in, exists") != std::string::npos);
  BOOST_TEST(parse_error(R"([{"name": "a", "providers": ["x"], "prio": 1}])")
                 .find("rules[0].prio: unknown key") != std::string::npos);
  BOOST_TEST(
      parse_error(R"([{"name": "a", "providers": ["x"]}, {"name": "a", "providers": ["x"]}])")
          .find("duplicate rule name 'a'") != std::string::npos);
  BOOST_TEST(
      parse_error(R"([{"name": "a", "providers": ["x"], "timeout_ms": 0}])").find("timeout_ms") !=
      std::string::npos);
}

BOOST_AUTO_TEST_CASE(first_matching_rule_decides) {
  auto s = make(R"([
    {"name": "acme-espeak", "match": {"tool": "tts.*", "tenant": "acme"}, "providers": ["tts_espeak"]},
    {"name": "slow-voices", "match": {"tool": "tts.synthesize", "input": [{"pointer": "/voice", "in": ["slt", "rms"]}]},
     "providers": ["cloud", "*"], "timeout_ms": 5000, "max_attempts": 2}
  ])");
  json::value in = json::object{{"voice", "slt"}};
  auto a = s.route({"tts.synthesize", "acme", in, kProviders});
  BOOST_REQUIRE(a.ok());
  BOOST_TEST(a.value().providers == (std::vector<std::string>{"tts_espeak"}));
  BOOST_TEST(a.value().reason == "rule acme-espeak");

  auto b = s.route({"tts.synthesize", "other", in, kProviders});
  BOOST_REQUIRE(b.ok());
  BOOST_TEST(b.value().providers == (std::vector<std::string>{"cloud", "tts_torch", "tts_espeak"}));
  BOOST_TEST(b.value().policy.timeout.count() == 5000);
  BOOST_TEST(b.value().policy.max_attempts == 2);

  json::value other_voice = json::object{{"voice", "kal"}};
  auto c = s.route({"tts.synthesize", "other", other_voice, kProviders});
  BOOST_REQUIRE(c.ok());
  BOOST_TEST(c.value().providers == (std::vector<std::string>{"tts_torch"}));  // static behaviour
}

BOOST_AUTO_TEST_CASE(input_predicates) {
  auto s = make(R"([
    {"name": "has-ssml", "match": {"input": [{"pointer": "/ssml", "exists": true}]}, "providers": ["cloud"]},
    {"name": "loud", "match": {"input": [{"pointer": "/opts/volume", "equals": 11}]}, "providers": ["tts_espeak"]}
  ])");
  json::value ssml = json::object{{"ssml", "<speak/>"}};
  json::value loud = json::parse(R"({"opts": {"volume": 11}})");
  json::value quiet = json::parse(R"({"opts": {"volume": 3}})");
  json::value not_object = json::array{1};
  BOOST_TEST(s.route({"t", "x", ssml, kProviders}).value().providers.front() == "cloud");
  BOOST_TEST(s.route({"t", "x", loud, kProviders}).value().providers.front() == "tts_espeak");
  BOOST_TEST(s.route({"t", "x", quiet, kProviders}).value().providers.front() == "tts_torch");
  BOOST_TEST(s.route({"t", "x", not_object, kProviders}).value().providers.front() == "tts_torch");
}

BOOST_AUTO_TEST_CASE(a_rule_whose_providers_are_all_missing_is_an_error) {
  auto s = make(R"([{"name": "gone", "match": {"tool": "x"}, "providers": ["nobody"]}])");
  json::value in = json::object{};
  auto r = s.route({"x", "t", in, kProviders});
  BOOST_REQUIRE(!r.ok());
  BOOST_TEST(r.error().code == "provider_unavailable");
  BOOST_TEST(r.error().message.find("rule 'gone'") != std::string::npos);
}

BOOST_AUTO_TEST_CASE(without_rules_it_is_static) {
  auto s = make("[]", R"({"providers": {"x": "cloud"}, "timeout_ms": 100})");
  nodes::StaticToolStrategy st(nodes::ToolStrategySettings::from_json(
      json::parse(R"({"providers": {"x": "cloud"}, "timeout_ms": 100})").as_object()));
  json::value in = json::object{};
  for (const char* tool : {"x", "y", ""}) {
    auto a = s.route({tool, "t", in, kProviders});
    auto b = st.route({tool, "t", in, kProviders});
    BOOST_TEST(a.ok() == b.ok());
    if (a.ok()) BOOST_TEST((a.value() == b.value()));
  }
}
