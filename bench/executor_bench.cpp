// A no-op tool invoked through the ToolRuntimeExecutor (strategy resolution, schema check,
// policy) against a direct virtual call of the same tool: the cost of the seam itself.
//
// Writes bench/results/<date>_executor.json (or --out FILE): the median ns per call of each,
// the overhead and the ratio, plus Google Benchmark's raw output. Target: < 1 µs per call.
#include <chrono>
#include <cstdio>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

#include <unistd.h>

#include <benchmark/benchmark.h>
#include <boost/json.hpp>

#include "bench_util.hpp"
#include "runtime/kernel.hpp"

namespace json = boost::json;
using namespace kiln;

namespace {

const std::filesystem::path& scratch() {
  static const auto dir = std::filesystem::temp_directory_path() /
                          ("kiln-executor-bench-" + std::to_string(::getpid()));
  return dir;
}

// The embedded policy's rate limit (1,000 tool calls a second, bursts of 2,000) would refuse
// nearly every call after the first burst, and a refusal is faster than a call: the bench's
// policy lets every call through its token bucket, which it still runs.
std::string unlimited_policy() {
  const auto file = scratch() / "policy.yaml";
  std::filesystem::create_directories(scratch());
  std::ofstream(file) << "version: 1\n"
                         "tenants:\n"
                         "  \"*\":\n"
                         "    missions: [\"*\"]\n"
                         "    rate_limits:\n"
                         "      tool_calls: {per_second: 1000000000000, burst: 1000000000000}\n";
  return file.string();
}

std::unique_ptr<runtime::Kernel> boot(bool audit = false) {
  runtime::BootOptions o;
  o.environment = {};
  o.setup_logging = false;
  o.sets = {"plugins.search_paths=[]", "log.level=off",
            std::string("runtime.audit_tool_calls=") + (audit ? "true" : "false"),
            "storage.path=" + (scratch() / "kiln.db").string(),
            "policy.file=" + unlimited_policy()};
  return runtime::Kernel::boot(o);
}

void BM_DirectCall(benchmark::State& state) {
  auto k = boot();
  std::shared_ptr<Tool> tool;
  for (const auto& t : k->registry().tools())
    if (t.name == "kiln.noop") tool = t.tool;
  const json::value input = json::object{};
  ToolContext ctx{"kiln.noop", "default", "", std::chrono::steady_clock::now(), {}};
  for (auto _ : state) {
    auto out = tool->invoke(input, ctx);
    benchmark::DoNotOptimize(out);
  }
}

// The seam alone: strategy, schema checks, policy (runtime.audit_tool_calls=false).
void BM_ExecutorInvoke(benchmark::State& state) {
  auto k = boot();
  const auto& executor = k->executor();
  const runtime::ToolCall call{"kiln.noop", "default", json::object{}, "", {}, {}};
  for (auto _ : state) {
    auto out = executor.invoke(call);
    benchmark::DoNotOptimize(out);
  }
  if (auto r = executor.invoke(call); !r.ok())
    state.SkipWithError(("kiln.noop failed: " + r.error().code + ": " + r.error().message).c_str());
}

// The default deployment: two audit events per call queued for the ledger's group commit.
void BM_ExecutorInvokeAudited(benchmark::State& state) {
  auto k = boot(true);
  const auto& executor = k->executor();
  const runtime::ToolCall call{"kiln.noop", "default", json::object{}, "", {}, {}};
  for (auto _ : state) {
    auto out = executor.invoke(call);
    benchmark::DoNotOptimize(out);
  }
  k->ledger().flush();
  if (auto r = executor.invoke(call); !r.ok())
    state.SkipWithError(("kiln.noop failed: " + r.error().code + ": " + r.error().message).c_str());
}

BENCHMARK(BM_DirectCall)->Repetitions(10)->ReportAggregatesOnly(true);
BENCHMARK(BM_ExecutorInvoke)->Repetitions(10)->ReportAggregatesOnly(true);
BENCHMARK(BM_ExecutorInvokeAudited)->Repetitions(5)->ReportAggregatesOnly(true);

using bench::today;

double median_ns(const json::array& benchmarks, const std::string& name) {
  for (const auto& b : benchmarks) {
    const auto& o = b.as_object();
    const auto& run = o.at("run_name").as_string();
    if (run.subview(0, run.find('/')) == name && o.contains("aggregate_name") &&
        o.at("aggregate_name").as_string() == "median")
      return o.at("real_time").to_number<double>();  // time_unit is ns by default
  }
  return -1;
}

}  // namespace

int main(int argc, char** argv) {
  std::string out = "bench/results/" + today() + "_executor.json";
  std::vector<char*> args;
  for (int i = 0; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--out" && i + 1 < argc) {
      out = argv[++i];
      continue;
    }
    args.push_back(argv[i]);
  }
  const std::string raw_path = out + ".raw.tmp";
  std::string out_flag = "--benchmark_out=" + raw_path;
  std::string fmt_flag = "--benchmark_out_format=json";
  args.push_back(out_flag.data());
  args.push_back(fmt_flag.data());
  int n = static_cast<int>(args.size());
  benchmark::Initialize(&n, args.data());
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();

  std::ifstream in(raw_path);
  std::stringstream ss;
  ss << in.rdbuf();
  auto raw = json::parse(ss.str());
  std::filesystem::remove(raw_path);
  const auto& list = raw.at("benchmarks").as_array();
  double direct = median_ns(list, "BM_DirectCall");
  double seam = median_ns(list, "BM_ExecutorInvoke");
  double audited = median_ns(list, "BM_ExecutorInvokeAudited");
  std::filesystem::remove_all(scratch());
  // A benchmark that failed (skipped with an error) has no median: nothing to compare.
  if (direct < 0 || seam < 0 || audited < 0) {
    std::fprintf(stderr,
                 "kiln_bench_executor: a benchmark failed (direct %.0f, executor %.0f, audited "
                 "%.0f ns; -1: no result); nothing written\n",
                 direct, seam, audited);
    return 1;
  }
  json::object result{{"benchmark", "executor"},
                      {"date", today()},
                      {"unit", "ns per call (median of 10 repetitions)"},
                      {"direct_call_ns", direct},
                      {"executor_invoke_ns", seam},
                      {"executor_invoke_audited_ns", audited},
                      {"overhead_ns", seam - direct},
                      {"ratio", direct > 0 ? seam / direct : 0.0},
                      {"target_executor_invoke_ns", 1000},
                      {"meets_target", seam > 0 && seam < 1000},
                      {"context", raw.at("context")},
                      {"raw", raw.at("benchmarks")}};
  std::filesystem::create_directories(std::filesystem::path(out).parent_path());
  std::ofstream(out) << json::serialize(result) << "\n";
  std::printf(
      "direct call %.1f ns, through the executor %.1f ns (x%.1f, +%.1f ns); target < 1000 ns: %s\n",
      direct, seam, direct > 0 ? seam / direct : 0.0, seam - direct,
      seam > 0 && seam < 1000 ? "met" : "NOT met");
  std::printf("with tool-call audit events in the ledger (the default): %.1f ns per call\n",
              audited);
  std::printf("wrote %s\n", out.c_str());
  return 0;
}
