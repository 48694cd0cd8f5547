#include "config/config.hpp"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <set>
#include <sstream>

#include <unistd.h>

#include <spdlog/spdlog.h>
#include <yaml-cpp/yaml.h>

#include "common/strings.hpp"
#include "common/yaml.hpp"

extern char** environ;

namespace kiln::config {
using common::mark_of;
using common::yaml_to_json;
namespace json = boost::json;
using common::did_you_mean;
using common::join;

std::string_view type_name(Type t) {
  switch (t) {
    case Type::kString:
      return "string";
    case Type::kInteger:
      return "integer";
    case Type::kNumber:
      return "number";
    case Type::kBoolean:
      return "boolean";
    case Type::kStringList:
      return "list of strings";
    case Type::kStringMap:
      return "map of strings";
    case Type::kArray:
      return "array";
    case Type::kObject:
      return "object";
  }
  return "?";
}

// ---- Schema -----------------------------------------------------------------------------------

void Schema::add(KeyDef def) {
  keys_.push_back(std::move(def));
}

void Schema::range(std::string_view path, std::optional<double> lo, std::optional<double> hi,
                   bool lo_exclusive) {
  for (auto& k : keys_)
    if (k.path == path) {
      k.lo = lo;
      k.hi = hi;
      k.lo_exclusive = lo_exclusive;
      return;
    }
  throw std::logic_error("config schema: no key " + std::string(path) + " to bound");
}

const KeyDef* Schema::find(std::string_view path) const {
  for (const auto& k : keys_)
    if (k.path == path) return &k;
  return nullptr;
}

bool Schema::is_section(std::string_view path) const {
  if (path.empty()) return true;
  for (const auto& k : keys_)
    if (k.path.size() > path.size() && k.path.compare(0, path.size(), path) == 0 &&
        k.path[path.size()] == '.')
      return true;
  return false;
}

std::vector<std::string> Schema::children(std::string_view section) const {
  std::set<std::string> out;
  for (const auto& k : keys_) {
    std::string_view p = k.path;
    if (!section.empty()) {
      if (p.size() <= section.size() || p.compare(0, section.size(), section) != 0 ||
          p[section.size()] != '.')
        continue;
      p.remove_prefix(section.size() + 1);
    }
    out.emplace(p.substr(0, p.find('.')));
  }
  if (section.empty()) out.emplace("plugin_config");
  return {out.begin(), out.end()};
}

std::vector<std::string> Schema::paths() const {
  std::vector<std::string> out;
  for (const auto& k : keys_) out.push_back(k.path);
  return out;
}

Schema kernel_schema(const std::vector<NodeKindInfo>& kinds) {
  Schema s;
  s.add({"log.level",
         Type::kString,
         "info",
         "minimum level logged",
         {"trace", "debug", "info", "warn", "error", "critical", "off"},
         {}});
  s.add({"log.format", Type::kString, "text", "log line format", {"text", "json"}, {}});
  s.add({"plugins.search_paths",
         Type::kStringList,
         json::array{"${exe_dir}/../plugins", "${exe_dir}/../lib/kiln/plugins"},
         "directories searched for plugin .so files (${exe_dir}, ${config_dir} expand)",
         {},
         {}});
  s.add({"plugins.disabled",
         Type::kStringList,
         json::array{},
         "plugin names not to load even if found",
         {},
         {}});
  s.add({"plugins.on_error",
         Type::kString,
         "fail",
         "what a plugin that cannot be loaded does to startup",
         {"fail", "skip"},
         {}});
  {
    KeyDef path{"storage.path",
                Type::kString,
                "var/kiln.db",
                "the SQLite database (ledger, missions, ...); created with its directory",
                {},
                {}};
    // An empty value (an unset variable in an environment file) would open a temporary database
    // that vanishes with the process.
    path.check = [](const std::string& v) -> std::optional<std::string> {
      if (v.empty() || v.back() == '/')
        return "must name the database file (e.g. /var/lib/kiln/kiln.db), got '" + v + "'";
      return std::nullopt;
    };
    s.add(std::move(path));
  }
  s.add({"storage.artifacts",
         Type::kString,
         "var/artifacts",
         "where plugins keep their files (HostServices::artifact_dir: the roast reports' pages), "
         "a directory per plugin",
         {},
         {}});
  s.add({"gates.dir", Type::kString, "var/gates", "the gate store directory", {}, {}});
  s.add({"gates.enforce",
         Type::kString,
         "strict",
         "strict: an ungated non-default node stops startup; warn: it runs, loudly",
         {"strict", "warn"},
         {}});
  s.add({"gates.check_timeout_s",
         Type::kInteger,
         300,
         "`kiln gate run`: a check of a suite that runs longer fails the gate (a node that hangs "
         "or deadlocks), recorded as such",
         {},
         1});
  s.add({"tool_strategy.providers",
         Type::kStringMap,
         json::object{},
         "tool name -> provider (plugin) that serves it",
         {},
         {}});
  s.add({"tool_strategy.timeout_ms", Type::kInteger, 30000, "per-call timeout", {}, 1});
  s.add({"tts_engine.max_chars",
         Type::kInteger,
         4096,
         "largest text (bytes of UTF-8) one speech request may carry; longer → 413",
         {},
         1});
  {
    KeyDef interval{"telemetry_driver.interval_s",
                    Type::kNumber,
                    1.0,
                    "seconds between a roaster's readings (drivers that choose it; a multiple of "
                    "0.1)",
                    {},
                    {}};
    // Device times are tenths of a second (DOMAIN §1): a reading between two would be placed on
    // one of them, and the simulated roaster refuses it at start.
    interval.check = [](const std::string& text) -> std::optional<std::string> {
      const double v = std::stod(text);  // a number already (checked before)
      if (v >= 0.1 && std::abs(v * 10 - std::round(v * 10)) < 1e-6) return std::nullopt;
      return "must be a positive multiple of 0.1 (seconds: device times are tenths), got " + text;
    };
    s.add(std::move(interval));
  }
  s.add({"event_detector.probe_lag_s",
         Type::kNumber,
         3.0,
         "seconds the BT probe's fall lags the beans going in; a CHARGE found from BT alone is "
         "moved back by it (2-5 s measured on a Bullet R1); 0..60",
         {},
         {}});
  s.add({"telemetry.max_skew_s",
         Type::kNumber,
         300.0,
         "how far a device's clock (an envelope's sent_at) may be ahead of the server's; beyond "
         "it the envelope is refused (clock_skew)",
         {},
         {}});
  s.add({"telemetry.max_age_s",
         Type::kNumber,
         604800.0,
         "oldest accepted envelope (its sent_at), e.g. one that waited in a recorder's spool",
         {},
         {}});
  s.add({"telemetry.max_batch_samples",
         Type::kInteger,
         600,
         "samples one signed envelope may carry (oversized_batch beyond)",
         {},
         1});
  s.add({"telemetry.max_batch_bytes",
         Type::kInteger,
         65536,
         "bytes one signed envelope may have (oversized_batch beyond)",
         {},
         256});
  s.add({"telemetry.sequence_window",
         Type::kInteger,
         64,
         "a batch whose sequence number is this far behind the device's highest is refused "
         "(stale_sequence); within it, late batches are accepted once",
         {},
         1});
  s.add({"recorder.enabled",
         Type::kBoolean,
         false,
         "kiln serve reads the telemetry_driver node itself and ingests locally (the driver "
         "roaster.command reaches)",
         {},
         {}});
  s.add({"recorder.key_file",
         Type::kString,
         "",
         "the device key the in-server recorder signs with (`kiln devices add` writes it)",
         {},
         {}});
  s.add({"recorder.speed",
         Type::kNumber,
         1.0,
         "for drivers that do not pace themselves (the simulated roaster): readings at this "
         "multiple of real time",
         {},
         {}});
  s.add({"recorder.batch", Type::kInteger, 10, "readings per signed batch", {}, 1});
  s.add({"sessions.preroll_s",
         Type::kNumber,
         30.0,
         "seconds of samples before CHARGE that belong to a roast session",
         {},
         {}});
  s.add({"sessions.silence_s",
         Type::kNumber,
         120.0,
         "an open session with no new samples for this long (wall time) closes",
         {},
         {}});
  s.add({"sessions.resume_gap_s",
         Type::kNumber,
         30.0,
         "a session closed for silence opens again when its device's readings go on within this "
         "many seconds (device time) of its last one: the recorder's spool drained late",
         {},
         {}});
  s.add({"sessions.max_length_s",
         Type::kNumber,
         1800.0,
         "a session longer than this after CHARGE closes",
         {},
         {}});
  s.add({"sessions.min_length_s",
         Type::kNumber,
         60.0,
         "a session that closes at a DROP sooner than this after CHARGE (a roaster's state "
         "flickering, its program started over) starts no report",
         {},
         {}});
  s.add({"sessions.mission",
         Type::kString,
         "roast_report",
         "the mission template started for every closed session ('' for none)",
         {},
         {}});
  s.add({"tool_strategy.max_attempts",
         Type::kInteger,
         1,
         "attempts per provider on retryable errors",
         {},
         1});
  s.add({"runtime.backoff_initial_ms",
         Type::kInteger,
         100,
         "delay before the first retry of a retryable tool error (doubles, with jitter)",
         {},
         0});
  s.add({"runtime.backoff_max_ms", Type::kInteger, 5000, "longest delay between retries", {}, 0});
  s.add({"runtime.isolated_plugins",
         Type::kStringList,
         json::array{},
         "plugins whose tools run in a child `kiln node-host` process",
         {},
         {}});
  s.add({"runtime.node_host_exe",
         Type::kString,
         "${exe_dir}/kiln",
         "the kiln binary started as node-host for isolated plugins",
         {},
         {}});
  s.add({"runtime.audit_tool_calls",
         Type::kBoolean,
         true,
         "record tool.called / tool.completed / tool.failed in the ledger",
         {},
         {}});
  s.add({"server.host", Type::kString, "127.0.0.1", "address the HTTP server listens on", {}, {}});
  s.add({"server.port",
         Type::kInteger,
         8080,
         "HTTP port (0: any free port, logged at start)",
         {},
         0});
  s.add({"server.threads", Type::kInteger, 0, "I/O threads (0: one per core)", {}, 0});
  s.add({"server.header_limit_bytes",
         Type::kInteger,
         16384,
         "largest request header block (larger: 431)",
         {},
         1024});
  s.add({"server.body_limit_bytes",
         Type::kInteger,
         1048576,
         "largest request body, unless a route sets its own (larger: 413)",
         {},
         0});
  s.add({"server.request_timeout_ms",
         Type::kInteger,
         30000,
         "time to receive one request and to send its response",
         {},
         100});
  s.add({"server.idle_timeout_ms",
         Type::kInteger,
         60000,
         "a kept-alive connection without a new request is closed after this",
         {},
         100});
  s.add({"server.drain_timeout_ms",
         Type::kInteger,
         10000,
         "on SIGTERM, how long requests in flight may take to finish",
         {},
         0});
  s.add({"server.max_connections",
         Type::kInteger,
         1024,
         "client connections open at once; one more is answered 503 and closed",
         {},
         1});
  s.add({"server.max_connections_per_client",
         Type::kInteger,
         0,
         "connections open at once from one client address; one more is answered 503 and "
         "closed (0: no cap per client)",
         {},
         0});
  s.add({"server.access_log", Type::kBoolean, true, "one log line per request", {}, {}});
  s.add({"server.access_log_skip",
         Type::kStringList,
         json::array{},
         "paths whose answers below 400 the access log leaves out, e.g. [/health, /ready, "
         "/metrics] for monitoring probes",
         {},
         {}});
  {
    KeyDef cors{"server.cors_origins",
                Type::kStringList,
                json::array{},
                "browser origins whose pages may call the API (CORS), e.g. https://dash.example; "
                "\"*\": any; empty: none",
                {},
                {}};
    // An origin as a browser sends it: scheme://host[:port] and nothing after (a trailing slash
    // would never match, and every page would be refused without a word).
    cors.check = [](const std::string& origin) -> std::optional<std::string> {
      const auto scheme = origin.find("://");
      if (origin == "*" ||
          ((origin.rfind("http://", 0) == 0 || origin.rfind("https://", 0) == 0) &&
           origin.size() > scheme + 3 && origin.find('/', scheme + 3) == std::string::npos))
        return std::nullopt;
      return "'" + origin +
             "' is not an origin: write it as a browser sends it, scheme://host[:port] with no "
             "path or trailing slash (e.g. https://dash.example), or \"*\" for any";
    };
    s.add(std::move(cors));
  }
  s.add({"server.public_routes",
         Type::kStringList,
         json::array{"/health", "/ready", "/metrics", "/openapi.json"},
         "operations routes that need no API key (the others need a viewer key)",
         {},
         {}});
  s.add({"policy.file",
         Type::kString,
         "",
         "policy-as-code file; empty: the embedded config/policy.yaml",
         {},
         {}});
  s.add({"missions.dirs",
         Type::kStringList,
         json::array{},
         "directories of mission templates (*.yaml); empty: the embedded config/missions/",
         {},
         {}});
  s.add({"missions.workers",
         Type::kInteger,
         2,
         "mission workers `kiln serve` runs (0: none; `kiln mission work` runs them instead)",
         {},
         0});
  s.add({"missions.lease_ms",
         Type::kInteger,
         30000,
         "a worker's lease on a mission; a lapsed lease is reclaimed by another worker",
         {},
         100});
  s.add({"missions.max_reclaims",
         Type::kInteger,
         5,
         "a step started this many times beyond its max_attempts (its workers died) fails the "
         "mission with TOO_MANY_RECLAIMS",
         {},
         0});
  {
    KeyDef keep{
        "missions.keep_files",
        Type::kString,
        "",
        "how long a finished mission's files (a roast report's page and spoken summary) are "
        "kept, "
        "e.g. 90d; then `kiln serve` releases them, with a ledger event naming each and "
        "its digest. Empty: kept until `kiln mission prune`",
        {},
        {}};
    keep.check = [](const std::string& v) -> std::optional<std::string> {
      if (v.empty()) return std::nullopt;
      const auto age = common::parse_age(v);
      if (!age) return "'" + v + "' is not an age: " + std::string(common::kAgeForm);
      if (age->count() == 0) return "'" + v + "' would release every file as it is made";
      return std::nullopt;
    };
    s.add(std::move(keep));
  }
  s.add({"missions.poll_ms",
         Type::kInteger,
         200,
         "how often an idle worker looks for runnable missions",
         {},
         10});
  // Values a deployment could give that would make no sense (a port past 65535 wrapped around;
  // a negative skew refused every envelope): refused by `config check` and at start.
  s.range("server.port", 0, 65535);
  s.range("telemetry_driver.interval_s", 0.1, 3600);
  s.range("event_detector.probe_lag_s", 0, 60);
  s.range("telemetry.max_skew_s", 0, std::nullopt);
  s.range("telemetry.max_age_s", 0, std::nullopt, true);
  s.range("recorder.speed", 0, 10000, true);
  s.range("sessions.preroll_s", 0, 3600);
  s.range("sessions.silence_s", 0, std::nullopt, true);
  s.range("sessions.resume_gap_s", 0, std::nullopt);
  s.range("sessions.max_length_s", 0, std::nullopt, true);
  s.range("sessions.min_length_s", 0, 3600);
  for (const auto& k : kinds)
    s.add({"nodes." + k.kind,
           Type::kString,
           json::value(k.default_node),
           "selected node of kind " + k.kind,
           {},
           {}});
  return s;
}

// ---- Sources and errors -------------------------------------------------------------------------

std::string Source::describe() const {
  switch (layer) {
    case Layer::kDefault:
      return "built-in default";
    case Layer::kPluginDefault:
      return "plugin default (" + where + ")";
    case Layer::kFile:
      return where;
    case Layer::kEnvironment:
      return "environment " + where;
    case Layer::kCommandLine:
      return "command line " + where;
  }
  return where;
}

ConfigError::ConfigError(std::vector<std::string> problems)
    : std::runtime_error(join(problems, "\n")), problems_(std::move(problems)) {}

std::map<std::string, std::string> current_environment() {
  std::map<std::string, std::string> env;
  for (char** e = environ; e && *e; ++e) {
    std::string_view kv(*e);
    if (kv.rfind("KILN_", 0) != 0) continue;
    auto eq = kv.find('=');
    if (eq == std::string_view::npos) continue;
    env.emplace(std::string(kv.substr(0, eq)), std::string(kv.substr(eq + 1)));
  }
  return env;
}

std::filesystem::path expand_path(std::string_view raw, const std::filesystem::path& config_dir) {
  std::string s(raw);
  auto replace = [&](const std::string& var, const std::string& with) {
    for (auto pos = s.find(var); pos != std::string::npos; pos = s.find(var, pos + with.size()))
      s.replace(pos, var.size(), with);
  };
  if (s.find("${exe_dir}") != std::string::npos) {
    std::error_code ec;
    auto exe = std::filesystem::read_symlink("/proc/self/exe", ec);
    replace("${exe_dir}", ec ? std::string(".") : exe.parent_path().string());
  }
  replace("${config_dir}", config_dir.empty() ? std::string(".") : config_dir.string());
  return std::filesystem::path(s).lexically_normal();
}

// ---- Loading ------------------------------------------------------------------------------------

namespace {

// Converts a YAML value to the key's type; returns an error text (without location) on mismatch.
// The key's range as words ("> 0", "0 to 65535"), and what is wrong with `v` against it.
std::optional<std::string> out_of_range(const KeyDef& def, double v, const std::string& given) {
  const bool low = def.lo && (def.lo_exclusive ? v <= *def.lo : v < *def.lo);
  const bool high = def.hi && v > *def.hi;
  if (!low && !high) return std::nullopt;
  auto num = [](double x) {
    std::ostringstream o;
    o << x;
    return o.str();
  };
  std::string range;
  if (def.lo && def.hi)
    range = def.lo_exclusive ? "above " + num(*def.lo) + " and at most " + num(*def.hi)
                             : "from " + num(*def.lo) + " to " + num(*def.hi);
  else if (def.lo)
    range = (def.lo_exclusive ? "above " : "at least ") + num(*def.lo);
  else
    range = "at most " + num(*def.hi);
  return "must be " + range + ", got " + given;
}

std::optional<std::string> convert(const KeyDef& def, const YAML::Node& n, json::value& out) {
  auto scalar = [&](std::string_view what) -> std::optional<std::string> {
    if (!n.IsScalar())
      return "expected " + std::string(what) + ", got a " +
             (n.IsMap()        ? "map"
              : n.IsSequence() ? "list"
                               : "null value");
    return std::nullopt;
  };
  switch (def.type) {
    case Type::kString: {
      if (auto e = scalar("a string")) return e;
      out = json::value(n.Scalar());
      if (!def.choices.empty() &&
          std::find(def.choices.begin(), def.choices.end(), n.Scalar()) == def.choices.end())
        return "'" + n.Scalar() + "' is not one of " + join(def.choices) +
               did_you_mean(n.Scalar(), def.choices);
      if (def.check) return def.check(n.Scalar());
      return std::nullopt;
    }
    case Type::kInteger: {
      if (auto e = scalar("an integer")) return e;
      try {
        std::size_t used = 0;
        long long v = std::stoll(n.Scalar(), &used, 10);
        if (used != n.Scalar().size()) throw std::invalid_argument("trailing");
        if (def.min && v < *def.min)
          return "must be at least " + std::to_string(*def.min) + ", got " + n.Scalar();
        if (auto e = out_of_range(def, static_cast<double>(v), n.Scalar())) return e;
        out = json::value(static_cast<std::int64_t>(v));
        return std::nullopt;
      } catch (...) {
        return "expected an integer, got '" + n.Scalar() + "'";
      }
    }
    case Type::kNumber: {
      if (auto e = scalar("a number")) return e;
      try {
        std::size_t used = 0;
        double v = std::stod(n.Scalar(), &used);
        if (used != n.Scalar().size()) throw std::invalid_argument("trailing");
        if (!std::isfinite(v)) return "expected a finite number, got '" + n.Scalar() + "'";
        if (auto e = out_of_range(def, v, n.Scalar())) return e;
        if (def.check)
          if (auto e = def.check(n.Scalar())) return e;
        out = json::value(v);
        return std::nullopt;
      } catch (...) {
        return "expected a number, got '" + n.Scalar() + "'";
      }
    }
    case Type::kBoolean: {
      if (auto e = scalar("true or false")) return e;
      const auto s = common::to_lower(n.Scalar());
      if (s == "true" || s == "yes" || s == "on" || s == "1")
        out = true;
      else if (s == "false" || s == "no" || s == "off" || s == "0")
        out = false;
      else
        return "expected true or false, got '" + n.Scalar() + "'";
      return std::nullopt;
    }
    case Type::kStringList: {
      if (!n.IsSequence()) return "expected a list of strings, e.g. [a, b]";
      json::array a;
      for (const auto& item : n) {
        if (!item.IsScalar()) return "expected a list of strings; an item is not a string";
        if (def.check)
          if (auto e = def.check(item.Scalar())) return e;
        a.push_back(json::value(item.Scalar()));
      }
      out = std::move(a);
      return std::nullopt;
    }
    case Type::kStringMap: {
      if (!n.IsMap()) return "expected a map of name: value";
      json::object o;
      for (const auto& kv : n) {
        if (!kv.second.IsScalar())
          return "expected a map of strings; '" + kv.first.Scalar() + "' is not a string";
        o[kv.first.Scalar()] = kv.second.Scalar();
      }
      out = std::move(o);
      return std::nullopt;
    }
    case Type::kArray:
      if (!n.IsSequence()) return "expected a list";
      out = yaml_to_json(n);
      return std::nullopt;
    case Type::kObject:
      if (!n.IsMap()) return "expected a map";
      out = yaml_to_json(n);
      return std::nullopt;
  }
  return "unsupported type";
}

bool json_matches(std::string_view type, const json::value& v) {
  if (type == "string") return v.is_string();
  if (type == "integer") return v.is_int64() || v.is_uint64();
  if (type == "number") return v.is_number();
  if (type == "boolean") return v.is_bool();
  if (type == "array") return v.is_array();
  if (type == "object") return v.is_object();
  return false;
}

}  // namespace

namespace {

constexpr std::size_t kMaxConfigValues = 100000;

// Counts `n`'s values, aliases expanded, against `budget`; false once it runs out.
bool within(const YAML::Node& n, std::size_t& budget) {
  if (budget == 0) return false;
  --budget;
  if (n.IsSequence()) {
    for (const auto& item : n)
      if (!within(item, budget)) return false;
  } else if (n.IsMap()) {
    for (const auto& kv : n)
      if (!within(kv.first, budget) || !within(kv.second, budget)) return false;
  }
  return true;
}

}  // namespace

class Loader {
 public:
  Loader(const Schema& schema, Config& cfg) : schema_(schema), cfg_(cfg) {}

  void defaults() {
    for (const auto& k : schema_.keys())
      cfg_.entries_[k.path] = Entry{k.default_value, Source{Layer::kDefault, ""}};
  }

  void yaml(const YamlText& doc) {
    YAML::Node root;
    try {
      auto docs = YAML::LoadAll(doc.text);
      if (docs.size() > 1) {
        problems_.push_back(mark_of(doc.name, docs[1].Mark()) +
                            ": a second YAML document (after "
                            "'---'); a config file is one document: merge them, or give each "
                            "file its own --config");
        return;
      }
      if (!docs.empty()) root = docs.front();
    } catch (const YAML::Exception& e) {
      problems_.push_back(mark_of(doc.name, e.mark) + ": YAML syntax error: " + e.msg);
      return;
    }
    // Aliases are expanded where they are used: a few lines of anchors can stand for billions of
    // values. A configuration holds a few thousand at most.
    if (std::size_t budget = kMaxConfigValues; !within(root, budget)) {
      problems_.push_back(doc.name + ": the configuration expands to more than " +
                          std::to_string(kMaxConfigValues) +
                          " values (YAML aliases of aliases?); write it out without them");
      return;
    }
    if (!doc.directory.empty()) cfg_.config_dir_ = doc.directory;
    if (root.IsNull()) return;  // an empty file is a valid, empty layer
    if (!root.IsMap()) {
      problems_.push_back(mark_of(doc.name, root.Mark()) +
                          ": the config file must be a map of sections (log:, plugins:, ...)");
      return;
    }
    walk(doc.name, root, "");
  }

  void environment(const std::map<std::string, std::string>& env) {
    std::vector<std::string> kinds;
    for (const auto& k : schema_.keys())
      if (k.path.rfind("nodes.", 0) == 0) kinds.push_back(k.path.substr(6));
    std::map<std::string, std::string> alias_paths;  // path -> variable, to detect conflicts
    for (const auto& [name, value] : env) {
      if (name.rfind("KILN_", 0) != 0) continue;
      if (std::find(kNonSettingVariables.begin(), kNonSettingVariables.end(), name) !=
          kNonSettingVariables.end())
        continue;
      std::string rest = name.substr(5);
      std::string path;
      if (rest.find("__") != std::string::npos) {
        path = common::to_lower(rest);
        for (auto pos = path.find("__"); pos != std::string::npos; pos = path.find("__", pos + 1))
          path.replace(pos, 2, ".");
      } else if (rest.size() > 5 && rest.compare(rest.size() - 5, 5, "_NODE") == 0) {
        std::string kind = common::to_lower(rest.substr(0, rest.size() - 5));
        if (std::find(kinds.begin(), kinds.end(), kind) == kinds.end()) {
          std::vector<std::string> vars;
          for (const auto& k : kinds) vars.push_back("KILN_" + common::to_upper(k) + "_NODE");
          problems_.push_back("environment " + name + ": '" + kind +
                              "' is not a node kind (kinds: " + join(kinds) + ")" +
                              did_you_mean(name, vars));
          continue;
        }
        path = "nodes." + kind;
        alias_paths[path] = name;
      } else {
        std::vector<std::string> vars;
        for (const auto& p : schema_.paths()) {
          std::string v = "KILN_" + common::to_upper(p);
          for (auto pos = v.find('.'); pos != std::string::npos; pos = v.find('.'))
            v.replace(pos, 1, "__");
          vars.push_back(v);
        }
        problems_.push_back("environment " + name +
                            ": not a kiln setting (settings use KILN_ + the key path with __ "
                            "between levels, e.g. KILN_GATES__DIR)" +
                            did_you_mean(name, vars));
        continue;
      }
      set_from_string(path, value, Source{Layer::kEnvironment, name}, "environment " + name);
    }
    // Both spellings of one node selection set to different values is ambiguous.
    for (const auto& [path, alias] : alias_paths) {
      std::string long_name = "KILN_" + common::to_upper(path);
      long_name.replace(long_name.find('.'), 1, "__");
      auto it = env.find(long_name);
      auto jt = env.find(alias);
      if (it != env.end() && jt != env.end() && it->second != jt->second)
        problems_.push_back("environment: " + alias + "=" + jt->second + " and " + long_name + "=" +
                            it->second + " select different nodes; unset one of them");
    }
  }

  void sets(const std::vector<std::string>& sets,
            const std::map<std::string, std::string>& origins) {
    for (const auto& s : sets) {
      auto eq = s.find('=');
      if (eq == std::string::npos || eq == 0) {
        problems_.push_back("--set " + s + ": expected key=value, e.g. --set gates.enforce=warn");
        continue;
      }
      const auto origin = origins.find(s);
      const std::string where = origin != origins.end() ? origin->second : "--set " + s;
      set_from_string(s.substr(0, eq), s.substr(eq + 1), Source{Layer::kCommandLine, where}, where);
    }
  }

  void finish() {
    if (!problems_.empty()) throw ConfigError(problems_);
  }

 private:
  void walk(const std::string& file, const YAML::Node& map, const std::string& prefix) {
    std::set<std::string> seen;
    for (const auto& kv : map) {
      const std::string key = kv.first.Scalar();
      const std::string path = prefix.empty() ? key : prefix + "." + key;
      const std::string where = mark_of(file, kv.first.Mark());
      if (!seen.insert(key).second) {
        problems_.push_back(where + ": " + path + ": duplicate key");
        continue;
      }
      if (path == "plugin_config") {
        plugin_section(file, kv.second);
        continue;
      }
      if (const KeyDef* def = schema_.find(path)) {
        json::value v;
        if (auto err = convert(*def, kv.second, v)) {
          problems_.push_back(mark_of(file, kv.second.Mark()) + ": " + path + ": " + *err);
          continue;
        }
        cfg_.entries_[path] = Entry{std::move(v), Source{Layer::kFile, where}};
      } else if (schema_.is_section(path)) {
        if (!kv.second.IsMap()) {
          problems_.push_back(
              mark_of(file, kv.second.Mark()) + ": " + path +
              ": expected a section (a map of keys: " + join(schema_.children(path)) + ")");
          continue;
        }
        walk(file, kv.second, path);
      } else {
        problems_.push_back(where + ": " + path + ": unknown key" + suggest(prefix, path) +
                            unknown_hint(prefix));
      }
    }
  }

  // Siblings first (a typo in the last segment), then every full key path (a misplaced key).
  std::string suggest(const std::string& prefix, const std::string& path) const {
    std::vector<std::string> siblings;
    for (const auto& c : schema_.children(prefix))
      siblings.push_back(prefix.empty() ? c : prefix + "." + c);
    std::string hint = did_you_mean(path, siblings);
    return hint.empty() ? did_you_mean_key(path) : hint;
  }

  // A near spelling of the whole path, else the one key with the same last segment in another
  // section (http.port → server.port).
  std::string did_you_mean_key(const std::string& path) const {
    std::string hint = did_you_mean(path, schema_.paths());
    if (!hint.empty()) return hint;
    const auto leaf = [](const std::string& p) { return p.substr(p.rfind('.') + 1); };
    std::vector<std::string> same_leaf;
    for (const auto& p : schema_.paths())
      if (leaf(p) == leaf(path)) same_leaf.push_back(p);
    return same_leaf.size() == 1 ? "; did you mean '" + same_leaf[0] + "'?" : std::string();
  }

  std::string unknown_hint(const std::string& prefix) const {
    auto kids = schema_.children(prefix);
    return " (" + (prefix.empty() ? std::string("sections") : "keys of " + prefix) + ": " +
           join(kids) + ")";
  }

  void plugin_section(const std::string& file, const YAML::Node& n) {
    if (!n.IsMap()) {
      problems_.push_back(mark_of(file, n.Mark()) +
                          ": plugin_config: expected a map of plugin name -> settings");
      return;
    }
    std::set<std::string> plugins_seen;
    for (const auto& plugin : n) {
      const std::string name = plugin.first.Scalar();
      if (!plugins_seen.insert(name).second) {
        problems_.push_back(mark_of(file, plugin.first.Mark()) + ": plugin_config." + name +
                            ": duplicate key");
        continue;
      }
      if (!plugin.second.IsMap()) {
        problems_.push_back(mark_of(file, plugin.second.Mark()) + ": plugin_config." + name +
                            ": expected a map of the plugin's settings");
        continue;
      }
      std::set<std::string> keys_seen;
      for (const auto& kv : plugin.second) {
        if (!keys_seen.insert(kv.first.Scalar()).second) {
          problems_.push_back(mark_of(file, kv.first.Mark()) + ": plugin_config." + name + "." +
                              kv.first.Scalar() + ": duplicate key");
          continue;
        }
        cfg_.pending_.push_back({name, kv.first.Scalar(), yaml_to_json(kv.second),
                                 Source{Layer::kFile, mark_of(file, kv.first.Mark())}});
      }
    }
  }

  void set_from_string(const std::string& path, const std::string& text, Source source,
                       const std::string& who) {
    YAML::Node n;
    std::optional<std::string> not_yaml;
    try {
      n = YAML::Load(text);
    } catch (const YAML::Exception& e) {
      // Not valid YAML: take it as a plain string (e.g. a path with odd characters); a key that
      // wants a list or a map says why the text is not one.
      n = YAML::Node(text);
      not_yaml = e.msg + " at column " + std::to_string(e.mark.column + 1);
    }
    if (text.empty()) n = YAML::Node(std::string());
    if (path.rfind("plugin_config.", 0) == 0) {
      auto rest = path.substr(14);
      auto dot = rest.find('.');
      if (dot == std::string::npos || dot == 0 || dot + 1 == rest.size()) {
        problems_.push_back(who + ": plugin settings are plugin_config.<plugin>.<key>");
        return;
      }
      cfg_.pending_.push_back(
          {rest.substr(0, dot), rest.substr(dot + 1), yaml_to_json(n), std::move(source)});
      return;
    }
    const KeyDef* def = schema_.find(path);
    if (!def) {
      problems_.push_back(who + ": " + path + ": unknown key" + did_you_mean_key(path));
      return;
    }
    json::value v;
    if (auto err = convert(*def, n, v)) {
      std::string why = who + ": " + path + ": " + *err;
      if (not_yaml) {
        why += "; '" + text + "' is not valid YAML (" + *not_yaml + ")";
        if (text.find("${") != std::string::npos)
          why +=
              ": quote an item holding ${...}, e.g. [\"/opt/plugins\", "
              "\"${exe_dir}/../lib/kiln/plugins\"]";
      }
      problems_.push_back(std::move(why));
      return;
    }
    cfg_.entries_[path] = Entry{std::move(v), std::move(source)};
  }

  const Schema& schema_;
  Config& cfg_;
  std::vector<std::string> problems_;
};

Config Config::load(const Schema& schema, const LoadOptions& options) {
  Config cfg;
  Loader loader(schema, cfg);
  loader.defaults();
  for (const auto& doc : options.yaml) loader.yaml(doc);
  loader.environment(options.environment);
  loader.sets(options.sets, options.set_origins);
  loader.finish();
  return cfg;
}

void Config::apply_plugin_schemas(const std::map<std::string, std::vector<ConfigKeyDecl>>& plugins,
                                  const std::set<std::string>& not_loaded) {
  std::vector<std::string> problems;
  std::vector<std::string> names;
  for (const auto& [name, _] : plugins) names.push_back(name);
  for (const auto& [name, keys] : plugins)
    for (const auto& k : keys)
      entries_["plugin_config." + name + "." + k.key] =
          Entry{k.default_value, Source{Layer::kPluginDefault, name + " manifest"}};
  for (auto& p : pending_) {
    const std::string path = "plugin_config." + p.plugin + "." + p.key;
    auto it = plugins.find(p.plugin);
    if (it == plugins.end() && not_loaded.count(p.plugin)) {
      // Disabled, or skipped by plugins.on_error=skip: its settings wait for it, unchecked.
      spdlog::warn(
          "{}: plugin_config.{} is not applied: plugin '{}' is not loaded (disabled or "
          "skipped)",
          p.source.describe(), p.plugin, p.plugin);
      continue;
    }
    if (it == plugins.end()) {
      problems.push_back(p.source.describe() + ": plugin_config." + p.plugin +
                         ": no loaded plugin is named '" + p.plugin +
                         "' (loaded: " + (names.empty() ? std::string("none") : join(names)) + ")" +
                         did_you_mean(p.plugin, names));
      continue;
    }
    const ConfigKeyDecl* decl = nullptr;
    std::vector<std::string> keys;
    for (const auto& k : it->second) {
      keys.push_back(k.key);
      if (k.key == p.key) decl = &k;
    }
    if (!decl) {
      problems.push_back(p.source.describe() + ": " + path + ": plugin '" + p.plugin +
                         "' declares no key '" + p.key +
                         "' (it accepts: " + (keys.empty() ? std::string("no keys") : join(keys)) +
                         ")" + did_you_mean(p.key, keys));
      continue;
    }
    json::value v = p.value;
    if (decl->type == "number" && v.is_int64()) v = static_cast<double>(v.as_int64());
    if (!json_matches(decl->type, v)) {
      problems.push_back(p.source.describe() + ": " + path + ": expected " + decl->type + ", got " +
                         json::serialize(p.value));
      continue;
    }
    entries_[path] = Entry{std::move(v), p.source};
  }
  pending_.clear();
  if (!problems.empty()) throw ConfigError(problems);
}

const Entry* Config::find(std::string_view path) const {
  auto it = entries_.find(path);
  return it == entries_.end() ? nullptr : &it->second;
}

const Entry& Config::at(std::string_view path) const {
  if (auto* e = find(path)) return *e;
  throw std::out_of_range("config key '" + std::string(path) + "' is not defined");
}

std::string Config::get_string(std::string_view path) const {
  return std::string(at(path).value.as_string());
}
std::int64_t Config::get_int(std::string_view path) const {
  return at(path).value.as_int64();
}
double Config::get_number(std::string_view path) const {
  return at(path).value.to_number<double>();
}
bool Config::get_bool(std::string_view path) const {
  return at(path).value.as_bool();
}
std::vector<std::string> Config::get_strings(std::string_view path) const {
  std::vector<std::string> out;
  for (const auto& v : at(path).value.as_array()) out.emplace_back(v.as_string());
  return out;
}

json::object Config::section(std::string_view section) const {
  json::object o;
  std::string prefix = std::string(section) + ".";
  for (auto it = entries_.lower_bound(prefix); it != entries_.end(); ++it) {
    if (it->first.compare(0, prefix.size(), prefix) != 0) break;
    o[it->first.substr(prefix.size())] = it->second.value;
  }
  return o;
}

json::object Config::plugin_config(std::string_view plugin) const {
  return section("plugin_config." + std::string(plugin));
}

}  // namespace kiln::config
