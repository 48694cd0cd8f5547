#include "cli/commands.hpp"

#include <algorithm>
#include <atomic>
#include <csignal>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iomanip>
#include <map>
#include <memory>
#include <optional>
#include <regex>
#include <set>
#include <sstream>

#include <arpa/inet.h>
#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>
#include <cstring>

#include <spdlog/spdlog.h>
#include <boost/json.hpp>
#include <boost/version.hpp>

#include "cli/args.hpp"
#include "cli/files.hpp"
#include "cli/json_print.hpp"
#include "cli/mission_commands.hpp"
#include "cli/profile_commands.hpp"
#include "cli/remote.hpp"
#include "cli/service_notify.hpp"
#include "cli/telemetry_commands.hpp"
#include "common/files.hpp"
#include "common/json_text.hpp"
#include "common/log.hpp"
#include "common/strings.hpp"
#include "http/api.hpp"
#include "http/client.hpp"
#include "http/server.hpp"
#include "kiln/abi.hpp"
#include "kiln/nodes/telemetry_driver.hpp"
#include "ledger/backfill.hpp"
#include "missions/worker.hpp"
#include "runtime/isolation.hpp"
#include "runtime/kernel.hpp"
#include "storage/schema.hpp"
#include "storage/sqlite.hpp"
#include "telemetry/ingest.hpp"
#include "telemetry/recorder.hpp"

namespace kiln::cli {
namespace json = boost::json;
using runtime::BootError;
using runtime::BootOptions;
using runtime::Kernel;

namespace {

const char* kMainHelp = R"(kiln — plugin-based orchestration kernel

Usage: kiln <command> [options]

Commands:
  serve                    load plugins, resolve nodes (gates checked) and run until SIGTERM
  plugins list             loaded plugins with version, licence, nodes and tools
  nodes                    each node kind, its selected node, where that came from, its gate
  gate run KIND/NODE       run the contract and parity suites; record the gate
  gate status              every node and its gate state
  config check             validate the configuration (exit 3 on error)
  config explain [KEY]     effective values and where each came from
  tool list                tools and the providers that serve them
  tool invoke NAME --input JSON [--tenant T]
                           run one tool call through the ToolRuntimeExecutor
  say TEXT [-o FILE] [--voice V] [--speed S]
                           speak TEXT with the selected tts_engine node into FILE
  analyze FILE.alog [--detect] [--json]
                           events, phases, DTR, AUC and RoR of an Artisan roast log
  db status                the database: path, schema version, migrations, size
  db backup FILE           a consistent copy of the database, safe while kiln serve runs
  db restore FILE          put a backup in place (kiln serve stopped; the database before is kept)
  ledger verify            walk the hash chain; exit 1 naming the first bad seq
  ledger export [--tenant T] [--stream S] [--since SEQ|TIME] [--out FILE]
                           events as JSON lines
  ledger backfill --out DIR [--tenant T] [--stream S] [--force]
                           idempotent export: one file + marker per tenant/stream
  ledger replay            rebuild the tables from the ledger (missions, keys, devices, sessions,
                           profiles) and diff them
  mission templates        mission templates with their inputs and steps
  mission start TEMPLATE [--param K=V]... [--idempotency-key K] [--wait]
                           create a mission (the governor decides from the policy)
  mission list|show ID     missions; one mission with its steps and ledger history
  mission artifact ID STEP NAME [-o FILE]
                           a file a step kept (e.g. the spoken summary speech.wav)
  mission approve|cancel|retry ID [--reason TEXT]
                           operator actions, each a ledger event with who and why
  mission prune --older-than AGE [--dry-run]
                           release finished missions' files (spoken summaries) past an age
  mission work [--until-idle]
                           run mission workers in this process
  policy validate [--file F]
                           check the policy against loaded tools, plugins, templates
  keys create --tenant T --role R [--name N]
                           an API key for the HTTP API, printed once (stored hashed)
  keys list|revoke ID      API keys; revoke one
  devices add|rotate DEVICE [--tenant T] [--public-key HEX] [--key-out FILE]
                           a roaster's signing key (the secret written once, 0600)
  devices revoke KID|DEVICE, devices list
                           device keys: refuse a key; list them with their status
  record --key FILE [--driver NODE] [--server URL] [--speed X] [--roasts N]
                           read the roaster, sign batches, send them (spool when offline)
  sessions list|show ID    roast sessions (opened at CHARGE, closed at DROP)
  sessions mark ID EVENT [--at M:SS] | --device D EVENT
                           mark when first crack (FCs) or another event happened
  sessions weigh ID [--green G] [--roasted G]
                           the batch's weights in grams: its weight loss
  sessions export ID -o FILE.alog
                           a recorded roast as an Artisan log
  report SESSION -o FILE   the HTML report of a session (analysis, QC, chart)
  predict SESSION|--device D [--follow]
                           expected FCs and DROP from the curve so far, with a band
  profiles list|show|versions|import|export|archive|restore
                           roast profiles: versions, Artisan .alog import and export
  devices profile DEVICE NAME[@V] | --clear
                           the profile a roaster roasts to (its sessions' QC targets)
  version                  kiln, ABI, compiler and Boost versions

Client mode (a running `kiln serve`): plugins list, nodes, gate status, tool list|invoke, say,
mission start|list|show|approve|cancel|retry, ledger export, devices add|rotate|revoke|list,
sessions list|show|mark|weigh|export, record, report, predict, profiles ..., devices profile, and
  server health|ready|metrics|openapi
call the HTTP API instead of the local deployment when given
  --server URL             e.g. http://127.0.0.1:8080 (or $KILN_SERVER_URL)
  --api-key KEY            the API key (or $KILN_API_KEY); a non-2xx answer exits 1 with the
                           server's message

Options (any command):
  --config FILE            YAML config file (repeatable; later files win). Default:
                           $KILN_CONFIG, else the embedded config/kiln.yaml
  --set KEY=VALUE          override one setting, highest precedence (repeatable)
  --log-level LEVEL        trace|debug|info|warn|error|critical|off (= --set log.level=LEVEL);
                           commands other than serve, record, mission work and gate run log
                           warnings and errors only unless this (or KILN_LOG__LEVEL) asks more
  --log-format FORMAT      text|json (= --set log.format=FORMAT)
  --json                   machine-readable output where a command prints data
  -h, --help               help for kiln or for one command (also: kiln help COMMAND)

Environment: KILN_<SECTION>__<KEY> sets a key (KILN_GATES__DIR=/srv/gates);
KILN_<KIND>_NODE selects a node (KILN_TOOL_STRATEGY_NODE=rules).

Exit codes: 0 ok; 1 the operation failed (tool error, gate FAIL); 2 usage error;
3 invalid configuration; 4 a selected node is not gated; 5 a plugin could not be loaded;
6 the database cannot be used (not a database, damaged, a newer kiln's, not writable).
)";

const std::map<std::string, std::string> kHelp = {
    {"serve", R"(Usage: kiln serve [--config FILE] [--set KEY=VALUE]...

Loads the plugins from plugins.search_paths, validates the configuration, resolves one node per
kind and refuses to start (exit 4) when a selected non-default node has no valid gate; the
message names the `kiln gate run` command that gates it. Then serves the HTTP API on
server.host:server.port (default 127.0.0.1:8080; GET /openapi.json lists the routes, /metrics is
Prometheus text), runs the mission workers and the roast sessionizer (and the in-server
recorder when recorder.enabled), until SIGINT or SIGTERM: it stops taking requests, finishes
those under way (server.drain_timeout_ms) and exits 0.
)"},
    {"plugins list", R"(Usage: kiln plugins list [--json]

Lists every loaded plugin: name, version, licence, the nodes and tools it provides, and the
file it was loaded from with its SHA-256.
)"},
    {"nodes", R"(Usage: kiln nodes [--json]

For each node kind: the selected node, the config layer that selected it (file:line:column,
environment variable, --set or built-in default), the gate state, and the available nodes.
)"},
    {"gate run", R"(Usage: kiln gate run KIND/NODE [--json]

Runs the kind's contract suite on NODE and its parity suite against the kind's default node,
with the node's manifest defaults (a gate measures the binary, not one deployment's settings).
Writes the record, bound to the plugin file's SHA-256, the kind's contract version and the kiln
ABI version, to gates.dir. Exit 0 on PASS, 1 on FAIL.
Example: kiln gate run tool_strategy/rules
)"},
    {"gate status", R"(Usage: kiln gate status [--json]

Every node of every kind with its gate state: default, passed, not gated, stale (the plugin
file, contract version or ABI changed since the gate ran) or failed.
)"},
    {"config check", R"(Usage: kiln config check [--config FILE] [--set KEY=VALUE]...

Validates every layer (files, KILN_* environment, --set) and the plugin_config sections against
the loaded plugins' manifests, and builds (without running) every node whose plugin settings —
or, for a selected node, whose kind's settings — the deployment sets, so that a value only the
node itself checks (a transport it does not know) is found here, not at `kiln serve`. Prints
every problem with its location; exit 0 when valid, 3 when not.
)"},
    {"config explain", R"(Usage: kiln config explain [KEY] [--json]

Prints the effective value of every key (or of KEY, or of every key under a section KEY) and
where it came from.
Example: kiln config explain nodes.tool_strategy
)"},
    {"tool list", R"(Usage: kiln tool list [--json]

Lists every tool, the providers that serve it, and its description.
)"},
    {"tool invoke", R"(Usage: kiln tool invoke NAME --input JSON [--tenant TENANT]

Runs one call through the ToolRuntimeExecutor (strategy, schema validation, timeout) and prints
the tool's JSON output. On a tool error prints `error <code>: <message>` to stderr and exits 1.
Example: kiln tool invoke kiln.echo --input '{"hello": "world"}'
)"},
    {"version", "Usage: kiln version [--json]\n"},
    {"analyze", R"(Usage: kiln analyze FILE.alog [--detect] [--phases A,B,C,D] [--tenant T] [--json]

Analyses an Artisan roast log through the tool roast.analyze: CHARGE, TP, DRY END, FCs and DROP
(index, seconds after CHARGE, BT), the phases (drying, maillard, development, DTR in percent), AUC
(degree-minutes above 100 °C from TP to DROP) and the rate of rise. Without --detect the events
marked in the file are used; with --detect they are ignored and detected: CHARGE and DROP from
the roaster's state channel when the log has one (Bullet R1), else from Artisan's BT-break rule;
TP as the lowest BT after CHARGE; DRY END and FCs from the log's phase temperatures (a warning
says where FCs is missing or over 30 s from the marked one: roasters mark it by ear).
--phases sets the phase temperatures instead of the file's (drying from, DRY END, FCs, finish,
in the file's unit): a Bullet R1's logs say DRY END at 18 °C, which ends drying at TP.
It reads the file only: no database, no ledger event.
Example: kiln analyze roast.alog --detect --json
)"},
    {"say", R"(Usage: kiln say TEXT [-o FILE] [--voice V] [--speed S] [--format F] [--tenant T]
                    [--server URL]

Speaks TEXT with the selected tts_engine node (the embedded voice kiln-slt-small by default) and
writes the audio to FILE (default speech.wav). The format follows FILE's extension (.wav .pcm
.flac .mp3 .opus) unless --format says otherwise; --speed is 0.25 (slow) .. 4.0 (fast).
Locally the call goes through the tool tts.synthesize (audited in the ledger); with --server it
posts to the server's /v1/audio/speech.
Example: kiln say "First crack at nine minutes twelve." -o fc.wav
)"},
    {"ledger backfill",
     R"(Usage: kiln ledger backfill --out DIR [--tenant T] [--stream S] [--force] [--json]

Exports the ledger into DIR, one JSON-lines file per tenant and stream (DIR/TENANT/STREAM.jsonl)
with a marker beside it (STREAM.marker.json: count, last seq, SHA-256 of the file). Running it
again skips every partition whose marker still matches the ledger and the file, and re-exports
one whose marker is missing or stale or whose file changed. --force re-exports everything.
Files are replaced atomically. Safe to run from cron.
)"},
    {"db status", R"(Usage: kiln db status [--json]

Shows the database at storage.path (default var/kiln.db): whether it exists, its schema version
and applied migrations, journal mode, size and ledger event count. Read-only; exit 1 when the
database does not exist yet (`kiln serve` creates it).
)"},
    {"db backup", R"(Usage: kiln db backup FILE

Writes a consistent copy of the database at storage.path to FILE (SQLite's VACUUM INTO: one
read transaction, so `kiln serve` goes on writing meanwhile), then checks the copy's integrity
and counts its ledger events. FILE must not exist, and is made 0640 as the database is. The
copy is FILE.partial until it is whole, checked and synced: a backup cut off never leaves a
file under FILE's name (the next run replaces the .partial). To
restore: stop kiln serve, then `kiln db restore FILE`. `kiln ledger verify --set
storage.path=FILE` checks a backup's hash chain where it lies.

The copy holds the database only: plugin files under storage.artifacts (report pages, remade on
request) and the gate records under gates.dir are not in it (`kiln gate run` makes these again).
A restore drill beside the live server: serve the copy with --set missions.workers=0 and
--set recorder.enabled=false, or its workers run the missions that were pending in the copy
a second time.
)"},
    {"db restore", R"(Usage: kiln db restore BACKUP

Puts BACKUP (a file `kiln db backup` wrote) at storage.path. kiln serve must be stopped: the
restore refuses while one runs on the database, and none can start until it is done. BACKUP is
checked first (SQLite's integrity check, the ledger's hash chain) and copied beside the
database (storage.path.restoring, synced); then the database there now is moved aside whole —
the file with its -wal and -shm, which after a crash hold commits the file lacks and would
otherwise be replayed onto the restored copy — to storage.path.before-restore-TIME, and the copy
is put in place, 0640. Nothing is deleted. A restore cut off after the database was set aside
leaves no database: every command then says so (exit 6) rather than make an empty one, and the
restore run again finishes.
)"},
    {"ledger verify", R"(Usage: kiln ledger verify [--json]

Checks the database file (SQLite's quick check: a damaged file is reported, not read as a
ledger) and walks the hash chain from seq 1: every row's prev_hash must be the previous row's
hash and its hash must match its content. Exit 0 when intact; exit 1 naming the first bad seq
(a changed, removed or reordered row) or the damage. Read-only.
)"},
    {"server health", R"(Usage: kiln server health --server URL [--api-key KEY]

GET /health of a running kiln serve: {"status": "ok"} while the process runs. Exit 1 (with the
server's message) on any other answer, or when nothing answers at URL.
)"},
    {"server ready", R"(Usage: kiln server ready --server URL [--api-key KEY]

GET /ready of a running kiln serve: 200 once its plugins are loaded, its nodes resolved and its
storage open; exit 1 with the server's reason (starting, storage refusing writes) otherwise.
)"},
    {"server metrics", R"(Usage: kiln server metrics --server URL [--api-key KEY]

GET /metrics of a running kiln serve: its Prometheus text, as a scraper reads it.
)"},
    {"server openapi", R"(Usage: kiln server openapi --server URL [--api-key KEY]

GET /openapi.json of a running kiln serve: the OpenAPI 3 document of every route it serves.
)"},
    {"ledger export",
     R"(Usage: kiln ledger export [--tenant T] [--stream S] [--since SEQ|TIME] [--out FILE]

Writes matching events as JSON lines (seq, time, tenant, stream, kind, payload, prev_hash, hash)
to stdout or FILE. --since takes a seq (events after it) or an ISO 8601 time (events at or after
it, e.g. 2026-11-22 or 2026-11-22T10:00:00Z).
)"},
};

}  // namespace

Args parse(const std::vector<std::string>& argv) {
  Args a;
  std::vector<std::string> known;
  for (std::size_t i = 0; i < argv.size(); ++i) {
    const std::string& s = argv[i];
    if (s.size() > 1 && s[0] == '-') a.options.push_back(s.substr(0, s.find('=')));
    auto value = [&](const std::string& name) -> std::string {
      auto eq = s.find('=');
      if (s.rfind("--", 0) == 0 && eq != std::string::npos) return s.substr(eq + 1);
      if (i + 1 >= argv.size()) throw std::invalid_argument(name + " needs a value");
      return argv[++i];
    };
    // Every option asked about is known: an unknown one is compared with all of them.
    auto is = [&](const char* name) {
      known.emplace_back(name);
      return s == name || s.rfind(std::string(name) + "=", 0) == 0;
    };
    auto flag = [&](const char* name) {
      known.emplace_back(name);
      return s == name;
    };
    if (s == "-h" || flag("--help"))
      a.help = true;
    else if (flag("--json"))
      a.json = true;
    else if (flag("--force"))
      a.force = true;
    else if (is("--fd"))
      a.fd = value("--fd");
    else if (is("--plugin"))
      a.plugin = value("--plugin");
    else if (is("--config"))
      a.config_files.push_back(value("--config"));
    else if (is("--set"))
      a.sets.push_back(value("--set"));
    else if (is("--log-level") || is("--log-format")) {
      const std::string flag = is("--log-level") ? "--log-level" : "--log-format";
      const std::string v = value(flag);
      a.sets.push_back((flag == "--log-level" ? "log.level=" : "log.format=") + v);
      a.set_origins[a.sets.back()] = flag + " " + v;
    } else if (is("--input"))
      a.input = value("--input");
    else if (is("--tenant"))
      a.tenant = *(a.tenant_filter = value("--tenant"));
    else if (is("--stream"))
      a.stream = value("--stream");
    else if (is("--since"))
      a.since = value("--since");
    else if (is("--starting-after"))
      a.starting_after = value("--starting-after");
    else if (is("--out"))
      a.out_file = value("--out");
    else if (s == "-o" || s.rfind("-o=", 0) == 0)
      a.out_file = s.size() > 3 ? s.substr(3) : value("-o");
    else if (is("--voice"))
      a.voice = value("--voice");
    else if (is("--speed"))
      a.speed = value("--speed");
    else if (is("--format"))
      a.format = value("--format");
    else if (flag("--detect"))
      a.detect = true;
    else if (flag("--dry-run"))
      a.dry_run = true;
    else if (is("--older-than"))
      a.older_than = value("--older-than");
    else if (flag("--wait"))
      a.wait = true;
    else if (flag("--until-idle"))
      a.until_idle = true;
    else if (flag("--all"))
      a.all = true;
    else if (flag("--clear"))
      a.clear = true;
    else if (flag("--no-report"))
      a.no_report = true;
    else if (is("--at"))
      a.at = value("--at");
    else if (is("--green"))
      a.green = value("--green");
    else if (is("--roasted"))
      a.roasted = value("--roasted");
    else if (is("--title"))
      a.title = value("--title");
    else if (is("--phases"))
      a.phases = value("--phases");
    else if (is("--param"))
      a.params.push_back(value("--param"));
    else if (is("--idempotency-key"))
      a.idempotency_key = value("--idempotency-key");
    else if (is("--as"))
      a.actor = value("--as");
    else if (is("--role"))
      a.role = value("--role");
    else if (is("--reason"))
      a.reason = value("--reason");
    else if (is("--state"))
      a.state = value("--state");
    else if (is("--template"))
      a.template_name = value("--template");
    else if (is("--limit"))
      a.limit = value("--limit");
    else if (is("--timeout"))
      a.timeout = value("--timeout");
    else if (is("--workers"))
      a.workers = value("--workers");
    else if (is("--file"))
      a.file = value("--file");
    else if (is("--scratch"))
      a.scratch = value("--scratch");
    else if (is("--name"))
      a.name = value("--name");
    else if (is("--server"))
      a.server = value("--server");
    else if (is("--driver"))
      a.driver = value("--driver");
    else if (is("--key"))
      a.key_file = value("--key");
    else if (is("--key-out"))
      a.key_file = value("--key-out");
    else if (is("--public-key"))
      a.public_key = value("--public-key");
    else if (is("--grace"))
      a.grace = value("--grace");
    else if (is("--batch"))
      a.batch = value("--batch");
    else if (is("--duration"))
      a.duration = value("--duration");
    else if (is("--roasts"))
      a.roasts = value("--roasts");
    else if (is("--spool"))
      a.spool = value("--spool");
    else if (flag("--flush"))
      a.flush = true;
    else if (is("--device"))
      a.device = value("--device");
    else if (flag("--follow"))
      a.follow = true;
    else if (is("--every"))
      a.every = value("--every");
    else if (is("--api-key"))
      a.api_key = value("--api-key");
    else if (s.size() > 1 && s[0] == '-')
      throw std::invalid_argument("unknown option '" + s + "'" +
                                  common::did_you_mean(s.substr(0, s.find('=')), known));
    else
      a.positional.push_back(s);
  }
  return a;
}

// One server per database: a second would run another sessionizer and more mission workers over
// the same rows, and a restore must not swap the file under one. An advisory lock beside the
// file, held until the process ends; `busy` ends the refusal when another process holds it.
int take_serve_lock(const std::filesystem::path& db, const std::string& busy) {
  const std::string lock_path = db.string() + ".serve.lock";
  {
    std::error_code ec;
    if (db.has_parent_path()) std::filesystem::create_directories(db.parent_path(), ec);
  }
  const int fd = ::open(lock_path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  if (fd < 0)
    throw BootError(runtime::kExitFailed,
                    "cannot use the database " + db.string() + ": its lock file " + lock_path +
                        " cannot be opened (" + std::strerror(errno) +
                        "); storage.path must name a file in a directory this user can write");
  if (::flock(fd, LOCK_EX | LOCK_NB) != 0) {
    char pid[32] = {};
    const auto n = ::pread(fd, pid, sizeof pid - 1, 0);
    std::string holder = n > 0 ? std::string(pid, static_cast<std::size_t>(n)) : "";
    while (!holder.empty() && (holder.back() == '\n' || holder.back() == ' ')) holder.pop_back();
    throw BootError(runtime::kExitFailed, "another kiln serve" +
                                              (holder.empty() ? "" : " (pid " + holder + ")") +
                                              " is using the database " + db.string() + busy);
  }
  return fd;
}

BootOptions boot_options(const Args& a, bool resolve, std::set<std::string> kinds) {
  BootOptions o;
  for (const auto& f : a.config_files) o.config_files.emplace_back(f);
  o.sets = a.sets;
  o.set_origins = a.set_origins;
  o.resolve_nodes = resolve;
  o.node_kinds = std::move(kinds);
  // The commands that run on (a service, a worker, a recording, a gate's suites) log as
  // configured; the others are one-shot (BootOptions::one_shot).
  const std::string first = a.positional.empty() ? "" : a.positional[0];
  const std::string second = a.positional.size() > 1 ? a.positional[1] : "";
  o.one_shot = !(first == "serve" || first == "node-host" || first == "record" ||
                 (first == "mission" && second == "work") || (first == "gate" && second == "run"));
  o.serves = first == "serve";
  return o;
}

// Refuses a command that reads the database when there is none: names the path, where
// storage.path came from, what `what` could not do, and how to point at the deployment's
// configuration.
void need_database(const Kernel& k, const std::string& what) {
  std::error_code ec;
  if (std::filesystem::exists(k.storage_path(), ec)) return;
  if (auto cut_off = runtime::interrupted_restore(k.storage_path()))
    throw BootError(runtime::kExitStorage, *cut_off);
  const auto& entries = k.config().entries();
  const auto it = entries.find("storage.path");
  throw BootError(
      runtime::kExitFailed,
      "no database at " + k.storage_path().string() + " yet (storage.path, " +
          (it != entries.end() ? it->second.source.describe() : std::string("default")) +
          "): " + what +
          ". `kiln serve` creates it; is this the deployment's configuration? (--config "
          "FILE or KILN_CONFIG)");
}

std::unique_ptr<Kernel> boot_reading(const Args& a) {
  auto k = Kernel::boot(boot_options(a, false));
  need_database(*k, "nothing is recorded there");
  k->ledger();  // open and migrate it
  return k;
}

namespace {

std::string pad(const std::string& s, std::size_t w) {
  return s.size() >= w ? s + " " : s + std::string(w - s.size(), ' ');
}

int cmd_version(const Args& a, std::ostream& out) {
  json::object o{
      {"kiln", kVersion},
      {"abi_version", kAbiVersion},
      {"compiler", std::string(compiler_name(static_cast<std::uint32_t>(current_compiler_id()))) +
                       " " + std::to_string(current_compiler_major())},
      {"boost", BOOST_LIB_VERSION}};
  if (a.json) {
    out << json::serialize(o) << "\n";
  } else {
    out << "kiln " << kVersion << " (ABI " << kAbiVersion << ", "
        << o["compiler"].as_string().c_str() << ", Boost " << BOOST_LIB_VERSION << ")\n";
  }
  return runtime::kExitOk;
}

bool is_ip_address(const std::string& host) {
  in6_addr any{};
  return inet_pton(AF_INET, host.c_str(), &any) == 1 ||
         inet_pton(AF_INET6, host.c_str(), &any) == 1;
}

// kiln serves plain HTTP: bound beyond loopback, API keys and the device secrets `POST
// /v1/devices` answers cross the network in clear. Said at start and by `config check`.
std::optional<std::string> plain_http_warning(const std::string& host) {
  in_addr v4{};
  if (inet_pton(AF_INET, host.c_str(), &v4) == 1 && (ntohl(v4.s_addr) >> 24) == 127)
    return std::nullopt;
  if (host == "::1") return std::nullopt;
  return "server.host " + host +
         " is reachable from other machines and kiln speaks plain HTTP: API keys and the device "
         "secrets POST /v1/devices answers would cross the network in clear. Put a "
         "TLS-terminating proxy in front and keep kiln on 127.0.0.1 (http.md, \"Beyond "
         "loopback\")";
}

int cmd_serve(const Args& a, std::ostream&) {
  // Block the stop signals before any thread starts, then wait for them synchronously.
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGTERM);
  // SIGHUP (a closed terminal, `systemctl reload`) would end the process on the spot, dropping
  // requests in flight: it is taken and logged instead.
  sigaddset(&set, SIGHUP);
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
  auto opts = boot_options(a, true);
  auto k = Kernel::boot(opts);
  const auto& cfg = k->config();

  // One server per database: a second would run another sessionizer and more mission workers
  // over the same rows. An advisory lock beside the file, held until this process ends.
  const int lock_fd =
      take_serve_lock(k->storage_path(), "; stop it first, or give this one its own storage.path");
  {
    // The lock file holds the server's pid while it runs and "stopped" after a clean stop: a
    // pid left there is a server that was killed, crashed or lost its machine.
    char before[64] = {};
    const auto n = ::pread(lock_fd, before, sizeof before - 1, 0);
    std::string previous = n > 0 ? std::string(before, static_cast<std::size_t>(n)) : "";
    while (!previous.empty() && (previous.back() == '\n' || previous.back() == ' '))
      previous.pop_back();
    if (!previous.empty() && previous.find_first_not_of("0123456789") == std::string::npos)
      spdlog::warn(
          "the previous kiln serve on this database (pid {}) did not stop cleanly (killed, "
          "crashed, or its machine went down): every acknowledged write is in the database; "
          "missions it was running are taken up again once their leases lapse "
          "(missions.lease_ms); `kiln ledger verify` checks the ledger",
          previous);
    const std::string pid = std::to_string(::getpid()) + "\n";
    if (::ftruncate(lock_fd, 0) != 0 || ::pwrite(lock_fd, pid.data(), pid.size(), 0) < 0)
      spdlog::warn("cannot write the pid into {}.serve.lock: {}", k->storage_path().string(),
                   std::strerror(errno));
  }
  // Any way out of this function is a clean stop (a drained server, or a start that failed):
  // written last, after everything declared below has been torn down.
  struct CleanStop {
    int fd;
    ~CleanStop() {
      const std::string clean = "stopped\n";
      if (::ftruncate(fd, 0) != 0 || ::pwrite(fd, clean.data(), clean.size(), 0) < 0)
        spdlog::warn("cannot mark the clean stop in the serve lock file: {}", std::strerror(errno));
    }
  } clean_stop{lock_fd};

  // Listen first: /health answers and /ready says 503 while storage opens.
  http::ApiContext api;
  api.kernel = k.get();
  api.public_paths = cfg.get_strings("server.public_routes");
  http::Router router = http::build_api(api);
  api.router = &router;
  std::vector<std::pair<std::string, std::string>> names;
  for (const auto& r : router.routes()) names.emplace_back(r.method, r.pattern);
  api.metrics = std::make_shared<http::HttpMetrics>(names);
  http::ServerOptions so;
  so.host = cfg.get_string("server.host");
  so.port = static_cast<int>(cfg.get_int("server.port"));
  so.threads = static_cast<int>(cfg.get_int("server.threads"));
  so.header_limit = static_cast<std::size_t>(cfg.get_int("server.header_limit_bytes"));
  so.body_limit = static_cast<std::size_t>(cfg.get_int("server.body_limit_bytes"));
  so.request_timeout = std::chrono::milliseconds(cfg.get_int("server.request_timeout_ms"));
  so.idle_timeout = std::chrono::milliseconds(cfg.get_int("server.idle_timeout_ms"));
  so.drain_timeout = std::chrono::milliseconds(cfg.get_int("server.drain_timeout_ms"));
  so.max_connections = static_cast<std::size_t>(cfg.get_int("server.max_connections"));
  so.max_connections_per_client =
      static_cast<std::size_t>(cfg.get_int("server.max_connections_per_client"));
  so.access_log = cfg.get_bool("server.access_log");
  so.cors_origins = cfg.get_strings("server.cors_origins");
  so.access_log_skip = cfg.get_strings("server.access_log_skip");
  // Set once the storage is open, while the I/O threads already answer (a request before that
  // has no key to be checked against: 401).
  std::atomic<auth::KeyStore*> keys{nullptr};
  // Declared before the server: destroyed after it has drained, however serve ends (a boot error
  // past this point too), so no request still running reaches a pool that is gone.
  std::unique_ptr<missions::WorkerPool> workers;
  std::unique_ptr<missions::FileRetention> retention;
  http::Server server(
      so, router,
      [&keys](std::string_view bearer) -> std::optional<http::Identity> {
        auto* store = keys.load(std::memory_order_acquire);
        if (!store) return std::nullopt;
        auto info = store->authenticate(bearer);
        if (!info) return std::nullopt;
        return http::Identity{info->tenant, missions::Actor{"key:" + info->id, info->role}};
      },
      api.metrics);
  // However serve ends (a boot error after the start too), answers still on their way from the
  // ledger (telemetry) reach a stopped server, not one whose I/O contexts are gone.
  struct StopThenFlush {
    http::Server& server;
    Kernel& kernel;
    ~StopThenFlush() {
      server.drain_and_stop();             // nothing the second time
      if (!kernel.storage_open()) return;  // it never started: make no database now
      try {
        kernel.sqlite_ledger().flush();
      } catch (const std::exception& e) {
        spdlog::warn("ledger flush at shutdown: {}", e.what());
      }
    }
  } stop_then_flush{server, *k};
  std::uint16_t port = 0;
  if (!is_ip_address(so.host))
    throw BootError(runtime::kExitConfig, "server.host: '" + so.host + "' is not an IP address (" +
                                              cfg.at("server.host").source.describe() +
                                              "); use e.g. 127.0.0.1 or 0.0.0.0");
  try {
    port = server.start();
  } catch (const std::exception& e) {
    // Not the configuration's fault as such (a port in use): the operation failed.
    throw BootError(runtime::kExitFailed, std::string("server: ") + e.what());
  }
  // http://HOST:PORT as a client writes it: an IPv6 address in brackets (http://[::1]:8080).
  const auto url_of = [port](const std::string& host) {
    return "http://" + (host.find(':') != std::string::npos ? "[" + host + "]" : host) + ":" +
           std::to_string(port);
  };
  spdlog::info("listening on {} (server.host, server.port)", url_of(so.host));
  if (auto w = plain_http_warning(so.host)) spdlog::warn("{}", *w);
  // Under systemd (Type=notify): ready once the storage is open and every part runs; its
  // watchdog pinged while GET /health answers (scripts/systemd/kiln.service).
  std::atomic<bool> stopping{false};  // before the manager: its watchdog thread reads it
  ServiceNotifier manager;
  manager.notify("STATUS=listening on port " + std::to_string(port) + ", opening storage");

  k->require_writable_storage();
  keys.store(&k->keys(), std::memory_order_release);
  k->telemetry();  // open sessions are followed (and closed by silence) from the start
  k->telemetry().ingestor().recall_last_batches();  // every device on /metrics from the start
  spdlog::info("storage open: {} ({} ledger events)", k->storage_path().string(),
               k->ledger().count());
  // The newest part of the chain, checked before anything is appended to it: a broken ledger is
  // said at start, not found at the next audit.
  bool ledger_broken = false;
  if (const auto tail = ledger::verify_tail(k->storage_path(), 10000); !tail.ok) {
    ledger_broken = true;
    spdlog::error(
        "ledger BROKEN at seq {}: {}. New events will chain on from the head as it is; run "
        "`kiln ledger verify` and restore a backup (`kiln db restore FILE`)",
        tail.first_bad_seq, tail.reason);
  }
  api.ledger_intact = ledger_broken ? 0 : 1;
  for (const auto& p : k->registry().plugins())
    spdlog::info("plugin {} {} loaded from {}: nodes [{}], tools [{}]", p.name, p.version,
                 p.file.string(), common::join(p.nodes), common::join(p.tools));
  for (const auto& s : k->node_status())
    spdlog::info("node {}/{} selected by {}; gate: {}{}", s.kind, s.selected, s.source.describe(),
                 gates::to_string(s.gate.state), s.gate.usable() ? "" : " (" + s.gate.reason + ")");
  std::size_t tools = k->registry().tools().size();
  spdlog::info("kiln {} ready: {} plugin(s), {} tool(s), gates in {}{}", kVersion,
               k->registry().plugins().size(), tools, k->gates().dir().string(),
               k->warnings().empty() && !ledger_broken ? "" : " — WITH WARNINGS, see above");
  if (int n = static_cast<int>(k->config().get_int("missions.workers")); n > 0) {
    workers = std::make_unique<missions::WorkerPool>(
        k->missions(), k->executor(), n,
        std::chrono::milliseconds(k->config().get_int("missions.poll_ms")));
    spdlog::info("{} mission worker(s) running (missions.workers)", n);
  }
  api.workers = workers.get();
  if (const auto keep = k->config().get_string("missions.keep_files"); !keep.empty()) {
    retention = std::make_unique<missions::FileRetention>(k->missions(), *common::parse_age(keep));
    spdlog::info("finished missions' files are released after {} (missions.keep_files)", keep);
  }
  // The in-server recorder (recorder.enabled): the server's own driver, so roaster.command
  // reaches the roaster being recorded.
  std::unique_ptr<telemetry::Recorder> recorder;
  if (k->config().get_bool("recorder.enabled")) {
    const std::string key_file = k->config().get_string("recorder.key_file");
    if (key_file.empty())
      throw BootError(runtime::kExitConfig,
                      "recorder.enabled needs recorder.key_file (a device key from `kiln devices "
                      "add`)");
    if (!(k->config().get_number("recorder.speed") > 0))
      throw BootError(runtime::kExitConfig, "recorder.speed must be above 0");
    auto driver = k->node<nodes::TelemetryDriver>();
    if (!driver)
      throw BootError(runtime::kExitPlugin,
                      "recorder.enabled, but no telemetry_driver node is loaded");
    try {
      recorder = std::make_unique<telemetry::Recorder>(
          driver,
          telemetry::DeviceCredentials::read(
              config::expand_path(key_file, k->config().config_dir())),
          k->telemetry().ingestor(), k->config().get_number("recorder.speed"),
          static_cast<std::size_t>(k->config().get_int("recorder.batch")));
      recorder->start();
    } catch (const std::runtime_error& e) {
      throw BootError(runtime::kExitConfig, e.what());
    }
  }
  api.ready = true;
  spdlog::info("kiln {} serving {} ({} routes; GET /openapi.json)", kVersion, url_of(so.host),
               router.routes().size());
  manager.notify("READY=1\nMAINPID=" + std::to_string(::getpid()) + "\nSTATUS=serving " +
                 url_of(so.host));
  if (const auto every = manager.watchdog()) {
    // The server's own port on loopback: an any-address host is reached there too.
    const std::string self = so.host == "0.0.0.0" ? "127.0.0.1" : so.host == "::" ? "::1" : so.host;
    const auto wait = std::chrono::duration_cast<std::chrono::milliseconds>(*every / 4);
    manager.start_watchdog([&stopping, url = url_of(self), wait] {
      if (stopping) return true;  // draining: /health says 503 on purpose
      try {
        http::Client c(url, std::max(wait, std::chrono::milliseconds(100)));
        // A deployment that keys /health (server.public_routes without it) gets 401 here: the
        // server answered all the same, which is what the watchdog asks.
        const int status = c.request("GET", "/health").status;
        return status == 200 || status == 401;
      } catch (const std::exception& e) {
        spdlog::warn("watchdog: GET /health: {}", e.what());
        return false;
      }
    });
  }
  int sig = 0;
  while (sigwait(&set, &sig) == 0 && sig == SIGHUP)
    spdlog::warn(
        "received SIGHUP: ignored (kiln serve does not reload its configuration; restart it to "
        "apply changes; SIGTERM stops it after draining)");
  spdlog::info("received {}, draining (requests in flight finish, new ones get 503)",
               sig == SIGINT ? "SIGINT" : "SIGTERM");
  stopping = true;
  manager.notify("STOPPING=1\nSTATUS=draining");
  if (recorder) recorder->stop();  // the partial batch is dropped with the driver closed
  server.drain_and_stop();
  if (workers) workers->stop();  // current steps finish and are recorded
  spdlog::info("stopped");
  return runtime::kExitOk;
}

int cmd_plugins_list(const Args& a, std::ostream& out) {
  auto k = Kernel::boot(boot_options(a, false));
  if (a.json) {
    json::array arr = http::plugins_json(*k);
    out << pretty(arr);
    return runtime::kExitOk;
  }
  if (k->registry().plugins().empty()) {
    out << "no plugins loaded (search paths: ";
    std::vector<std::string> paths;
    for (const auto& p : k->search_paths()) paths.push_back(p.string());
    out << common::join(paths) << ")\n";
    return runtime::kExitOk;
  }
  for (const auto& p : k->registry().plugins()) {
    out << p.name << " " << p.version << " (" << p.license << ")\n"
        << "  " << p.description << "\n"
        << "  file:   " << p.file.string() << "\n"
        << "  sha256: " << p.sha256 << "\n"
        << "  nodes:  " << (p.nodes.empty() ? "-" : common::join(p.nodes)) << "\n"
        << "  tools:  " << (p.tools.empty() ? "-" : common::join(p.tools)) << "\n";
  }
  return runtime::kExitOk;
}

}  // namespace

void print_nodes(const json::array& kinds, std::ostream& out) {
  std::vector<std::vector<std::string>> rows{{"KIND", "SELECTED", "GATE", "AVAILABLE", "SOURCE"}};
  std::vector<std::string> details;
  for (const auto& v : kinds) {
    const auto& o = v.as_object();
    const bool known = !string_at(o, "provider").empty();
    const bool is_default = o.contains("default") && o.at("default") == true;
    const std::string gate = string_at(o, "gate");
    std::vector<std::string> available;
    if (const auto* av = o.if_contains("available"); av && av->is_array())
      for (const auto& n : av->as_array())
        if (n.is_string()) available.emplace_back(n.as_string());
    rows.push_back({string_at(o, "kind"), string_at(o, "selected"),
                    known        ? gate
                    : is_default ? "OFF"
                                 : "UNKNOWN",
                    available.empty() ? "-" : common::join(available, ","),
                    string_at(o, "source")});
    const bool usable = gate == "passed" || gate == "default";
    if (!known || !usable)
      details.push_back(string_at(o, "kind") + ": " +
                        (known        ? string_at(o, "gate_detail")
                         : is_default ? "no loaded plugin provides the default node"
                                      : "no such node") +
                        "; available: " + common::join(available) +
                        (known ? "" : common::did_you_mean(string_at(o, "selected"), available)));
  }
  print_table(rows, out);
  for (const auto& d : details) out << "  " << d << "\n";
}

namespace {

int cmd_nodes(const Args& a, std::ostream& out) {
  auto k = Kernel::boot(boot_options(a, false));
  json::array arr = http::nodes_json(*k);
  if (a.json) {
    out << pretty(
        json::object{{"gates_enforce", k->config().get_string("gates.enforce")}, {"kinds", arr}});
    return runtime::kExitOk;
  }
  print_nodes(arr, out);
  out << "gates.enforce: " << k->config().get_string("gates.enforce") << "\n";
  return runtime::kExitOk;
}

int cmd_gate_run(const Args& a, std::ostream& out) {
  if (a.positional.size() != 3 || a.positional[2].find('/') == std::string::npos)
    throw std::invalid_argument("gate run needs KIND/NODE, e.g. kiln gate run tool_strategy/rules");
  const std::string& id = a.positional[2];
  auto slash = id.find('/');
  auto k = Kernel::boot(boot_options(a, false));
  auto rec =
      k->run_gate(id.substr(0, slash), id.substr(slash + 1), [&](const gates::GateRecord& hung) {
        if (a.json) out << pretty(hung.to_json()) << std::flush;
      });
  if (a.json) {
    out << pretty(rec.to_json());
    return rec.passed ? runtime::kExitOk : runtime::kExitFailed;
  }
  for (const auto* suite : {&rec.contract, &rec.parity}) {
    out << (*suite).at("suite").as_string().c_str() << ":\n";
    for (const auto& c : (*suite).at("checks").as_array()) {
      const auto& o = c.as_object();
      bool ok = o.at("passed").as_bool();
      bool intended = o.contains("intended");
      out << "  "
          << (ok         ? "PASS "
              : intended ? "INTENDED "
                         : "FAIL ")
          << o.at("name").as_string().c_str();
      if (!ok && o.contains("detail")) out << ": " << o.at("detail").as_string().c_str();
      out << "\n";
    }
  }
  out << "gate " << id << ": " << (rec.passed ? "PASS" : "FAIL") << " (plugin sha256 "
      << rec.plugin_sha256.substr(0, 12) << ", contract v" << rec.contract_version << ", ABI "
      << rec.abi_version << ")\n";
  if (!rec.plugin_file.empty())
    out << "record: " << k->gates().record_path(rec.kind, rec.node).string() << "\n";
  return rec.passed ? runtime::kExitOk : runtime::kExitFailed;
}

int cmd_gate_status(const Args& a, std::ostream& out) {
  auto k = Kernel::boot(boot_options(a, false));
  json::array arr = http::gates_json(*k);
  if (a.json) {
    out << pretty(json::object{{"gates_dir", k->gates().dir().string()},
                               {"gates_enforce", k->config().get_string("gates.enforce")},
                               {"nodes", arr}});
    return runtime::kExitOk;
  }
  out << "gate store: " << k->gates().dir().string()
      << " (gates.enforce: " << k->config().get_string("gates.enforce") << ")\n";
  std::vector<std::vector<std::string>> rows{{"NODE", "PROVIDER", "GATE", "DETAIL"}};
  for (const auto& v : arr) {
    const auto& o = v.as_object();
    rows.push_back(
        {std::string(o.at("kind").as_string()) + "/" + std::string(o.at("node").as_string()) +
             (o.at("selected").as_bool() ? " *" : ""),
         std::string(o.at("provider").as_string()), std::string(o.at("gate").as_string()),
         std::string(o.at("detail").as_string())});
  }
  print_table(rows, out);
  out << "(* = selected)\n";
  return runtime::kExitOk;
}

// What the server would refuse about the in-server recorder's key: a file that is not a device key,
// or (where the database exists; it is not made here) a key the registry does not hold, revoked,
// or expired after a rotation. nullopt when it would be accepted.
std::optional<std::string> recorder_key_problem(Kernel& k, const std::string& key_file) {
  telemetry::DeviceCredentials cred;
  try {
    cred = telemetry::DeviceCredentials::read(key_file);
  } catch (const std::exception& e) {
    return e.what();
  }
  if (!std::filesystem::exists(k.storage_path())) return std::nullopt;
  std::optional<telemetry::DeviceKey> key;
  try {
    storage::Connection c(k.storage_path(), storage::Connection::Mode::kReadOnly);
    auto st = c.prepare(
        "SELECT device, not_after, revoked_at FROM device_keys WHERE tenant = ? AND kid = ?");
    st.bind(1, cred.tenant).bind(2, cred.key.kid);
    if (st.step()) {
      key.emplace();
      key->kid = cred.key.kid;
      key->tenant = cred.tenant;
      key->device = st.text(0);
      if (!st.is_null(1)) key->not_after = st.text(1);
      if (!st.is_null(2)) key->revoked_at = st.text(2);
    }
  } catch (const storage::StorageError& e) {
    return "cannot look up key " + cred.key.kid + " in " + k.storage_path().string() + ": " +
           e.what();
  }
  const std::string which = "key " + cred.key.kid + " of device " + cred.device + " (tenant " +
                            cred.tenant + ", " + key_file + ")";
  if (!key)
    return which + " is not registered in " + k.storage_path().string() +
           ": every batch would be refused (kiln devices add " + cred.device +
           " --public-key HEX registers a key; or point recorder.key_file at the file `kiln "
           "devices add|rotate` wrote)";
  const std::string status = key->status(ledger::utc_now_millis());
  if (status == "revoked" || status == "expired")
    return which + " is " + status + ": every batch would be refused (kiln devices rotate " +
           cred.device + " --key-out FILE makes a new one; point recorder.key_file at it)";
  return std::nullopt;
}

int cmd_config_check(const Args& a, std::ostream& out) {
  auto k = Kernel::boot(boot_options(a, false));
  std::vector<std::string> problems;
  std::vector<std::string> notes;
  for (const auto& s : k->node_status())
    if (!s.entry && s.is_default)
      notes.push_back("note: kind " + s.kind +
                      " is off: no loaded plugin provides its default node '" + s.selected + "'");
    else if (!s.entry)
      problems.push_back("nodes." + s.kind + ": unknown node '" + s.selected + "' (set by " +
                         s.source.describe() + "); available: " + common::join(s.available) +
                         common::did_you_mean(s.selected, s.available));
  // What `kiln serve` would refuse at start, found here rather than there.
  const auto& cfg = k->config();
  const auto where = [&](const char* key) {
    const auto it = cfg.entries().find(key);
    return it != cfg.entries().end() ? " (set by " + it->second.source.describe() + ")"
                                     : std::string();
  };
  const std::string host = cfg.get_string("server.host");
  if (!is_ip_address(host))
    problems.push_back("server.host: '" + host + "' is not an IP address" + where("server.host") +
                       "; use e.g. 127.0.0.1 or 0.0.0.0");
  // Sessions open only with an event detector; without one the mission never starts.
  bool detector = false;
  for (const auto& st : k->node_status()) detector |= st.kind == "event_detector" && st.entry;
  if (const std::string mission = cfg.get_string("sessions.mission");
      detector && !mission.empty() && !k->templates().find(mission)) {
    const auto names = k->templates().names();
    problems.push_back("sessions.mission: no mission template '" + mission + "'" +
                       where("sessions.mission") + "; templates: " + common::join(names) +
                       common::did_you_mean(mission, names) + " ('' starts none)");
  }
  if (cfg.get_bool("recorder.enabled")) {
    const std::string key_file = cfg.get_string("recorder.key_file");
    if (key_file.empty())
      problems.push_back(
          "recorder.enabled needs recorder.key_file (a device key from `kiln devices add`)");
    else if (!std::filesystem::is_regular_file(key_file))
      problems.push_back("recorder.key_file: no file " + key_file + where("recorder.key_file"));
    else if (auto p = recorder_key_problem(*k, key_file))
      problems.push_back("recorder.key_file: " + *p + where("recorder.key_file"));
  }
  // Settings only a node's own factory checks (`transport: serial`): each node whose plugin
  // settings, or whose kind's settings when it is selected, the deployment sets is built here —
  // not run — as `kiln serve` or `kiln record --driver` would build it; and so is every
  // selected node other than its kind's default, whatever is set (a plugin's setting it needs
  // and the deployment left out: `kiln serve` refuses that at start).
  const auto set_under = [&](const std::string& prefix) {
    std::vector<const std::pair<const std::string, config::Entry>*> set;
    for (const auto& kv : cfg.entries())
      if (kv.first.rfind(prefix, 0) == 0 && kv.second.source.layer != config::Layer::kDefault &&
          kv.second.source.layer != config::Layer::kPluginDefault)
        set.push_back(&kv);
    return set;
  };
  const auto status = k->node_status();  // once: it checks every kind's gate
  for (const auto& s : status)
    if (auto problem = k->unprovided_selection(s)) problems.push_back(*problem);
  for (const auto& n : k->registry().nodes()) {
    auto set = set_under("plugin_config." + n.provider + ".");
    bool selected = false, chosen = false;  // chosen: selected instead of the kind's default
    for (const auto& s : status)
      if (s.kind == n.kind && s.selected == n.name) {
        selected = true;
        chosen = !s.is_default;
      }
    if (selected)
      for (const auto* kv : set_under(n.kind + ".")) set.push_back(kv);
    if (set.empty() && !chosen) continue;
    try {
      k->node_maker(n, true)(cfg.section(n.kind));
    } catch (const std::invalid_argument& e) {
      std::string problem = e.what();
      for (const auto* kv : set)  // where the value the factory names was set
        if (problem.find(kv->first) != std::string::npos) {
          problem += " (set by " + kv->second.source.describe() + ")";
          break;
        }
      problems.push_back(problem);
    } catch (const std::exception& e) {
      notes.push_back("note: node " + n.kind + "/" + n.name +
                      " could not be built here to check its settings: " + e.what());
    }
  }
  if (!problems.empty()) throw BootError(runtime::kExitConfig, common::join(problems, "\n"));
  out << "configuration is valid (" << k->config().entries().size() << " keys, "
      << k->registry().plugins().size() << " plugin(s))\n";
  for (const auto& w : k->warnings()) out << "warning: " << w << "\n";
  if (auto w = plain_http_warning(host)) out << "warning: " << *w << "\n";
  for (const auto& n : notes) out << n << "\n";
  for (const auto& s : k->node_status())
    if (s.entry && !s.gate.usable())
      out << "note: node " << s.kind << "/" << s.selected << " is not gated (" << s.gate.reason
          << "); `kiln serve` will refuse it until `kiln gate run " << s.kind << "/" << s.selected
          << "` passes\n";
  return runtime::kExitOk;
}

int cmd_config_explain(const Args& a, std::ostream& out) {
  auto k = Kernel::boot(boot_options(a, false));
  std::string key = a.positional.size() > 2 ? a.positional[2] : "";
  std::vector<const std::pair<const std::string, config::Entry>*> rows;
  for (const auto& kv : k->config().entries())
    if (key.empty() || kv.first == key || kv.first.rfind(key + ".", 0) == 0) rows.push_back(&kv);
  if (rows.empty()) {
    std::vector<std::string> keys;
    for (const auto& kv : k->config().entries()) keys.push_back(kv.first);
    throw BootError(runtime::kExitConfig, "config explain: no key '" + key + "'" +
                                              common::did_you_mean(key, keys) +
                                              "; `kiln config explain` lists every key");
  }
  // A path with ${exe_dir} or ${config_dir} as kiln will read it here (a string, or each of a
  // list's); null for values without one.
  auto resolved = [&](const json::value& v) -> json::value {
    auto one = [&](const json::value& x) -> json::value {
      if (!x.is_string() || x.as_string().find("${") == json::string::npos) return x;
      return json::value(config::expand_path(x.as_string(), k->config().config_dir()).string());
    };
    if (v.is_string()) return v.as_string().find("${") == json::string::npos ? nullptr : one(v);
    if (!v.is_array()) return nullptr;
    bool any = false;
    json::array out;
    for (const auto& x : v.as_array()) {
      any = any || (x.is_string() && x.as_string().find("${") != json::string::npos);
      out.push_back(one(x));
    }
    return any ? json::value(std::move(out)) : json::value(nullptr);
  };
  if (a.json) {
    json::array arr;
    for (const auto* r : rows) {
      json::object row{
          {"key", r->first}, {"value", r->second.value}, {"source", r->second.source.describe()}};
      if (auto x = resolved(r->second.value); !x.is_null()) row["resolved"] = std::move(x);
      arr.push_back(std::move(row));
    }
    out << pretty(arr);
    return runtime::kExitOk;
  }
  for (const auto* r : rows) {
    out << r->first << " = " << one_line(r->second.value) << "    # "
        << r->second.source.describe();
    if (auto x = resolved(r->second.value); !x.is_null()) out << "; here " << one_line(x);
    out << "\n";
  }
  return runtime::kExitOk;
}

int cmd_tool_list(const Args& a, std::ostream& out) {
  auto k = Kernel::boot(boot_options(a, false));
  json::array arr;
  for (const auto& t : k->registry().tools())
    arr.push_back(json::object{{"name", t.name},
                               {"provider", t.provider},
                               {"description", t.description},
                               {"input_schema", t.input_schema},
                               {"output_schema", t.output_schema}});
  if (a.json) {
    out << pretty(arr);
    return runtime::kExitOk;
  }
  out << pad("TOOL", 24) << pad("PROVIDER", 16) << "DESCRIPTION\n";
  for (const auto& t : k->registry().tools())
    out << pad(t.name, 24) << pad(t.provider, 16) << t.description << "\n";
  return runtime::kExitOk;
}

int cmd_tool_invoke(const Args& a, std::ostream& out, std::ostream& err) {
  if (a.positional.size() != 3) throw std::invalid_argument("tool invoke needs exactly one NAME");
  json::value input = json::object{};
  if (a.input) {
    json::error_code ec;
    input = json::parse(*a.input, ec);
    if (ec)
      throw std::invalid_argument("--input is not valid JSON (" + ec.message() +
                                  "); e.g. --input '{\"text\": \"hi\"}'");
  }
  auto k = Kernel::boot(boot_options(a, true));
  runtime::ToolCall call{a.positional[2], a.tenant, std::move(input), "", {}, {}};
  auto outcome = k->executor().invoke(call);
  if (!outcome.ok()) {
    const auto& e = outcome.error();
    if (a.json)
      out << pretty(json::object{{"error", json::object{{"code", e.code},
                                                        {"message", e.message},
                                                        {"retryable", e.retryable},
                                                        {"details", e.details}}}});
    err << "error " << e.code << ": " << e.message << "\n";
    // Refused input is the caller's to fix, as for missions: exit 2.
    return e.code == error_code::kInvalidInput ? runtime::kExitUsage : runtime::kExitFailed;
  }
  out << pretty(outcome.value().output);
  return runtime::kExitOk;
}

int cmd_analyze(const Args& a, std::ostream& out, std::ostream& err) {
  if (a.positional.size() != 2) throw std::invalid_argument("analyze needs exactly one FILE.alog");
  const std::string file = a.positional[1];
  std::string text;
  try {
    text = read_input_file(file, "an Artisan .alog file");
  } catch (const std::runtime_error& e) {
    throw BootError(runtime::kExitFailed, e.what());
  }
  json::object input{{"alog", std::move(text)}, {"detect", a.detect}};
  if (a.phases) input["phases"] = phases_option(*a.phases);
  auto opts = boot_options(a, true, {"event_detector"});
  opts.audit_tool_calls = false;  // reads FILE, changes nothing: no ledger event, no database
  auto k = Kernel::boot(opts);
  runtime::ToolCall call{"roast.analyze", a.tenant, input, "", {}, {}};
  auto outcome = k->executor().invoke(call);
  if (!outcome.ok()) {
    const auto& e = outcome.error();
    err << "kiln analyze: " << file << ": " << e.code << ": " << e.message << "\n";
    // A file the analysis refuses is input to fix, as for every command: exit 2.
    return e.code == error_code::kInvalidInput ? runtime::kExitUsage : runtime::kExitFailed;
  }
  const auto& o = outcome.value().output.as_object();
  if (a.json) {
    out << pretty(o);
    return runtime::kExitOk;
  }
  auto num = [](const json::value& v, int decimals) {
    if (v.is_null()) return std::string("-");
    std::ostringstream s;
    s << std::fixed << std::setprecision(decimals) << v.to_number<double>();
    return s.str();
  };
  // Times as roasters read them (m:ss after CHARGE), temperatures in the log's unit.
  std::string unit = "C";
  if (const auto* ror = o.at("ror").as_object().if_contains("unit"); ror && ror->is_string())
    unit = std::string(ror->as_string()).substr(0, 1);
  out << file << (a.detect ? " (events detected)" : " (events as marked)") << "\n";
  // "°" is two bytes: its column is padded one byte wider to line up.
  out << pad("EVENT", 10) << pad("TIME", 8) << pad("BT °" + unit, 10) << pad("INDEX", 8)
      << "FROM\n";
  const json::object* sources = nullptr;
  if (const auto* v = o.if_contains("event_sources"); v && v->is_object())
    sources = &v->as_object();
  // Where an event came from, in words: DRY_END at TP means BT was past the drying phase
  // temperature when the beans turned (the file's phases), not a second reading of the same event.
  auto from = [&](const char* ev) -> std::string {
    const auto* v = sources ? sources->if_contains(ev) : nullptr;
    if (std::string_view(ev) == "TP") return "the lowest BT after CHARGE";
    if (std::string_view(ev) == "FCs") return a.detect ? "the FCs phase temperature" : "marked";
    if (!v || !v->is_string() || v->as_string().empty()) return "";
    const std::string s(v->as_string());
    if (s == "TP") {
      std::string why = "at TP: BT was already past the DRY END temperature";
      if (const auto* pt = o.if_contains("phase_temperatures"); pt && pt->is_array())
        why += " (" + num(pt->as_array()[1], 1) + " °" + unit + ", the file's phases)";
      return why + " when the beans turned; --phases sets others";
    }
    if (s == "phases") return "the phase temperature";
    return s;
  };
  for (const char* ev : {"CHARGE", "TP", "DRY_END", "FCs", "DROP"}) {
    const auto& e = o.at("events").at(ev);
    const std::string name = std::string_view(ev) == "DRY_END" ? "DRY END" : ev;
    if (e.is_null()) {
      out << pad(name, 10) << "-\n";
      continue;
    }
    out << pad(name, 10) << pad(mmss(e.at("time")), 8) << pad(num(e.at("bt"), 1), 9)
        << pad(std::to_string(e.at("index").as_int64()), 8) << from(ev) << "\n";
  }
  const auto& ph = o.at("phases");
  out << "phases: drying " << mmss(ph.at("drying")) << ", maillard " << mmss(ph.at("maillard"))
      << ", development " << mmss(ph.at("development")) << ", DTR " << num(ph.at("dtr"), 1)
      << " %\n";
  out << "AUC " << num(o.at("auc"), 0) << " °" << unit << "·min (base " << num(o.at("auc_base"), 0)
      << " °" << unit << ")";
  if (const auto* ror = o.at("ror").as_object().if_contains("at"))
    out << ", RoR at FCs " << num(ror->at("FCs"), 1) << " °" << unit << "/min, at DROP "
        << num(ror->at("DROP"), 1) << " °" << unit << "/min";
  out << "\n";
  if (const auto* w = o.if_contains("weight"); w && w->is_object() && w->at("in").is_number()) {
    const std::string wu(w->at("unit").as_string());
    out << "weight " << one_line(w->at("in")) << " " << wu << " green";
    if (w->at("out").is_number())
      out << ", " << one_line(w->at("out")) << " " << wu << " roasted: " << num(w->at("loss"), 1)
          << " % loss";
    else
      out << ", roasted weight not recorded";
    out << "\n";
  }
  for (const auto& w : o.at("warnings").as_array())
    out << "warning: " << w.as_string().c_str() << "\n";
  return runtime::kExitOk;
}

int cmd_say(const Args& a, std::ostream& out, std::ostream& err) {
  if (a.positional.size() != 2)
    throw std::invalid_argument(
        "say needs exactly one TEXT (quote it): kiln say \"Hello.\" -o hello.wav");
  const std::string format = say_format(a);
  const std::string file = a.out_file.value_or("speech." + format);
  json::object input{{"text", a.positional[1]}, {"format", format}};
  if (a.voice) input["voice"] = *a.voice;
  if (a.speed) input["speed"] = number_arg(a.speed, "--speed", 1, 0.25, 4.0);
  auto k = Kernel::boot(boot_options(a, true));
  runtime::ToolCall call{"tts.synthesize", a.tenant, input, "", {}, {}};
  auto outcome = k->executor().invoke(call);
  if (!outcome.ok()) {
    const auto& e = outcome.error();
    err << "kiln say: " << e.code << ": " << e.message;
    // What the engine adds (the voices there are, the size allowed), when the message lacks it.
    if (e.details.is_object() && !e.details.as_object().empty())
      err << " (" << common::json_text(e.details) << ")";
    err << "\n";
    return runtime::kExitFailed;
  }
  const auto& res = outcome.value();
  if (res.artifacts.empty()) {
    err << "kiln say: the tool returned no audio\n";
    return runtime::kExitFailed;
  }
  std::ofstream f(file, std::ios::binary);
  f << res.artifacts.front().data;
  f.close();
  if (!f) throw BootError(runtime::kExitFailed, "cannot write " + file);
  const auto& o = res.output.as_object();
  if (a.json) {
    json::object j = o;
    j["file"] = file;
    out << pretty(j);
  } else {
    char secs[32];
    std::snprintf(secs, sizeof secs, "%.2f", o.at("seconds").to_number<double>());
    out << "wrote " << file << ": " << secs << " s of " << format << " audio, voice "
        << std::string(o.at("voice").as_string()) << ", " << o.at("sample_rate").as_int64()
        << " Hz\n";
  }
  return runtime::kExitOk;
}

// What the database commands boot with: a mission configuration the plugins refuse is a warning
// there (BootOptions::missions_optional), so that the backup or check a recovery needs runs.
BootOptions recovery_options(const Args& a) {
  auto opts = boot_options(a, false);
  opts.missions_optional = true;
  return opts;
}

int cmd_db_status(const Args& a, std::ostream& out) {
  auto k = Kernel::boot(recovery_options(a));
  const auto path = k->storage_path();
  need_database(*k, "nothing to show");
  std::error_code ec;
  storage::Connection c(path, storage::Connection::Mode::kReadOnly);
  auto status = storage::migration_status(c);
  auto mode = c.prepare("PRAGMA journal_mode");
  mode.step();
  std::int64_t events = 0;
  if (status.version >= 1) {
    auto n = c.prepare("SELECT count(*) FROM ledger");
    n.step();
    events = n.int64(0);
  }
  const int known = storage::kernel_migrations().back().version;
  // Writes wait in the WAL beside the file until a checkpoint copies them in.
  std::int64_t wal_bytes = 0;
  if (auto wal = path.string() + "-wal"; std::filesystem::exists(wal, ec))
    wal_bytes = static_cast<std::int64_t>(std::filesystem::file_size(wal, ec));
  json::array applied;
  for (const auto& [v, at] : status.applied)
    applied.push_back(json::object{{"version", v}, {"applied_at", at}});
  json::object o{{"path", std::filesystem::absolute(path).string()},
                 {"schema_version", status.version},
                 {"schema_version_known", known},
                 {"journal_mode", mode.text(0)},
                 {"size_bytes", static_cast<std::int64_t>(std::filesystem::file_size(path))},
                 {"wal_bytes", wal_bytes},
                 {"ledger_events", events},
                 {"migrations", applied}};
  if (a.json) {
    out << pretty(o);
    return runtime::kExitOk;
  }
  out << "database:       " << o["path"].as_string().c_str() << "\n"
      << "schema version: " << status.version << " (this kiln: " << known << ")"
      << (status.version < known ? " — pending migrations apply at the next start" : "") << "\n"
      << "journal mode:   " << mode.text(0) << "\n"
      << "size:           " << o["size_bytes"].as_int64() << " bytes (and " << wal_bytes
      << " in its write-ahead log, not yet checkpointed)\n"
      << "ledger events:  " << events << "\n";
  for (const auto& [v, at] : status.applied)
    out << "  migration " << v << " applied " << at << "\n";
  return runtime::kExitOk;
}

int cmd_db_backup(const Args& a, std::ostream& out) {
  if (a.positional.size() < 3) throw std::invalid_argument("db backup needs a FILE to write");
  const std::filesystem::path to = a.positional[2];
  auto k = Kernel::boot(recovery_options(a));
  const auto path = k->storage_path();
  need_database(*k, "nothing to back up");
  std::error_code ec;
  if (std::filesystem::exists(to, ec))
    throw BootError(runtime::kExitFailed,
                    to.string() + " exists; name a new file (a backup never overwrites)");
  if (to.has_parent_path()) std::filesystem::create_directories(to.parent_path(), ec);
  // Written as FILE.partial and given its name only once whole, checked and synced: a backup cut
  // off (killed, a full disk) is never taken for one. The .partial is locked while it is
  // written (a second backup to FILE meanwhile is refused, not allowed to replace it); one an
  // earlier run left is replaced. The copy holds what the database holds (the ledger, API key
  // hashes, device keys): 0640 as the database, made empty so VACUUM INTO writes into it with
  // that mode.
  const std::filesystem::path partial = to.string() + ".partial";
  const int held = ::open(partial.c_str(), O_CREAT | O_RDWR | O_NOFOLLOW | O_CLOEXEC, 0640);
  if (held < 0)
    throw BootError(runtime::kExitFailed,
                    "cannot create " + partial.string() + " (" + std::strerror(errno) + ")");
  struct Closer {
    int fd;
    ~Closer() { ::close(fd); }
  } closer{held};
  if (::flock(held, LOCK_EX | LOCK_NB) != 0)
    throw BootError(runtime::kExitFailed, "another kiln db backup is writing " + to.string() +
                                              " now (" + partial.string() +
                                              " is locked); name another file");
  struct stat left {};
  const bool journal = std::filesystem::remove(partial.string() + "-journal", ec);
  if ((::fstat(held, &left) == 0 && left.st_size > 0) || journal) {
    out << "replacing " << partial.string() << ", which a backup cut off left\n";
    if (::ftruncate(held, 0) != 0 || ::fchmod(held, 0640) != 0)
      throw BootError(runtime::kExitFailed,
                      "cannot empty " + partial.string() + " (" + std::strerror(errno) + ")");
  }
  auto fail = [&](const std::string& why) {
    std::error_code gone;
    std::filesystem::remove(partial, gone);
    return BootError(runtime::kExitFailed, why + "; no backup written");
  };
  std::int64_t events = 0, last_seq = 0;
  try {
    {
      storage::Connection c(path, storage::Connection::Mode::kReadOnly);
      auto st = c.prepare("VACUUM INTO ?");
      st.bind(1, partial.string());
      st.step();
    }
    storage::Connection copy(partial, storage::Connection::Mode::kReadOnly);
    auto check = copy.prepare("PRAGMA integrity_check");
    check.step();
    if (check.text(0) != "ok")
      throw fail("the copy at " + partial.string() +
                 " fails its integrity check: " + check.text(0));
    auto n = copy.prepare("SELECT count(*), coalesce(max(seq), 0) FROM ledger");
    n.step();
    events = n.int64(0);
    last_seq = n.int64(1);
  } catch (const BootError&) {
    throw;
  } catch (const std::exception& e) {
    throw fail(std::string("the copy failed: ") + e.what());
  }
  {
    const int fd = ::open(partial.c_str(), O_RDONLY | O_CLOEXEC);
    const bool synced = fd >= 0 && ::fsync(fd) == 0;
    if (fd >= 0) ::close(fd);
    if (!synced) throw fail("cannot sync " + partial.string() + ": " + std::strerror(errno));
  }
  // Its name only if nothing took it meanwhile (a backup never overwrites).
  try {
    common::name_new_file(partial, to);
  } catch (const std::exception& e) {
    if (std::filesystem::exists(partial, ec)) throw fail(e.what());
    throw BootError(runtime::kExitFailed, std::string("the backup is written, but ") + e.what() +
                                              ": after a power cut it may not be");
  }
  out << "backed up " << path.string() << " to " << to.string() << ": "
      << std::filesystem::file_size(to) << " bytes, " << events << " ledger events (to seq "
      << last_seq << "), integrity ok\n"
      << "check its chain: kiln ledger verify --set storage.path=" << to.string() << "\n"
      << "restore it: kiln db restore " << to.string() << "\n";
  return runtime::kExitOk;
}

int cmd_db_restore(const Args& a, std::ostream& out) {
  namespace fs = std::filesystem;
  if (a.positional.size() < 3)
    throw std::invalid_argument("db restore needs the BACKUP file (kiln db backup wrote it)");
  const fs::path from = a.positional[2];
  auto k = Kernel::boot(recovery_options(a));
  const fs::path path = k->storage_path();
  std::error_code ec;
  if (!fs::is_regular_file(from, ec))
    throw BootError(runtime::kExitFailed, "no backup file at " + from.string());
  if (fs::exists(path, ec) && fs::equivalent(from, path, ec))
    throw BootError(runtime::kExitFailed,
                    from.string() + " is the database at storage.path itself, not a backup");
  const fs::path partial = path.string() + ".restoring";
  if (fs::exists(partial, ec) && fs::equivalent(from, partial, ec))
    throw BootError(runtime::kExitFailed,
                    from.string() +
                        " is the copy a restore cut off left, which this restore replaces: copy "
                        "it elsewhere first (or restore the backup it came from)");
  // No server may run on the database meanwhile; and none can start until this is done.
  const int lock = take_serve_lock(path, "; stop it before restoring (systemctl stop kiln)");
  // The backup must be whole and its ledger's chain intact, before anything is moved.
  {
    storage::Connection b(from, storage::Connection::Mode::kReadOnly);
    auto check = b.prepare("PRAGMA integrity_check");
    check.step();
    if (check.text(0) != "ok")
      throw BootError(
          runtime::kExitFailed,
          from.string() + " fails its integrity check, nothing restored: " + check.text(0));
    auto ledger = b.prepare("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'ledger'");
    if (!ledger.step())
      throw BootError(runtime::kExitFailed,
                      from.string() +
                          " is not a kiln database (it has no ledger): an empty file, or one "
                          "a backup cut off left? Nothing restored");
    // A newer kiln's backup: this one could not serve it (a rollback would end in a server that
    // does not start); said before anything is moved.
    const int newest = storage::kernel_migrations().back().version;
    if (const int version = storage::migration_status(b).version; version > newest)
      throw BootError(runtime::kExitFailed,
                      from.string() + " has schema version " + std::to_string(version) +
                          " (a newer kiln's) but this kiln knows only up to " +
                          std::to_string(newest) +
                          "; nothing restored: restore it with that kiln, or restore an older "
                          "backup");
  }
  const auto chain = ledger::verify_file(from);
  if (!chain.ok)
    throw BootError(runtime::kExitFailed, from.string() + ": its ledger is broken at seq " +
                                              std::to_string(chain.first_bad_seq) + " (" +
                                              chain.reason + "), nothing restored");
  // The copy first, whole and synced beside the database, which is untouched until then: a
  // restore cut off while copying leaves the database as it was.
  fs::remove(partial, ec);
  fs::copy_file(from, partial, ec);
  if (!ec)
    fs::permissions(partial, fs::perms::owner_read | fs::perms::owner_write | fs::perms::group_read,
                    fs::perm_options::replace, ec);
  if (!ec) {
    const int fd = ::open(partial.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0 || ::fsync(fd) != 0) ec = std::error_code(errno, std::generic_category());
    if (fd >= 0) ::close(fd);
  }
  if (ec) {
    const std::string why = ec.message();
    fs::remove(partial, ec);
    throw BootError(runtime::kExitFailed, "cannot copy " + from.string() + " to " +
                                              partial.string() + " (" + why +
                                              "), nothing restored");
  }
  // Then the database now is set aside whole, with its -wal and -shm: after a crash the -wal
  // holds commits the file lacks, and SQLite would replay it onto the restored file (a mix of
  // both, damaged). Nothing is deleted. Cut off from here until the copy is in place, the
  // database is missing and every command says so (runtime::interrupted_restore) instead of
  // making an empty one.
  std::string stamp = ledger::utc_now_millis();
  for (auto& c : stamp)
    if (c == ':') c = '-';
  std::string aside = path.string() + ".before-restore-" + stamp;
  // A restore cut off after setting the file aside but not yet its -wal: the -wal joins that
  // file, not a name of its own (apart, the file lacks the commits its -wal holds).
  if (!fs::exists(path, ec) && fs::exists(path.string() + "-wal", ec))
    if (const auto earlier = runtime::newest_set_aside(path)) aside = earlier->string();
  bool moved = false;
  for (const char* suffix : {"", "-wal", "-shm"}) {
    const fs::path f = path.string() + suffix;
    if (!fs::exists(f, ec)) continue;
    fs::rename(f, aside + suffix, ec);
    if (ec)
      throw BootError(runtime::kExitFailed, "cannot move " + f.string() + " aside to " + aside +
                                                suffix + " (" + ec.message() +
                                                "), nothing restored");
    moved = moved || suffix[0] == '\0';
  }
  fs::rename(partial, path, ec);
  if (ec)
    throw BootError(runtime::kExitFailed,
                    "cannot put the copy " + partial.string() + " at " + path.string() + " (" +
                        ec.message() + ")" +
                        (moved ? "; the database before is at " + aside : std::string()));
  try {
    common::sync_directory(path.has_parent_path() ? path.parent_path() : fs::path("."));
  } catch (const std::exception& e) {
    throw BootError(runtime::kExitFailed, std::string("the copy is in place, but ") + e.what() +
                                              ": after a power cut it may not be");
  }
  const auto restored = ledger::verify_file(path);
  ::close(lock);
  out << "restored " << path.string() << " from " << from.string() << ": " << restored.checked
      << " ledger events, chain " << (restored.ok ? "intact" : "BROKEN: " + restored.reason)
      << "\n";
  if (moved)
    out << "the database before is kept at " << aside
        << " (with its -wal and -shm, if it had them); delete it once the restore is checked\n";
  return restored.ok ? runtime::kExitOk : runtime::kExitFailed;
}

int cmd_ledger_verify(const Args& a, std::ostream& out) {
  auto k = Kernel::boot(recovery_options(a));
  const auto path = k->storage_path();
  need_database(*k, "nothing to verify");
  {
    storage::Connection c(path, storage::Connection::Mode::kReadOnly);
    auto check = c.prepare("PRAGMA quick_check");
    check.step();
    if (check.text(0) != "ok") {
      const std::string damage = check.text(0);
      if (a.json)
        out << pretty(json::object{{"ok", false}, {"damaged", damage}});
      else
        out << "database file DAMAGED: " << damage << " (restore a backup: kiln db restore FILE)\n";
      return runtime::kExitFailed;
    }
  }
  auto r = ledger::verify_file(path);
  // The stored readings against the digests the ledger lists for them.
  const auto t = telemetry::check_stored_batches(path);
  if (a.json) {
    json::array problems;
    for (const auto& p : t.problems) problems.emplace_back(p);
    out << pretty(json::object{{"ok", r.ok && t.problem_count == 0},
                               {"checked", r.checked},
                               {"first_bad_seq", r.first_bad_seq},
                               {"reason", r.reason},
                               {"head_hash", r.head_hash},
                               {"telemetry", json::object{{"batches", t.checked},
                                                          {"without_bytes", t.without_bytes},
                                                          {"problem_count", t.problem_count},
                                                          {"problems", std::move(problems)}}}});
  } else {
    if (r.ok)
      out << "ledger intact: " << r.checked << " events, head " << r.head_hash << "\n";
    else
      out << "ledger BROKEN at seq " << r.first_bad_seq << ": " << r.reason << " (" << r.checked
          << " events before it verified)\n";
    if (t.problem_count == 0) {
      out << "telemetry intact: " << t.checked
          << " stored batches match the digests the ledger lists"
          << (t.without_bytes ? " (" + std::to_string(t.without_bytes) +
                                    " from before migration 8 by digest only)"
                              : std::string())
          << "\n";
    } else {
      // A listed batch that is not stored is a problem too: the count may pass the rows checked.
      out << "telemetry BROKEN: " << t.problem_count << " problem(s) between the " << t.checked
          << " stored batches and the ledger's lists of them:\n";
      for (const auto& p : t.problems) out << "  " << p << "\n";
      if (t.problem_count > static_cast<std::int64_t>(t.problems.size()))
        out << "  … and " << t.problem_count - static_cast<std::int64_t>(t.problems.size())
            << " more (--json lists the first 20 too)\n";
    }
  }
  return r.ok && t.problem_count == 0 ? runtime::kExitOk : runtime::kExitFailed;
}

int cmd_ledger_export(const Args& a, std::ostream& out) {
  ledger::ExportFilter f;
  f.tenant = a.tenant_filter;
  f.stream = a.stream;
  if (a.since) {
    const std::string& s = *a.since;
    // A time as the ledger writes them (2026-12-04T18:30:00.000Z), or its start (2026-12-04,
    // 2026-12-04T18:30): compared as text, so its fields are checked here.
    auto a_time = [](const std::string& t) {
      int y = 0, mo = 0, d = 0, h = 0, mi = 0, sec = 0, used = 0;
      const int n = std::sscanf(t.c_str(), "%4d-%2d-%2d%n", &y, &mo, &d, &used);
      if (n != 3 || used != 10 || mo < 1 || mo > 12 || d < 1 || d > 31) return false;
      if (t.size() == 10) return true;
      const char* rest = t.c_str() + 10;
      if (std::sscanf(rest, "T%2d:%2d%n", &h, &mi, &used) != 2 || used != 6 || h > 23 || mi > 59)
        return false;
      rest += used;
      if (*rest == ':' && (std::sscanf(rest, ":%2d%n", &sec, &used) != 1 || used != 3 || sec > 60))
        return false;
      return true;
    };
    if (!s.empty() && s.size() <= 18 &&
        std::all_of(s.begin(), s.end(), [](char c) { return c >= '0' && c <= '9'; }))
      f.after_seq = std::stoll(s);
    else if (a_time(s))
      f.since_time = s;
    else
      throw std::invalid_argument(
          "--since takes a seq number or an ISO 8601 UTC time (2026-12-04 or "
          "2026-12-04T18:30:00Z), got '" +
          s + "'");
  }
  auto k = Kernel::boot(recovery_options(a));
  need_database(*k, "nothing to export");
  ExportOutput to(a.out_file, out);
  auto n = k->ledger().for_each(
      f, [&](const ledger::Event& e) { to.write(json::serialize(e.to_json()) + "\n"); });
  to.finish();
  spdlog::info("exported {} events{}", n, a.out_file ? " to " + *a.out_file : "");
  return runtime::kExitOk;
}

int cmd_ledger_backfill(const Args& a, std::ostream& out) {
  if (!a.out_file) throw std::invalid_argument("ledger backfill needs --out DIR");
  auto k = Kernel::boot(recovery_options(a));
  need_database(*k, "nothing to back up");
  auto report = ledger::backfill(k->ledger(), *a.out_file, a.tenant_filter, a.stream, a.force);
  if (a.json) {
    json::array arr;
    for (const auto& p : report.partitions)
      arr.push_back(json::object{{"tenant", p.tenant},
                                 {"stream", p.stream},
                                 {"count", p.count},
                                 {"action", p.action},
                                 {"reason", p.reason},
                                 {"file", p.file.string()}});
    out << pretty(json::object{
        {"exported", report.exported()}, {"up_to_date", report.skipped()}, {"partitions", arr}});
    return runtime::kExitOk;
  }
  for (const auto& p : report.partitions)
    out << p.tenant << "/" << p.stream << ": " << p.action << " (" << p.count << " events"
        << (p.reason.empty() ? "" : ", " + p.reason) << ") " << p.file.string() << "\n";
  out << "backfill: " << report.exported() << " exported, " << report.skipped() << " up to date\n";
  return runtime::kExitOk;
}

// Internal: started by the kernel for runtime.isolated_plugins, never by hand.
int cmd_node_host(const Args& a) {
  if (!a.fd || !a.plugin)
    throw std::invalid_argument("node-host is started by kiln itself (runtime.isolated_plugins)");
  std::string level = "warn";
  for (const auto& s : a.sets)
    if (s.rfind("log.level=", 0) == 0) level = s.substr(10);
  common::setup_logging(level, "text");
  signal(SIGPIPE, SIG_IGN);
  return runtime::run_node_host(std::stoi(*a.fd), *a.plugin);
}

using Handler = std::function<int(const Args&, std::ostream&, std::ostream&)>;

}  // namespace

int run(const std::vector<std::string>& argv, std::ostream& out, std::ostream& err) {
  Args a;
  try {
    a = parse(argv);
  } catch (const std::invalid_argument& e) {
    err << "kiln: " << e.what() << " (see kiln --help)\n";
    return runtime::kExitUsage;
  }
  // `kiln help [COMMAND ...]` is `kiln [COMMAND ...] --help`.
  if (!a.positional.empty() && a.positional[0] == "help") {
    a.positional.erase(a.positional.begin());
    a.help = true;
  }
  const std::vector<std::pair<std::string, Handler>> commands = {
      {"serve", [](auto& a, auto& o, auto&) { return cmd_serve(a, o); }},
      {"plugins list", [](auto& a, auto& o, auto&) { return cmd_plugins_list(a, o); }},
      {"nodes", [](auto& a, auto& o, auto&) { return cmd_nodes(a, o); }},
      {"gate run", [](auto& a, auto& o, auto&) { return cmd_gate_run(a, o); }},
      {"gate status", [](auto& a, auto& o, auto&) { return cmd_gate_status(a, o); }},
      {"config check", [](auto& a, auto& o, auto&) { return cmd_config_check(a, o); }},
      {"config explain", [](auto& a, auto& o, auto&) { return cmd_config_explain(a, o); }},
      {"tool list", [](auto& a, auto& o, auto&) { return cmd_tool_list(a, o); }},
      {"tool invoke", [](auto& a, auto& o, auto& e) { return cmd_tool_invoke(a, o, e); }},
      {"say", [](auto& a, auto& o, auto& e) { return cmd_say(a, o, e); }},
      {"analyze", [](auto& a, auto& o, auto& e) { return cmd_analyze(a, o, e); }},
      {"version", [](auto& a, auto& o, auto&) { return cmd_version(a, o); }},
      {"db status", [](auto& a, auto& o, auto&) { return cmd_db_status(a, o); }},
      {"db backup", [](auto& a, auto& o, auto&) { return cmd_db_backup(a, o); }},
      {"db restore", [](auto& a, auto& o, auto&) { return cmd_db_restore(a, o); }},
      {"node-host", [](auto& a, auto&, auto&) { return cmd_node_host(a); }},
      {"ledger backfill", [](auto& a, auto& o, auto&) { return cmd_ledger_backfill(a, o); }},
      {"ledger verify", [](auto& a, auto& o, auto&) { return cmd_ledger_verify(a, o); }},
      {"ledger export", [](auto& a, auto& o, auto&) { return cmd_ledger_export(a, o); }},
      {"ledger replay", [](auto& a, auto& o, auto&) { return cmd_ledger_replay(a, o); }},
      {"mission templates", [](auto& a, auto& o, auto&) { return cmd_mission_templates(a, o); }},
      {"mission start", [](auto& a, auto& o, auto&) { return cmd_mission_start(a, o); }},
      {"mission list", [](auto& a, auto& o, auto&) { return cmd_mission_list(a, o); }},
      {"mission show", [](auto& a, auto& o, auto&) { return cmd_mission_show(a, o); }},
      {"mission artifact", [](auto& a, auto& o, auto&) { return cmd_mission_artifact(a, o); }},
      {"mission approve", [](auto& a, auto& o, auto&) { return cmd_mission_approve(a, o); }},
      {"mission cancel", [](auto& a, auto& o, auto&) { return cmd_mission_cancel(a, o); }},
      {"mission retry", [](auto& a, auto& o, auto&) { return cmd_mission_retry(a, o); }},
      {"mission prune", [](auto& a, auto& o, auto&) { return cmd_mission_prune(a, o); }},
      {"mission work", [](auto& a, auto& o, auto&) { return cmd_mission_work(a, o); }},
      {"policy validate", [](auto& a, auto& o, auto&) { return cmd_policy_validate(a, o); }},
      {"keys create", [](auto& a, auto& o, auto&) { return cmd_keys_create(a, o); }},
      {"server health", [](auto&, auto&, auto&) { return 0; }},
      {"server ready", [](auto&, auto&, auto&) { return 0; }},
      {"server metrics", [](auto&, auto&, auto&) { return 0; }},
      {"server openapi", [](auto&, auto&, auto&) { return 0; }},
      {"keys list", [](auto& a, auto& o, auto&) { return cmd_keys_list(a, o); }},
      {"record", [](auto& a, auto& o, auto& e) { return cmd_record(a, o, e); }},
      {"devices add", [](auto& a, auto& o, auto&) { return cmd_devices_add(a, o); }},
      {"devices rotate", [](auto& a, auto& o, auto&) { return cmd_devices_rotate(a, o); }},
      {"devices revoke", [](auto& a, auto& o, auto&) { return cmd_devices_revoke(a, o); }},
      {"devices list", [](auto& a, auto& o, auto&) { return cmd_devices_list(a, o); }},
      {"sessions list", [](auto& a, auto& o, auto&) { return cmd_sessions_list(a, o); }},
      {"sessions show", [](auto& a, auto& o, auto&) { return cmd_sessions_show(a, o); }},
      {"sessions export", [](auto& a, auto& o, auto& e) { return cmd_sessions_export(a, o, e); }},
      {"sessions mark", [](auto& a, auto& o, auto&) { return cmd_sessions_mark(a, o); }},
      {"sessions weigh", [](auto& a, auto& o, auto&) { return cmd_sessions_mark(a, o); }},
      {"report", [](auto& a, auto& o, auto& e) { return cmd_report(a, o, e); }},
      {"predict", [](auto& a, auto& o, auto& e) { return cmd_predict(a, o, e); }},
      {"profiles list", [](auto& a, auto& o, auto& e) { return cmd_profiles(a, o, e); }},
      {"profiles show", [](auto& a, auto& o, auto& e) { return cmd_profiles(a, o, e); }},
      {"profiles versions", [](auto& a, auto& o, auto& e) { return cmd_profiles(a, o, e); }},
      {"profiles import", [](auto& a, auto& o, auto& e) { return cmd_profiles(a, o, e); }},
      {"profiles export", [](auto& a, auto& o, auto& e) { return cmd_profiles(a, o, e); }},
      {"profiles archive", [](auto& a, auto& o, auto& e) { return cmd_profiles(a, o, e); }},
      {"profiles restore", [](auto& a, auto& o, auto& e) { return cmd_profiles(a, o, e); }},
      {"devices profile", [](auto& a, auto& o, auto& e) { return cmd_profiles(a, o, e); }},
      {"keys revoke", [](auto& a, auto& o, auto&) { return cmd_keys_revoke(a, o); }},
  };
  if (a.positional.empty()) {
    (a.help ? out : err) << kMainHelp;
    return a.help ? runtime::kExitOk : runtime::kExitUsage;
  }
  const Handler* handler = nullptr;
  std::string name;
  for (const auto& [cmd, h] : commands) {
    std::istringstream words(cmd);
    std::string w;
    std::size_t i = 0;
    bool match = true;
    while (words >> w) match = match && i < a.positional.size() && a.positional[i++] == w;
    if (match) {
      handler = &h;
      name = cmd;
      break;
    }
  }
  auto help_of = [](const std::string& cmd) -> std::optional<std::string> {
    if (auto it = kHelp.find(cmd); it != kHelp.end()) return it->second;
    if (auto it = mission_help().find(cmd); it != mission_help().end()) return it->second;
    if (auto it = telemetry_help().find(cmd); it != telemetry_help().end()) return it->second;
    if (auto it = profile_help().find(cmd); it != profile_help().end()) return it->second;
    return std::nullopt;
  };
  // A group's name alone (`kiln devices`, `kiln ledger --help`): its commands, one usage line
  // each.
  if (!handler && a.positional.size() == 1) {
    std::vector<std::string> usages;
    for (const auto& [cmd, _] : commands) {
      if (cmd.rfind(a.positional[0] + " ", 0) != 0) continue;
      std::string line = help_of(cmd).value_or("Usage: kiln " + cmd);
      line = line.substr(0, line.find('\n'));
      if (line.rfind("Usage: ", 0) == 0) line.erase(0, 7);
      usages.push_back(line);
    }
    if (!usages.empty()) {
      auto& to = a.help ? out : err;
      to << "Usage: kiln " << a.positional[0] << " COMMAND ...\n\n";
      for (const auto& u : usages) to << "  " << u << "\n";
      to << "\n`kiln " << a.positional[0] << " COMMAND --help` describes one.\n";
      return a.help ? runtime::kExitOk : runtime::kExitUsage;
    }
  }
  if (!handler) {
    std::vector<std::string> names;
    for (const auto& [cmd, _] : commands) names.push_back(cmd);
    std::string given = a.positional[0] + (a.positional.size() > 1 ? " " + a.positional[1] : "");
    std::string hint = common::did_you_mean(given, names);
    if (hint.empty()) hint = common::did_you_mean(a.positional[0], names);
    err << "kiln: unknown command '" << given << "'" << hint << " (see kiln --help)\n";
    return runtime::kExitUsage;
  }
  if (a.help) {
    out << help_of(name).value_or(std::string(kMainHelp));
    return runtime::kExitOk;
  }
  // Options a command does not take are refused, not ignored: `mission cancel ID --dry-run` would
  // cancel for real, `sessions list --out F` print to the terminal. A command takes the options
  // of its usage lines (its help up to the first blank line) and those every command takes.
  const auto options_of = [&](const std::string& cmd) {
    std::set<std::string> taken = {"--config", "--set", "--log-level", "--log-format", "--json",
                                   "--help",   "-h",    "--server",    "--api-key"};
    const std::string help = help_of(cmd).value_or("");
    const std::string usage = help.substr(0, help.find("\n\n"));
    static const std::regex kOption("(?:^|[\\s\\[|])(-o\\b|--[a-z][a-z-]*)");
    for (std::sregex_iterator it(usage.begin(), usage.end(), kOption), end; it != end; ++it)
      taken.insert((*it)[1]);
    if (taken.count("-o") || taken.count("--out")) taken.insert({"-o", "--out"});
    return taken;
  };
  if (name != "node-host") {  // started by kiln itself, with its own two options
    const auto taken = options_of(name);
    for (const auto& option : a.options) {
      if (taken.count(option)) continue;
      std::vector<std::string> takers;
      for (const auto& [cmd, _] : commands)
        if (cmd != "node-host" && options_of(cmd).count(option)) takers.push_back("kiln " + cmd);
      std::string where;
      if (!takers.empty() && takers.size() <= 3) {
        where = "; " + takers[0];
        for (std::size_t i = 1; i < takers.size(); ++i)
          where += (i + 1 == takers.size() ? " and " : ", ") + takers[i];
        where += takers.size() == 1 ? " takes it" : " take it";
      }
      err << "kiln " << name << ": " << option << " is not an option of kiln " << name << where
          << " (see kiln " << name << " --help)\n";
      return runtime::kExitUsage;
    }
  }
  // With a server the API key says who acts, and for which tenant: a local actor or tenant would
  // be ignored there.
  if (!server_target(a).url.empty() && client_mode(name))
    for (const char* local : {"--tenant", "--as", "--role"})
      if (std::find(a.options.begin(), a.options.end(), local) != a.options.end()) {
        err << "kiln " << name << ": " << local
            << " is not taken with --server (or KILN_SERVER_URL): the API key says who acts and "
               "for which tenant; use that tenant's or that person's key, or drop "
            << local << "\n";
        return runtime::kExitUsage;
      }
  // Words past what the command takes are refused, not ignored: `prune dry-run` (dashes
  // forgotten) once pruned for real.
  static const std::map<std::string, std::size_t> kOperands = {
      {"gate run", 1},         {"config explain", 1},
      {"tool invoke", 1},      {"say", 1},
      {"analyze", 1},          {"db backup", 1},
      {"db restore", 1},       {"mission start", 1},
      {"mission show", 1},     {"mission artifact", 3},
      {"mission approve", 1},  {"mission cancel", 1},
      {"mission retry", 1},    {"keys revoke", 1},
      {"devices add", 1},      {"devices rotate", 1},
      {"devices revoke", 1},   {"devices profile", 2},
      {"sessions show", 1},    {"sessions export", 1},
      {"sessions mark", 2},    {"sessions weigh", 1},
      {"report", 1},           {"predict", 1},
      {"profiles show", 1},    {"profiles versions", 1},
      {"profiles import", 1},  {"profiles export", 1},
      {"profiles archive", 1}, {"profiles restore", 1}};
  const std::size_t words = static_cast<std::size_t>(std::count(name.begin(), name.end(), ' ')) + 1;
  const auto takes = kOperands.count(name) ? kOperands.at(name) : 0;
  if (a.positional.size() > words + takes) {
    const std::string extra = a.positional[words + takes];
    std::string hint;
    if (extra.rfind('-', 0) != 0) {
      // An option without its dashes?
      const auto parsed_as = [&](const std::string& flag) {
        try {
          parse({flag});
          return true;
        } catch (const std::invalid_argument& e) {
          return std::string(e.what()).find("unknown option") == std::string::npos;
        }
      };
      if (parsed_as("--" + extra.substr(0, extra.find('='))))
        hint = " (did you mean --" + extra + "?)";
      else if (takes > 0)  // `kiln say Drop at nine` for `kiln say "Drop at nine"`
        hint = " (it takes " + std::to_string(takes) + " argument" + (takes > 1 ? "s" : "") +
               ": quote one that has spaces)";
    }
    err << "kiln " << name << ": unexpected argument '" << extra << "'" << hint << " (see kiln "
        << name << " --help)\n";
    return runtime::kExitUsage;
  }
  try {
    if (auto remote = run_remote(name, a, out, err)) return *remote;
    if (name.rfind("server ", 0) == 0)
      throw std::invalid_argument(name + " asks a running server: pass --server URL");
    return (*handler)(a, out, err);
  } catch (const std::invalid_argument& e) {
    err << "kiln " << name << ": " << e.what() << " (see kiln " << name << " --help)\n";
    return runtime::kExitUsage;
  } catch (const BootError& e) {
    err << "kiln " << name << ": " << e.what() << "\n";
    return e.exit_code();
  } catch (const missions::MissionError& e) {
    err << "kiln " << name << ": " << e.code_name() << ": " << e.what() << "\n";
    return e.code() == missions::MissionError::Code::kInvalidInput ? runtime::kExitUsage
                                                                   : runtime::kExitFailed;
  } catch (const std::exception& e) {
    err << "kiln " << name << ": " << e.what() << "\n";
    return runtime::kExitFailed;
  }
}

}  // namespace kiln::cli
