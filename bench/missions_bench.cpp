// Missions per second with no-op steps, against the durable-commit ceiling of the same disk.
//
// 1. Create M `noop3` missions (three kiln.noop steps) through the governor, one durable commit
//    each.
// 2. Run them with W workers (WorkerPool, as `kiln serve` does) until every one is DONE.
// 3. Baseline, in the same run on the same disk: W threads append single events to a ledger
//    as fast as they can (one durable group commit each, grouped as load allows). A mission needs
//    C = 5 commits (claim; each step's start, committed with the previous step's completion;
//    the last completion with the mission's), so commits/s ÷ C is the ceiling missions/s that
//    durability alone allows.
// Writes bench/results/<date>_missions.json (or --out FILE).
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include <unistd.h>

#include <boost/json.hpp>

#include "bench_util.hpp"
#include "missions/worker.hpp"
#include "runtime/kernel.hpp"

namespace fs = std::filesystem;
namespace json = boost::json;
using namespace kiln;
using bench::Clock;
using bench::seconds_since;

namespace {

std::unique_ptr<runtime::Kernel> boot(const fs::path& dir, bool audit) {
  std::ofstream(dir / "policy.yaml") << "version: 1\ntenants:\n  \"*\": {missions: [\"*\"]}\n";
  runtime::BootOptions o;
  o.environment = {};
  o.setup_logging = false;
  o.sets = {"plugins.search_paths=[]", "log.level=warn",
            "storage.path=" + (dir / "kiln.db").string(),
            "policy.file=" + (dir / "policy.yaml").string(),
            std::string("runtime.audit_tool_calls=") + (audit ? "true" : "false")};
  return runtime::Kernel::boot(o);
}

}  // namespace

int main(int argc, char** argv) {
  int missions_n = 300, workers = 4;
  std::string out = "bench/results/" + bench::today() + "_missions.json";
  fs::path dir = fs::temp_directory_path() / ("kiln-missions-bench-" + std::to_string(::getpid()));
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    auto next = [&] { return i + 1 < argc ? std::string(argv[++i]) : std::string(); };
    if (a == "--missions")
      missions_n = std::stoi(next());
    else if (a == "--workers")
      workers = std::stoi(next());
    else if (a == "--out")
      out = next();
    else {
      std::fprintf(stderr, "usage: kiln_bench_missions [--missions M] [--workers W] [--out F]\n");
      return 2;
    }
  }
  fs::remove_all(dir);
  fs::create_directories(dir / "run");
  fs::create_directories(dir / "baseline");

  auto k = boot(dir / "run", true);
  auto& svc = k->missions();
  missions::CreateRequest req;
  req.template_name = "noop3";
  req.actor = missions::Actor{"bench", missions::Role::kOperator};
  auto start = Clock::now();
  for (int i = 0; i < missions_n; ++i) svc.create(req);
  const double create_s = seconds_since(start);

  const std::int64_t events_before = k->ledger().count();
  auto [groups_before, written_before] = k->sqlite_ledger().commit_stats();
  start = Clock::now();
  std::int64_t done = 0;
  {
    missions::WorkerPool pool(svc, k->executor(), workers, std::chrono::milliseconds(1));
    for (;;) {
      missions::ListFilter f;
      f.state = "DONE";
      f.limit = missions_n + 1;
      done = static_cast<std::int64_t>(svc.list(f).size());
      if (done >= missions_n) break;
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
  }
  const double run_s = seconds_since(start);
  k->ledger().flush();
  auto [groups_after, written_after] = k->sqlite_ledger().commit_stats();
  const std::int64_t mission_events = k->ledger().count() - events_before;
  const double missions_per_s = static_cast<double>(missions_n) / run_s;
  const bool verified = k->ledger().verify().ok;
  k.reset();

  // Baseline: durable single-event appends from W threads.
  // claim, started 1, completed 1 + started 2, completed 2 + started 3, completed 3 + DONE
  constexpr int kCommitsPerMission = 5;
  const std::int64_t baseline_appends = static_cast<std::int64_t>(missions_n) * kCommitsPerMission;
  double baseline_s = 0;
  {
    ledger::SqliteLedger l(dir / "baseline" / "kiln.db");
    auto t0 = Clock::now();
    std::vector<std::thread> ts;
    for (int w = 0; w < workers; ++w)
      ts.emplace_back([&, w] {
        for (std::int64_t i = w; i < baseline_appends; i += workers)
          l.append(ledger::NewEvent{"default", "mission/x", "step.completed",
                                    json::object{{"id", "m-0"}, {"step", "one"}, {"i", i}}});
      });
    for (auto& t : ts) t.join();
    baseline_s = seconds_since(t0);
  }
  const double commits_per_s = static_cast<double>(baseline_appends) / baseline_s;
  const double ceiling = commits_per_s / kCommitsPerMission;
  json::object result{
      {"benchmark", "missions"},
      {"date", bench::today()},
      {"template", "noop3"},
      {"missions", missions_n},
      {"workers", workers},
      {"create_per_s", missions_n / create_s},
      {"missions_per_s", missions_per_s},
      {"run_seconds", run_s},
      {"ledger_events_per_mission",
       static_cast<double>(mission_events) / static_cast<double>(missions_n)},
      {"group_commits_per_mission",
       static_cast<double>(groups_after - groups_before) / static_cast<double>(missions_n)},
      {"events_written", written_after - written_before},
      {"baseline_durable_appends_per_s", commits_per_s},
      {"commit_ceiling_missions_per_s", ceiling},
      {"ratio_to_ceiling", missions_per_s / ceiling},
      {"ledger_verified", verified}};
  fs::remove_all(dir);
  fs::create_directories(fs::path(out).parent_path());
  std::ofstream(out) << json::serialize(result) << "\n";
  std::printf(
      "created %d missions at %.0f/s; ran them with %d workers at %.1f missions/s "
      "(%.1f ledger events each)\nbaseline: %.0f durable appends/s -> ceiling %.1f missions/s; "
      "ratio %.2f\nwrote %s\n",
      missions_n, missions_n / create_s, workers, missions_per_s,
      static_cast<double>(mission_events) / missions_n, commits_per_s, ceiling,
      missions_per_s / ceiling, out.c_str());
  return verified && done >= missions_n ? 0 : 1;
}
