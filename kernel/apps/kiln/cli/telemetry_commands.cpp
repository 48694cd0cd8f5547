// `kiln record`, `kiln devices ...`, `kiln sessions ...`, `kiln report`.
#include "cli/telemetry_commands.hpp"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cctype>
#include <cerrno>
#include <cmath>
#include <csignal>
#include <cstdlib>
#include <ctime>
#include <deque>
#include <fstream>
#include <functional>
#include <iomanip>
#include <set>
#include <sstream>
#include <thread>

#include <boost/json.hpp>

#include "audio/encode.hpp"
#include "auth/keys.hpp"
#include "cli/files.hpp"
#include "cli/json_print.hpp"
#include "cli/remote.hpp"
#include "common/strings.hpp"
#include "http/client.hpp"
#include "kiln/nodes/event_detector.hpp"
#include "kiln/nodes/telemetry_driver.hpp"
#include "runtime/kernel.hpp"
#include "storage/sqlite.hpp"
#include "telemetry/envelope.hpp"
#include "telemetry/ingest.hpp"
#include "telemetry/profiles.hpp"
#include "telemetry/session_views.hpp"
#include "telemetry/sessions.hpp"

namespace kiln::cli {
namespace json = boost::json;
namespace fs = std::filesystem;
using runtime::Kernel;

namespace {

// 60, 0.5, 2.25: as a person writes a speed.
std::string short_number(double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%g", v);
  return buf;
}

// The Bullet R1 state codes, as the roaster's display names them.
std::string state_name(int state) {
  switch (state) {
    case 0:
      return "OFF";
    case 2:
      return "PREHEAT";
    case 4:
      return "CHARGE";
    case 6:
      return "ROASTING";
    case 8:
      return "COOLING";
    default:
      return "state " + std::to_string(state);
  }
}

std::unique_ptr<Kernel> boot(const Args& a, bool resolve, std::set<std::string> kinds = {}) {
  auto opts = boot_options(a, resolve, std::move(kinds));
  opts.open_storage = true;
  return Kernel::boot(opts);
}

std::atomic<bool> g_stop{false};

double now_s() {
  return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
}

std::string device_arg(const Args& a, const std::string& cmd) {
  if (a.positional.size() < 3) throw std::invalid_argument(cmd + " needs a DEVICE");
  return a.positional[2];
}

std::optional<telemetry::PublicKey> public_key_arg(const Args& a) {
  if (!a.public_key) return std::nullopt;
  try {
    return telemetry::parse_device_public_key(*a.public_key);
  } catch (const std::invalid_argument& e) {
    throw std::invalid_argument(std::string("--public-key: ") + e.what());
  }
}

}  // namespace

void print_devices(const json::array& keys, std::ostream& out) {
  if (keys.empty()) {
    out << "no devices (kiln devices add DEVICE)\n";
    return;
  }
  std::vector<std::vector<std::string>> rows{
      {"KEY", "TENANT", "DEVICE", "STATE", "CREATED", "UNTIL", "REVOKED", "PROFILE"}};
  for (const auto& v : keys) {
    const auto& k = v.as_object();
    rows.push_back({string_at(k, "kid"), string_at(k, "tenant"), string_at(k, "device"),
                    string_at(k, "status"), string_at(k, "created_at"), string_at(k, "not_after"),
                    string_at(k, "revoked_at"), string_at(k, "profile")});
  }
  print_table(rows, out);
}

namespace {

int wrote_credentials(const telemetry::DeviceCredentials& c, const Args& a, std::ostream& out,
                      const char* what, const fs::path& storage) {
  bool has_secret = false;
  for (auto b : c.key.secret) has_secret = has_secret || b != 0;
  if (!has_secret) {
    out << what << " key " << c.key.kid << " for device " << c.device << " (tenant " << c.tenant
        << "); the device holds its own secret key\n";
    return runtime::kExitOk;
  }
  const fs::path file = a.key_file ? fs::path(*a.key_file)
                                   : default_key_file(storage.parent_path() / "devices", c.tenant,
                                                      c.device, c.key.kid);
  c.write(file);
  out << what << " key " << c.key.kid << " for device " << c.device << " (tenant " << c.tenant
      << ")\nsecret key written to " << file.string()
      << " (mode 0600; the only copy — give it to the device: kiln record --key " << file.string()
      << ")\n";
  return runtime::kExitOk;
}

}  // namespace

std::filesystem::path default_key_file(const std::filesystem::path& dir, const std::string& tenant,
                                       const std::string& device, const std::string& kid) {
  // With --server these come from the server's answer: names that could not have been
  // registered (a '/' or '..') must not pick where the secret is written.
  const bool hex_kid = !kid.empty() && std::all_of(kid.begin(), kid.end(), [](char c) {
    return std::isxdigit(static_cast<unsigned char>(c));
  });
  if (auth::tenant_problem(tenant) || !telemetry::valid_device_name(device) || !hex_kid)
    throw std::runtime_error("will not write a device key for tenant '" + tenant + "', device '" +
                             device + "', key '" + kid +
                             "': not names kiln registers (name the file with --key-out)");
  return dir / tenant / (device + "." + kid + ".key");
}

const std::map<std::string, std::string>& telemetry_help() {
  static const std::map<std::string, std::string> help = {
      {"record",
       R"(Usage: kiln record --key FILE [--driver NODE] [--server URL --api-key KEY]
                   [--batch N] [--speed X] [--roasts N] [--duration S] [--spool DIR]
       kiln record --flush --key FILE --server URL --api-key KEY [--spool DIR]

Reads the roaster through the telemetry_driver node (nodes.telemetry_driver, default sim; --driver
NODE selects another, gated as usual), batches N readings (default 10), signs each batch with the
device key in FILE (`kiln devices add` writes it; the key names the device and tenant the
readings are stored as, whatever serial the driver reports) and sends it:
  with --server: to POST /v1/telemetry/DEVICE of that server; when the server cannot be reached
    (or answers 5xx or 429) the envelope goes to the spool (DIR, default var/spool/DEVICE) and is
    sent first once the server answers again; an envelope the server refuses with an ingest
    reason is moved to DIR/rejected with the reason printed, and a refusal of the key itself
    (unknown, revoked or expired key, wrong device, bad signature) also stops the recorder; any
    other answer (a bad API key, a wrong URL) stops it with the batch kept in the spool;
  without --server: into this deployment's own storage (sessions and missions follow locally).
A recorder runs for hours: give the API key as KILN_API_KEY rather than --api-key, which any
user of the machine can read in its command line.
A driver that does not pace itself (the simulated roaster) is read every interval / X seconds:
--speed 60 runs a roast a minute per second; 0 reads as fast as it can.
Stops after N roasts (default 1: once the roaster has dropped and finished cooling; a roaster
without a state channel, whose readings all have state 0, once the event detector finds DROP),
after S seconds of device time, on Ctrl-C (the partial batch is sent), or when the driver's
readings end (a replay file: said when that comes before the roasts asked for); --roasts 0
records until then. Prints progress every 30 s of device time. Without --server the roast_report missions
of the sessions wait in this deployment until `kiln mission work` (or `kiln serve`) runs them.
Exit 0 when every batch read was stored; 1 when batches were refused or still wait in the spool
for the server (the summary line says how many and where), when the driver failed, or when the
server refused the key or the recorder stopped on an answer it cannot go on after. --flush sends what the spool holds,
oldest first, and exits without reading the roaster: exit 0 when the spool is empty afterwards,
1 when batches were refused or still wait for the server.
)"},
      {"devices add",
       R"(Usage: kiln devices add DEVICE [--tenant T] [--public-key HEX] [--key-out FILE]

Registers a device and its Ed25519 key (ledger event device.key_added). Without --public-key a
key pair is made and the secret written to FILE (mode 0600, never overwritten): the only copy.
FILE defaults to devices/TENANT/DEVICE.KID.key beside the database (storage.path: var/devices/...
by default), or var/devices/... here with --server. With --public-key the device keeps its own
secret.
)"},
      {"devices rotate",
       R"(Usage: kiln devices rotate DEVICE [--tenant T] [--grace SECONDS] [--public-key HEX] [--key-out FILE]

A new key for DEVICE; its older keys stay valid for --grace seconds (default 3600) while the
device switches, then expire (expired_key). A key still in an earlier rotation's grace expires
then too, if not sooner: --grace 0 ends every older key now.
)"},
      {"devices revoke", R"(Usage: kiln devices revoke KID|DEVICE [--tenant T]

Revokes one key, or every key of a device; its envelopes are refused from then on (revoked_key).
)"},
      {"devices list", R"(Usage: kiln devices list [--tenant T] [--json]

Device keys: kid, tenant, device, status (active, retiring, expired, revoked), created, and the
profile the device roasts to (kiln devices profile).
)"},
      {"sessions list",
       R"(Usage: kiln sessions list [--tenant T] [--device D] [--since DATE] [--limit N]
                          [--starting-after SESSION] [--json]

Roast sessions, newest first: id, device, CHARGE time (UTC), state, roast length, close reason,
profile, the QC verdict of its report (pass, warn, fail — held for an approver or accepted) and
its report mission. --since DATE (2026-12-03, or 2026-12-03T06:30, UTC) lists those that started then or
later. After a full page (default limit 100) a line says how to ask for the next: --starting-after
the last session's id.
)"},
      {"sessions show", R"(Usage: kiln sessions show SESSION [--tenant T] [--json]

One roast session with its number of samples.
)"},
      {"sessions mark",
       R"(Usage: kiln sessions mark SESSION EVENT [--at M:SS] [--clear] [--no-report] [--tenant T]
       kiln sessions mark --device D EVENT [--at M:SS]

Marks when EVENT happened in a roast: FCs (first crack, which is heard, not seen), or CHARGE,
DRY_END, DROP. The detector estimates FCs from the FCs phase temperature; a mark stands over it
in the session's analysis, QC, report and prediction. Without --at the mark is now (press it as
first crack starts); --at 8:12 (or 492, seconds) is that long after CHARGE. --device D marks
that device's newest session (the roast under way). --clear removes the mark.
A closed session's report mission (roast_report) runs again with the marks, so its QC and
report use them (--no-report: not now; `kiln report` always uses them); the report it replaces,
if still waiting (for an approver, say), is canceled. With --server the server
records it (POST /v1/sessions/SESSION:mark, operator role).
)"},
      {"sessions weigh",
       R"(Usage: kiln sessions weigh SESSION [--green GRAMS] [--roasted GRAMS] [--no-report] [--tenant T]
       kiln sessions weigh --device D [--green GRAMS] [--roasted GRAMS]

Records the batch's weights in grams: --green, the green beans charged; --roasted, the roasted
beans out (weighed once cooled, so often later). Roasted must weigh less than green (a roast
loses about 10-25 %; half or more is refused as a typo). The
session's analysis and report then give the weight loss, and QC checks it against a
weight_loss target (a profile's or a mission's: {"weight_loss": {"min": 12, "max": 16}}; not yet
weighed: a warning). A closed session's report mission runs again with the weights
(--no-report: not now). --device D weighs that device's newest session. With --server the
server records it (POST /v1/sessions/SESSION:weigh, operator role).
)"},
      {"sessions export", R"(Usage: kiln sessions export SESSION -o FILE.alog [--tenant T]

Writes a recorded roast as an Artisan log (opens in Artisan and `kiln analyze`): its readings
(BT, ET, the roaster's state), CHARGE and DROP, and its profile's phase temperatures. An FCs
the roaster did not mark (estimated from the phase temperature) is not written as a mark: mark
it first (kiln sessions mark SESSION FCs --at M:SS) or in Artisan. With --server the server's
tools do it.
)"},
      {"predict", R"(Usage: kiln predict SESSION [--follow [--every S]] [--tenant T] [--json]
       kiln predict --device D [--follow [--every S]] [--tenant T] [--json]

Predictive assist, read-only: from the session's curve so far, when first crack (at the FCs
temperature of plugin_config.roast.curve_phases) and DROP (at the development ratio its
profile's QC targets aim at, else 20 %) are expected, with an early/late band. With --server the
server makes it (GET /v1/sessions/SESSION/predict; a read-only key will do).

--device D: the roaster's newest session, the roast under way. --follow asks again every S
seconds (--every, default 5) and prints one line each time — time after CHARGE, BT, RoR, FCs
and DROP with their bands, DROP NOW when it is due — until the session closes. With --device it
may start before CHARGE: it waits for the roaster's next session (a closed one is the last
roast) and follows it. A server or database that does not answer is said once and asked again;
an unknown session or a refused key ends it (exit 1). --json with --follow: one JSON object a
line, with the session's id.
)"},
      {"report", R"(Usage: kiln report SESSION -o FILE.html|FILE.json|FILE.wav [--tenant T]

Analyses a roast session (events, phases, RoR), checks it against the QC targets (its profile's,
else roast.qc's defaults), compares it with its profile, and writes the HTML report (inline SVG
chart, opens offline) to FILE — or, for FILE.json, the report's numbers as JSON
(kiln.roast-report/1). With --server the server makes it (GET /v1/sessions/SESSION/report; a
read-only key will do).

FILE.wav: the spoken summary, as the session's report mission (roast_report) made it when the
session closed (GET /v1/sessions/SESSION/summary); FILE.flac, .mp3, .opus or .ogg: the same,
encoded so here. A report held for an approver speaks once approved.
)"},
  };
  return help;
}

// ---- devices --------------------------------------------------------------------------------

// The secret is written once, after registering: refuse a --key-out that exists before anything
// is registered (otherwise the key would be active with its secret lost).
void check_key_out(const Args& a) {
  if (a.key_file && !a.public_key && fs::exists(*a.key_file))
    throw std::invalid_argument(*a.key_file +
                                " exists; a device key is never overwritten (choose another "
                                "--key-out)");
}

int cmd_devices_add(const Args& a, std::ostream& out) {
  const std::string device = device_arg(a, "devices add");
  check_key_out(a);
  auto pub = public_key_arg(a);
  auto k = boot(a, false);
  auto c = k->telemetry().devices().add(a.tenant, device, pub,
                                        missions::Actor{"cli", missions::Role::kAdmin});
  return wrote_credentials(c, a, out, "added", k->storage_path());
}

int cmd_devices_rotate(const Args& a, std::ostream& out) {
  const std::string device = device_arg(a, "devices rotate");
  check_key_out(a);
  auto pub = public_key_arg(a);
  const double grace = number_arg(a.grace, "--grace", 3600, 0, 30 * 86400, true);
  auto k = boot(a, false);
  auto c = k->telemetry().devices().rotate(a.tenant, device, pub,
                                           std::chrono::seconds(static_cast<long>(grace)),
                                           missions::Actor{"cli", missions::Role::kAdmin});
  return wrote_credentials(c, a, out, "rotated to", k->storage_path());
}

int cmd_devices_revoke(const Args& a, std::ostream& out) {
  const std::string id = device_arg(a, "devices revoke");
  auto k = boot(a, false);
  for (const auto& key : k->telemetry().devices().revoke(
           a.tenant, id, missions::Actor{"cli", missions::Role::kAdmin}))
    out << "revoked " << key.kid << " (device " << key.device << ", tenant " << key.tenant << ")\n";
  return runtime::kExitOk;
}

int cmd_devices_list(const Args& a, std::ostream& out) {
  auto k = boot_reading(a);
  const auto keys = telemetry::ProfileStore::with_profiles(
      k->storage_path(), k->telemetry().devices().list(a.tenant_filter));
  if (a.json)
    out << pretty(keys);
  else
    print_devices(keys, out);
  return runtime::kExitOk;
}

// ---- sessions -------------------------------------------------------------------------------

// A session's time member (device clock, epoch seconds) in UTC as the other listings' times; ""
// when absent.
static std::string device_time(const json::object& o, const char* member, const char* format) {
  const auto* c = o.if_contains(member);
  if (!c || !c->is_number()) return std::string();
  const auto secs = static_cast<std::time_t>(c->to_number<double>());
  std::tm tm{};
  gmtime_r(&secs, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, format, &tm);
  return std::string(buf);
}

// The QC of a session's report as a roaster reads it: "pass", "warn", "fail, held for an
// approver", "fail, accepted by NAME", or the report's state before QC ran ("pending"); "" for a
// session without a report yet.
static std::string qc_status(const json::object& session) {
  const auto* r = session.if_contains("report");
  if (!r || !r->is_object()) return "";
  const auto& report = r->as_object();
  const std::string verdict = string_at(report, "verdict"), state = string_at(report, "state");
  const auto* outdated = report.if_contains("outdated");
  const std::string before = outdated && outdated->is_bool() && outdated->as_bool()
                                 ? " (before the latest marks or weights)"
                                 : "";
  if (verdict.empty()) return "QC " + common::to_lower(state) + before;
  if (verdict != "fail") return "QC " + verdict + before;
  if (!string_at(report, "accepted_by").empty())
    return "QC fail, accepted by " + string_at(report, "accepted_by") + before;
  return (state == "QUARANTINED" ? "QC fail, held for an approver" : "QC fail") + before;
}

void print_session(const json::object& o, std::ostream& out) {
  const std::string id = string_at(o, "id");
  const bool open = string_at(o, "state") == "open";
  out << "session " << id << " (device " << string_at(o, "device") << ", tenant "
      << string_at(o, "tenant") << ")\n";
  out << "  state:    " << string_at(o, "state");
  if (!open && !string_at(o, "close_reason").empty())
    out << " (closed by " << string_at(o, "close_reason") << ")";
  out << "\n";
  out << "  CHARGE:   " << device_time(o, "charge_t", "%Y-%m-%d %H:%M:%S UTC")
      << " (device clock)\n";
  if (const auto* d = o.if_contains("duration_s"); d && d->is_number())
    out << "  roast:    " << mmss(*d)
        << (open                                                   ? " so far"
            : o.if_contains("drop_t") && !o.at("drop_t").is_null() ? " CHARGE to DROP"
                                                                   : " CHARGE to the last reading")
        << "\n";
  if (const auto* n = o.if_contains("samples"); n && n->is_number())
    out << "  readings: " << n->to_number<std::int64_t>() << "\n";
  if (const auto* p = o.if_contains("profile"); p && p->is_object())
    out << "  profile:  " << p->at("name").as_string().c_str() << " v"
        << p->at("version").to_number<std::int64_t>() << "\n";
  else
    out << "  profile:  none (QC checks roast.qc's defaults)\n";
  if (const auto* r = o.if_contains("reopens"); r && r->is_number() && r->to_number<int>() > 0)
    out << "  reopened: " << r->to_number<int>() << " time(s) after a silence\n";
  if (const auto* w = o.if_contains("weight"); w && w->is_object()) {
    const auto& weight = w->as_object();
    auto grams = [&](const char* key, const char* what) {
      const auto* v = weight.if_contains(key);
      if (!v || !v->is_number()) return std::string(what) + " not weighed";
      return one_decimal(v->to_number<double>()) + " g " + what;
    };
    auto known = [&](const char* key) {
      const auto* v = weight.if_contains(key);
      return v && v->is_number();
    };
    if (known("green_g") || known("roasted_g")) {
      out << "  weight:   " << grams("green_g", "green") << " → " << grams("roasted_g", "roasted");
      if (known("loss_percent"))
        out << ", loss " << one_decimal(weight.at("loss_percent").to_number<double>()) << " %";
      out << "\n";
    }
  }
  if (const auto* m = o.if_contains("marks"); m && m->is_object() && !m->as_object().empty()) {
    // As a roast's clock reads them: from CHARGE, the marked one where there is one.
    const auto& marks = m->as_object();
    double charge = o.at("charge_t").to_number<double>();
    if (const auto* c = marks.if_contains("CHARGE")) charge = c->to_number<double>();
    out << "  marked:  ";
    for (const char* e : telemetry::kMarkableEvents)
      if (const auto* t = marks.if_contains(e))
        out << " " << e << " " << mmss(json::value(t->to_number<double>() - charge));
    out << " (after CHARGE, by the roaster)\n";
    // A marked CHARGE moves the roast's clock: every time shown counts from it.
    if (const double moved = charge - o.at("charge_t").to_number<double>(); std::abs(moved) >= 1)
      out << "            times count from the marked CHARGE, "
          << mmss(json::value(std::abs(moved))) << (moved > 0 ? " after" : " before")
          << " the detected one\n";
  }
  const std::string mission = string_at(o, "mission_id");
  if (!mission.empty())
    out << "  report:   mission " << mission << ", " << qc_status(o) << " (kiln mission show "
        << mission << ")\n";
  const auto* report = o.if_contains("report");
  const bool held = report && report->is_object() && report->as_object().contains("state") &&
                    report->as_object().at("state") == "QUARANTINED";
  if (held)
    out << "  next:     an approver accepts the roast (kiln mission approve " << mission
        << " --reason TEXT), or mark FCs / weigh the batch if QC rests on a wrong estimate\n";
  else if (open)
    out << "  next:     kiln predict " << id
        << " --follow (when FCs and DROP are due, until DROP); at first crack: kiln sessions "
           "mark "
        << id << " FCs\n";
  else if (report && report->is_object() && report->as_object().contains("files_released") &&
           report->as_object().at("files_released") == true)
    out << "  next:     kiln report " << id
        << " -o report.html (its spoken summary was released by retention)\n";
  else
    out << "  next:     kiln report " << id
        << " -o report.html (or -o summary.wav: the spoken summary)\n";
}

void print_sessions(const json::array& sessions, std::ostream& out) {
  if (sessions.empty()) {
    out << "no roast sessions yet (kiln record sends telemetry)\n";
    return;
  }
  // Columns as wide as their longest entry: ids carry the tenant and run long.
  auto charged = [](const json::object& o) { return device_time(o, "charge_t", "%Y-%m-%d %H:%M"); };
  std::vector<std::vector<std::string>> rows{{"SESSION", "TENANT", "DEVICE", "CHARGE (UTC)",
                                              "STATE", "ROAST", "CLOSED BY", "PROFILE", "QC",
                                              "MISSION"}};
  for (const auto& v : sessions) {
    const auto& o = v.as_object();
    std::string roast = "(open)", closed_by;
    if (const auto* d = o.if_contains("duration_s"); d && d->is_number()) {
      roast = mmss(*d);
      closed_by = string_at(o, "close_reason");
    }
    std::string profile;
    if (const auto* p = o.if_contains("profile"); p && p->is_object())
      profile = std::string(p->at("name").as_string()) + " v" +
                std::to_string(p->at("version").to_number<std::int64_t>());
    std::string qc = qc_status(o);
    if (qc.rfind("QC ", 0) == 0) qc = qc.substr(3);
    rows.push_back({string_at(o, "id"), string_at(o, "tenant"), string_at(o, "device"), charged(o),
                    string_at(o, "state"), roast, closed_by, profile, qc,
                    string_at(o, "mission_id")});
  }
  print_table(rows, out);
}

int cmd_sessions_list(const Args& a, std::ostream& out) {
  auto k = boot_reading(a);
  const auto limit =
      static_cast<std::int64_t>(number_arg(a.limit, "--limit", 100, 1, 100000, true));
  std::optional<double> since;
  if (a.since) since = utc_seconds(*a.since, "--since");
  telemetry::Sessionizer::ListFilter f;
  f.tenant = a.tenant_filter;
  f.device = a.device;
  f.limit = limit + 1;  // one more tells whether there is a next page
  f.since = since;
  f.starting_after = a.starting_after;
  auto list = telemetry::Sessionizer::list(k->storage_path(), f);
  const bool more = static_cast<std::int64_t>(list.size()) > limit;
  if (more) list.pop_back();
  json::array arr;
  for (const auto& s : list) arr.push_back(s.to_json());
  if (a.json) {
    out << pretty(arr);
  } else {
    print_sessions(arr, out);
    if (more) print_next_page(arr, out);
  }
  return runtime::kExitOk;
}

int cmd_sessions_show(const Args& a, std::ostream& out) {
  if (a.positional.size() < 3) throw std::invalid_argument("sessions show needs a SESSION");
  auto k = boot_reading(a);
  auto s = telemetry::Sessionizer::get(k->storage_path(), a.tenant_filter, a.positional[2]);
  if (!s)
    throw missions::MissionError(missions::MissionError::Code::kNotFound,
                                 telemetry::no_session(a.positional[2], a.tenant_filter));
  const auto o = telemetry::Sessionizer::described(k->storage_path(), *s);
  if (a.json)
    out << pretty(o);
  else
    print_session(o, out);
  return runtime::kExitOk;
}

// The tenant a command about `session` asks in: --tenant, else the one its id ends with (after
// the '@'), else — an id an older kiln made ("s-r1-1796466456-acme"), looked up in `k`'s
// storage when the command reads it here — the session's own, else the default.
static std::string tenant_of_session(const Args& a, const std::string& session,
                                     const Kernel* k = nullptr) {
  if (a.tenant_filter || session.empty()) return a.tenant;
  if (const auto at = session.rfind('@'); at != std::string::npos) return session.substr(at + 1);
  if (k)
    if (const auto s = telemetry::Sessionizer::get(k->storage_path(), std::nullopt, session))
      return s->tenant;
  return a.tenant;
}

// "8:12", "8:12.5" or "492": seconds after CHARGE.
static double clock_arg(const std::string& text) {
  // "8.05" is a clock misread far more often than 8.05 seconds: seconds are whole.
  if (const auto dot = text.find('.'); dot != std::string::npos && dot > 0 &&
                                       text.find(':') == std::string::npos &&
                                       text.find_first_not_of("0123456789.") == std::string::npos)
    throw std::invalid_argument("--at '" + text + "': seconds are whole (492); did you mean " +
                                text.substr(0, dot) + ":" + text.substr(dot + 1) + "?");
  try {
    std::size_t used = 0;
    const auto colon = text.find(':');
    if (colon == std::string::npos) {
      const double v = std::stod(text, &used);
      if (used == text.size() && std::isfinite(v) && v >= 0) return v;
    } else if (colon > 0 && std::isdigit(static_cast<unsigned char>(text[0]))) {
      const auto minutes = std::stoul(text.substr(0, colon), &used);
      const std::string rest = text.substr(colon + 1);
      std::size_t used_s = 0;
      const double secs = rest.empty() || !std::isdigit(static_cast<unsigned char>(rest[0]))
                              ? -1
                              : std::stod(rest, &used_s);
      if (used == colon && used_s == rest.size() && secs >= 0 && secs < 60)
        return static_cast<double>(minutes) * 60 + secs;
    }
  } catch (const std::exception&) {
  }
  throw std::invalid_argument(
      "--at wants the time after CHARGE as M:SS (8:12) or seconds (492), "
      "not '" +
      text + "'");
}

// "500" or "432.5": grams above 0.
static double grams_arg(const std::string& text, const char* flag) {
  try {
    std::size_t used = 0;
    const double g = std::stod(text, &used);
    if (used == text.size() && std::isfinite(g) && g > 0) return g;
  } catch (const std::exception&) {
  }
  throw std::invalid_argument(std::string(flag) +
                              " wants a weight in grams above 0 (e.g. 500), not '" + text + "'");
}

MarkArgs mark_args(const Args& a,
                   const std::function<std::optional<std::string>(const std::string&)>& newest) {
  MarkArgs m;
  m.action = a.positional.size() > 1 && a.positional[1] == "weigh" ? "weigh" : "mark";
  const bool weigh = m.action == "weigh";
  // What follows SESSION: the EVENT to mark; nothing to weigh.
  const std::size_t rest = weigh ? 0 : 1;
  const std::string usage = weigh ? "kiln sessions weigh SESSION --green 500 --roasted 430"
                                  : "kiln sessions mark SESSION FCs --at 8:12";
  if (a.device) {
    if (a.positional.size() != 2 + rest)
      throw std::invalid_argument("sessions " + m.action + " --device D takes " +
                                  (weigh ? "no SESSION" : "the EVENT alone") + " (" + usage + ")");
    auto s = newest(*a.device);
    if (!s)
      throw missions::MissionError(
          missions::MissionError::Code::kNotFound,
          "device " + *a.device + " has no roast session (kiln sessions list shows them)");
    m.session = *s;
  } else {
    if (a.positional.size() != 3 + rest)
      throw std::invalid_argument("sessions " + m.action + " needs a SESSION" +
                                  (weigh ? "" : " and an EVENT") + " (" + usage +
                                  "), or --device D" + (weigh ? "" : " and the EVENT"));
    m.session = a.positional[2];
  }
  if (a.no_report) m.body["report"] = false;
  if (weigh) {
    if (!a.green && !a.roasted)
      throw std::invalid_argument("sessions weigh needs --green GRAMS, --roasted GRAMS or both");
    if (a.green) m.body["green_g"] = grams_arg(*a.green, "--green");
    if (a.roasted) m.body["roasted_g"] = grams_arg(*a.roasted, "--roasted");
    return m;
  }
  m.body["event"] = a.positional.back();
  if (a.clear && a.at) throw std::invalid_argument("--clear removes the mark: give no --at");
  if (a.clear) m.body["clear"] = true;
  if (a.at) m.body["after_charge"] = clock_arg(*a.at);
  return m;
}

int cmd_sessions_mark(const Args& a, std::ostream& out) {
  auto k = boot_reading(a);
  const auto m = mark_args(a, [&](const std::string& device) -> std::optional<std::string> {
    telemetry::Sessionizer::ListFilter newest;
    newest.tenant = a.tenant_filter;
    newest.device = device;
    newest.limit = 1;
    auto list = telemetry::Sessionizer::list(k->storage_path(), newest);
    if (list.empty()) return std::nullopt;
    return list.front().id;
  });
  const std::string tenant = tenant_of_session(a, m.session, k.get());
  k->telemetry().sessions().change(tenant, m.session, m.action, m.body,
                                   missions::Actor{"cli", missions::Role::kAdmin});
  const auto o = telemetry::Sessionizer::described(
      k->storage_path(), *telemetry::Sessionizer::get(k->storage_path(), tenant, m.session));
  if (a.json)
    out << pretty(o);
  else
    print_session(o, out);
  return runtime::kExitOk;
}

// ---- report ---------------------------------------------------------------------------------

// Tool calls here (booting the kernel) or on a server (--server, or KILN_SERVER_URL).
struct Invoker {
  std::unique_ptr<Kernel> k;
  std::optional<http::Client> client;
  std::string key;
  std::string tenant;
  // `session`: a session id the command names; without --tenant its tenant (after the '@') is
  // the one asked, as the id says where it belongs.
  explicit Invoker(const Args& a, const std::string& session = {}) {
    const auto target = server_target(a);
    key = target.key;
    if (!target.url.empty())
      client.emplace(target.url);
    else
      k = boot(a, true, {"event_detector"});  // the roast tools' one node
    tenant = tenant_of_session(a, session, k.get());
  }
  // The output, or the error (code, message, details).
  Result<json::value, ToolError> operator()(const std::string& tool, json::object input) {
    if (client) {
      std::vector<std::pair<std::string, std::string>> h{{"Content-Type", "application/json"}};
      if (!key.empty()) h.emplace_back("Authorization", "Bearer " + key);
      auto res = client->request("POST", "/v1/tools/" + tool + ":invoke",
                                 json::serialize(json::object{{"input", input}}), h);
      auto v = json::parse(res.body);
      if (res.status == 200) return v.at("output");
      const auto& e = v.at("error");
      return Unexpected<ToolError>{ToolError{
          std::string(e.at("code").as_string()), std::string(e.at("message").as_string()), false,
          e.as_object().contains("details") ? e.at("details") : json::value(nullptr)}};
    }
    runtime::ToolCall call;
    call.tool = tool;
    call.tenant = tenant;
    call.input = std::move(input);
    auto r = k->executor().invoke(call);
    if (!r.ok()) return Unexpected<ToolError>{r.error()};
    return r.value().output;
  }
  // A server's read-only route (GET PATH): the body, or its error. Only with a server.
  // `content_type`, when given, gets the answer's media type.
  // `flag`, when given: whether the answer's header `flag_header` says "true".
  Result<std::string, ToolError> get(const std::string& path, std::string* content_type = nullptr,
                                     const char* flag_header = nullptr, bool* flag = nullptr) {
    std::vector<std::pair<std::string, std::string>> h;
    if (!key.empty()) h.emplace_back("Authorization", "Bearer " + key);
    auto res = client->request("GET", path, "", h);
    if (content_type) *content_type = res.header("content-type");
    if (flag_header && flag) *flag = res.header(flag_header) == "true";
    if (res.status == 200) return std::move(res.body);
    json::error_code ec;
    const auto v = json::parse(res.body, ec);
    if (ec || !v.is_object() || !v.as_object().contains("error"))  // not kiln's (a proxy's?)
      return Unexpected<ToolError>{ToolError{"http_" + std::to_string(res.status),
                                             "GET " + path + " answered " +
                                                 std::to_string(res.status) + ": " +
                                                 res.body.substr(0, 200),
                                             false,
                                             {}}};
    const auto& e = v.at("error").as_object();
    return Unexpected<ToolError>{
        ToolError{std::string(e.at("code").as_string()),
                  std::to_string(res.status) + ": " + std::string(e.at("message").as_string()),
                  false, e.contains("details") ? e.at("details") : json::value(nullptr)}};
  }
  telemetry::ToolRunner runner() {
    return [this](const std::string& tool, json::object input) {
      return (*this)(tool, std::move(input));
    };
  }
};

// Writes a command's output file; false (and the reason on `err`) when it cannot.
static bool write_out(const std::string& file, std::string_view text, const char* command,
                      std::ostream& err) {
  try {
    write_output_file(file, text);
    return true;
  } catch (const std::exception& e) {
    err << command << ": " << e.what() << "\n";
    return false;
  }
}

// The audio format an output file's extension asks for (kiln::audio's names).
static std::string audio_format_of(const std::string& ext) {
  if (ext == ".ogg" || ext == ".opus") return "opus";
  return ext.size() > 1 ? ext.substr(1) : "wav";
}

// FILE.wav (or another audio file): the spoken summary the session's report mission kept.
int write_summary_audio(Invoker& invoke, const std::string& session, const std::string& file,
                        std::ostream& out, std::ostream& err) {
  std::string bytes, media_type, source;
  if (invoke.client) {
    auto got = invoke.get("/v1/sessions/" + url_encode(session) + "/summary", &media_type);
    if (!got.ok()) {
      err << "kiln report: " << got.error().code << ": " << got.error().message << "\n";
      return runtime::kExitFailed;
    }
    bytes = std::move(got.value());
    source = "the server's";
  } else {
    auto got = telemetry::session_summary_audio(invoke.k->storage_path(), invoke.k->missions(),
                                                invoke.tenant, session);
    if (!got.ok()) {
      err << "kiln report: " << got.error().code << ": " << got.error().message << "\n";
      return runtime::kExitFailed;
    }
    bytes = std::move(got.value().data);
    media_type = got.value().info.media_type;
    source = "step " + got.value().info.step + " of its report mission";
  }
  // Kept as WAV (the mission's default): another audio file's extension gets it encoded so.
  const std::string want = audio_format_of(fs::path(file).extension().string());
  const bool encode = media_type.rfind("audio/wav", 0) == 0 && want != "wav";
  if (encode) {
    std::string why;
    auto pcm = audio::read_wav(bytes, &why);
    auto encoded = pcm ? audio::encode(pcm->samples, pcm->sample_rate, want, &why) : std::nullopt;
    if (!encoded) {
      err << "kiln report: the summary (" << media_type << ") cannot be written as " << want << ": "
          << why
          << " (formats this build writes: " << common::join(audio::supported_formats(), ", ")
          << "; FILE.wav keeps it as it is)\n";
      return runtime::kExitFailed;
    }
    bytes = std::move(encoded->bytes);
    media_type = encoded->media_type;
    source += ", encoded as " + want;
  }
  if (!write_out(file, bytes, "kiln report", err)) return runtime::kExitFailed;
  out << "wrote " << file << " (" << bytes.size() << " bytes of " << media_type
      << ": the spoken summary, from " << source << ")\n";
  const auto ext = fs::path(file).extension().string();
  if (!encode && !ext.empty() && media_type.find(ext.substr(1)) == std::string::npos &&
      !(ext == ".mp3" && media_type == "audio/mpeg"))
    err << "kiln report: note: the summary is " << media_type << ", whatever " << file
        << "'s extension says\n";
  return runtime::kExitOk;
}

int cmd_report(const Args& a, std::ostream& out, std::ostream& err) {
  if (a.positional.size() < 2) throw std::invalid_argument("report needs a SESSION");
  if (!a.out_file) throw std::invalid_argument("report needs -o FILE.html");
  const std::string session = a.positional[1];
  const auto ext = fs::path(*a.out_file).extension();
  Invoker invoke(a, session);
  for (const char* audio : {".wav", ".flac", ".mp3", ".opus", ".ogg", ".pcm"})
    if (ext == audio) return write_summary_audio(invoke, session, *a.out_file, out, err);
  // roast.report's output: made here, or by the server's report route (a read-only key will do).
  json::object rep;
  if (invoke.client) {
    const std::string route = "/v1/sessions/" + url_encode(session) + "/report";
    auto numbers = invoke.get(route);
    auto page = numbers.ok() && ext != ".json" ? invoke.get(route + "?format=html")
                                               : Result<std::string, ToolError>{std::string()};
    if (!numbers.ok() || !page.ok()) {
      const auto& e = numbers.ok() ? page.error() : numbers.error();
      err << "kiln report: " << e.code << ": " << e.message << "\n";
      return runtime::kExitFailed;
    }
    rep["report"] = json::parse(numbers.value());
    rep["summary"] = rep.at("report").at("summary");
    rep["bytes"] = page.value().size();
    rep["html"] = page.value();
  } else {
    auto made = telemetry::session_report(
        invoke.runner(), session,
        telemetry::accepted_in(invoke.k->missions(), invoke.tenant, invoke.k->storage_path()));
    if (!made.ok()) {
      err << "kiln report: " << made.error().code << ": " << made.error().message << "\n";
      return runtime::kExitFailed;
    }
    rep = std::move(made.value());
  }
  // FILE.json: the report's numbers; anything else: the page.
  if (ext == ".json") {
    if (!write_out(*a.out_file, pretty(rep.at("report")), "kiln report", err))
      return runtime::kExitFailed;
    out << "wrote " << *a.out_file << " (the report's numbers as JSON)\n"
        << rep.at("summary").as_string().c_str() << "\n";
    return runtime::kExitOk;
  }
  if (!write_out(*a.out_file, rep.at("html").as_string(), "kiln report", err))
    return runtime::kExitFailed;
  if (ext != ".html" && ext != ".htm")
    err << "kiln report: note: the report is HTML (open it in a browser); " << *a.out_file
        << " does not end in .html (FILE.json writes its numbers as JSON)\n";
  out << "wrote " << *a.out_file << " (" << rep.at("bytes").to_number<std::int64_t>() << " bytes)\n"
      << rep.at("summary").as_string().c_str() << "\n";
  return runtime::kExitOk;
}

// ---- record ---------------------------------------------------------------------------------

int cmd_sessions_export(const Args& a, std::ostream& out, std::ostream& err) {
  if (a.positional.size() < 3) throw std::invalid_argument("sessions export needs a SESSION");
  if (!a.out_file) throw std::invalid_argument("sessions export needs -o FILE.alog");
  const std::string session = a.positional[2];
  Invoker invoke(a, session);
  std::string text;
  bool estimated = false;
  if (invoke.client) {
    // GET /v1/sessions/{id}/alog: a viewer's key will do (the tools it runs need an operator's).
    std::string media_type;
    auto got = invoke.get("/v1/sessions/" + url_encode(session) + "/alog", &media_type,
                          "x-kiln-fcs-estimated", &estimated);
    if (!got.ok()) {
      err << "kiln sessions export: " << got.error().code << ": " << got.error().message << "\n";
      return runtime::kExitFailed;
    }
    text = std::move(got.value());
  } else {
    auto alog = telemetry::session_alog(invoke.runner(), session);
    if (!alog.ok()) {
      err << "kiln sessions export: " << alog.error().code << ": " << alog.error().message << "\n";
      return runtime::kExitFailed;
    }
    text = std::string(alog.value().at("alog").as_string());
    estimated = alog.value().at("fcs_estimated").as_bool();
  }
  if (!write_out(*a.out_file, text, "kiln sessions export", err)) return runtime::kExitFailed;
  out << "wrote " << *a.out_file << " (" << text.size() << " bytes)\n";
  if (estimated)
    out << "note: FCs was estimated from the phase temperature, not marked; it is not written "
           "as a mark (mark it in Artisan)\n";
  return runtime::kExitOk;
}

// "7:10 - 7:55"; a late end the fit cannot bound (a steeper decline would stall) is open.
static std::string eta_band(const json::value& when) {
  const auto& late = when.at("late");
  return mmss(when.at("early")) + (late.is_number() ? " - " + mmss(late) : " or later");
}

// One line of `kiln predict --follow`: where the roast is and what is expected.
static std::string prediction_line(const json::object& v) {
  const std::string status(v.at("status").as_string());
  std::string line = mmss(v.at("now")) + "  BT " + one_line(v.at("bt")) + " °C  RoR " +
                     one_line(v.at("ror")) + " °C/min  ";
  if (status == "fcs_reached" || status == "drop_due") {
    const auto* marked = v.at("fcs").as_object().if_contains("marked");
    line += "FCs " + mmss(v.at("fcs").at("eta")) +
            (marked && *marked == true ? " marked" : " estimated (not marked)") + "  DROP " +
            mmss(v.at("drop").at("eta")) + " for DTR " + one_line(v.at("dtr_target")) + " %";
    if (status == "drop_due") line += "  DROP NOW: " + std::string(v.at("message").as_string());
  } else if (v.at("fcs").at("eta").is_number()) {
    line += "FCs " + mmss(v.at("fcs").at("eta")) + " (" + eta_band(v.at("fcs")) + ")  DROP " +
            mmss(v.at("drop").at("eta")) + " (" + eta_band(v.at("drop")) + ")";
  } else {
    line += v.at("message").as_string().c_str();
  }
  return line;
}

// Refusals that asking again will not change: a session that is not there, a key refused.
static bool lasting(const ToolError& e) {
  return e.code == "not_found" || e.code == "unauthenticated" || e.code == "forbidden" ||
         e.code == "invalid_input" || e.code == "invalid_request";
}

static int follow_prediction(
    const Args& a, Invoker& invoke, const std::function<Result<json::object, ToolError>()>& newest,
    const std::function<Result<json::object, ToolError>(const std::string&)>& predict,
    std::ostream& out, std::ostream& err) {
  const double every = number_arg(a.every, "--every", 5, 0.2, 3600);
  std::string followed = a.device ? std::string() : a.positional[1];
  std::string last_roast;  // --device: its newest session when asked first, if closed: the last
  bool first = true;
  std::string said;  // a wait or a problem, said once until it changes
  auto tell = [&](const std::string& what) {
    if (what != said) err << "kiln predict: " << what << "\n" << std::flush;
    said = what;
  };
  // A refusal: the end (true) when asking again will not change it, else said once.
  auto refused = [&](const ToolError& e) {
    if (!lasting(e)) {
      tell(e.code + ": " + e.message + " (asking again)");
      return false;
    }
    err << "kiln predict: " << e.code << ": " << e.message << "\n";
    return true;
  };
  const std::string waiting =
      a.device ? "waiting for a roast on " + *a.device + " (its session opens at CHARGE)" : "";
  for (;; first = false, std::this_thread::sleep_for(std::chrono::duration<double>(every))) {
    Result<json::object, ToolError> p = json::object{};
    std::string session = followed;
    try {
      if (session.empty()) {  // --device, no session followed yet
        auto n = newest();
        if (!n.ok()) {
          if (refused(n.error())) return runtime::kExitFailed;
          continue;
        }
        const auto* id = n.value().if_contains("id");
        if (!id || (!last_roast.empty() && id->as_string() == last_roast)) {
          tell(waiting);
          continue;
        }
        session = std::string(id->as_string());
        if (first && n.value().at("state") == "closed") {
          last_roast = session;
          tell(waiting);
          continue;
        }
      }
      invoke.tenant = tenant_of_session(a, session, invoke.k.get());
      p = predict(session);
    } catch (const std::exception& e) {  // the server gone while it restarts, the network down
      tell(std::string(e.what()) + " (asking again)");
      continue;
    }
    if (!p.ok()) {
      if (refused(p.error())) return runtime::kExitFailed;
      continue;
    }
    said.clear();
    if (followed.empty()) {
      followed = session;
      if (!a.json) out << "following session " << session << "\n";
    }
    auto v = std::move(p.value());
    v["session"] = session;
    if (a.json)
      out << json::serialize(v) << "\n";
    else if (v.at("status") == "closed")
      out << v.at("message").as_string().c_str() << "\n";
    else
      out << prediction_line(v) << "\n";
    out << std::flush;
    if (v.at("status") == "closed") return runtime::kExitOk;
  }
}

int cmd_predict(const Args& a, std::ostream& out, std::ostream& err) {
  if (a.device ? a.positional.size() != 1 : a.positional.size() != 2)
    throw std::invalid_argument(
        a.device ? "predict --device D takes no SESSION: it reads the roaster's newest session"
                 : "predict needs one SESSION (kiln sessions list shows them), or --device D "
                   "for the roast under way on that roaster");
  if (a.every && !a.follow)
    throw std::invalid_argument("--every S is how often --follow asks again: give --follow too");
  Invoker invoke(a, a.device ? std::string() : a.positional[1]);
  // The device's newest session ({} when it has none), here or on the server.
  auto newest = [&]() -> Result<json::object, ToolError> {
    if (invoke.client) {
      auto body = invoke.get("/v1/sessions?limit=1&device=" + url_encode(*a.device));
      if (!body.ok()) return Unexpected<ToolError>{body.error()};
      const auto list = json::parse(body.value());
      return list.as_array().empty() ? json::object{} : list.as_array().front().as_object();
    }
    telemetry::Sessionizer::ListFilter filter;
    filter.tenant = a.tenant_filter;
    filter.device = *a.device;
    filter.limit = 1;
    const auto list = telemetry::Sessionizer::list(invoke.k->storage_path(), filter);
    if (list.empty()) return json::object{};
    return json::object{{"id", list.front().id}, {"state", list.front().state}};
  };
  // Made here, or by the server's prediction route (a read-only key will do).
  auto predict = [&](const std::string& session) -> Result<json::object, ToolError> {
    if (!invoke.client) return telemetry::session_predict(invoke.runner(), session);
    auto body = invoke.get("/v1/sessions/" + url_encode(session) + "/predict");
    if (!body.ok()) return Unexpected<ToolError>{body.error()};
    return json::parse(body.value()).as_object();
  };
  if (a.follow) return follow_prediction(a, invoke, newest, predict, out, err);
  std::string session;
  if (a.device) {
    auto n = newest();
    if (!n.ok()) {
      err << "kiln predict: " << n.error().code << ": " << n.error().message << "\n";
      return runtime::kExitFailed;
    }
    if (!n.value().contains("id")) {
      err << "kiln predict: device " << *a.device
          << " has no roast session (kiln sessions list shows them)\n";
      return runtime::kExitFailed;
    }
    session = std::string(n.value().at("id").as_string());
    invoke.tenant = tenant_of_session(a, session, invoke.k.get());
  } else {
    session = a.positional[1];
  }
  auto p = predict(session);
  if (!p.ok()) {
    err << "kiln predict: " << p.error().code << ": " << p.error().message << "\n";
    return runtime::kExitFailed;
  }
  if (p.value().at("status") == "closed") {  // the roast is over: nothing left to predict
    if (a.json)
      out << pretty(p.value());
    else
      out << p.value().at("message").as_string().c_str() << "\n";
    return runtime::kExitOk;
  }
  const auto& v = p.value();
  if (a.json) {
    out << pretty(v);
    return runtime::kExitOk;
  }
  const std::string status(v.at("status").as_string());
  out << "at " << mmss(v.at("now")) << " after CHARGE: BT " << one_line(v.at("bt")) << " °C, RoR "
      << one_line(v.at("ror")) << " °C/min\n";
  if (status == "fcs_reached" || status == "drop_due") {
    // FCs is behind: when it came, and the DROP the DTR aims at (or that it is past).
    // Marked by the roaster, or only BT at the FCs temperature: an estimate until it is marked.
    const auto* marked = v.at("fcs").as_object().if_contains("marked");
    if (marked && *marked == true)
      out << "FCs  " << mmss(v.at("fcs").at("eta")) << "  marked\n";
    else
      out << "FCs  " << mmss(v.at("fcs").at("eta"))
          << "  estimated: BT reached the FCs temperature (" << one_line(v.at("fcs_bt"))
          << " °C); mark first crack when you hear it (kiln sessions "
          << "mark SESSION FCs)\n";
    out << "DROP " << mmss(v.at("drop").at("eta")) << "  for DTR " << one_line(v.at("dtr_target"))
        << " %\n";
    if (status == "drop_due") out << "DROP NOW: " << v.at("message").as_string().c_str() << "\n";
  } else if (v.at("fcs").at("eta").is_number()) {
    out << "FCs  " << mmss(v.at("fcs").at("eta")) << "  (" << eta_band(v.at("fcs")) << ") at BT "
        << one_line(v.at("fcs_bt")) << " °C\nDROP " << mmss(v.at("drop").at("eta")) << "  ("
        << eta_band(v.at("drop")) << ") for DTR " << one_line(v.at("dtr_target")) << " %\n";
  } else {
    out << v.at("message").as_string().c_str() << "\n";
  }
  return runtime::kExitOk;
}

int cmd_record(const Args& a, std::ostream& out, std::ostream& err) {
  if (!a.key_file)
    throw std::invalid_argument(
        "record needs --key FILE, the device key `kiln devices add DEVICE` wrote");
  const auto cred = telemetry::DeviceCredentials::read(*a.key_file);
  const auto batch_n = static_cast<std::size_t>(number_arg(a.batch, "--batch", 10, 1, 600, true));
  const double speed = number_arg(a.speed, "--speed", 1, 0, 100000);
  const int roasts = static_cast<int>(number_arg(a.roasts, "--roasts", 1, 0, 1000000, true));
  const double duration = number_arg(a.duration, "--duration", 0, 0, 1e9);
  Args ba = a;
  if (a.driver) {
    ba.sets.push_back("nodes.telemetry_driver=" + *a.driver);
    ba.set_origins[ba.sets.back()] = "--driver " + *a.driver;
  }
  const auto [url, api_key] = server_target(a);
  if (a.flush && url.empty())
    throw std::invalid_argument(
        "record --flush sends the spool to a server: give --server URL (and --api-key KEY); "
        "without --server kiln record stores into this deployment and spools nothing");
  // Booted below, unless --flush only sends what the spool holds.
  std::unique_ptr<Kernel> k;

  std::optional<http::Client> client;
  if (!url.empty()) client.emplace(url, std::chrono::seconds(10));
  const fs::path spool = a.spool ? fs::path(*a.spool) : fs::path("var/spool") / cred.device;

  std::int64_t sent = 0, spooled = 0, rejected = 0, drained = 0, lost = 0;
  std::string down;         // why the server could not take a batch, the last time it could not
  std::string fatal;        // the server refuses the recorder itself (key, URL): stop
  std::string key_refused;  // every envelope signed with this key will be refused: stop
  std::string too_large;    // every batch this size will be refused: stop
  // A refusal that is about the key, not the envelope: the next batches would fare the same.
  // Sends one envelope: "ok", "down" (keep it), or the refusal.
  auto send = [&](const std::string& env) -> std::pair<std::string, std::string> {
    if (!client) {
      auto r = k->telemetry().ingestor().ingest(cred.tenant, cred.device, env, now_s());
      if (r.accepted) return {"ok", ""};
      if (telemetry::reject::about_the_key(r.reason)) key_refused = r.reason + ": " + r.message;
      if (r.reason == telemetry::reject::kOversized) too_large = r.message;
      return {"refused", r.reason + ": " + r.message};
    }
    try {
      std::vector<std::pair<std::string, std::string>> h{{"Content-Type", "application/cose"}};
      if (!api_key.empty()) h.emplace_back("Authorization", "Bearer " + api_key);
      auto res = client->request("POST", "/v1/telemetry/" + cred.device, env, h);
      if (res.status == 200) return {"ok", ""};
      std::string code, message;
      json::error_code ec;
      auto v = json::parse(res.body, ec);
      if (!ec && v.is_object() && v.as_object().contains("error") && v.at("error").is_object()) {
        const auto& e = v.at("error").as_object();
        if (const auto* c = e.if_contains("code"); c && c->is_string()) code = c->as_string();
        if (const auto* m = e.if_contains("message"); m && m->is_string()) message = m->as_string();
      }
      // The server is up but cannot take the batch now (its disk is full, it is starting or
      // draining): kept in the spool, with the server's own words.
      if (res.status >= 500 || res.status == 429)
        return {"down", "it answered " + std::to_string(res.status) +
                            (code.empty() ? std::string() : " " + code + ": " + message)};
      // A refusal of this envelope carries an ingest reason; anything else (a bad API key, a
      // wrong URL) is the recorder's problem, not the envelope's: stop.
      const auto& reasons = telemetry::reject::all();
      if (std::find(reasons.begin(), reasons.end(), code) == reasons.end()) {
        fatal = "the server answered " + std::to_string(res.status) + " " +
                (code.empty() ? res.body : code + (message.empty() ? "" : ": " + message)) +
                " (check --server and --api-key)";
        return {"fatal", fatal};
      }
      if (telemetry::reject::about_the_key(code)) key_refused = code + ": " + message;
      if (code == telemetry::reject::kOversized) too_large = message;
      return {"refused", code + ": " + message};
    } catch (const std::exception& e) {
      return {"down", e.what()};
    }
  };
  auto spool_name = [&](std::uint64_t boot, std::uint64_t batch_seq) {
    char name[64];
    std::snprintf(name, sizeof name, "%020llu-%020llu.cose", static_cast<unsigned long long>(boot),
                  static_cast<unsigned long long>(batch_seq));
    return spool / name;
  };
  // A spool file a killed recorder was writing (NAME.cose.tmp-PID-…, never given its batch's
  // name): the batch's name when it is abandoned — its recorder is gone and it is over a minute
  // old (not a live recorder's, nor one whose PID this process cannot see), or it is over ten
  // minutes old whatever its PID says (a PID taken again after a reboot; a spool file is written
  // and named in well under a second).
  auto abandoned = [&](const fs::path& p) -> std::optional<fs::path> {
    const std::string name = p.filename().string();
    const auto at = name.find(".cose.tmp-");
    if (at == std::string::npos) return std::nullopt;
    const long pid = std::strtol(name.c_str() + at + 10, nullptr, 10);
    std::error_code ec;
    const auto written = fs::last_write_time(p, ec);
    if (ec) return std::nullopt;
    const auto age = fs::file_time_type::clock::now() - written;
    const bool gone = pid > 0 && ::kill(static_cast<pid_t>(pid), 0) != 0 && errno == ESRCH;
    if (age < std::chrono::minutes(gone ? 1 : 10)) return std::nullopt;
    return spool / name.substr(0, at + 5);
  };
  // Sends what the spool holds, oldest first; false when the server is still down.
  auto drain = [&]() -> bool {
    std::vector<fs::path> files;
    std::vector<std::pair<fs::path, fs::path>> left;  // (temporary file, its batch's name)
    for (const auto& e : fs::directory_iterator(spool)) {
      if (!e.is_regular_file()) continue;
      if (e.path().extension() == ".cose")
        files.push_back(e.path());
      else if (auto whole = abandoned(e.path()))
        left.emplace_back(e.path(), std::move(*whole));
    }
    // Named once the listing is over: a name made while a directory is listed may be listed
    // again, and its batch was sent twice (the second read found it gone, sent nothing as a
    // malformed envelope and stopped the recorder).
    for (const auto& [p, whole] : left) {
      std::error_code ec;
      if (fs::exists(whole, ec)) {
        fs::remove(p, ec);
        continue;
      }
      err << "kiln record: " << p.filename().string()
          << " was left by a recorder stopped while writing it: sending it as "
          << whole.filename().string() << " (refused as malformed if it was cut off)\n";
      fs::rename(p, whole, ec);
      if (!ec) files.push_back(whole);
    }
    std::sort(files.begin(), files.end());
    files.erase(std::unique(files.begin(), files.end()), files.end());
    bool sent_any = false, up = true;
    for (const auto& f : files) {
      std::ifstream in(f, std::ios::binary);
      if (!in) continue;  // gone since the listing (another drain of this spool sent it)
      std::stringstream buf;
      buf << in.rdbuf();
      auto [status, why] = send(buf.str());
      if (status == "down") down = why;
      if (status == "down" || status == "fatal") {
        if (status == "fatal") g_stop = true;  // a recording stops: its batches stay spooled
        up = false;
        break;
      }
      std::error_code ec;
      if (status == "refused") {
        ++rejected;
        err << "kiln record: the server refused spooled " << f.filename().string() << ": " << why
            << "\n";
        fs::rename(f, spool / "rejected" / f.filename(), ec);
        if (ec)
          err << "kiln record: cannot move " << f.string() << " to "
              << (spool / "rejected").string() << ": " << ec.message() << "\n";
      } else {
        ++drained;
        fs::remove(f, ec);
      }
      sent_any = true;
    }
    // The removals and moves made durable: after a power cut a batch sent already is not back
    // in the spool (sent again, it is a duplicate; after the device's next boot it was refused).
    if (sent_any) {
      try {
        common::sync_directory(spool);
      } catch (const std::exception& e) {
        err << "kiln record: " << e.what() << "\n";
      }
    }
    return up;
  };
  auto waiting = [&] {
    std::size_t n = 0;
    if (fs::is_directory(spool))
      for (const auto& e : fs::directory_iterator(spool))
        if (e.is_regular_file()) {
          const auto whole = e.path().extension() == ".cose" ? std::nullopt : abandoned(e.path());
          if (e.path().extension() == ".cose" || (whole && !fs::exists(*whole))) ++n;
        }
    return n;
  };

  if (a.flush) {
    // What an earlier run left in the spool, sent now without reading the roaster (it may be
    // roasting under another recorder, or unplugged).
    const std::size_t before = waiting();
    if (before == 0) {
      out << "nothing to send: the spool " << spool.string() << " holds no batches"
          << (fs::is_directory(spool) ? "" : " (it does not exist; --spool DIR names another)")
          << "\n";
      return runtime::kExitOk;
    }
    fs::create_directories(spool / "rejected");
    out << "sending " << before << " spooled batches of " << cred.device << " (tenant "
        << cred.tenant << ") from " << spool.string() << " to " << url << "\n";
    const bool up = drain();
    const std::size_t left = waiting();
    out << "sent " << drained << ", refused " << rejected
        << (rejected ? " (moved to " + (spool / "rejected").string() + ")" : std::string())
        << ", waiting in the spool " << left << "\n";
    if (!fatal.empty()) {
      err << "kiln record: " << fatal << "\n";
      return runtime::kExitFailed;
    }
    if (!up)
      err << "kiln record: the server cannot take batches now (" << down
          << "); the rest stays in the spool for the next kiln record\n";
    return left || rejected ? runtime::kExitFailed : runtime::kExitOk;
  }

  // The driver, and the event detector: it opens the sessions here without a server, and it
  // counts the roasts of a roaster without a state channel. Not the other kinds: a recording
  // machine needs no TTS voice. Sending to a server, it opens no database here (it made an empty
  // one in the working directory).
  auto record_opts = boot_options(ba, true, {"telemetry_driver", "event_detector"});
  record_opts.open_storage = url.empty();
  k = Kernel::boot(record_opts);
  auto driver = k->node<nodes::TelemetryDriver>();
  if (!driver)
    throw runtime::BootError(runtime::kExitPlugin,
                             "no telemetry_driver node is loaded (plugins telemetry_sim, "
                             "telemetry_bullet_r1)");
  auto opened = driver->open();
  if (!opened.ok()) {
    err << "kiln record: " << opened.error().code << ": " << opened.error().message << "\n";
    return runtime::kExitFailed;
  }
  const auto info = opened.value();
  fs::create_directories(spool);
  fs::create_directories(spool / "rejected");

  g_stop = false;
  auto old_int = std::signal(SIGINT, [](int) { g_stop = true; });
  auto old_term = std::signal(SIGTERM, [](int) { g_stop = true; });
  telemetry::KeyPair key = cred.key;
  // Each run is a new boot (its sequence starts at 1): in milliseconds, and above the last run's
  // (kept beside the spool), so two runs within a second never reuse (boot, seq).
  std::uint64_t boot_epoch = static_cast<std::uint64_t>(now_s() * 1000);
  {
    std::uint64_t last = 0;
    std::ifstream(spool / "last_boot") >> last;
    boot_epoch = std::max(boot_epoch, last + 1);
    // Synced: after a power cut the next run must still count above it.
    common::replace_file(spool / "last_boot", std::to_string(boot_epoch) + "\n", 0640);
  }
  std::uint64_t seq = 0;
  std::vector<telemetry::Sample> pending;
  int drops = 0;
  bool cooled = false;
  int last_state = -1;
  // A roaster without a state channel (every reading's state 0): its roasts are counted by the
  // event detector's DROP on the readings since the last one.
  bool state_seen = false;
  nodes::RoastCurve since_drop;
  const auto detector = k->node<nodes::EventDetector>();
  bool uncountable_said = false;
  double first_t = -1, last_progress = -1e18;
  std::deque<std::pair<double, double>> recent;  // (t, BT) of the last 30 s
  out << "recording " << cred.device << " (tenant " << cred.tenant << ") from " << info.model
      << " every " << info.interval_s << " s"
      << (info.paced_by_device ? ""
          : speed > 0          ? ", speed " + short_number(speed) + "x"
                               : std::string(", as fast as it reads"))
      << " -> " << (client ? url : std::string("local storage")) << "\n";
  // First crack is heard, not seen: how to say so while this records in real time.
  if (info.paced_by_device || speed == 1) {
    const std::string server = client ? " --server " + url : std::string();
    out << "at first crack: kiln sessions mark --device " << cred.device << " FCs" << server
        << "\nwhen FCs and DROP are due: kiln predict --device " << cred.device << " --follow"
        << server << "\n";
  }
  bool spool_backlog = client && waiting() > 0;
  // Signed batches neither sent nor spooled yet, oldest first: the one just made, and more while
  // the spool cannot be written (its disk full) with the server unreachable — held in memory, in
  // order, and tried again with each later batch and at the end, instead of ending the recording
  // with the roast still going.
  struct Unsent {
    std::uint64_t seq;
    std::size_t readings;
    std::string env;
  };
  std::deque<Unsent> outbox;
  constexpr std::size_t kMaxHeld = 20000;  // ≈ 55 h of 10-reading batches at 1 Hz
  std::string spool_failed;                // the spool's last write error, said once
  std::string down_said;  // why the server could not take a batch, said once until it changes
  auto deliver = [&]() {
    // The server is asked at most until it fails to take a batch in this call: with batches held
    // and a server that times out, one try a batch would stall the recording for hours.
    bool unreachable = false;
    while (!outbox.empty()) {
      const Unsent& u = outbox.front();
      if (spool_backlog && !unreachable) {
        spool_backlog = !drain();
        unreachable = spool_backlog;
      }
      if (!spool_backlog) {
        auto [status, why] = send(u.env);
        if (status == "ok") {
          ++sent;
          down_said.clear();
          outbox.pop_front();
          continue;
        }
        if (status == "fatal") {
          g_stop = true;  // kept in the spool below; the next run sends it
          spool_backlog = true;
        }
        if (status == "refused") {
          ++rejected;
          err << "kiln record: batch " << u.seq << " refused: " << why << "\n";
          try {  // kept, to look into (a full disk leaves none, said)
            common::replace_file(spool / "rejected" / spool_name(boot_epoch, u.seq).filename(),
                                 u.env, 0640);
          } catch (const std::exception& e) {
            err << "kiln record: the refused batch is not kept: " << e.what() << "\n";
          }
          if (!g_stop && !key_refused.empty()) {
            err << "kiln record: every batch signed with key " << cred.key.kid << " of "
                << cred.device << " (tenant " << cred.tenant
                << ") would be refused the same way; stopping (`kiln devices list` shows the "
                   "registered keys; --key FILE selects another)\n";
            g_stop = true;
          } else if (!g_stop && !too_large.empty()) {
            err << "kiln record: every batch of " << u.readings
                << " readings would be refused the same way; stopping (--batch N sends fewer "
                   "readings a batch)\n";
            g_stop = true;
          }
          outbox.pop_front();
          continue;
        }
        if (status == "down") {
          if (why != down_said)
            err << "kiln record: the server cannot take batches now (" << why << "); "
                << (spool_failed.empty() ? "spooling to " + spool.string()
                                         : std::string("holding them in memory"))
                << "\n";
          down_said = why;
          spool_backlog = unreachable = true;
        }
      }
      // Written under another name, synced and renamed once whole: a spool file is never half a
      // batch (a full disk once left an empty one that the next run sent as a malformed
      // envelope), nor, after a power cut, an empty file under a batch's name.
      try {
        common::replace_file(spool_name(boot_epoch, u.seq), u.env, 0640);
      } catch (const std::exception& e) {
        if (std::error_code ec; fs::exists(spool_name(boot_epoch, u.seq), ec)) {
          // Named, and only its directory's sync failed: in the spool, said.
          err << "kiln record: " << e.what() << "\n";
          ++spooled;
          outbox.pop_front();
          continue;
        }
        if (spool_failed != e.what())
          err << "kiln record: " << e.what() << " (disk full?): holding batch " << u.seq
              << " in memory"
              << (outbox.size() > 1 ? " with the " + std::to_string(outbox.size() - 1) + " after it"
                                    : std::string())
              << " and trying again with each batch\n";
        spool_failed = e.what();
        return;
      }
      if (!spool_failed.empty()) {
        err << "kiln record: the spool takes batches again (" << outbox.size() - 1
            << " more held in memory)\n";
        spool_failed.clear();
      }
      ++spooled;
      outbox.pop_front();
    }
  };
  auto flush_batch = [&]() {
    if (pending.empty()) return;
    telemetry::Batch b;
    b.device = {cred.device, boot_epoch};
    b.seq = ++seq;
    b.sent_at = now_s();
    b.samples = std::move(pending);
    pending.clear();
    if (outbox.size() >= kMaxHeld) {
      err << "kiln record: batch " << outbox.front().seq << " is lost: " << outbox.size()
          << " batches wait in memory for the spool (" << spool_failed << ")\n";
      ++lost;
      outbox.pop_front();
    }
    outbox.push_back(Unsent{b.seq, b.samples.size(),
                            telemetry::sign_envelope(b, key, cred.tenant, cred.device)});
    deliver();
  };
  const auto started = std::chrono::steady_clock::now();
  std::int64_t reads = 0;
  int rc = runtime::kExitOk;
  bool ended = false;  // the driver's readings ran out (a replay's file)
  while (!g_stop) {
    auto r = driver->read();
    if (!r.ok()) {
      if (r.error().code == nodes::driver_error::kEnded) {
        ended = true;
        break;
      }
      if (r.error().retryable) {
        err << "kiln record: " << r.error().code << ": " << r.error().message << "\n";
        std::this_thread::sleep_for(std::chrono::seconds(1));
        continue;
      }
      err << "kiln record: " << r.error().code << ": " << r.error().message << "\n";
      rc = runtime::kExitFailed;
      break;
    }
    const auto s = r.value();
    ++reads;
    if (first_t < 0) first_t = s.t;
    pending.push_back(s);
    if (pending.size() >= batch_n) flush_batch();
    // Roasts done: DROP (leaving ROASTING for a later state), then cooling over.
    if (last_state == 6 && s.state > 6) ++drops;
    if (drops >= roasts && roasts > 0 && last_state == 8 && s.state != 8) cooled = true;
    last_state = s.state;
    state_seen = state_seen || s.state != 0;
    if (!state_seen && roasts > 0) {
      if (detector) {
        since_drop.time.push_back(s.t);
        since_drop.bt.push_back(s.bt);
        since_drop.et.push_back(s.et);
        if (since_drop.time.size() % 10 == 0 && detector->detect(since_drop).drop >= 0) {
          ++drops;
          since_drop = nodes::RoastCurve{};
          // No cooling to wait for that the readings would show: done at DROP.
          if (drops >= roasts) cooled = true;
        }
      } else if (reads == 120 && !uncountable_said) {
        uncountable_said = true;
        err << "kiln record: the driver has no state channel and no event_detector node is "
               "loaded (plugin roast), so roasts cannot be counted: recording until --duration "
               "or Ctrl-C\n";
      }
    }
    // The last 30 s of BT, for the rate of rise shown with the progress.
    recent.emplace_back(s.t, s.bt);
    while (recent.size() > 2 && s.t - recent.front().first > 30) recent.pop_front();
    if (s.t - last_progress >= 30) {
      last_progress = s.t;
      const double span = recent.back().first - recent.front().first;
      out << "  " << std::setw(6) << mmss(json::value(s.t - first_t)) << "  BT " << std::fixed
          << std::setprecision(1) << s.bt << "  ET " << s.et;
      if (span >= 10) out << "  RoR " << (recent.back().second - recent.front().second) / span * 60;
      out << std::defaultfloat << (state_seen ? "  " + state_name(s.state) : std::string())
          << "  sent " << sent << (spooled ? "  spooled " + std::to_string(spooled) : "") << "\n"
          << std::flush;
    }
    if (cooled || (duration > 0 && s.t - first_t >= duration)) break;
    if (!info.paced_by_device && speed > 0) {
      const auto due =
          started +
          std::chrono::duration_cast<std::chrono::steady_clock::duration>(
              std::chrono::duration<double>(static_cast<double>(reads) * info.interval_s / speed));
      std::this_thread::sleep_until(due);
    }
  }
  flush_batch();
  deliver();  // one last try for what the spool could not take
  if (!outbox.empty()) {
    lost += static_cast<std::int64_t>(outbox.size());
    err << "kiln record: " << outbox.size() << " batch(es) from seq " << outbox.front().seq
        << " were neither sent nor spooled (" << spool_failed << "): they are lost; free space in "
        << spool.string() << " before the next recording\n";
    outbox.clear();
  }
  if (client && fatal.empty() && waiting() > 0) drain();
  driver->close();
  std::signal(SIGINT, old_int);
  std::signal(SIGTERM, old_term);
  const std::size_t left = waiting();
  if (!client) k->telemetry().sessions().flush();
  // Fewer roasts than asked for: said, not left to be guessed from a count of readings.
  if (ended && roasts > 0 && drops < roasts && !uncountable_said)
    err << "kiln record: the driver's readings ended after " << std::min(drops, roasts) << " of "
        << roasts << " roast(s)"
        << (last_state == 6 ? ", in the middle of a roast (no DROP after its CHARGE)" : "")
        << "; everything read is recorded\n";
  out << "recorded " << reads << " readings in " << seq << " batches: sent " << sent
      << (drained ? " (and " + std::to_string(drained) + " from the spool)" : "") << ", refused "
      << rejected << ", waiting in the spool " << left
      << (left ? " (" + spool.string() + "; the next kiln record sends them)" : "")
      << (lost ? ", lost " + std::to_string(lost) : std::string()) << "\n";
  if (!fatal.empty()) {
    err << "kiln record: " << fatal << "\n";
    return runtime::kExitFailed;
  }
  return rc != runtime::kExitOk
             ? rc
             : (left || rejected || lost ? runtime::kExitFailed : runtime::kExitOk);
}

}  // namespace kiln::cli
