// Command-line arguments shared by every kiln command.
#pragma once

#include <cmath>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

#include "runtime/kernel.hpp"

namespace kiln::cli {

struct Args {
  std::vector<std::string> positional;
  std::vector<std::string> options;  // every option given, as named ("--out", "-o"), in order
  std::vector<std::string> config_files;
  std::vector<std::string> sets;
  std::map<std::string, std::string> set_origins;  // a set -> the flag that made it
  std::optional<std::string> input;
  std::string tenant = "default";
  std::optional<std::string> tenant_filter;
  std::optional<std::string> stream;
  std::optional<std::string> since;
  std::optional<std::string> starting_after;  // a list's page after this item (mission, session)
  std::optional<std::string> out_file;
  bool json = false;
  bool help = false;
  bool force = false;
  std::optional<std::string> fd;
  std::optional<std::string> plugin;
  // Missions and policy.
  std::vector<std::string> params;  // --param KEY=VALUE
  std::optional<std::string> idempotency_key;
  std::optional<std::string> actor;  // --as NAME
  std::optional<std::string> role;
  std::optional<std::string> reason;
  std::optional<std::string> state;
  std::optional<std::string> template_name;
  std::optional<std::string> limit;
  std::optional<std::string> timeout;
  std::optional<std::string> workers;
  std::optional<std::string> file;
  std::optional<std::string> scratch;
  std::optional<std::string> name;
  std::optional<std::string> server;   // --server URL: client mode
  std::optional<std::string> api_key;  // --api-key KEY
  // kiln say
  std::optional<std::string> voice;
  std::optional<std::string> speed;
  std::optional<std::string> format;
  bool detect = false;  // kiln analyze --detect
  // kiln record, devices, sessions, report
  std::optional<std::string> driver;
  std::optional<std::string> key_file;    // --key FILE (record), --key-out FILE (devices)
  std::optional<std::string> public_key;  // --public-key HEX
  std::optional<std::string> grace;       // --grace SECONDS
  std::optional<std::string> batch;       // --batch N
  std::optional<std::string> duration;    // --duration SECONDS (device time)
  std::optional<std::string> roasts;      // --roasts N
  std::optional<std::string> spool;       // --spool DIR
  bool flush = false;                     // --flush (record: send the spool, read nothing)
  std::optional<std::string> device;      // --device D
  bool follow = false;                    // --follow (predict: ask again until the roast ends)
  std::optional<std::string> every;       // --every SECONDS (predict --follow)
  std::optional<std::string> older_than;  // --older-than AGE (mission prune)
  bool dry_run = false;                   // --dry-run
  bool wait = false;
  bool until_idle = false;
  bool all = false;                    // --all (profiles list: archived too)
  bool clear = false;                  // --clear (devices profile, sessions mark)
  std::optional<std::string> at;       // --at M:SS (sessions mark)
  bool no_report = false;              // --no-report (sessions mark|weigh)
  std::optional<std::string> green;    // --green GRAMS (sessions weigh)
  std::optional<std::string> roasted;  // --roasted GRAMS (sessions weigh)
  std::optional<std::string> title;    // --title T
  std::optional<std::string> phases;   // --phases A,B,C,D (profiles import)
};

// Throws std::invalid_argument with a usage message.
Args parse(const std::vector<std::string>& argv);
// `kinds`: the node kinds the command uses (BootOptions::node_kinds); empty: every kind.
runtime::BootOptions boot_options(const Args& a, bool resolve, std::set<std::string> kinds = {});
// The kernel for a command that only reads the database: one that is not there is an error
// naming where storage.path came from (a config other than the deployment's, most likely), not
// a new empty database at that path.
std::unique_ptr<runtime::Kernel> boot_reading(const Args& a);

// An option's number: `fallback` when it is not given; the whole text a finite number from `lo` to
// `hi` (`whole`: with no fraction), or std::invalid_argument naming the option and the range
// ("10m" is not 10, "nan" is not a number).
inline double number_arg(const std::optional<std::string>& v, const char* name, double fallback,
                         double lo, double hi, bool whole = false) {
  if (!v) return fallback;
  try {
    std::size_t used = 0;
    const double x = std::stod(*v, &used);
    if (used == v->size() && std::isfinite(x) && x >= lo && x <= hi &&
        (!whole || x == std::floor(x)))
      return x;
  } catch (const std::exception&) {
  }
  std::ostringstream msg;
  msg.precision(15);  // 2592000, not 2.592e+06
  msg << name << " takes a " << (whole ? "whole number" : "number") << " from " << lo << " to "
      << hi << ", not '" << *v << "'";
  throw std::invalid_argument(msg.str());
}

}  // namespace kiln::cli
