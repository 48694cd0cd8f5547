// The HTTP API as a client sees it: the real `kiln serve` on an ephemeral loopback port, the real
// plugins and SQLite file, API keys made with `kiln keys create`.
#define BOOST_TEST_MODULE http
#include <algorithm>
#include <cctype>
#include <chrono>
#include <csignal>
#include <fstream>
#include <future>
#include <regex>
#include <set>
#include <sstream>
#include <thread>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <boost/json.hpp>
#include <boost/test/unit_test.hpp>

#include "common/strings.hpp"
#include "http/client.hpp"
#include "runtime/json_schema.hpp"
#include "storage/sqlite.hpp"
#include "support/process.hpp"

namespace fs = std::filesystem;
namespace json = boost::json;
using namespace kiln;
using namespace kiln::test;
using namespace std::chrono_literals;

namespace {

const std::string kKiln = KILN_TEST_BIN;

bool contains(const std::string& hay, const std::string& needle) {
  return hay.find(needle) != std::string::npos;
}

struct Server {
  TempDir dir;
  std::map<std::string, std::string> env;
  std::unique_ptr<Child> child;
  std::string host;  // as a URL writes it: 127.0.0.1, [::1]
  int port = 0;
  std::map<std::string, std::string> keys;  // name -> secret

  // `serve_env`: more environment for `kiln serve` only (the CLI calls do not get it).
  explicit Server(std::vector<std::string> sets = {},
                  const std::map<std::string, std::string>& serve_env = {}) {
    env = {{"KILN_SERVER__PORT", "0"},
           {"KILN_GATES__DIR", (dir.path() / "gates").string()},
           {"KILN_PLUGINS__SEARCH_PATHS",
            std::string("[") + KILN_PLUGIN_DIR + "," + KILN_TEST_PLUGIN_DIR + "/test_tools]"}};
    for (auto [name, tenant, role] : std::vector<std::tuple<std::string, std::string, std::string>>{
             {"a_viewer", "acme", "viewer"},
             {"a_operator", "acme", "operator"},
             {"a_approver", "acme", "approver"},
             {"b_admin", "globex", "admin"}}) {
      auto r = kiln({"keys", "create", "--tenant", tenant, "--role", role, "--name", name});
      BOOST_REQUIRE_MESSAGE(r.exit_code == 0, r.err);
      keys[name] = r.out.substr(0, r.out.find('\n'));
    }
    std::vector<std::string> argv = {kKiln, "serve"};
    for (auto& s : sets) argv.insert(argv.end(), {"--set", s});
    auto child_env = env;
    child_env.insert(serve_env.begin(), serve_env.end());
    child = std::make_unique<Child>(argv, child_env, dir.path());
    BOOST_REQUIRE_MESSAGE(child->wait_for_stderr("serving http://", 30s), "serve did not start");
    std::smatch m;
    const std::string err = child->stderr_so_far();
    BOOST_REQUIRE(std::regex_search(
        err, m, std::regex("listening on http://(127\\.0\\.0\\.1|\\[::1\\]):([0-9]+)")));
    host = m[1];
    port = std::stoi(m[2]);
  }
  // Each test's server ends as a service manager ends it (SIGTERM) and must exit 0 within the
  // drain: a shutdown that hangs, crashes or fails fails the test that ran it (it was killed
  // with SIGKILL here, and a broken shutdown went unseen).
  ~Server() {
    if (!child || child->reaped()) return;
    if (auto why = stop_cleanly(*child)) BOOST_ERROR(*why);
  }
  RunResult kiln(std::vector<std::string> args,
                 const std::map<std::string, std::string>& extra = {}) const {
    args.insert(args.begin(), kKiln);
    auto e = env;
    for (const auto& [k, v] : extra) e[k] = v;
    return run(args, e, dir.path());
  }
  std::string url() const { return "http://" + host + ":" + std::to_string(port); }
  http::ClientResponse call(const std::string& method, const std::string& target,
                            const std::string& key = "", const std::string& body = "",
                            std::vector<std::pair<std::string, std::string>> headers = {}) const {
    http::Client c(url());
    if (!key.empty()) headers.emplace_back("Authorization", "Bearer " + keys.at(key));
    return c.request(method, target, body, headers);
  }
};

json::value body(const http::ClientResponse& r) {
  return json::parse(r.body);
}

std::string error_code_of(const http::ClientResponse& r) {
  auto v = body(r);
  return std::string(v.at("error").at("code").as_string());
}

// Opens a raw TCP connection to the server (for slow-client tests).
// `from`: the client's own loopback address (127.0.0.2 is another client to the server).
int raw_connect(int port, const char* from = nullptr) {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  if (from) {
    sockaddr_in self{};
    self.sin_family = AF_INET;
    BOOST_REQUIRE(::inet_pton(AF_INET, from, &self.sin_addr) == 1);
    BOOST_REQUIRE(::bind(fd, reinterpret_cast<sockaddr*>(&self), sizeof self) == 0);
  }
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<std::uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  BOOST_REQUIRE(::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0);
  return fd;
}

// Reads `n` complete responses (Content-Length framed) from a raw connection: (status, body).
std::vector<std::pair<int, std::string>> read_responses(int fd, std::size_t n) {
  timeval tv{10, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  std::string in;
  std::vector<std::pair<int, std::string>> out;
  while (out.size() < n) {
    const auto end = in.find("\r\n\r\n");
    if (end != std::string::npos) {
      std::string head = in.substr(0, end);
      for (auto& c : head) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
      const auto cl = head.find("content-length: ");
      BOOST_REQUIRE_MESSAGE(cl != std::string::npos, "no content-length in: " << head);
      const std::size_t len = std::stoul(head.substr(cl + 16));
      if (in.size() >= end + 4 + len) {
        out.emplace_back(std::stoi(in.substr(9, 3)), in.substr(end + 4, len));
        in.erase(0, end + 4 + len);
        continue;
      }
    }
    char buf[4096];
    const auto got = ::read(fd, buf, sizeof buf);
    BOOST_REQUIRE_MESSAGE(got > 0,
                          "connection closed or timed out after " << out.size() << " response(s)");
    in.append(buf, static_cast<std::size_t>(got));
  }
  BOOST_TEST(in.empty(), "unexpected bytes after the responses: " << in);
  return out;
}

void send_all(int fd, std::string_view bytes) {
  BOOST_REQUIRE(::write(fd, bytes.data(), bytes.size()) == static_cast<ssize_t>(bytes.size()));
}

}  // namespace

// A page of a listed origin may call the API (CORS): the preflight needs no key, the request it
// clears still does, and errors are readable too; another origin gets no CORS headers.
BOOST_AUTO_TEST_CASE(pages_of_listed_origins_may_call_the_api) {
  Server s({"server.cors_origins=[https://dash.example]"});
  const std::vector<std::pair<std::string, std::string>> from_dash = {
      {"Origin", "https://dash.example"}};
  auto pre = s.call("OPTIONS", "/v1/sessions", "", "",
                    {{"Origin", "https://dash.example"},
                     {"Access-Control-Request-Method", "GET"},
                     {"Access-Control-Request-Headers", "authorization"}});
  BOOST_TEST(pre.status == 200, pre.body);
  BOOST_TEST(pre.header("access-control-allow-origin") == "https://dash.example");
  BOOST_TEST(pre.header("access-control-allow-methods") == "GET, HEAD, OPTIONS");
  BOOST_TEST(contains(pre.header("access-control-allow-headers"), "Authorization"));
  // A page revalidates what it fetched (an artifact, the summary audio): it may send
  // If-None-Match and read the ETag.
  BOOST_TEST(contains(pre.header("access-control-allow-headers"), "If-None-Match"));
  BOOST_TEST(pre.header("vary") == "Origin");
  auto listed = s.call("GET", "/v1/sessions", "a_viewer", "", from_dash);
  BOOST_TEST(listed.status == 200, listed.body);
  BOOST_TEST(listed.header("access-control-allow-origin") == "https://dash.example");
  BOOST_TEST(contains(listed.header("access-control-expose-headers"), "X-Request-Id"));
  BOOST_TEST(contains(listed.header("access-control-expose-headers"), "ETag"));
  auto no_key = s.call("GET", "/v1/sessions", "", "", from_dash);
  BOOST_TEST(no_key.status == 401);
  BOOST_TEST(no_key.header("access-control-allow-origin") == "https://dash.example");
  auto other = s.call("GET", "/v1/sessions", "a_viewer", "", {{"Origin", "https://evil.example"}});
  BOOST_TEST(other.status == 200);
  BOOST_TEST(other.header("access-control-allow-origin").empty());
  // Either answer depends on the Origin: a shared cache keeps them apart.
  BOOST_TEST(other.header("vary") == "Origin");
  BOOST_TEST(s.call("GET", "/v1/sessions", "a_viewer").header("vary") == "Origin");
  auto other_pre =
      s.call("OPTIONS", "/v1/sessions", "", "",
             {{"Origin", "https://evil.example"}, {"Access-Control-Request-Method", "GET"}});
  BOOST_TEST(other_pre.header("access-control-allow-methods").empty());
  // OPTIONS without an origin says what the path takes; an unknown path is still 404.
  auto options = s.call("OPTIONS", "/v1/tools/kiln.echo:invoke");
  BOOST_TEST(options.status == 200);
  BOOST_TEST(options.header("allow") == "OPTIONS, POST");
  BOOST_TEST(s.call("OPTIONS", "/v2/nothing", "", "", from_dash).status == 404);
  // An origin a browser would never send is refused before the server starts.
  auto bad = s.kiln({"config", "check", "--set", "server.cors_origins=[https://dash.example/]"});
  BOOST_TEST(bad.exit_code == 3, bad.out + bad.err);
  BOOST_TEST(contains(bad.err, "'https://dash.example/' is not an origin"), bad.err);
}

BOOST_AUTO_TEST_CASE(operations_routes_and_openapi_need_no_key) {
  Server s;
  // One server per database: a second `kiln serve` there refuses to start, naming the first.
  {
    auto second = s.kiln({"serve", "--set", "server.port=0"});
    BOOST_TEST(second.exit_code == 1, second.err);
    BOOST_TEST(contains(second.err, "another kiln serve (pid "), second.err);
    BOOST_TEST(contains(second.err, "give this one its own storage.path"), second.err);
    // On its own database but the first one's port: the operation fails (exit 1, not a
    // configuration error), says why, and leaves no new database behind.
    const auto other_db = s.dir.path() / "other.db";
    auto same_port = s.kiln({"serve", "--set", "server.port=" + std::to_string(s.port), "--set",
                             "storage.path=" + other_db.string()});
    BOOST_TEST(same_port.exit_code == 1, same_port.err);
    BOOST_TEST(contains(same_port.err, "is another server using it?"), same_port.err);
    BOOST_TEST(!fs::exists(other_db));
    auto no_such_host = s.kiln(
        {"serve", "--set", "server.host=localhost", "--set", "storage.path=" + other_db.string()});
    BOOST_TEST(no_such_host.exit_code == 3);
    BOOST_TEST(contains(no_such_host.err, "server.host: 'localhost' is not an IP address"),
               no_such_host.err);
  }
  auto health = s.call("GET", "/health");
  BOOST_TEST(health.status == 200);
  BOOST_TEST(body(health).at("status").as_string() == "ok");
  BOOST_TEST(s.call("GET", "/ready").status == 200);
  auto api = s.call("GET", "/openapi.json");
  BOOST_TEST(api.status == 200);
  auto doc = body(api);
  BOOST_TEST(doc.at("openapi").as_string() == "3.1.0");
  for (const char* path :
       {"/health", "/ready", "/metrics", "/v1/plugins", "/v1/nodes", "/v1/gates", "/v1/tools",
        "/v1/tools/{name}:invoke", "/v1/missions", "/v1/missions/{id}", "/v1/missions/{id}:approve",
        "/v1/missions/{id}:cancel", "/v1/missions/{id}:retry", "/v1/ledger"})
    BOOST_TEST(doc.at("paths").as_object().contains(path), path);
  // Statuses a route answers beyond its shape's are documented; one it never answers is not.
  const auto& ingest =
      doc.at("paths").at("/v1/telemetry/{device}").at("post").at("responses").as_object();
  for (const char* status : {"400", "401", "403", "409", "413", "415", "422"})
    BOOST_TEST(ingest.contains(status), status);
  BOOST_TEST(!ingest.contains("404"));
  BOOST_TEST(
      doc.at("paths").at("/v1/devices").at("post").at("responses").as_object().contains("409"));
  // What a mission's routes answer besides their shape's: a replayed Idempotency-Key (200), one
  // reused with another body (409), an action the mission's state does not allow (409).
  const auto& create = doc.at("paths").at("/v1/missions").at("post").at("responses").as_object();
  BOOST_TEST(create.contains("200"));
  BOOST_TEST(create.contains("409"));
  for (const char* action : {"approve", "cancel", "retry"})
    BOOST_TEST(doc.at("paths")
                   .at(std::string("/v1/missions/{id}:") + action)
                   .at("post")
                   .at("responses")
                   .as_object()
                   .contains("409"),
               action);
  // The speech formats offered are those this server makes (never aac), and no sse streaming.
  const auto& speech = doc.at("paths")
                           .at("/v1/audio/speech")
                           .at("post")
                           .at("requestBody")
                           .at("content")
                           .at("application/json")
                           .at("schema")
                           .at("properties");
  const auto formats = json::serialize(speech.at("response_format").at("enum"));
  BOOST_TEST(!contains(formats, "aac"), formats);
  BOOST_TEST(contains(formats, "\"wav\""), formats);
  BOOST_TEST(json::serialize(speech.at("stream_format").at("enum")) == "[\"audio\"]");
  // Query parameters say their type (the server checks integers and booleans).
  auto query_type = [&](const char* path, const char* name) {
    for (const auto& p : doc.at("paths").at(path).at("get").at("parameters").as_array())
      if (p.at("name").as_string() == name)
        return std::string(p.at("schema").at("type").as_string());
    return std::string("(missing)");
  };
  BOOST_TEST(query_type("/v1/ledger", "limit") == "integer");
  BOOST_TEST(query_type("/v1/ledger", "after") == "integer");
  BOOST_TEST(query_type("/v1/ledger", "stream") == "string");
  BOOST_TEST(query_type("/v1/profiles", "archived") == "boolean");
  BOOST_TEST(query_type("/v1/profiles/{name}", "version") == "integer");
  BOOST_TEST(query_type("/v1/sessions/{id}/samples", "after") == "number");
  // What a client has to know: the report's two media types, the prediction's statuses and
  // times, a save that changed nothing, and a 422 for bad query parameters.
  const auto& report_ok =
      doc.at("paths").at("/v1/sessions/{id}/report").at("get").at("responses").at("200");
  BOOST_TEST(report_ok.at("content").at("text/html").at("schema").at("type").as_string() ==
             "string");
  BOOST_TEST(report_ok.at("content").as_object().contains("application/json"));
  const auto& predict_ok = doc.at("paths")
                               .at("/v1/sessions/{id}/predict")
                               .at("get")
                               .at("responses")
                               .at("200")
                               .at("content")
                               .at("application/json")
                               .at("schema");
  const auto& statuses = predict_ok.at("properties").at("status").at("enum").as_array();
  BOOST_TEST(statuses.size() == 7u);
  BOOST_TEST(std::count(statuses.begin(), statuses.end(), json::value("drop_due")) == 1);
  BOOST_TEST(predict_ok.at("properties").at("fcs").at("properties").as_object().contains("late"));
  BOOST_TEST(
      doc.at("paths").at("/v1/profiles").at("post").at("responses").as_object().contains("200"));
  BOOST_TEST(
      doc.at("paths").at("/v1/profiles").at("get").at("responses").as_object().contains("422"));
  {
    // Every status a tool call may answer, and when to ask again after a 429.
    const auto& invoke =
        doc.at("paths").at("/v1/tools/{name}:invoke").at("post").at("responses").as_object();
    for (const char* status : {"404", "413", "422", "429", "500", "502", "503", "504"})
      BOOST_TEST(invoke.contains(status), status);
    BOOST_TEST(invoke.at("429").at("headers").as_object().contains("Retry-After"));
  }
  BOOST_TEST(doc.at("servers").as_array().size() == 1u);
  // Request ids are echoed, or made up.
  auto echoed = s.call("GET", "/health", "", "", {{"X-Request-Id", "trace-42"}});
  BOOST_TEST(echoed.header("x-request-id") == "trace-42");
  const std::string made_up = s.call("GET", "/health").header("x-request-id");
  BOOST_TEST(std::regex_match(made_up, std::regex("[0-9a-f]{16}")), made_up);
  // The access log has a line per request, with its request id (each I/O thread writes its lines
  // every 100 ms, so wait for both).
  BOOST_REQUIRE(s.child->wait_for_stderr("id=" + made_up, 5s));
  BOOST_REQUIRE(s.child->wait_for_stderr("id=trace-42", 5s));
  const std::string log = s.child->stderr_so_far();
  BOOST_TEST(std::regex_search(log, std::regex("http GET /health 200 [0-9]+B [0-9]+\\.[0-9]{3}ms "
                                               "id=trace-42 key=- tenant=-")),
             log);
  // A keyed request names its key and tenant.
  s.call("GET", "/v1/plugins", "a_viewer", "", {{"X-Request-Id", "trace-43"}});
  BOOST_REQUIRE(s.child->wait_for_stderr("id=trace-43", 5s));
  BOOST_TEST(std::regex_search(s.child->stderr_so_far(),
                               std::regex("http GET /v1/plugins 200 [0-9]+B [0-9.]+ms id=trace-43 "
                                          "key=key:k-[0-9a-f]+ tenant=acme")),
             s.child->stderr_so_far());
  // So does one its role refuses: who tried is in the log.
  BOOST_TEST(
      s.call("POST", "/v1/missions", "a_viewer", "{}", {{"X-Request-Id", "trace-44"}}).status ==
      403);
  BOOST_REQUIRE(s.child->wait_for_stderr("id=trace-44", 5s));
  BOOST_TEST(std::regex_search(s.child->stderr_so_far(),
                               std::regex("http POST /v1/missions 403 [0-9]+B [0-9.]+ms "
                                          "id=trace-44 key=key:k-[0-9a-f]+ tenant=acme")),
             s.child->stderr_so_far());
  // A plugin's own counter (HostServices::count), its name made a metric name.
  for (int i = 0; i < 2; ++i)
    BOOST_TEST(
        s.call("POST", "/v1/tools/test.counted:invoke", "a_operator", R"({"input": {}})").status ==
        200);
  auto metrics = s.call("GET", "/metrics");
  BOOST_TEST(contains(metrics.body,
                      "# TYPE kiln_plugin_test_calls_counted_total counter\n"
                      "kiln_plugin_test_calls_counted_total{plugin=\"test_tools\"} 2\n"),
             metrics.body);
  BOOST_TEST(metrics.status == 200);
  BOOST_TEST(contains(metrics.header("content-type"), "text/plain; version=0.0.4"));
  BOOST_TEST(contains(
      metrics.body, "kiln_http_requests_total{method=\"GET\",route=\"/health\",status=\"200\"} "));
  BOOST_TEST(contains(metrics.body, "kiln_missions{state=\"DONE\"}"));
  BOOST_TEST(contains(metrics.body, "\nkiln_ready 1\n"), metrics.body);
  BOOST_TEST(contains(metrics.body, "\nkiln_ledger_intact 1\n"), metrics.body);
  BOOST_TEST(contains(metrics.body, "kiln_telemetry_sessions{state=\"open\"} 0\n"), metrics.body);
  BOOST_TEST(contains(metrics.body,
                      "kiln_http_request_duration_seconds_bucket{method=\"GET\","
                      "route=\"/health\",le=\"+Inf\"}"));
  // What every Prometheus client exports for its process, and the build.
  for (const char* family :
       {"process_cpu_seconds_total", "process_resident_memory_bytes",
        "process_virtual_memory_bytes", "process_open_fds", "process_max_fds"}) {
    std::smatch m;
    BOOST_TEST(std::regex_search(metrics.body, m,
                                 std::regex(std::string("\n") + family + " ([0-9.e+]+)\n")),
               family);
    if (!m.empty()) BOOST_TEST(std::stod(m[1]) > 0, family);
  }
  std::smatch started;
  BOOST_REQUIRE(std::regex_search(metrics.body, started,
                                  std::regex("\nprocess_start_time_seconds ([0-9.]+)\n")));
  const double now =
      std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
  BOOST_TEST(std::stod(started[1]) <= now + 1);
  BOOST_TEST(std::stod(started[1]) > now - 600, started[1]);  // started by this test
  BOOST_TEST(
      contains(metrics.body, "kiln_build_info{version=\"0.1.0\",abi=\"3\",boost=\"1_81\"} 1"),
      metrics.body);
}

// log.format json: the access log's fields are the line's own JSON members (a log pipeline
// filters on status or tenant), the path as it was sent.
BOOST_AUTO_TEST_CASE(json_access_log_lines_carry_their_fields) {
  Server s({"log.format=json"});
  s.call("GET", "/v1/plugins", "a_viewer", "", {{"X-Request-Id", "trace-json"}});
  s.call("GET", "/v1/missions/%22quoted%22", "a_viewer", "", {{"X-Request-Id", "trace-quote"}});
  BOOST_REQUIRE(s.child->wait_for_stderr("\"id\":\"trace-quote\"", 5s));
  BOOST_REQUIRE(s.child->wait_for_stderr("\"id\":\"trace-json\"", 5s));
  int seen = 0;
  std::istringstream lines(s.child->stderr_so_far());
  for (std::string line; std::getline(lines, line);) {
    if (!contains(line, "\"trace-")) continue;
    json::error_code ec;
    const auto v = json::parse(line, ec);
    BOOST_REQUIRE_MESSAGE(!ec, line);
    const auto& o = v.as_object();
    BOOST_TEST(o.at("logger").as_string() == "access");
    BOOST_TEST(o.at("method").as_string() == "GET");
    BOOST_TEST(o.at("tenant").as_string() == "acme");
    BOOST_TEST(std::string(o.at("key").as_string()).starts_with("key:k-"));
    BOOST_TEST(o.at("ms").is_double());
    if (o.at("id").as_string() == "trace-json") {
      BOOST_TEST(o.at("path").as_string() == "/v1/plugins");
      BOOST_TEST(o.at("status").as_int64() == 200);
      BOOST_TEST(o.at("bytes").as_int64() > 0);
    } else {
      BOOST_TEST(o.at("path").as_string() == "/v1/missions/%22quoted%22");
      BOOST_TEST(o.at("status").as_int64() == 404);
    }
    ++seen;
  }
  BOOST_TEST(seen == 2, s.child->stderr_so_far());
}

// server.access_log_skip: a monitoring probe's answers are not logged (a scrape every 15 s is
// two million lines a year), its errors are, and other paths as ever.
BOOST_AUTO_TEST_CASE(probes_can_be_left_out_of_the_access_log) {
  Server s({"server.access_log_skip=[/health, /metrics, /v1/plugins]"});
  s.call("GET", "/health", "", "", {{"X-Request-Id", "probe-health"}});
  s.call("GET", "/metrics", "", "", {{"X-Request-Id", "probe-metrics"}});
  s.call("GET", "/v1/plugins", "", "", {{"X-Request-Id", "probe-401"}});  // no key: 401
  s.call("GET", "/v1/nodes", "a_viewer", "", {{"X-Request-Id", "not-a-probe"}});
  BOOST_REQUIRE(s.child->wait_for_stderr("id=not-a-probe", 5s));
  BOOST_REQUIRE(s.child->wait_for_stderr("id=probe-401", 5s));
  std::this_thread::sleep_for(500ms);  // each I/O thread writes its lines every 200 ms
  const std::string log = s.child->stderr_so_far();
  BOOST_TEST(!contains(log, "id=probe-health"), log);
  BOOST_TEST(!contains(log, "id=probe-metrics"), log);
  BOOST_TEST(contains(log, "http GET /v1/plugins 401 "), log);
}

BOOST_AUTO_TEST_CASE(keys_and_roles_are_enforced_on_every_v1_route) {
  Server s;
  // Every keyed operation the document lists: 401 without a key, 403 with a key one role below
  // the one it names (x-kiln-role) — before anything is looked up or read.
  const auto doc = body(s.call("GET", "/openapi.json"));
  const std::map<std::string, std::string> one_below = {
      {"operator", "a_viewer"}, {"approver", "a_operator"}, {"admin", "a_approver"}};
  int keyed = 0, below = 0;
  std::set<std::string> roles;
  for (const auto& [path, ops] : doc.at("paths").as_object())
    for (const auto& [method_lower, op] : ops.as_object()) {
      if (!op.as_object().contains("security")) continue;
      std::string method(method_lower);
      std::transform(method.begin(), method.end(), method.begin(),
                     [](unsigned char c) { return std::toupper(c); });
      const std::string target =
          std::regex_replace(std::string(path), std::regex("\\{[^}]+\\}"), "x");
      const std::string role(op.at("x-kiln-role").as_string());
      roles.insert(role);
      auto r = s.call(method, target);
      BOOST_TEST(r.status == 401, method << " " << target);
      BOOST_TEST(error_code_of(r) == "unauthenticated", method << " " << target);
      ++keyed;
      if (auto lower = one_below.find(role); lower != one_below.end()) {
        auto refused = s.call(method, target, lower->second, "{}");
        BOOST_TEST(refused.status == 403,
                   method << " " << target << " as " << lower->second << ": " << refused.body);
        ++below;
      }
    }
  BOOST_TEST(keyed >= 40);
  BOOST_TEST(below >= 15);
  // (No route needs admin as such: an admin's key sees every tenant where a route allows it.)
  BOOST_TEST((roles == std::set<std::string>{"recorder", "viewer", "operator", "approver"}));
  http::Client c(s.url());
  auto bad = c.request("GET", "/v1/tools", "",
                       {{"Authorization",
                         "Bearer kiln_k-000000000000_"
                         "0123456789abcdef0123456789abcdef"}});
  BOOST_TEST(bad.status == 401);
  BOOST_TEST(s.call("GET", "/v1/plugins", "a_viewer").status == 200);
  auto forbidden = s.call("POST", "/v1/tools/kiln.echo:invoke", "a_viewer", R"({"input": {}})");
  BOOST_TEST(forbidden.status == 403);
  BOOST_TEST(contains(body(forbidden).at("error").at("message").as_string().c_str(),
                      "POST /v1/tools/{name}:invoke needs the operator role; this key has viewer"));
  auto ok = s.call("POST", "/v1/tools/kiln.echo:invoke", "a_operator", R"({"input": {"x": 1}})");
  BOOST_TEST(ok.status == 200, ok.body);
  BOOST_TEST(body(ok).at("output").at("x").as_int64() == 1);
  // A revoked key stops working (within the one-second cache).
  auto list = s.kiln({"keys", "list", "--json"});
  std::string viewer_id;
  const json::value listed = json::parse(list.out);
  for (const auto& k : listed.as_array())
    if (k.at("name").as_string() == "a_viewer") viewer_id = std::string(k.at("id").as_string());
  BOOST_REQUIRE_EQUAL(s.kiln({"keys", "revoke", viewer_id}).exit_code, 0);
  std::this_thread::sleep_for(1100ms);
  BOOST_TEST(s.call("GET", "/v1/plugins", "a_viewer").status == 401);
}

BOOST_AUTO_TEST_CASE(errors_use_one_envelope) {
  Server s({"server.body_limit_bytes=2048"});
  auto malformed = s.call("POST", "/v1/missions", "a_operator", "{not json");
  BOOST_TEST(malformed.status == 400);
  BOOST_TEST(error_code_of(malformed) == "malformed_json");
  // No body at all, JSON declared (curl -X POST -H 'Content-Type: application/json'): no fields,
  // so the schema says what is missing.
  auto empty =
      s.call("POST", "/v1/missions", "a_operator", "", {{"Content-Type", "application/json"}});
  BOOST_TEST(empty.status == 422, empty.body);
  BOOST_TEST(contains(empty.body, "body.template"), empty.body);
  auto type = s.call("POST", "/v1/missions", "a_operator", "template=hello",
                     {{"Content-Type", "application/x-www-form-urlencoded"}});
  BOOST_TEST(type.status == 415);
  BOOST_TEST(error_code_of(type) == "unsupported_media_type");
  auto big =
      s.call("POST", "/v1/missions", "a_operator",
             R"({"template": "hello", "inputs": {"who": ")" + std::string(4000, 'x') + "\"}}");
  BOOST_TEST(big.status == 413);
  BOOST_TEST(error_code_of(big) == "payload_too_large");
  // A Content-Length past Beast's own default (1 MiB) is answered the same way, from the header
  // alone (it once got no answer at all).
  {
    int fd = raw_connect(s.port);
    send_all(fd, "POST /v1/missions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " +
                     s.keys.at("a_operator") +
                     "\r\nContent-Type: application/json\r\nContent-Length: 5000000\r\n\r\n");
    auto answer = read_responses(fd, 1);
    BOOST_TEST(answer[0].first == 413, answer[0].second);
    BOOST_TEST(contains(answer[0].second, "the body is 5000000 bytes"), answer[0].second);
    ::close(fd);
  }
  // Framing the parser refuses is answered 400 before the connection closes (it once got no
  // answer at all).
  for (const char* framing : {"Content-Length: -1\r\n", "Content-Length: abc\r\n",
                              "Content-Length: 5\r\nTransfer-Encoding: chunked\r\n"}) {
    int fd = raw_connect(s.port);
    send_all(fd, std::string("POST /v1/missions HTTP/1.1\r\nHost: x\r\n") + framing + "\r\n");
    auto answer = read_responses(fd, 1);
    BOOST_TEST(answer[0].first == 400, framing << answer[0].second);
    BOOST_TEST(contains(answer[0].second, "malformed HTTP request: "), answer[0].second);
    ::close(fd);
  }
  // So is a chunked body whose chunk size is no number.
  {
    int fd = raw_connect(s.port);
    send_all(fd, "POST /v1/missions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " +
                     s.keys.at("a_operator") +
                     "\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
                     "zz\r\n{}\r\n0\r\n\r\n");
    auto answer = read_responses(fd, 1);
    BOOST_TEST(answer[0].first == 400, answer[0].second);
    BOOST_TEST(contains(answer[0].second, "malformed HTTP request body: "), answer[0].second);
    ::close(fd);
  }
  auto unknown = s.call("GET", "/v2/nothing");
  BOOST_TEST(unknown.status == 404);
  BOOST_TEST(error_code_of(unknown) == "not_found");
  // A tool's own error code (not one of kiln's) is the tool's failure, 502, with its code and
  // message as the tool gave them.
  auto own = s.call("POST", "/v1/tools/test.fatal:invoke", "a_operator", R"({"input": {}})");
  BOOST_TEST(own.status == 502, own.body);
  BOOST_TEST(error_code_of(own) == "bad_request", own.body);
  BOOST_TEST(body(own).at("error").at("message") == "test_tools refuses", own.body);
  BOOST_TEST(!body(own).at("error").at("details").at("retryable").as_bool());
  BOOST_TEST(own.header("retry-after").empty());
  // A path segment is decoded once and keeps its '+': an id holding '%' or '+' is looked up as
  // the client wrote it (it was decoded twice, '+' read as a space: a step's file "a+b.txt"
  // could not be fetched).
  auto twice = s.call("GET", "/v1/missions/m%2541+x", "a_viewer");
  BOOST_TEST(twice.status == 404);
  BOOST_TEST(contains(twice.body, "m%41+x"), twice.body);
  auto method = s.call("DELETE", "/v1/missions", "a_operator");
  BOOST_TEST(method.status == 405);
  BOOST_TEST(method.header("allow") == "GET, HEAD, OPTIONS, POST");
  // HEAD answers as GET does, headers only (a load balancer's health check).
  {
    const auto get = s.call("GET", "/health");
    int fd = raw_connect(s.port);
    send_all(fd, "HEAD /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    timeval tv{10, 0};
    ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    std::string in;
    char buf[4096];
    for (ssize_t got; (got = ::read(fd, buf, sizeof buf)) > 0;) in.append(buf, got);
    ::close(fd);
    BOOST_TEST(in.rfind("HTTP/1.1 200 ", 0) == 0u, in);
    BOOST_TEST(contains(in, "Content-Length: " + std::to_string(get.body.size()) + "\r\n"), in);
    BOOST_TEST(in.size() == in.find("\r\n\r\n") + 4, "HEAD sent a body: " << in);
    auto head_post = s.call("HEAD", "/v1/tools/kiln.echo:invoke", "a_operator");
    BOOST_TEST(head_post.status == 405);
    BOOST_TEST(head_post.header("allow") == "OPTIONS, POST");
  }
  // A 405 is counted at its path's route, not as an unmatched request.
  {
    const auto metrics = s.call("GET", "/metrics").body;
    // ... under the method "other": not the route's own method (DELETE is not POST's).
    BOOST_TEST(contains(metrics, "{method=\"other\",route=\"/v1/missions\",status=\"405\"} 1"),
               metrics);
    BOOST_TEST(!contains(metrics, "method=\"POST\",route=\"/v1/missions\",status=\"405\""),
               metrics);
    BOOST_TEST(!contains(metrics, "route=\"unmatched\",status=\"405\""), metrics);
  }
  // A path no route answers is counted as unmatched, its method "other" (it was "").
  BOOST_TEST(s.call("GET", "/nowhere").status == 404);
  BOOST_TEST(
      contains(s.call("GET", "/metrics").body,
               "kiln_http_requests_total{method=\"other\",route=\"unmatched\",status=\"404\"}"));
  auto invalid = s.call("POST", "/v1/missions", "a_operator", R"({"template": 7})");
  BOOST_TEST(invalid.status == 422);
  BOOST_TEST(body(invalid).at("error").at("details").at("field").as_string() == "body.template");
  auto bad_inputs = s.call("POST", "/v1/missions", "a_operator",
                           R"({"template": "hello", "inputs": {"pause_ms": -1}})");
  BOOST_TEST(bad_inputs.status == 422);
  BOOST_TEST(
      contains(body(bad_inputs).at("error").at("message").as_string().c_str(), "inputs.pause_ms"));
  // Errors past the schema name the field as schema errors do; details is always an object.
  BOOST_TEST(body(bad_inputs).at("error").at("details").at("field").as_string() ==
             "body.inputs.pause_ms");
  auto no_template = s.call("POST", "/v1/missions", "a_operator", R"({"template": "hellp"})");
  BOOST_TEST(no_template.status == 422);
  BOOST_TEST(body(no_template).at("error").at("details").at("field").as_string() ==
             "body.template");
  BOOST_TEST(body(unknown).at("error").at("details").is_object(), unknown.body);
  auto tool_input = s.call("POST", "/v1/tools/kiln.sleep:invoke", "a_operator", R"({"input": {}})");
  BOOST_TEST(tool_input.status == 422);
  BOOST_TEST(error_code_of(tool_input) == "invalid_input");
  BOOST_TEST(body(tool_input).at("error").at("details").at("field").as_string() == "body.input.ms",
             tool_input.body);
  auto no_tool = s.call("POST", "/v1/tools/kiln.nope:invoke", "a_operator", R"({"input": {}})");
  BOOST_TEST(no_tool.status == 404);
  BOOST_TEST(contains(no_tool.body, "GET /v1/tools or `kiln tool list` shows the tools"),
             no_tool.body);  // an API client is told its own way first
  // A query parameter the route does not take is said, not ignored.
  auto unknown_param = s.call("GET", "/v1/ledger?limt=5", "a_operator");
  BOOST_TEST(unknown_param.status == 422);
  BOOST_TEST(contains(unknown_param.body,
                      "unknown query parameter 'limt'; GET /v1/ledger takes: after, limit, stream"),
             unknown_param.body);
  BOOST_TEST(body(unknown_param).at("error").at("details").at("field").as_string() == "query.limt");
  auto query = s.call("GET", "/v1/ledger?limit=abc", "a_operator");
  BOOST_TEST(query.status == 422);
  // Oversized headers: 431.
  auto huge = s.call("GET", "/health", "", "", {{"X-Padding", std::string(20000, 'p')}});
  BOOST_TEST(huge.status == 431);
  // Every error above is counted by status.
  BOOST_TEST(contains(s.call("GET", "/metrics").body, "status=\"415\""));
}

BOOST_AUTO_TEST_CASE(tenants_see_only_their_own_resources) {
  Server s;
  auto created = s.call("POST", "/v1/missions", "a_operator",
                        R"({"template": "approval_demo", "inputs": {"note": "acme only"}})");
  BOOST_REQUIRE_EQUAL(created.status, 201);
  const std::string id(body(created).at("mission").at("id").as_string());
  BOOST_TEST(body(created).at("mission").at("tenant").as_string() == "acme");
  // globex (even as admin) sees none of it.
  BOOST_TEST(s.call("GET", "/v1/missions/" + id, "b_admin").status == 404);
  BOOST_TEST(body(s.call("GET", "/v1/missions", "b_admin")).as_array().empty());
  for (const char* verb : {":approve", ":cancel", ":retry"})
    BOOST_TEST(s.call("POST", "/v1/missions/" + id + verb, "b_admin").status == 404, verb);
  auto ledger_b = body(s.call("GET", "/v1/ledger?limit=1000", "b_admin"));
  for (const auto& e : ledger_b.at("events").as_array())
    BOOST_TEST(e.at("tenant").as_string() == "globex");
  auto ledger_a = body(s.call("GET", "/v1/ledger?stream=mission/" + id, "a_viewer"));
  BOOST_TEST(ledger_a.at("events").as_array().size() >= 1u);
  // Tool calls run in the key's tenant.
  auto echo =
      s.call("POST", "/v1/tools/test.echo:invoke", "b_admin", R"({"input": {"text": "t"}})");
  BOOST_TEST(body(echo).at("output").at("tenant").as_string() == "globex", echo.body);
  // acme's own approver can act on it.
  auto approved = s.call("POST", "/v1/missions/" + id + ":approve", "a_approver",
                         R"({"reason": "looked at it"})");
  BOOST_TEST(approved.status == 200, approved.body);
  auto op = s.call("POST", "/v1/missions/" + id + ":approve", "a_operator");
  BOOST_TEST(op.status == 403);
}

BOOST_AUTO_TEST_CASE(missions_run_over_http_with_idempotency_keys_and_paged_ledger) {
  Server s;
  const std::string req = R"({"template": "hello", "inputs": {"who": "api"}})";
  auto first = s.call("POST", "/v1/missions", "a_operator", req, {{"Idempotency-Key", "k-77"}});
  BOOST_REQUIRE_EQUAL(first.status, 201);
  auto again = s.call("POST", "/v1/missions", "a_operator", req, {{"Idempotency-Key", "k-77"}});
  BOOST_TEST(again.status == 200);
  BOOST_TEST(body(again).at("created").as_bool() == false);
  const std::string id(body(first).at("mission").at("id").as_string());
  BOOST_TEST(body(again).at("mission").at("id").as_string() == id);
  auto conflict =
      s.call("POST", "/v1/missions", "a_operator",
             R"({"template": "hello", "inputs": {"who": "other"}})", {{"Idempotency-Key", "k-77"}});
  BOOST_TEST(conflict.status == 409);
  // The key in the body does the same; the header, when both are given, is the one used.
  const std::string in_body =
      R"({"template": "hello", "inputs": {"who": "api"}, "idempotency_key": "b-1"})";
  auto body_first = s.call("POST", "/v1/missions", "a_operator", in_body);
  BOOST_TEST(body_first.status == 201, body_first.body);
  auto body_again = s.call("POST", "/v1/missions", "a_operator", in_body);
  BOOST_TEST(body_again.status == 200, body_again.body);
  BOOST_TEST(body(body_again).at("mission").at("id") == body(body_first).at("mission").at("id"));
  auto header_wins =
      s.call("POST", "/v1/missions", "a_operator", in_body, {{"Idempotency-Key", "h-1"}});
  BOOST_TEST(header_wins.status == 201, header_wins.body);
  BOOST_TEST(body(header_wins).at("mission").at("id") != body(body_first).at("mission").at("id"));
  auto body_conflict = s.call("POST", "/v1/missions", "a_operator",
                              R"({"template": "hello", "inputs": {"who": "other"}, )"
                              R"("idempotency_key": "b-1"})");
  BOOST_TEST(body_conflict.status == 409, body_conflict.body);
  // An empty key is a client's mistake, not "no key": each retry made a new mission.
  auto empty_key = s.call("POST", "/v1/missions", "a_operator", req, {{"Idempotency-Key", ""}});
  BOOST_TEST(empty_key.status == 422, empty_key.body);
  BOOST_TEST(contains(empty_key.body, "the Idempotency-Key header must be 1-200 characters"),
             empty_key.body);
  BOOST_TEST(contains(empty_key.body, "header.Idempotency-Key"), empty_key.body);
  std::string state;
  for (int i = 0; i < 100 && state != "DONE"; ++i) {
    std::this_thread::sleep_for(50ms);
    state =
        std::string(body(s.call("GET", "/v1/missions/" + id, "a_viewer")).at("state").as_string());
  }
  BOOST_TEST(state == "DONE");
  // The other missions started above are done too before the lists below are compared.
  for (int i = 0; i < 200; ++i) {
    if (body(s.call("GET", "/v1/missions?state=done", "a_viewer")).as_array().size() ==
        body(s.call("GET", "/v1/missions", "a_viewer")).as_array().size())
      break;
    std::this_thread::sleep_for(50ms);
  }
  // A list carries no step outputs unless asked (a roast report's are tens of KB).
  auto listed = body(s.call("GET", "/v1/missions", "a_viewer")).as_array();
  BOOST_REQUIRE(!listed.empty());
  BOOST_TEST(listed[0].at("steps").as_array()[0].at("output").is_null());
  auto with_outputs = body(s.call("GET", "/v1/missions?outputs=true", "a_viewer")).as_array();
  BOOST_TEST(!with_outputs[0].at("steps").as_array()[0].at("output").is_null());
  // A state in any case; one that is none is refused, not answered with an empty list.
  BOOST_TEST(body(s.call("GET", "/v1/missions?state=done", "a_viewer")).as_array().size() ==
             listed.size());
  auto bad_state = s.call("GET", "/v1/missions?state=finished", "a_viewer");
  BOOST_TEST(bad_state.status == 422, bad_state.body);
  BOOST_TEST(contains(bad_state.body, "no mission state 'finished': one of PENDING, RUNNING"),
             bad_state.body);
  BOOST_TEST(body(bad_state).at("error").at("details").at("field").as_string() == "query.state");
  BOOST_TEST(error_code_of(bad_state) == "invalid_request");
  auto bad_outputs = s.call("GET", "/v1/missions?outputs=yes", "a_viewer");
  BOOST_TEST(bad_outputs.status == 422);
  BOOST_TEST(contains(bad_outputs.body, "'outputs' must be true, false, 1 or 0"), bad_outputs.body);
  // Booleans read alike on every route: 1 is true here as on /v1/profiles?archived.
  BOOST_TEST(!body(s.call("GET", "/v1/missions?outputs=1", "a_viewer"))
                  .as_array()[0]
                  .at("steps")
                  .as_array()[0]
                  .at("output")
                  .is_null());
  // Page through the tenant's ledger two events at a time; the pages join up.
  std::int64_t after = 0, seen = 0, last_seq = 0;
  for (int page = 0; page < 100; ++page) {
    auto r = body(s.call("GET", "/v1/ledger?limit=2&after=" + std::to_string(after), "a_viewer"));
    for (const auto& e : r.at("events").as_array()) {
      BOOST_TEST(e.at("seq").as_int64() > last_seq);
      last_seq = e.at("seq").as_int64();
      ++seen;
    }
    if (r.at("next_after").is_null()) break;
    after = r.at("next_after").as_int64();
  }
  auto all = body(s.call("GET", "/v1/ledger?limit=1000", "a_viewer"));
  BOOST_TEST(seen == static_cast<std::int64_t>(all.at("events").as_array().size()));
  BOOST_TEST(seen >= 9);
}

// Lists page by a cursor, and a full page says where the next one is (Link, rel="next"): a busy
// roastery has thousands of roast report missions, and missions once listed only the newest
// 1000.
BOOST_AUTO_TEST_CASE(lists_link_their_next_page) {
  Server s;
  for (int i = 0; i < 5; ++i)
    BOOST_REQUIRE_EQUAL(s.call("POST", "/v1/missions", "a_operator",
                               R"({"template": "approval_demo", "inputs": {"note": "n)" +
                                   std::to_string(i) + "\"}}")
                            .status,
                        201);
  std::vector<std::string> all;
  const auto listed = body(s.call("GET", "/v1/missions", "a_viewer"));
  for (const auto& m : listed.as_array()) all.emplace_back(m.at("id").as_string());
  BOOST_REQUIRE_EQUAL(all.size(), 5u);
  // Follow the links two at a time, as a client would, with the other parameters kept.
  std::vector<std::string> paged;
  std::string target = "/v1/missions?limit=2&template=approval_demo";
  for (int page = 0; page < 10 && !target.empty(); ++page) {
    auto r = s.call("GET", target, "a_viewer");
    BOOST_REQUIRE_EQUAL(r.status, 200);
    const auto page_of = body(r);
    for (const auto& m : page_of.as_array()) paged.emplace_back(m.at("id").as_string());
    std::smatch next;
    const std::string link = r.header("link");
    target = std::regex_search(link, next, std::regex("^<([^>]+)>; rel=\"next\"$")) ? next[1].str()
                                                                                    : std::string();
    if (!target.empty()) {
      BOOST_TEST(contains(target, "limit=2"), target);
      BOOST_TEST(contains(target, "template=approval_demo"), target);
    }
  }
  BOOST_TEST(paged == all, boost::test_tools::per_element());
  // The last page (and a page that holds everything) has no link.
  BOOST_TEST(s.call("GET", "/v1/missions?limit=5", "a_viewer").header("link").empty());
  // A refused query: 422, saying what, naming the parameter.
  auto refused = [&](const std::string& query, const std::string& says, const std::string& field) {
    auto r = s.call("GET", "/v1/missions?" + query, "a_viewer");
    BOOST_TEST(r.status == 422, query << ": " << r.body);
    BOOST_TEST(contains(r.body, says), query << ": " << r.body);
    BOOST_TEST(body(r).at("error").at("details").at("field").as_string() == "query." + field);
  };
  refused("starting_after=m-nope", "no mission 'm-nope' to start after", "starting_after");
  refused("starting_after=",
          "query parameter 'starting_after' is empty: give it a value, or leave it out "
          "(starting_after: the page after this mission (the last of the previous page))",
          "starting_after");
  // A parameter given twice, or empty where a number goes, is refused, not guessed.
  refused("limit=1&limit=2", "query parameter 'limit' is given more than once", "limit");
  refused("limit=", "query parameter 'limit' is empty", "limit");
  // Another tenant's mission is no cursor either.
  BOOST_TEST(s.call("GET", "/v1/missions?starting_after=" + all[0], "b_admin").status == 422);
  auto ledger = s.call("GET", "/v1/ledger?limit=1", "a_viewer");
  BOOST_TEST(ledger.header("link") ==
                 "</v1/ledger?after=" + std::to_string(body(ledger).at("next_after").as_int64()) +
                     "&limit=1>; rel=\"next\"",
             ledger.header("link"));
  // The client-mode CLI says how to ask for the next page.
  auto cli = s.kiln(
      {"mission", "list", "--limit", "2", "--server", s.url(), "--api-key", s.keys.at("a_viewer")});
  BOOST_TEST(cli.exit_code == 0, cli.err);
  BOOST_TEST(contains(cli.out, "more: the next page with --starting-after " + all[1] + "\n"),
             cli.out);
  auto next = s.kiln({"mission", "list", "--limit", "2", "--starting-after", all[1], "--json",
                      "--server", s.url(), "--api-key", s.keys.at("a_viewer")});
  BOOST_TEST(json::parse(next.out).as_array()[0].at("id").as_string() == all[2], next.out);
}

// Every JSON answer is what /openapi.json says it is: each GET route's answer validated against
// its documented schema (a client generated from the document would otherwise break on it), and
// the headers routes read and answers carry are in the document too.
BOOST_AUTO_TEST_CASE(answers_match_their_documented_schemas) {
  Server s;
  auto created = s.call("POST", "/v1/missions", "a_operator",
                        R"({"template": "hello", "inputs": {"who": "schema"}})");
  BOOST_REQUIRE_EQUAL(created.status, 201);
  const std::string id(body(created).at("mission").at("id").as_string());
  const auto doc = body(s.call("GET", "/openapi.json"));
  const auto& paths = doc.at("paths").as_object();
  int checked = 0;
  for (const std::string path :
       {"/v1/plugins", "/v1/nodes", "/v1/gates", "/v1/tools", "/v1/missions", "/v1/missions/{id}",
        "/v1/mission-templates", "/v1/ledger", "/v1/devices", "/v1/sessions", "/v1/profiles",
        "/v1/audio/voices"}) {
    std::string target = path;
    if (auto at = target.find("{id}"); at != std::string::npos) target.replace(at, 4, id);
    auto r = s.call("GET", target, "a_viewer");
    BOOST_REQUIRE_MESSAGE(r.status == 200, target << ": " << r.body);
    const auto& schema = paths.at(path)
                             .at("get")
                             .at("responses")
                             .at("200")
                             .at("content")
                             .at("application/json")
                             .at("schema");
    // Documented, not just "an array of objects": each item says what it holds.
    if (schema.as_object().contains("items"))
      BOOST_TEST(schema.at("items").as_object().contains("properties"), path);
    const auto err = runtime::validate_json(schema, body(r), "answer");
    BOOST_TEST(!err, path << ": " << err.value_or(""));
    // The methods the path answers are the document's, with HEAD and OPTIONS as its
    // description says.
    std::vector<std::string> methods = {"HEAD", "OPTIONS"};
    for (const auto& op : paths.at(path).as_object()) {
      std::string m(op.key());
      std::transform(m.begin(), m.end(), m.begin(),
                     [](unsigned char c) { return std::toupper(c); });
      methods.push_back(m);
    }
    std::sort(methods.begin(), methods.end());
    std::string allow;
    for (const auto& m : methods) allow += (allow.empty() ? "" : ", ") + m;
    BOOST_TEST(s.call("OPTIONS", target).header("allow") == allow, path);
    ++checked;
  }
  BOOST_TEST(checked == 12);
  const std::string described(doc.at("info").at("description").as_string());
  BOOST_TEST(contains(described, "every GET path answers HEAD"), described);
  // Headers: the ones routes read, the ones answers carry.
  auto header_param = [&](const std::string& path, const std::string& method,
                          const std::string& name) {
    for (const auto& p : paths.at(path).at(method).at("parameters").as_array())
      if (p.at("in") == "header" && p.at("name").as_string() == name) return true;
    return false;
  };
  BOOST_TEST(header_param("/v1/missions", "post", "Idempotency-Key"));
  BOOST_TEST(header_param("/v1/missions/{id}/artifacts/{step}/{name}", "get", "If-None-Match"));
  for (const std::string path : {"/v1/missions", "/v1/sessions", "/v1/ledger"})
    BOOST_TEST(paths.at(path)
                   .at("get")
                   .at("responses")
                   .at("200")
                   .at("headers")
                   .as_object()
                   .contains("Link"),
               path);
  BOOST_TEST(paths.at("/v1/sessions/{id}/summary")
                 .at("get")
                 .at("responses")
                 .at("200")
                 .at("headers")
                 .as_object()
                 .contains("ETag"));
}

// A generated client learns from /openapi.json which values a query parameter takes: each
// documented bound and enum is asked at its edge (taken) and past it (422 naming it), on every
// route; a parameter given empty is refused.
BOOST_AUTO_TEST_CASE(query_parameters_are_held_to_what_the_document_says) {
  Server s;
  const auto doc = body(s.call("GET", "/openapi.json"));
  std::set<std::string> asked;
  for (const auto& [path, ops] : doc.at("paths").as_object()) {
    const auto* get = ops.as_object().if_contains("get");
    if (!get || !get->as_object().contains("parameters")) continue;
    // Unknown ids: a value past a bound is refused before anything is looked up.
    const std::string target =
        std::regex_replace(std::string(path), std::regex("\\{[^}]+\\}"), "x");
    for (const auto& p : get->at("parameters").as_array()) {
      if (p.at("in") != "query") continue;
      const std::string name(p.at("name").as_string());
      const auto& schema = p.at("schema").as_object();
      std::vector<std::string> taken, refused = {""};
      if (const auto* e = schema.if_contains("enum")) {
        for (const auto& v : e->as_array()) taken.emplace_back(v.as_string());
        refused.push_back("no-such-value");
      }
      for (const auto& [bound, step] : {std::pair{"minimum", -1}, std::pair{"maximum", 1}})
        if (const auto* b = schema.if_contains(bound)) {
          taken.push_back(std::to_string(b->as_int64()));
          refused.push_back(std::to_string(b->as_int64() + step));
        }
      // Taken: answered (200), or the unknown id not found — never refused, never a failure.
      for (const auto& v : taken) {
        auto r = s.call("GET", target + "?" + name + "=" + v, "a_viewer");
        BOOST_TEST((r.status == 200 || (r.status == 404 && target.find("/x") != std::string::npos)),
                   path << " " << name << "=" << v << ": " << r.status << " " << r.body);
      }
      for (const auto& v : refused) {
        auto r = s.call("GET", target + "?" + name + "=" + v, "a_viewer");
        BOOST_TEST(r.status == 422, path << " " << name << "=" << v << ": " << r.body);
        if (r.status == 422)
          BOOST_TEST(body(r).at("error").at("details").at("field").as_string() == "query." + name);
      }
      if (taken.size() > 0) asked.insert(std::string(path) + "?" + name);
    }
  }
  // state, limit, format, after, version: where they bound or enumerate.
  for (const char* expected :
       {"/v1/missions?state", "/v1/missions?limit", "/v1/sessions?state", "/v1/sessions?limit",
        "/v1/sessions/{id}/report?format", "/v1/ledger?after", "/v1/ledger?limit",
        "/v1/profiles/{name}?version", "/v1/profiles/{name}/alog?version"})
    BOOST_TEST(asked.count(expected), expected);
}

// What every operation may answer besides its own statuses is in the document, so a generated
// client has a type for it: 422 (an unknown query parameter), 413, 503 with Retry-After
// (draining), and for keyed operations 400 (two Authorization headers) and 401 with
// WWW-Authenticate; a 304 carries the ETag; the headers every answer has are required.
BOOST_AUTO_TEST_CASE(every_operation_documents_the_statuses_every_route_answers) {
  Server s;
  const auto doc = body(s.call("GET", "/openapi.json"));
  int operations = 0;
  for (const auto& [path, ops] : doc.at("paths").as_object())
    for (const auto& [method, op] : ops.as_object()) {
      ++operations;
      const auto& responses = op.at("responses").as_object();
      const std::string where = std::string(method) + " " + std::string(path);
      for (const char* status : {"413", "422", "503"})
        BOOST_TEST(responses.contains(status), where << " " << status);
      BOOST_TEST(responses.at("503").at("headers").as_object().contains("Retry-After"), where);
      if (op.as_object().contains("security")) {
        BOOST_TEST(responses.contains("400"), where);
        BOOST_TEST(responses.at("401").at("headers").as_object().contains("WWW-Authenticate"),
                   where);
      }
      if (const auto* unchanged = responses.if_contains("304"))
        BOOST_TEST(unchanged->at("headers").as_object().contains("ETag"), where);
    }
  BOOST_TEST(operations >= 45);
  // A route's own statuses (found by answering them: 409 from rotate and mark).
  auto documents = [&](const char* path, const char* method, const char* status) {
    return doc.at("paths").at(path).at(method).at("responses").as_object().contains(status);
  };
  BOOST_TEST(documents("/v1/devices/{device}:rotate", "post", "409"));
  BOOST_TEST(documents("/v1/sessions/{id}:mark", "post", "409"));
  auto header_required = [&](const char* path, const char* method, const char* status,
                             const char* name) {
    const auto& headers =
        doc.at("paths").at(path).at(method).at("responses").at(status).at("headers").as_object();
    const auto* h = headers.if_contains(name);
    return h && h->as_object().contains("required") && h->at("required").as_bool();
  };
  BOOST_TEST(header_required("/v1/sessions/{id}/report", "get", "200", "ETag"));
  BOOST_TEST(header_required("/v1/sessions/{id}/report", "get", "200", "Cache-Control"));
  BOOST_TEST(header_required("/v1/audio/speech", "post", "200", "X-Kiln-Voice"));
  // (not on a streamed answer)
  BOOST_TEST(!header_required("/v1/audio/speech", "post", "200", "X-Kiln-Audio-Seconds"));
  BOOST_TEST(header_required("/v1/sessions/{id}/alog", "get", "200", "Content-Disposition"));
  BOOST_TEST(header_required("/v1/devices", "post", "201", "Cache-Control"));
  // And the server answers so: an unknown query parameter on a route with none, 422.
  auto unknown = s.call("GET", "/health?zz=1");
  BOOST_TEST(unknown.status == 422);
  BOOST_TEST(contains(unknown.body, "unknown query parameter 'zz'; GET /health takes none"));
}

// Which API keys exist, and their hashes, are for admins: the ledger leaves stream `keys` out
// for other roles.
// A call over the policy's rate is answered 429 with Retry-After from the bucket's
// retry_after_ms, on every route that runs a tool (only a tool invoke said when), and a tool
// with its own bucket does not hold up another.
BOOST_AUTO_TEST_CASE(rate_limited_calls_say_when_to_come_back) {
  TempDir policy_dir;
  const auto policy = policy_dir.path() / "policy.yaml";
  std::ofstream(policy) << "version: 1\ntenants:\n  \"*\":\n    missions: [\"*\"]\n"
                           "    rate_limits:\n      per_tool:\n"
                           "        kiln.noop: {per_second: 0.1, burst: 1}\n"
                           "        tts.synthesize: {per_second: 0.5}\n";
  Server s({"policy.file=" + policy.string()});
  const std::string noop = R"({"input": {}})";
  BOOST_TEST(s.call("POST", "/v1/tools/kiln.noop:invoke", "a_operator", noop).status == 200);
  auto refused = s.call("POST", "/v1/tools/kiln.noop:invoke", "a_operator", noop);
  BOOST_TEST(refused.status == 429, refused.body);
  BOOST_TEST(error_code_of(refused) == "rate_limited");
  BOOST_TEST(body(refused).at("error").at("details").at("retryable").as_bool());
  const auto wait_s = std::stoi(refused.header("retry-after"));
  BOOST_TEST((wait_s >= 9 && wait_s <= 10), refused.header("retry-after"));
  BOOST_TEST(
      s.call("POST", "/v1/tools/kiln.echo:invoke", "a_operator", R"({"input": {"x": 1}})").status ==
      200);
  // Speech runs tts.synthesize: its own bucket, a burst of one left out (max(1, per_second)).
  const std::string say = R"({"model": "tts-1", "input": "Hi.", "voice": "alloy", )"
                          R"("response_format": "wav"})";
  BOOST_TEST(
      s.call("POST", "/v1/audio/speech", "a_viewer", say, {{"Content-Type", "application/json"}})
          .status == 200);
  auto again =
      s.call("POST", "/v1/audio/speech", "a_viewer", say, {{"Content-Type", "application/json"}});
  BOOST_TEST(again.status == 429, again.body);
  BOOST_TEST((again.header("retry-after") == "1" || again.header("retry-after") == "2"),
             again.header("retry-after"));
}

// A server on an IPv6 address says its URL with the address in brackets, and the CLI reaches it
// by that URL (the client split http://[::1]:8080 at its last ':' and looked up "[::1]").
BOOST_AUTO_TEST_CASE(a_server_on_ipv6_is_reached_by_its_url) {
  http::Client bare("http://[::1]");
  BOOST_TEST(bare.host() == "::1");
  BOOST_TEST(bare.port() == "80");
  BOOST_TEST(bare.authority() == "[::1]:80");
  BOOST_TEST(http::Client("http://127.0.0.1:8080/").authority() == "127.0.0.1:8080");
  for (const char* bad : {"http://[::1", "http://[::1]8080"})
    BOOST_CHECK_EXCEPTION(http::Client{bad}, std::invalid_argument, [](const auto& e) {
      return contains(e.what(), "has an IPv6 address: write it as http://[ADDRESS]:PORT");
    });
  {  // A machine without IPv6 on its loopback (a container with it switched off) cannot serve.
    const int fd = ::socket(AF_INET6, SOCK_STREAM, 0);
    sockaddr_in6 a{};
    a.sin6_family = AF_INET6;
    a.sin6_addr = in6addr_loopback;
    const bool v6 = fd >= 0 && ::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0;
    if (fd >= 0) ::close(fd);
    if (!v6) {
      BOOST_TEST_MESSAGE("no IPv6 loopback here: the server part of this test does not run");
      return;
    }
  }
  Server s({"server.host=::1"});
  BOOST_TEST(s.host == "[::1]");
  BOOST_TEST(s.call("GET", "/health").status == 200);
  auto health = s.kiln({"server", "health", "--server", s.url()});
  BOOST_TEST(health.exit_code == 0, health.out + health.err);
  auto listed =
      s.kiln({"mission", "list", "--server", s.url(), "--api-key", s.keys.at("a_viewer")});
  BOOST_TEST(listed.exit_code == 0, listed.out + listed.err);
}

// Storage that refuses writes while the server runs (here a trigger refusing every ledger row, as
// a failing disk refuses them): /ready says 503 storage_failing with SQLite's error, /metrics
// kiln_ready 0; once a write goes through again, 200.
BOOST_AUTO_TEST_CASE(ready_says_when_the_storage_refuses_writes) {
  Server s;
  const std::string noop = R"({"input": {}})";
  BOOST_TEST(s.call("GET", "/ready").status == 200);
  const auto db = s.dir.path() / "var/kiln.db";
  {
    storage::Connection c(db, storage::Connection::Mode::kReadWrite);
    c.exec(
        "CREATE TRIGGER poison BEFORE INSERT ON ledger BEGIN "
        "SELECT RAISE(ABORT, 'poisoned row'); END");
  }
  s.call("POST", "/v1/tools/kiln.noop:invoke", "a_operator", noop);  // its audit event fails
  http::ClientResponse ready;
  for (int i = 0; i < 100; ++i) {
    ready = s.call("GET", "/ready");
    if (ready.status == 503) break;
    std::this_thread::sleep_for(50ms);
  }
  BOOST_TEST(ready.status == 503, ready.body);
  BOOST_TEST(error_code_of(ready) == "storage_failing", ready.body);
  BOOST_TEST(contains(ready.body, "poisoned row"), ready.body);
  BOOST_TEST(ready.header("retry-after") == "2");
  BOOST_TEST(contains(s.call("GET", "/metrics").body, "\nkiln_ready 0\n"));
  {
    storage::Connection c(db, storage::Connection::Mode::kReadWrite);
    c.exec("DROP TRIGGER poison");
  }
  for (int i = 0; i < 100 && ready.status != 200; ++i) {
    s.call("POST", "/v1/tools/kiln.noop:invoke", "a_operator", noop);
    ready = s.call("GET", "/ready");
    if (ready.status != 200) std::this_thread::sleep_for(50ms);
  }
  BOOST_TEST(ready.status == 200, ready.body);
  BOOST_TEST(contains(s.call("GET", "/metrics").body, "\nkiln_ready 1\n"));
}

// A deployment without the TTS and roast plugins (plugins.disabled) serves; what needs them
// answers 503 naming the plugin or node that is not there, and the server is ready.
BOOST_AUTO_TEST_CASE(routes_of_plugins_not_loaded_say_which) {
  Server s({"plugins.disabled=[roast,tts_torch]"});
  BOOST_TEST(s.call("GET", "/ready").status == 200);
  auto voices = s.call("GET", "/v1/audio/voices", "a_viewer");
  BOOST_TEST(voices.status == 503, voices.body);
  BOOST_TEST(error_code_of(voices) == "provider_unavailable", voices.body);
  BOOST_TEST(contains(voices.body, "tts_torch plugin is not loaded"), voices.body);
  BOOST_TEST(voices.header("retry-after").empty());  // no retry changes the deployment
  for (const char* stream : {"", R"(, "stream_format": "audio")"}) {
    auto spoken = s.call("POST", "/v1/audio/speech", "a_viewer",
                         std::string(R"({"model": "tts-1", "input": "Hi.", "voice": "alloy", )"
                                     R"("response_format": "wav")") +
                             stream + "}",
                         {{"Content-Type", "application/json"}});
    BOOST_TEST(spoken.status == 503, stream << spoken.body);
    BOOST_TEST(error_code_of(spoken) == "provider_unavailable", spoken.body);
  }
  auto imported = s.call("POST", "/v1/profiles", "a_operator", R"({"name": "house", "alog": "x"})");
  BOOST_TEST(imported.status == 503, imported.body);
  BOOST_TEST(contains(imported.body, "roast.profile_import (the roast plugin's)"), imported.body);
}

BOOST_AUTO_TEST_CASE(api_key_events_are_for_admins) {
  Server s;
  auto count_keys = [&](const std::string& key) {
    int n = 0;
    const auto page = body(s.call("GET", "/v1/ledger?limit=1000", key));
    for (const auto& e : page.at("events").as_array()) {
      n += e.at("stream") == "keys";
      if (e.at("stream") == "keys") BOOST_TEST(e.at("payload").as_object().contains("hash"));
    }
    return n;
  };
  BOOST_TEST(count_keys("a_operator") == 0);
  BOOST_TEST(count_keys("b_admin") == 1);  // globex's own key
  auto asked = s.call("GET", "/v1/ledger?stream=keys", "a_approver");
  BOOST_TEST(asked.status == 403, asked.body);
  BOOST_TEST(contains(asked.body, "stream keys (API keys) needs the admin role"), asked.body);
  BOOST_TEST(
      body(s.call("GET", "/v1/ledger?stream=keys", "b_admin")).at("events").as_array().size() ==
      1u);
}

// A tool call's audit event is committed a few milliseconds after the call answers; the ledger
// route waits for what is queued, so a client reading right after its calls finds every one.
BOOST_AUTO_TEST_CASE(the_ledger_shows_the_calls_answered_before) {
  Server s;
  for (int i = 0; i < 5; ++i) {
    const std::string marker = "ryw-" + std::to_string(i);
    auto call = s.call("POST", "/v1/tools/kiln.echo:invoke", "a_operator", R"({"input": {}})",
                       {{"X-Request-Id", marker}});
    BOOST_REQUIRE_EQUAL(call.status, 200);
    auto page = s.call("GET", "/v1/ledger?stream=tools&limit=1000", "a_viewer");
    BOOST_REQUIRE_EQUAL(page.status, 200);
    int found = 0;
    const json::value events = body(page).at("events");
    for (const auto& e : events.as_array())
      if (e.at("kind").as_string() == "tool.completed" &&
          e.at("payload").at("request_id").as_string() == marker)
        ++found;
    BOOST_TEST(found == 1, marker << " in " << page.body);
  }
  // /metrics counts this process's commits and writes, and audit events it could not store.
  const std::string metrics = s.call("GET", "/metrics").body;
  std::smatch m;
  BOOST_REQUIRE(
      std::regex_search(metrics, m, std::regex("\nkiln_ledger_commits_total ([0-9]+)\n")));
  BOOST_TEST(std::stoll(m[1]) >= 1);
  BOOST_REQUIRE(
      std::regex_search(metrics, m, std::regex("\nkiln_ledger_appended_total ([0-9]+)\n")));
  BOOST_TEST(std::stoll(m[1]) >= 5);
  BOOST_TEST(contains(metrics, "\nkiln_ledger_audit_failures_total 0\n"), metrics);
}

// However a request's bytes arrive — body in the header's packet with the next request behind
// it, body sent later in pieces, a chunked body cut inside a chunk's size line — each request
// gets its own body and its own response, in order.
BOOST_AUTO_TEST_CASE(request_bodies_are_framed_however_they_arrive) {
  Server s;
  const std::string auth = "Authorization: Bearer " + s.keys.at("a_operator") + "\r\n";
  auto post = [&](const std::string& body) {
    return "POST /v1/tools/kiln.echo:invoke HTTP/1.1\r\nHost: x\r\n" + auth +
           "Content-Type: application/json\r\nContent-Length: " + std::to_string(body.size()) +
           "\r\n\r\n" + body;
  };
  auto echoed = [](const std::pair<int, std::string>& r) {
    BOOST_TEST(r.first == 200, r.second);
    return json::serialize(json::parse(r.second).at("output"));
  };
  int fd = raw_connect(s.port);
  // Two requests with bodies and a GET, pipelined in one write.
  send_all(fd, post(R"({"input": {"n": 1}})") + post(R"({"input": {"n": 2}})") +
                   "GET /health HTTP/1.1\r\nHost: x\r\n\r\n");
  auto three = read_responses(fd, 3);
  BOOST_TEST(echoed(three[0]) == R"({"n":1})");
  BOOST_TEST(echoed(three[1]) == R"({"n":2})");
  BOOST_TEST(three[2].first == 200);
  BOOST_TEST(contains(three[2].second, "\"ok\""));
  // The header alone, then the body in two pieces.
  const std::string whole = post(R"({"input": {"split": "yes"}})");
  const auto body_at = whole.find("\r\n\r\n") + 4;
  send_all(fd, whole.substr(0, body_at));
  std::this_thread::sleep_for(100ms);
  send_all(fd, whole.substr(body_at, 7));
  std::this_thread::sleep_for(100ms);
  send_all(fd, whole.substr(body_at + 7));
  BOOST_TEST(echoed(read_responses(fd, 1)[0]) == R"({"split":"yes"})");
  // A chunked body: two chunks, the writes cut after a chunk's size digit and inside its data.
  const std::string body = R"({"input": {"chunked": true}})";
  char size1[8], size2[8];
  std::snprintf(size1, sizeof size1, "%x", 10u);
  std::snprintf(size2, sizeof size2, "%zx", body.size() - 10);
  const std::string head = "POST /v1/tools/kiln.echo:invoke HTTP/1.1\r\nHost: x\r\n" + auth +
                           "Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n";
  send_all(fd, head + size1);
  std::this_thread::sleep_for(100ms);
  send_all(fd, "\r\n" + body.substr(0, 10) + "\r\n" + size2 + "\r\n" + body.substr(10, 5));
  std::this_thread::sleep_for(100ms);
  send_all(fd, body.substr(15) + "\r\n0\r\n\r\n");
  BOOST_TEST(echoed(read_responses(fd, 1)[0]) == R"({"chunked":true})");
  ::close(fd);
}

// Nothing unauthenticated makes the server wait for, read or hold a body: a key is checked from
// the headers. And connections beyond server.max_connections are answered and closed.
BOOST_AUTO_TEST_CASE(bodies_wait_for_a_key_and_connections_are_capped) {
  Server s({"server.max_connections=3"});
  auto headers_only = [&](const std::string& key) {
    return "POST /v1/missions HTTP/1.1\r\nHost: x\r\n" +
           (key.empty() ? std::string() : "Authorization: Bearer " + s.keys.at(key) + "\r\n") +
           "Content-Type: application/json\r\nContent-Length: 500000\r\n\r\n";
  };
  for (const auto& [key, status, code] : std::vector<std::tuple<std::string, int, std::string>>{
           {"", 401, "unauthenticated"}, {"a_viewer", 403, "forbidden"}}) {
    int fd = raw_connect(s.port);
    send_all(fd, headers_only(key));
    // Answered without a byte of the body (read_responses gives up after 10 s).
    auto r = read_responses(fd, 1);
    BOOST_TEST(r[0].first == status, r[0].second);
    BOOST_TEST(contains(r[0].second, code));
    // What the client still sends is read and dropped, not answered with a reset.
    const std::string more(64 * 1024, 'x');
    BOOST_TEST(::send(fd, more.data(), more.size(), MSG_NOSIGNAL) ==
               static_cast<ssize_t>(more.size()));
    char buf[64];
    BOOST_TEST(::read(fd, buf, sizeof buf) == 0);  // then closed
    ::close(fd);
  }
  // An admitted key's body is waited for as before (the request then fails on its content).
  {
    int fd = raw_connect(s.port);
    const std::string body = R"({"template": "no.such.template"})";
    send_all(fd, "POST /v1/missions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " +
                     s.keys.at("a_operator") +
                     "\r\nContent-Type: application/json\r\nContent-Length: " +
                     std::to_string(body.size()) + "\r\n\r\n");
    std::this_thread::sleep_for(200ms);
    send_all(fd, body);
    auto r = read_responses(fd, 1);
    BOOST_TEST(r[0].first != 401);
    BOOST_TEST(r[0].first != 408);
    BOOST_TEST(contains(r[0].second, "no.such.template"), r[0].second);
    ::close(fd);
  }

  // Three connections open (once those above are closed); a fourth is answered 503 at once and
  // closed.
  for (int attempt = 0; attempt < 50; ++attempt) {
    if (contains(s.call("GET", "/metrics").body, "kiln_http_connections_open 1\n")) break;
    std::this_thread::sleep_for(50ms);
  }
  std::vector<int> open;
  for (int i = 0; i < 3; ++i) open.push_back(raw_connect(s.port));
  int fourth = raw_connect(s.port);
  auto busy = read_responses(fourth, 1);
  BOOST_TEST(busy[0].first == 503);
  BOOST_TEST(contains(busy[0].second, "too_many_connections"));
  BOOST_TEST(contains(busy[0].second, "server.max_connections"));
  ::close(fourth);
  // One closes: a new connection is served again.
  ::close(open.back());
  open.pop_back();
  int served = 0;
  for (int attempt = 0; attempt < 50 && served != 200; ++attempt) {
    std::this_thread::sleep_for(50ms);
    served = s.call("GET", "/health").status;
  }
  BOOST_TEST(served == 200);
  // (The server may not have seen the last connection close yet.)
  http::ClientResponse metrics;
  for (int attempt = 0; attempt < 50 && metrics.status != 200; ++attempt) {
    std::this_thread::sleep_for(50ms);
    metrics = s.call("GET", "/metrics");
  }
  BOOST_TEST(contains(metrics.body, "kiln_http_connections_refused_total "), metrics.body);
  BOOST_TEST(!contains(metrics.body, "kiln_http_connections_refused_total 0"));
  BOOST_TEST(contains(metrics.body, "kiln_http_connections_open 3"));
  for (int fd : open) ::close(fd);
}

// With server.max_connections_per_client, one client address holding that many connections is
// refused another; other clients are served, and a closed connection frees a place.
BOOST_AUTO_TEST_CASE(connections_are_capped_per_client_address) {
  Server s({"server.max_connections_per_client=2"});
  std::vector<int> open{raw_connect(s.port), raw_connect(s.port)};
  int third = raw_connect(s.port);
  auto busy = read_responses(third, 1);
  BOOST_TEST(busy[0].first == 503);
  BOOST_TEST(contains(busy[0].second, "too_many_connections"));
  BOOST_TEST(contains(busy[0].second,
                      "this client (127.0.0.1) has 2 connections open "
                      "(server.max_connections_per_client)"),
             busy[0].second);
  ::close(third);
  // Another address is another client.
  int other = raw_connect(s.port, "127.0.0.2");
  send_all(other, "GET /health HTTP/1.1\r\nHost: x\r\n\r\n");
  BOOST_TEST(read_responses(other, 1)[0].first == 200);
  ::close(other);
  // One of the first client's closes: it is served again.
  ::close(open.back());
  open.pop_back();
  int status = 0;
  for (int attempt = 0; attempt < 50 && status != 200; ++attempt) {
    std::this_thread::sleep_for(50ms);
    status = s.call("GET", "/health").status;
  }
  BOOST_TEST(status == 200);
  for (int fd : open) ::close(fd);
}

BOOST_AUTO_TEST_CASE(slow_clients_are_cut_off_and_sigterm_drains) {
  Server s({"server.idle_timeout_ms=300", "server.request_timeout_ms=500"});
  // A client that sends half a request line and stops is disconnected after the idle timeout.
  int fd = raw_connect(s.port);
  const char partial[] = "GET /health HTTP/1.1\r\nHost: x\r\n";
  BOOST_REQUIRE(::write(fd, partial, sizeof partial - 1) > 0);
  timeval tv{3, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  char buf[256];
  auto t0 = std::chrono::steady_clock::now();
  auto n = ::read(fd, buf, sizeof buf);
  auto waited = std::chrono::steady_clock::now() - t0;
  BOOST_TEST(n == 0, "the server should close the connection, read returned " << n);
  BOOST_TEST(waited < 2s);
  ::close(fd);

  // SIGHUP (a closed terminal, `systemctl reload`) does not stop the server; it says why.
  s.child->signal(SIGHUP);
  BOOST_TEST(s.child->wait_for_stderr("received SIGHUP: ignored", 5s), s.child->stderr_so_far());
  BOOST_TEST(s.call("GET", "/health").status == 200);

  // A slow request is in flight when SIGTERM arrives: it finishes; a new request gets 503.
  auto slow = std::async(std::launch::async, [&] {
    return s.call("POST", "/v1/tools/kiln.sleep:invoke", "a_operator",
                  R"({"input": {"ms": 1200}})");
  });
  std::this_thread::sleep_for(300ms);
  s.child->signal(SIGTERM);
  std::this_thread::sleep_for(200ms);
  auto during = s.call("GET", "/health");
  BOOST_TEST(during.status == 503);
  BOOST_TEST(error_code_of(during) == "draining");
  BOOST_TEST(during.header("connection") == "close");
  BOOST_TEST(during.header("retry-after") == "2");  // temporary: when to try again
  auto finished = slow.get();
  BOOST_TEST(finished.status == 200, finished.body);
  auto r = s.child->wait(20s);
  BOOST_TEST(r.exit_code == 0, r.err);
  BOOST_TEST(contains(r.err, "draining"));
}

// Under systemd (Type=notify, WatchdogSec): `kiln serve` says READY=1 with its pid once it
// serves, pings the watchdog while GET /health answers, and says STOPPING=1 on SIGTERM. The
// unit it installs passes systemd's own check.
BOOST_AUTO_TEST_CASE(serve_speaks_to_systemd) {
  TempDir sock_dir;
  const std::string path = (sock_dir.path() / "notify").string();
  const int fd = ::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  BOOST_REQUIRE(fd >= 0);
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::memcpy(addr.sun_path, path.c_str(), path.size() + 1);
  BOOST_REQUIRE(::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0);
  // Everything the manager heard, until `until` is part of it or `wait` passes.
  std::string heard;
  auto hear = [&](const std::string& until, std::chrono::milliseconds wait) {
    const auto end = std::chrono::steady_clock::now() + wait;
    while (!contains(heard, until) && std::chrono::steady_clock::now() < end) {
      pollfd p{fd, POLLIN, 0};
      if (::poll(&p, 1, 100) <= 0) continue;
      char buf[4096];
      const auto n = ::recv(fd, buf, sizeof buf, 0);
      if (n > 0) heard.append(buf, static_cast<std::size_t>(n)).append("\n--\n");
    }
    return contains(heard, until);
  };
  // As configured by default, and with /health keyed (left out of server.public_routes): the
  // watchdog's unkeyed probe gets 401 then, and the server answered all the same (it once
  // stopped pinging, and systemd would have restarted it every WatchdogSec).
  for (const std::vector<std::string>& sets :
       {std::vector<std::string>{},
        std::vector<std::string>{"server.public_routes=[\"/ready\"]"}}) {
    heard.clear();
    Server s(sets, {{"NOTIFY_SOCKET", path}, {"WATCHDOG_USEC", "400000"}});
    BOOST_TEST(hear("READY=1", 10s), heard);
    BOOST_TEST(contains(heard, "MAINPID=" + std::to_string(s.child->pid())), heard);
    BOOST_TEST(contains(heard, "STATUS=serving http://127.0.0.1:" + std::to_string(s.port)), heard);
    // A ping every 200 ms: several within two seconds.
    heard.clear();
    hear("never said", 2s);
    std::size_t pings = 0;
    for (auto at = heard.find("WATCHDOG=1"); at != std::string::npos;
         at = heard.find("WATCHDOG=1", at + 1))
      ++pings;
    BOOST_TEST(pings >= 4u, heard);
    s.child->signal(SIGTERM);
    BOOST_TEST(hear("STOPPING=1", 10s), heard);
    auto r = s.child->wait(20s);
    BOOST_TEST(r.exit_code == 0, r.err);
  }
  ::close(fd);

  // The unit as systemd reads it: no unknown keys, the binary it names exists.
  const std::string unit = std::string(KILN_BINARY_DIR) + "/tests/systemd/kiln.service";
  auto verified = run({"/usr/bin/systemd-analyze", "verify", unit});
  BOOST_TEST(verified.exit_code == 0, verified.out + verified.err);
  BOOST_TEST(verified.err.empty(), verified.err);
}

BOOST_AUTO_TEST_CASE(the_cli_calls_a_server_with_the_same_commands) {
  Server s;
  auto remote = [&](std::vector<std::string> args, const std::string& key) {
    args.insert(args.begin(), {"--server", s.url()});
    if (!key.empty()) args.insert(args.begin(), {"--api-key", s.keys.at(key)});
    return s.kiln(args);
  };
  auto health = remote({"server", "health"}, "");
  BOOST_TEST(health.exit_code == 0, health.err);
  BOOST_TEST(contains(health.out, "\"ok\""));
  BOOST_TEST(contains(remote({"server", "metrics"}, "").out, "kiln_http_requests_total"));
  BOOST_TEST(contains(remote({"server", "openapi"}, "").out, "\"3.1.0\""));
  // A server URL kiln cannot use is said before anything is sent; a trailing slash is fine.
  for (const auto& [url, said] : std::vector<std::pair<std::string, std::string>>{
           {"https://127.0.0.1:" + std::to_string(s.port), "https is not supported"},
           {s.url() + "/api", "must not have a path"},
           {"http://127.0.0.1:", "needs a host and a port"}}) {
    auto r = s.kiln({"server", "health", "--server", url});
    BOOST_TEST(r.exit_code == 2, url << ": " << r.err);
    BOOST_TEST(contains(r.err, said), r.err);
  }
  BOOST_TEST(s.kiln({"server", "health", "--server", s.url() + "/"}).exit_code == 0);
  auto local_only = s.kiln({"server", "health"});
  BOOST_TEST(local_only.exit_code == 2);
  BOOST_TEST(contains(local_only.err, "pass --server URL"), local_only.err);

  auto denied = remote({"tool", "invoke", "kiln.echo", "--input", "{}"}, "");
  BOOST_TEST(denied.exit_code == 1);
  BOOST_TEST(contains(denied.err, "server answered 401 unauthenticated"), denied.err);
  BOOST_TEST(contains(denied.err, "KILN_API_KEY"), denied.err);
  // Refused input exits 2 through a server as it does locally.
  auto refused =
      remote({"tool", "invoke", "kiln.sleep", "--input", R"({"ms": "x"})"}, "a_operator");
  BOOST_TEST(refused.exit_code == 2, refused.err);
  BOOST_TEST(contains(refused.err, "server answered 422 invalid_input: "), refused.err);
  auto echo = remote({"tool", "invoke", "kiln.echo", "--input", R"({"hi": 2})"}, "a_operator");
  BOOST_TEST(echo.exit_code == 0, echo.err);
  BOOST_TEST(json::parse(echo.out).at("output").at("hi").as_int64() == 2);
  BOOST_TEST(remote({"plugins", "list"}, "a_viewer").exit_code == 0);
  auto nodes = remote({"nodes"}, "a_viewer");
  BOOST_TEST(nodes.exit_code == 0);
  BOOST_TEST(contains(nodes.out, "KIND "), nodes.out);  // the local command's table
  BOOST_TEST(contains(nodes.out, "tool_strategy"), nodes.out);
  BOOST_TEST(remote({"gate", "status"}, "a_viewer").exit_code == 0);
  BOOST_TEST(contains(remote({"tool", "list"}, "a_viewer").out, "kiln.sleep"));
  // The templates a dashboard may start, over HTTP (GET /v1/mission-templates) as locally.
  const auto templates = body(s.call("GET", "/v1/mission-templates", "a_viewer"));
  bool hello = false;
  for (const auto& t : templates.as_array())
    if (t.at("name") == "hello") {
      hello = true;
      BOOST_TEST(t.at("inputs").as_object().contains("who"), json::serialize(t));
      BOOST_TEST(!t.at("steps").as_array().empty());
    }
  BOOST_TEST(hello, json::serialize(templates));
  // Where the server's files are is for admin keys: others see their names.
  for (const auto& t : templates.as_array())
    BOOST_TEST(!contains(std::string(t.at("source").as_string()), "/"), json::serialize(t));
  for (const auto& [key, paths] : {std::pair{"a_viewer", false}, std::pair{"b_admin", true}}) {
    const auto plugins = body(s.call("GET", "/v1/plugins", key));
    BOOST_REQUIRE(!plugins.as_array().empty());
    for (const auto& p : plugins.as_array()) {
      const std::string file(p.at("file").as_string());
      BOOST_TEST(file.starts_with("/") == paths, key << ": " << file);
      BOOST_TEST(file.ends_with(".so"), file);
    }
  }
  const auto local_templates = s.kiln({"mission", "templates"});
  BOOST_TEST(local_templates.exit_code == 0, local_templates.err);
  BOOST_TEST(remote({"mission", "templates"}, "a_viewer").out == local_templates.out);

  auto started =
      remote({"mission", "start", "hello", "--param", "who=cli", "--wait"}, "a_operator");
  BOOST_TEST(started.exit_code == 0, started.err);
  // A --param for a string input stays a string, though it reads as JSON (the template says so).
  auto numeric =
      remote({"mission", "start", "hello", "--param", "who=42", "--param", "pause_ms=1", "--json"},
             "a_operator");
  BOOST_TEST(numeric.exit_code == 0, numeric.err);
  BOOST_TEST(json::parse(numeric.out).at("mission").at("inputs").at("who") == "42", numeric.out);
  BOOST_TEST(json::parse(numeric.out).at("mission").at("inputs").at("pause_ms") == 1, numeric.out);
  // Shown as the local command shows it (not the server's JSON): headline, state, steps.
  std::smatch found;
  BOOST_REQUIRE_MESSAGE(
      std::regex_search(started.out, found, std::regex("mission ([^ ]+) \\(hello, tenant acme\\)")),
      started.out);
  const std::string id = found[1];
  BOOST_TEST(contains(started.out, "mission " + id + ": DONE"), started.out);
  BOOST_TEST(contains(started.out, "  steps:"), started.out);
  auto shown = remote({"mission", "show", id}, "a_viewer");
  BOOST_TEST(contains(shown.out, "  state:    DONE"), shown.out);
  BOOST_TEST(contains(shown.out, "history (ledger):"), shown.out);
  BOOST_TEST(contains(shown.out, "mission.completed → DONE"), shown.out);
  auto shown_json = remote({"mission", "show", id, "--json"}, "a_viewer");
  BOOST_TEST(json::parse(shown_json.out).at("state").as_string() == "DONE", shown_json.out);
  // A held mission approved with --wait: the answer comes once the server's workers settle it.
  auto held = remote({"mission", "start", "approval_demo", "--json"}, "a_operator");
  const std::string held_id(json::parse(held.out).at("mission").at("id").as_string());
  BOOST_TEST(json::parse(held.out).at("mission").at("state").as_string() == "QUARANTINED");
  // approval_demo is held at creation and again before its step apply.
  auto approved =
      remote({"mission", "approve", held_id, "--wait", "--reason", "looked at it"}, "a_approver");
  BOOST_TEST(approved.exit_code == 0, approved.err);
  BOOST_TEST(contains(approved.out, "approved mission " + held_id + ": QUARANTINED"), approved.out);
  BOOST_TEST(contains(approved.out, "prepare      kiln.echo    DONE"), approved.out);
  approved = remote({"mission", "approve", held_id, "--wait"}, "a_approver");
  BOOST_TEST(contains(approved.out, "approved mission " + held_id + ": DONE"), approved.out);
  // Its step says who approved it by the key's name, not by the key's id alone.
  const auto shown_held =
      json::parse(remote({"mission", "show", held_id, "--json"}, "a_viewer").out);
  const auto& held_steps = shown_held.at("steps").as_array();
  BOOST_TEST(held_steps.back().at("step") == "apply");
  BOOST_TEST(std::string(held_steps.back().at("approved_by").as_string())
                 .starts_with("a_approver (key:k-"),
             held_steps.back().at("approved_by"));
  // A cancel that goes through exits 0, as locally.
  auto to_cancel = remote({"mission", "start", "approval_demo", "--json"}, "a_operator");
  const std::string cancel_id(json::parse(to_cancel.out).at("mission").at("id").as_string());
  auto canceled = remote({"mission", "cancel", cancel_id, "--reason", "not today"}, "a_operator");
  BOOST_TEST(canceled.exit_code == 0, canceled.out + canceled.err);
  BOOST_TEST(contains(canceled.out, "canceled mission " + cancel_id + ": CANCELED"), canceled.out);
  BOOST_TEST(contains(remote({"mission", "list", "--state", "DONE"}, "a_viewer").out, id));
  auto cancel = remote({"mission", "cancel", id}, "a_operator");
  BOOST_TEST(cancel.exit_code == 1);
  BOOST_TEST(contains(cancel.err, "server answered 409 invalid_state"), cancel.err);
  auto other = remote({"mission", "show", id}, "b_admin");
  BOOST_TEST(other.exit_code == 1);
  BOOST_TEST(contains(other.err, "404"), other.err);
  auto exported = remote({"ledger", "export", "--stream", "mission/" + id}, "a_viewer");
  BOOST_TEST(exported.exit_code == 0, exported.err);
  BOOST_TEST(std::count(exported.out.begin(), exported.out.end(), '\n') >= 5);
  // --out writes the file, as the local export does (it once went to stdout).
  TempDir out_dir;
  const auto out_file = out_dir.path() / "mission.jsonl";
  auto to_file = remote(
      {"ledger", "export", "--stream", "mission/" + id, "--out", out_file.string()}, "a_viewer");
  BOOST_TEST(to_file.exit_code == 0, to_file.err);
  BOOST_TEST(to_file.out.empty(), to_file.out);
  std::ifstream written(out_file);
  BOOST_TEST(std::string(std::istreambuf_iterator<char>(written), {}) == exported.out);
  BOOST_TEST(((fs::status(out_file).permissions() & fs::perms::all) ==
              (fs::perms::owner_read | fs::perms::owner_write | fs::perms::group_read)));
  // An export the server refuses leaves the file there as it was (whole or not at all).
  auto refused_export = s.kiln({"ledger", "export", "--out", out_file.string(), "--server", s.url(),
                                "--api-key", "kiln_bogus"});
  BOOST_TEST(refused_export.exit_code == 1, refused_export.out << refused_export.err);
  std::ifstream kept(out_file);
  BOOST_TEST(std::string(std::istreambuf_iterator<char>(kept), {}) == exported.out);
  BOOST_TEST(!fs::exists(out_file.string() + ".partial"));
  // KILN_SERVER_URL does not make a local command's --tenant "not taken with --server": the
  // command says it runs locally.
  auto local_command = s.kiln({"keys", "create", "--tenant", "acme", "--role", "viewer"},
                              {{"KILN_SERVER_URL", s.url()}});
  BOOST_TEST(local_command.exit_code == 2);
  BOOST_TEST(!contains(local_command.err, "is not taken with --server"), local_command.err);
  BOOST_TEST(contains(local_command.err, "not available with --server"), local_command.err);
  BOOST_TEST(contains(local_command.err, "KILN_SERVER_URL is set: unset it for this command"),
             local_command.err);
  auto local = remote({"ledger", "verify"}, "a_viewer");
  BOOST_TEST(local.exit_code == 2);
  BOOST_TEST(contains(local.err, "not available with --server"));
}

BOOST_AUTO_TEST_CASE(speech_api_speaks_every_format_and_rejects_bad_input) {
  // A second voice folder whose model.pt is corrupt: loading it must fail cleanly, not the server.
  TempDir voices;
  fs::create_directories(voices.path() / "broken");
  fs::copy_file(fs::path(KILN_SOURCE_DIR) / "config/voices/kiln-slt-small/voice.json",
                voices.path() / "broken" / "voice.json");
  std::ofstream(voices.path() / "broken" / "model.pt") << "not a model";
  Server s({"plugin_config.tts_torch.voices_dirs=[" + voices.path().string() + "]"});
  const std::string json_ct = "application/json";
  auto speak = [&](const json::object& b, const std::string& key = "a_viewer") {
    return s.call("POST", "/v1/audio/speech", key, json::serialize(b), {{"Content-Type", json_ct}});
  };
  json::object base{
      {"model", "tts-1"}, {"input", "First crack at nine minutes twelve."}, {"voice", "alloy"}};

  // Formats: the bytes and the media type of each.
  auto with = [&](std::string format) {
    auto b = base;
    b["response_format"] = format;
    return speak(b);
  };
  auto wav = with("wav");
  BOOST_REQUIRE_MESSAGE(wav.status == 200, wav.body);
  BOOST_TEST(wav.header("content-type") == "audio/wav");
  BOOST_TEST(wav.body.substr(0, 4) == "RIFF");
  BOOST_TEST(wav.header("x-kiln-voice") == "kiln-slt-small");
  const auto rate =
      static_cast<unsigned char>(wav.body[24]) | (static_cast<unsigned char>(wav.body[25]) << 8);
  BOOST_TEST(rate == 16000);
  BOOST_TEST(wav.body.size() > 16000u * 2);  // over a second of 16-bit audio
  auto pcm = with("pcm");
  BOOST_TEST(pcm.status == 200);
  // OpenAI's pcm: 24 kHz (its clients play it so), the voice's 16 kHz samples raised to it,
  // little-endian and said so (not audio/L16, which is big-endian: RFC 3551).
  const std::size_t voice_samples = (wav.body.size() - 44) / 2;
  BOOST_TEST(pcm.body.size() == 2 * (voice_samples * 24000 / 16000),
             pcm.body.size() << " for " << voice_samples << " samples at 16 kHz");
  BOOST_TEST(pcm.header("content-type") ==
                 "audio/pcm;rate=24000;channels=1;encoding=signed-int;bits=16;endianness=little",
             pcm.header("content-type"));
  {
    // The same sound: the 24 kHz sample at 1.5 i is the 16 kHz sample i (a third of them fall
    // on one), for every i the two have.
    auto sample = [](const std::string& b, std::size_t at, std::size_t i) {
      return static_cast<std::int16_t>(static_cast<unsigned char>(b[at + 2 * i]) |
                                       (static_cast<unsigned char>(b[at + 2 * i + 1]) << 8));
    };
    std::size_t same = 0, checked = 0;
    for (std::size_t i = 0; i + 2 < voice_samples; i += 2, ++checked)
      same += sample(pcm.body, 0, i * 3 / 2) == sample(wav.body, 44, i) ? 1 : 0;
    BOOST_TEST(same == checked);
  }
  BOOST_TEST(with("flac").body.substr(0, 4) == "fLaC");
  BOOST_TEST(with("opus").body.substr(0, 4) == "OggS");
  auto mp3 = speak(base);  // OpenAI's default format
  BOOST_TEST(mp3.status == 200);
  BOOST_TEST(mp3.header("content-type") == "audio/mpeg");
  // MPEG audio: an ID3 tag, or a frame's sync word (11 set bits) at once.
  BOOST_REQUIRE(mp3.body.size() > 1000u);
  const auto b0 = static_cast<unsigned char>(mp3.body[0]);
  const auto b1 = static_cast<unsigned char>(mp3.body[1]);
  BOOST_TEST((mp3.body.substr(0, 3) == "ID3" || (b0 == 0xFF && (b1 & 0xE0) == 0xE0)),
             "not MPEG audio: " << mp3.body.substr(0, 16));
  // Formats the server does not make are not offered: refused by the schema, as /openapi.json
  // says (its enum lists what this build makes).
  auto aac = with("aac");
  BOOST_TEST(aac.status == 422);
  BOOST_TEST(contains(aac.body, R"(body.response_format: \"aac\" is not one of [\"mp3\",)"),
             aac.body);

  // Speed maps to the length scale.
  auto fast = base;
  fast["response_format"] = "pcm";
  fast["speed"] = 2.0;
  auto f = speak(fast);
  BOOST_TEST(f.status == 200);
  BOOST_TEST(f.body.size() < pcm.body.size() * 0.8, f.body.size() << " vs " << pcm.body.size());
  fast["speed"] = 5.0;
  auto too_fast = speak(fast);
  BOOST_TEST(too_fast.status == 422);
  BOOST_TEST(contains(too_fast.body, "speed"), too_fast.body);

  // Bad input: each a clear 4xx in the one envelope.
  auto bad = [&](json::object b, int status, const std::string& code, const std::string& says) {
    auto r = speak(b);
    BOOST_TEST(r.status == status, r.body);
    BOOST_TEST(error_code_of(r) == code, r.body);
    BOOST_TEST(contains(r.body, says), r.body);
  };
  auto b = base;
  b["input"] = "";
  bad(b, 422, "invalid_request", "body.input");
  b["input"] = "  ...  ";
  bad(b, 422, "invalid_input", "nothing to speak");
  b["input"] = std::string("bean\x01temp");
  bad(b, 422, "invalid_input", "control character");
  b["input"] = std::string(5000, 'a');
  bad(b, 413, "input_too_large", "text is 5000 characters; the limit is 4096");
  // The limit counts characters, as OpenAI's does, not bytes: 2,500 "é" (5,000 bytes) pass it
  // and reach the next check (here the control character at the end, refused without speaking).
  b["input"] = [] {
    std::string s;
    for (int i = 0; i < 2500; ++i) s += "é";
    return s + "\x01";
  }();
  bad(b, 422, "invalid_input", "control character");
  b["input"] = std::string(100000, 'a');  // beyond the route's body limit
  bad(b, 413, "payload_too_large", "bytes");
  b = base;
  b["voice"] = "no-such-voice";
  bad(b, 404, "unknown_voice", "kiln-slt-small");
  b = base;
  b.erase("voice");
  bad(b, 422, "invalid_request", "body.voice");
  // Invalid UTF-8 never reaches the engine: the JSON itself is malformed.
  auto raw = s.call("POST", "/v1/audio/speech", "a_viewer",
                    "{\"model\":\"tts-1\",\"voice\":\"alloy\",\"input\":\"caf\xC3\"}",
                    {{"Content-Type", json_ct}});
  BOOST_TEST(raw.status == 400);
  // SSML-like tags are dropped, not read out: the same audio as without them.
  auto tagged = base;
  tagged["input"] = "<speak>First crack at <emphasis>nine</emphasis> minutes twelve.</speak>";
  tagged["response_format"] = "wav";
  auto t = speak(tagged);
  BOOST_TEST(t.status == 200);
  BOOST_TEST((t.body == wav.body));

  // Voices: inventory and state; the corrupt one fails to load with the reason, the server stays
  // up.
  auto list = s.call("GET", "/v1/audio/voices", "a_viewer");
  BOOST_REQUIRE(list.status == 200);
  BOOST_TEST(body(list).at("default").as_string() == "kiln-slt-small");
  BOOST_TEST(body(list).at("voices").as_array().size() == 2u);
  BOOST_TEST(s.call("POST", "/v1/audio/voices/broken:load", "a_viewer").status == 403);
  auto load = s.call("POST", "/v1/audio/voices/broken:load", "a_operator");
  BOOST_TEST(load.status == 503, load.body);
  BOOST_TEST(contains(load.body, "does not load as a TorchScript module"), load.body);
  b = base;
  b["voice"] = "broken";
  bad(b, 503, "voice_unavailable", "model.pt");
  BOOST_TEST(s.call("GET", "/health").status == 200);
  auto unload = s.call("POST", "/v1/audio/voices/kiln-slt-small:unload", "a_operator");
  BOOST_TEST(unload.status == 200, unload.body);
  BOOST_TEST(contains(unload.body, "\"available\""), unload.body);
  BOOST_TEST((with("wav").body == wav.body));  // loads again on use, same audio
  BOOST_TEST(s.call("POST", "/v1/audio/voices/nobody:load", "a_operator").status == 404);
  BOOST_TEST(speak(base, "").status == 401);

  // Streaming (stream_format "audio"): chunked, one chunk per sentence, the same samples.
  auto three = base;
  three["input"] = "Charge at two hundred degrees. Turning point at one minute. Drop!";
  three["response_format"] = "wav";
  auto whole = speak(three);
  three["stream_format"] = "audio";
  auto streamed = speak(three);
  BOOST_TEST(streamed.status == 200, streamed.body);
  BOOST_TEST(streamed.header("transfer-encoding") == "chunked");
  BOOST_TEST(streamed.header("x-kiln-voice") == "kiln-slt-small");
  BOOST_TEST(streamed.body.substr(0, 4) == "RIFF");
  BOOST_TEST((streamed.body.substr(44) == whole.body.substr(44)));
  auto nobody = three;
  nobody["voice"] = "nobody";
  BOOST_TEST(speak(nobody).status == 404);  // errors still come before the first byte
  // Streamed pcm is OpenAI's 24 kHz too, sentence by sentence.
  three["response_format"] = "pcm";
  auto streamed_pcm = speak(three);
  BOOST_TEST(streamed_pcm.status == 200, streamed_pcm.body);
  BOOST_TEST(contains(streamed_pcm.header("content-type"), "audio/pcm;rate=24000;"),
             streamed_pcm.header("content-type"));
  const double whole_samples = (whole.body.size() - 44) / 2.0;
  BOOST_TEST(std::abs(streamed_pcm.body.size() / 2.0 - whole_samples * 1.5) <= 3.0,
             streamed_pcm.body.size() << " bytes for " << whole_samples << " samples at 16 kHz");
  three["response_format"] = "mp3";
  BOOST_TEST(speak(three).status == 422);

  // The tool path and the CLI client say the same.
  auto tool = s.call("POST", "/v1/tools/tts.voices:invoke", "a_operator", R"({"input": {}})",
                     {{"Content-Type", json_ct}});
  BOOST_TEST(tool.status == 200, tool.body);
  auto said = s.kiln({"--server", s.url(), "--api-key", s.keys.at("a_viewer"), "say",
                      "Drop at eleven minutes.", "-o", "drop.wav"});
  BOOST_TEST(said.exit_code == 0, said.err);
  BOOST_TEST(fs::file_size(s.dir.path() / "drop.wav") > 16000u);
  auto said_json = s.kiln({"--server", s.url(), "--api-key", s.keys.at("a_viewer"), "say",
                           "Drop at eleven minutes.", "-o", "drop2.wav", "--json"});
  BOOST_TEST(said_json.exit_code == 0, said_json.err);
  BOOST_TEST(json::parse(said_json.out).at("bytes").as_int64() ==
                 static_cast<std::int64_t>(fs::file_size(s.dir.path() / "drop2.wav")),
             said_json.out);
  auto nope = s.kiln({"--server", s.url(), "--api-key", s.keys.at("a_viewer"), "say", "Hi.",
                      "--voice", "nobody", "-o", "x.wav"});
  BOOST_TEST(nope.exit_code != 0);
  BOOST_TEST(contains(nope.err, "unknown_voice"), nope.err);
}

// A tts_engine node that throws (a plugin's defect: errors are to be returned) gets a 500 that
// says so — for a streamed answer too, whose engine runs on a thread of its own: an exception
// there once ended the whole server.
BOOST_AUTO_TEST_CASE(an_engine_that_throws_does_not_end_the_server) {
  Server s({"plugins.search_paths=[" + std::string(KILN_PLUGIN_DIR) + "," + KILN_TEST_PLUGIN_DIR +
                "/test_tts]",
            "nodes.tts_engine=throwing", "gates.enforce=warn"});
  auto speak = [&](const std::string& text, bool stream) {
    json::object b{
        {"model", "tts-1"}, {"input", text}, {"voice", "alloy"}, {"response_format", "wav"}};
    if (stream) b["stream_format"] = "audio";
    return s.call("POST", "/v1/audio/speech", "a_viewer", json::serialize(b),
                  {{"Content-Type", "application/json"}});
  };
  BOOST_TEST(speak("Fine.", true).status == 200);
  for (bool stream : {false, true}) {
    auto r = speak("Say boom now.", stream);
    BOOST_TEST(r.status == 500, r.body);
    BOOST_TEST(contains(r.body, "the tts_engine node threw"), r.body);
    BOOST_TEST(contains(r.body, "test_tts: cannot say boom"), r.body);
  }
  // After the first sentence: the stream is cut short — no final chunk, so a client sees an
  // incomplete body — and the server goes on.
  {
    const std::string b = R"({"model": "tts-1", "input": "Fine. Then boom.", "voice": "alloy", )"
                          R"("response_format": "wav", "stream_format": "audio"})";
    const std::string req =
        "POST /v1/audio/speech HTTP/1.1\r\nHost: kiln\r\nAuthorization: Bearer " +
        s.keys.at("a_viewer") +
        "\r\nContent-Type: application/json\r\nContent-Length: " + std::to_string(b.size()) +
        "\r\n\r\n" + b;
    const int fd = raw_connect(s.port);
    BOOST_REQUIRE(::send(fd, req.data(), req.size(), 0) == static_cast<ssize_t>(req.size()));
    timeval tv{10, 0};
    ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    std::string got;
    char buf[4096];
    for (ssize_t n; (n = ::recv(fd, buf, sizeof buf, 0)) > 0;) got.append(buf, n);
    ::close(fd);
    BOOST_TEST(got.starts_with("HTTP/1.1 200"), got.substr(0, 100));
    BOOST_TEST(contains(common::to_lower(got.substr(0, got.find("\r\n\r\n"))),
                        "transfer-encoding: chunked"));
    BOOST_TEST(got.size() > 6400u);  // the first sentence's 0.2 s at 16 kHz
    BOOST_TEST(!got.ends_with("\r\n0\r\n\r\n"));
  }
  BOOST_TEST(s.call("GET", "/health").status == 200);
  BOOST_TEST(speak("Fine again.", false).status == 200);
  BOOST_TEST(!contains(s.child->stderr_so_far(), "terminate called"));
  // An HTTP/1.0 client (no chunked bodies) gets a streamed request's audio whole, with its
  // Content-Length, on a connection it may keep.
  {
    const std::string b = R"({"model": "tts-1", "input": "Fine. Fine again.", "voice": "alloy", )"
                          R"("response_format": "wav", "stream_format": "audio"})";
    const int fd = raw_connect(s.port);
    send_all(fd,
             "POST /v1/audio/speech HTTP/1.0\r\nConnection: keep-alive\r\nAuthorization: "
             "Bearer " +
                 s.keys.at("a_viewer") + "\r\nContent-Type: application/json\r\nContent-Length: " +
                 std::to_string(b.size()) + "\r\n\r\n" + b);
    auto spoken = read_responses(fd, 1);
    BOOST_TEST(spoken[0].first == 200);
    BOOST_TEST(spoken[0].second.substr(0, 4) == "RIFF");
    BOOST_TEST(spoken[0].second.size() == 44u + 2 * 6400u);  // two sentences of 0.2 s at 16 kHz
    send_all(fd, "GET /health HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
    BOOST_TEST(read_responses(fd, 1)[0].first == 200);
    ::close(fd);
  }
}

// An engine that never returns: a streamed request is answered 504 after tool_strategy.timeout_ms,
// as the tool path is (it waited for ever, holding a server thread, and SIGTERM waited with it);
// each hung stream keeps its slot, so the fifth is refused at once; the server stops on SIGTERM.
BOOST_AUTO_TEST_CASE(a_speech_engine_that_hangs_is_timed_out) {
  Server s({"plugins.search_paths=[" + std::string(KILN_PLUGIN_DIR) + "," + KILN_TEST_PLUGIN_DIR +
                "/test_tts]",
            "nodes.tts_engine=hanging", "gates.enforce=warn", "tool_strategy.timeout_ms=400"});
  const std::string b = R"({"model": "tts-1", "input": "Hello.", "voice": "alloy", )"
                        R"("response_format": "wav", "stream_format": "audio"})";
  for (int i = 0; i < 4; ++i) {
    const auto started = std::chrono::steady_clock::now();
    auto r =
        s.call("POST", "/v1/audio/speech", "a_viewer", b, {{"Content-Type", "application/json"}});
    const auto took = std::chrono::steady_clock::now() - started;
    BOOST_TEST(r.status == 504, r.body);
    BOOST_TEST(error_code_of(r) == "timeout");
    BOOST_TEST(contains(r.body, "spoke nothing within 400 ms (tool_strategy.timeout_ms)"), r.body);
    BOOST_TEST((took >= 400ms && took < 10s));
  }
  auto fifth =
      s.call("POST", "/v1/audio/speech", "a_viewer", b, {{"Content-Type", "application/json"}});
  BOOST_TEST(fifth.status == 503, fifth.body);
  BOOST_TEST(contains(fifth.body, "too many speech streams at once"), fifth.body);
  BOOST_TEST(s.call("GET", "/health").status == 200);
}
