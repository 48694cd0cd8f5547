// Missions: templates, policy, the governor, idempotency, operator actions, leases, retries,
// admission (rate limits, actuation) and the ledger projection with replay.
#define BOOST_TEST_MODULE missions
#include <chrono>
#include <cstdio>
#include <fstream>
#include <set>
#include <thread>

#include <boost/test/unit_test.hpp>

#include "common/sha256.hpp"
#include "common/strings.hpp"
#include "missions/admission.hpp"
#include "missions/projection.hpp"
#include "missions/worker.hpp"
#include "runtime/kernel.hpp"
#include "storage/sqlite.hpp"
#include "support/process.hpp"

namespace json = boost::json;
using namespace kiln;
using namespace kiln::missions;

namespace {

void write(const std::filesystem::path& p, const std::string& text) {
  std::filesystem::create_directories(p.parent_path());
  std::ofstream(p) << text;
}

const char* kPolicy = R"(version: 1
actuation: {allowed: false}
tenants:
  acme:
    missions: ["*"]
    deny: [denied]
    review: [reviewed]
    max_active: 3
    retry_after_ms: 60000
  "*":
    missions: [simple]
)";

const char* kSimple = R"(name: simple
inputs:
  who: {type: string, default: world}
steps:
  - {id: a, tool: kiln.echo, input: {hello: "${inputs.who}"}}
  - {id: b, tool: kiln.echo, needs: [a], input: {got: "${steps.a.output.hello}", n: 2}}
)";

// A world of its own per test: templates, policy and database in a temp dir.
struct World {
  test::TempDir dir;
  std::unique_ptr<runtime::Kernel> k;

  explicit World(std::string policy = kPolicy, std::vector<std::string> extra_sets = {}) {
    write(dir.path() / "missions/simple.yaml", kSimple);
    write(dir.path() / "missions/denied.yaml", "name: denied\nsteps: [{id: a, tool: kiln.noop}]\n");
    write(dir.path() / "missions/reviewed.yaml",
          "name: reviewed\nsteps: [{id: a, tool: kiln.noop}]\n");
    write(dir.path() / "missions/flaky.yaml", R"(name: flaky
inputs: {key: {type: string}, times: {type: integer}}
steps:
  - id: f
    tool: test.fail_times
    input: {key: "${inputs.key}", times: "${inputs.times}"}
    retry: {max_attempts: 3, backoff_ms: 1}
)");
    write(dir.path() / "missions/guarded.yaml", R"(name: guarded
steps:
  - {id: f, tool: test.fatal, approval: on_failure}
)");
    write(dir.path() / "missions/gated.yaml", R"(name: gated
steps:
  - {id: a, tool: kiln.noop}
  - {id: b, tool: kiln.echo, needs: [a], approval: required, input: {x: 1}}
)");
    write(dir.path() / "missions/gated_fatal.yaml",
          "name: gated_fatal\nsteps: [{id: f, tool: test.fatal, approval: required}]\n");
    write(dir.path() / "missions/filed.yaml", R"(name: filed
inputs: {text: {type: string, default: hello}}
steps:
  - {id: keep, tool: test.file, input: {name: note.txt, text: "${inputs.text}"}}
)");
    write(dir.path() / "missions/filed_then_fails.yaml", R"(name: filed_then_fails
steps:
  - {id: keep, tool: test.file, input: {name: note.txt, text: kept}}
  - {id: f, tool: test.fatal, needs: [keep]}
)");
    write(dir.path() / "missions/levels.yaml", R"(name: levels
inputs: {setting: {type: string}, value: {type: integer}, after: {type: string, default: x}}
steps:
  - {id: a, tool: kiln.echo, input: {x: 1}}
  - {id: set, tool: test.levels, needs: [a], approval: required,
     input: {setting: "${inputs.setting}", value: "${inputs.value}"}}
  - {id: later, tool: test.levels, needs: [a],
     input: {setting: heater, value: "${steps.a.output.x}"}}
)");
    write(dir.path() / "missions/session_report.yaml", R"(name: session_report
inputs:
  session: {type: string}
  marks: {type: [object, "null"], default: null}
  weight: {type: [object, "null"], default: null}
steps: [{id: a, tool: kiln.noop}]
)");
    write(dir.path() / "missions/actuating.yaml",
          "name: actuating\nsteps: [{id: a, tool: test.actuate}]\n");
    write(dir.path() / "policy.yaml", policy);
    sets_ = {std::string("plugins.search_paths=[") + KILN_TEST_PLUGIN_DIR + "/test_tools]",
             "storage.path=" + (dir.path() / "kiln.db").string(),
             "missions.dirs=[" + (dir.path() / "missions").string() + "]",
             "policy.file=" + (dir.path() / "policy.yaml").string(), "missions.lease_ms=300"};
    for (auto& s : extra_sets) sets_.push_back(std::move(s));
    boot();
  }
  // Boots the kernel again over the same files (after a template changed, as a restart would).
  void boot() {
    k.reset();
    runtime::BootOptions o;
    o.environment = {};
    o.setup_logging = false;
    o.open_storage = true;
    o.sets = sets_;
    k = runtime::Kernel::boot(o);
  }
  std::vector<std::string> sets_;
  MissionService& svc() { return k->missions(); }
  CreateResult start(const std::string& tmpl, const std::string& tenant = "acme",
                     json::object inputs = {}, std::optional<std::string> key = {}) {
    CreateRequest r;
    r.template_name = tmpl;
    r.tenant = tenant;
    r.inputs = std::move(inputs);
    r.idempotency_key = std::move(key);
    r.actor = Actor{"tester", Role::kOperator};
    return svc().create(r);
  }
  MissionView run(const std::string& id) {
    return run_until_settled(svc(), k->executor(), id, std::chrono::seconds(20));
  }
  // Kinds of the mission's ledger events, in order.
  std::vector<std::string> history(const std::string& id) {
    std::vector<std::string> kinds;
    ledger::ExportFilter f;
    f.stream = "mission/" + id;
    k->ledger().for_each(f, [&](const ledger::Event& e) {
      if (e.kind != "mission.heartbeat") kinds.push_back(e.kind);
    });
    return kinds;
  }
};

bool contains(const std::string& s, const std::string& part) {
  return s.find(part) != std::string::npos;
}

const Actor kApprover{"ana", Role::kApprover};
const Actor kOperator{"oli", Role::kOperator};

template <class F>
std::string error_of(F f) {
  try {
    f();
  } catch (const std::exception& e) {
    return e.what();
  }
  return "";
}

}  // namespace

// ---- Templates -------------------------------------------------------------------------------

BOOST_AUTO_TEST_CASE(templates_are_ordered_by_needs_and_rendered) {
  auto set = TemplateSet::parse({{"t.yaml", R"(name: t
inputs: {n: {type: integer, default: 2}}
steps:
  - {id: second, tool: x, needs: first, input: {v: "${steps.first.output.list.1}", s: "n=${inputs.n}"}}
  - {id: first, tool: x, input: {n: "${inputs.n}", m: "${mission.id}"}}
)"}});
  const auto* t = set.find("t");
  BOOST_REQUIRE(t);
  BOOST_TEST(t->steps.front().id == "first");
  json::object inputs{{"n", 7}};
  std::map<std::string, json::value> outputs{{"first", json::parse(R"({"list":["a","b"]})")}};
  RenderContext ctx{&inputs, &outputs, "m-1", "acme"};
  BOOST_TEST(render(t->steps[0].input, ctx) == json::parse(R"({"n":7,"m":"m-1"})"));
  BOOST_TEST(render(t->steps[1].input, ctx) == json::parse(R"({"v":"b","s":"n=7"})"));
  BOOST_TEST(complete_inputs(*t, {}) == (json::object{{"n", 2}}));
  BOOST_TEST(error_of([&] {
               complete_inputs(*t, {{"n", "x"}});
             }).find("inputs.n") != std::string::npos);
}

// A reference ending in '?' is null where the field is absent (an output a step gave under an
// older kiln, an input a mission created then did not have); without it, absence is an error.
// A step with no output yet is an error either way.
BOOST_AUTO_TEST_CASE(an_optional_reference_is_null_where_the_field_is_absent) {
  auto set = TemplateSet::parse({{"t.yaml", R"(name: t
inputs: {n: {type: integer, default: 2}, extra: {type: [string, "null"], default: null}}
steps:
  - {id: first, tool: x, input: {n: "${inputs.n}"}}
  - {id: second, tool: x, needs: first, input: {ref: "${steps.first.output.reference?}",
                                                 got: "${steps.first.output.list.1?}",
                                                 extra: "${inputs.extra?}", s: "r=${steps.first.output.reference?}"}}
  - {id: strict, tool: x, needs: first, input: {ref: "${steps.first.output.reference}"}}
)"}});
  const auto* t = set.find("t");
  BOOST_REQUIRE(t);
  BOOST_REQUIRE(t->steps.size() == 3u);
  json::object inputs{{"n", 7}};  // made before `extra` was declared
  std::map<std::string, json::value> outputs{{"first", json::parse(R"({"list":["a","b"]})")}};
  RenderContext ctx{&inputs, &outputs, "m-1", "acme"};
  const auto& second = t->steps[1].id == "second" ? t->steps[1] : t->steps[2];
  const auto& strict = t->steps[1].id == "strict" ? t->steps[1] : t->steps[2];
  BOOST_TEST(render(second.input, ctx) ==
             json::parse(R"({"ref":null,"got":"b","extra":null,"s":"r=null"})"));
  BOOST_TEST(error_of([&] { render(strict.input, ctx); }).find("'reference' is not present") !=
             std::string::npos);
  std::map<std::string, json::value> none;
  RenderContext before{&inputs, &none, "m-1", "acme"};
  BOOST_TEST(error_of([&] { render(second.input, before); }).find("has no output yet") !=
             std::string::npos);
}

BOOST_AUTO_TEST_CASE(template_errors_name_file_line_and_fix) {
  const std::map<std::string, json::value> tools = {{"kiln.echo", nullptr}, {"kiln.noop", nullptr}};
  auto err = error_of([&] {
    TemplateSet::parse({{"bad.yaml", R"(name: bad
steps:
  - {id: a, tool: kiln.ecko, input: {x: "${inputs.nope}"}}
  - {id: b, tool: kiln.noop, needs: [c], retyr: 1}
  - {id: d, tool: kiln.noop, input: {y: "${steps.a.output}"}}
  - id: e
    tool: kiln.noop
    input:
      lots: [ok, "${inputs.lott}"]
      note: "${inputs"
)"}},
                       &tools);
  });
  BOOST_TEST(err.find("bad.yaml:3:5: step 'a' uses unknown tool 'kiln.ecko'; did you mean "
                      "'kiln.echo'?") != std::string::npos,
             err);
  // A reference is located where it is written, with its place in the step's input.
  BOOST_TEST(err.find("bad.yaml:3:41: step 'a': input.x: ${inputs.nope} refers to an input the "
                      "template does not declare") != std::string::npos,
             err);
  BOOST_TEST(
      err.find("bad.yaml:9:18: step 'e': input.lots[1]: ${inputs.lott} refers to an input") !=
          std::string::npos,
      err);
  BOOST_TEST(
      err.find("bad.yaml:10:13: step 'e': input.note: unterminated placeholder '${inputs'") !=
          std::string::npos,
      err);
  BOOST_TEST(err.find("needs unknown step 'c'") != std::string::npos);
  BOOST_TEST(err.find("unknown step key 'retyr'; did you mean 'retry'?") != std::string::npos);
  BOOST_TEST(err.find("step 'd': input.y: ${steps.a.output} refers to step 'a', which this step "
                      "does not need") != std::string::npos);
  auto cycle = error_of([] {
    TemplateSet::parse({{"c.yaml",
                         "name: c\nsteps:\n  - {id: a, tool: x, needs: b}\n"
                         "  - {id: b, tool: x, needs: a}\n"}});
  });
  BOOST_TEST(cycle.find("c.yaml:3:5: template 'c' has a cycle in 'needs' among steps a, b") !=
                 std::string::npos,
             cycle);
  // A duplicate id is said once, not followed by a cycle among no steps; a step is not suggested
  // as its own need; a later step's output is not fixed by "add it to 'needs'" (a cycle).
  auto more = error_of([] {
    TemplateSet::parse({{"d.yaml", "name: d\nsteps:\n  - {id: a, tool: x}\n  - {id: a, tool: x}\n"},
                        {"e.yaml", "name: e\nsteps:\n  - {id: a, tool: x, needs: [5]}\n"},
                        {"f.yaml",
                         "name: f\nsteps:\n  - {id: a, tool: x, input: {v: '${steps.b.output}'}}\n"
                         "  - {id: b, tool: x, needs: [a]}\n"}});
  });
  BOOST_TEST(more.find("d.yaml:4:5: duplicate step id 'a'") != std::string::npos, more);
  // `retry: 3` (a number where {max_attempts, backoff_ms} belongs) is a template error at its
  // place, not yaml-cpp's exception from the subscript.
  BOOST_CHECK_EXCEPTION(
      TemplateSet::parse({{"r.yaml", "name: r\nsteps:\n  - {id: a, tool: x, retry: 3}\n"}}),
      TemplateError, [](const TemplateError& e) {
        return std::string(e.what()).find(
                   "r.yaml:3:29: retry is {max_attempts: N >= 1, backoff_ms: N >= 0}") !=
               std::string::npos;
      });
  BOOST_TEST(more.find("cycle") == std::string::npos, more);
  BOOST_TEST(more.find("needs unknown step '5'") != std::string::npos, more);
  BOOST_TEST(more.find("did you mean 'a'") == std::string::npos, more);
  BOOST_TEST(more.find("'b' runs after this step (it needs 'a'): a step can use only the outputs "
                       "of steps before it") != std::string::npos,
             more);
}

// A step's input its tool would refuse is said when the template loads (config check, policy
// validate, every boot), not when the step runs — perhaps after an approver approved it.
BOOST_AUTO_TEST_CASE(step_inputs_are_checked_against_their_tools_schema) {
  const std::map<std::string, json::value> tools = {
      {"kiln.sleep", json::parse(R"({"type": "object", "required": ["ms"],
          "additionalProperties": false,
          "properties": {"ms": {"type": "integer", "minimum": 0, "maximum": 60000}}})")},
      {"kiln.echo", nullptr}};
  auto err = error_of([&] {
    TemplateSet::parse({{"s.yaml", R"(name: s
inputs: {ms: {type: integer, default: 5}}
steps:
  - {id: word, tool: kiln.sleep, input: {ms: "abc"}}
  - {id: long, tool: kiln.sleep, input: {ms: 999999}}
  - {id: typo, tool: kiln.sleep, input: {msec: 5, ms: 1}}
  - {id: none, tool: kiln.sleep}
  - {id: later, tool: kiln.sleep, input: {ms: "${inputs.ms}"}}
  - {id: free, tool: kiln.echo, input: {anything: [1, "${inputs.ms}"]}}
)"}},
                       &tools);
  });
  for (const char* expected :
       {"s.yaml:4:5: step 'word': input.ms: expected integer, got string (the input of tool "
        "kiln.sleep",
        "s.yaml:5:5: step 'long': input.ms: must be <= 60000",
        "s.yaml:6:5: step 'typo': input.msec: unknown field (the schema has ms)",
        "s.yaml:7:5: step 'none': input.ms: required field is missing"})
    BOOST_TEST(err.find(expected) != std::string::npos, expected << "\n" << err);
  BOOST_TEST(err.find("step 'later'") == std::string::npos, err);  // known when it runs
  BOOST_TEST(err.find("step 'free'") == std::string::npos, err);
}

// ---- Policy ----------------------------------------------------------------------------------

BOOST_AUTO_TEST_CASE(policy_validation_finds_unknown_names_and_contradictions) {
  World w;
  auto p = parse_policy({"p.yaml", R"(version: 1
actuation: {allowed: true, require_approval: true}
isolation: {plugins: {test_tools: in_process, test_tool: isolated}}
tenants:
  acme:
    missions: [simple, simpel]
    deny: [simple]
    review: [denied]
    rate_limits: {per_tool: {test.actuate: {per_second: 1}}}
approvals:
  tools: {test.actuate: never, kiln.noop: on_failure}
)"});
  PolicyWorld world;
  world.templates = w.k->templates().names();
  world.tools = {"kiln.echo", "kiln.noop", "test.actuate"};
  world.actuation_tools = {"test.actuate"};
  world.plugins = {"test_tools"};
  world.runtime_isolated_plugins = {"test_tools"};
  auto c = check_policy(p, world);
  auto all = common::join(c.errors, "\n");
  BOOST_TEST(all.find("p.yaml:6:24: tenants.acme.missions names unknown mission template "
                      "'simpel'; did you mean 'simple'?") != std::string::npos,
             all);
  BOOST_TEST(all.find("contradiction: tenants.acme both allows and denies 'simple'") !=
             std::string::npos);
  BOOST_TEST(all.find("contradiction: tenants.acme.review lists 'denied', which the tenant may "
                      "not start") != std::string::npos);
  BOOST_TEST(all.find("contradiction: approvals.tools.test.actuate is 'never', but the tool "
                      "actuates") != std::string::npos);
  BOOST_TEST(all.find("contradiction: the policy pins plugin 'test_tools' in_process, but "
                      "runtime.isolated_plugins isolates it") != std::string::npos);
  BOOST_TEST(all.find("unknown plugin 'test_tool'; did you mean 'test_tools'?") !=
             std::string::npos);
  BOOST_TEST(c.errors.size() == 6u, all);
  auto structural = error_of([] {
    parse_policy({"q.yaml",
                  "version: 1\ntenants:\n  a: {missions: [x], max_actve: 3}\n"
                  "actuation: {allowed: maybe}\n"});
  });
  BOOST_TEST(structural.find("q.yaml:3:22: unknown key 'tenants.a.max_actve'; did you mean "
                             "'max_active'?") != std::string::npos,
             structural);
  BOOST_TEST(structural.find("actuation.allowed must be true or false") != std::string::npos);
  // A scalar where a mapping belongs is said where it is: yaml-cpp threw on its subscript (no
  // file or line, exit 1 instead of 3 — a server under systemd restarted in a loop).
  std::vector<std::string> shapes;
  BOOST_CHECK_NO_THROW(parse_policy(
      {"s.yaml",
       "version: 1\ntenants:\n  a: {missions: [x], rate_limits: {tool_calls: 100, per_tool: "
       "{kiln.sleep: 5}}}\n  b: 7\nactuation: false\nisolation: isolated\napprovals: required\n"},
      &shapes));
  const auto shaped = common::join(shapes, "\n");
  for (const char* said :
       {"s.yaml:3:48: tenants.a.rate_limits.tool_calls must be a mapping",
        "tenants.a.rate_limits.per_tool.kiln.sleep must be a mapping",
        "s.yaml:4:6: tenants.b must be a mapping", "s.yaml:5:12: actuation must be a mapping",
        "isolation must be a mapping", "approvals must be a mapping"})
    BOOST_TEST(shaped.find(said) != std::string::npos, said << " in:\n" << shaped);
  BOOST_TEST(shapes.size() == 6u, shaped);
  // A rate without a burst bursts a second's worth, at least one call: a call every 2 s is
  // {per_second: 0.5} (it was refused for a burst of 0.5 that the file does not name).
  std::vector<std::string> slow_said;
  auto slow = parse_policy({"r.yaml",
                            "version: 1\ntenants:\n  a: {missions: [x], rate_limits: {per_tool: "
                            "{kiln.sleep: {per_second: 0.5}}, tool_calls: {per_second: 20}}}\n"},
                           &slow_said);
  BOOST_TEST(slow_said.empty(), common::join(slow_said, "\n"));
  BOOST_TEST(slow.tenants.at("a").per_tool.at("kiln.sleep").burst == 1.0);
  BOOST_TEST(slow.tenants.at("a").per_tool.at("kiln.sleep").per_second == 0.5);
  BOOST_REQUIRE(slow.tenants.at("a").tool_calls);
  BOOST_TEST(slow.tenants.at("a").tool_calls->burst == 20.0);
  BOOST_CHECK_EXCEPTION(
      parse_policy({"w.yaml", "just-a-word\n"}), TemplateError, [](const TemplateError& e) {
        return std::string(e.what()).find("w.yaml:1:1: the policy must be a mapping") !=
               std::string::npos;
      });
  // max_active 0 is not "no limit" (it was, silently), and a bad value is found at its key.
  auto zero = error_of([] {
    parse_policy({"z.yaml",
                  "version: 1\ntenants:\n  a: {missions: [x], max_active: 0}\n"
                  "  b: {missions: [x], retry_after_ms: -1}\n"});
  });
  BOOST_TEST(zero.find("z.yaml:3:34: tenants.a.max_active must be 1 or more (got 0); leave it out "
                       "for no limit") != std::string::npos,
             zero);
  BOOST_TEST(
      zero.find("z.yaml:4:38: tenants.b.retry_after_ms must be 0-86400000 (a day), got -1") !=
          std::string::npos,
      zero);
  // A malformed list is its error, not followed by "may start no missions"; an entry that is no
  // name is found where it is, not taken as the template ''.
  std::vector<std::string> problems;
  auto lists = parse_policy({"l.yaml",
                             "version: 1\ntenants:\n  a: {missions: simple}\n"
                             "  b: {missions: [simple, {x: 1}]}\n  c: {missions: []}\n"
                             "  d: {missions: [{x: 1}]}\n"},
                            &problems);
  const auto said = common::join(problems, "\n");
  BOOST_TEST(
      said.find("l.yaml:3:17: tenants.a.missions must be a list of names") != std::string::npos,
      said);
  BOOST_TEST(said.find("l.yaml:4:26: tenants.b.missions must be a list of names; this entry is a "
                       "mapping") != std::string::npos,
             said);
  PolicyWorld names_only;
  names_only.templates = {"simple"};
  const auto checked = check_policy(lists, names_only);
  const auto warned = common::join(checked.warnings, "\n");
  BOOST_TEST(warned.find("tenants.a may start no missions") == std::string::npos, warned);
  BOOST_TEST(warned.find("tenants.d may start no missions") == std::string::npos, warned);
  BOOST_TEST(warned.find("tenants.c may start no missions") != std::string::npos, warned);
  BOOST_TEST(common::join(checked.errors, "\n").find("''") == std::string::npos);
}

BOOST_AUTO_TEST_CASE(an_invalid_policy_stops_boot_with_exit_3) {
  try {
    World w("version: 1\ntenants:\n  acme: {missions: [nope]}\n");
    BOOST_FAIL("boot accepted a policy naming an unknown template");
  } catch (const runtime::BootError& e) {
    BOOST_TEST(e.exit_code() == runtime::kExitConfig);
    BOOST_TEST(std::string(e.what()).find("unknown mission template 'nope'") != std::string::npos);
  }
}

// ---- Governor ----------------------------------------------------------------------------------

BOOST_AUTO_TEST_CASE(the_governor_decides_with_reason_codes) {
  World w;
  auto allowed = w.start("simple");
  BOOST_TEST(allowed.mission.state == "PENDING");
  BOOST_TEST(allowed.mission.decision == "ALLOW");
  auto denied = w.start("denied");
  BOOST_TEST(denied.mission.state == "BLOCKED");
  BOOST_TEST(denied.mission.reason == "TEMPLATE_NOT_ALLOWED");
  auto other = w.start("reviewed", "globex");  // "*" allows only simple
  BOOST_TEST(other.mission.reason == "TEMPLATE_NOT_ALLOWED");
  auto reviewed = w.start("reviewed");
  BOOST_TEST(reviewed.mission.state == "QUARANTINED");
  BOOST_TEST(reviewed.mission.decision == "QUARANTINE");
  BOOST_TEST(reviewed.mission.reason == "REVIEW_REQUIRED");
  auto actuating = w.start("actuating");
  BOOST_TEST(actuating.mission.state == "BLOCKED");
  BOOST_TEST(actuating.mission.reason == "ACTUATION_DISABLED");
  // acme has max_active 3: simple (PENDING) + reviewed (QUARANTINED) + one more.
  BOOST_TEST(w.start("simple").mission.state == "PENDING");
  auto later = w.start("simple");
  BOOST_TEST(later.mission.state == "RETRY");
  BOOST_TEST(later.mission.decision == "RETRY_LATER");
  BOOST_TEST(later.mission.reason == "TENANT_AT_CAPACITY");
  BOOST_TEST(later.mission.not_before.has_value());
  // Every decision is in the ledger, blocked ones included.
  BOOST_TEST(w.history(denied.mission.id) == std::vector<std::string>{"mission.created"});
}

BOOST_AUTO_TEST_CASE(unknown_tenants_are_blocked_without_a_catch_all_rule) {
  World w("version: 1\ntenants:\n  acme: {missions: [simple]}\n");
  BOOST_TEST(w.start("simple", "nobody").mission.reason == "UNKNOWN_TENANT");
  BOOST_TEST(w.start("simple", "acme").mission.state == "PENDING");
}

BOOST_AUTO_TEST_CASE(bad_requests_are_errors_not_missions) {
  World w;
  auto e = error_of([&] { w.start("simpel"); });
  BOOST_TEST(e.find("unknown mission template 'simpel'; did you mean 'simple'?") !=
             std::string::npos);
  e = error_of([&] { w.start("simple", "acme", {{"who", 3}}); });
  BOOST_TEST(e.find("inputs.who") != std::string::npos, e);
  e = error_of([&] { w.start("simple", "acme", {{"whom", "x"}}); });
  BOOST_TEST(!e.empty());
  BOOST_TEST(w.svc().list({}).empty());
}

// ---- Idempotency -----------------------------------------------------------------------------

BOOST_AUTO_TEST_CASE(the_same_idempotency_key_returns_the_same_mission) {
  World w;
  auto first = w.start("simple", "acme", {{"who", "x"}}, "key-1");
  auto again = w.start("simple", "acme", {{"who", "x"}}, "key-1");
  BOOST_TEST(first.created);
  BOOST_TEST(!again.created);
  BOOST_TEST(again.mission.id == first.mission.id);
  // Another tenant's key space is its own.
  auto other = w.start("simple", "globex", {{"who", "x"}}, "key-1");
  BOOST_TEST(other.created);
  BOOST_TEST(other.mission.id != first.mission.id);
  try {
    w.start("simple", "acme", {{"who", "y"}}, "key-1");
    BOOST_FAIL("a reused key with other inputs was accepted");
  } catch (const MissionError& e) {
    BOOST_TEST(e.code_name() == "conflict");
  }
  BOOST_TEST(w.svc().list({}).size() == 2u);
}

BOOST_AUTO_TEST_CASE(concurrent_creates_with_one_key_make_one_mission) {
  World w;
  std::vector<std::thread> threads;
  std::mutex mu;
  std::set<std::string> ids;
  for (int i = 0; i < 8; ++i)
    threads.emplace_back([&] {
      auto r = w.start("simple", "acme", {}, "same");
      std::lock_guard lock(mu);
      ids.insert(r.mission.id);
    });
  for (auto& t : threads) t.join();
  BOOST_TEST(ids.size() == 1u);
  BOOST_TEST(w.svc().list({}).size() == 1u);
}

// ---- Running ---------------------------------------------------------------------------------

BOOST_AUTO_TEST_CASE(a_mission_runs_its_steps_with_templated_inputs) {
  World w;
  auto m = w.run(w.start("simple", "acme", {{"who", "roaster"}}).mission.id);
  BOOST_TEST(m.state == "DONE");
  BOOST_TEST(m.steps[1].output == json::parse(R"({"got":"roaster","n":2})"));
  BOOST_TEST(w.history(m.id) ==
             (std::vector<std::string>{"mission.created", "mission.claimed", "step.started",
                                       "step.completed", "step.started", "step.completed",
                                       "mission.completed"}));
}

BOOST_AUTO_TEST_CASE(retryable_failures_go_through_retry_with_backoff) {
  World w;
  auto m = w.run(w.start("flaky", "acme", {{"key", "k1"}, {"times", 2}}).mission.id);
  BOOST_TEST(m.state == "DONE");
  BOOST_TEST(m.steps[0].attempts == 3);
  auto h = w.history(m.id);
  BOOST_TEST(std::count(h.begin(), h.end(), "mission.retry_scheduled") == 2);
  // More failures than attempts: FAILED, and an operator retry runs it again.
  auto f = w.run(w.start("flaky", "acme", {{"key", "k2"}, {"times", 3}}).mission.id);
  BOOST_TEST(f.state == "FAILED");
  BOOST_TEST(f.reason == "STEP_FAILED");
  BOOST_TEST(f.steps[0].error.at("code").as_string() == "unavailable");
  auto r = w.svc().retry("acme", f.id, kOperator, "try again");
  BOOST_TEST(r.state == "PENDING");
  BOOST_TEST(r.steps[0].attempts == 0);
  BOOST_TEST(w.run(f.id).state == "DONE");
}

BOOST_AUTO_TEST_CASE(approvals_hold_a_mission_until_an_approver_approves) {
  World w;
  auto m = w.run(w.start("gated").mission.id);
  BOOST_TEST(m.state == "QUARANTINED");
  BOOST_TEST(m.reason == "APPROVAL_REQUIRED");
  BOOST_TEST(m.steps[0].state == "DONE");
  BOOST_TEST(m.steps[1].state == "PENDING");
  // Operators may not approve; another tenant cannot even see it.
  BOOST_CHECK_THROW(w.svc().approve("acme", m.id, kOperator, ""), MissionError);
  try {
    w.svc().approve("globex", m.id, kApprover, "");
    BOOST_FAIL("another tenant approved");
  } catch (const MissionError& e) {
    BOOST_TEST(e.code_name() == "not_found");
  }
  auto a = w.svc().approve("acme", m.id, kApprover, "checked");
  BOOST_TEST(a.state == "PENDING");
  BOOST_TEST(a.steps[1].approved_by.value_or("") == "ana");
  BOOST_TEST(w.run(m.id).state == "DONE");
  // approval: on_failure quarantines a failed step; approving runs it again.
  auto g = w.run(w.start("guarded").mission.id);
  BOOST_TEST(g.state == "QUARANTINED");
  BOOST_TEST(g.reason == "STEP_FAILED");
  auto again = w.svc().approve("acme", g.id, kApprover, "retry it");
  BOOST_TEST(again.steps[0].state == "PENDING");
  BOOST_TEST(w.run(g.id).state == "QUARANTINED");
  BOOST_CHECK_THROW(w.svc().approve("acme", w.start("simple").mission.id, kApprover, ""),
                    MissionError);  // not QUARANTINED
}

// approvals.tools in the policy: each step gets the stricter of its template's rule and the
// policy's — required over none and over on_failure; `never` weakens no template's rule.
BOOST_AUTO_TEST_CASE(a_policy_approval_rule_is_the_stricter_one) {
  World w(std::string(kPolicy) +
          "approvals:\n  tools: {kiln.echo: required, kiln.noop: never, test.fatal: required}\n");
  auto simple = w.start("simple").mission;  // two kiln.echo steps, no rule in the template
  BOOST_TEST(simple.steps[0].approval == "required");
  auto held = w.run(simple.id);
  BOOST_TEST(held.state == "QUARANTINED");
  BOOST_TEST(held.reason == "APPROVAL_REQUIRED");
  BOOST_TEST(held.steps[0].state == "PENDING");
  BOOST_TEST(w.start("guarded").mission.steps[0].approval == "required");  // over on_failure
  auto gated = w.start("gated").mission;
  BOOST_TEST(gated.steps[0].approval == "never");     // kiln.noop: policy never, template none
  BOOST_TEST(gated.steps[1].approval == "required");  // the template's required stands
}

// A template changed or removed while its mission waits: the mission fails saying so before any
// step runs — an approver approved the steps as they were, not another tool in their place.
BOOST_AUTO_TEST_CASE(a_template_changed_under_a_waiting_mission_fails_it) {
  World w;
  const auto changed = w.start("gated").mission.id;  // step a: kiln.noop
  const auto removed = w.start("filed").mission.id;
  write(w.dir.path() / "missions/gated.yaml", R"(name: gated
steps:
  - {id: a, tool: kiln.echo, input: {x: 2}}
  - {id: b, tool: kiln.echo, needs: [a], approval: required, input: {x: 1}}
)");
  std::filesystem::remove(w.dir.path() / "missions/filed.yaml");
  w.boot();
  auto c = w.run(changed);
  BOOST_TEST(c.state == "FAILED");
  BOOST_TEST(c.reason == "TEMPLATE_CHANGED");
  std::string failed;  // the mission.failed event, as the ledger keeps it
  ledger::ExportFilter f;
  f.stream = "mission/" + changed;
  w.k->ledger().for_each(f, [&](const ledger::Event& e) {
    if (e.kind == "mission.failed") failed = json::serialize(e.payload);
  });
  BOOST_TEST(
      failed.find("step 'a' now uses tool 'kiln.echo', not 'kiln.noop'") != std::string::npos,
      failed);
  const auto h = w.history(changed);
  BOOST_TEST((std::find(h.begin(), h.end(), "step.started") == h.end()));
  auto r = w.run(removed);
  BOOST_TEST(r.state == "FAILED");
  BOOST_TEST(r.reason == "TEMPLATE_MISSING");
}

BOOST_AUTO_TEST_CASE(cancel_is_final_and_refused_twice) {
  World w;
  auto m = w.start("simple");
  BOOST_CHECK_THROW(w.svc().cancel("acme", m.mission.id, Actor{"v", Role::kViewer}, ""),
                    MissionError);
  auto c = w.svc().cancel("acme", m.mission.id, kOperator, "not needed");
  BOOST_TEST(c.state == "CANCELED");
  BOOST_CHECK_THROW(w.svc().cancel("acme", m.mission.id, kOperator, ""), MissionError);
  BOOST_TEST(!w.svc().claim("w1", m.mission.id).has_value());
  BOOST_CHECK_THROW(w.svc().retry("acme", m.mission.id, kOperator, ""), MissionError);
}

// A session's report replaced while its mission runs (a roaster marked or weighed the roast
// meanwhile) is canceled: left to run, its QC could hold it for an approver beside the new one.
BOOST_AUTO_TEST_CASE(a_running_report_replaced_by_a_roasters_change_is_canceled) {
  World w(kPolicy, {"sessions.mission=session_report"});
  telemetry::SessionInfo s;
  s.id = "s-r1-1";
  s.tenant = "acme";
  s.device = "r1";
  s.state = "closed";
  const auto first = w.k->start_session_report(s);
  BOOST_REQUIRE(first);
  const auto running = w.svc().claim("w1");
  BOOST_REQUIRE(running);
  BOOST_TEST(running->mission.id == *first);
  s.mission_id = first;
  s.marks["FCs"] = 480;
  const auto second = w.k->start_session_report(s);
  BOOST_REQUIRE(second);
  BOOST_TEST(*second != *first);
  BOOST_TEST(w.svc().get("acme", *first)->state == "CANCELED");
  BOOST_TEST(w.svc().get("acme", *second)->state == "PENDING");
  const auto kinds = w.history(*first);
  BOOST_TEST(kinds.back() == "mission.canceled");
  // The same marks again: the same mission, which is not canceled by its own start.
  s.mission_id = second;
  BOOST_TEST(w.k->start_session_report(s).value_or("") == *second);
  BOOST_TEST(w.svc().get("acme", *second)->state == "PENDING");
}

// A step whose input the mission's inputs decide is checked against its tool's schema when the
// mission starts — per-setting ranges included — so an approver is never asked about an input
// the tool would refuse (an audit approved "heater 12", which then failed).
BOOST_AUTO_TEST_CASE(a_step_input_its_tool_refuses_is_refused_at_start) {
  World w;
  try {
    w.start("levels", "acme", json::object{{"setting", "heater"}, {"value", 12}});
    BOOST_FAIL("heater 12 was started");
  } catch (const MissionError& e) {
    BOOST_TEST((e.code() == MissionError::Code::kInvalidInput));
    BOOST_TEST(e.field() == "inputs");
    BOOST_TEST(std::string(e.what()) ==
                   "step 'set' of levels would give tool test.levels an input it refuses: "
                   "input.value: must be <= 9 (heater levels are 0-9) (from the mission's inputs)",
               e.what());
  }
  // In range, or another setting: started (the step known only when it runs is checked then).
  BOOST_TEST(
      w.start("levels", "acme", json::object{{"setting", "heater"}, {"value", 9}}).mission.state ==
      "PENDING");
  BOOST_TEST(
      w.start("levels", "acme", json::object{{"setting", "fan"}, {"value", 12}}).mission.state ==
      "PENDING");
}

// ---- Leases ----------------------------------------------------------------------------------

BOOST_AUTO_TEST_CASE(a_lapsed_lease_is_reclaimed_and_the_old_worker_is_refused) {
  World w;  // lease 300 ms
  auto id = w.start("simple").mission.id;
  auto a = w.svc().claim("worker-a");
  BOOST_REQUIRE(a);
  BOOST_TEST(a->mission.id == id);
  BOOST_TEST(!w.svc().claim("worker-b").has_value());  // held
  BOOST_TEST(w.svc().heartbeat(*a));
  std::this_thread::sleep_for(std::chrono::milliseconds(400));
  auto b = w.svc().claim("worker-b");
  BOOST_REQUIRE(b);
  BOOST_TEST(b->mission.id == id);
  BOOST_TEST(!w.svc().heartbeat(*a));
  try {
    w.svc().record(*a, {});
    BOOST_FAIL("a worker that lost its lease recorded an event");
  } catch (const MissionError& e) {
    BOOST_TEST(e.code_name() == "lease_lost");
  }
  MissionRunner runner(w.svc(), w.k->executor());
  BOOST_TEST(runner.run(*b) == "DONE");
  auto m = w.svc().get("acme", id);
  BOOST_TEST(m->claims == 2);
  auto h = w.history(id);
  BOOST_TEST(std::count(h.begin(), h.end(), "mission.claimed") == 2);
}

BOOST_AUTO_TEST_CASE(a_step_whose_workers_keep_dying_fails_the_mission) {
  World w(kPolicy, {"missions.max_reclaims=0"});
  auto id = w.start("simple").mission.id;
  auto a = w.svc().claim("worker-a");
  BOOST_REQUIRE(a);
  // worker-a starts step a and dies.
  w.svc().record(*a, {ledger::NewEvent{"acme", "mission/" + id, "step.started",
                                       json::object{{"id", id}, {"step", "a"}, {"attempt", 1}}}});
  std::this_thread::sleep_for(std::chrono::milliseconds(400));
  auto b = w.svc().claim("worker-b");
  BOOST_REQUIRE(b);
  MissionRunner runner(w.svc(), w.k->executor());
  BOOST_TEST(runner.run(*b) == "FAILED");
  auto m = w.svc().get("acme", id);
  BOOST_TEST(m->reason == "TOO_MANY_RECLAIMS");
}

BOOST_AUTO_TEST_CASE(a_worker_pool_runs_many_missions_each_to_one_terminal_state) {
  World w("version: 1\ntenants:\n  \"*\": {missions: [\"*\"]}\n");
  std::vector<std::string> ids;
  for (int i = 0; i < 40; ++i)
    ids.push_back(w.start("simple", "t" + std::to_string(i % 4)).mission.id);
  {
    WorkerPool pool(w.svc(), w.k->executor(), 4, std::chrono::milliseconds(5));
    for (int i = 0; i < 400; ++i) {
      ListFilter f;
      f.state = "DONE";
      f.limit = 1000;
      if (w.svc().list(f).size() == ids.size()) break;
      std::this_thread::sleep_for(std::chrono::milliseconds(25));
    }
  }
  for (const auto& id : ids) {
    auto h = w.history(id);
    BOOST_TEST(std::count(h.begin(), h.end(), "mission.completed") == 1, id);
    BOOST_TEST(std::count(h.begin(), h.end(), "mission.claimed") == 1, id);
  }
  BOOST_TEST(w.k->ledger().verify().ok);
}

// ---- Projection and replay -------------------------------------------------------------------

BOOST_AUTO_TEST_CASE(replay_rebuilds_the_tables_and_finds_tampering) {
  World w;
  w.run(w.start("simple").mission.id);
  w.run(w.start("gated").mission.id);
  w.start("denied");
  w.k->ledger().flush();
  const auto db = w.dir.path() / "kiln.db";
  auto r = replay(db, w.dir.path() / "scratch.db");
  BOOST_TEST(r.ok(), common::join(r.differences, "\n"));
  BOOST_TEST(r.missions == 3);
  {
    storage::Connection c(db, storage::Connection::Mode::kReadWrite);
    c.exec("UPDATE missions SET state = 'DONE' WHERE template = 'gated'");
    c.exec(
        "DELETE FROM mission_steps WHERE step = 'b' AND mission_id IN "
        "(SELECT id FROM missions WHERE template = 'simple')");
    // A step row planted beside the ledger (a copy of a real one under another name).
    c.exec(
        "CREATE TEMP TABLE planted AS SELECT * FROM mission_steps WHERE step = 'a' LIMIT 1; "
        "UPDATE planted SET step = 'planted'; INSERT INTO mission_steps SELECT * FROM planted");
  }
  auto bad = replay(db, w.dir.path() / "scratch.db");
  BOOST_TEST(!bad.ok());
  auto all = common::join(bad.differences, "\n");
  BOOST_TEST(all.find("/planted: in the live tables but not in the ledger") != std::string::npos,
             all);
  BOOST_TEST(all.find(": state: live DONE, replayed QUARANTINED") != std::string::npos, all);
  BOOST_TEST(all.find("/b: in the ledger but missing from the live tables") != std::string::npos,
             all);
}

// ---- Ledger commands -------------------------------------------------------------------------

BOOST_AUTO_TEST_CASE(a_refused_command_takes_back_only_its_own_rows) {
  World w;
  auto& l = w.k->sqlite_ledger();
  auto before = l.count();
  l.execute([](storage::Connection& c) -> std::vector<ledger::NewEvent> {
    c.exec("CREATE TABLE scratch (i INTEGER NOT NULL)");
    return {};
  });
  // Concurrent commands in one group: the ones that throw leave no trace — neither their rows
  // (written before they threw) nor an event — the others land.
  std::vector<std::thread> threads;
  std::atomic<int> refused{0};
  for (int i = 0; i < 20; ++i)
    threads.emplace_back([&, i] {
      try {
        l.execute([i](storage::Connection& c) -> std::vector<ledger::NewEvent> {
          c.exec("INSERT INTO scratch VALUES (" + std::to_string(i) + ")");
          if (i % 2) throw std::runtime_error("refused");
          return {ledger::NewEvent{"t", "s", "test.event", json::object{{"i", i}}}};
        });
      } catch (const std::runtime_error&) {
        ++refused;
      }
    });
  for (auto& t : threads) t.join();
  BOOST_TEST(refused.load() == 10);
  BOOST_TEST(l.count() == before + 10);
  BOOST_TEST(l.verify().ok);
  storage::Connection c(l.path(), storage::Connection::Mode::kReadOnly);
  auto rows = c.prepare("SELECT count(*), sum(i % 2) FROM scratch");
  BOOST_REQUIRE(rows.step());
  BOOST_TEST(rows.int64(0) == 10);  // the ten that landed
  BOOST_TEST(rows.int64(1) == 0);   // none of the refused ones' rows
}

// ---- Admission -------------------------------------------------------------------------------

BOOST_AUTO_TEST_CASE(token_buckets_refill_over_time) {
  using Clock = TokenBucket::Clock;
  auto t0 = Clock::now();
  TokenBucket b(10, 2, t0);  // 10/s, burst 2
  std::chrono::milliseconds wait{0};
  BOOST_TEST(b.take(t0, &wait));
  BOOST_TEST(b.take(t0, &wait));
  BOOST_TEST(!b.take(t0, &wait));
  BOOST_TEST(wait.count() == 100);
  BOOST_TEST(!b.take(t0 + std::chrono::milliseconds(50), &wait));
  BOOST_TEST(wait.count() == 50);
  BOOST_TEST(b.take(t0 + std::chrono::milliseconds(100), &wait));
  BOOST_TEST(b.take(t0 + std::chrono::seconds(10), &wait));
  BOOST_TEST(b.take(t0 + std::chrono::seconds(10), &wait));
  BOOST_TEST(!b.take(t0 + std::chrono::seconds(10), &wait));  // capped at burst
}

BOOST_AUTO_TEST_CASE(rate_limits_apply_per_tenant_and_per_tool) {
  World w(R"(version: 1
tenants:
  "*":
    missions: ["*"]
    rate_limits:
      tool_calls: {per_second: 0.001, burst: 5}
      per_tool: {kiln.echo: {per_second: 0.001, burst: 2}}
)");
  auto call = [&](const std::string& tool, const std::string& tenant) {
    runtime::ToolCall c;
    c.tool = tool;
    c.tenant = tenant;
    c.input = json::object{};
    return w.k->executor().invoke(c);
  };
  BOOST_TEST(call("kiln.echo", "a").ok());
  BOOST_TEST(call("kiln.echo", "a").ok());
  auto limited = call("kiln.echo", "a");
  BOOST_REQUIRE(!limited.ok());
  BOOST_TEST(limited.error().code == "rate_limited");
  BOOST_TEST(limited.error().retryable);
  BOOST_TEST(limited.error().details.at("retry_after_ms").as_int64() > 0);
  BOOST_TEST(call("kiln.echo", "b").ok());  // another tenant's bucket
  BOOST_TEST(call("kiln.noop", "a").ok());  // tenant budget: 5 = 2 echo + 3 more
  BOOST_TEST(call("kiln.noop", "a").ok());
  BOOST_TEST(call("kiln.noop", "a").ok());
  auto tenant_limited = call("kiln.noop", "a");
  BOOST_REQUIRE(!tenant_limited.ok());
  BOOST_TEST(tenant_limited.error().message.find("tool-call rate limit") != std::string::npos);
}

BOOST_AUTO_TEST_CASE(actuation_runs_only_when_allowed_and_approved) {
  {
    World w;  // actuation.allowed: false
    runtime::ToolCall c;
    c.tool = "test.actuate";
    c.approved_by = "ana";
    auto r = w.k->executor().invoke(c);
    BOOST_REQUIRE(!r.ok());
    BOOST_TEST(r.error().code == "forbidden");
  }
  World w(R"(version: 1
actuation: {allowed: true, require_approval: true}
tenants: {"*": {missions: ["*"]}}
)");
  runtime::ToolCall c;
  c.tool = "test.actuate";
  auto direct = w.k->executor().invoke(c);
  BOOST_REQUIRE(!direct.ok());
  BOOST_TEST(direct.error().message.find("requires approval") != std::string::npos);
  // Through a mission: the step needs approval (policy), then runs.
  auto m = w.run(w.start("actuating").mission.id);
  BOOST_TEST(m.state == "QUARANTINED");
  BOOST_TEST(m.steps[0].approval == "required");
  w.svc().approve("acme", m.id, kApprover, "go");
  BOOST_TEST(w.run(m.id).state == "DONE");
}

// ---- Review findings -------------------------------------------------------------------------

BOOST_AUTO_TEST_CASE(a_deferred_mission_meets_the_governor_again_when_claimed) {
  World w(R"(version: 1
tenants:
  acme: {missions: ["*"], deny: [actuating], review: [reviewed], max_active: 1, retry_after_ms: 1}
)");
  auto first = w.start("simple").mission;
  auto reviewed = w.start("reviewed").mission;
  auto third = w.start("simple").mission;
  BOOST_TEST(first.state == "PENDING");
  BOOST_TEST(reviewed.reason == "TENANT_AT_CAPACITY");
  BOOST_TEST(third.reason == "TENANT_AT_CAPACITY");
  std::this_thread::sleep_for(std::chrono::milliseconds(10));
  auto running = w.svc().claim("w1");
  BOOST_REQUIRE(running);
  BOOST_TEST(running->mission.id == first.id);
  // The deferred review template is held for review, not run; the other waits for capacity.
  BOOST_TEST(!w.svc().claim("w1").has_value());
  BOOST_TEST(w.svc().get("acme", reviewed.id)->state == "QUARANTINED");
  std::this_thread::sleep_for(std::chrono::milliseconds(10));
  BOOST_TEST(!w.svc().claim("w1").has_value());
  auto waiting = w.svc().get("acme", third.id);
  BOOST_TEST(waiting->state == "RETRY");
  BOOST_TEST(waiting->claims == 0);
}

// Waiting for capacity behind a mission held for an approver: asked again less and less often
// (not an event every retry_after_ms all night), woken at once when a mission of the tenant ends,
// and not work that keeps `mission work --until-idle` going.
BOOST_AUTO_TEST_CASE(a_mission_waiting_for_capacity_backs_off_and_wakes_when_one_ends) {
  World w(R"(version: 1
tenants:
  acme: {missions: ["*"], deny: [actuating], review: [reviewed], max_active: 1, retry_after_ms: 1}
)");
  auto held = w.start("reviewed").mission;
  BOOST_REQUIRE(held.state == "QUARANTINED");
  auto waiting = w.start("simple").mission;
  BOOST_REQUIRE(waiting.reason == "TENANT_AT_CAPACITY");
  auto behind = w.start("simple").mission;
  BOOST_REQUIRE(behind.reason == "TENANT_AT_CAPACITY");
  std::this_thread::sleep_for(std::chrono::milliseconds(1000));
  BOOST_TEST(w.svc().has_work());  // their first checks are due
  BOOST_TEST(!w.svc().claim("w1").has_value());
  BOOST_TEST(!w.svc().claim("w1").has_value());
  // Waited ≥ 1 s: the next check in ≥ 500 ms, not retry_after_ms (1 ms) away.
  const auto later = [] {
    return ledger::utc_millis(std::chrono::system_clock::now() + std::chrono::milliseconds(250));
  };
  for (const auto& id : {waiting.id, behind.id}) {
    const auto next = w.svc().get("acme", id)->not_before.value_or("");
    BOOST_TEST(next > later(), id << ": " << next);
  }
  BOOST_TEST(!w.svc().has_work());  // nothing to do until then, or until capacity frees
  // The held mission ends: one place frees, and the oldest waiting mission is asked again now —
  // the other keeps its time (asked now, it would only be refused again, with an event).
  w.svc().cancel("acme", held.id, kOperator, "not today");
  BOOST_TEST(w.svc().has_work());
  BOOST_TEST(w.svc().get("acme", behind.id)->not_before.value_or("") > later());
  auto claim = w.svc().claim("w1");
  BOOST_REQUIRE(claim.has_value());
  BOOST_TEST(claim->mission.id == waiting.id);
  MissionRunner runner(w.svc(), w.k->executor());
  BOOST_TEST(runner.run(*claim) == "DONE");
  // That one done, the next is woken in turn.
  BOOST_TEST(w.svc().has_work());
  auto next_claim = w.svc().claim("w1");
  BOOST_REQUIRE(next_claim.has_value());
  BOOST_TEST(next_claim->mission.id == behind.id);
  BOOST_TEST(runner.run(*next_claim) == "DONE");
  BOOST_TEST(!w.svc().has_work());
  w.k->ledger().flush();
  const auto replayed = replay(w.dir.path() / "kiln.db", w.dir.path() / "replay.db");
  BOOST_TEST(replayed.ok(), replayed.differences.size());
}

BOOST_AUTO_TEST_CASE(an_expired_lease_is_lost_even_before_a_reclaim) {
  World w;  // lease 300 ms
  w.start("simple");
  auto a = w.svc().claim("worker-a");
  BOOST_REQUIRE(a);
  std::this_thread::sleep_for(std::chrono::milliseconds(400));
  try {
    w.svc().record(*a, {});
    BOOST_FAIL("a worker recorded with an expired lease");
  } catch (const MissionError& e) {
    BOOST_TEST(e.code_name() == "lease_lost");
  }
}

BOOST_AUTO_TEST_CASE(retry_now_keeps_the_attempt_count) {
  World w(R"(version: 1
tenants: {"*": {missions: ["*"]}}
)");
  auto id = w.start("flaky", "acme", {{"key", "k9"}, {"times", 10}}).mission.id;
  auto claim = w.svc().claim("w");
  BOOST_REQUIRE(claim);
  MissionRunner runner(w.svc(), w.k->executor());
  BOOST_TEST(runner.run(*claim) == "RETRY");
  auto now = w.svc().retry("acme", id, kOperator, "skip the wait");
  BOOST_TEST(now.state == "PENDING");
  BOOST_TEST(now.steps[0].attempts == 1);
}

BOOST_AUTO_TEST_CASE(replay_refuses_to_overwrite_the_live_database) {
  World w;
  w.k->ledger().flush();
  const auto db = w.dir.path() / "kiln.db";
  BOOST_CHECK_THROW(replay(db, db), std::invalid_argument);
  BOOST_CHECK_THROW(replay(db, db.string() + "-wal"), std::invalid_argument);
  BOOST_TEST(std::filesystem::exists(db));
}

BOOST_AUTO_TEST_CASE(a_stopping_worker_hands_the_mission_back_between_steps) {
  World w;
  auto id = w.start("simple").mission.id;
  auto claim = w.svc().claim("w");
  BOOST_REQUIRE(claim);
  std::atomic<bool> stopping{true};
  MissionRunner runner(w.svc(), w.k->executor(), &stopping);
  BOOST_TEST(runner.run(*claim) == "PENDING");
  auto m = w.svc().get("acme", id);
  BOOST_TEST(m->reason == "WORKER_STOPPING");
  BOOST_TEST(!m->lease_owner.has_value());
  BOOST_TEST(w.run(id).state == "DONE");
}

BOOST_AUTO_TEST_CASE(approving_a_review_does_not_approve_a_gated_step) {
  World w(R"(version: 1
tenants: {acme: {missions: ["*"], deny: [actuating], review: [gated]}}
)");
  auto id = w.start("gated").mission.id;
  auto first = w.svc().approve("acme", id, kApprover, "review ok");
  BOOST_TEST(!first.steps[1].approved_by.has_value());
  auto held = w.run(id);
  BOOST_TEST(held.state == "QUARANTINED");
  BOOST_TEST(held.reason == "APPROVAL_REQUIRED");
  w.svc().approve("acme", id, kApprover, "step ok");
  BOOST_TEST(w.run(id).state == "DONE");
}

BOOST_AUTO_TEST_CASE(api_keys_unknown_to_the_database_are_not_cached) {
  // Anyone can present any number of made-up key ids: each is refused and none is kept, while a
  // real key is cached and a revoked one refused.
  World w;
  auto& keys = w.k->keys();
  const auto made = keys.create("acme", Role::kViewer, "dash", Actor{"admin", Role::kAdmin});
  BOOST_TEST(keys.authenticate(made.secret).has_value());
  BOOST_TEST(keys.cached() == 1u);
  for (int i = 0; i < 500; ++i) {
    char id[13];
    std::snprintf(id, sizeof id, "%012x", i);
    BOOST_TEST(!keys.authenticate(std::string("kiln_k-") + id + "_" + std::string(32, '0')));
  }
  BOOST_TEST(!keys.authenticate("kiln_x-000000000000_" + std::string(32, '0')));
  BOOST_TEST(keys.cached() == 1u);
  // The right id with the wrong secret is refused too.
  std::string wrong = made.secret;
  wrong.back() = wrong.back() == '0' ? '1' : '0';
  BOOST_TEST(!keys.authenticate(wrong));
  keys.revoke(made.info.id, Actor{"admin", Role::kAdmin});
  BOOST_TEST(!keys.authenticate(made.secret));
}

BOOST_AUTO_TEST_CASE(a_retried_step_asks_its_approver_again) {
  // An approval is for one run: after the approved step failed, a retry holds it for an
  // approver again instead of running it on the old approval.
  World w;
  const auto id = w.start("gated_fatal").mission.id;
  auto held = w.run(id);
  BOOST_TEST(held.state == "QUARANTINED");
  BOOST_TEST(held.reason == "APPROVAL_REQUIRED");
  w.svc().approve("acme", id, kApprover, "go");
  auto failed = w.run(id);
  BOOST_TEST(failed.state == "FAILED");
  BOOST_TEST(failed.steps[0].approved_by.value_or("") == "ana");
  auto retried = w.svc().retry("acme", id, kOperator, "again");
  BOOST_TEST(!retried.steps[0].approved_by.has_value());
  auto again = w.run(id);
  BOOST_TEST(again.state == "QUARANTINED");
  BOOST_TEST(again.reason == "APPROVAL_REQUIRED");
  BOOST_TEST(w.history(id).back() == "mission.held");
}

BOOST_AUTO_TEST_CASE(an_actuating_step_needs_another_approver) {
  // Four eyes on the physical world: who started the mission cannot approve its actuation.
  World w(R"(version: 1
actuation: {allowed: true, require_approval: true}
tenants: {"*": {missions: ["*"]}}
)");
  const auto id = w.start("actuating").mission.id;  // started by "tester"
  BOOST_TEST(w.run(id).state == "QUARANTINED");
  try {
    w.svc().approve("acme", id, Actor{"tester", Role::kApprover}, "mine");
    BOOST_FAIL("the starter approved its own actuation");
  } catch (const MissionError& e) {
    BOOST_TEST((e.code() == MissionError::Code::kForbidden));
    BOOST_TEST(std::string(e.what()).find("another approver must approve it") != std::string::npos,
               e.what());
  }
  w.svc().approve("acme", id, kApprover, "checked");
  BOOST_TEST(w.run(id).state == "DONE");
  // A deployment may turn it off (a one-person roastery).
  World solo(R"(version: 1
actuation: {allowed: true, require_approval: true, distinct_approver: false}
tenants: {"*": {missions: ["*"]}}
)");
  const auto own = solo.start("actuating").mission.id;
  BOOST_TEST(solo.run(own).state == "QUARANTINED");
  solo.svc().approve("acme", own, Actor{"tester", Role::kApprover}, "mine");
  BOOST_TEST(solo.run(own).state == "DONE");
}

// ---- Retention -------------------------------------------------------------------------------

BOOST_AUTO_TEST_CASE(retention_releases_the_files_of_missions_finished_before_the_cutoff) {
  World w("version: 1\ntenants:\n  \"*\": {missions: [\"*\"]}\n");
  const auto acme = w.start("filed", "acme").mission.id;
  const auto beta = w.start("filed", "beta").mission.id;
  BOOST_TEST(w.run(acme).state == "DONE");
  BOOST_TEST(w.run(beta).state == "DONE");
  const auto waiting = w.start("filed", "acme").mission.id;  // PENDING: never released
  // FAILED: a retry may run it on, so it keeps its files.
  const auto failed = w.start("filed_then_fails", "acme").mission.id;
  BOOST_TEST(w.run(failed).state == "FAILED");
  const auto has_file = [&](const std::string& tenant, const std::string& id) {
    return w.svc().artifact(tenant, id, "keep", "note.txt").has_value();
  };
  const Actor admin{"root", Role::kAdmin};
  const std::string later =
      ledger::utc_millis(std::chrono::system_clock::now() + std::chrono::seconds(1));

  // Finished after the cutoff: kept.
  auto none = w.svc().prune_files(std::nullopt, "2000-01-01T00:00:00.000Z", admin, "test");
  BOOST_TEST(none.missions == 0u);
  // A dry run counts and releases nothing.
  auto dry = w.svc().prune_files(std::nullopt, later, admin, "test", true);
  BOOST_TEST(dry.missions == 2u);
  BOOST_TEST(dry.files == 2u);
  BOOST_TEST(dry.bytes == 10);  // "hello" twice
  BOOST_TEST(has_file("acme", acme));
  // A viewer may not.
  BOOST_CHECK_THROW(w.svc().prune_files(std::nullopt, later, Actor{"v", Role::kViewer}, "test"),
                    MissionError);

  // A pass asked to stop (a server shutting down) releases nothing more.
  BOOST_TEST(w.svc()
                 .prune_files(std::nullopt, later, admin, "test", false, [] { return true; })
                 .missions == 0u);
  BOOST_TEST(has_file("acme", acme));
  // One tenant's.
  auto one = w.svc().prune_files(std::string("acme"), later, admin, "older than 0s");
  BOOST_TEST(one.missions == 1u);
  BOOST_TEST(one.files == 1u);
  BOOST_TEST(one.bytes == 5);
  BOOST_TEST(!has_file("acme", acme));
  BOOST_TEST(has_file("beta", beta));
  auto h = w.history(acme);
  BOOST_TEST(h.back() == "mission.artifacts_released");
  std::string payload;
  ledger::ExportFilter f;
  f.stream = "mission/" + acme;
  w.k->ledger().for_each(f, [&](const ledger::Event& e) {
    if (e.kind == "mission.artifacts_released") payload = e.payload;
  });
  BOOST_TEST(contains(payload, "\"name\":\"note.txt\""), payload);
  BOOST_TEST(contains(payload, "\"sha256\":\"" + common::sha256_hex("hello") + "\""), payload);
  BOOST_TEST(contains(payload, "\"reason\":\"older than 0s\""), payload);
  const auto why = w.svc().released("acme", acme, "keep", "note.txt");
  BOOST_TEST((why && contains(*why, "released at ") && contains(*why, " (older than 0s)")),
             why.value_or("none"));
  BOOST_TEST(!w.svc().released("beta", acme, "keep", "note.txt"));  // another tenant's
  BOOST_TEST(!w.svc().released("acme", acme, "keep", "other.txt"));
  // By media type: note.txt is text, not audio (a report that speaks none was not released
  // audio).
  BOOST_TEST(w.svc().released("acme", acme, "", "", "text/").has_value());
  BOOST_TEST(!w.svc().released("acme", acme, "", "", "audio/").has_value());
  // Nothing twice; the mission and its output stay.
  BOOST_TEST(w.svc().prune_files(std::string("acme"), later, admin, "again").missions == 0u);
  BOOST_TEST(w.svc().get("acme", acme)->state == "DONE");
  BOOST_TEST(!w.svc().get("acme", acme)->steps.front().output.is_null());

  // The server's pass (missions.keep_files): the rest goes within a quarter of the age.
  {
    FileRetention keep(w.svc(), std::chrono::seconds(1));
    for (int i = 0; i < 100 && keep.files_released() == 0; ++i)
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    BOOST_TEST(!has_file("beta", beta));
    BOOST_TEST(keep.files_released() == 1);
  }
  BOOST_TEST(w.svc().get("acme", waiting)->state == "PENDING");
  BOOST_TEST(w.svc().artifact("acme", failed, "keep", "note.txt").has_value());
  w.run(waiting);
  BOOST_TEST(has_file("acme", waiting));  // finished just now

  w.k->ledger().flush();
  auto r = replay(w.dir.path() / "kiln.db", w.dir.path() / "scratch.db");
  BOOST_TEST(r.ok(), common::join(r.differences, "\n"));
}
