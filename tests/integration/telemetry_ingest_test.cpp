// Telemetry end to end over HTTP: device keys, signed envelopes into `POST /v1/telemetry/{device}`
// (a real Bullet R1 roast from the fixtures, re-timed to now), every refusal reason, the
// sessionizer opening and closing a session, and the roast_report mission it starts — analysis,
// QC, HTML report, spoken summary — all in the ledger.
#define BOOST_TEST_MODULE telemetry_ingest
#include <cmath>
#include <fstream>
#include <regex>
#include <set>
#include <sstream>
#include <thread>

#include <boost/json.hpp>
#include <boost/test/unit_test.hpp>

#include "analysis.hpp"
#include "common/json_text.hpp"
#include "common/sha256.hpp"
#include "http/client.hpp"
#include "runtime/json_schema.hpp"
#include "storage/sqlite.hpp"
#include "support/process.hpp"
#include "telemetry/devices.hpp"
#include "telemetry/envelope.hpp"

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

double now_s() {
  return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
}

struct Server {
  TempDir dir;
  std::map<std::string, std::string> env;
  std::unique_ptr<Child> child;
  int port = 0;
  std::map<std::string, std::string> keys;

  // `before`: kiln commands run in the deployment before it serves; "{dir}" in `sets` and
  // `before` is the deployment's directory.
  explicit Server(std::vector<std::string> sets = {},
                  std::vector<std::vector<std::string>> before = {}) {
    env = {{"KILN_SERVER__PORT", "0"},
           {"KILN_GATES__DIR", (dir.path() / "gates").string()},
           {"KILN_PLUGINS__SEARCH_PATHS", std::string("[") + KILN_PLUGIN_DIR + "]"}};
    for (auto [name, tenant, role] : std::vector<std::tuple<std::string, std::string, std::string>>{
             {"viewer", "acme", "viewer"},
             {"operator", "acme", "operator"},
             {"approver", "acme", "approver"},
             {"recorder", "acme", "recorder"},
             {"other", "globex", "operator"}}) {
      auto r = kiln({"keys", "create", "--tenant", tenant, "--role", role, "--name", name});
      BOOST_REQUIRE_MESSAGE(r.exit_code == 0, r.err);
      keys[name] = r.out.substr(0, r.out.find('\n'));
    }
    auto expand = [&](std::string v) {
      for (std::size_t at; (at = v.find("{dir}")) != std::string::npos;)
        v.replace(at, 5, dir.path().string());
      return v;
    };
    for (auto cmd : before) {
      for (auto& w : cmd) w = expand(w);
      auto r = kiln(cmd);
      BOOST_REQUIRE_MESSAGE(r.exit_code == 0, r.err);
    }
    std::vector<std::string> argv = {kKiln, "serve"};
    for (auto& s : sets) argv.insert(argv.end(), {"--set", expand(s)});
    child = std::make_unique<Child>(argv, env, dir.path());
    BOOST_REQUIRE_MESSAGE(child->wait_for_stderr("serving http://", 60s),
                          "serve did not start: " + child->stderr_so_far());
    std::smatch m;
    const std::string err = child->stderr_so_far();
    BOOST_REQUIRE(std::regex_search(err, m, std::regex("listening on http://127.0.0.1:([0-9]+)")));
    port = std::stoi(m[1]);
  }
  // Each test's server ends as a service manager ends it (SIGTERM) and must exit 0 within the
  // drain: a shutdown that hangs, crashes or fails fails the test that ran it (it was killed
  // with SIGKILL here, and a broken shutdown went unseen).
  ~Server() {
    if (!child || child->reaped()) return;
    if (auto why = stop_cleanly(*child)) BOOST_ERROR(*why);
  }
  RunResult kiln(std::vector<std::string> args) const {
    args.insert(args.begin(), kKiln);
    return run(args, env, dir.path());
  }
  http::ClientResponse call(const std::string& method, const std::string& target,
                            const std::string& key, const std::string& body = "",
                            const std::string& content_type = "application/json") const {
    http::Client c("http://127.0.0.1:" + std::to_string(port));
    std::vector<std::pair<std::string, std::string>> headers;
    if (!key.empty()) headers.emplace_back("Authorization", "Bearer " + keys.at(key));
    if (!body.empty()) headers.emplace_back("Content-Type", content_type);
    return c.request(method, target, body, headers);
  }
  http::ClientResponse send(const std::string& device, const std::string& envelope,
                            const std::string& key = "operator") const {
    return call("POST", "/v1/telemetry/" + device, key, envelope, "application/cose");
  }
};

json::value body(const http::ClientResponse& r) {
  return json::parse(r.body);
}

std::string code_of(const http::ClientResponse& r) {
  auto v = json::parse(r.body);
  return std::string(v.at("error").at("code").as_string());
}

telemetry::KeyPair key_of(const json::value& device) {
  telemetry::DeviceCredentials c = telemetry::DeviceCredentials::from_json(
      json::object{{"tenant", device.at("tenant")},
                   {"device", device.at("device")},
                   {"kid", device.at("kid")},
                   {"secret_key", device.at("secret_key")}});
  return c.key;
}

std::string read_file(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

// A real roast (Bullet R1, with its state channel) as samples ending now.
std::vector<telemetry::Sample> fixture_roast() {
  std::ifstream in(std::string(KILN_SOURCE_DIR) +
                   "/tests/fixtures/artisan-alog/26-04-12_sidamo_no42.alog");
  std::stringstream text;
  text << in.rdbuf();
  auto log = roast::parse_alog(text.str());
  const double start = now_s() - log.time.back() - 5;
  std::vector<telemetry::Sample> out;
  for (std::size_t i = 0; i < log.time.size(); ++i) {
    telemetry::Sample s;
    s.t = start + log.time[i];
    s.bt = log.bt[i];
    s.et = log.et[i];
    s.state = log.roaster_state.empty() ? 0 : static_cast<int>(log.roaster_state[i]);
    out.push_back(s);
  }
  return out;
}

telemetry::Batch batch(const std::string& device, std::uint64_t boot, std::uint64_t seq,
                       std::vector<telemetry::Sample> samples) {
  telemetry::Batch b;
  b.device = {device, boot};
  b.seq = seq;
  b.sent_at = now_s();
  b.samples = std::move(samples);
  return b;
}

// Sends the fixture roast as a device's envelopes of 10 readings.
void send_roast(const Server& s, const std::string& device, const telemetry::KeyPair& key) {
  auto samples = fixture_roast();
  std::uint64_t seq = 0;
  for (std::size_t i = 0; i < samples.size(); i += 10) {
    std::vector<telemetry::Sample> part(
        samples.begin() + static_cast<std::ptrdiff_t>(i),
        samples.begin() + static_cast<std::ptrdiff_t>(std::min(i + 10, samples.size())));
    auto r = s.send(device,
                    telemetry::sign_envelope(batch(device, 1, ++seq, part), key, "acme", device));
    BOOST_REQUIRE_MESSAGE(r.status == 200, r.body);
  }
}

// The device's newest session once the sessionizer has closed it and started its mission.
json::value reported_session(const Server& s, const std::string& device) {
  for (int i = 0; i < 100; ++i) {
    auto list = body(s.call("GET", "/v1/sessions?device=" + device, "viewer"));
    if (!list.as_array().empty() && list.as_array()[0].at("state").as_string() == "closed" &&
        list.as_array()[0].at("mission_id").is_string())
      return list.as_array()[0];
    std::this_thread::sleep_for(100ms);
  }
  BOOST_FAIL("no closed session with a mission: sessions " +
             s.call("GET", "/v1/sessions", "viewer").body + ", missions " +
             s.call("GET", "/v1/missions", "viewer").body + "; server log:\n" +
             s.child->stderr_so_far());
  return nullptr;
}

// The mission once it is in one of `states`.
json::value mission_in(const Server& s, const std::string& id,
                       std::initializer_list<const char*> states) {
  json::value m;
  for (int i = 0; i < 300; ++i) {
    m = body(s.call("GET", "/v1/missions/" + id, "viewer"));
    for (const char* st : states)
      if (m.at("state").as_string() == st) return m;
    std::this_thread::sleep_for(100ms);
  }
  return m;
}

// A device registered through the API (its key pair made by the server), and one reading of now.
telemetry::KeyPair added_device(const Server& s, const std::string& device) {
  auto added = s.call("POST", "/v1/devices", "operator", R"({"device": ")" + device + R"("})");
  BOOST_REQUIRE_MESSAGE(added.status == 201, added.body);
  return key_of(body(added));
}
std::vector<telemetry::Sample> one_reading() {
  std::vector<telemetry::Sample> one(1);
  one[0].t = now_s() - 1;
  one[0].bt = 150;
  one[0].et = 200;
  return one;
}

}  // namespace

BOOST_AUTO_TEST_CASE(envelopes_are_stored_once_and_every_refusal_has_its_reason) {
  Server s;
  // Device keys: the server generates the pair and shows the secret once.
  auto added = s.call("POST", "/v1/devices", "operator", R"({"device": "r1-one"})");
  BOOST_REQUIRE_MESSAGE(added.status == 201, added.body);
  auto dev = body(added);
  BOOST_TEST(dev.at("status").as_string() == "active");
  BOOST_TEST(dev.at("kid").as_string().size() == 16u);
  auto key = key_of(dev);
  BOOST_TEST(s.call("POST", "/v1/devices", "viewer", R"({"device": "r1-x"})").status == 403);
  auto again = s.call("POST", "/v1/devices", "operator", R"({"device": "r1-one"})");
  BOOST_TEST(again.status == 409, again.body);
  // A public key that is not one is refused — never replaced by a pair made here, whose secret
  // would then travel over the wire.
  for (const std::string& pk : {std::string("ggg"), std::string("abc"), std::string(),
                                std::string(63, 'a'), std::string(64, '0')}) {
    auto bad = s.call("POST", "/v1/devices", "operator",
                      R"({"device": "r1-pk", "public_key": ")" + pk + "\"}");
    BOOST_TEST(bad.status == 422, pk << ": " << bad.body);
    BOOST_TEST(contains(bad.body, "body.public_key"), bad.body);
    BOOST_TEST(!contains(bad.body, "secret_key"), bad.body);
  }

  std::vector<telemetry::Sample> ten;
  for (int i = 0; i < 10; ++i) {
    telemetry::Sample x;
    x.t = now_s() - 10 + i;
    x.bt = 150 + i;
    x.et = 200;
    ten.push_back(x);
  }
  const std::string env1 =
      telemetry::sign_envelope(batch("r1-one", 7, 1, ten), key, "acme", "r1-one");
  auto ok = s.send("r1-one", env1);
  BOOST_REQUIRE_MESSAGE(ok.status == 200, ok.body);
  BOOST_TEST(body(ok).at("accepted").as_bool());
  BOOST_TEST(!body(ok).at("duplicate").as_bool());
  BOOST_TEST(body(ok).at("samples").as_int64() == 10);
  // A roaster's recorder key sends telemetry and can do nothing else; a viewer key, which only
  // reads, cannot send.
  auto by_recorder = s.send("r1-one", env1, "recorder");
  BOOST_TEST(by_recorder.status == 200, by_recorder.body);
  auto by_viewer = s.send("r1-one", env1, "viewer");
  BOOST_TEST(by_viewer.status == 403, by_viewer.body);
  BOOST_TEST(contains(by_viewer.body,
                      "needs a recorder key or the operator role; this key has "
                      "viewer"),
             by_viewer.body);
  for (const auto& [method, path] :
       std::vector<std::pair<std::string, std::string>>{{"GET", "/v1/devices"},
                                                        {"GET", "/v1/sessions"},
                                                        {"POST", "/v1/devices/r1-one:revoke"},
                                                        {"POST", "/v1/missions"}}) {
    auto r = s.call(method, path, "recorder", method == "GET" ? "" : "{}");
    BOOST_TEST(r.status == 403, method << " " << path << ": " << r.body);
    BOOST_TEST(contains(r.body, "this key has recorder"), r.body);
  }
  // The same envelope again: accepted as a duplicate, nothing stored twice.
  auto dup = s.send("r1-one", env1);
  BOOST_TEST(dup.status == 200);
  BOOST_TEST(body(dup).at("duplicate").as_bool());

  auto refused = [&](const std::string& device, const std::string& envelope, int status,
                     const std::string& reason) {
    auto r = s.send(device, envelope);
    BOOST_TEST(r.status == status, reason << ": " << r.body);
    BOOST_TEST(code_of(r) == reason, r.body);
    return r.body;
  };
  // Replayed: the same (boot, seq) with other content.
  auto other = ten;
  other[0].bt += 1;
  refused("r1-one", telemetry::sign_envelope(batch("r1-one", 7, 1, other), key, "acme", "r1-one"),
          409, "replayed_sequence");
  // Garbled bytes and a flipped signature byte.
  refused("r1-one", "not cbor at all", 400, "malformed");
  // Refused before its batch was read: boot and seq are unknown (null), not 0.
  const auto garbled = body(s.send("r1-one", "not cbor at all"));
  BOOST_TEST(garbled.at("error").at("details").at("boot").is_null());
  BOOST_TEST(garbled.at("error").at("details").at("seq").is_null());
  // The same keys as any answer: the key id unknown too (null), not left out.
  BOOST_TEST(garbled.at("error").at("details").at("kid").is_null(), json::serialize(garbled));
  BOOST_TEST(garbled.at("error").at("details").at("samples").is_null());
  std::string flipped = telemetry::sign_envelope(batch("r1-one", 7, 2, ten), key, "acme", "r1-one");
  flipped[flipped.size() - 3] ^= 0x01;
  refused("r1-one", flipped, 401, "bad_signature");
  // An integrator's signature fails for one of a few reasons, all named.
  BOOST_TEST(contains(s.send("r1-one", flipped).body,
                      "with external_aad the CBOR array [tenant, stream] of two text strings"));
  // Bound to its tenant and stream: the same envelope sent for another device (a wrong URL) is
  // refused as that, naming the key's device, not as a bad signature.
  auto misrouted =
      s.send("r1-two", telemetry::sign_envelope(batch("r1-one", 7, 3, ten), key, "acme", "r1-one"));
  BOOST_TEST(misrouted.status == 403, misrouted.body);
  BOOST_TEST(code_of(misrouted) == "wrong_device", misrouted.body);
  BOOST_TEST(contains(misrouted.body, "POST it to /v1/telemetry/r1-one"), misrouted.body);
  // An unknown key.
  auto stranger = telemetry::generate_key("0123456789abcdef");
  refused("r1-one",
          telemetry::sign_envelope(batch("r1-one", 7, 4, ten), stranger, "acme", "r1-one"), 401,
          "unknown_key");
  // A device's key signing for another device.
  refused("r1-two", telemetry::sign_envelope(batch("r1-two", 7, 5, ten), key, "acme", "r1-two"),
          403, "wrong_device");
  // Sent to the key's own stream, but the signed batch names another device (an encoder with
  // the wrong device id): refused naming both.
  const auto renamed = refused(
      "r1-one", telemetry::sign_envelope(batch("r1-two", 7, 11, ten), key, "acme", "r1-one"), 403,
      "wrong_device");
  BOOST_TEST(contains(renamed, "the batch is from 'r1-two' sent to stream 'r1-one'"), renamed);
  // Readings whose times do not increase (a clock read twice in one tick).
  auto twice = ten;
  twice[4].t = twice[3].t;
  const auto repeated = refused(
      "r1-one", telemetry::sign_envelope(batch("r1-one", 7, 12, twice), key, "acme", "r1-one"), 422,
      "bad_samples");
  BOOST_TEST(contains(repeated, "sample 4 is not finite or its time does not increase"), repeated);
  // The device's clock far ahead (a clock behind is a batch that waited in a spool: accepted up
  // to telemetry.max_age_s).
  auto skewed = batch("r1-one", 7, 6, ten);
  skewed.sent_at += 3600;
  refused("r1-one", telemetry::sign_envelope(skewed, key, "acme", "r1-one"), 422, "clock_skew");
  skewed.sent_at -= 8 * 86400 + 3600;  // signed more than telemetry.max_age_s ago
  refused("r1-one", telemetry::sign_envelope(skewed, key, "acme", "r1-one"), 422, "clock_skew");
  // Too many samples.
  std::vector<telemetry::Sample> many;
  for (int i = 0; i < 700; ++i) {
    telemetry::Sample x;
    x.t = now_s() - 700 + i;
    x.bt = 100;
    many.push_back(x);
  }
  refused("r1-one", telemetry::sign_envelope(batch("r1-one", 7, 7, many), key, "acme", "r1-one"),
          413, "oversized_batch");
  // Too many bytes: not read past the limit, and refused as oversized_batch all the same
  // (counted, in the ledger) once the key is known to be good; a bad key first gets its 401.
  refused("r1-one", std::string(300 * 1024, 'x'), 413, "oversized_batch");
  auto anonymous = s.send("r1-one", std::string(300 * 1024, 'x'), "");
  BOOST_TEST(anonymous.status == 401, anonymous.body);
  // Sequence numbers far behind the highest, and an older boot.
  BOOST_TEST(s.send("r1-one",
                    telemetry::sign_envelope(batch("r1-one", 7, 100, ten), key, "acme", "r1-one"))
                 .status == 200);
  refused("r1-one", telemetry::sign_envelope(batch("r1-one", 7, 20, ten), key, "acme", "r1-one"),
          409, "stale_sequence");
  BOOST_TEST(s.send("r1-one", telemetry::sign_envelope(batch("r1-one", 7, 60, ten), key, "acme",
                                                       "r1-one"))
                 .status == 200);  // late, but inside the 64-wide window
  refused("r1-one", telemetry::sign_envelope(batch("r1-one", 6, 500, ten), key, "acme", "r1-one"),
          409, "stale_boot");
  // A boot in microseconds, once stored, would have made every later boot in milliseconds
  // stale: refused, saying what a boot is.
  const auto micros = static_cast<std::uint64_t>(now_s() * 1e6);
  auto in_micros = s.send(
      "r1-one", telemetry::sign_envelope(batch("r1-one", micros, 1, ten), key, "acme", "r1-one"));
  BOOST_TEST(in_micros.status == 400, in_micros.body);
  BOOST_TEST(contains(in_micros.body, "a boot is a counter or milliseconds since the epoch"),
             in_micros.body);
  auto beyond = s.send("r1-one", telemetry::sign_envelope(batch("r1-one", 7, INT64_MAX, ten), key,
                                                          "acme", "r1-one"));
  BOOST_TEST(beyond.status == 400, beyond.body);
  BOOST_TEST(contains(beyond.body, "at most 9223372036854775743 (2^63 - 1 less"), beyond.body);
  // Wrong media type.
  auto wrong_type = s.call("POST", "/v1/telemetry/r1-one", "operator", env1, "application/json");
  BOOST_TEST(wrong_type.status == 415);
  // Another tenant cannot use this device's envelopes: its keys are not that tenant's (and the
  // AAD binds the tenant).
  auto cross = s.send("r1-one", env1, "other");
  BOOST_TEST(cross.status == 401, cross.body);
  BOOST_TEST(code_of(cross) == "unknown_key");

  // Names are checked by the schema the OpenAPI document shows (with the field), and rotate
  // takes no device in its body (the path names it; one in the body was ignored).
  auto bad_device = s.call("POST", "/v1/devices", "operator", R"({"device": "sp ace"})");
  BOOST_TEST(bad_device.status == 422);
  BOOST_TEST(contains(bad_device.body, "\"field\":\"body.device\""), bad_device.body);
  auto no_device = s.call("POST", "/v1/devices", "operator", "{}");
  BOOST_TEST(no_device.status == 422);
  BOOST_TEST(contains(no_device.body, "body.device"), no_device.body);
  auto rotate_other =
      s.call("POST", "/v1/devices/r1-one:rotate", "operator", R"({"device": "other"})");
  BOOST_TEST(rotate_other.status == 422, rotate_other.body);
  // Refusals say what to do over HTTP too, not only with the CLI's flags.
  auto rotate_unknown = s.call("POST", "/v1/devices/nope:rotate", "operator", "{}");
  BOOST_TEST(rotate_unknown.status == 404);
  BOOST_TEST(contains(rotate_unknown.body, "POST /v1/devices"), rotate_unknown.body);
  auto revoke_unknown = s.call("POST", "/v1/devices/nope:revoke", "operator", "{}");
  BOOST_TEST(revoke_unknown.status == 404);
  BOOST_TEST(!contains(revoke_unknown.body, "--tenant"), revoke_unknown.body);
  BOOST_TEST(contains(revoke_unknown.body, "GET /v1/devices"), revoke_unknown.body);

  // Rotation: the old key stays valid for the grace, a revoked key is refused.
  auto rotated = s.call("POST", "/v1/devices/r1-one:rotate", "operator", R"({"grace_s": 600})");
  BOOST_REQUIRE_MESSAGE(rotated.status == 200, rotated.body);
  auto new_key = key_of(body(rotated));
  BOOST_TEST(
      s.send("r1-one", telemetry::sign_envelope(batch("r1-one", 8, 1, ten), key, "acme", "r1-one"))
          .status == 200);
  BOOST_TEST(s.send("r1-one",
                    telemetry::sign_envelope(batch("r1-one", 8, 2, ten), new_key, "acme", "r1-one"))
                 .status == 200);
  // A key id typed in capitals names the same key.
  std::string upper_kid = key.kid;
  for (auto& ch : upper_kid) ch = static_cast<char>(std::toupper(static_cast<unsigned char>(ch)));
  BOOST_REQUIRE(upper_kid != key.kid);
  auto revoked = s.call("POST", "/v1/devices/" + upper_kid + ":revoke", "operator", "{}");
  BOOST_REQUIRE_MESSAGE(revoked.status == 200, revoked.body);
  BOOST_TEST(contains(revoked.body, key.kid), revoked.body);
  std::this_thread::sleep_for(1100ms);  // the key cache holds a lookup for a second
  refused("r1-one", telemetry::sign_envelope(batch("r1-one", 8, 3, ten), key, "acme", "r1-one"),
          401, "revoked_key");
  BOOST_TEST(s.send("r1-one",
                    telemetry::sign_envelope(batch("r1-one", 8, 4, ten), new_key, "acme", "r1-one"))
                 .status == 200);

  // The key's 8 bytes as its key id (a COSE habit) name the same key.
  auto raw_kid = new_key;
  raw_kid.kid.clear();
  for (std::size_t i = 0; i < new_key.kid.size(); i += 2)
    raw_kid.kid.push_back(static_cast<char>(std::stoi(new_key.kid.substr(i, 2), nullptr, 16)));
  auto raw_ok = s.send(
      "r1-one", telemetry::sign_envelope(batch("r1-one", 8, 5, ten), raw_kid, "acme", "r1-one"));
  BOOST_TEST(raw_ok.status == 200, raw_ok.body);
  // A key id that names nothing of ours, in bytes that are not text: refused and shown escaped;
  // the answer and the ledger stay valid JSON (they once carried the raw bytes).
  auto junk = stranger;
  junk.kid = std::string("\xff\xfe\x01junk", 7);
  auto odd = s.send("r1-one",
                    telemetry::sign_envelope(batch("r1-one", 8, 6, ten), junk, "acme", "r1-one"));
  BOOST_TEST(odd.status == 401, odd.body);
  BOOST_TEST(code_of(odd) == "unknown_key", odd.body);
  BOOST_TEST(contains(std::string(body(odd).at("error").at("message").as_string()),
                      "'\\xff\\xfe\\x01junk' is not a kiln key id"),
             odd.body);
  // A key id longer than any name: malformed, before it could reach the ledger.
  auto huge = stranger;
  huge.kid = std::string(60000, 'k');
  refused("r1-one", telemetry::sign_envelope(batch("r1-one", 8, 7, ten), huge, "acme", "r1-one"),
          400, "malformed");
  // A reading that is NaN: a bad sample (422), not a bad payload.
  auto not_a_number = ten;
  not_a_number[3].bt = std::nan("");
  refused("r1-one",
          telemetry::sign_envelope(batch("r1-one", 8, 8, not_a_number), new_key, "acme", "r1-one"),
          422, "bad_samples");
  // Readings no roaster makes: a time decades away from the batch's, a BT of 1e300.
  auto ancient = ten;
  ancient[2].t = -1e9;
  ancient[0].t = -1e9 - 2;
  ancient[1].t = -1e9 - 1;
  refused("r1-one",
          telemetry::sign_envelope(batch("r1-one", 8, 9, ancient), new_key, "acme", "r1-one"), 422,
          "bad_samples");
  auto scorching = ten;
  scorching[5].bt = 1e300;
  auto hot = s.send("r1-one", telemetry::sign_envelope(batch("r1-one", 8, 10, scorching), new_key,
                                                       "acme", "r1-one"));
  BOOST_TEST(hot.status == 422, hot.body);
  BOOST_TEST(contains(hot.body, "sample 5 has BT 1e+300"), hot.body);
  // Every session route refuses an unknown session in the same words, saying where ids come
  // from.
  for (const std::string route : {"", "/report", "/predict", "/samples", "/alog", "/summary"}) {
    auto missing = s.call("GET", "/v1/sessions/s-nope" + route, "viewer");
    BOOST_TEST(missing.status == 404, route << ": " << missing.body);
    BOOST_TEST(contains(missing.body,
                        "no session 's-nope' in tenant acme (a session's id ends with its "
                        "tenant, after the '@'; GET /v1/sessions or `kiln sessions list` shows "
                        "them)"),
               route << ": " << missing.body);
    // And with the same details, naming the session.
    BOOST_TEST(json::serialize(json::parse(missing.body).at("error").at("details")) ==
                   R"({"session":"s-nope"})",
               route << ": " << missing.body);
  }
  // Path bytes that are not UTF-8 come back as valid JSON too.
  auto bad_path = s.call("GET", "/v1/sessions/%FF%FE", "viewer");
  BOOST_TEST(bad_path.status == 404);
  json::error_code jec;
  json::parse(bad_path.body, jec);
  BOOST_TEST(!jec, bad_path.body);

  // Counted by reason in /metrics, and every refusal in the ledger.
  auto metrics = s.call("GET", "/metrics", "").body;
  for (const char* reason :
       {"replayed_sequence", "malformed", "bad_signature", "unknown_key", "wrong_device",
        "clock_skew", "oversized_batch", "stale_sequence", "stale_boot", "revoked_key"})
    BOOST_TEST(
        contains(metrics, std::string("kiln_telemetry_rejected_total{reason=\"") + reason + "\"} "),
        reason);
  BOOST_TEST(contains(metrics, "kiln_telemetry_rejected_total{reason=\"bad_signature\"} 2"));
  BOOST_TEST(contains(metrics, "kiln_telemetry_rejected_total{reason=\"wrong_device\"} 3"));
  BOOST_TEST(contains(metrics, "kiln_telemetry_rejected_total{reason=\"unknown_key\"} 3"));
  BOOST_TEST(contains(metrics, "kiln_telemetry_rejected_total{reason=\"oversized_batch\"} 2"));
  // When each device last got a batch in, for an alert on a roaster gone quiet.
  {
    std::smatch m;
    BOOST_REQUIRE_MESSAGE(
        std::regex_search(
            metrics, m,
            std::regex("kiln_telemetry_last_batch_timestamp_seconds\\{tenant=\"acme\","
                       "device=\"r1-one\"\\} ([0-9.]+)\n")),
        metrics);
    BOOST_TEST(std::abs(std::stod(m[1]) - now_s()) < 120.0);
  }
  // The devices' refused keys are not the API keys' refusals, though both answer 401.
  BOOST_TEST(contains(metrics, "kiln_http_api_key_refusals_total{reason=\"invalid\"} 0\n"));
  BOOST_TEST(contains(metrics, "kiln_http_api_key_refusals_total{reason=\"missing\"} "));
  BOOST_TEST(!contains(metrics, "kiln_http_api_key_refusals_total{reason=\"missing\"} 0\n"));
  {
    http::Client bad("http://127.0.0.1:" + std::to_string(s.port));
    BOOST_TEST(bad.request("GET", "/v1/devices", "", {{"Authorization", "Bearer nope"}}).status ==
               401);
  }
  BOOST_TEST(contains(s.call("GET", "/metrics", "").body,
                      "kiln_http_api_key_refusals_total{reason=\"invalid\"} 1\n"));
  BOOST_TEST(contains(metrics, "kiln_telemetry_batches_total 7"));
  BOOST_TEST(contains(metrics, "kiln_telemetry_duplicates_total 2"));  // one by the recorder key
  for (std::size_t at = metrics.find("kiln_telemetry"); at != std::string::npos;
       at = metrics.find("kiln_telemetry", at + 1))
    BOOST_TEST_MESSAGE(metrics.substr(at, metrics.find('\n', at) - at));
  auto exported = s.kiln({"ledger", "export", "--stream", "telemetry"});
  BOOST_TEST(exported.exit_code == 0, exported.err);
  std::size_t batches = 0, rejects = 0;
  std::istringstream lines(exported.out);
  for (std::string line; std::getline(lines, line);) {
    auto e = json::parse(line).as_object();
    // Batches stored together share one telemetry.batches event, each with its digest.
    if (e.at("kind") == "telemetry.batches")
      for (const auto& b : e.at("payload").at("batches").as_array()) {
        BOOST_TEST(b.at("digest").as_string().size() == 64u);
        ++batches;
      }
    rejects += e.at("kind") == "telemetry.rejected";
  }
  BOOST_TEST(batches == 7u);
  BOOST_TEST(rejects >= 15u);
  BOOST_TEST(s.kiln({"ledger", "verify"}).exit_code == 0);
  // A rotation with no grace ends every older key now, one still in an earlier grace included
  // (that one stayed valid for the earlier rotation's whole hour).
  auto retiring = s.call("POST", "/v1/devices/r1-one:rotate", "operator", R"({"grace_s": 3600})");
  BOOST_REQUIRE_MESSAGE(retiring.status == 200, retiring.body);
  auto at_once = s.call("POST", "/v1/devices/r1-one:rotate", "operator", R"({"grace_s": 0})");
  BOOST_REQUIRE_MESSAGE(at_once.status == 200, at_once.body);
  std::this_thread::sleep_for(1100ms);  // the key cache holds a lookup for a second
  refused("r1-one",
          telemetry::sign_envelope(batch("r1-one", 8, 20, ten), new_key, "acme", "r1-one"), 401,
          "expired_key");
  refused("r1-one",
          telemetry::sign_envelope(batch("r1-one", 8, 21, ten), key_of(body(retiring)), "acme",
                                   "r1-one"),
          401, "expired_key");
  auto current =
      s.send("r1-one", telemetry::sign_envelope(batch("r1-one", 8, 22, ten), key_of(body(at_once)),
                                                "acme", "r1-one"));
  BOOST_TEST(current.status == 200, current.body);
  // The devices list shows the states.
  auto list = body(s.call("GET", "/v1/devices", "viewer"));
  BOOST_TEST(list.as_array().size() == 4u);
  BOOST_TEST(s.call("GET", "/v1/devices", "other").body == "[]");

  // Restarted, the server names every device that ever sent a batch, before any sends again:
  // an alert on a roaster gone quiet keeps firing across a restart.
  s.child->signal(SIGTERM);
  BOOST_TEST(s.child->wait(30s).exit_code == 0);
  s.child = std::make_unique<Child>(std::vector<std::string>{kKiln, "serve"}, s.env, s.dir.path());
  BOOST_REQUIRE_MESSAGE(s.child->wait_for_stderr("serving http://", 60s), s.child->stderr_so_far());
  std::smatch port;
  const std::string log = s.child->stderr_so_far();
  BOOST_REQUIRE(std::regex_search(log, port, std::regex("listening on http://127.0.0.1:([0-9]+)")));
  s.port = std::stoi(port[1]);
  const auto after = s.call("GET", "/metrics", "").body;
  std::smatch m;
  BOOST_REQUIRE_MESSAGE(
      std::regex_search(after, m,
                        std::regex("kiln_telemetry_last_batch_timestamp_seconds\\{tenant=\"acme\","
                                   "device=\"r1-one\"\\} ([0-9.]+)\n")),
      after);
  BOOST_TEST(std::abs(std::stod(m[1]) - now_s()) < 300.0);
  BOOST_TEST(contains(after, "kiln_telemetry_batches_total 0"));  // nothing sent since
}

// Envelopes sent at once over many connections: each answered on its own connection with its
// own batch (the route answers from the ledger's writer once durable, without a waiting
// thread), all stored once, each listed in a telemetry.batches event.
BOOST_AUTO_TEST_CASE(envelopes_sent_at_once_are_each_answered_and_stored_once) {
  Server s;
  auto added = s.call("POST", "/v1/devices", "operator", R"({"device": "r1-burst"})");
  BOOST_REQUIRE_MESSAGE(added.status == 201, added.body);
  const auto key = key_of(body(added));
  constexpr int kThreads = 16, kEach = 3;
  std::vector<std::string> envelopes;
  for (int seq = 1; seq <= kThreads * kEach; ++seq) {
    telemetry::Sample x;
    x.t = now_s() - 100 + seq;
    x.bt = 100 + seq;
    envelopes.push_back(telemetry::sign_envelope(
        batch("r1-burst", 1, static_cast<std::uint64_t>(seq), {x}), key, "acme", "r1-burst"));
  }
  std::vector<std::string> problems(kThreads);
  std::vector<std::thread> senders;
  for (int t = 0; t < kThreads; ++t)
    senders.emplace_back([&, t] {
      for (int k = 0; k < kEach; ++k) {
        const int seq = 1 + t + k * kThreads;
        auto r = s.send("r1-burst", envelopes[static_cast<std::size_t>(seq - 1)]);
        if (r.status != 200) {
          problems[t] += "seq " + std::to_string(seq) + ": " + r.body + "\n";
          continue;
        }
        auto b = json::parse(r.body);
        if (b.at("seq").as_int64() != seq || b.at("duplicate").as_bool() ||
            b.at("ledger_seq").as_int64() <= 0)
          problems[t] += "seq " + std::to_string(seq) + " answered " + r.body + "\n";
      }
    });
  for (auto& th : senders) th.join();
  for (const auto& p : problems) BOOST_TEST(p.empty(), p);
  auto metrics = s.call("GET", "/metrics", "").body;
  BOOST_TEST(contains(metrics, "kiln_telemetry_batches_total 48"), metrics);
  std::set<std::int64_t> seqs;
  std::size_t listed = 0;
  auto exported = s.kiln({"ledger", "export", "--stream", "telemetry"});
  std::istringstream lines(exported.out);
  for (std::string line; std::getline(lines, line);) {
    auto e = json::parse(line).as_object();
    if (e.at("kind") != "telemetry.batches") continue;
    for (const auto& b : e.at("payload").at("batches").as_array()) {
      seqs.insert(b.at("seq").as_int64());
      ++listed;
    }
  }
  BOOST_TEST(listed == 48u);
  BOOST_TEST(seqs.size() == 48u);
  // The same envelopes again: all duplicates, nothing new stored.
  BOOST_TEST(body(s.send("r1-burst", envelopes[0])).at("duplicate").as_bool());
  BOOST_TEST(contains(s.call("GET", "/metrics", "").body, "kiln_telemetry_batches_total 48"));
}

// ?dry_run=true: a device integrator tries an envelope against the server — answered as it would
// be, refusals with their reason and status — and nothing is stored, counted or recorded.
BOOST_AUTO_TEST_CASE(a_dry_run_answers_as_ingestion_would_and_stores_nothing) {
  Server s;
  const auto key = added_device(s, "r1-dry");
  const std::string env =
      telemetry::sign_envelope(batch("r1-dry", 1, 1, one_reading()), key, "acme", "r1-dry");
  auto dry = [&](const std::string& envelope, const std::string& query = "?dry_run=true") {
    return s.call("POST", "/v1/telemetry/r1-dry" + query, "recorder", envelope, "application/cose");
  };
  auto checked = dry(env);
  BOOST_REQUIRE_MESSAGE(checked.status == 200, checked.body);
  BOOST_TEST(body(checked).at("dry_run").as_bool());
  BOOST_TEST(body(checked).at("accepted").as_bool());
  BOOST_TEST(!body(checked).at("duplicate").as_bool());
  BOOST_TEST(!body(checked).as_object().contains("ledger_seq"));
  std::string forged = env;
  forged.back() ^= 1;
  auto refused = dry(forged, "?dry_run=1");
  BOOST_TEST(refused.status == 401);
  BOOST_TEST(code_of(refused) == "bad_signature", refused.body);
  BOOST_TEST(body(refused).at("error").at("details").at("dry_run").as_bool(), refused.body);
  BOOST_TEST(dry(std::string(70 * 1024, 'x')).status == 413);
  BOOST_TEST(dry(env, "?dry_run=yes").status == 422);
  // Nothing counted, nothing in the ledger, nothing stored: sent for real it is stored now.
  const auto metrics_after = s.call("GET", "/metrics", "").body;
  for (const char* counter : {"kiln_telemetry_rejected_total{reason=\"bad_signature\"} 0\n",
                              "kiln_telemetry_rejected_total{reason=\"oversized_batch\"} 0\n",
                              "kiln_telemetry_batches_total 0\n"})
    BOOST_TEST(contains(metrics_after, counter), counter);
  auto ledger = s.call("GET", "/v1/ledger?stream=telemetry", "operator");
  BOOST_REQUIRE_MESSAGE(ledger.status == 200, ledger.body);
  BOOST_TEST(body(ledger).at("events").as_array().empty(), ledger.body);
  auto stored = s.send("r1-dry", env, "recorder");
  BOOST_REQUIRE_MESSAGE(stored.status == 200, stored.body);
  BOOST_TEST(!body(stored).at("duplicate").as_bool());
  BOOST_TEST(!body(stored).as_object().contains("dry_run"));
  // Once stored, a dry run of the same bytes says duplicate.
  BOOST_TEST(body(dry(env)).at("duplicate").as_bool());
}

// Keys kiln does not know are skipped, not refused (a newer device may send more), and named in
// the answer: a device integrator's misspelt optional key ("heat") would otherwise be lost
// without a word.
BOOST_AUTO_TEST_CASE(unknown_payload_keys_are_named_in_the_answer) {
  Server s;
  const auto key = added_device(s, "r1-keys");
  const auto one = one_reading();
  std::string plain = telemetry::encode_batch(batch("r1-keys", 1, 1, one));
  auto ok = s.send("r1-keys", telemetry::sign_payload(plain, key, "acme", "r1-keys"));
  BOOST_REQUIRE_MESSAGE(ok.status == 200, ok.body);
  BOOST_TEST(!body(ok).as_object().contains("ignored_keys"), ok.body);
  // The same payload with one more top-level key, "firmware": "1.2" (a map of 5 becomes 6).
  std::string more = telemetry::encode_batch(batch("r1-keys", 1, 2, one));
  BOOST_REQUIRE(static_cast<unsigned char>(more[0]) == 0xA5);
  more[0] = static_cast<char>(0xA6);
  more +=
      "\x68"
      "firmware"
      "\x63"
      "1.2";
  auto named = s.send("r1-keys", telemetry::sign_payload(more, key, "acme", "r1-keys"));
  BOOST_REQUIRE_MESSAGE(named.status == 200, named.body);
  BOOST_TEST(body(named).at("accepted").as_bool());
  BOOST_TEST(json::serialize(body(named).at("ignored_keys")) == R"(["payload.firmware"])",
             named.body);
}

BOOST_AUTO_TEST_CASE(a_recorded_roast_becomes_a_session_and_a_report_mission) {
  Server s({"missions.workers=1", "storage.artifacts={dir}/kept"});
  auto added = s.call("POST", "/v1/devices", "operator", R"({"device": "r1-roast"})");
  BOOST_REQUIRE_MESSAGE(added.status == 201, added.body);
  send_roast(s, "r1-roast", key_of(body(added)));
  // The sessionizer closes the session at DROP and starts roast_report.
  const json::value session = reported_session(s, "r1-roast");
  BOOST_TEST(session.at("profile").is_null());
  BOOST_TEST(session.at("close_reason").as_string() == "drop");
  // Another tenant does not see it.
  BOOST_TEST(
      s.call("GET", "/v1/sessions/" + std::string(session.at("id").as_string()), "other").status ==
      404);
  auto samples_r = body(s.call(
      "GET", "/v1/sessions/" + std::string(session.at("id").as_string()) + "/samples", "viewer"));
  BOOST_TEST(samples_r.at("samples").as_array().size() > 400u);
  const std::string mission(session.at("mission_id").as_string());
  json::value m = mission_in(s, mission, {"DONE", "FAILED", "QUARANTINED"});
  // This roast never reaches the default FCs temperature (200 °C): QC fails and the mission is
  // held for an approver, who accepts the roast; then the report and the summary follow.
  BOOST_REQUIRE_MESSAGE(m.at("state").as_string() == "QUARANTINED", json::serialize(m));
  BOOST_TEST(m.at("steps").as_array()[2].at("error").at("code").as_string() == "qc_failed");
  {
    // The hold names every failed check, not only the first.
    const auto& err = m.at("steps").as_array()[2].at("error");
    const std::string message(err.at("message").as_string());
    int failed = 0;
    for (const auto& c : err.at("details").at("checks").as_array())
      if (c.at("result").as_string() == "fail") {
        ++failed;
        std::string reason(c.at("reason").as_string());
        reason = reason.substr(0, reason.find(" (FCs estimated"));  // said once, at the end
        BOOST_TEST(contains(message, reason), message);
      }
    BOOST_TEST(failed >= 1);
  }
  // The server's log says so, with the check that failed.
  BOOST_TEST(s.child->wait_for_stderr("mission " + mission +
                                          " (roast_report): QUARANTINED at step qc: quality check "
                                          "failed: ",
                                      5s),
             s.child->stderr_so_far());
  // The session says where its report stands: QC failed, held.
  auto held_session =
      body(s.call("GET", "/v1/sessions/" + std::string(session.at("id").as_string()), "viewer"));
  BOOST_TEST(held_session.at("report").at("mission").as_string() == mission);
  BOOST_TEST(held_session.at("report").at("state").as_string() == "QUARANTINED");
  BOOST_TEST(held_session.at("report").at("verdict").as_string() == "fail");
  BOOST_TEST(held_session.at("report").at("accepted_by").is_null());
  BOOST_TEST(s.call("POST", "/v1/missions/" + mission + ":approve", "operator", "{}").status ==
             403);
  // No spoken summary while the report waits for the approver: the answer says so.
  const std::string summary_route =
      "/v1/sessions/" + std::string(session.at("id").as_string()) + "/summary";
  auto held = s.call("GET", summary_route, "viewer");
  BOOST_TEST(held.status == 409, held.body);
  BOOST_TEST(contains(held.body, "QUARANTINED for an approver"), held.body);
  auto approved = s.call("POST", "/v1/missions/" + mission + ":approve", "approver",
                         R"({"reason": "sold as a light roast"})");
  BOOST_REQUIRE_MESSAGE(approved.status == 200, approved.body);
  m = mission_in(s, mission, {"DONE", "FAILED"});
  BOOST_REQUIRE_MESSAGE(m.at("state").as_string() == "DONE", json::serialize(m));
  const auto& steps = m.at("steps").as_array();
  BOOST_TEST(steps[2].at("output").at("verdict").as_string() == "fail");
  // The approver by the name their key was given, with its id — in the mission's own output
  // and every page made from it.
  BOOST_TEST(steps[2].at("output").at("accepted_by").as_string().starts_with("approver (key:k-"),
             steps[2].at("output"));
  BOOST_REQUIRE(steps.size() == 5u);
  {
    // Listed with its verdict and who accepted it, over HTTP and by the CLI.
    auto listed = body(s.call("GET", "/v1/sessions?device=r1-roast", "viewer"));
    const auto& report = listed.as_array()[0].at("report");
    BOOST_TEST(report.at("state").as_string() == "DONE");
    BOOST_TEST(report.at("verdict").as_string() == "fail");
    BOOST_TEST(report.at("accepted_by") == steps[2].at("output").at("accepted_by"));
    auto cli = s.kiln({"sessions", "list", "--device", "r1-roast"});
    BOOST_TEST(cli.exit_code == 0, cli.err);
    BOOST_TEST(contains(cli.out, "  QC  "), cli.out);
    BOOST_TEST(contains(cli.out, "fail, accepted by approver (key:k-"), cli.out);
  }
  // Analysis of the recorded curve: events detected from the R1 state channel.
  const auto& analysis = steps[1].at("output");
  BOOST_TEST(analysis.at("event_sources").at("CHARGE").as_string() == "roaster state");
  BOOST_TEST(std::abs(analysis.at("events").at("DROP").at("time").as_double() - 450.0) <= 2.0,
             json::serialize(analysis.at("events")));
  // The page is the report step's file (its digest in the ledger), not ≈ 30 KB of output.
  const auto& report = steps[3].at("output");
  BOOST_TEST(!report.as_object().contains("html"));
  BOOST_TEST(report.at("html_file").as_string() == "report.html");
  const auto kept_page =
      s.call("GET", "/v1/missions/" + mission + "/artifacts/report/report.html", "viewer");
  BOOST_REQUIRE_MESSAGE(kept_page.status == 200, kept_page.body);
  BOOST_TEST(kept_page.header("content-type") == "text/html; charset=utf-8");
  const std::string html = kept_page.body;
  BOOST_TEST(html.size() == report.at("bytes").to_number<std::size_t>());
  BOOST_TEST(contains(html, "<svg"));
  BOOST_TEST(contains(html, "class=\"bt\""));
  BOOST_TEST(contains(html, "DROP"));
  // The report says the failed roast was accepted, and by whom; the summary says it aloud.
  BOOST_TEST(contains(html, "</span> — accepted by approver (key:k-"),
             html.substr(html.find("Quality")));
  BOOST_TEST(report.at("report").at("qc").at("accepted_by") ==
             steps[2].at("output").at("accepted_by"));
  BOOST_TEST(contains(std::string(report.at("summary").as_string()),
                      "Quality check: fail, accepted by an approver."),
             report.at("summary"));
  // A report made again later (the session's report route) still knows of the acceptance.
  auto again = body(s.call(
      "GET", "/v1/sessions/" + std::string(session.at("id").as_string()) + "/report", "viewer"));
  BOOST_TEST(again.at("qc").at("verdict").as_string() == "fail");
  BOOST_TEST(again.at("qc").at("accepted_by") == steps[2].at("output").at("accepted_by"),
             json::serialize(again.at("qc")));
  // A session's answers are what /openapi.json says they are, refusals included.
  {
    const auto doc = body(s.call("GET", "/openapi.json", ""));
    const std::string sid(session.at("id").as_string());
    auto check = [&](const std::string& path, const std::string& target,
                     const std::string& status) {
      auto r = s.call("GET", target, "viewer");
      BOOST_REQUIRE_MESSAGE(std::to_string(r.status) == status, target << ": " << r.body);
      const auto& schema = doc.at("paths")
                               .at(path)
                               .at("get")
                               .at("responses")
                               .at(status)
                               .at("content")
                               .at("application/json")
                               .at("schema");
      const auto err = runtime::validate_json(schema, body(r), "answer");
      BOOST_TEST(!err, target << ": " << err.value_or(""));
    };
    check("/v1/sessions", "/v1/sessions", "200");
    check("/v1/sessions/{id}", "/v1/sessions/" + sid, "200");
    check("/v1/sessions/{id}/samples", "/v1/sessions/" + sid + "/samples", "200");
    check("/v1/sessions/{id}/report", "/v1/sessions/" + sid + "/report", "200");
    check("/v1/sessions/{id}/predict", "/v1/sessions/" + sid + "/predict", "200");
    check("/v1/devices/{device}", "/v1/devices/r1-roast", "200");
    check("/v1/sessions/{id}/report", "/v1/sessions/nope/report", "404");
    // A dashboard polling a closed session's samples and report asks with the ETag it has: 304,
    // no bytes; a changed answer (another format) has another.
    http::Client c("http://127.0.0.1:" + std::to_string(s.port));
    const std::vector<std::pair<std::string, std::string>> auth{
        {"Authorization", "Bearer " + s.keys.at("viewer")}};
    for (const std::string& target :
         {"/v1/sessions/" + sid + "/samples", "/v1/sessions/" + sid + "/report",
          "/v1/sessions/" + sid + "/report?format=html"}) {
      auto first = c.request("GET", target, "", auth);
      BOOST_REQUIRE(first.status == 200);
      const std::string tag = first.header("etag");
      BOOST_TEST(tag.size() == 34u, target << ": " << tag);
      BOOST_TEST(first.header("cache-control") == "no-cache");
      auto with = auth;
      with.emplace_back("If-None-Match", tag);
      auto again = c.request("GET", target, "", with);
      BOOST_TEST(again.status == 304, target);
      BOOST_TEST(again.body.empty());
      with.back().second = "\"stale\"";
      BOOST_TEST(c.request("GET", target, "", with).status == 200, target);
    }
    BOOST_TEST(
        c.request("GET", "/v1/sessions/" + sid + "/report", "", auth).header("etag") !=
        c.request("GET", "/v1/sessions/" + sid + "/report?format=html", "", auth).header("etag"));
  }
  // The page is kept where storage.artifacts says, a directory per plugin.
  const fs::path page(std::string(report.at("path").as_string()));
  {
    // Reading a session's report or prediction again and again (a dashboard polling) keeps no
    // page and writes nothing to the ledger: those are reads, not acts.
    auto files = [&] {
      return std::distance(fs::directory_iterator(page.parent_path()), fs::directory_iterator{});
    };
    auto tool_events = [&] {
      return body(s.call("GET", "/v1/ledger?stream=tools&limit=1000", "viewer"))
          .at("events")
          .as_array()
          .size();
    };
    const auto files_before = files();
    const auto events_before = tool_events();
    for (int i = 0; i < 3; ++i)
      for (const char* view : {"/report", "/report?format=html", "/predict"}) {
        const auto r = s.call(
            "GET", "/v1/sessions/" + std::string(session.at("id").as_string()) + view, "viewer");
        BOOST_TEST((r.status == 200 || r.status == 409), view << ": " << r.body);
      }
    BOOST_TEST(files() == files_before);
    BOOST_TEST(tool_events() == events_before);
  }
  BOOST_TEST(page.string().starts_with((s.dir.path() / "kept" / "roast" / "reports").string()),
             page);
  BOOST_TEST(fs::exists(page), page);
  const std::string sid(session.at("id").as_string());
  std::string sid_in_name = sid;  // a file name keeps letters, digits and - _ .
  std::replace(sid_in_name.begin(), sid_in_name.end(), '@', '_');
  BOOST_TEST(page.filename().string().starts_with(sid_in_name + "."), page);
  {
    // A call of the tool by hand with the session's title, or a title longer than a file name,
    // keeps its own page: the mission's stays as it was.
    const auto before = read_file(page);
    for (const std::string& title : {sid, std::string(300, 'A')}) {
      json::object input{{"title", title},
                         {"curve", {{"time", {0, 1, 2, 3}}, {"bt", {200, 150, 160, 170}}}},
                         {"analysis", {{"events", json::object{}}}}};
      auto own = s.call("POST", "/v1/tools/roast.report:invoke", "operator",
                        json::serialize(json::object{{"input", input}}));
      BOOST_TEST(own.status == 200, own.body);
      const fs::path kept(std::string(body(own).at("output").at("path").as_string()));
      BOOST_TEST(kept != page);
      BOOST_TEST(fs::exists(kept), kept);
      BOOST_TEST(body(own).at("output").at("html").as_string().starts_with("<!DOCTYPE html>"));
      BOOST_TEST(body(own).at("artifacts").as_array().empty());
      // html: false — the page as the file beside the output instead.
      input["html"] = false;
      auto as_file = s.call("POST", "/v1/tools/roast.report:invoke", "operator",
                            json::serialize(json::object{{"input", input}}));
      BOOST_TEST(as_file.status == 200, as_file.body);
      BOOST_TEST(!body(as_file).at("output").as_object().contains("html"), as_file.body);
      BOOST_TEST(body(as_file).at("artifacts").at(0).at("name").as_string() == "report.html");
    }
    BOOST_TEST(read_file(page) == before);
  }
  BOOST_TEST(steps[4].at("output").at("seconds").as_double() > 1.0);
  // The spoken summary is kept: listed under its step with its digest, served by the mission's
  // artifact route and the session's summary route, the same bytes; the ledger holds the digest.
  BOOST_REQUIRE_EQUAL(steps[4].at("artifacts").as_array().size(), 1u);
  const auto& kept = steps[4].at("artifacts").as_array()[0];
  BOOST_TEST(kept.at("name").as_string() == "speech.wav");
  BOOST_TEST(kept.at("media_type").as_string() == "audio/wav");
  BOOST_TEST(kept.at("bytes").as_int64() == steps[4].at("output").at("bytes").as_int64());
  auto audio = s.call("GET", summary_route, "viewer");
  BOOST_REQUIRE_MESSAGE(audio.status == 200, audio.body);
  BOOST_TEST(audio.header("content-type") == "audio/wav");
  BOOST_TEST(audio.body.substr(0, 4) == "RIFF");
  BOOST_TEST(static_cast<std::int64_t>(audio.body.size()) == kept.at("bytes").as_int64());
  BOOST_TEST(audio.header("etag") == "\"" + std::string(kept.at("sha256").as_string()) + "\"");
  BOOST_TEST(std::string(kept.at("sha256").as_string()) == common::sha256_hex(audio.body));
  auto by_mission =
      s.call("GET", "/v1/missions/" + mission + "/artifacts/speak/speech.wav", "viewer");
  BOOST_TEST(by_mission.status == 200);
  BOOST_TEST((by_mission.body == audio.body));
  BOOST_TEST(contains(by_mission.header("content-disposition"), "filename=\"speech.wav\""));
  {
    http::Client c("http://127.0.0.1:" + std::to_string(s.port));
    auto again = c.request("GET", summary_route, "",
                           {{"Authorization", "Bearer " + s.keys.at("viewer")},
                            {"If-None-Match", audio.header("etag")}});
    BOOST_TEST(again.status == 304);
    BOOST_TEST(again.body.empty());
    // No Content-Length on a 304 (RFC 9110 §8.6: it would have to be the 200's).
    BOOST_TEST(again.header("content-length").empty(), again.header("content-length"));
  }
  BOOST_TEST(s.call("GET", summary_route, "other").status == 404);
  BOOST_TEST(
      s.call("GET", "/v1/missions/" + mission + "/artifacts/speak/speech.wav", "other").status ==
      404);
  auto no_file = s.call("GET", "/v1/missions/" + mission + "/artifacts/speak/x.wav", "viewer");
  BOOST_TEST(no_file.status == 404);
  BOOST_TEST(contains(no_file.body, "lists each step's artifacts"), no_file.body);
  // The CLI writes the same file, from the database and from the server.
  auto local = s.kiln({"report", std::string(session.at("id").as_string()), "-o", "summary.wav"});
  BOOST_TEST(local.exit_code == 0, local.out + local.err);
  auto remote =
      s.kiln({"mission", "artifact", mission, "speak", "speech.wav", "-o", "remote.wav", "--server",
              "http://127.0.0.1:" + std::to_string(s.port), "--api-key", s.keys.at("viewer")});
  BOOST_TEST(remote.exit_code == 0, remote.out + remote.err);
  for (const char* f : {"summary.wav", "remote.wav"}) {
    std::ifstream in(s.dir.path() / f, std::ios::binary);
    std::stringstream bytes;
    bytes << in.rdbuf();
    BOOST_TEST((bytes.str() == audio.body), f);
  }
  // Another audio file's extension gets the summary encoded so (it got the WAV bytes, with a
  // note, where --help offered .flac, .mp3 and .opus), from the database and from the server.
  for (const auto& [file, magic] : std::vector<std::pair<std::string, std::string>>{
           {"summary.flac", "fLaC"}, {"summary.opus", "OggS"}, {"summary.ogg", "OggS"}}) {
    for (bool remote_report : {false, true}) {
      std::vector<std::string> args = {"report", std::string(session.at("id").as_string()), "-o",
                                       (remote_report ? "remote-" : "") + file};
      if (remote_report)
        args.insert(args.end(), {"--server", "http://127.0.0.1:" + std::to_string(s.port),
                                 "--api-key", s.keys.at("viewer")});
      auto encoded = s.kiln(args);
      BOOST_TEST(encoded.exit_code == 0, encoded.out + encoded.err);
      BOOST_TEST(contains(encoded.out, "encoded as "), encoded.out);
      BOOST_TEST(!contains(encoded.err, "note:"), encoded.err);
      std::ifstream in(s.dir.path() / args[3], std::ios::binary);
      std::string head(4, '\0');
      in.read(head.data(), 4);
      BOOST_TEST(head == magic, args[3]);
    }
  }
  // All of it in the ledger.
  auto exported = s.kiln({"ledger", "export"});
  for (const char* kind : {"\"device.key_added\"", "\"telemetry.batches\"", "\"session.opened\"",
                           "\"session.closed\"", "\"session.reported\"", "\"mission.completed\""})
    BOOST_TEST(contains(exported.out, kind), kind);
  BOOST_TEST(contains(exported.out, std::string(kept.at("sha256").as_string())));
  BOOST_TEST(s.kiln({"ledger", "verify"}).exit_code == 0);
}

// First crack is heard, not seen: this roast's report estimates FCs from the FCs phase
// temperature, and QC holds it. The roaster marks FCs where they heard it (the fixture's own
// mark): the session keeps the mark (a ledger event), its report mission runs again with it, and
// every view of the session (analysis, report, CLI) takes the mark over the estimate.
BOOST_AUTO_TEST_CASE(a_roasters_first_crack_mark_reaches_the_report) {
  Server s({"missions.workers=1"});
  auto added = s.call("POST", "/v1/devices", "operator", R"({"device": "r1-mark"})");
  BOOST_REQUIRE_MESSAGE(added.status == 201, added.body);
  send_roast(s, "r1-mark", key_of(body(added)));
  const json::value session = reported_session(s, "r1-mark");
  const std::string id(session.at("id").as_string());
  const std::string first(session.at("mission_id").as_string());
  auto m = mission_in(s, first, {"DONE", "FAILED", "QUARANTINED"});
  BOOST_REQUIRE_MESSAGE(m.at("state").as_string() == "QUARANTINED", json::serialize(m));
  // Its FCs an estimate: where BT reached the FCs phase temperature.
  BOOST_TEST(m.at("steps").as_array()[1].at("output").at("event_sources").at("FCs").as_string() ==
             "phases");
  {
    // The hold's message says that once, at its end, however many failed checks rest on it.
    const std::string held(m.at("steps").as_array()[2].at("error").at("message").as_string());
    int resting = 0;
    for (const auto& c :
         m.at("steps").as_array()[2].at("error").at("details").at("checks").as_array())
      resting += c.at("result").as_string() == "fail" &&
                 contains(std::string(c.at("reason").as_string()), "(FCs estimated");
    BOOST_TEST(resting >= 1, held);
    BOOST_TEST(!contains(held, "(FCs estimated"), held);
    BOOST_TEST(contains(held,
                        "; FCs was estimated from the temperature, not marked (kiln sessions "
                        "mark SESSION FCs --at M:SS)"),
               held);
  }

  // Where the roaster marked FCs in the fixture, after its CHARGE.
  std::ifstream in(std::string(KILN_SOURCE_DIR) +
                   "/tests/fixtures/artisan-alog/26-04-12_sidamo_no42.alog");
  std::stringstream text;
  text << in.rdbuf();
  const auto log = roast::parse_alog(text.str());
  const double fcs = log.time[static_cast<std::size_t>(log.timeindex[2])] -
                     log.time[static_cast<std::size_t>(log.timeindex[0])];
  const std::string route = "/v1/sessions/" + id + ":mark";
  const std::string mark = R"({"event": "FCs", "after_charge": )" + std::to_string(fcs) + "}";
  BOOST_TEST(s.call("POST", route, "viewer", mark).status == 403);
  BOOST_TEST(s.call("POST", route, "other", mark).status == 404);
  auto bad = s.call("POST", route, "operator", R"({"event": "SCs"})");
  BOOST_TEST(bad.status == 422, bad.body);
  BOOST_TEST(contains(bad.body, "one of CHARGE, DRY_END, FCs, DROP"), bad.body);
  BOOST_TEST(contains(bad.body, "\"field\":\"body.event\""), bad.body);
  auto now = s.call("POST", route, "operator", R"({"event": "FCs"})");  // now: it closed
  BOOST_TEST(now.status == 422, now.body);
  BOOST_TEST(contains(now.body, "--at M:SS"), now.body);
  auto twice = s.call("POST", route, "operator", R"({"event": "FCs", "t": 1, "after_charge": 2})");
  BOOST_TEST(twice.status == 422, twice.body);

  auto marked = s.call("POST", route, "operator", mark);
  BOOST_REQUIRE_MESSAGE(marked.status == 200, marked.body);
  const auto after = body(marked);
  // The session as GET gives it, its readings counted.
  BOOST_TEST(after.at("samples") ==
             body(s.call("GET", "/v1/sessions/" + id, "viewer")).at("samples"));
  BOOST_TEST(after.at("samples").as_int64() > 100);
  BOOST_TEST(std::abs(after.at("marks").at("FCs").as_double() -
                      (after.at("charge_t").as_double() + fcs)) < 0.01);
  const std::string second(after.at("mission_id").as_string());
  BOOST_TEST(second != first);  // the report mission again, with the mark
  // The report it replaces leaves the approver's queue.
  const auto replaced = mission_in(s, first, {"CANCELED"});
  BOOST_TEST(replaced.at("state").as_string() == "CANCELED", json::serialize(replaced));
  BOOST_TEST(contains(s.call("GET", "/v1/ledger?stream=mission/" + first, "viewer").body,
                      "replaced by mission " + second));
  m = mission_in(s, second, {"DONE", "FAILED", "QUARANTINED"});
  const auto& analysis = m.at("steps").as_array()[1].at("output");
  BOOST_TEST(analysis.at("event_sources").at("FCs").as_string() == "marked");
  BOOST_TEST(std::abs(analysis.at("events").at("FCs").at("time").as_double() - fcs) <= 2.0,
             json::serialize(analysis.at("events")));
  BOOST_TEST(analysis.at("phases").at("dtr").is_number());
  // The session's report is the new one.
  BOOST_TEST(body(s.call("GET", "/v1/sessions/" + id, "viewer")).at("report").at("mission") ==
             json::value(second));
  // The same mark again: the report already made for it.
  auto same = s.call("POST", route, "operator", mark);
  BOOST_REQUIRE_MESSAGE(same.status == 200, same.body);
  BOOST_TEST(body(same).at("mission_id").as_string() == second);
  // The report made now says FCs was marked, not estimated.
  auto report = body(s.call("GET", "/v1/sessions/" + id + "/report", "viewer"));
  BOOST_TEST(report.at("events").at("FCs").at("estimated").as_bool() == false,
             json::serialize(report.at("events")));
  BOOST_TEST(report.at("events").at("FCs").at("source").as_string() == "marked");

  // The CLI, from the server: the device's newest session, DROP marked at M:SS without a new
  // report; its view lists the marks as the roast's clock reads them.
  const std::string url = "http://127.0.0.1:" + std::to_string(s.port);
  auto cli = s.kiln({"sessions", "mark", "--device", "r1-mark", "DROP", "--at", "7:25",
                     "--no-report", "--server", url, "--api-key", s.keys.at("operator")});
  BOOST_TEST(cli.exit_code == 0, cli.out + cli.err);
  BOOST_TEST(contains(cli.out, "marked:   FCs "), cli.out);
  BOOST_TEST(contains(cli.out, "readings: "), cli.out);
  BOOST_TEST(contains(cli.out, " DROP 7:25 (after CHARGE"), cli.out);
  BOOST_TEST(contains(cli.out, "mission " + second), cli.out);
  // That report was made before this mark: the session says so.
  BOOST_TEST(contains(cli.out, "(before the latest marks or weights)"), cli.out);
  auto bad_at = s.kiln({"sessions", "mark", id, "FCs", "--at", "6:75"});
  BOOST_TEST(bad_at.exit_code == 2, bad_at.out + bad_at.err);
  BOOST_TEST(contains(bad_at.err, "--at wants the time after CHARGE as M:SS"), bad_at.err);
  auto dotted = s.kiln({"sessions", "mark", id, "FCs", "--at", "6.05"});  // a misread clock
  BOOST_TEST(dotted.exit_code == 2, dotted.out + dotted.err);
  BOOST_TEST(contains(dotted.err, "did you mean 6:05?"), dotted.err);
  auto order = s.kiln({"sessions", "mark", id, "DRY_END", "--at", "7:00"});
  BOOST_TEST(order.exit_code != 0);
  BOOST_TEST(contains(order.err, "is not before FCs (marked at "), order.err);
  auto early = s.kiln({"sessions", "mark", id, "FCs", "--at", "0:30"});  // for 8:30?
  BOOST_TEST(early.exit_code != 0);
  BOOST_TEST(contains(early.err, "is not after TP, the lowest BT after CHARGE ("), early.err);
  BOOST_TEST(contains(early.err, "; is the time right? (on the command line M:SS after CHARGE"),
             early.err);
  // A marked CHARGE moves the roast's clock; the view says so. Cleared again, and once more.
  auto charge = s.kiln({"sessions", "mark", id, "CHARGE", "--at", "0:10", "--no-report"});
  BOOST_TEST(charge.exit_code == 0, charge.out + charge.err);
  BOOST_TEST(contains(charge.out, "times count from the marked CHARGE, 0:10 after the detected"),
             charge.out);
  auto uncharge = s.kiln({"sessions", "mark", id, "CHARGE", "--clear", "--no-report"});
  BOOST_TEST(uncharge.exit_code == 0, uncharge.out + uncharge.err);
  BOOST_TEST(!contains(uncharge.out, "times count from"), uncharge.out);
  auto again = s.kiln({"sessions", "mark", id, "CHARGE", "--clear", "--no-report"});
  BOOST_TEST(again.exit_code != 0);
  BOOST_TEST(contains(again.err, "has no CHARGE mark to clear (marked: DROP, FCs)"), again.err);
  BOOST_TEST(contains(s.kiln({"ledger", "export"}).out, "\"session.marked\""));
  // The batch weighed: green now, roasted once cooled. The report mission runs again with the
  // weights; its analysis and report give the weight loss, and a weight_loss target is checked.
  const std::string weigh = "/v1/sessions/" + id + ":weigh";
  BOOST_TEST(s.call("POST", weigh, "viewer", R"({"green_g": 500})").status == 403);
  auto heavier = s.call("POST", weigh, "operator", R"({"green_g": 500, "roasted_g": 520})");
  BOOST_TEST(heavier.status == 422, heavier.body);
  BOOST_TEST(contains(heavier.body, "\"field\":\"body.roasted_g\""), heavier.body);
  auto green = s.call("POST", weigh, "operator", R"({"green_g": 500})");
  BOOST_REQUIRE_MESSAGE(green.status == 200, green.body);
  BOOST_TEST(body(green).at("weight").at("roasted_g").is_null());
  auto weighed = s.kiln({"sessions", "weigh", "--device", "r1-mark", "--roasted", "430", "--server",
                         url, "--api-key", s.keys.at("operator")});
  BOOST_TEST(weighed.exit_code == 0, weighed.out + weighed.err);
  BOOST_TEST(contains(weighed.out, "  weight:   500.0 g green → 430.0 g roasted, loss 14.0 %"),
             weighed.out);
  const auto now_weighed = body(s.call("GET", "/v1/sessions/" + id, "viewer"));
  BOOST_TEST(now_weighed.at("weight").at("loss_percent").as_double() == 14.0);
  const std::string third(now_weighed.at("mission_id").as_string());
  BOOST_TEST(third != second);
  m = mission_in(s, third, {"DONE", "FAILED", "QUARANTINED"});
  BOOST_TEST(m.at("inputs").at("weight").at("roasted_mg").as_int64() == 430000);
  BOOST_TEST(m.at("steps").as_array()[1].at("output").at("weight").at("loss").as_double() == 14.0);
  auto weighed_report = body(s.call("GET", "/v1/sessions/" + id + "/report", "viewer"));
  BOOST_TEST(weighed_report.at("weight").at("loss_percent").as_double() == 14.0);
  BOOST_TEST(
      contains(std::string(weighed_report.at("summary").as_string()), "Weight loss 14.0 percent."));
  // A weight the server refuses exits as the same refusal does locally (2).
  auto too_light = s.kiln({"sessions", "weigh", id, "--green", "5", "--server", url, "--api-key",
                           s.keys.at("operator")});
  BOOST_TEST(too_light.exit_code == 2, too_light.err);
  BOOST_TEST(contains(too_light.err, "server answered 422 invalid_request"), too_light.err);
  BOOST_TEST(contains(too_light.err,
                      "body.green_g: must be >= 10 (the green beans charged, in "
                      "grams: 500 for half a kilo)"),
             too_light.err);
  BOOST_TEST(s.kiln({"sessions", "weigh", id, "--green", "5"}).exit_code == 2);
  auto bad_grams = s.kiln({"sessions", "weigh", id, "--green", "five hundred"});
  BOOST_TEST(bad_grams.exit_code == 2);
  BOOST_TEST(contains(bad_grams.err, "--green wants a weight in grams"), bad_grams.err);
  // The mission's inputs carry the marks it reports on, and its view prints numbers as people
  // write them (not 1.7646E2).
  auto shown = s.kiln({"mission", "show", second});
  BOOST_TEST(shown.exit_code == 0, shown.err);
  BOOST_TEST(contains(shown.out, "\"marks\":{\"FCs\":"), shown.out);
  BOOST_TEST(!std::regex_search(shown.out, std::regex("[0-9]E-?[0-9]")), shown.out);

  // A report that finished with its spoken summary and is then replaced (the roaster weighs
  // again): its audio is not kept beside the new report's — each report again would add its
  // own — and the ledger names the file released, digest and all.
  if (mission_in(s, third, {"DONE", "FAILED", "QUARANTINED"}).at("state") == "QUARANTINED")
    BOOST_REQUIRE(s.call("POST", "/v1/missions/" + third + ":approve", "approver", "{}").status ==
                  200);
  const auto finished = mission_in(s, third, {"DONE", "FAILED"});
  BOOST_REQUIRE_MESSAGE(finished.at("state") == "DONE", json::serialize(finished.at("state")));
  BOOST_REQUIRE_EQUAL(finished.at("steps").as_array()[4].at("artifacts").as_array().size(), 1u);
  const std::string audio = "/v1/missions/" + third + "/artifacts/speak/speech.wav";
  BOOST_TEST(s.call("GET", audio, "viewer").status == 200);
  auto reweighed = s.call("POST", weigh, "operator", R"({"green_g": 505})");
  BOOST_REQUIRE_MESSAGE(reweighed.status == 200, reweighed.body);
  BOOST_TEST(body(reweighed).at("mission_id").as_string() != third);
  const auto released = body(s.call("GET", "/v1/missions/" + third, "viewer"));
  BOOST_TEST(released.at("state") == "DONE");  // the mission itself stays as it ran
  for (const auto& step : released.at("steps").as_array())
    BOOST_TEST(step.at("artifacts").as_array().empty(), json::serialize(step.at("step")));
  const auto gone = s.call("GET", audio, "viewer");
  BOOST_TEST(gone.status == 404);
  BOOST_TEST(contains(gone.body, "'speech.wav' from step 'speak' was released at "), gone.body);
  BOOST_TEST(contains(gone.body, "replaced by mission "), gone.body);
  const auto elsewhere = s.call("GET", audio, "other");  // another tenant: no such mission
  BOOST_TEST(elsewhere.status == 404);
  BOOST_TEST(contains(elsewhere.body, "\"no mission " + third + "\""), elsewhere.body);
  const auto events = s.call("GET", "/v1/ledger?stream=mission/" + third, "viewer").body;
  BOOST_TEST(contains(events, "\"kind\":\"mission.artifacts_released\""), events);
  BOOST_TEST(contains(events, "\"name\":\"speech.wav\""), events);
  BOOST_TEST(contains(events, "replaced by mission "), events);

  // Retention from the CLI beside the running server: the newest report's audio goes too, with
  // its own event; a dry run first says what would go.
  const std::string newest(body(reweighed).at("mission_id").as_string());
  if (mission_in(s, newest, {"DONE", "FAILED", "QUARANTINED"}).at("state") == "QUARANTINED")
    BOOST_REQUIRE(s.call("POST", "/v1/missions/" + newest + ":approve", "approver", "{}").status ==
                  200);
  BOOST_REQUIRE(mission_in(s, newest, {"DONE", "FAILED"}).at("state") == "DONE");
  const std::string newest_audio = "/v1/missions/" + newest + "/artifacts/speak/speech.wav";
  BOOST_TEST(s.call("GET", newest_audio, "viewer").status == 200);
  BOOST_TEST(
      body(s.call("GET", "/v1/sessions/" + id, "viewer")).at("report").at("files_released") ==
      false);
  BOOST_TEST(contains(s.kiln({"sessions", "show", id}).out, "-o summary.wav"));
  // /metrics says how much the missions' files take, and that retention released them.
  const auto files_bytes = [&] {
    std::smatch m;
    const auto text = s.call("GET", "/metrics", "").body;
    BOOST_REQUIRE(std::regex_search(text, m, std::regex("\nkiln_mission_files_bytes ([0-9]+)\n")));
    return std::stoll(m[1]);
  };
  const auto kept_before = files_bytes();
  BOOST_TEST(kept_before > 100000);  // a spoken summary at least
  auto dry = s.kiln({"mission", "prune", "--older-than", "0s", "--dry-run"});
  BOOST_TEST(dry.exit_code == 0, dry.err);
  BOOST_TEST(contains(dry.out, "would release "), dry.out);
  BOOST_TEST(s.call("GET", newest_audio, "viewer").status == 200);
  auto pruned = s.kiln({"mission", "prune", "--older-than", "0s", "--json"});
  BOOST_TEST(pruned.exit_code == 0, pruned.err);
  BOOST_TEST(json::parse(pruned.out).at("files").as_int64() >= 1, pruned.out);
  BOOST_TEST(files_bytes() == kept_before - json::parse(pruned.out).at("bytes").as_int64());
  const auto pruned_audio = s.call("GET", newest_audio, "viewer");
  BOOST_TEST(pruned_audio.status == 404);
  BOOST_TEST(contains(pruned_audio.body, "(kiln mission prune: finished before "),
             pruned_audio.body);
  auto local = s.kiln({"mission", "artifact", newest, "speak", "speech.wav", "-o",
                       (s.dir.path() / "gone.wav").string()});
  BOOST_TEST(local.exit_code == 1);
  BOOST_TEST(contains(local.err, "was released at "), local.err);
  // The session's spoken summary says the same, not that its report speaks none.
  const auto summary_gone = s.call("GET", "/v1/sessions/" + id + "/summary", "viewer");
  BOOST_TEST(summary_gone.status == 404, summary_gone.body);
  BOOST_TEST(contains(summary_gone.body, "(report mission " + newest + ") was released at "),
             summary_gone.body);
  // And the session no longer offers it: its report says its files went.
  BOOST_TEST(
      body(s.call("GET", "/v1/sessions/" + id, "viewer")).at("report").at("files_released") ==
      true);
  auto released_shown = s.kiln({"sessions", "show", id});
  BOOST_TEST(contains(released_shown.out, "its spoken summary was released by retention"),
             released_shown.out);
  BOOST_TEST(!contains(released_shown.out, "summary.wav"), released_shown.out);
  auto replay = s.kiln({"ledger", "replay"});
  BOOST_TEST(replay.exit_code == 0, replay.out + replay.err);
}

// The profile library over HTTP and the CLI, and a profile feeding a session: the roaster's
// profile (the same roast, imported from its .alog) gives the analysis its phase temperatures and
// QC its targets, so the roast that fails the defaults passes its own profile.
BOOST_AUTO_TEST_CASE(a_device_profile_gives_its_sessions_targets_and_phases) {
  Server s({"missions.workers=1"});
  std::ifstream in(std::string(KILN_SOURCE_DIR) +
                   "/tests/fixtures/artisan-alog/26-04-12_sidamo_no42.alog");
  std::stringstream alog;
  alog << in.rdbuf();
  const std::string save = json::serialize(json::object{{"name", "sidamo"}, {"alog", alog.str()}});
  BOOST_TEST(s.call("POST", "/v1/profiles", "viewer", save).status == 403);
  BOOST_TEST(s.call("POST", "/v1/profiles", "", save).status == 401);
  auto bad = s.call("POST", "/v1/profiles", "operator",
                    R"({"name": "broken", "alog": "{'timex': [1, 2"})");
  BOOST_TEST(bad.status == 422);
  BOOST_TEST(contains(bad.body, "not a Python literal"), bad.body);
  // A bad name is refused for itself, before the file is read.
  auto bad_name =
      s.call("POST", "/v1/profiles", "operator",
             json::serialize(json::object{{"name", "no spaces"}, {"alog", alog.str()}}));
  BOOST_TEST(bad_name.status == 422);
  BOOST_TEST(contains(bad_name.body, "body.name: 'no spaces' does not match the pattern"),
             bad_name.body);
  BOOST_TEST(contains(bad_name.body, "(1-64 of A-Z a-z 0-9 . _ -, starting with a letter"),
             bad_name.body);
  BOOST_TEST(contains(bad_name.body, "\"field\":\"body.name\""), bad_name.body);
  auto v1 = s.call("POST", "/v1/profiles", "operator", save);
  BOOST_REQUIRE_MESSAGE(v1.status == 201, v1.body);
  BOOST_TEST(body(v1).at("version").as_int64() == 1);
  // The answer says what QC will check roasts to it against, in a roaster's words.
  BOOST_TEST(
      json::serialize(body(v1).at("qc_targets")).find("FCs at 5:58–6:58") != std::string::npos,
      v1.body);
  // Its phases (an R1 log's DRY END of 18 °C) are said to end a session's drying at TP.
  BOOST_TEST(body(v1).at("notes").as_array().size() == 1u, v1.body);
  BOOST_TEST(contains(v1.body, "its DRY END temperature (18.0 °C"), v1.body);
  BOOST_TEST(body(v1).at("unchanged") == false);
  // The same save again (a retried request) is the version it made, not a copy.
  auto retried = s.call("POST", "/v1/profiles", "operator", save);
  BOOST_TEST(retried.status == 200, retried.body);
  BOOST_TEST(body(retried).at("version").as_int64() == 1);
  BOOST_TEST(body(retried).at("unchanged") == true);
  // Tenants do not see each other's profiles.
  BOOST_TEST(body(s.call("GET", "/v1/profiles", "other")).as_array().empty());
  BOOST_TEST(s.call("GET", "/v1/profiles/sidamo", "other").status == 404);
  // An unknown session is not found through the tools too (report and predict use them).
  auto no_session = s.call("POST", "/v1/tools/telemetry.session:invoke", "operator",
                           R"({"input": {"session": "s-nope@acme"}})");
  BOOST_TEST(no_session.status == 404, no_session.body);
  BOOST_TEST(contains(no_session.body, "\"not_found\""), no_session.body);
  auto other_case = s.call("GET", "/v1/profiles/SIDAMO", "viewer");
  BOOST_TEST(other_case.status == 404);
  BOOST_TEST(contains(other_case.body, "did you mean 'sidamo'?"), other_case.body);
  auto at_version = s.call("GET", "/v1/profiles/sidamo@1", "viewer");
  BOOST_TEST(contains(at_version.body, "a version goes in ?version=N, not after @"),
             at_version.body);
  // Version 2: the JSON of version 1 with edited targets.
  auto p1 = body(s.call("GET", "/v1/profiles/sidamo", "viewer")).at("profile").as_object();
  BOOST_TEST(p1.at("targets").at("fcs_time").at("target").as_double() == 388.0);
  auto edited = p1;
  edited["targets"].as_object()["fcs_time"].as_object()["tolerance"] = 20;
  auto v2 = s.call("POST", "/v1/profiles", "operator",
                   json::serialize(json::object{
                       {"name", "sidamo"}, {"title", "Sidamo, tighter FCs"}, {"profile", edited}}));
  BOOST_REQUIRE_MESSAGE(v2.status == 201, v2.body);
  BOOST_TEST(body(v2).at("version").as_int64() == 2);
  auto versions = body(s.call("GET", "/v1/profiles/sidamo/versions", "viewer")).as_array();
  BOOST_REQUIRE(versions.size() == 2u);
  BOOST_TEST(versions[1].at("title").as_string() == "Sidamo, tighter FCs");
  auto old_one = body(s.call("GET", "/v1/profiles/sidamo?version=1", "viewer"));
  BOOST_TEST(old_one.at("profile").at("targets").at("fcs_time").at("tolerance").as_int64() == 30);
  BOOST_TEST(s.call("GET", "/v1/profiles/sidamo?version=3", "viewer").status == 404);
  // Left out, the newest; given empty, refused as every empty query parameter is (not guessed).
  BOOST_TEST(body(s.call("GET", "/v1/profiles/sidamo", "viewer")).at("version") == 2);
  auto empty_version = s.call("GET", "/v1/profiles/sidamo?version=", "viewer");
  BOOST_TEST(empty_version.status == 422);
  BOOST_TEST(contains(empty_version.body, "query parameter 'version' is empty"),
             empty_version.body);
  // The .alog export reads back as the same roast.
  auto exported = s.call("GET", "/v1/profiles/sidamo/alog?version=1", "viewer");
  BOOST_REQUIRE_MESSAGE(exported.status == 200, exported.body);
  const auto original = roast::parse_alog(alog.str());
  const auto back = roast::parse_alog(exported.body);
  BOOST_TEST(back.time.size() == original.time.size());
  BOOST_TEST(back.timeindex[0] == original.timeindex[0]);
  BOOST_TEST(back.timeindex[6] == original.timeindex[6]);
  // A device with no key in the tenant: a typo, named.
  auto typo = s.call("POST", "/v1/devices/r1-porf:profile", "operator", R"({"profile": "sidamo"})");
  BOOST_TEST(typo.status == 404);
  BOOST_TEST(contains(typo.body, "no device 'r1-porf' in tenant acme"), typo.body);
  auto added = s.call("POST", "/v1/devices", "operator", R"({"device": "r1-prof"})");
  BOOST_REQUIRE_MESSAGE(added.status == 201, added.body);
  // The secret key is shown once: no cache may keep it.
  BOOST_TEST(added.header("cache-control") == "no-store");
  // Archive hides it and refuses assignments; restore brings it back.
  BOOST_TEST(s.call("POST", "/v1/profiles/sidamo:archive", "operator", "{}").status == 200);
  BOOST_TEST(body(s.call("GET", "/v1/profiles", "viewer")).as_array().empty());
  BOOST_TEST(body(s.call("GET", "/v1/profiles?archived=true", "viewer")).as_array().size() == 1u);
  auto archived_yes = s.call("GET", "/v1/profiles?archived=yes", "viewer");  // not silently false
  BOOST_TEST(archived_yes.status == 422);
  BOOST_TEST(contains(archived_yes.body, "query.archived"), archived_yes.body);
  BOOST_TEST(s.call("POST", "/v1/devices/r1-prof:profile", "operator", R"({"profile": "sidamo"})")
                 .status == 409);
  BOOST_TEST(s.call("POST", "/v1/profiles/sidamo:restore", "operator", "{}").status == 200);
  BOOST_TEST(s.call("POST", "/v1/devices/r1-prof:profile", "operator", R"({"profile": "nosuch"})")
                 .status == 404);
  auto assigned =
      s.call("POST", "/v1/devices/r1-prof:profile", "operator", R"({"profile": "sidamo"})");
  BOOST_REQUIRE_MESSAGE(assigned.status == 200, assigned.body);
  // Archived while a device roasts to it, the device's next roasts would silently lose their
  // targets: refused, naming the device and the way out.
  auto in_use = s.call("POST", "/v1/profiles/sidamo:archive", "operator", "{}");
  BOOST_TEST(in_use.status == 409, in_use.body);
  BOOST_TEST(contains(in_use.body, "is assigned to device r1-prof"), in_use.body);
  BOOST_TEST(contains(in_use.body, "kiln devices profile r1-prof --clear"), in_use.body);
  BOOST_TEST(body(s.call("GET", "/v1/profiles", "viewer")).as_array().size() == 1u);

  // The CLI: local (the server's storage) and client mode.
  auto listed = s.kiln({"profiles", "list", "--tenant", "acme"});
  BOOST_TEST(listed.exit_code == 0, listed.err);
  BOOST_TEST(contains(listed.out, "sidamo"), listed.out);
  BOOST_TEST(contains(listed.out, "v2"), listed.out);
  const std::string url = "http://127.0.0.1:" + std::to_string(s.port);
  auto shown =
      s.kiln({"profiles", "show", "sidamo@1", "--server", url, "--api-key", s.keys.at("viewer")});
  BOOST_TEST(shown.exit_code == 0, shown.err);
  // As a roaster reads it: the roast it came from, times in M:SS, the phase temperatures named
  // (this R1's are Artisan's odd 18 °C: DRY END falls at TP), QC targets in words.
  BOOST_TEST(contains(shown.out, ": Aillio Bullet R1 IBTS batch 41, Sun Apr 12 2026\n"), shown.out);
  BOOST_TEST(contains(shown.out, "  from:     Aillio Bullet R1 IBTS, Sun Apr 12 2026, batch 41\n"),
             shown.out);
  BOOST_TEST(contains(shown.out, " FCs 6:28 186.7 °C, DROP 7:30 196.4 °C (after CHARGE)"),
             shown.out);
  BOOST_TEST(contains(shown.out,
                      "  phases:   DRY END at 18.0 °C, FCs expected at 187.0 °C "
                      "(drying ends at TP: its temperature is below TP's)"),
             shown.out);
  BOOST_TEST(contains(shown.out, "\n    FCs at 5:58–6:58\n"), shown.out);
  // The settings it was roasted with (Artisan's special events), by moment after CHARGE.
  BOOST_TEST(contains(shown.out,
                      "  controls:\n    0:00  Fan 10 (F1), Drum 10 (D1), Heater 10 (P1)\n    "
                      "0:01  Fan 20 (F2), Drum 90 (D9), Heater 70 (P7)\n    0:03  Fan 10 (F1)\n"),
             shown.out);
  BOOST_TEST(contains(shown.out, "\n    7:30  Fan 70 (F7), Drum 10 (D1), Heater 0 (P0)\n"),
             shown.out);
  BOOST_TEST(!contains(shown.out, "fcs_time"), shown.out);
  const auto file = s.dir.path() / "sidamo.alog";
  auto cli_export = s.kiln({"profiles", "export", "sidamo@2", "-o", file.string(), "--server", url,
                            "--api-key", s.keys.at("viewer")});
  BOOST_TEST(cli_export.exit_code == 0, cli_export.err);
  std::ifstream exp(file);
  std::stringstream exp_text;
  exp_text << exp.rdbuf();
  BOOST_TEST(roast::parse_alog(exp_text.str()).time.size() == original.time.size());
  auto refused = s.kiln({"profiles", "import", file.string(), "--name", "again", "--server", url,
                         "--api-key", s.keys.at("viewer")});
  BOOST_TEST(refused.exit_code == 1);
  BOOST_TEST(contains(refused.err, "403"), refused.err);
  // A file the server refuses as input exits 2, as the same import locally.
  std::ofstream(s.dir.path() / "cut.alog") << exp_text.str().substr(0, 3000);
  auto cut = s.kiln({"profiles", "import", (s.dir.path() / "cut.alog").string(), "--name", "cut",
                     "--server", url, "--api-key", s.keys.at("operator")});
  BOOST_TEST(cut.exit_code == 2, cut.err);
  BOOST_TEST(contains(cut.err, "invalid_input: server answered 422: "), cut.err);
  // A bad flag in client mode is the same usage error as locally (exit 2, naming the flag).
  auto bad_key = s.kiln({"devices", "add", "fw-2", "--public-key", "xyz", "--server", url,
                         "--api-key", s.keys.at("operator")});
  BOOST_TEST(bad_key.exit_code == 2, bad_key.err);
  BOOST_TEST(contains(bad_key.err, "--public-key: "), bad_key.err);
  // The secret of a key made by the server lands where a local add puts it.
  auto remote_add =
      s.kiln({"devices", "add", "fw-3", "--server", url, "--api-key", s.keys.at("operator")});
  BOOST_REQUIRE_MESSAGE(remote_add.exit_code == 0, remote_add.err);
  const std::string written(json::parse(remote_add.out).at("key_file").as_string());
  BOOST_TEST(written.rfind("var/devices/acme/fw-3.", 0) == 0u, written);
  BOOST_TEST(fs::exists(s.dir.path() / written));
  // The rest of a device's life from the CLI in client mode: a key file named that exists is
  // never overwritten (and nothing is added); rotated with a grace; revoked, then refused again.
  const auto operator_key = s.keys.at("operator");
  std::ofstream(s.dir.path() / "taken.key") << "mine";
  auto taken = s.kiln({"devices", "add", "fw-9", "--key-out", "taken.key", "--server", url,
                       "--api-key", operator_key});
  BOOST_TEST(taken.exit_code == 2, taken.out + taken.err);
  BOOST_TEST(contains(taken.err, "never overwritten"), taken.err);
  BOOST_TEST(!contains(s.call("GET", "/v1/devices", "operator").body, "\"fw-9\""));
  auto rotated = s.kiln(
      {"devices", "rotate", "fw-3", "--grace", "60", "--server", url, "--api-key", operator_key});
  BOOST_TEST(rotated.exit_code == 0, rotated.out + rotated.err);
  auto revoked = s.kiln({"devices", "revoke", "fw-3", "--server", url, "--api-key", operator_key});
  BOOST_TEST(revoked.exit_code == 0, revoked.out + revoked.err);
  auto again = s.kiln({"devices", "revoke", "fw-3", "--server", url, "--api-key", operator_key});
  BOOST_TEST(again.exit_code != 0, again.out + again.err);
  BOOST_TEST(contains(again.err, "every key of device 'fw-3' is revoked already"), again.err);
  auto imported = s.kiln({"profiles", "import", file.string(), "--name", "again", "--server", url,
                          "--api-key", s.keys.at("operator")});
  BOOST_TEST(imported.exit_code == 0, imported.err);
  BOOST_TEST(contains(imported.out, "  QC targets: FCs at 5:58–6:58; DROP at "), imported.out);
  // Assigned from the CLI in client mode: the key's tenant, as the server answers (it said
  // "tenant default").
  auto remote_assign = s.kiln({"devices", "profile", "r1-prof", "sidamo", "--server", url,
                               "--api-key", s.keys.at("operator")});
  BOOST_TEST(remote_assign.exit_code == 0, remote_assign.err);
  BOOST_TEST(remote_assign.out == "device r1-prof roasts to profile sidamo (tenant acme)\n",
             remote_assign.out);
  // Devices with their profiles, the same over HTTP, in client mode (a table, as locally) and
  // in the local JSON.
  bool listed_with_profile = false;
  const auto device_list = body(s.call("GET", "/v1/devices", "viewer"));
  for (const auto& d : device_list.as_array())
    listed_with_profile |= d.at("device") == "r1-prof" && d.at("profile") == "sidamo";
  BOOST_TEST(listed_with_profile);
  auto remote_devices =
      s.kiln({"devices", "list", "--server", url, "--api-key", s.keys.at("viewer")});
  BOOST_TEST(remote_devices.exit_code == 0, remote_devices.err);
  BOOST_TEST(std::regex_search(remote_devices.out, std::regex("^KEY +TENANT +DEVICE +STATE")),
             remote_devices.out);
  BOOST_TEST(std::regex_search(remote_devices.out, std::regex("r1-prof .* sidamo\n")),
             remote_devices.out);
  auto local_devices = s.kiln({"devices", "list", "--tenant", "acme", "--json"});
  BOOST_TEST(contains(local_devices.out, "\"profile\": \"sidamo\""), local_devices.out);

  // A roast on the device: its session records profile v2, and the mission passes QC against it.
  send_roast(s, "r1-prof", key_of(body(added)));
  const json::value session = reported_session(s, "r1-prof");
  // Pages of sessions by their start: since (inclusive) and before (exclusive).
  {
    const double start_t = session.at("start_t").as_double();
    const std::string start = json::serialize(session.at("start_t"));
    const std::string later = json::serialize(json::value(start_t + 0.001));
    auto listed = [&](const std::string& query) {
      const auto page = body(s.call("GET", "/v1/sessions?" + query, "viewer"));
      std::vector<std::string> ids;
      for (const auto& x : page.as_array()) ids.emplace_back(x.at("id").as_string());
      return ids;
    };
    const std::vector<std::string> just_this = {std::string(session.at("id").as_string())};
    // The tenant's one session: in a page from its start, not in one from just after it; not
    // in a page before its start, in one before just after it.
    BOOST_TEST(listed("since=" + start) == just_this);
    BOOST_TEST(listed("since=" + later).empty());
    BOOST_TEST(listed("before=" + start).empty());
    BOOST_TEST(listed("before=" + later) == just_this);
    BOOST_TEST(s.call("GET", "/v1/sessions?since=today", "viewer").status == 422);
  }
  BOOST_TEST(session.at("profile").at("name").as_string() == "sidamo");
  BOOST_TEST(session.at("profile").at("version").as_int64() == 2);
  json::value m = mission_in(s, std::string(session.at("mission_id").as_string()),
                             {"DONE", "FAILED", "QUARANTINED"});
  BOOST_REQUIRE_MESSAGE(m.at("state").as_string() == "DONE", json::serialize(m));
  const auto& steps = m.at("steps").as_array();
  BOOST_TEST(steps[0].at("output").at("curve").at("phases") == p1.at("phases"));
  const auto& qc = steps[2].at("output");
  BOOST_TEST(qc.at("verdict").as_string() != "fail", json::serialize(qc));
  BOOST_TEST(qc.at("targets").at("fcs_time").at("tolerance").as_int64() == 20);
  std::set<std::string> checked;
  for (const auto& c : qc.at("checks").as_array())
    checked.insert(std::string(c.at("check").as_string()));
  for (const char* t : {"fcs_time", "drop_time", "drop_bt", "dtr"}) BOOST_TEST(checked.count(t), t);
  // The report draws the profile behind the roast and compares the two.
  const std::string report_html = s.call("GET",
                                         "/v1/missions/" + std::string(m.at("id").as_string()) +
                                             "/artifacts/report/report.html",
                                         "viewer")
                                      .body;
  BOOST_TEST(contains(report_html, "class=\"reference-bt\""));
  BOOST_TEST(contains(report_html, "<tr><th>vs profile sidamo v2</th><td>FCs "),
             report_html.size());
  // A read-only key gets the report too: its numbers, or the page.
  const std::string sid(session.at("id").as_string());
  auto viewer_report = s.call("GET", "/v1/sessions/" + sid + "/report", "viewer");
  BOOST_REQUIRE_MESSAGE(viewer_report.status == 200, viewer_report.body);
  BOOST_TEST(body(viewer_report).at("format").as_string() == "kiln.roast-report/1");
  BOOST_TEST(body(viewer_report).at("reference").at("profile").as_string() == "sidamo v2");
  auto page = s.call("GET", "/v1/sessions/" + sid + "/report?format=html", "viewer");
  BOOST_TEST(page.status == 200);
  BOOST_TEST(contains(page.header("content-type"), "text/html"), page.header("content-type"));
  BOOST_TEST(contains(page.body, "<svg"));
  BOOST_TEST(s.call("GET", "/v1/sessions/" + sid + "/report?format=pdf", "viewer").status == 422);
  BOOST_TEST(s.call("GET", "/v1/sessions/" + sid + "/report", "other").status == 404);
  const auto& numbers = steps[3].at("output").at("report");
  BOOST_TEST(numbers.at("reference").at("profile").as_string() == "sidamo v2");
  BOOST_TEST(numbers.at("qc").at("verdict").as_string() != "fail");
  const fs::path json_path(std::string(steps[3].at("output").at("json_path").as_string()));
  BOOST_TEST(fs::exists(json_path.is_absolute() ? json_path : s.dir.path() / json_path), json_path);
  auto ledger = s.kiln({"ledger", "export"});
  for (const char* kind : {"\"profile.saved\"", "\"profile.archived\"", "\"profile.restored\"",
                           "\"profile.assigned\""})
    BOOST_TEST(contains(ledger.out, kind),
               kind);  // Devices, sessions and profiles are projections: `kiln ledger replay`
                       // rebuilds them from the
  // ledger alone, and a changed live row shows up.
  auto replay = s.kiln({"ledger", "replay", "--json"});
  BOOST_TEST(replay.exit_code == 0, replay.out + replay.err);
  {
    storage::Connection c(s.dir.path() / "var/kiln.db", storage::Connection::Mode::kReadWrite);
    c.exec("UPDATE profile_names SET latest = 1 WHERE name = 'sidamo'");
  }
  replay = s.kiln({"ledger", "replay"});
  BOOST_TEST(replay.exit_code == 1, replay.out + replay.err);
  BOOST_TEST(contains(replay.out, "profile name acme/sidamo: latest: live 1, replayed 2"),
             replay.out);
  // Saved with phase temperatures of its own instead: checked to rise, and then nothing to say.
  auto with = [&](json::array phases) {
    return s.call("POST", "/v1/profiles", "operator",
                  json::serialize(json::object{
                      {"name", "sidamo-phased"}, {"alog", alog.str()}, {"phases", phases}}));
  };
  auto falling = with({150, 150, 225, 195});
  BOOST_TEST(falling.status == 422);
  BOOST_TEST(contains(falling.body,
                      "phases rise through a roast: drying from <= DRY END <= "
                      "FCs <= finish"),
             falling.body);
  auto phased = with({150, 150, 195, 225});
  BOOST_REQUIRE_MESSAGE(phased.status == 201, phased.body);
  BOOST_TEST(body(phased).at("notes").as_array().empty(), phased.body);
  const auto stored = body(s.call("GET", "/v1/profiles/sidamo-phased", "viewer"));
  for (const char* view : {"", "celsius"}) {
    const auto& p = *view ? stored.at("profile").at(view) : stored.at("profile");
    const auto& phases = p.at("phases").as_array();
    BOOST_REQUIRE_EQUAL(phases.size(), 4u);
    BOOST_TEST(phases[1].to_number<double>() == 150.0, view);
    BOOST_TEST(phases[2].to_number<double>() == 195.0, view);
  }
}

// The command line end to end: a device key, `kiln record` of the simulated roaster into the
// server (spooled first while the server is down), the session, the roast_report mission with QC,
// the report and the spoken summary, and `kiln report` writing the HTML.
BOOST_AUTO_TEST_CASE(kiln_record_spools_while_the_server_is_down_then_reports_the_roast) {
  Server s({"missions.workers=1"});
  auto added = s.kiln({"devices", "add", "sim-7", "--tenant", "acme", "--key-out", "sim-7.key"});
  BOOST_REQUIRE_MESSAGE(added.exit_code == 0, added.err);
  BOOST_TEST(contains(added.out, "secret key written to sim-7.key"));
  const bool private_file = (fs::status(s.dir.path() / "sim-7.key").permissions() &
                             (fs::perms::group_all | fs::perms::others_all)) == fs::perms::none;
  BOOST_TEST(private_file);
  // The same key file is never overwritten.
  auto again = s.kiln({"devices", "rotate", "sim-7", "--tenant", "acme", "--key-out", "sim-7.key"});
  BOOST_TEST(again.exit_code != 0);
  BOOST_TEST(contains(again.err, "never overwritten"), again.err);
  // Nor written through a link someone placed at its name or at a temporary name beside it.
  {
    std::ofstream(s.dir.path() / "victim.txt") << "precious";
    fs::create_symlink(s.dir.path() / "victim.txt", s.dir.path() / "sim-beside.key.tmp");
    fs::create_symlink(s.dir.path() / "victim.txt", s.dir.path() / "sim-at.key");
    auto beside =
        s.kiln({"devices", "add", "sim-beside", "--tenant", "acme", "--key-out", "sim-beside.key"});
    BOOST_TEST(beside.exit_code == 0, beside.err);
    auto at = s.kiln({"devices", "add", "sim-at", "--tenant", "acme", "--key-out", "sim-at.key"});
    BOOST_TEST(at.exit_code != 0);
    BOOST_TEST(contains(at.err, "never overwritten"), at.err);
    std::ifstream victim(s.dir.path() / "victim.txt");
    std::string text;
    std::getline(victim, text);
    BOOST_TEST(text == "precious");
    BOOST_TEST(fs::is_regular_file(fs::symlink_status(s.dir.path() / "sim-beside.key")));
  }

  // A spool that cannot be written (a full disk; here a file size limit of 1 KiB, a batch of 30
  // readings being larger) while the server is down: the recording goes on to its end, the
  // batches held in memory, and says at the end what is lost. It stopped at the first batch
  // ("batch 1 is lost") with the roast going on.
  auto full = run(
      {"/bin/bash", "-c", "trap '' XFSZ; ulimit -f 1; exec \"$0\" \"$@\"", kKiln, "record", "--key",
       "sim-7.key", "--server", "http://127.0.0.1:1", "--api-key", s.keys.at("operator"), "--speed",
       "0", "--duration", "119", "--batch", "30", "--spool", "spool-full"},
      s.env, s.dir.path());
  BOOST_TEST(full.exit_code == 1, full.out << full.err);
  BOOST_TEST(contains(full.out, "recorded 120 readings in 4 batches"), full.out);
  BOOST_TEST(contains(full.err,
                      "(disk full?): holding batch 1 in memory and trying again with "
                      "each batch"),
             full.err);
  BOOST_TEST(contains(full.err, "4 batch(es) from seq 1 were neither sent nor spooled"), full.err);
  BOOST_TEST(!contains(full.err, "is lost"), full.err);

  // Nothing listens on port 1: every batch of the first minute goes to the spool.
  auto offline =
      s.kiln({"record", "--key", "sim-7.key", "--server", "http://127.0.0.1:1", "--api-key",
              s.keys.at("operator"), "--speed", "0", "--duration", "59", "--spool", "spool"});
  BOOST_TEST(offline.exit_code == 1, offline.out << offline.err);
  BOOST_TEST(contains(offline.err, "spooling to spool"), offline.err);
  BOOST_TEST(contains(offline.out, "waiting in the spool 6"), offline.out);
  // A copy of the spool, for `kiln record --flush` below: it sends a spool without reading the
  // roaster; while the server is down the batches stay.
  fs::create_directories(s.dir.path() / "spool-copy");
  for (const auto& e : fs::directory_iterator(s.dir.path() / "spool"))
    if (e.path().extension() == ".cose")
      fs::copy_file(e.path(), s.dir.path() / "spool-copy" / e.path().filename());
  auto flush_down =
      s.kiln({"record", "--flush", "--key", "sim-7.key", "--server", "http://127.0.0.1:1",
              "--api-key", s.keys.at("operator"), "--spool", "spool-copy"});
  BOOST_TEST(flush_down.exit_code == 1, flush_down.out << flush_down.err);
  BOOST_TEST(contains(flush_down.out, "sending 6 spooled batches of sim-7 (tenant acme)"),
             flush_down.out);
  BOOST_TEST(contains(flush_down.out, "sent 0, refused 0, waiting in the spool 6"), flush_down.out);
  BOOST_TEST(contains(flush_down.err, "the server cannot take batches now ("), flush_down.err);
  auto flush_local = s.kiln({"record", "--flush", "--key", "sim-7.key", "--spool", "spool-copy"});
  BOOST_TEST(flush_local.exit_code == 2);
  BOOST_TEST(contains(flush_local.err, "record --flush sends the spool to a server: give --server"),
             flush_local.err);
  // The copy, flushed once the server answers; the run below sends the same batches again from
  // its own spool, each stored once.
  const std::string server = "http://127.0.0.1:" + std::to_string(s.port);
  // A key that cannot send stops the recorder with the server's own words, the spool kept.
  auto viewer = s.kiln({"record", "--flush", "--key", "sim-7.key", "--server", server, "--api-key",
                        s.keys.at("viewer"), "--spool", "spool-copy"});
  BOOST_TEST(viewer.exit_code != 0, viewer.out << viewer.err);
  BOOST_TEST(contains(viewer.out + viewer.err,
                      "403 forbidden: POST /v1/telemetry needs a recorder key or the operator "
                      "role; this key has viewer"),
             viewer.out << viewer.err);
  // A roaster's recorder key is all a recorder needs. A spool file a killed recorder was writing
  // (never given its batch's name) is sent under its name — cut off, it is refused as malformed
  // and kept in rejected/ — said; a live recorder's is left alone.
  const auto cut_off = s.dir.path() / "spool-copy" /
                       "00000000000000000001-00000000000000000099.cose.tmp-2147483646-1";
  const auto writing =
      s.dir.path() / "spool-copy" /
      ("00000000000000000001-00000000000000000098.cose.tmp-" + std::to_string(::getpid()) + "-1");
  std::ofstream(cut_off) << "half";
  std::ofstream(writing) << "half";
  for (const auto& f : {cut_off, writing})
    fs::last_write_time(f, fs::file_time_type::clock::now() - std::chrono::minutes(5));
  auto flushed = s.kiln({"record", "--flush", "--key", "sim-7.key", "--server", server, "--api-key",
                         s.keys.at("recorder"), "--spool", "spool-copy"});
  BOOST_TEST(flushed.exit_code == 1, flushed.out << flushed.err);  // one refused: said so
  BOOST_TEST(contains(flushed.out,
                      "sent 6, refused 1 (moved to spool-copy/rejected), waiting in "
                      "the spool 0"),
             flushed.out);
  BOOST_TEST(contains(flushed.out + flushed.err,
                      cut_off.filename().string() +
                          " was left by a recorder stopped while writing it: sending it as "
                          "00000000000000000001-00000000000000000099.cose"),
             flushed.out << flushed.err);
  BOOST_TEST(!fs::exists(cut_off));
  BOOST_TEST(fs::exists(s.dir.path() / "spool-copy" / "rejected" /
                        "00000000000000000001-00000000000000000099.cose"));
  BOOST_TEST(fs::exists(writing));
  fs::remove(writing);
  // One over ten minutes old is sent whatever its PID says (a PID taken again after a reboot) and
  // counted as waiting: --flush said "nothing to send" of a spool holding only such a file.
  const auto old =
      s.dir.path() / "spool-copy" /
      ("00000000000000000001-00000000000000000097.cose.tmp-" + std::to_string(::getpid()) + "-2");
  std::ofstream(old) << "half";
  fs::last_write_time(old, fs::file_time_type::clock::now() - std::chrono::minutes(11));
  auto abandoned = s.kiln({"record", "--flush", "--key", "sim-7.key", "--server", server,
                           "--api-key", s.keys.at("recorder"), "--spool", "spool-copy"});
  BOOST_TEST(abandoned.exit_code == 1, abandoned.out << abandoned.err);
  BOOST_TEST(contains(abandoned.out, "sending 1 spooled batches of sim-7"), abandoned.out);
  BOOST_TEST(contains(abandoned.out, "sent 0, refused 1"), abandoned.out);
  BOOST_TEST(!fs::exists(old));
  auto nothing = s.kiln({"record", "--flush", "--key", "sim-7.key", "--server", server, "--api-key",
                         s.keys.at("operator"), "--spool", "spool-copy"});
  BOOST_TEST(nothing.exit_code == 0, nothing.err);
  BOOST_TEST(contains(nothing.out, "nothing to send: the spool spool-copy holds no batches"),
             nothing.out);

  // The server is up: the spool drains first, then a new run's roast follows. The run is a new
  // boot whose clock starts over (the first run's minute ran ahead of the wall clock at full
  // speed): the first run's partial roast is a session of its own, closed as "reboot".
  auto online = s.kiln({"record", "--key", "sim-7.key", "--server",
                        "http://127.0.0.1:" + std::to_string(s.port), "--api-key",
                        s.keys.at("operator"), "--speed", "0", "--spool", "spool"});
  BOOST_TEST(online.exit_code == 0, online.out << online.err);
  BOOST_TEST(contains(online.out, "waiting in the spool 0"), online.out);
  BOOST_TEST(contains(online.out, "(and 6 from the spool)"), online.out);
  BOOST_TEST(fs::is_empty(s.dir.path() / "spool" / "rejected"));
  json::value session, partial;
  for (int i = 0; i < 100 && !(session.is_object() && partial.is_object()); ++i) {
    auto list = body(s.call("GET", "/v1/sessions?device=sim-7", "viewer"));
    for (const auto& x : list.as_array()) {
      if (x.at("state").as_string() != "closed" || !x.at("mission_id").is_string()) continue;
      (x.at("close_reason").as_string() == "drop" ? session : partial) = x;
    }
    if (!(session.is_object() && partial.is_object())) std::this_thread::sleep_for(100ms);
  }
  BOOST_REQUIRE_MESSAGE(session.is_object() && partial.is_object(),
                        s.call("GET", "/v1/sessions", "viewer").body);
  BOOST_TEST(partial.at("close_reason").as_string() == "reboot");
  BOOST_TEST(partial.at("first_boot").as_int64() < session.at("first_boot").as_int64());
  const std::string mission(session.at("mission_id").as_string());
  json::value m = mission_in(s, mission, {"DONE", "FAILED", "QUARANTINED"});
  // The simulated roast meets the default targets: no approval needed.
  BOOST_REQUIRE_MESSAGE(m.at("state").as_string() == "DONE", json::serialize(m));
  const auto& steps = m.at("steps").as_array();
  BOOST_TEST(steps[2].at("output").at("verdict").as_string() == "pass",
             json::serialize(steps[2].at("output")));
  const auto& events = steps[1].at("output").at("events");
  BOOST_TEST(std::abs(events.at("TP").at("time").as_double() - 65) <= 10, json::serialize(events));
  BOOST_TEST(contains(std::string(steps[3].at("output").at("summary").as_string()),
                      "Quality check: pass"));
  BOOST_TEST(steps[4].at("output").at("seconds").as_double() > 3.0);

  // Against the server a read-only key will do: the report and prediction routes, not the tools.
  auto report =
      s.kiln({"report", std::string(session.at("id").as_string()), "-o", "r.html", "--server",
              "http://127.0.0.1:" + std::to_string(s.port), "--api-key", s.keys.at("viewer")});
  BOOST_TEST(report.exit_code == 0, report.err);
  std::ifstream html(s.dir.path() / "r.html");
  std::stringstream text;
  text << html.rdbuf();
  BOOST_TEST(contains(text.str(), "<svg"));
  BOOST_TEST(contains(text.str(), "Quality check"));
  BOOST_TEST(contains(report.out, "Quality check: pass"), report.out);
  BOOST_TEST(!contains(report.err, "is HTML"), report.err);
  auto numbers =
      s.kiln({"report", std::string(session.at("id").as_string()), "-o", "r.json", "--server",
              "http://127.0.0.1:" + std::to_string(s.port), "--api-key", s.keys.at("viewer")});
  BOOST_TEST(numbers.exit_code == 0, numbers.err);
  {
    std::ifstream f(s.dir.path() / "r.json");
    std::stringstream t;
    t << f.rdbuf();
    BOOST_TEST(json::parse(t.str()).at("format").as_string() == "kiln.roast-report/1");
  }
  auto missing =
      s.kiln({"report", "nosuch@acme", "-o", "x.html", "--server",
              "http://127.0.0.1:" + std::to_string(s.port), "--api-key", s.keys.at("viewer")});
  BOOST_TEST(missing.exit_code == 1);
  BOOST_TEST(contains(missing.err, "kiln report: not_found: 404: "), missing.err);
  BOOST_TEST(!fs::exists(s.dir.path() / "x.html"));
  // Any name is written, but one that promises another format gets a note.
  auto pdf =
      s.kiln({"report", std::string(session.at("id").as_string()), "-o", "r.pdf", "--server",
              "http://127.0.0.1:" + std::to_string(s.port), "--api-key", s.keys.at("operator")});
  BOOST_TEST(pdf.exit_code == 0, pdf.err);
  BOOST_TEST(contains(pdf.err, "the report is HTML (open it in a browser); r.pdf"), pdf.err);
  auto predicted =
      s.kiln({"predict", std::string(session.at("id").as_string()), "--json", "--server",
              "http://127.0.0.1:" + std::to_string(s.port), "--api-key", s.keys.at("viewer")});
  BOOST_TEST(predicted.exit_code == 0, predicted.err);
  // The roast is over: nothing to predict, and it says when it dropped.
  BOOST_TEST(contains(predicted.out, "\"status\": \"closed\""), predicted.out);
  // `sessions show` through the server says how many readings the session holds, as locally.
  const std::string id(session.at("id").as_string());
  const auto readings =
      body(s.call("GET", "/v1/sessions/" + id + "/samples", "viewer")).at("samples").as_array();
  BOOST_TEST(body(s.call("GET", "/v1/sessions/" + id, "viewer")).at("samples").as_int64() ==
             static_cast<std::int64_t>(readings.size()));
  auto shown =
      s.kiln({"sessions", "show", id, "--server", server, "--api-key", s.keys.at("viewer")});
  BOOST_TEST(shown.exit_code == 0, shown.err);
  BOOST_TEST(contains(shown.out, "  readings: " + std::to_string(readings.size()) + "\n"),
             shown.out);
  // Exported as an Artisan log through the server with a viewer's key (GET
  // /v1/sessions/{id}/alog; it needed an operator's, the tools it runs), as locally.
  auto exported = s.kiln({"sessions", "export", id, "-o", "remote.alog", "--server", server,
                          "--api-key", s.keys.at("viewer")});
  BOOST_TEST(exported.exit_code == 0, exported.err);
  BOOST_TEST(contains(exported.out, "note: FCs was estimated"), exported.out);
  auto exported_here = s.kiln({"sessions", "export", id, "-o", "local.alog"});
  BOOST_TEST(exported_here.exit_code == 0, exported_here.err);
  auto read_all = [&](const char* name) {
    std::ifstream f(s.dir.path() / name);
    std::stringstream t;
    t << f.rdbuf();
    return t.str();
  };
  BOOST_TEST(!read_all("remote.alog").empty());
  BOOST_TEST((read_all("remote.alog") == read_all("local.alog")));
  auto alog_route = s.call("GET", "/v1/sessions/" + id + "/alog", "viewer");
  BOOST_TEST(alog_route.status == 200);
  BOOST_TEST(contains(alog_route.header("content-disposition"), ".alog\""),
             alog_route.header("content-disposition"));
  BOOST_TEST(alog_route.header("x-kiln-fcs-estimated") == "true");
  BOOST_TEST(s.call("GET", "/v1/sessions/nosuch@acme/alog", "viewer").status == 404);
  BOOST_TEST(contains(predicted.out, "the roast dropped at "), predicted.out);
  // A roast under way: the server's prediction for a read-only key is the one made locally.
  BOOST_REQUIRE(
      s.kiln({"devices", "add", "sim-8", "--tenant", "acme", "--key-out", "sim-8.key"}).exit_code ==
      0);
  auto live =
      s.kiln({"record", "--key", "sim-8.key", "--server",
              "http://127.0.0.1:" + std::to_string(s.port), "--api-key", s.keys.at("operator"),
              "--speed", "0", "--duration", "420", "--spool", "spool-8"});
  BOOST_REQUIRE_MESSAGE(live.exit_code == 0, live.out << live.err);
  std::string live_id;
  for (int i = 0; i < 100 && live_id.empty(); ++i) {
    const auto listed = body(s.call("GET", "/v1/sessions?device=sim-8", "viewer"));
    for (const auto& x : listed.as_array())
      if (x.at("state").as_string() == "open") live_id = std::string(x.at("id").as_string());
    if (live_id.empty()) std::this_thread::sleep_for(100ms);
  }
  BOOST_REQUIRE(!live_id.empty());
  auto served = s.call("GET", "/v1/sessions/" + live_id + "/predict", "viewer");
  BOOST_REQUIRE_MESSAGE(served.status == 200, served.body);
  const auto prediction = body(served);
  BOOST_TEST(prediction.at("status").as_string() != "closed", served.body);
  BOOST_TEST(prediction.at("fcs").at("eta").as_double() > prediction.at("now").as_double(),
             served.body);
  BOOST_TEST(prediction.at("dtr_target").to_number<double>() == 20.0, served.body);
  auto local = s.kiln({"predict", live_id, "--json"});
  BOOST_TEST(local.exit_code == 0, local.err);
  BOOST_TEST(json::parse(local.out) == prediction, local.out + "\n" + served.body);
  BOOST_TEST(s.call("GET", "/v1/sessions/" + live_id + "/predict", "other").status == 404);
  // A live view: the open sessions, each with its newest reading and length so far; its samples
  // since the last poll; a report whose QC waits for the roast's end.
  {
    auto open = s.call("GET", "/v1/sessions?state=open", "viewer");
    BOOST_REQUIRE_MESSAGE(open.status == 200, open.body);
    // Numbers as written, not in exponent form (start_t 1.796290541E9).
    BOOST_TEST(!contains(open.body, "E9"), open.body);
    const auto listed = body(open);
    BOOST_REQUIRE(listed.as_array().size() == 1u);
    const auto& live_session = listed.as_array()[0];
    BOOST_TEST(live_session.at("id").as_string() == live_id);
    BOOST_TEST(live_session.at("duration_s").as_double() > 300, json::serialize(live_session));
    // A mark at now, on a roaster whose clock runs far ahead of this one (the simulated
    // roaster at --speed 0): the refusal says the clocks disagree, not that a time was mistyped.
    auto ahead =
        s.call("POST", "/v1/sessions/" + live_id + ":mark", "operator", R"({"event": "FCs"})");
    BOOST_TEST(ahead.status == 422, ahead.body);
    BOOST_TEST(contains(ahead.body,
                        "the mark is now by this machine's clock, and the roast's "
                        "newest reading is at "),
               ahead.body);
    BOOST_TEST(!contains(ahead.body, "is the time right?"), ahead.body);
    // An operator sees the roast under way in /metrics too.
    const auto gauges = s.call("GET", "/metrics", "").body;
    BOOST_TEST(contains(gauges, "kiln_telemetry_sessions{state=\"open\"} 1\n"), gauges);
    BOOST_TEST(!contains(gauges, "kiln_telemetry_sessions{state=\"closed\"} 0\n"), gauges);
    BOOST_TEST(s.call("GET", "/v1/sessions?state=roasting", "viewer").status == 422);
    auto all = body(s.call("GET", "/v1/sessions/" + live_id + "/samples", "viewer"));
    BOOST_TEST(all.at("state").as_string() == "open");
    const auto& rows = all.at("samples").as_array();
    BOOST_REQUIRE(rows.size() > 100u);
    BOOST_TEST(all.at("last_t").as_double() == rows.back().as_array()[0].as_double());
    BOOST_TEST(all.at("last_t").as_double() == live_session.at("last_t").as_double());
    const double cut = rows[rows.size() - 11].as_array()[0].as_double();
    auto since = body(s.call(
        "GET", "/v1/sessions/" + live_id + "/samples?after=" + kiln::common::number_text(cut),
        "viewer"));
    BOOST_TEST(since.at("samples").as_array().size() == 10u);
    auto none = body(s.call("GET",
                            "/v1/sessions/" + live_id + "/samples?after=" +
                                kiln::common::number_text(all.at("last_t").as_double()),
                            "viewer"));
    BOOST_TEST(none.at("samples").as_array().empty());
    BOOST_TEST(none.at("last_t") == all.at("last_t"));
    // The roaster itself: its key, its newest reading, the roast under way.
    auto dev = s.call("GET", "/v1/devices/sim-8", "viewer");
    BOOST_REQUIRE_MESSAGE(dev.status == 200, dev.body);
    BOOST_TEST(body(dev).at("keys").as_array().size() == 1u);
    BOOST_TEST(body(dev).at("open_session").at("id").as_string() == live_id);
    BOOST_TEST(body(dev).at("last_reading_t").as_double() == all.at("last_t").as_double());
    BOOST_TEST(body(dev).at("profile").is_null());
    auto ghost = s.call("GET", "/v1/devices/sim-88", "viewer");
    BOOST_TEST(ghost.status == 404);
    BOOST_TEST(contains(ghost.body, "no device 'sim-88' in tenant acme"), ghost.body);
    BOOST_TEST(s.call("GET", "/v1/devices/sim-8", "other").status == 404);
    auto under_way = body(s.call("GET", "/v1/sessions/" + live_id + "/report", "viewer"));
    BOOST_TEST(under_way.at("qc").at("verdict").as_string() == "pending");
    BOOST_TEST(contains(std::string(under_way.at("summary").as_string()), "is still under way"));
  }
  BOOST_TEST(s.call("GET", "/v1/sessions/" + live_id + "/predict?x=1", "viewer").status == 422);
  auto sessions = s.kiln({"sessions", "list", "--tenant", "acme"});
  BOOST_TEST(contains(sessions.out, std::string(session.at("id").as_string())), sessions.out);
  // Against the server: the same table, not raw JSON.
  auto remote =
      s.kiln({"sessions", "list", "--server", "http://127.0.0.1:" + std::to_string(s.port),
              "--api-key", s.keys.at("viewer")});
  BOOST_TEST(remote.exit_code == 0, remote.err);
  BOOST_TEST(contains(remote.out, "SESSION"), remote.out);
  BOOST_TEST(contains(remote.out, std::string(session.at("id").as_string())), remote.out);
  BOOST_TEST(!contains(remote.out, "{"), remote.out);
  // So is `mission list` (it printed every mission whole: curves, HTML and all).
  auto missions =
      s.kiln({"mission", "list", "--server", "http://127.0.0.1:" + std::to_string(s.port),
              "--api-key", s.keys.at("viewer")});
  BOOST_TEST(missions.exit_code == 0, missions.err);
  BOOST_TEST(contains(missions.out, "roast_report"), missions.out);
  // Each for its session.
  BOOST_TEST(contains(missions.out, "session=" + std::string(session.at("id").as_string())),
             missions.out);
  BOOST_TEST(missions.out.rfind("ID ", 0) == 0u, missions.out);
  BOOST_TEST(!contains(missions.out, "{"), missions.out);
  // A backup while the server runs: a consistent copy whose chain verifies, never overwritten.
  const auto backup = (s.dir.path() / "backups" / "kiln.db").string();
  auto backed = s.kiln({"db", "backup", backup});
  BOOST_TEST(backed.exit_code == 0, backed.err);
  BOOST_TEST(contains(backed.out, "integrity ok"), backed.out);
  auto verified = s.kiln({"ledger", "verify", "--set", "storage.path=" + backup});
  BOOST_TEST(verified.exit_code == 0, verified.out + verified.err);
  BOOST_TEST(contains(verified.out, "ledger intact"), verified.out);
  // The readings are checked too: every stored batch hashes to the digest the ledger lists.
  BOOST_TEST(std::regex_search(verified.out,
                               std::regex("telemetry intact: [1-9][0-9]* stored batches match")),
             verified.out);
  {
    // Change one stored envelope and delete another behind kiln's back (in the backup): both
    // are named.
    storage::Connection c(backup, storage::Connection::Mode::kReadWrite);
    for (const char* table : {"telemetry_batches", "telemetry_inbox"})
      c.exec(std::string("UPDATE ") + table + " SET envelope = envelope || X'00' WHERE rowid = " +
             "(SELECT min(rowid) FROM " + table + " WHERE envelope IS NOT NULL)");
    for (const char* table : {"telemetry_batches", "telemetry_inbox"})
      c.exec(std::string("DELETE FROM ") + table + " WHERE rowid = (SELECT max(rowid) FROM " +
             table + ")");
    // An envelope replaced along with its digest (it hashes right; the ledger lists another),
    // and a row no event lists (a copy under a seq never sent).
    const std::string nul_digest = common::sha256_hex(std::string(1, '\0'));
    for (const std::string table : {"telemetry_batches", "telemetry_inbox"}) {
      const std::string nth = "(SELECT rowid FROM " + table +
                              " WHERE envelope IS NOT NULL ORDER BY rowid LIMIT 1 OFFSET ";
      c.exec("UPDATE " + table + " SET envelope = X'00', digest = '" + nul_digest +
             "' WHERE rowid = " + nth + "1)");
      c.exec("CREATE TEMP TABLE copied AS SELECT * FROM " + table + " WHERE rowid = " + nth +
             "2); UPDATE copied SET seq = 999999; INSERT INTO " + table +
             " SELECT * FROM copied; DROP TABLE copied");
    }
  }
  auto tampered = s.kiln({"ledger", "verify", "--set", "storage.path=" + backup});
  BOOST_TEST(tampered.exit_code == 1, tampered.out + tampered.err);
  BOOST_TEST(contains(tampered.out, "ledger intact"), tampered.out);  // the chain is untouched
  BOOST_TEST(std::regex_search(tampered.out,
                               std::regex("telemetry BROKEN: [0-9]+ problem\\(s\\) between the "
                                          "[0-9]+ stored batches and the ledger's lists of them")),
             tampered.out);
  BOOST_TEST(contains(tampered.out, ": the stored envelope does not hash to its digest"),
             tampered.out);
  BOOST_TEST(contains(tampered.out, " but not stored"), tampered.out);
  BOOST_TEST(contains(tampered.out, ": its digest is not the one ledger seq "), tampered.out);
  BOOST_TEST(contains(tampered.out, "seq 999999: stored, but no telemetry.batches event lists it"),
             tampered.out);
  auto second = s.kiln({"db", "backup", backup});
  BOOST_TEST(second.exit_code == 1);
  BOOST_TEST(contains(second.err, "exists; name a new file"), second.err);
  // A recorder sending to a server opens no database where it runs (it made an empty one).
  TempDir elsewhere;
  auto remote_only = run({kKiln, "record", "--key", (s.dir.path() / "sim-7.key").string(),
                          "--server", "http://127.0.0.1:1", "--api-key", s.keys.at("operator"),
                          "--speed", "0", "--duration", "5", "--spool", "spool"},
                         s.env, elsewhere.path());
  BOOST_TEST(contains(remote_only.out, "waiting in the spool 1"),
             remote_only.out + remote_only.err);
  BOOST_TEST(!fs::exists(elsewhere.path() / "var"));
}

// A roaster following a roast live: `kiln predict --device D --follow` finds the roast under way,
// prints a line each time it asks (FCs and DROP with their bands as they come), and ends once the
// session closes at DROP; started after that roast, it waits for the next one.
BOOST_AUTO_TEST_CASE(predict_follows_the_roast_under_way_until_it_drops) {
  Server s({"recorder.enabled=true", "recorder.key_file={dir}/sim-p.key", "recorder.speed=60",
            "sessions.mission="},
           {{"devices", "add", "sim-p", "--tenant", "acme", "--key-out", "{dir}/sim-p.key"}});
  const std::string url = "http://127.0.0.1:" + std::to_string(s.port);
  const std::vector<std::string> remote = {"--server", url, "--api-key", s.keys.at("viewer")};
  auto with = [&](std::vector<std::string> args,
                  std::chrono::milliseconds timeout = std::chrono::seconds(120)) {
    args.insert(args.end(), remote.begin(), remote.end());
    args.insert(args.begin(), kKiln);
    return run(args, s.env, s.dir.path(), timeout);
  };
  auto followed = with({"predict", "--device", "sim-p", "--follow", "--every", "0.3"});
  BOOST_REQUIRE_MESSAGE(followed.exit_code == 0, followed.out << followed.err);
  std::smatch m;
  BOOST_REQUIRE_MESSAGE(
      std::regex_search(followed.out, m, std::regex("^following session (s-sim-p-[^ \n]+)\n")),
      followed.out);
  const std::string session = m[1];
  // Lines "M:SS  BT … °C  RoR … °C/min  …", their times moving on; FCs and DROP with their bands
  // once the curve allows, and the close at the end.
  std::istringstream lines(followed.out);
  int updates = 0, banded = 0;
  double last_t = -1;
  std::string line, final_line;
  const std::regex update("^([0-9]+):([0-9]{2})  BT [0-9.]+ °C  RoR -?[0-9.]+ °C/min  .*");
  while (std::getline(lines, line)) {
    final_line = line;
    if (!std::regex_match(line, m, update)) continue;
    const double t = std::stoi(m[1]) * 60 + std::stoi(m[2]);
    BOOST_TEST(t >= last_t, line);
    last_t = t;
    ++updates;
    banded += std::regex_search(line, std::regex("FCs [0-9]+:[0-9]{2} \\([0-9]+:[0-9]{2} - "
                                                 "[0-9]+:[0-9]{2}\\)  DROP [0-9]+:[0-9]{2} \\("));
  }
  BOOST_TEST(updates >= 5, followed.out);
  BOOST_TEST(banded >= 2, followed.out);
  BOOST_TEST(contains(final_line, "session " + session + " is closed (drop)"), followed.out);
  // The same as JSON lines, each with the session's id; a closed session ends it at once.
  auto as_json = with({"predict", session, "--follow", "--json"});
  BOOST_TEST(as_json.exit_code == 0, as_json.err);
  const auto closed = json::parse(as_json.out);
  BOOST_TEST(closed.at("status").as_string() == "closed");
  BOOST_TEST(closed.at("session").as_string() == session);
  // Started after the roast dropped: it waits for the next one (said once), not the last.
  auto later = with({"predict", "--device", "sim-p", "--follow", "--every", "0.2"}, 1500ms);
  BOOST_TEST(later.exit_code == -1);  // still waiting (or following the next roast) when stopped
  BOOST_TEST(contains(later.err,
                      "kiln predict: waiting for a roast on sim-p (its session opens "
                      "at CHARGE)\n"),
             later.err);
  BOOST_TEST(!contains(later.out, session), later.out);
  // Mistakes are said at once: an unknown session, --every without --follow.
  auto unknown = with({"predict", "s-nope@acme", "--follow"});
  BOOST_TEST(unknown.exit_code == 1, unknown.err);
  BOOST_TEST(contains(unknown.err, "not_found"), unknown.err);
  auto every = with({"predict", session, "--every", "2"});
  BOOST_TEST(every.exit_code == 2, every.err);
}

// Actuation reaches the roaster only through the kernel's command path: refused while the policy
// disallows it, refused without an approver when the policy requires one, applied (and in the
// ledger) once an approver approved the mission step — and the recorded readings show it.
BOOST_AUTO_TEST_CASE(roaster_commands_go_through_policy_and_approval) {
  test::TempDir cfg;
  {
    std::ifstream in(std::string(KILN_SOURCE_DIR) + "/config/policy.yaml");
    std::stringstream text;
    text << in.rdbuf();
    std::string policy = text.str();
    const std::string from = "  allowed: false";
    policy.replace(policy.find(from), from.size(), "  allowed: true ");
    const std::string review = "review: [approval_demo]";  // not among this test's templates
    policy.replace(policy.find(review), review.size(), "review: []");
    const std::string deny = "deny: [roaster_setting]";  // as the policy's comment says
    BOOST_REQUIRE(policy.find(deny) != std::string::npos);
    policy.replace(policy.find(deny), deny.size(), "deny: []");
    std::ofstream(cfg.path() / "policy.yaml") << policy;
    // The template kiln ships for it.
    fs::create_directories(cfg.path() / "missions");
    fs::copy_file(fs::path(KILN_SOURCE_DIR) / "config/missions/roaster_setting.yaml",
                  cfg.path() / "missions" / "roaster_setting.yaml");
  }
  // Disallowed by the embedded policy.
  {
    Server plain;
    auto r = plain.call("POST", "/v1/tools/roaster.command:invoke", "operator",
                        R"({"input": {"setting": "heater", "value": 3}})");
    BOOST_TEST(r.status == 403, r.body);
    BOOST_TEST(contains(r.body, "actuation.allowed: false"), r.body);
    // The shipped template is denied by the embedded policy: nothing waits for an approver.
    auto asked = plain.call("POST", "/v1/missions", "operator",
                            R"({"template": "roaster_setting", "inputs": {"setting": "fan",
                                                                          "level": 4}})");
    BOOST_TEST(body(asked).at("mission").at("state").as_string() == "BLOCKED", asked.body);
  }
  Server s({"policy.file=" + (cfg.path() / "policy.yaml").string(),
            "missions.dirs=[" + (cfg.path() / "missions").string() + "]",
            "sessions.mission=", "recorder.enabled=true", "recorder.key_file={dir}/sim-a.key",
            "recorder.speed=20", "missions.workers=1"},
           {{"devices", "add", "sim-a", "--tenant", "acme", "--key-out", "{dir}/sim-a.key"}});
  auto direct = s.call("POST", "/v1/tools/roaster.command:invoke", "operator",
                       R"({"input": {"setting": "heater", "value": 3}})");
  BOOST_TEST(direct.status == 403, direct.body);
  BOOST_TEST(contains(direct.body, "requires approval"), direct.body);
  // A level out of the setting's own range is refused when the mission is asked for.
  auto too_hot = s.call("POST", "/v1/missions", "operator",
                        R"({"template": "roaster_setting", "inputs": {"setting": "heater",
                                                                      "level": 12}})");
  BOOST_TEST(too_hot.status == 422, too_hot.body);
  BOOST_TEST(contains(too_hot.body, "heater levels are 0-9"), too_hot.body);
  auto created = s.call("POST", "/v1/missions", "operator",
                        R"({"template": "roaster_setting", "inputs": {"setting": "heater",
                                                                      "level": 2}})");
  BOOST_REQUIRE_MESSAGE(created.status == 201 || created.status == 200, created.body);
  const std::string id(body(created).at("mission").at("id").as_string());
  json::value m;
  for (int i = 0; i < 100; ++i) {
    m = body(s.call("GET", "/v1/missions/" + id, "viewer"));
    if (m.at("state").as_string() == "QUARANTINED") break;
    std::this_thread::sleep_for(100ms);
  }
  BOOST_REQUIRE_MESSAGE(m.at("state").as_string() == "QUARANTINED", json::serialize(m));
  BOOST_REQUIRE(s.call("POST", "/v1/missions/" + id + ":approve", "approver", "{}").status == 200);
  for (int i = 0; i < 100; ++i) {
    m = body(s.call("GET", "/v1/missions/" + id, "viewer"));
    if (m.at("state").as_string() == "DONE" || m.at("state").as_string() == "FAILED") break;
    std::this_thread::sleep_for(100ms);
  }
  BOOST_REQUIRE_MESSAGE(m.at("state").as_string() == "DONE", json::serialize(m));
  BOOST_TEST(m.at("steps").as_array()[0].at("output").at("approved_by").is_string());
  // The recorded readings show heater 2 once the command landed (the schedule said 7).
  bool seen = false;
  for (int i = 0; i < 150 && !seen; ++i) {
    std::this_thread::sleep_for(100ms);
    auto list = body(s.call("GET", "/v1/sessions?device=sim-a", "viewer"));
    for (const auto& x : list.as_array()) {
      auto rows = body(s.call(
          "GET", "/v1/sessions/" + std::string(x.at("id").as_string()) + "/samples", "viewer"));
      for (const auto& r : rows.at("samples").as_array())
        seen = seen || (r.as_array()[4].to_number<int>() == 2 && r.as_array()[7].as_int64() == 6);
    }
  }
  BOOST_TEST(seen, "no recorded reading with heater 2 while roasting");
  auto exported = s.kiln({"ledger", "export"});
  BOOST_TEST(contains(exported.out, "\"tool\":\"roaster.command\""),
             "roaster.command not in the ledger");
  // Every command with what it asked, refused or carried out, and who approved the one that ran
  // (a refused call named only the tool).
  std::size_t refused_seen = 0, done_seen = 0;
  std::istringstream rows(exported.out);
  for (std::string row; std::getline(rows, row);) {
    if (!contains(row, "\"tool\":\"roaster.command\"")) continue;
    if (contains(row, "\"tool.failed\"") &&
        contains(row, "\"input\":{\"setting\":\"heater\",\"value\":3}"))
      ++refused_seen;
    if (contains(row, "\"tool.completed\"") &&
        contains(row, "\"input\":{\"setting\":\"heater\",\"value\":2}") &&
        contains(row, "\"approved_by\":"))
      ++done_seen;
  }
  BOOST_TEST(refused_seen == 1u, exported.out);
  BOOST_TEST(done_seen == 1u, exported.out);
}

// The in-server recorder: a roaster switched off when the server starts is waited for (the API
// serves meanwhile; it stopped `kiln serve` with exit 3), and a device key the server refuses
// stops the recorder with one clear line instead of refusing every batch for ever.
BOOST_AUTO_TEST_CASE(the_in_server_recorder_waits_for_the_roaster_and_stops_on_a_refused_key) {
  {
    Server s(
        {"recorder.enabled=true", "recorder.key_file={dir}/r1-off.key",
         "nodes.telemetry_driver=bullet_r1", "plugin_config.telemetry_bullet_r1.transport=replay",
         "plugin_config.telemetry_bullet_r1.replay={dir}/not-recorded-yet.r1replay"},
        {{"devices", "add", "r1-off", "--tenant", "acme", "--key-out", "{dir}/r1-off.key"},
         {"gate", "run", "telemetry_driver/bullet_r1"}});
    BOOST_TEST(s.call("GET", "/ready", "viewer").status == 200);
    BOOST_TEST(s.call("GET", "/v1/sessions", "viewer").status == 200);
    BOOST_TEST(s.child->wait_for_stderr("recorder: waiting for the roaster: device_not_found", 10s),
               s.child->stderr_so_far());
  }
  {
    Server s({"recorder.enabled=true", "recorder.key_file={dir}/sim-r.key", "recorder.speed=50"},
             {{"devices", "add", "sim-r", "--tenant", "acme", "--key-out", "{dir}/sim-r.key"},
              {"devices", "revoke", "sim-r", "--tenant", "acme"}});
    BOOST_TEST(s.child->wait_for_stderr("recorder: stopped: every batch signed with key", 20s),
               s.child->stderr_so_far());
    std::this_thread::sleep_for(1s);
    const std::string log = s.child->stderr_so_far();
    std::size_t refusals = 0;
    for (std::size_t at = 0; (at = log.find("refused: revoked_key", at)) != std::string::npos; ++at)
      ++refusals;
    BOOST_TEST(refusals == 1u, log);
    BOOST_TEST(s.call("GET", "/ready", "viewer").status == 200);
    // `kiln config check` says so before a restart: the key is revoked, and a file that is no
    // device key is named as such; a registered key passes.
    const std::string key_file = (s.dir.path() / "sim-r.key").string();
    auto check = [&](const std::string& file) {
      return s.kiln({"config", "check", "--set", "recorder.enabled=true", "--set",
                     "recorder.key_file=" + file});
    };
    auto revoked = check(key_file);
    BOOST_TEST(revoked.exit_code == 3, revoked.out + revoked.err);
    BOOST_TEST(contains(revoked.err, "recorder.key_file: key "), revoked.err);
    BOOST_TEST(contains(revoked.err, "of device sim-r (tenant acme, " + key_file + ") is revoked"),
               revoked.err);
    BOOST_TEST(contains(revoked.err, "kiln devices rotate sim-r --key-out FILE"), revoked.err);
    std::ofstream(s.dir.path() / "notes.txt") << "not a key\n";
    auto not_key = check((s.dir.path() / "notes.txt").string());
    BOOST_TEST(not_key.exit_code == 3);
    BOOST_TEST(contains(not_key.err, "notes.txt"), not_key.err);
    auto added = s.kiln({"devices", "add", "sim-s", "--tenant", "acme", "--key-out",
                         (s.dir.path() / "sim-s.key").string()});
    BOOST_REQUIRE(added.exit_code == 0);
    auto fine = check((s.dir.path() / "sim-s.key").string());
    BOOST_TEST(fine.exit_code == 0, fine.err);
    // An interval the readings' tenths cannot hold is refused at load, for every command.
    auto interval = s.kiln({"config", "check", "--set", "telemetry_driver.interval_s=0.25"});
    BOOST_TEST(interval.exit_code == 3);
    BOOST_TEST(contains(interval.err,
                        "telemetry_driver.interval_s: must be a positive multiple "
                        "of 0.1"),
               interval.err);
  }
}
