// The route table without a socket: matching, dispatch rules, the error envelope, readiness and
// the OpenAPI document generated from the same table.
#define BOOST_TEST_MODULE http_router
#include <boost/test/unit_test.hpp>

#include <cmath>
#include <future>
#include <memory>
#include <thread>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include "audio/encode.hpp"
#include "common/json_text.hpp"
#include "http/api.hpp"
#include "http/client.hpp"
#include "http/metrics.hpp"
#include "http/router.hpp"
#include "http/server.hpp"
#include "runtime/kernel.hpp"
#include "storage/sqlite.hpp"
#include "support/process.hpp"

namespace json = boost::json;
using namespace kiln;
using namespace kiln::http;

namespace {

Route route(std::string method, std::string pattern, std::optional<missions::Role> role,
            json::value request_schema = nullptr) {
  Route r;
  r.method = std::move(method);
  r.pattern = std::move(pattern);
  r.operation = "op";
  r.summary = "the test route";
  r.tag = "t";
  r.role = role;
  r.request_schema = std::move(request_schema);
  r.handler = [](Request& req) {
    json::object params;
    for (const auto& [k, v] : req.params) params[k] = v;
    return Response::json(200, json::object{{"params", params}, {"tenant", req.tenant}});
  };
  return r;
}

Authenticator keys() {
  return [](std::string_view bearer) -> std::optional<Identity> {
    if (bearer == "op") return Identity{"acme", missions::Actor{"op", missions::Role::kOperator}};
    return std::nullopt;
  };
}

json::value body(const Response& r) {
  return json::parse(r.body);
}

}  // namespace

// The request body's one-pass parse builds what boost::json::parse builds, refuses what it
// refuses, and names a key given twice.
BOOST_AUTO_TEST_CASE(bodies_parse_in_one_pass_naming_a_duplicate_key) {
  const std::string long_text(100000, 'x');
  std::string escaped;  // unescaped in parts through the parser's buffer
  for (int i = 0; i < 20000; ++i) escaped += "a\\n\\u00e9";
  for (const std::string& text : std::vector<std::string>{
           std::string(R"({"a": 1, "b": [true, false, null, -2, 18446744073709551615, 1.5e3],
                        "c": {"d": "\u00e9\n\"q\"", "e": {}, "f": []}, "g": ""})"),
           std::string("[1, {\"a\": [{}, {\"a\": 2}]}, \"") + long_text + "\"]",
           std::string("  {\"") + long_text + "\": \"k\\u0041\"}  ", std::string("42"),
           std::string("\"s\""), "{\"" + escaped + "\": [\"" + escaped + "\"]}"}) {
    auto parsed = common::parse_strict(text);
    BOOST_TEST(!parsed.ec, parsed.ec.message());
    BOOST_TEST(!parsed.duplicate);
    BOOST_TEST(parsed.value == json::parse(text), text.substr(0, 80));
  }
  for (const std::string& text :
       std::vector<std::string>{"", "{", "{\"a\": 1,}", "[1] [2]", "{\"a\": 1} x", "nul",
                                std::string(40, '[') + std::string(40, ']')}) {
    json::error_code ec;
    json::parse(text, ec);
    BOOST_TEST(ec.failed(), text);
    BOOST_TEST(common::parse_strict(text).ec.failed(), text);
  }
  auto twice = common::parse_strict(R"({"m": [{"x": 1}, {"x": 1, "y": {"x": 2}, "x": 3}]})");
  BOOST_TEST(!twice.ec);
  BOOST_TEST(twice.duplicate.value_or("none") == "m[1].x");
  // Not JSON is said first, whatever came before the error.
  BOOST_TEST(common::parse_strict(R"({"a": 1, "a": 2)").ec.failed());
  BOOST_TEST(!common::parse_strict(R"({"a": {"b": 1}, "b": {"b": 2}})").duplicate.has_value());
}

BOOST_AUTO_TEST_CASE(patterns_match_segments_params_and_verbs) {
  Router r;
  r.add(route("GET", "/v1/missions/{id}", missions::Role::kViewer));
  r.add(route("POST", "/v1/missions/{id}:approve", missions::Role::kApprover));
  r.add(route("POST", "/v1/tools/{name}:invoke", missions::Role::kOperator));
  auto m = r.match("POST", "/v1/tools/kiln.echo:invoke");
  BOOST_REQUIRE(m.route);
  BOOST_TEST(m.params.at("name") == "kiln.echo");
  auto get = r.match("GET", "/v1/missions/m%2D1");
  BOOST_REQUIRE(get.route);
  BOOST_TEST(get.params.at("id") == "m-1");
  // A path keeps its '+' (form encoding is a query's); an encoded '/' stays in its segment; a
  // literal segment matches however it was encoded.
  BOOST_TEST(r.match("GET", "/v1/missions/a+b").params.at("id") == "a+b");
  BOOST_TEST(r.match("GET", "/v1/missions/a%2Fb").params.at("id") == "a/b");
  BOOST_TEST(r.match("GET", "/v1/missions/m%2541").params.at("id") == "m%41");
  BOOST_TEST(r.match("GET", "/v1/%6Dissions/m-1").params.at("id") == "m-1");
  // The verb segment is not an id: GET on it is a wrong method, not a lookup of "m-1:approve".
  auto wrong = r.match("GET", "/v1/missions/m-1:approve");
  BOOST_TEST(!wrong.route);
  BOOST_TEST(wrong.allowed == std::vector<std::string>{"POST"});
  BOOST_TEST(!r.match("GET", "/v1/missions").route);
  BOOST_TEST(r.match("GET", "/v1/missions").allowed.empty());
  BOOST_TEST(parse_query("a=1&b=x%20y&c").at("b") == "x y");
}

BOOST_AUTO_TEST_CASE(dispatch_checks_key_role_content_type_json_and_schema) {
  Router r;
  r.add(route("POST", "/v1/things", missions::Role::kOperator,
              json::parse(R"({"type": "object", "required": ["n"],
                              "properties": {"n": {"type": "integer"}}})")));
  r.add(route("POST", "/v1/admin", missions::Role::kAdmin));
  const Route& things = r.routes()[0];
  auto call = [&](const Route& rt, std::string body,
                  std::vector<std::pair<std::string, std::string>> h) {
    Request req;
    req.body = std::move(body);
    req.headers = std::move(h);
    req.request_id = "rid";
    return r.dispatch(rt, req, keys());
  };
  const std::pair<std::string, std::string> json_ct{"content-type",
                                                    "application/json; charset=utf-8"};
  auto no_key = call(things, "{}", {json_ct});
  BOOST_TEST(no_key.status == 401);
  BOOST_TEST(body(no_key).at("error").at("code").as_string() == "unauthenticated");
  // Every 401 names the scheme it wants; a refused key says why in it.
  auto challenge = [](const Response& r) {
    for (const auto& [k, v] : r.headers)
      if (k == "WWW-Authenticate") return v;
    return std::string();
  };
  BOOST_TEST(challenge(no_key) == "Bearer realm=\"kiln\"");
  auto basic = call(things, "{}", {json_ct, {"authorization", "Basic op"}});
  BOOST_TEST(basic.status == 401);
  BOOST_TEST(challenge(basic) == "Bearer realm=\"kiln\", error=\"invalid_request\"");
  auto unknown = call(things, "{}", {json_ct, {"authorization", "Bearer nope"}});
  BOOST_TEST(unknown.status == 401);
  BOOST_TEST(challenge(unknown) == "Bearer realm=\"kiln\", error=\"invalid_token\"");
  BOOST_TEST(call(r.routes()[1], "", {{"authorization", "Bearer op"}}).status == 403);
  auto auth = std::pair<std::string, std::string>{"authorization", "bearer op"};
  BOOST_TEST(call(things, "n=1", {auth, {"content-type", "text/plain"}}).status == 415);
  BOOST_TEST(call(things, "{", {auth, json_ct}).status == 400);
  // A key given twice is refused, not taken last-wins (another reader may take the first).
  auto twice = call(things, R"({"n": 1, "n": 2})", {auth, json_ct});
  BOOST_TEST(twice.status == 422);
  BOOST_TEST(body(twice).at("error").at("message").as_string() ==
             "the body gives the key n twice in one object; give it once");
  BOOST_TEST(call(things, R"({"n": 1, "m": {"n": 2, "x": [{"n": 3}, {"n": 4}]}})", {auth, json_ct})
                 .status == 200);  // the same key in other objects is fine
  auto nested = call(things, R"({"n": 1, "m": [0, {"y": [], "x": 1, "x": 2}]})", {auth, json_ct});
  BOOST_TEST(nested.status == 422);
  BOOST_TEST(body(nested).at("error").at("details").at("field").as_string() == "body.m[1].x",
             nested.body);
  // Two keys in the headers: which acts is a guess.
  auto two_keys = call(things, R"({"n": 1})", {auth, {"authorization", "Bearer other"}, json_ct});
  BOOST_TEST(two_keys.status == 400);
  BOOST_TEST(std::string(body(two_keys).at("error").at("message").as_string())
                 .find("more than one Authorization header") != std::string::npos);
  auto invalid = call(things, R"({"n": "x"})", {auth, json_ct});
  BOOST_TEST(invalid.status == 422);
  BOOST_TEST(body(invalid).at("error").at("details").at("field").as_string() == "body.n");
  auto ok = call(things, R"({"n": 1})", {auth, json_ct});
  BOOST_TEST(ok.status == 200);
  BOOST_TEST(body(ok).at("tenant").as_string() == "acme");
}

BOOST_AUTO_TEST_CASE(handler_failures_become_the_envelope) {
  Router r;
  Route throws = route("GET", "/boom", std::nullopt);
  throws.handler = [](Request&) -> Response { throw std::runtime_error("secret detail"); };
  r.add(throws);
  Route http_error = route("GET", "/teapot", std::nullopt);
  http_error.handler = [](Request&) -> Response {
    throw HttpError{418, "teapot", "short and stout"};
  };
  r.add(http_error);
  Route mission = route("GET", "/m", std::nullopt);
  mission.handler = [](Request&) -> Response {
    throw missions::MissionError(missions::MissionError::Code::kConflict, "key reused");
  };
  r.add(mission);
  Request req;
  req.request_id = "rid-9";
  auto boom = r.dispatch(r.routes()[0], req, nullptr);
  BOOST_TEST(boom.status == 500);
  BOOST_TEST(body(boom).at("error").at("message").as_string().find("rid-9") != std::string::npos);
  BOOST_TEST(boom.body.find("secret detail") == std::string::npos);  // not leaked to clients
  BOOST_TEST(r.dispatch(r.routes()[1], req, nullptr).status == 418);
  auto conflict = r.dispatch(r.routes()[2], req, nullptr);
  BOOST_TEST(conflict.status == 409);
  BOOST_TEST(body(conflict).at("error").at("code").as_string() == "conflict");
  BOOST_TEST(body(conflict).at("error").at("details").is_object());
  // A storage failure (a full disk) is 503, retryable, and keeps the server's path to itself.
  Route storage = route("GET", "/full", std::nullopt);
  storage.handler = [](Request&) -> Response {
    throw storage::StorageError("database /srv/kiln/kiln.db: database or disk is full", 13);
  };
  r.add(storage);
  req.method = "GET";
  auto full = r.dispatch(r.routes()[3], req, nullptr);
  BOOST_TEST(full.status == 503);
  BOOST_TEST(body(full).at("error").at("code").as_string() == "storage_unavailable");
  BOOST_TEST(full.body.find("/srv/kiln") == std::string::npos, full.body);
  BOOST_TEST(full.body.find("rid-9") != std::string::npos, full.body);
  // The message says what kind of failure, and fits the request: a read changed nothing.
  const std::string said(body(full).at("error").at("message").as_string());
  BOOST_TEST(said.find("could not be read: its disk is full") != std::string::npos, said);
  BOOST_TEST(said.find("nothing was changed") != std::string::npos, said);
  Route locked = route("POST", "/locked", std::nullopt);
  locked.handler = [](Request&) -> Response {
    throw storage::StorageError("database /srv/kiln/kiln.db: database is locked", 5 | (3 << 8));
  };
  r.add(locked);
  req.method = "POST";
  const auto busy = body(r.dispatch(r.routes()[4], req, nullptr));
  const std::string busy_said(busy.at("error").at("message").as_string());
  BOOST_TEST(busy_said.find("could not take this request: another writer holds its database") !=
                 std::string::npos,
             busy_said);
  BOOST_TEST(busy_said.find("nothing was stored") != std::string::npos, busy_said);
}

BOOST_AUTO_TEST_CASE(the_api_is_not_ready_until_told_and_documents_every_route) {
  test::TempDir dir;
  runtime::BootOptions o;
  o.environment = {};
  o.setup_logging = false;
  o.sets = {"plugins.search_paths=[]", "storage.path=" + (dir.path() / "k.db").string()};
  auto k = runtime::Kernel::boot(o);
  ApiContext ctx;
  ctx.kernel = k.get();
  ctx.public_paths = {"/health", "/ready", "/openapi.json"};  // /metrics needs a key here
  Router router = build_api(ctx);
  ctx.router = &router;
  Request req;
  auto ready = router.match("GET", "/ready");
  BOOST_TEST(router.dispatch(*ready.route, req, nullptr).status == 503);
  ctx.ready = true;
  BOOST_TEST(router.dispatch(*ready.route, req, nullptr).status == 200);
  auto metrics = router.match("GET", "/metrics");
  BOOST_TEST(metrics.route->role.has_value());
  BOOST_TEST(router.dispatch(*metrics.route, req, nullptr).status == 401);
  auto doc = router.openapi("0.1.0");
  BOOST_TEST(doc.at("openapi").as_string() == "3.1.0");
  std::size_t operations = 0;
  for (const auto& [path, item] : doc.at("paths").as_object())
    operations += item.as_object().size();
  BOOST_TEST(operations == router.routes().size());
  const auto& invoke = doc.at("paths").at("/v1/tools/{name}:invoke").at("post");
  BOOST_TEST(invoke.at("parameters").at(0).at("name").as_string() == "name");
  BOOST_TEST(invoke.at("security").as_array().size() == 1u);
  BOOST_TEST(invoke.at("responses").as_object().contains("422"));
}

BOOST_AUTO_TEST_CASE(metrics_count_by_route_and_status) {
  HttpMetrics m(std::vector<std::pair<std::string, std::string>>{{"GET", "/health"}});
  m.record(0, 200, 0.0002);
  m.record(0, 200, 0.3);
  m.record(m.unmatched(), 404, 0.001);
  std::string out;
  m.expose(out);
  BOOST_TEST(
      out.find("kiln_http_requests_total{method=\"GET\",route=\"/health\",status=\"200\"} 2") !=
          std::string::npos,
      out);
  BOOST_TEST(out.find("route=\"unmatched\",status=\"404\"} 1") != std::string::npos);
  BOOST_TEST(out.find("route=\"/health\",le=\"0.0005\"} 1") != std::string::npos);
  BOOST_TEST(out.find("route=\"/health\",le=\"0.5\"} 2") != std::string::npos);
  BOOST_TEST(
      out.find("kiln_http_request_duration_seconds_count{method=\"GET\",route=\"/health\"} 2") !=
      std::string::npos);
}

// The client's timeout holds for a server that takes the connection and never answers (a hung
// `kiln serve`, a drain's backlog): the call ends with "no answer within …" instead of waiting
// for ever — `kiln record` spools instead, `kiln --server` exits, the watchdog stops pinging.
BOOST_AUTO_TEST_CASE(a_server_that_never_answers_times_out) {
  const int listener = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  BOOST_REQUIRE(listener >= 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  BOOST_REQUIRE(::bind(listener, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0);
  BOOST_REQUIRE(::listen(listener, 4) == 0);  // connections wait in the backlog, never accepted
  socklen_t len = sizeof addr;
  BOOST_REQUIRE(::getsockname(listener, reinterpret_cast<sockaddr*>(&addr), &len) == 0);
  const std::string url = "http://127.0.0.1:" + std::to_string(ntohs(addr.sin_port));
  auto said = std::make_shared<std::promise<std::string>>();
  std::thread call([url, said] {
    try {
      Client c(url, std::chrono::milliseconds(300));
      c.request("GET", "/health");
      said->set_value("answered");
    } catch (const std::exception& e) {
      said->set_value(e.what());
    }
  });
  auto answer = said->get_future();
  const bool ended = answer.wait_for(std::chrono::seconds(10)) == std::future_status::ready;
  ::close(listener);  // a call still blocked gets its connection reset
  call.join();
  BOOST_REQUIRE_MESSAGE(ended, "the call to a silent server did not end within 10 s");
  const std::string what = answer.get();
  BOOST_TEST(
      what.find("HTTP GET " + url + "/health failed: no answer within 0.3 s") != std::string::npos,
      what);
}

// A key store that fails while a request's body is still on its way (its database locked or
// gone): the request is answered with the failure and the connection let go. The exception left
// the connection's coroutine before, unanswered, with the connection still on the idle sweep's
// list (a pointer into its freed frame) and counted open for good.
BOOST_AUTO_TEST_CASE(a_key_check_that_throws_is_answered_and_lets_the_connection_go) {
  Router r;
  r.add(route("POST", "/v1/things", missions::Role::kOperator));
  auto metrics = std::make_shared<HttpMetrics>(
      std::vector<std::pair<std::string, std::string>>{{"POST", "/v1/things"}});
  ServerOptions o;
  o.port = 0;
  o.threads = 1;
  o.access_log = false;
  Server server(
      o, r,
      [](std::string_view) -> std::optional<Identity> {
        throw storage::StorageError("database is locked", 5);
      },
      metrics);
  const std::uint16_t port = server.start();
  auto open_now = [&] {
    std::string out;
    metrics->expose(out);
    const std::string name = "\nkiln_http_connections_open ";
    const auto at = out.find(name);
    if (at == std::string::npos) return std::string("(none)");
    const auto from = at + name.size();
    return out.substr(from, out.find('\n', from) - from);
  };
  for (int round = 0; round < 3; ++round) {
    const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    BOOST_REQUIRE(fd >= 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    addr.sin_port = htons(port);
    BOOST_REQUIRE(::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0);
    timeval tv{5, 0};
    ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    // The header alone: the key is checked before the body is read.
    const std::string head =
        "POST /v1/things HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer op\r\n"
        "Content-Type: application/json\r\nContent-Length: 100\r\n\r\n";
    BOOST_REQUIRE(::send(fd, head.data(), head.size(), MSG_NOSIGNAL) ==
                  static_cast<ssize_t>(head.size()));
    std::string answer;
    char buf[4096];
    for (ssize_t n; (n = ::recv(fd, buf, sizeof buf, 0)) > 0;) answer.append(buf, n);
    ::close(fd);
    BOOST_TEST(answer.starts_with("HTTP/1.1 503"), answer);
    BOOST_TEST(answer.find("database is locked") == std::string::npos, answer);  // not leaked
  }
  std::string open = open_now();
  for (int i = 0; i < 500 && open != "0"; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
    open = open_now();
  }
  BOOST_TEST(open == "0");
  server.drain_and_stop();
}

// Opus takes 8, 12, 16, 24 or 48 kHz: a 22.05 kHz voice (espeak-ng's) is raised to 48 kHz first
// (libsndfile refuses the rate), as the Ogg stream's OpusHead says; a format that is none is
// named.
BOOST_AUTO_TEST_CASE(opus_from_a_rate_it_does_not_take_is_raised_to_48_khz) {
  std::vector<std::int16_t> second(22050);
  for (std::size_t i = 0; i < second.size(); ++i)
    second[i] = static_cast<std::int16_t>(8000 * std::sin(2 * 3.14159265 * 440 * i / 22050.0));
  std::string why;
  auto opus = audio::encode(second, 22050, "opus", &why);
  BOOST_REQUIRE_MESSAGE(opus, why);
  BOOST_TEST(opus->bytes.substr(0, 4) == "OggS");
  BOOST_TEST(opus->media_type == "audio/ogg");
  const auto head = opus->bytes.find("OpusHead");
  BOOST_REQUIRE(head != std::string::npos);
  BOOST_REQUIRE(opus->bytes.size() >= head + 16);
  std::uint32_t rate = 0;
  for (int b = 3; b >= 0; --b)
    rate = (rate << 8) | static_cast<unsigned char>(opus->bytes[head + 12 + b]);
  BOOST_TEST(rate == 48000u);
  BOOST_TEST(!audio::encode(second, 16000, "aac", &why));
  BOOST_TEST(why == "unknown audio format 'aac'");
}
