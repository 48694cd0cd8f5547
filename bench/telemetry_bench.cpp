// Telemetry ingestion: signed envelopes of 10 samples (simulated roasts) through the Ingestor —
// key lookup, Ed25519 verify, CBOR decode, checks, the batch stored once with its ledger event
// (group commit, fsync), the sessionizer fed — against libsodium's bare Ed25519 verify of the
// same envelopes, measured in the same run with the same number of threads. Goal: ≥ 0.8×.
// Writes bench/results/<date>_telemetry.json (or --out FILE).
#include <pthread.h>
#include <sodium.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstdio>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <map>
#include <mutex>
#include <thread>
#include <vector>

#include <spdlog/spdlog.h>
#include <boost/json.hpp>

#include "artisan_detector.hpp"
#include "bench_util.hpp"
#include "model.hpp"
#include "telemetry/envelope.hpp"
#include "telemetry/service.hpp"

namespace json = boost::json;
namespace fs = std::filesystem;
using namespace kiln;
using bench::Clock;

namespace {

double now_s() {
  return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
}

// Runs fn(i) for i in [0, n) on `threads` threads; returns items per second.
template <class F>
double rate(std::size_t n, int threads, F&& fn) {
  std::atomic<std::size_t> next{0};
  const auto t0 = Clock::now();
  std::vector<std::thread> pool;
  for (int t = 0; t < threads; ++t)
    pool.emplace_back([&] {
      for (std::size_t i; (i = next.fetch_add(1)) < n;) fn(i);
    });
  for (auto& th : pool) th.join();
  return static_cast<double>(n) / bench::seconds_since(t0);
}

// CPU time (ns) of each of this process's threads so far, with its role: the names the kernel
// gives its threads (kiln-ledger, kiln-ledger-fl, kiln-ledger-ck, kiln-sessions); the rest is
// "other". Read from
// /proc/self/task/*/schedstat. The request threads have ended when it is read after the
// ingestion: they count their own time (RequestCpu).
struct ThreadCpu {
  std::string role;
  double ns = 0;
};
std::map<std::string, ThreadCpu> thread_cpu() {
  std::map<std::string, ThreadCpu> out;
  for (const auto& t : fs::directory_iterator("/proc/self/task")) {
    std::ifstream comm(t.path() / "comm"), stat(t.path() / "schedstat");
    std::string name;
    double ns = 0;
    if (!std::getline(comm, name) || !(stat >> ns)) continue;  // the thread has just ended
    const std::string role = name == "kiln-ledger"      ? "ledger_writer"
                             : name == "kiln-ledger-fl" ? "ledger_flusher"
                             : name == "kiln-ledger-ck" ? "ledger_checkpointer"
                             : name == "kiln-sessions"  ? "sessionizer"
                                                        : "other";
    out[t.path().filename().string()] = ThreadCpu{role, ns};
  }
  return out;
}

// The machine's CPU time by state (/proc/stat, in clock ticks), to tell the cores that sat idle
// from the time other processes, the kernel's own threads (e.g. block I/O completions) or the
// hypervisor (steal) took.
struct MachineCpu {
  double busy = 0, idle = 0, iowait = 0, steal = 0;
};
MachineCpu machine_cpu() {
  std::ifstream stat("/proc/stat");
  std::string cpu;
  double user = 0, nice = 0, system = 0, idle = 0, iowait = 0, irq = 0, softirq = 0, steal = 0;
  stat >> cpu >> user >> nice >> system >> idle >> iowait >> irq >> softirq >> steal;
  if (cpu != "cpu") return {};
  return MachineCpu{user + nice + system + irq + softirq, idle, iowait, steal};
}

// Adds the CPU time of the thread it lives on to `total` when the thread's work ends.
struct RequestCpu {
  std::atomic<std::int64_t>& total;
  ~RequestCpu() {
    timespec t;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
    total += static_cast<std::int64_t>(t.tv_sec) * 1000000000 + t.tv_nsec;
  }
};

}  // namespace

int main(int argc, char** argv) {
  std::string out = "bench/results/" + bench::today() + "_telemetry.json";
  // Enough envelopes that every round pays for several moves of the inbox into the indexed table
  // (IngestOptions::inbox_batches is 4,096) and for the checkpoints: fewer measure a burst that
  // leaves that work to after the clock stops.
  std::size_t n = 20000;
  int rounds = 5;
  int callers = 64;
  bool blocking = false;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--out" && i + 1 < argc)
      out = argv[++i];
    else if (a == "--envelopes" && i + 1 < argc)
      n = static_cast<std::size_t>(std::stoul(argv[++i]));
    else if (a == "--callers" && i + 1 < argc)
      callers = std::stoi(argv[++i]);
    else if (a == "--rounds" && i + 1 < argc)
      rounds = std::stoi(argv[++i]);
    else if (a == "--blocking")
      blocking = true;
    else {
      std::fprintf(
          stderr,
          "usage: kiln_bench_telemetry [--envelopes N] [--callers C] [--rounds R] [--blocking] "
          "[--out FILE]\n");
      return 2;
    }
  }
  // Hundreds of sessions open and close per round: their log lines would bury the results.
  spdlog::set_level(spdlog::level::warn);
  const int threads = static_cast<int>(std::max(2u, std::thread::hardware_concurrency()));
  json::array round_results;
  std::vector<double> ratios_same_threads, ratios_one_thread;
  for (int round = 0; round < rounds; ++round) {
    const fs::path dir =
        fs::temp_directory_path() /
        ("kiln-bench-telemetry-" + std::to_string(::getpid()) + "-" + std::to_string(round));
    fs::remove_all(dir);
    fs::create_directories(dir);
    double ingest_rate = 0, verify_rate = 0, verify_rate_1 = 0, cpu_per_envelope_us = 0;
    double idle_fraction = 0;
    json::object machine;  // the machine's cores over the round (/proc/stat)
    json::object cpu_by_role_us;
    std::int64_t stored = 0, groups = 0;
    {
      ledger::SqliteLedger ledger(dir / "kiln.db");
      ledger.add_projector(&telemetry::project_devices);
      ledger.add_projector(&telemetry::project_sessions);
      auto detector = std::make_shared<roast::ArtisanDetector>();
      telemetry::TelemetryService svc(
          ledger, telemetry::IngestOptions{}, telemetry::SessionOptions{},
          [detector] { return detector; }, telemetry::Sessionizer::ClosedFn());  // no reports
      // `callers` devices, each sending its own envelopes in order (as devices do), 10
      // readings of simulated roasts each, signed beforehand.
      std::vector<telemetry::DeviceCredentials> creds;
      for (int d = 0; d < callers; ++d)
        creds.push_back(svc.devices().add("bench", "sim-" + std::to_string(d), std::nullopt,
                                          missions::Actor{"bench", missions::Role::kAdmin}));
      std::vector<std::string> envelopes;
      std::vector<telemetry::detail::Parsed> parsed;
      std::vector<std::size_t> owner;  // device of envelope i
      const double start = now_s() - static_cast<double>(n) * 10;
      auto roaster = std::make_unique<sim::Roaster>(sim::Options{});
      double offset = 0;
      for (std::size_t i = 0; i < n; ++i) {
        const std::size_t d = i % static_cast<std::size_t>(callers);
        const std::string device = "sim-" + std::to_string(d);
        telemetry::Batch b;
        b.device = {device, 1};
        b.seq = i / static_cast<std::size_t>(callers) + 1;
        b.sent_at = now_s();
        for (int k = 0; k < 10; ++k) {
          if (roaster->finished()) {
            offset += 800;
            roaster = std::make_unique<sim::Roaster>(sim::Options{});
          }
          auto s = roaster->next();
          s.t += start + offset;
          b.samples.push_back(s);
        }
        envelopes.push_back(telemetry::sign_envelope(b, creds[d].key, "bench", device));
        telemetry::EnvelopeError err;
        parsed.push_back(
            *telemetry::detail::parse_envelope(envelopes.back(), "bench", device, &err));
        owner.push_back(d);
      }
      // Baseline: libsodium's verify of exactly these signatures, same threads.
      std::atomic<int> bad{0};
      auto verify = [&](std::size_t i) {
        const auto& p = parsed[i];
        if (crypto_sign_verify_detached(
                reinterpret_cast<const unsigned char*>(p.signature.data()),
                reinterpret_cast<const unsigned char*>(p.signed_bytes.data()),
                p.signed_bytes.size(), creds[owner[i]].key.pub.data()) != 0)
          ++bad;
      };
      // Measured before and after the ingestion and combined (items over total time): a short
      // baseline taken on one side only swung ±25 % with the machine's speed of the moment.
      const double verify_before = rate(n, threads, verify);
      const double verify_1_before = rate(n, 1, verify);
      std::fprintf(stderr, "round %d: ingesting %zu envelopes from %d devices\n", round + 1, n,
                   callers);
      // Ingestion: what POST /v1/telemetry does per request. `callers` devices, each sending its
      // envelopes in order, the next once the previous is answered; served as the HTTP server
      // serves them (the default): `threads` request threads — its I/O threads — check and
      // verify on the thread the request arrived on and hand the store to the ledger's group
      // commit, the answer coming back when the batch is durable (Ingestor::ingest_async). With
      // --blocking, one thread per device calls the blocking Ingestor::ingest instead.
      std::atomic<int> refused{0};
      const double now = now_s();
      auto check = [&](const telemetry::IngestResult& r, std::exception_ptr error) {
        if (error || !r.accepted || r.duplicate) {
          if (refused++ == 0)
            std::fprintf(stderr, "refused: %s %s\n", r.reason.c_str(),
                         error ? "(store failed)" : r.message.c_str());
        }
      };
      std::atomic<std::int64_t> request_cpu_ns{0};
      const auto roles_before = thread_cpu();
      const auto machine_before = machine_cpu();
      timespec cpu0;
      clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &cpu0);
      const auto t0 = Clock::now();
      const auto before = ledger.commit_stats();
      if (blocking) {
        std::vector<std::thread> pool;
        for (int d = 0; d < callers; ++d)
          pool.emplace_back([&, d] {
            pthread_setname_np(pthread_self(), "bench-request");
            RequestCpu count{request_cpu_ns};
            const std::string device = "sim-" + std::to_string(d);
            for (std::size_t i = static_cast<std::size_t>(d); i < n;
                 i += static_cast<std::size_t>(callers))
              check(svc.ingestor().ingest("bench", device, envelopes[i], now), nullptr);
          });
        for (auto& th : pool) th.join();
      } else {
        // A request thread's devices whose last envelope was answered.
        struct Lane {
          std::mutex mu;
          std::condition_variable cv;
          std::vector<int> ready;
        };
        std::vector<Lane> lanes(static_cast<std::size_t>(threads));
        std::vector<std::size_t> next(static_cast<std::size_t>(callers));
        for (int d = 0; d < callers; ++d) {
          next[static_cast<std::size_t>(d)] = static_cast<std::size_t>(d);
          lanes[static_cast<std::size_t>(d % threads)].ready.push_back(d);
        }
        std::vector<std::thread> pool;
        for (int t = 0; t < threads; ++t)
          pool.emplace_back([&, t] {
            pthread_setname_np(pthread_self(), "bench-request");
            RequestCpu count{request_cpu_ns};
            Lane& lane = lanes[static_cast<std::size_t>(t)];
            int open = 0;  // this lane's devices with envelopes left to send
            for (int d = t; d < callers; d += threads) open += next[d] < n ? 1 : 0;
            std::vector<int> now_ready;
            while (open > 0) {
              {
                std::unique_lock lock(lane.mu);
                lane.cv.wait(lock, [&] { return !lane.ready.empty(); });
                now_ready.swap(lane.ready);
              }
              for (int d : now_ready) {
                const std::size_t i = next[static_cast<std::size_t>(d)];
                if (i >= n) continue;
                next[static_cast<std::size_t>(d)] = i + static_cast<std::size_t>(callers);
                if (i + static_cast<std::size_t>(callers) >= n) --open;
                svc.ingestor().ingest_async(
                    "bench", "sim-" + std::to_string(d), envelopes[i], now,
                    [&, d](telemetry::IngestResult r, std::exception_ptr error) {
                      check(r, error);
                      bool wake = false;
                      {
                        std::lock_guard lock(lane.mu);
                        wake = lane.ready.empty();
                        lane.ready.push_back(d);
                      }
                      if (wake) lane.cv.notify_one();
                    });
              }
              now_ready.clear();
            }
          });
        for (auto& th : pool) th.join();
        ledger.flush();  // the last answers
      }
      const double wall_s = bench::seconds_since(t0);
      ingest_rate = static_cast<double>(n) / wall_s;
      timespec cpu1;
      clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &cpu1);
      const auto roles_after = thread_cpu();
      const auto machine_after = machine_cpu();
      const double cpu_s =
          static_cast<double>(cpu1.tv_sec - cpu0.tv_sec) + (cpu1.tv_nsec - cpu0.tv_nsec) * 1e-9;
      cpu_per_envelope_us = cpu_s / static_cast<double>(n) * 1e6;
      // Where the CPU went, per envelope: the request threads (check, verify, decode), the
      // ledger's writer (the store, its commit) and flusher (fdatasync, answers), the
      // sessionizer; and how much of the machine sat idle.
      auto per_envelope = [&](double ns) { return ns / 1000.0 / static_cast<double>(n); };
      cpu_by_role_us = json::object{
          {"request_threads", per_envelope(static_cast<double>(request_cpu_ns.load()))}};
      // Per thread, for threads alive at the end (one that ended meanwhile took its count along).
      std::map<std::string, double> by_role{{"ledger_writer", 0},
                                            {"ledger_flusher", 0},
                                            {"ledger_checkpointer", 0},
                                            {"sessionizer", 0},
                                            {"other", 0}};
      for (const auto& [tid, t] : roles_after) {
        const auto it = roles_before.find(tid);
        by_role[t.role] += t.ns - (it == roles_before.end() ? 0.0 : it->second.ns);
      }
      for (const auto& [role, ns] : by_role) cpu_by_role_us[role] = per_envelope(ns);
      idle_fraction = std::max(0.0, 1.0 - cpu_s / (wall_s * threads));
      // The same time, machine-wide: what the cores did while this process did not run.
      {
        const double busy = machine_after.busy - machine_before.busy,
                     idle = machine_after.idle - machine_before.idle,
                     iowait = machine_after.iowait - machine_before.iowait,
                     steal = machine_after.steal - machine_before.steal;
        const double total = busy + idle + iowait + steal;
        const double ticks = static_cast<double>(sysconf(_SC_CLK_TCK));
        if (total > 0) {
          machine = json::object{
              {"idle_fraction", (idle + iowait) / total},
              {"steal_fraction", steal / total},
              {"busy_outside_process_fraction",
               std::max(0.0, busy / total - cpu_s * ticks / total)},
          };
        }
      }
      groups = ledger.commit_stats().first - before.first;
      svc.sessions().flush();
      {
        auto combine = [](double a, double b) { return 2.0 / (1.0 / a + 1.0 / b); };
        verify_rate_1 = combine(verify_1_before, rate(n, 1, verify));
        verify_rate = combine(verify_before, rate(n, threads, verify));
      }
      stored = svc.ingestor().accepted_batches();

      if (bad || refused) {
        std::fprintf(stderr, "bench: %d bad signatures, %d refused envelopes\n", bad.load(),
                     refused.load());
        return 1;
      }
      telemetry::Sessionizer::ListFilter all;
      all.tenant = "bench";
      all.limit = 1000;
      const auto sessions = telemetry::Sessionizer::list(dir / "kiln.db", all);
      std::printf(
          "round %d: ingest %.0f/s (%d devices), bare verify %.0f/s (%d threads), %.0f/s (1 "
          "thread); ratio %.2f (same threads) %.2f (vs 1 thread); %lld stored in %lld group "
          "commits, %.0f us CPU an envelope, %zu sessions\n",
          round + 1, ingest_rate, callers, verify_rate, threads, verify_rate_1,
          ingest_rate / verify_rate, ingest_rate / verify_rate_1, static_cast<long long>(stored),
          static_cast<long long>(groups), cpu_per_envelope_us, sessions.size());
      // The goal as a CPU budget: at 0.8x the baseline every envelope may cost 1.25 verifies of
      // CPU, everything included, and only if no core ever sits idle.
      const double verify_us = threads / verify_rate * 1e6;
      const double budget_us = verify_us / 0.8;
      auto share = [&](const char* k) {
        const auto* v = machine.if_contains(k);
        return v ? v->as_double() * 100 : 0.0;
      };
      auto role = [&](const char* r) {
        const auto* v = cpu_by_role_us.if_contains(r);
        return v ? v->as_double() : 0.0;
      };
      std::printf(
          "  CPU an envelope: request threads %.1f us (a bare verify is %.1f), ledger writer %.1f, "
          "flusher %.1f, checkpointer %.1f, sessionizer %.1f, other %.1f; the goal allows %.1f "
          "us an envelope with no idle core\n"
          "  the cores' time: this process %.0f %%; idle %.0f %%, other processes and kernel "
          "threads %.0f %%, stolen by the hypervisor %.0f %%\n",
          role("request_threads"), verify_us, role("ledger_writer"), role("ledger_flusher"),
          role("ledger_checkpointer"), role("sessionizer"), role("other"), budget_us,
          (1 - idle_fraction) * 100, share("idle_fraction"), share("busy_outside_process_fraction"),
          share("steal_fraction"));
      round_results.push_back(json::object{{"ingest_per_s", std::round(ingest_rate)},
                                           {"verify_per_s", std::round(verify_rate)},
                                           {"verify_per_s_one_thread", std::round(verify_rate_1)},
                                           {"ratio", ingest_rate / verify_rate},
                                           {"ratio_vs_one_thread", ingest_rate / verify_rate_1},
                                           {"stored", stored},
                                           {"group_commits", groups},
                                           {"cpu_us_per_envelope", cpu_per_envelope_us},
                                           {"cpu_us_per_envelope_by_role", cpu_by_role_us},
                                           {"verify_us", verify_us},
                                           {"cpu_budget_us_at_goal", budget_us},
                                           {"cores_outside_process_fraction", idle_fraction},
                                           {"machine", machine},
                                           {"sessions", sessions.size()}});
    }
    ratios_same_threads.push_back(ingest_rate / verify_rate);
    ratios_one_thread.push_back(ingest_rate / verify_rate_1);
    fs::remove_all(dir);
  }
  auto median = [](std::vector<double> v) {
    std::sort(v.begin(), v.end());
    return v[v.size() / 2];
  };
  const double ratio = median(ratios_same_threads);
  json::object result{
      {"bench", "telemetry_ingest"},
      {"date", bench::today()},
      {"envelopes_per_round", n},
      {"samples_per_envelope", 10},
      {"threads", threads},
      {"callers", callers},
      {"rounds", round_results},
      {"median_ratio", ratio},
      {"median_ratio_vs_one_thread", median(ratios_one_thread)},
      {"goal", "ingested envelopes/s >= 0.8 x bare Ed25519 verify/s, same threads, same run"},
      {"goal_met", ratio >= 0.8},
      {"model", blocking ? "blocking: one thread per device calls Ingestor::ingest"
                         : "server: request threads (as many as the verify baseline's) call "
                           "Ingestor::ingest_async; a device sends its next envelope once the "
                           "previous one is answered"},
      {"path",
       "key lookup (cached), verify, CBOR decode, checks, sequence window on the request "
       "thread; batches staged while the ledger's writer is busy stored by one command (inbox "
       "rows, one telemetry.batches ledger event) in one group commit, answered after the "
       "flusher's fdatasync of the WAL; sessionizer queue (artisan detector on its own "
       "thread)"}};
  fs::create_directories(fs::path(out).parent_path());
  std::ofstream(out) << json::serialize(result) << "\n";
  std::printf("median ratio %.2f (goal >= 0.8: %s); wrote %s\n", ratio,
              ratio >= 0.8 ? "met" : "NOT met", out.c_str());
  return 0;
}
