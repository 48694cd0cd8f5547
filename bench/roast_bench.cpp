// Roast analysis speed: `roast::analyze` on a 15-minute roast at 1 Hz (a real 9-minute Bullet R1
// log from tests/fixtures, extended with a steady development to 900 readings), marked events and
// --detect, against the goal of under 1 ms. Parsing the .alog text is measured separately.
// Writes bench/results/<date>_roast.json (or --out FILE).
#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include <boost/json.hpp>

#include "analysis.hpp"
#include "artisan_detector.hpp"
#include "bench_util.hpp"

namespace json = boost::json;
using namespace kiln;
using bench::Clock;

int main(int argc, char** argv) {
  std::string out = "bench/results/" + bench::today() + "_roast.json";
  std::string alog = std::string(KILN_SOURCE_DIR) +
                     "/tests/fixtures/artisan-alog/26-02-05_1909_Magarrissa-Tulise_1_no8.alog";
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--out" && i + 1 < argc)
      out = argv[++i];
    else if (a == "--alog" && i + 1 < argc)
      alog = argv[++i];
    else {
      std::fprintf(stderr, "usage: kiln_bench_roast [--alog FILE] [--out FILE]\n");
      return 2;
    }
  }
  std::ifstream in(alog, std::ios::binary);
  std::stringstream text;
  text << in.rdbuf();
  auto median_us = [](auto&& fn, int reps) {
    std::vector<double> v;
    for (int r = 0; r < reps; ++r) {
      auto t = Clock::now();
      fn();
      v.push_back(std::chrono::duration<double, std::micro>(Clock::now() - t).count());
    }
    std::sort(v.begin(), v.end());
    return v[v.size() / 2];
  };
  roast::RoastLog log;
  const double parse_us = median_us([&] { log = roast::parse_alog(text.str()); }, 21);
  // Extend to 900 readings at 1 Hz: BT keeps rising slowly, the state channel stays "roasting"
  // until a DROP at the end.
  const std::size_t drop = static_cast<std::size_t>(log.timeindex[6]);
  log.time.resize(drop);
  log.bt.resize(drop);
  log.et.resize(drop);
  if (!log.roaster_state.empty()) log.roaster_state.resize(drop);
  while (log.time.size() < 900) {
    log.time.push_back(log.time.back() + 1.0);
    log.bt.push_back(log.bt.back() + 0.05);
    log.et.push_back(log.et.back());
    if (!log.roaster_state.empty()) log.roaster_state.push_back(6);
  }
  log.time.push_back(log.time.back() + 1.0);
  log.bt.push_back(log.bt.back() - 3);
  log.et.push_back(log.et.back());
  if (!log.roaster_state.empty()) log.roaster_state.push_back(8);
  log.timeindex[6] = static_cast<int>(log.time.size() - 1);
  roast::AnalysisOptions marked, detect;
  detect.detect = true;
  const roast::ArtisanDetector detector;
  // What is timed must be a whole analysis: one that gave up early would look fast.
  for (const auto& [how, a] : {std::pair{"marked", roast::analyze(log, marked)},
                               std::pair{"detect", roast::analyze(log, detect, &detector)}})
    if (!a.charge || !a.tp || !a.fcs || !a.drop || !a.auc) {
      std::fprintf(stderr,
                   "kiln_bench_roast: the %s analysis of %s misses CHARGE, TP, FCs, DROP or the "
                   "AUC: nothing to time\n",
                   how, alog.c_str());
      return 1;
    }
  volatile double sink = 0;
  const double marked_us =
      median_us([&] { sink = sink + roast::analyze(log, marked).auc.value_or(0); }, 201);
  const double detect_us =
      median_us([&] { sink = sink + roast::analyze(log, detect, &detector).auc.value_or(0); }, 201);
  const double readings = static_cast<double>(log.time.size());
  json::object result{{"bench", "roast"},
                      {"date", bench::today()},
                      {"source_log", std::filesystem::path(alog).filename().string()},
                      {"readings", readings},
                      {"analyze_marked_us_median", marked_us},
                      {"analyze_detect_us_median", detect_us},
                      {"parse_alog_us_median", parse_us},
                      {"goal_us", 1000},
                      {"meets_goal", std::max(marked_us, detect_us) < 1000}};
  std::filesystem::create_directories(std::filesystem::path(out).parent_path());
  std::ofstream(out) << json::serialize(result) << "\n";
  std::printf(
      "analysis of %.0f readings (15 min at 1 Hz): %.1f us marked, %.1f us detect (goal < 1000 us: "
      "%s); "
      "parsing the .alog text %.0f us; wrote %s\n",
      readings, marked_us, detect_us, std::max(marked_us, detect_us) < 1000 ? "met" : "NOT met",
      parse_us, out.c_str());
  return 0;
}
