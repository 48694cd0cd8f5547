// Ledger throughput against raw SQLite, measured in the same run on the same disk.
//
// 1. Durable appends: T threads append E events each through SqliteLedger (group commit, one
//    fsync per group, hash chain).
// 2. Baseline, right after each ledger run: the same number of rows written by raw SQLite inserts,
// batched exactly as the
//    ledger's groups were (same number of transactions of the same average size, WAL,
//    synchronous=FULL), without hashing.
// 3. `verify` over a ledger of V events (default 1,000,000).
// Writes bench/results/<date>_ledger.json (or --out FILE). Goal: appends >= 0.8x the baseline.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include <boost/json.hpp>

#include "bench_util.hpp"
#include "ledger/ledger.hpp"
#include "storage/schema.hpp"
#include "storage/sqlite.hpp"

namespace fs = std::filesystem;
namespace json = boost::json;
using namespace kiln;
using bench::Clock;
using bench::seconds_since;

namespace {

using bench::today;

json::object payload(int t, int i) {
  return {
      {"mission", "m-" + std::to_string(t)}, {"step", i}, {"tool", "kiln.noop"}, {"outcome", "ok"}};
}

}  // namespace

int main(int argc, char** argv) {
  int threads = 8, per_thread = 500, verify_events = 1000000, rounds = 9;
  std::string out = "bench/results/" + today() + "_ledger.json";
  fs::path dir = fs::temp_directory_path() / ("kiln-ledger-bench-" + std::to_string(::getpid()));
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    auto next = [&] { return i + 1 < argc ? std::string(argv[++i]) : std::string(); };
    if (a == "--threads")
      threads = std::stoi(next());
    else if (a == "--events")
      per_thread = std::stoi(next());
    else if (a == "--rounds")
      rounds = std::max(1, std::stoi(next()));
    else if (a == "--verify-events")
      verify_events = std::stoi(next());
    else if (a == "--out")
      out = next();
    else if (a == "--dir")
      dir = next();
    else {
      std::fprintf(stderr,
                   "usage: kiln_bench_ledger [--threads T] [--events E per thread] "
                   "[--rounds R] [--verify-events V] [--dir TMPDIR] [--out FILE]\n");
      return 2;
    }
  }
  fs::remove_all(dir);
  fs::create_directories(dir);
  const std::int64_t total = static_cast<std::int64_t>(threads) * per_thread;

  // 1 + 2, alternated over several rounds on fresh files: fsync latency drifts, so each
  // ledger run is compared with a raw run made right after it, and medians are reported.
  auto run_ledger = [&](const fs::path& file, std::int64_t* groups) {
    ledger::SqliteLedger l(file);
    auto start = Clock::now();
    std::vector<std::thread> ts;
    for (int t = 0; t < threads; ++t)
      ts.emplace_back([&, t] {
        for (int i = 0; i < per_thread; ++i)
          l.append(ledger::NewEvent{"acme", "missions", "tool.completed", payload(t, i)});
      });
    for (auto& th : ts) th.join();
    double s = seconds_since(start);
    *groups = l.commit_stats().first;
    return s;
  };
  auto run_raw = [&](const fs::path& file, std::int64_t groups) {
    storage::Connection c(file, storage::Connection::Mode::kReadWrite);
    storage::migrate(c, storage::kernel_migrations());
    auto insert = c.prepare(
        "INSERT INTO ledger (seq, time, tenant, stream, kind, payload, prev_hash, hash) VALUES "
        "(?, ?, ?, ?, ?, ?, ?, ?)");
    const std::string hash(64, 'a');
    std::int64_t seq = 0;
    auto start = Clock::now();
    for (std::int64_t g = 0; g < groups; ++g) {
      std::int64_t in_group = total / groups + (g < total % groups ? 1 : 0);
      storage::Transaction tx(c);
      for (std::int64_t i = 0; i < in_group; ++i) {
        ++seq;
        insert.reset();
        insert.bind(1, seq).bind(2, ledger::utc_now_millis()).bind(3, "acme").bind(4, "missions");
        insert.bind(5, "tool.completed")
            .bind(6, json::serialize(payload(static_cast<int>(seq % threads), static_cast<int>(i))))
            .bind(7, hash)
            .bind(8, hash);
        insert.step();
      }
      insert.reset();
      tx.commit();
    }
    return seconds_since(start);
  };
  std::vector<double> ledger_rates, raw_rates, ratios;
  json::array round_results;
  std::int64_t groups = 0;
  // A warm-up pair first, not counted: the first round ran 10-30 % slower on both sides.
  {
    std::int64_t g = 0;
    run_ledger(dir / "warmup-ledger.db", &g);
    run_raw(dir / "warmup-raw.db", g);
  }
  for (int r = 0; r < rounds; ++r) {
    std::int64_t g = 0;
    double ls = run_ledger(dir / ("ledger" + std::to_string(r) + ".db"), &g);
    double rs = run_raw(dir / ("raw" + std::to_string(r) + ".db"), g);
    groups += g;
    double lr = static_cast<double>(total) / ls, rr = static_cast<double>(total) / rs;
    ledger_rates.push_back(lr);
    raw_rates.push_back(rr);
    ratios.push_back(lr / rr);
    round_results.push_back(json::object{{"group_commits", g},
                                         {"ledger_appends_per_s", lr},
                                         {"raw_sqlite_inserts_per_s", rr},
                                         {"ratio", lr / rr}});
    std::printf("round %d: ledger %.0f/s, raw %.0f/s (%lld groups), ratio %.2f\n", r + 1, lr, rr,
                static_cast<long long>(g), lr / rr);
  }
  auto median = [](std::vector<double> v) {
    std::sort(v.begin(), v.end());
    return v[v.size() / 2];
  };

  // 3. Verify over a large ledger (filled in big groups: the chain is what is measured).
  double fill_s = 0, verify_s = 0;
  ledger::VerifyResult vr;
  {
    auto start = Clock::now();
    ledger::SqliteLedger l(dir / "big.db");
    const int batch = 5000;
    for (int done = 0; done < verify_events; done += batch) {
      std::vector<ledger::NewEvent> events;
      for (int i = 0; i < batch && done + i < verify_events; ++i)
        events.push_back({"acme", "missions", "tool.completed", payload(i % 8, done + i)});
      l.append(std::move(events));
    }
    fill_s = seconds_since(start);
    start = Clock::now();
    vr = l.verify();
    verify_s = seconds_since(start);
  }
  std::printf("verify: %lld events in %.3f s (%s)\n", static_cast<long long>(vr.checked), verify_s,
              vr.ok ? "intact" : "BROKEN");

  const double ledger_rate = median(ledger_rates);
  const double raw_rate = median(raw_rates);
  const double ratio = median(ratios);
  json::object result{
      {"benchmark", "ledger"},
      {"date", today()},
      {"threads", threads},
      {"events_per_round", total},
      {"rounds", rounds},
      {"mean_group_size", static_cast<double>(total) * rounds / static_cast<double>(groups)},
      {"ledger_appends_per_s", ledger_rate},
      {"raw_sqlite_inserts_per_s", raw_rate},
      {"ratio", ratio},
      {"goal_ratio", 0.8},
      {"meets_goal", ratio >= 0.8},
      {"round_results", round_results},
      {"verify_events", vr.checked},
      {"verify_seconds", verify_s},
      {"verify_events_per_s", static_cast<double>(vr.checked) / verify_s},
      {"verify_ok", vr.ok},
      {"fill_seconds", fill_s}};
  fs::remove_all(dir);
  fs::create_directories(fs::path(out).parent_path());
  std::ofstream(out) << json::serialize(result) << "\n";
  std::printf(
      "median of %d rounds: appends %.0f/s, raw %.0f/s, per-round ratio %.2f (goal >= 0.8: %s)\n"
      "wrote %s\n",
      rounds, ledger_rate, raw_rate, ratio, ratio >= 0.8 ? "met" : "NOT met", out.c_str());
  return vr.ok ? 0 : 1;
}
