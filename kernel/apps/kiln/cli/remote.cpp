// Client mode: with --server URL (or KILN_SERVER_URL) the commands that have an HTTP route call
// a running `kiln serve` instead of opening the local database.
#include "cli/remote.hpp"

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <set>
#include <thread>

#include <boost/json.hpp>

#include "cli/commands.hpp"
#include "cli/files.hpp"
#include "cli/json_print.hpp"
#include "cli/mission_commands.hpp"
#include "cli/telemetry_commands.hpp"
#include "http/client.hpp"
#include "http/router.hpp"
#include "runtime/kernel.hpp"
#include "telemetry/devices.hpp"

namespace kiln::cli {
namespace json = boost::json;

namespace {

std::string enc(const std::string& s) {
  return url_encode(s);
}

struct Remote {
  http::Client client;
  std::string key;
  std::string name;  // command, for messages

  http::ClientResponse call(const std::string& method, const std::string& target,
                            const std::string& body = "",
                            std::vector<std::pair<std::string, std::string>> headers = {}) {
    if (!key.empty()) headers.emplace_back("Authorization", "Bearer " + key);
    return client.request(method, target, body, std::move(headers));
  }
};

// Prints a 2xx body, or the server's error; returns the exit code.
int finish(const Remote& r, const http::ClientResponse& res, std::ostream& out, std::ostream& err,
           bool raw = false) {
  if (res.status >= 200 && res.status < 300) {
    if (raw) {
      out << res.body;
    } else {
      json::error_code ec;
      auto v = json::parse(res.body, ec);
      out << (ec ? res.body + "\n" : pretty(v));
    }
    return runtime::kExitOk;
  }
  std::string code = "error", message = res.body;
  json::error_code ec;
  auto v = json::parse(res.body, ec);
  if (!ec && v.is_object() && v.as_object().contains("error")) {
    const auto& e = v.at("error");
    code = std::string(e.at("code").as_string());
    message = std::string(e.at("message").as_string());
  }
  err << "kiln " << r.name << ": server answered " << res.status << " " << code << ": " << message
      << "\n";
  if (res.status == 401 && r.key.empty())
    err << "(pass --api-key KEY or set KILN_API_KEY; `kiln keys create` makes one)\n";
  // Refused input exits as the same command does locally (2): a value that does not fit what it
  // acts on (invalid_input) or the route's schema (invalid_request, e.g. a weight under 10 g).
  return code == "invalid_input" || code == "invalid_request" ? runtime::kExitUsage
                                                              : runtime::kExitFailed;
}

std::string reason_body(const Args& a) {
  return a.reason ? json::serialize(json::object{{"reason", *a.reason}}) : std::string("{}");
}

std::string need_id(const Args& a, const std::string& cmd) {
  if (a.positional.size() < 3) throw std::invalid_argument(cmd + " needs an ID");
  return a.positional[2];
}

// A server's mission answer (`member`: where the mission is in the body, "" for the body itself)
// shown as the local command shows it, "{id}" in `headline` its id and its state after it; --json,
// an error or an unexpected body as `finish` shows them.
int mission_answer(const Remote& r, const http::ClientResponse& res, const Args& a,
                   const std::string& headline, std::ostream& out, std::ostream& err,
                   const char* member = "") {
  json::error_code ec;
  auto v = json::parse(res.body, ec);
  // Past --timeout a mission not settled is exit 1, with --json too (as locally).
  const auto unsettled = [&](const json::value& m) {
    const auto* s = m.is_object() ? m.as_object().if_contains("state") : nullptr;
    return a.wait && s && s->is_string() && !missions::is_settled(s->as_string());
  };
  if (a.json && res.status < 300 && !ec && v.is_object()) {
    const int rc = finish(r, res, out, err);
    const json::value* m = *member ? v.as_object().if_contains(member) : &v;
    return m && unsettled(*m) ? runtime::kExitFailed : rc;
  }
  if (a.json || res.status >= 300 || ec || !v.is_object()) return finish(r, res, out, err);
  try {
    const auto m = missions::MissionView::from_json(*member ? v.at(member) : v);
    std::string line = headline;
    if (const auto at = line.find("{id}"); at != std::string::npos) line.replace(at, 4, m.id);
    int rc = report_mission(a, out, m, line + m.state);
    if (a.wait && !missions::is_settled(m.state)) {
      out << "timed out waiting (--timeout): mission " << m.id << " stays " << m.state
          << (m.reason.empty() ? "" : " (" + m.reason + ")")
          << "; the server's workers go on with it\n";
      rc = runtime::kExitFailed;
    }
    return rc;
  } catch (const std::exception&) {
    return finish(r, res, out, err);
  }
}

// Polls mission `id` until the server's workers settle it (DONE, FAILED, CANCELED, BLOCKED or
// QUARANTINED) or --timeout passes; the last answer.
http::ClientResponse wait_settled(Remote& r, const Args& a, const std::string& id) {
  const double seconds = number_arg(a.timeout, "--timeout (seconds)", 3600, 0.001, 864000);
  const auto deadline = std::chrono::steady_clock::now() +
                        std::chrono::milliseconds(static_cast<std::int64_t>(seconds * 1000));
  for (;;) {
    auto show = r.call("GET", "/v1/missions/" + enc(id));
    if (show.status != 200) return show;
    const auto state = std::string(json::parse(show.body).at("state").as_string());
    if (missions::is_settled(state) || std::chrono::steady_clock::now() > deadline) return show;
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
}

}  // namespace

// The response format of `kiln say`: --format, else FILE's extension, else wav.
std::string say_format(const Args& a) {
  if (a.format) return *a.format;
  if (!a.out_file) return "wav";
  std::string ext = std::filesystem::path(*a.out_file).extension().string();
  if (!ext.empty()) ext.erase(0, 1);
  for (auto& c : ext) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  if (ext == "raw") return "pcm";
  if (ext == "ogg") return "opus";
  if (ext == "wav" || ext == "pcm" || ext == "flac" || ext == "mp3" || ext == "opus") return ext;
  return "wav";
}

ServerTarget server_target(const Args& a) {
  ServerTarget t{a.server.value_or(""), a.api_key.value_or("")};
  if (t.url.empty())
    if (const char* env = std::getenv("KILN_SERVER_URL")) t.url = env;
  if (t.key.empty())
    if (const char* env = std::getenv("KILN_API_KEY")) t.key = env;
  return t;
}

std::string url_encode(const std::string& s) {
  std::string out;
  static const char* hex = "0123456789ABCDEF";
  for (unsigned char c : s) {
    if (std::isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~') {
      out += static_cast<char>(c);
    } else {
      out += '%';
      out += hex[c >> 4];
      out += hex[c & 15];
    }
  }
  return out;
}

// A list the local command prints as a table: the same table from the server's JSON array
// (--json, an error or an unexpected body go out as `finish` shows them).
static int table(const Remote& r, const http::ClientResponse& res, const Args& a,
                 void (*print)(const json::array&, std::ostream&), std::ostream& out,
                 std::ostream& err) {
  json::error_code ec;
  auto v = json::parse(res.body, ec);
  if (a.json || res.status != 200 || ec || !v.is_array()) return finish(r, res, out, err);
  print(v.as_array(), out);
  if (!res.header("link").empty()) print_next_page(v.as_array(), out);  // a full page
  return runtime::kExitOk;
}

bool client_mode(const std::string& name) {
  static const std::set<std::string> kCommands = {"plugins list",
                                                  "nodes",
                                                  "gate status",
                                                  "tool list",
                                                  "tool invoke",
                                                  "say",
                                                  "mission templates",
                                                  "mission start",
                                                  "mission list",
                                                  "mission show",
                                                  "mission artifact",
                                                  "mission approve",
                                                  "mission cancel",
                                                  "mission retry",
                                                  "ledger export",
                                                  "devices add",
                                                  "devices rotate",
                                                  "devices revoke",
                                                  "devices list",
                                                  "devices profile",
                                                  "sessions list",
                                                  "sessions show",
                                                  "sessions mark",
                                                  "sessions weigh",
                                                  "sessions export",
                                                  "record",
                                                  "report",
                                                  "predict",
                                                  "server health",
                                                  "server ready",
                                                  "server metrics",
                                                  "server openapi"};
  return kCommands.count(name) > 0 || name.rfind("profiles ", 0) == 0;
}

std::optional<int> run_remote(const std::string& name, const Args& a, std::ostream& out,
                              std::ostream& err) {
  // These talk to the server themselves (record sends telemetry, report invokes tools).
  if (name == "record" || name == "report" || name == "predict" || name == "sessions export" ||
      name.rfind("profiles ", 0) == 0 || name == "devices profile")
    return std::nullopt;
  const auto [url, key] = server_target(a);
  if (url.empty()) return std::nullopt;
  Remote r{http::Client(url), key, name};
  // Before anything is asked of the server: a --timeout it cannot use would be found only after
  // the mission was started.
  if (a.timeout) number_arg(a.timeout, "--timeout (seconds)", 3600, 0.001, 864000);

  if (name == "say") {
    if (a.positional.size() != 2)
      throw std::invalid_argument("say needs exactly one TEXT (quote it)");
    const std::string format = say_format(a);
    const std::string file = a.out_file.value_or("speech." + format);
    json::object body{{"model", "kiln"}, {"input", a.positional[1]}, {"response_format", format}};
    body["voice"] = a.voice.value_or("alloy");  // OpenAI's names speak with the default voice
    if (a.speed) body["speed"] = number_arg(a.speed, "--speed", 1, 0.25, 4.0);
    auto res = r.call("POST", "/v1/audio/speech", json::serialize(body),
                      {{"Content-Type", "application/json"}});
    if (res.status != 200) return finish(r, res, out, err);
    std::ofstream f(file, std::ios::binary);
    f << res.body;
    f.close();
    if (!f) {
      err << "kiln say: cannot write " << file << "\n";
      return runtime::kExitFailed;
    }
    if (a.json) {
      // What the server said of it (the speech API answers audio, not the tool's numbers).
      out << pretty(json::object{{"file", file},
                                 {"format", format},
                                 {"bytes", static_cast<std::int64_t>(res.body.size())},
                                 {"voice", res.header("x-kiln-voice")},
                                 {"media_type", res.header("content-type")},
                                 {"server", url}});
      return runtime::kExitOk;
    }
    out << "wrote " << file << ": " << res.body.size() << " bytes of " << format << " audio from "
        << url << " (voice " << res.header("x-kiln-voice") << ")\n";
    return runtime::kExitOk;
  }
  if (name == "server health") return finish(r, r.call("GET", "/health"), out, err);
  if (name == "server ready") return finish(r, r.call("GET", "/ready"), out, err);
  if (name == "server metrics") return finish(r, r.call("GET", "/metrics"), out, err, true);
  if (name == "server openapi") return finish(r, r.call("GET", "/openapi.json"), out, err);
  if (name == "plugins list") return finish(r, r.call("GET", "/v1/plugins"), out, err);
  if (name == "nodes") return table(r, r.call("GET", "/v1/nodes"), a, print_nodes, out, err);
  if (name == "gate status") return finish(r, r.call("GET", "/v1/gates"), out, err);
  if (name == "tool list") return finish(r, r.call("GET", "/v1/tools"), out, err);
  if (name == "tool invoke") {
    if (a.positional.size() < 3) throw std::invalid_argument("tool invoke needs a tool NAME");
    json::error_code ec;
    auto input = json::parse(a.input.value_or("{}"), ec);
    if (ec) throw std::invalid_argument("--input is not valid JSON: " + ec.message());
    return finish(r,
                  r.call("POST", "/v1/tools/" + enc(a.positional[2]) + ":invoke",
                         json::serialize(json::object{{"input", input}})),
                  out, err);
  }
  if (name == "mission start") {
    if (a.positional.size() < 3) throw std::invalid_argument("mission start needs a TEMPLATE");
    // The template's inputs, for the types of --param values (the server checks them anyway).
    std::optional<json::object> schema;
    if (!a.params.empty()) {
      auto listed = r.call("GET", "/v1/mission-templates");
      json::error_code ec;
      const auto v = json::parse(listed.body, ec);
      if (listed.status == 200 && !ec && v.is_array())
        for (const auto& t : v.as_array())
          if (t.is_object() && t.as_object().contains("inputs") &&
              t.at("name") == a.positional[2].c_str() && t.at("inputs").is_object())
            schema = json::object{{"properties", t.at("inputs")}};
    }
    const json::object inputs = parse_inputs(a, schema ? &*schema : nullptr);
    json::object body{{"template", a.positional[2]}, {"inputs", inputs}};
    if (a.idempotency_key) body["idempotency_key"] = *a.idempotency_key;
    auto res = r.call("POST", "/v1/missions", json::serialize(body));
    const bool created = res.status == 201;
    if (!a.wait || res.status >= 300)
      return mission_answer(r, res, a,
                            created ? "created mission {id}: "
                                    : "mission {id} already exists for this idempotency key: ",
                            out, err, "mission");
    // --wait: poll until the server's workers settle it.
    const std::string id(json::parse(res.body).at("mission").at("id").as_string());
    return mission_answer(r, wait_settled(r, a, id), a, "mission {id}: ", out, err);
  }
  if (name == "mission templates")
    return table(r, r.call("GET", "/v1/mission-templates"), a, print_templates, out, err);
  if (name == "mission list") {
    std::string q = "?limit=" + enc(a.limit.value_or("100"));
    if (a.state) q += "&state=" + enc(*a.state);
    if (a.template_name) q += "&template=" + enc(*a.template_name);
    if (a.starting_after) q += "&starting_after=" + enc(*a.starting_after);
    return table(r, r.call("GET", "/v1/missions" + q), a, print_missions, out, err);
  }
  if (name == "mission show") {
    const std::string id = need_id(a, name);
    auto res = r.call("GET", "/v1/missions/" + enc(id));
    json::error_code ec;
    auto v = json::parse(res.body, ec);
    if (a.json || res.status != 200 || ec) return finish(r, res, out, err);
    // Its history, as the local command prints it: the mission's stream of the ledger.
    auto events = r.call("GET", "/v1/ledger?limit=1000&stream=" + enc("mission/" + id));
    json::error_code ec2;
    auto page = json::parse(events.body, ec2);
    try {
      print_mission(missions::MissionView::from_json(v), out);
    } catch (const std::exception&) {
      return finish(r, res, out, err);
    }
    if (events.status == 200 && !ec2 && page.is_object())
      print_mission_history(page.at("events").as_array(), out);
    return runtime::kExitOk;
  }
  if (name == "mission artifact") {
    if (a.positional.size() < 5)
      throw std::invalid_argument(
          "mission artifact needs ID STEP NAME (kiln mission show ID lists each step's files)");
    const auto& file_name = a.positional[4];
    auto res = r.call("GET", "/v1/missions/" + enc(a.positional[2]) + "/artifacts/" +
                                 enc(a.positional[3]) + "/" + enc(file_name));
    if (res.status != 200) return finish(r, res, out, err);
    const std::string file = a.out_file.value_or(file_name);
    write_output_file(file, res.body);
    out << "wrote " << file << " (" << res.body.size() << " bytes of " << res.header("content-type")
        << " from " << url << ")\n";
    return runtime::kExitOk;
  }
  for (const char* verb : {"approve", "cancel", "retry"})
    if (name == std::string("mission ") + verb) {
      const std::string id = need_id(a, name);
      auto res = r.call("POST", "/v1/missions/" + enc(id) + ":" + verb, reason_body(a));
      const std::string done = std::string(verb) == "approve"  ? "approved"
                               : std::string(verb) == "cancel" ? "canceled"
                                                               : "retrying";
      // --wait (approve, retry): until the server's workers settle it, as locally.
      if (a.wait && res.status == 200 && std::string(verb) != "cancel")
        res = wait_settled(r, a, id);
      const int rc = mission_answer(r, res, a, done + " mission " + id + ": ", out, err);
      // A cancel that went through succeeded (the mission's CANCELED state is what was asked).
      return std::string(verb) == "cancel" && res.status == 200 ? runtime::kExitOk : rc;
    }
  if (name == "devices list")
    return table(r, r.call("GET", "/v1/devices"), a, print_devices, out, err);
  if (name == "devices add" || name == "devices rotate") {
    if (a.positional.size() < 3) throw std::invalid_argument(name + " needs a DEVICE");
    if (a.key_file && !a.public_key && std::filesystem::exists(*a.key_file))
      throw std::invalid_argument(*a.key_file +
                                  " exists; a device key is never overwritten (choose another "
                                  "--key-out)");
    json::object body;
    if (a.public_key) {
      // Checked here as locally (exit 2 naming the flag), not as the server's body field.
      try {
        telemetry::parse_device_public_key(*a.public_key);
      } catch (const std::invalid_argument& e) {
        throw std::invalid_argument(std::string("--public-key: ") + e.what());
      }
      body["public_key"] = *a.public_key;
    }
    if (name == "devices add") body["device"] = a.positional[2];
    if (a.grace && name == "devices rotate")
      body["grace_s"] =
          static_cast<std::int64_t>(number_arg(a.grace, "--grace", 3600, 0, 30 * 86400, true));
    auto res = name == "devices add"
                   ? r.call("POST", "/v1/devices", json::serialize(body),
                            {{"Content-Type", "application/json"}})
                   : r.call("POST", "/v1/devices/" + enc(a.positional[2]) + ":rotate",
                            json::serialize(body), {{"Content-Type", "application/json"}});
    if (res.status >= 300) return finish(r, res, out, err);
    auto v = json::parse(res.body);
    if (v.as_object().contains("secret_key")) {
      // The secret comes once: straight into a private file, never to the terminal.
      json::object c{{"tenant", v.at("tenant")},
                     {"device", v.at("device")},
                     {"kid", v.at("kid")},
                     {"secret_key", v.at("secret_key")}};
      const std::string file = a.key_file.value_or(
          default_key_file("var/devices", std::string(v.at("tenant").as_string()),
                           std::string(v.at("device").as_string()),
                           std::string(v.at("kid").as_string()))
              .string());
      telemetry::DeviceCredentials::from_json(c).write(file);
      v.as_object().erase("secret_key");
      v.as_object()["key_file"] = file;
    }
    out << pretty(v);
    return runtime::kExitOk;
  }
  if (name == "devices revoke")
    return finish(r,
                  r.call("POST", "/v1/devices/" + enc(need_id(a, name)) + ":revoke", "{}",
                         {{"Content-Type", "application/json"}}),
                  out, err);
  if (name == "sessions list") {
    std::string q = "?limit=" + enc(a.limit.value_or("100"));
    if (a.device) q += "&device=" + enc(*a.device);
    if (a.since) q += "&since=" + std::to_string(utc_seconds(*a.since, "--since"));
    if (a.starting_after) q += "&starting_after=" + enc(*a.starting_after);
    return table(r, r.call("GET", "/v1/sessions" + q), a, print_sessions, out, err);
  }
  if (name == "sessions show") {
    auto res = r.call("GET", "/v1/sessions/" + enc(need_id(a, name)));
    json::error_code ec;
    auto v = json::parse(res.body, ec);
    if (a.json || res.status != 200 || ec || !v.is_object()) return finish(r, res, out, err);
    print_session(v.as_object(), out);
    return runtime::kExitOk;
  }
  if (name == "sessions mark" || name == "sessions weigh") {
    std::optional<http::ClientResponse> refused;  // the listing of --device's sessions
    auto m = mark_args(a, [&](const std::string& device) -> std::optional<std::string> {
      auto res = r.call("GET", "/v1/sessions?limit=1&device=" + enc(device));
      json::error_code ec;
      const auto v = json::parse(res.body, ec);
      if (res.status != 200 || ec || !v.is_array()) {
        refused = std::move(res);
        return std::string();
      }
      if (v.as_array().empty()) return std::nullopt;
      return std::string(v.as_array().front().at("id").as_string());
    });
    if (refused) return finish(r, *refused, out, err);
    auto res = r.call("POST", "/v1/sessions/" + enc(m.session) + ":" + m.action,
                      json::serialize(m.body), {{"Content-Type", "application/json"}});
    json::error_code ec;
    auto v = json::parse(res.body, ec);
    if (a.json || res.status != 200 || ec || !v.is_object()) return finish(r, res, out, err);
    print_session(v.as_object(), out);
    return runtime::kExitOk;
  }
  if (name == "ledger export") {
    // Every page, as JSON lines, like the local export.
    std::string after = a.since.value_or("0");
    if (after.empty() || after.size() > 18 ||
        !std::all_of(after.begin(), after.end(), [](char c) { return c >= '0' && c <= '9'; }))
      throw std::invalid_argument("--since '" + after +
                                  "': with --server it takes a seq number (the API pages by "
                                  "seq); a time works against the local database");
    ExportOutput to(a.out_file, out);
    for (;;) {
      std::string q = "?limit=1000&after=" + enc(after);
      if (a.stream) q += "&stream=" + enc(*a.stream);
      auto res = r.call("GET", "/v1/ledger" + q);
      if (res.status != 200) return finish(r, res, out, err);
      auto page = json::parse(res.body);
      for (const auto& e : page.at("events").as_array()) to.write(json::serialize(e) + "\n");
      if (page.at("next_after").is_null()) {
        to.finish();
        return runtime::kExitOk;
      }
      after = std::to_string(page.at("next_after").as_int64());
    }
  }
  // KILN_SERVER_URL, set for the client-mode commands, is not a reason to refuse a local one.
  err << "kiln " << name << ": not available with --server; it runs against the local deployment ("
      << (a.server ? "drop --server" : "KILN_SERVER_URL is set: unset it for this command")
      << ")\n";
  return runtime::kExitUsage;
}

}  // namespace kiln::cli
