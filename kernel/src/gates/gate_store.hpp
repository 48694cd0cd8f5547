// The gate store: one JSON record per (kind, node) in gates.dir, plus history.jsonl.
// A record binds a PASS to the plugin file's SHA-256, the kind's contract version and the kiln
// ABI version; any change to one of them makes the gate stale.
#pragma once

#include <filesystem>
#include <optional>
#include <ostream>
#include <string>
#include <vector>

#include <boost/json.hpp>

namespace kiln::plugins {
struct NodeEntry;
}

namespace kiln::gates {

struct GateRecord {
  std::string kind;
  std::string node;
  std::string provider;
  std::string plugin_file;
  std::string plugin_sha256;
  unsigned contract_version = 0;
  unsigned abi_version = 0;
  std::string kiln_version;
  bool passed = false;
  std::string ran_at;  // UTC, ISO 8601
  boost::json::object contract;
  boost::json::object parity;
  std::vector<std::string> intended_differences;
  std::string cases_origin;

  boost::json::object to_json() const;
  // Throws std::runtime_error naming the field on a malformed record.
  static GateRecord from_json(const boost::json::value& v);
};

enum class GateState { kDefault, kPassed, kMissing, kStale, kFailed };
const char* to_string(GateState s);
inline std::ostream& operator<<(std::ostream& os, GateState s) {
  return os << to_string(s);
}

struct GateCheck {
  GateState state = GateState::kMissing;
  std::string reason;  // why the node is not gated, for messages
  std::optional<GateRecord> record;
  bool usable() const { return state == GateState::kDefault || state == GateState::kPassed; }
};

class GateStore {
 public:
  explicit GateStore(std::filesystem::path dir) : dir_(std::move(dir)) {}

  // The state of a node against its current file and contract version.
  GateCheck check(const plugins::NodeEntry& node, bool is_default, unsigned contract_version) const;
  std::optional<GateRecord> read(const std::string& kind, const std::string& node) const;
  // Writes the record atomically and appends it to history.jsonl. Throws on I/O errors.
  void write(const GateRecord& record) const;
  std::filesystem::path record_path(const std::string& kind, const std::string& node) const;
  const std::filesystem::path& dir() const { return dir_; }

 private:
  std::filesystem::path dir_;
};

std::string utc_now_iso8601();

}  // namespace kiln::gates
