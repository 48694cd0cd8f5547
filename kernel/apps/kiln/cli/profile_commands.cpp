// `kiln profiles ...` and `kiln devices profile`: see profile_commands.hpp.
#include "cli/profile_commands.hpp"

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <optional>
#include <sstream>

#include <boost/json.hpp>

#include "cli/files.hpp"
#include "cli/json_print.hpp"
#include "cli/remote.hpp"
#include "common/json_text.hpp"
#include "http/client.hpp"
#include "runtime/kernel.hpp"
#include "telemetry/profiles.hpp"

namespace kiln::cli {
namespace json = boost::json;
namespace fs = std::filesystem;
using runtime::Kernel;

boost::json::array phases_option(const std::string& text) {
  // Four temperatures in the file's unit: the roast plugin checks that they rise.
  boost::json::array phases;
  std::istringstream in(text);
  for (std::string item; std::getline(in, item, ',');) {
    std::size_t used = 0;
    double v = 0;
    try {
      v = std::stod(item, &used);
    } catch (const std::exception&) {
      used = 0;
    }
    if (used == 0 || used != item.size() || !std::isfinite(v)) {
      phases.clear();
      break;
    }
    phases.push_back(v);
  }
  if (phases.size() != 4)
    throw std::invalid_argument("--phases '" + text +
                                "' is not four temperatures A,B,C,D (drying from, DRY END, FCs, "
                                "finish, in the file's unit), e.g. 150,150,195,225");
  return phases;
}

const std::map<std::string, std::string>& profile_help() {
  static const std::map<std::string, std::string> help = {
      {"profiles list", R"(Usage: kiln profiles list [--tenant T] [--all] [--json]

Roast profiles of the tenant: name, newest version, title, when it was saved. --all includes
archived ones.
)"},
      {"profiles show", R"(Usage: kiln profiles show NAME[@VERSION] [--tenant T] [--json]

One profile version (the newest without @VERSION): its events, phases, QC targets and where it
came from; --json prints everything, the curve included.
)"},
      {"profiles versions", R"(Usage: kiln profiles versions NAME [--tenant T] [--json]

Every version of a profile, oldest first.
)"},
      {"profiles import",
       R"(Usage: kiln profiles import FILE --name NAME [--title T] [--phases A,B,C,D]
                              [--tenant T]

Saves FILE as the next version of profile NAME (version 1 for a new name; the same profile again
is kept as it is) in tenant T (default: default): an Artisan .alog (its curve, marked events,
phases and control changes; QC targets around it: FCs and DROP time ±30 s, DROP BT ±3 °C, DTR ±2
points, and with both weights in the log the weight loss ±1.5 points), or a profile's JSON
(`kiln profiles export --format json`, e.g. with its `targets` edited; `celsius` and
`qc_targets` follow from them). The roast plugin reads and checks it; every version is kept and
is in the ledger. --phases sets Artisan's phase temperatures (drying from, DRY END, FCs, finish;
in the file's unit) instead of the file's — sessions detect DRY END and estimate FCs by them: an
R1 log's DRY END of 18 °C would end every roast's drying at TP (the import says so).
)"},
      {"profiles export",
       R"(Usage: kiln profiles export NAME[@VERSION] -o FILE [--format alog|json] [--tenant T]

Writes a profile version as an Artisan .alog (opens in Artisan and `kiln analyze`) or as its
JSON (the format follows FILE's extension unless --format says).
)"},
      {"profiles archive", R"(Usage: kiln profiles archive NAME [--tenant T]

Archives a profile with all its versions: hidden from `profiles list`, not assignable to a device;
sessions that used it keep their version. `kiln profiles restore NAME` brings it back. A profile
a device is assigned is not archived (its next roasts would have no QC targets): assign the
device another profile, or clear it, first (kiln devices profile DEVICE NAME|--clear).
)"},
      {"profiles restore", R"(Usage: kiln profiles restore NAME [--tenant T]

Restores an archived profile.
)"},
      {"devices profile",
       R"(Usage: kiln devices profile DEVICE NAME[@VERSION] | --clear [--tenant T]

The profile DEVICE roasts to from now on. A session opened on the device records it, pinned to
the version current when the session opens; its roast_report mission checks QC against the profile's targets
and analyses with its phase temperatures. --clear removes the assignment.
)"},
  };
  return help;
}

namespace {

// Profile commands run against the local storage (booting the kernel: the roast plugin's tools
// read and write .alog files) or a server's routes.
struct Library {
  std::unique_ptr<Kernel> k;
  std::optional<http::Client> client;
  std::string key;
  std::string tenant;

  Library(const Args& a, bool tools) : tenant(a.tenant) {
    const auto target = server_target(a);
    key = target.key;
    if (!target.url.empty()) {
      client.emplace(target.url);
    } else {
      auto opts = boot_options(a, tools);
      opts.open_storage = true;
      k = Kernel::boot(opts);
    }
  }

  static missions::Actor cli_actor() { return {"cli", missions::Role::kAdmin}; }

  // A route's 2xx body (text), or the server's error as an exception.
  std::string call(const std::string& method, const std::string& target,
                   const std::string& body = "") {
    std::vector<std::pair<std::string, std::string>> h;
    if (!body.empty()) h.emplace_back("Content-Type", "application/json");
    if (!key.empty()) h.emplace_back("Authorization", "Bearer " + key);
    auto res = client->request(method, target, body, h);
    if (res.status >= 200 && res.status < 300) return res.body;
    std::string message = res.body;
    json::error_code ec;
    auto v = json::parse(res.body, ec);
    if (!ec && v.is_object() && v.as_object().contains("error")) {
      const std::string code(v.at("error").at("code").as_string());
      const std::string text(v.at("error").at("message").as_string());
      // Refused input exits 2, as the same command locally (cli.md).
      if (code == error_code::kInvalidInput)
        throw missions::MissionError(missions::MissionError::Code::kInvalidInput,
                                     "server answered " + std::to_string(res.status) + ": " + text);
      message = code + ": " + text;
    }
    throw std::runtime_error("server answered " + std::to_string(res.status) + " " + message +
                             (res.status == 401 && key.empty()
                                  ? " (pass --api-key KEY or set KILN_API_KEY)"
                                  : std::string()));
  }

  json::object tool(const char* name, json::object input) {
    runtime::ToolCall c;
    c.tool = name;
    c.tenant = tenant;
    c.input = std::move(input);
    auto r = k->executor().invoke(c);
    if (!r.ok()) {
      if (r.error().code == error_code::kUnknownTool)
        throw std::runtime_error(
            std::string(name) + " is not available: profiles need the roast plugin (plugins list)");
      if (r.error().code == error_code::kInvalidInput)  // exits 2 (cli.md)
        throw missions::MissionError(missions::MissionError::Code::kInvalidInput,
                                     r.error().message);
      throw std::runtime_error(r.error().code + ": " + r.error().message);
    }
    return r.value().output.as_object();
  }

  static std::string enc(const std::string& s) { return url_encode(s); }
  static std::string version_query(const telemetry::ProfileRef& r) {
    return r.version ? "?version=" + std::to_string(*r.version) : std::string();
  }

  json::array list(bool all) {
    if (client)
      return json::parse(call("GET", all ? "/v1/profiles?archived=true" : "/v1/profiles"))
          .as_array();
    json::array arr;
    for (const auto& p : telemetry::ProfileStore::list(k->storage_path(), tenant, all))
      arr.push_back(p.to_json(false));
    return arr;
  }

  json::object show(const telemetry::ProfileRef& r) {
    if (client)
      return json::parse(call("GET", "/v1/profiles/" + enc(r.name) + version_query(r))).as_object();
    auto p = telemetry::ProfileStore::get(k->storage_path(), tenant, r.name, r.version);
    if (!p)
      throw missions::MissionError(
          missions::MissionError::Code::kNotFound,
          telemetry::ProfileStore::not_found(k->storage_path(), tenant, r.name, r.version));
    return p->to_json(true);
  }

  json::array versions(const std::string& name) {
    if (client)
      return json::parse(call("GET", "/v1/profiles/" + enc(name) + "/versions")).as_array();
    json::array arr;
    for (const auto& p : telemetry::ProfileStore::versions(k->storage_path(), tenant, name))
      arr.push_back(p.to_json(false));
    if (arr.empty())
      throw missions::MissionError(
          missions::MissionError::Code::kNotFound,
          telemetry::ProfileStore::not_found(k->storage_path(), tenant, name));
    return arr;
  }

  // {"alog": text} or {"profile": {...}} (+ "title").
  json::object save(const std::string& name, json::object source) {
    if (client) {
      source["name"] = name;
      return json::parse(call("POST", "/v1/profiles", json::serialize(source))).as_object();
    }
    auto out = tool("roast.profile_import", std::move(source));
    auto p =
        k->telemetry().profiles().save(tenant, name, out.at("profile").as_object(), cli_actor());
    auto saved = p.to_json(false);
    saved["qc_targets"] = out.at("qc_targets");  // as the server's answer has them
    saved["notes"] = out.at("notes");
    saved["unchanged"] = p.unchanged;
    return saved;
  }

  std::string alog(const telemetry::ProfileRef& r) {
    if (client) return call("GET", "/v1/profiles/" + enc(r.name) + "/alog" + version_query(r));
    auto p = show(r);
    auto out = tool("roast.profile_export", json::object{{"profile", p.at("profile")}});
    return std::string(out.at("alog").as_string());
  }

  json::object archive(const std::string& name, bool archived) {
    if (client)
      return json::parse(call("POST",
                              "/v1/profiles/" + enc(name) + (archived ? ":archive" : ":restore"),
                              "{}"))
          .as_object();
    return k->telemetry()
        .profiles()
        .set_archived(tenant, name, archived, cli_actor())
        .to_json(false);
  }

  // As the server answers: {device, profile, tenant} (the key's tenant, over HTTP).
  json::object assign(const std::string& device, const std::optional<std::string>& profile) {
    const json::value named = profile ? json::value(*profile) : json::value(nullptr);
    if (client)
      return json::parse(call("POST", "/v1/devices/" + enc(device) + ":profile",
                              json::serialize(json::object{{"profile", named}})))
          .as_object();
    k->telemetry().profiles().assign(tenant, device, profile, cli_actor());
    return json::object{{"device", device}, {"profile", named}, {"tenant", tenant}};
  }
};

std::string arg(const Args& a, std::size_t i, const std::string& cmd, const char* what) {
  if (a.positional.size() <= i) throw std::invalid_argument(cmd + " needs " + what);
  return a.positional[i];
}

void print_rows(const json::array& profiles, std::ostream& out) {
  std::vector<std::vector<std::string>> rows{{"NAME", "VERSION", "TITLE", "SAVED", ""}};
  for (const auto& v : profiles) {
    const auto& p = v.as_object();
    rows.push_back({std::string(p.at("name").as_string()),
                    "v" + std::to_string(p.at("version").to_number<std::int64_t>()),
                    std::string(p.at("title").as_string()),
                    std::string(p.at("created_at").as_string()),
                    p.at("archived_at").is_null() ? "" : "(archived)"});
  }
  print_table(rows, out);
}

std::string text_of(const json::value& v) {
  if (v.is_null()) return "-";
  if (v.is_number()) return one_decimal(v.to_number<double>());
  return common::json_text(v);
}

// A setting as Artisan shows it: 70, 7.5.
std::string number_text(const json::value& v) {
  if (!v.is_number()) return "-";
  char buf[32];
  std::snprintf(buf, sizeof buf, "%g", v.to_number<double>());
  return buf;
}

void print_profile(const json::object& info, std::ostream& out) {
  const auto& p = info.at("profile").as_object();
  auto str = [&](const char* key) { return std::string(info.at(key).as_string()); };
  out << str("name") << " v" << info.at("version").to_number<std::int64_t>() << " (newest v"
      << info.at("latest").to_number<std::int64_t>() << "): " << flat(str("title")) << "\n  saved "
      << str("created_at") << " by " << str("created_by")
      << (info.at("archived_at").is_null() ? "" : ", archived") << "\n";
  const std::string unit =
      p.contains("unit") && p.at("unit").is_string() && p.at("unit").as_string() == "F" ? " °F"
                                                                                        : " °C";
  if (const auto* src = p.if_contains("source"); src && src->is_object()) {
    // The roast it was made from, as Artisan recorded it.
    std::string from;
    for (const char* k : {"beans", "roaster", "date"})
      if (const auto* v = src->as_object().if_contains(k); v && v->is_string())
        from += (from.empty() ? "" : ", ") + flat(std::string(v->as_string()));
    if (const auto* b = src->as_object().if_contains("batch"); b && b->is_number())
      from += (from.empty() ? "batch " : ", batch ") + std::to_string(b->to_number<std::int64_t>());
    if (!from.empty()) out << "  from:     " << from << "\n";
  }
  std::optional<double> tp_bt;
  if (const auto* e = p.if_contains("events"); e && e->is_object()) {
    out << "  events:  ";
    for (const char* name : {"TP", "DRY_END", "FCs", "DROP"}) {
      const auto* ev = e->as_object().if_contains(name);
      out << " " << (std::string_view(name) == "DRY_END" ? "DRY END" : name) << " ";
      if (!ev || !ev->is_object()) {
        out << "-";
      } else {
        out << mmss(ev->at("time")) << " " << text_of(ev->at("bt")) << unit;
        if (std::string_view(name) == "TP" && ev->at("bt").is_number())
          tp_bt = ev->at("bt").to_number<double>();
      }
      if (std::string_view(name) != "DROP") out << ",";
    }
    out << " (after CHARGE)\n";
  }
  if (const auto* ph = p.if_contains("phases");
      ph && ph->is_array() && ph->as_array().size() == 4) {
    // Artisan's phase temperatures: the second ends the drying phase (DRY END where the file
    // marks none), the third is where first crack is expected on a curve without an FCs mark.
    const auto& v = ph->as_array();
    out << "  phases:   DRY END at " << text_of(v[1]) << unit << ", FCs expected at "
        << text_of(v[2]) << unit;
    if (tp_bt && v[1].is_number() && v[1].to_number<double>() <= *tp_bt)
      out << " (drying ends at TP: its temperature is below TP's)";
    out << "  [Artisan's phases: " << text_of(v[0]) << ", " << text_of(v[1]) << ", "
        << text_of(v[2]) << ", " << text_of(v[3]) << "]\n";
  }
  if (const auto* cs = p.if_contains("controls"); cs && cs->is_array() && !cs->as_array().empty()) {
    // The settings to roast it again with: one line a moment, after CHARGE. A Bullet R1's
    // (Artisan's Heater, Fan and Drum sliders step its levels by 10) also on the panel's scale.
    auto r1_level = [](const json::object& c) -> std::string {
      const auto* name = c.if_contains("control");
      const auto* value = c.if_contains("value");
      if (!name || !name->is_string() || !value || !value->is_number()) return "";
      const char letter = name->as_string() == "Heater" ? 'P'
                          : name->as_string() == "Fan"  ? 'F'
                          : name->as_string() == "Drum" ? 'D'
                                                        : 0;
      if (!letter) return "";
      return std::string(" (") + letter +
             std::to_string(std::lround(value->to_number<double>() / 10)) + ")";
    };
    out << "  controls:";
    std::optional<long> at;
    for (const auto& v : cs->as_array()) {
      const auto* c = v.if_object();
      if (!c || !c->contains("t")) continue;
      const long t = std::lround(c->at("t").to_number<double>());
      out << (at == t ? ", " : std::string("\n    ") + mmss(json::value(t)) + "  ")
          << (c->at("control").is_string() ? flat(std::string(c->at("control").as_string())) : "")
          << " " << number_text(c->at("value")) << r1_level(*c);
      at = t;
    }
    out << "\n";
  }
  if (const auto* d = p.if_contains("qc_targets"); d && d->is_array()) {
    out << "  QC targets:";
    if (d->as_array().empty()) out << " (none: roast.qc's defaults)";
    for (const auto& line : d->as_array())
      if (line.is_string()) out << "\n    " << line.as_string().c_str();
    out << "\n";
  } else if (const auto* t = p.if_contains("targets"); t && t->is_object()) {
    // Saved before profiles carried their targets in words.
    out << "  QC targets:";
    if (t->as_object().empty()) out << " (none: roast.qc's defaults)";
    for (const auto& kv : t->as_object()) {
      out << "\n    " << std::string(kv.key()) << ":";
      if (kv.value().is_object())
        for (const auto& f : kv.value().as_object())
          out << " " << std::string(f.key()) << " " << text_of(f.value());
    }
    out << "\n";
  }
  if (const auto* n = p.if_contains("notes"); n && n->is_array())
    for (const auto& x : n->as_array())
      if (x.is_string()) out << "  note: " << x.as_string().c_str() << "\n";
}

std::string read_file(const std::string& path) {
  try {
    return read_input_file(path, "a profile (.alog or JSON)");
  } catch (const std::runtime_error& e) {
    throw std::invalid_argument(e.what());
  }
}

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() &&
         s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

}  // namespace

int cmd_profiles(const Args& a, std::ostream& out, std::ostream&) {
  const std::string cmd = a.positional[0] + " " + a.positional[1];
  const std::string sub = a.positional[1];
  if (cmd == "devices profile") {
    const std::string device = arg(a, 2, cmd, "a DEVICE");
    std::optional<std::string> profile;
    if (a.clear == (a.positional.size() > 3))
      throw std::invalid_argument("devices profile needs a profile NAME[@VERSION] or --clear");
    if (!a.clear) profile = a.positional[3];
    if (profile) telemetry::ProfileRef::parse(*profile);  // a clear error before booting
    Library lib(a, false);
    const auto answer = lib.assign(device, profile);
    if (a.json) {
      out << pretty(answer);
      return runtime::kExitOk;
    }
    out << "device " << device << (profile ? " roasts to profile " + *profile : " has no profile")
        << " (tenant " << std::string(answer.at("tenant").as_string()) << ")\n";
    return runtime::kExitOk;
  }
  if (sub == "list") {
    Library lib(a, false);
    auto arr = lib.list(a.all);
    if (a.json) {
      out << pretty(arr);
    } else {
      if (arr.empty()) {
        // Archived ones are not gone: said, so that "no profiles" does not read as lost.
        const auto archived = a.all ? 0 : lib.list(true).size();
        if (archived > 0)
          out << "no active profiles; " << archived
              << " archived (kiln profiles list --all; kiln profiles restore NAME)\n";
        else
          out << "no profiles (kiln profiles import FILE.alog --name NAME)\n";
      } else
        print_rows(arr, out);
    }
    return runtime::kExitOk;
  }
  if (sub == "show") {
    auto ref = telemetry::ProfileRef::parse(arg(a, 2, cmd, "a profile NAME[@VERSION]"));
    Library lib(a, false);
    auto info = lib.show(ref);
    if (a.json)
      out << pretty(info);
    else
      print_profile(info, out);
    return runtime::kExitOk;
  }
  if (sub == "versions") {
    const std::string name = arg(a, 2, cmd, "a profile NAME");
    Library lib(a, false);
    auto arr = lib.versions(name);
    if (a.json)
      out << pretty(arr);
    else
      print_rows(arr, out);
    return runtime::kExitOk;
  }
  if (sub == "import") {
    const std::string file = arg(a, 2, cmd, "a FILE (.alog or .json)");
    if (!a.name) throw std::invalid_argument("profiles import needs --name NAME");
    telemetry::ProfileRef::parse(*a.name);
    const std::string text = read_file(file);
    json::object source;
    if (ends_with(file, ".json")) {
      json::error_code ec;
      auto v = json::parse(text, ec);
      if (ec || !v.is_object()) throw std::invalid_argument(file + " is not a JSON object");
      // An exported version ({"name", "version", ..., "profile": {...}}) or a bare profile.
      const auto* inner = v.as_object().if_contains("profile");
      source["profile"] = inner && inner->is_object() ? *inner : v;
    } else {
      source["alog"] = text;
    }
    if (a.title) source["title"] = *a.title;
    if (a.phases) source["phases"] = phases_option(*a.phases);
    Library lib(a, true);
    auto saved = lib.save(*a.name, std::move(source));
    const auto* same = saved.if_contains("unchanged");
    out << (same && *same == true ? "unchanged: profile " : "saved profile ")
        << std::string(saved.at("name").as_string()) << " version "
        << saved.at("version").to_number<std::int64_t>() << " ("
        << flat(std::string(saved.at("title").as_string())) << ")"
        << (same && *same == true ? " has the content of " : " from ") << file << "\n";
    std::string targets;
    for (const auto& t : saved.at("qc_targets").as_array())
      targets += (targets.empty() ? "" : "; ") + std::string(t.as_string());
    if (!targets.empty()) out << "  QC targets: " << targets << "\n";
    for (const auto& n : saved.at("notes").as_array())
      out << "  note: " << n.as_string().c_str() << "\n";
    return runtime::kExitOk;
  }
  if (sub == "export") {
    auto ref = telemetry::ProfileRef::parse(arg(a, 2, cmd, "a profile NAME[@VERSION]"));
    if (!a.out_file) throw std::invalid_argument("profiles export needs -o FILE");
    std::string format = a.format.value_or(ends_with(*a.out_file, ".json") ? "json" : "alog");
    if (format != "alog" && format != "json")
      throw std::invalid_argument("--format is alog or json, not '" + format + "'");
    Library lib(a, format == "alog");
    std::string text =
        format == "json" ? common::json_text(lib.show(ref).at("profile")) + "\n" : lib.alog(ref);
    write_output_file(*a.out_file, text);
    out << "wrote " << *a.out_file << " (" << format << ", " << text.size() << " bytes)\n";
    return runtime::kExitOk;
  }
  if (sub == "archive" || sub == "restore") {
    const std::string name = arg(a, 2, cmd, "a profile NAME");
    Library lib(a, false);
    auto p = lib.archive(name, sub == "archive");
    out << "profile " << name << (p.at("archived_at").is_null() ? " is active" : " is archived")
        << "\n";
    return runtime::kExitOk;
  }
  throw std::invalid_argument("unknown profiles command '" + sub + "'");
}

}  // namespace kiln::cli
