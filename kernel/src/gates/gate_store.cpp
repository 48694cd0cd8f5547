#include "gates/gate_store.hpp"

#include <chrono>
#include <cstring>
#include <ctime>
#include <fstream>
#include <sstream>

#include <unistd.h>

#include "common/files.hpp"
#include "kiln/abi.hpp"
#include "plugins/registry.hpp"

namespace kiln::gates {
namespace fs = std::filesystem;
namespace json = boost::json;

const char* to_string(GateState s) {
  switch (s) {
    case GateState::kDefault:
      return "default";
    case GateState::kPassed:
      return "passed";
    case GateState::kMissing:
      return "not gated";
    case GateState::kStale:
      return "stale";
    case GateState::kFailed:
      return "failed";
  }
  return "?";
}

std::string utc_now_iso8601() {
  auto now = std::chrono::system_clock::now();
  std::time_t t = std::chrono::system_clock::to_time_t(now);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

json::object GateRecord::to_json() const {
  json::array intended;
  for (const auto& i : intended_differences) intended.push_back(json::value(i));
  return {{"kind", kind},
          {"node", node},
          {"provider", provider},
          {"plugin_file", plugin_file},
          {"plugin_sha256", plugin_sha256},
          {"contract_version", contract_version},
          {"abi_version", abi_version},
          {"kiln_version", kiln_version},
          {"result", passed ? "PASS" : "FAIL"},
          {"ran_at", ran_at},
          {"cases", cases_origin},
          {"intended_differences", std::move(intended)},
          {"contract", contract},
          {"parity", parity}};
}

GateRecord GateRecord::from_json(const json::value& v) {
  if (!v.is_object()) throw std::runtime_error("gate record is not a JSON object");
  const auto& o = v.as_object();
  auto str = [&](const char* k) -> std::string {
    auto* p = o.if_contains(k);
    if (!p || !p->is_string()) throw std::runtime_error(std::string("field '") + k + "' missing");
    return std::string(p->as_string());
  };
  auto num = [&](const char* k) -> unsigned {
    auto* p = o.if_contains(k);
    if (!p || !p->is_number()) throw std::runtime_error(std::string("field '") + k + "' missing");
    return static_cast<unsigned>(p->to_number<std::int64_t>());
  };
  GateRecord r;
  r.kind = str("kind");
  r.node = str("node");
  r.provider = str("provider");
  r.plugin_file = str("plugin_file");
  r.plugin_sha256 = str("plugin_sha256");
  r.contract_version = num("contract_version");
  r.abi_version = num("abi_version");
  r.kiln_version = str("kiln_version");
  r.passed = str("result") == "PASS";
  r.ran_at = str("ran_at");
  if (auto* c = o.if_contains("cases"); c && c->is_string()) r.cases_origin = c->as_string();
  if (auto* c = o.if_contains("contract"); c && c->is_object()) r.contract = c->as_object();
  if (auto* c = o.if_contains("parity"); c && c->is_object()) r.parity = c->as_object();
  if (auto* c = o.if_contains("intended_differences"); c && c->is_array())
    for (const auto& i : c->as_array())
      if (i.is_string()) r.intended_differences.emplace_back(i.as_string());
  return r;
}

fs::path GateStore::record_path(const std::string& kind, const std::string& node) const {
  return dir_ / (kind + "." + node + ".json");
}

std::optional<GateRecord> GateStore::read(const std::string& kind, const std::string& node) const {
  auto path = record_path(kind, node);
  std::ifstream in(path);
  if (!in) return std::nullopt;
  std::stringstream ss;
  ss << in.rdbuf();
  json::error_code ec;
  auto v = json::parse(ss.str(), ec);
  if (ec)
    throw std::runtime_error("gate record " + path.string() + " is not valid JSON (" +
                             ec.message() + "); delete it and run the gate again");
  try {
    return GateRecord::from_json(v);
  } catch (const std::exception& e) {
    throw std::runtime_error("gate record " + path.string() + ": " + e.what() +
                             "; delete it and run the gate again");
  }
}

GateCheck GateStore::check(const plugins::NodeEntry& node, bool is_default,
                           unsigned contract_version) const {
  GateCheck c;
  if (is_default) {
    c.state = GateState::kDefault;
    c.reason = "default node: needs no gate";
    return c;
  }
  const std::string id = node.kind + "/" + node.name;
  c.record = read(node.kind, node.name);
  if (!c.record) {
    c.state = GateState::kMissing;
    // Absolute: a relative gates.dir follows the working directory, and a gate run from
    // another directory wrote its record elsewhere.
    std::error_code ec;
    const auto abs = fs::absolute(dir_, ec);
    c.reason = "no gate record in " + (ec ? dir_ : abs.lexically_normal()).string();
    return c;
  }
  const GateRecord& r = *c.record;
  if (!r.passed) {
    c.state = GateState::kFailed;
    c.reason = "its last gate run (" + r.ran_at + ") failed";
  } else if (r.plugin_sha256 != node.sha256) {
    c.state = GateState::kStale;
    c.reason = "the plugin file changed since the gate ran (gated sha256 " +
               r.plugin_sha256.substr(0, 12) + ", file " + node.file.string() + " sha256 " +
               node.sha256.substr(0, 12) + ")";
  } else if (r.contract_version != contract_version) {
    c.state = GateState::kStale;
    c.reason = "the kind's contract version changed (gated " + std::to_string(r.contract_version) +
               ", now " + std::to_string(contract_version) + ")";
  } else if (r.abi_version != kAbiVersion) {
    c.state = GateState::kStale;
    c.reason = "the kiln ABI version changed (gated " + std::to_string(r.abi_version) + ", now " +
               std::to_string(kAbiVersion) + ")";
  } else {
    c.state = GateState::kPassed;
    c.reason = "passed " + r.ran_at;
  }
  return c;
}

void GateStore::write(const GateRecord& record) const {
  std::error_code ec;
  fs::create_directories(dir_, ec);
  if (ec)
    throw std::runtime_error("cannot create gate store " + dir_.string() + ": " + ec.message() +
                             "; set gates.dir to a writable directory");
  // Synced and renamed whole: after a power cut the record is the old one or the new one (an
  // empty one made `kiln serve` refuse the node until the gate ran again).
  common::replace_file(record_path(record.kind, record.node),
                       json::serialize(record.to_json()) + "\n", 0644);
  std::ofstream hist(dir_ / "history.jsonl", std::ios::app);
  hist << json::serialize(record.to_json()) << '\n';
  hist.flush();
  if (!hist) throw std::runtime_error("cannot append to " + (dir_ / "history.jsonl").string());
}

}  // namespace kiln::gates
