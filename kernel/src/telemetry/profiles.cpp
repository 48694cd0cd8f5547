#include "telemetry/profiles.hpp"

#include <algorithm>
#include <cctype>
#include <cmath>

#include "storage/sqlite.hpp"
#include "telemetry/devices.hpp"

namespace kiln::telemetry {
namespace json = boost::json;
using missions::MissionError;
using storage::Connection;

namespace {

// Whether a stored body is `b`: numbers within a relative 1e-12 (Boost.JSON 1.81 parses doubles
// to within an ulp or so, so a body read back is not bit for bit the one saved).
bool same_content(const json::value& a, const json::value& b) {
  if (a.is_number() && b.is_number()) {
    const double x = a.to_number<double>(), y = b.to_number<double>();
    return x == y || std::abs(x - y) <= 1e-12 * std::max(std::abs(x), std::abs(y));
  }
  if (a.kind() != b.kind()) return false;
  if (a.is_array()) {
    const auto &x = a.as_array(), &y = b.as_array();
    if (x.size() != y.size()) return false;
    for (std::size_t i = 0; i < x.size(); ++i)
      if (!same_content(x[i], y[i])) return false;
    return true;
  }
  if (a.is_object()) {
    const auto &x = a.as_object(), &y = b.as_object();
    if (x.size() != y.size()) return false;
    for (const auto& kv : x) {
      const auto* other = y.if_contains(kv.key());
      if (!other || !same_content(kv.value(), *other)) return false;
    }
    return true;
  }
  return a == b;
}

constexpr std::size_t kMaxBodyBytes = 4 << 20;

void check_name(const std::string& name) {
  // Profile names follow device names: safe in URLs, file names and YAML without quoting.
  if (!valid_device_name(name))
    throw MissionError(MissionError::Code::kInvalidInput,
                       "profile name '" + name +
                           "' is not valid: use 1-64 of A-Z a-z 0-9 . _ -, starting with a letter "
                           "or digit");
}

// What the kernel reads from a body (targets and phases, at the top and in its °C view) must
// have the right shape; the rest is the plugin's.
void check_view(const json::object& body) {
  if (const auto* t = body.if_contains("title"); t && !t->is_string())
    throw MissionError(MissionError::Code::kInvalidInput, "profile.title must be a string");
  if (const auto* t = body.if_contains("targets"); t && !t->is_object())
    throw MissionError(MissionError::Code::kInvalidInput,
                       "profile.targets must be an object of QC targets");
  if (const auto* p = body.if_contains("phases")) {
    bool ok = p->is_array() && p->as_array().size() == 4;
    if (ok)
      for (const auto& x : p->as_array()) ok = ok && x.is_number();
    if (!ok)
      throw MissionError(
          MissionError::Code::kInvalidInput,
          "profile.phases must be 4 temperatures, as Artisan's phases: the drying phase's "
          "lower and upper bound, FCs, SCs");
  }
}

void check_body(const json::object& body) {
  check_view(body);
  if (const auto* c = body.if_contains("celsius")) {
    if (!c->is_object())
      throw MissionError(MissionError::Code::kInvalidInput, "profile.celsius must be an object");
    check_view(c->as_object());
  }
  const auto size = json::serialize(body).size();
  if (size > kMaxBodyBytes)
    throw MissionError(MissionError::Code::kInvalidInput,
                       "the profile has " + std::to_string(size) + " bytes of JSON; at most " +
                           std::to_string(kMaxBodyBytes) + " are kept");
}

constexpr const char* kColumns =
    "p.tenant, p.name, p.version, n.latest, p.title, p.created_at, p.created_by, n.archived_at";

ProfileInfo row(const storage::Statement& st) {
  ProfileInfo p;
  p.tenant = st.text(0);
  p.name = st.text(1);
  p.version = st.int64(2);
  p.latest = st.int64(3);
  p.title = st.text(4);
  p.created_at = st.text(5);
  p.created_by = st.text(6);
  if (!st.is_null(7)) p.archived_at = st.text(7);
  return p;
}

std::optional<ProfileInfo> get_on(Connection& c, const std::string& tenant, const std::string& name,
                                  std::optional<std::int64_t> version) {
  auto st = c.prepare(std::string("SELECT ") + kColumns +
                      ", p.body FROM profiles p JOIN profile_names n ON n.tenant = p.tenant AND "
                      "n.name = p.name WHERE p.tenant = ? AND p.name = ? AND p.version = "
                      "coalesce(?, n.latest)");
  st.bind(1, tenant).bind(2, name);
  if (version)
    st.bind(3, *version);
  else
    st.bind_null(3);
  if (!st.step()) return std::nullopt;
  auto p = row(st);
  p.body = json::parse(st.text(8)).as_object();
  return p;
}

// A stored name that differs from `name` only in case (JIGESA for jigesa), if any.
std::optional<std::string> other_case(Connection& c, const std::string& tenant,
                                      const std::string& name) {
  auto st = c.prepare(
      "SELECT name FROM profile_names WHERE tenant = ? AND name = ? COLLATE NOCASE AND name != ? "
      "ORDER BY name LIMIT 1");
  st.bind(1, tenant).bind(2, name).bind(3, name);
  if (!st.step()) return std::nullopt;
  return st.text(0);
}

}  // namespace

std::string ProfileStore::not_found(Connection& c, const std::string& tenant,
                                    const std::string& name, std::optional<std::int64_t> version,
                                    const std::string& hint) {
  if (version) {
    auto st = c.prepare("SELECT 1 FROM profile_names WHERE tenant = ? AND name = ?");
    st.bind(1, tenant).bind(2, name);
    if (st.step())
      return "profile '" + name + "' has no version " + std::to_string(*version) + " (" +
             (hint.empty() ? "GET /v1/profiles/" + name + "/versions or `kiln profiles versions " +
                                 name + "` lists them"
                           : hint) +
             ")";
  }
  std::string msg = "no profile '" + name + "' in tenant " + tenant;
  if (auto other = other_case(c, tenant, name))
    return msg + " (did you mean '" + *other + "'? profile names are case-sensitive)";
  return msg + " (" +
         (hint.empty() ? "GET /v1/profiles or `kiln profiles list` shows its profiles" : hint) +
         ")";
}

std::string ProfileStore::not_found(const std::filesystem::path& db, const std::string& tenant,
                                    const std::string& name, std::optional<std::int64_t> version,
                                    const std::string& hint) {
  Connection c(db, Connection::Mode::kReadOnly);
  return not_found(c, tenant, name, version, hint);
}

json::object ProfileInfo::to_json(bool with_body) const {
  json::object o{{"name", name},
                 {"version", version},
                 {"latest", latest},
                 {"title", title},
                 {"tenant", tenant},
                 {"created_at", created_at},
                 {"created_by", created_by},
                 {"archived_at", archived_at ? json::value(*archived_at) : json::value(nullptr)}};
  if (with_body) o["profile"] = body;
  return o;
}

ProfileRef ProfileRef::parse(const std::string& text) {
  ProfileRef r;
  const auto at = text.rfind('@');
  r.name = text.substr(0, at);
  if (at != std::string::npos) {
    std::string v = text.substr(at + 1);
    if (v.size() > 1 && (v[0] == 'v' || v[0] == 'V')) v.erase(0, 1);  // "@v2", as listings print it
    std::size_t used = 0;
    long long n = 0;
    try {
      n = std::stoll(v, &used);
    } catch (const std::exception&) {
      used = 0;
    }
    if (v.empty() || used != v.size() || n < 1 || !std::isdigit(static_cast<unsigned char>(v[0])) ||
        v[0] == '0')
      throw MissionError(MissionError::Code::kInvalidInput,
                         "'" + text + "': the version after @ must be a whole number >= 1");
    r.version = n;
  }
  check_name(r.name);
  return r;
}

ProfileStore::ProfileStore(ledger::SqliteLedger& ledger, std::filesystem::path db_path)
    : ledger_(ledger), db_path_(std::move(db_path)) {}

ProfileInfo ProfileStore::save(const std::string& tenant, const std::string& name,
                               json::object body, const missions::Actor& by) {
  require_operator(by, "saving a profile");
  check_name(name);
  check_body(body);
  std::string title = name;
  if (const auto* t = body.if_contains("title"); t && !t->as_string().empty())
    title = std::string(t->as_string());
  std::int64_t version = 0;
  bool unchanged = false;
  ledger_.execute([&](Connection& c) -> std::vector<ledger::NewEvent> {
    auto st = c.prepare(
        "SELECT n.latest, n.archived_at IS NULL, v.title, v.body "
        "FROM profile_names n JOIN profiles v "
        "ON v.tenant = n.tenant AND v.name = n.name AND v.version = n.latest "
        "WHERE n.tenant = ? AND n.name = ?");
    st.bind(1, tenant).bind(2, name);
    version = st.step() ? st.int64(0) + 1 : 1;
    // A save repeated (a retried request, an import run twice) is the version it made: no copy.
    if (version > 1 && st.int64(1) != 0 && st.text(2) == title &&
        same_content(json::parse(st.text(3)), body)) {
      --version;
      unchanged = true;
      return {};
    }
    // Two names a roaster cannot tell apart (Jigesa, JIGESA) would each collect versions.
    if (version == 1)
      if (auto other = other_case(c, tenant, name))
        throw MissionError(MissionError::Code::kConflict,
                           "profile '" + name + "' differs from the existing '" + *other +
                               "' only in case: save it as '" + *other +
                               "' (its next version) or choose another name");
    return {ledger::NewEvent{tenant, "profiles", "profile.saved",
                             json::object{{"name", name},
                                          {"version", version},
                                          {"title", title},
                                          {"profile", body},
                                          {"actor", by.to_json()}}}};
  });
  auto saved = *get(db_path_, tenant, name, version);
  saved.unchanged = unchanged;
  return saved;
}

ProfileInfo ProfileStore::set_archived(const std::string& tenant, const std::string& name,
                                       bool archived, const missions::Actor& by) {
  require_operator(by, archived ? "archiving a profile" : "restoring a profile");
  check_name(name);
  ledger_.execute([&](Connection& c) -> std::vector<ledger::NewEvent> {
    auto st = c.prepare("SELECT archived_at FROM profile_names WHERE tenant = ? AND name = ?");
    st.bind(1, tenant).bind(2, name);
    if (!st.step()) throw MissionError(MissionError::Code::kNotFound, not_found(c, tenant, name));
    if (st.is_null(0) != archived) return {};  // already so: nothing to record
    if (archived) {
      // A device still roasting to it would open its next sessions without a profile, and QC
      // would check them against the defaults instead: say which devices, and what to do.
      auto devices = c.prepare(
          "SELECT device FROM device_profiles WHERE tenant = ? AND (profile = ? OR profile LIKE "
          "? ESCAPE '\\') ORDER BY device");
      std::string like;
      for (char ch : name) {
        if (ch == '%' || ch == '_' || ch == '\\') like += '\\';
        like += ch;
      }
      devices.bind(1, tenant).bind(2, name).bind(3, like + "@%");
      std::vector<std::string> assigned;
      while (devices.step()) assigned.push_back(devices.text(0));
      if (!assigned.empty()) {
        std::string list, first = assigned.front();
        for (const auto& d : assigned) list += (list.empty() ? "" : ", ") + d;
        throw MissionError(MissionError::Code::kConflict,
                           "profile '" + name + "' is assigned to device" +
                               (assigned.size() > 1 ? "s " : " ") + list +
                               ": their next roasts would have no profile and QC would check "
                               "them against the defaults. Assign another profile first (`kiln "
                               "devices profile " +
                               first + " NAME`, POST /v1/devices/" + first +
                               ":profile) or clear it (`kiln devices profile " + first +
                               " --clear`)");
      }
    }
    return {ledger::NewEvent{tenant, "profiles", archived ? "profile.archived" : "profile.restored",
                             json::object{{"name", name}, {"actor", by.to_json()}}}};
  });
  return *get(db_path_, tenant, name);
}

void ProfileStore::assign(const std::string& tenant, const std::string& device,
                          const std::optional<std::string>& profile, const missions::Actor& by) {
  require_operator(by, "assigning a profile");
  if (!valid_device_name(device))
    throw MissionError(MissionError::Code::kInvalidInput,
                       "device name '" + device + "' is not valid");
  std::optional<ProfileRef> ref;
  if (profile) ref = ProfileRef::parse(*profile);
  ledger_.execute([&](Connection& c) -> std::vector<ledger::NewEvent> {
    json::value value = nullptr;
    // A device with no key here is a typo far more often than one to come: name them (when
    // clearing too: clearing a typo once answered as done).
    auto known = c.prepare("SELECT 1 FROM device_keys WHERE tenant = ? AND device = ? LIMIT 1");
    known.bind(1, tenant).bind(2, device);
    if (!known.step())
      throw MissionError(MissionError::Code::kNotFound,
                         "no device '" + device + "' in tenant " + tenant +
                             " (GET /v1/devices or `kiln devices list` shows them; POST "
                             "/v1/devices or `kiln devices add " +
                             device + "` registers it)");
    if (ref) {
      auto st = c.prepare(
          "SELECT n.archived_at, (SELECT 1 FROM profiles p WHERE p.tenant = n.tenant AND p.name = "
          "n.name AND p.version = coalesce(?, n.latest)) FROM profile_names n WHERE n.tenant = ? "
          "AND n.name = ?");
      if (ref->version)
        st.bind(1, *ref->version);
      else
        st.bind_null(1);
      st.bind(2, tenant).bind(3, ref->name);
      if (!st.step())
        throw MissionError(MissionError::Code::kNotFound, not_found(c, tenant, ref->name));
      if (!st.is_null(0))
        throw MissionError(MissionError::Code::kInvalidState,
                           "profile '" + ref->name +
                               "' is archived; restore it first (POST /v1/profiles/" + ref->name +
                               ":restore, `kiln profiles restore " + ref->name + "`)");
      if (st.is_null(1))
        throw MissionError(MissionError::Code::kNotFound,
                           not_found(c, tenant, ref->name, ref->version));
      // Stored canonically: name, or name@version.
      value =
          json::value(ref->version ? ref->name + "@" + std::to_string(*ref->version) : ref->name);
    }
    return {ledger::NewEvent{
        tenant, "profiles", "profile.assigned",
        json::object{{"device", device}, {"profile", value}, {"actor", by.to_json()}}}};
  });
}

std::vector<ProfileInfo> ProfileStore::list(const std::filesystem::path& db,
                                            const std::string& tenant, bool include_archived) {
  Connection c(db, Connection::Mode::kReadOnly);
  auto st = c.prepare(std::string("SELECT ") + kColumns +
                      " FROM profile_names n JOIN profiles p ON p.tenant = n.tenant AND p.name = "
                      "n.name AND p.version = n.latest WHERE n.tenant = ? AND (? OR "
                      "n.archived_at IS NULL) ORDER BY n.name");
  st.bind(1, tenant).bind(2, static_cast<std::int64_t>(include_archived));
  std::vector<ProfileInfo> out;
  while (st.step()) out.push_back(row(st));
  return out;
}

std::optional<ProfileInfo> ProfileStore::get(const std::filesystem::path& db,
                                             const std::string& tenant, const std::string& name,
                                             std::optional<std::int64_t> version) {
  Connection c(db, Connection::Mode::kReadOnly);
  return get_on(c, tenant, name, version);
}

std::vector<ProfileInfo> ProfileStore::versions(const std::filesystem::path& db,
                                                const std::string& tenant,
                                                const std::string& name) {
  Connection c(db, Connection::Mode::kReadOnly);
  auto st = c.prepare(std::string("SELECT ") + kColumns +
                      " FROM profiles p JOIN profile_names n ON n.tenant = p.tenant AND n.name = "
                      "p.name WHERE p.tenant = ? AND p.name = ? ORDER BY p.version");
  st.bind(1, tenant).bind(2, name);
  std::vector<ProfileInfo> out;
  while (st.step()) out.push_back(row(st));
  return out;
}

std::optional<std::string> ProfileStore::assigned(Connection& c, const std::string& tenant,
                                                  const std::string& device) {
  auto st = c.prepare("SELECT profile FROM device_profiles WHERE tenant = ? AND device = ?");
  st.bind(1, tenant).bind(2, device);
  if (!st.step()) return std::nullopt;
  return st.text(0);
}

json::array ProfileStore::with_profiles(const std::filesystem::path& db,
                                        const std::vector<DeviceKey>& keys) {
  const std::string now = ledger::utc_now_millis();
  json::array out;
  if (keys.empty()) return out;
  Connection c(db, Connection::Mode::kReadOnly);
  for (const auto& key : keys) {
    auto o = key.to_json(now);
    const auto profile = assigned(c, key.tenant, key.device);
    o["profile"] = profile ? json::value(*profile) : json::value(nullptr);
    out.push_back(std::move(o));
  }
  return out;
}

std::optional<std::pair<std::string, std::int64_t>> ProfileStore::resolve(
    Connection& c, const std::string& tenant, const std::string& ref_text) {
  ProfileRef ref;
  try {
    ref = ProfileRef::parse(ref_text);
  } catch (const MissionError&) {
    return std::nullopt;
  }
  auto st = c.prepare(
      "SELECT coalesce(?, latest) FROM profile_names WHERE tenant = ? AND name = ? AND "
      "archived_at IS NULL");
  if (ref.version)
    st.bind(1, *ref.version);
  else
    st.bind_null(1);
  st.bind(2, tenant).bind(3, ref.name);
  if (!st.step()) return std::nullopt;
  return std::make_pair(ref.name, st.int64(0));
}

void project_profiles(Connection& c, const ledger::Event& e) {
  if (e.kind.rfind("profile.", 0) != 0) return;
  auto v = json::parse(e.payload);
  const auto& p = v.as_object();
  const std::string by(p.at("actor").at("name").as_string());
  if (e.kind == "profile.saved") {
    const std::string name(p.at("name").as_string());
    const auto version = p.at("version").to_number<std::int64_t>();
    auto st = c.prepare(
        "INSERT INTO profiles (tenant, name, version, title, created_at, created_by, body) "
        "VALUES (?, ?, ?, ?, ?, ?, ?)");
    st.bind(1, e.tenant).bind(2, name).bind(3, version);
    st.bind(4, std::string(p.at("title").as_string())).bind(5, e.time).bind(6, by);
    st.bind(7, json::serialize(p.at("profile")));
    st.step();
    auto n = c.prepare(
        "INSERT INTO profile_names (tenant, name, latest, archived_at) VALUES (?, ?, ?, NULL) "
        "ON CONFLICT (tenant, name) DO UPDATE SET latest = excluded.latest, archived_at = NULL");
    n.bind(1, e.tenant).bind(2, name).bind(3, version);
    n.step();
  } else if (e.kind == "profile.archived" || e.kind == "profile.restored") {
    auto st = c.prepare("UPDATE profile_names SET archived_at = ? WHERE tenant = ? AND name = ?");
    if (e.kind == "profile.archived")
      st.bind(1, e.time);
    else
      st.bind_null(1);
    st.bind(2, e.tenant).bind(3, std::string(p.at("name").as_string()));
    st.step();
  } else if (e.kind == "profile.assigned") {
    const std::string device(p.at("device").as_string());
    if (p.at("profile").is_null()) {
      auto st = c.prepare("DELETE FROM device_profiles WHERE tenant = ? AND device = ?");
      st.bind(1, e.tenant).bind(2, device);
      st.step();
    } else {
      auto st = c.prepare(
          "INSERT INTO device_profiles (tenant, device, profile, set_at, set_by) VALUES (?, ?, ?, "
          "?, ?) ON CONFLICT (tenant, device) DO UPDATE SET profile = excluded.profile, set_at = "
          "excluded.set_at, set_by = excluded.set_by");
      st.bind(1, e.tenant).bind(2, device).bind(3, std::string(p.at("profile").as_string()));
      st.bind(4, e.time).bind(5, by);
      st.step();
    }
  }
}

}  // namespace kiln::telemetry
