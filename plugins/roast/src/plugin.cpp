// The roast plugin: the `event_detector/artisan` node (the kind's default) and the tool
// `roast.analyze` (an Artisan .alog → events, phases, DTR, AUC, rate of rise), which detects
// through whichever event_detector node the deployment selected.
#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cctype>
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include "analysis.hpp"
#include "artisan_detector.hpp"
#include "kiln/plugin.hpp"
#include "predict.hpp"
#include "profile.hpp"
#include "pyliteral.hpp"
#include "qc.hpp"
#include "report.hpp"

namespace {

namespace json = boost::json;

// Writes `text` to `file` whole or not at all, on disk before the step that names the file is
// recorded: a temporary beside it, synced, renamed over it, the directory synced. A cut-off page
// under the report's name (a process killed mid-write) or none at all after a power cut, with the
// ledger naming it, were possible with a plain stream. Returns the failure, or nullopt.
std::optional<std::string> write_whole(const std::filesystem::path& file, const std::string& text) {
  static std::atomic<unsigned> next{0};
  const std::string tmp =
      file.string() + ".tmp-" + std::to_string(::getpid()) + "-" + std::to_string(next++);
  auto failed = [&](const char* what) {
    std::string why = std::string(what) + " " + tmp + ": " + std::strerror(errno);
    ::unlink(tmp.c_str());
    return why;
  };
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0644);
  if (fd < 0) return failed("cannot create");
  for (std::size_t done = 0; done < text.size();) {
    const ssize_t n = ::write(fd, text.data() + done, text.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      if (n == 0) errno = EIO;  // nothing written and no error said: errno is not set
      ::close(fd);
      return failed("cannot write");
    }
    done += static_cast<std::size_t>(n);
  }
  if (::fsync(fd) != 0) {
    ::close(fd);
    return failed("cannot sync");
  }
  if (::close(fd) != 0) return failed("cannot write");
  if (::rename(tmp.c_str(), file.c_str()) != 0) return failed("cannot rename");
  if (const int dir = ::open(file.parent_path().c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
      dir >= 0) {
    const bool synced = ::fsync(dir) == 0;
    ::close(dir);
    if (!synced)
      return "cannot sync the directory " + file.parent_path().string() + ": " +
             std::strerror(errno);
  }
  return std::nullopt;
}

// A tool's `phases` input (4 numbers, as its schema says) when they rise through a roast; else
// nullopt with the refusal in `error`. `unit_of`: "the log's" or "the profile's".
std::optional<std::array<double, 4>> rising_phases(const json::array& given, const char* unit_of,
                                                   std::string* error) {
  std::array<double, 4> p{};
  for (std::size_t i = 0; i < 4; ++i) p[i] = given[i].to_number<double>();
  if (std::is_sorted(p.begin(), p.end())) return p;
  char text[128];
  std::snprintf(text, sizeof text, "%g, %g, %g, %g", p[0], p[1], p[2], p[3]);
  *error =
      std::string("phases rise through a roast: drying from <= DRY END <= FCs <= finish, in ") +
      unit_of + " unit (e.g. 150,150,195,225 in °C); given " + text;
  return std::nullopt;
}

// A recorded curve ({"time", "bt", "et"[, "state"][, "unit"]}) as a RoastLog without marks.
kiln::roast::RoastLog log_of_curve(const json::object& c, const std::array<double, 4>& phases) {
  auto list = [&](const char* key, bool required) {
    std::vector<double> out;
    const auto* v = c.if_contains(key);
    if (!v) {
      if (required) throw kiln::roast::AlogError(std::string("curve has no '") + key + "'");
      return out;
    }
    if (!v->is_array())
      throw kiln::roast::AlogError(std::string("curve.") + key + " is not a list");
    for (const auto& x : v->as_array()) {
      if (!x.is_number())
        throw kiln::roast::AlogError(std::string("curve.") + key + " holds a non-number");
      out.push_back(x.to_number<double>());
    }
    return out;
  };
  kiln::roast::RoastLog log;
  log.time = list("time", true);
  log.bt = list("bt", true);
  log.et = list("et", false);
  if (log.et.empty()) log.et.assign(log.time.size(), 0.0);
  log.roaster_state = list("state", false);
  log.phases = phases;
  if (const auto* u = c.if_contains("unit"); u && u->is_string() && u->as_string() == "F") {
    log.mode = 'F';
    for (auto& p : log.phases) p = p * 9.0 / 5.0 + 32.0;
  }
  if (auto ph = list("phases", false); !ph.empty()) {
    if (ph.size() != 4) throw kiln::roast::AlogError("curve.phases needs 4 temperatures");
    std::copy(ph.begin(), ph.end(), log.phases.begin());
  }
  if (log.time.size() < 2) throw kiln::roast::AlogError("curve has fewer than 2 readings");
  if (log.bt.size() != log.time.size() || log.et.size() != log.time.size() ||
      (!log.roaster_state.empty() && log.roaster_state.size() != log.time.size()))
    throw kiln::roast::AlogError("curve lists must have the same length");
  for (std::size_t i = 1; i < log.time.size(); ++i)
    if (!(log.time[i] > log.time[i - 1]))
      throw kiln::roast::AlogError("curve.time is not increasing at position " + std::to_string(i));
  if (log.time.size() > 1)
    log.interval = (log.time.back() - log.time.front()) / static_cast<double>(log.time.size() - 1);
  // The batch's weights ({"in", "out", "unit"}), when the roaster weighed it.
  if (const auto* w = c.if_contains("weight"); w && w->is_object()) {
    const auto& weight = w->as_object();
    for (auto [key, into] : {std::pair{"in", &log.weight_in}, std::pair{"out", &log.weight_out}})
      if (const auto* g = weight.if_contains(key); g && !g->is_null()) {
        if (!g->is_number() || !(g->to_number<double>() > 0))
          throw kiln::roast::AlogError(std::string("curve.weight.") + key +
                                       " is not a weight above 0");
        *into = g->to_number<double>();
      }
    if (const auto* u = weight.if_contains("unit"); u && u->is_string())
      log.weight_unit = std::string(u->as_string());
  }
  // A roaster's marks ({"FCs": seconds on the curve's clock}): the reading nearest each.
  if (const auto* m = c.if_contains("marks")) {
    if (!m->is_object()) throw kiln::roast::AlogError("curve.marks is not an object");
    for (const auto& [event, at] : m->as_object()) {
      const int slot = event == "CHARGE"    ? 0
                       : event == "DRY_END" ? 1
                       : event == "FCs"     ? 2
                       : event == "DROP"    ? 6
                                            : -1;
      if (slot < 0)
        throw kiln::roast::AlogError("curve.marks." + std::string(event) +
                                     ": not an event a roaster marks (CHARGE, DRY_END, FCs, DROP)");
      if (!at.is_number())
        throw kiln::roast::AlogError("curve.marks." + std::string(event) + " is not a number");
      const double t = at.to_number<double>();
      const auto after = std::lower_bound(log.time.begin(), log.time.end(), t);
      auto i = static_cast<std::size_t>(after - log.time.begin());
      if (i == log.time.size() || (i > 0 && t - log.time[i - 1] < log.time[i] - t)) --i;
      log.timeindex[static_cast<std::size_t>(slot)] = static_cast<int>(i);
    }
  }
  return log;
}

// plugin_config.roast.curve_phases: the phase temperatures of recorded curves (°C: drying from,
// DRY END, FCs, finish), which carry none. Checked when the tools are made, so a wrong value
// stops `kiln serve` with its name instead of being replaced by the default unseen.
std::array<double, 4> curve_phases_of(const kiln::HostServices& host) {
  std::array<double, 4> out{150, 150, 195, 225};
  const auto* v = host.config().if_contains("curve_phases");
  if (!v) return out;
  const std::string problem =
      "plugin_config.roast.curve_phases must be four temperatures in °C, none lower than the "
      "one before (drying from, DRY END, FCs, finish), e.g. [150, 150, 195, 225]; got " +
      json::serialize(*v);
  if (!v->is_array() || v->as_array().size() != 4) throw std::invalid_argument(problem);
  for (std::size_t i = 0; i < 4; ++i) {
    const auto& x = v->as_array()[i];
    if (!x.is_number()) throw std::invalid_argument(problem);
    out[i] = x.to_number<double>();
    if (out[i] < 0 || out[i] > 400 || (i > 0 && out[i] < out[i - 1]))
      throw std::invalid_argument(problem);
  }
  return out;
}

class PredictTool final : public kiln::Tool {
 public:
  explicit PredictTool(kiln::HostServices& host) : host_(host), phases_(curve_phases_of(host)) {}

  kiln::ToolOutcome invoke(const json::value& input, const kiln::ToolContext&) override {
    const auto& in = input.as_object();
    auto detector = host_.node<kiln::nodes::EventDetector>();
    if (!detector)
      return kiln::tool_error(kiln::error_code::kProviderUnavailable,
                              "prediction needs the event_detector kind; no node is resolved here");
    try {
      auto log = log_of_curve(in.at("curve").as_object(), phases_);
      auto curve = kiln::roast::curve_of(log);
      auto e = detector->detect(curve);
      e.validate(curve);
      kiln::roast::PredictOptions o;
      // A roaster's marks stand over the detector's (curve.marks).
      if (log.timeindex[0] >= 0) e.charge = log.timeindex[0];
      if (log.timeindex[2] > 0) o.fcs_marked = log.timeindex[2];
      o.fcs_bt = log.phases[2];
      if (const auto* f = in.if_contains("fcs_bt")) o.fcs_bt = f->to_number<double>();
      if (const auto* d = in.if_contains("dtr")) o.dtr = d->to_number<double>() / 100.0;
      auto p = kiln::roast::predict(curve, e.charge, e.tp, o);
      json::object out = p.to_json();
      out["fcs_bt"] = o.fcs_bt;
      out["dtr_target"] = o.dtr * 100;
      return kiln::ToolResult{std::move(out), {}};
    } catch (const kiln::roast::AlogError& e) {
      return kiln::tool_error(kiln::error_code::kInvalidInput,
                              std::string("the curve is not usable: ") + e.what());
    }
  }

 private:
  kiln::HostServices& host_;
  const std::array<double, 4> phases_;
};

class QcTool final : public kiln::Tool {
 public:
  kiln::ToolOutcome invoke(const json::value& input, const kiln::ToolContext& ctx) override {
    const auto& in = input.as_object();
    json::object targets = kiln::roast::default_targets();
    if (const auto* t = in.if_contains("targets"); t && t->is_object() && !t->as_object().empty())
      targets = t->as_object();
    json::object qc;
    try {
      qc = kiln::roast::run_qc(in.at("analysis").as_object(), targets);
    } catch (const std::invalid_argument& e) {
      return kiln::tool_error(kiln::error_code::kInvalidInput, e.what());
    }
    qc["targets"] = targets;
    if (qc.at("verdict").as_string() == "fail") {
      if (ctx.approved_by.empty()) {
        // Every failed check: the approver (and the log line of the hold) sees all of them.
        kiln::ToolError err{"qc_failed", "quality check failed: ", false, qc};
        // A check resting on an estimated FCs says so in its reason; the line says it once.
        std::string sep;
        bool estimated = false;
        for (const auto& c : qc.at("checks").as_array())
          if (c.as_object().at("result").as_string() == "fail") {
            std::string reason(c.as_object().at("reason").as_string());
            if (reason.ends_with(kiln::roast::kFcsEstimatedNote)) {
              reason.resize(reason.size() - kiln::roast::kFcsEstimatedNote.size());
              estimated = true;
            }
            err.message += sep + reason;
            sep = "; ";
          }
        if (estimated)
          err.message +=
              "; FCs was estimated from the temperature, not marked (kiln sessions mark SESSION "
              "FCs --at M:SS)";
        err.message += " (an approver may accept the roast: kiln mission approve)";
        return kiln::Unexpected<kiln::ToolError>{std::move(err)};
      }
      qc["accepted_by"] = ctx.approved_by;
    }
    return kiln::ToolResult{std::move(qc), {}};
  }
};

class ReportTool final : public kiln::Tool {
 public:
  explicit ReportTool(kiln::HostServices& host) : host_(host) {}

  kiln::ToolOutcome invoke(const json::value& input, const kiln::ToolContext& ctx) override {
    const auto& in = input.as_object();
    kiln::roast::ReportInput r;
    if (const auto* s = in.if_contains("session"); s && s->is_object()) r.session = s->as_object();
    r.title = "roast";
    if (const auto* t = in.if_contains("title"); t && t->is_string())
      r.title = std::string(t->as_string());
    else if (const auto* id = r.session.if_contains("id"); id && id->is_string())
      r.title = std::string(id->as_string());
    r.curve = in.at("curve").as_object();
    r.analysis = in.at("analysis").as_object();
    if (const auto* q = in.if_contains("qc"); q && q->is_object()) r.qc = q->as_object();
    if (const auto* ref = in.if_contains("reference"); ref && ref->is_object())
      r.reference = ref->as_object();
    std::string html;
    try {
      html = kiln::roast::render_report_html(r);
    } catch (const std::invalid_argument& e) {
      return kiln::tool_error(kiln::error_code::kInvalidInput, e.what());
    }
    auto report = kiln::roast::report_summary(r);
    json::object out{{"summary", kiln::roast::spoken_summary(r)}, {"bytes", html.size()}};
    // The page in the output, or (html: false) as the file report.html beside it: a mission
    // keeps it with its step, its digest in the ledger, instead of ≈ 30 KB of output twice.
    const auto* inline_page = in.if_contains("html");
    const bool as_file = inline_page && inline_page->is_bool() && !inline_page->as_bool();
    auto result = [&](json::object o) {
      o["report"] = std::move(report);
      if (!as_file) {
        o["html"] = std::move(html);
        return kiln::ToolResult{std::move(o), {}};
      }
      o["html_file"] = "report.html";
      return kiln::ToolResult{
          std::move(o),
          {kiln::Artifact{"report.html", "text/html; charset=utf-8", std::move(html)}}};
    };
    if (const auto* keep = in.if_contains("keep"); keep && keep->is_bool() && !keep->as_bool())
      return result(std::move(out));
    // The page is also kept as an artifact, with the numbers beside it as JSON:
    // <storage.artifacts>/roast/reports/<tenant>/<title>.<call>.html and .json, <call> a digest
    // of the call's request id — one file per call, so no call (an operator's own, with
    // another's title) replaces a page a mission kept.
    auto safe = [](const std::string& name) {
      std::string out;
      for (char c : name.substr(0, 100))  // a file name has at most 255 bytes
        out += (std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_' || c == '.')
                   ? c
                   : '_';
      if (out.empty() || out[0] == '.') out = "x" + out;
      return out;
    };
    std::uint64_t call = 14695981039346656037ull;  // FNV-1a of the request id
    for (unsigned char c : ctx.request_id) call = (call ^ c) * 1099511628211ull;
    char call_hex[17];
    std::snprintf(call_hex, sizeof call_hex, "%016llx", static_cast<unsigned long long>(call));
    const std::string file = safe(r.title) + "." + std::string(call_hex, 12);
    const auto dir =
        host_.artifact_dir() / "reports" / safe(ctx.tenant.empty() ? "default" : ctx.tenant);
    std::filesystem::create_directories(dir);
    const auto path = dir / (file + ".html");
    const auto json_path = dir / (file + ".json");
    for (const auto& [where, text] :
         {std::pair{path, html}, std::pair{json_path, json::serialize(report) + "\n"}})
      if (auto failed = write_whole(where, text))
        return kiln::tool_error(kiln::error_code::kInternal,
                                *failed + " (the report's directory: " + dir.string() + ")");
    out["path"] = path.string();
    out["json_path"] = json_path.string();
    return result(std::move(out));
  }

 private:
  kiln::HostServices& host_;
};

class AnalyzeTool final : public kiln::Tool {
 public:
  explicit AnalyzeTool(kiln::HostServices& host) : host_(host), phases_(curve_phases_of(host)) {}

  kiln::ToolOutcome invoke(const json::value& input, const kiln::ToolContext&) override {
    const auto& in = input.as_object();
    kiln::roast::AnalysisOptions opt;
    if (const auto* d = in.if_contains("detect")) opt.detect = d->as_bool();
    if (const auto* s = in.if_contains("ror_series")) opt.ror_series = s->as_bool();
    if (const auto* s = in.if_contains("ror_span_s")) opt.ror_span_s = s->to_number<double>();
    const auto* alog = in.if_contains("alog");
    const auto* curve = in.if_contains("curve");
    if ((alog == nullptr) == (curve == nullptr))
      return kiln::tool_error(kiln::error_code::kInvalidInput,
                              "give exactly one of 'alog' (an .alog file's text) and 'curve' "
                              "(time, bt, et[, state] lists)");
    try {
      kiln::roast::RoastLog log;
      if (alog) {
        const auto& text = alog->as_string();
        log = kiln::roast::parse_alog(std::string_view(text.data(), text.size()));
      } else {
        log = log_of_curve(curve->as_object(), phases_);
        // The detector finds the events; those a roaster marked (curve.marks) stand.
        opt.detect = true;
        opt.keep_marks = true;
      }
      std::shared_ptr<kiln::nodes::EventDetector> detector;
      if (opt.detect) {
        detector = host_.node<kiln::nodes::EventDetector>();
        if (!detector)
          return kiln::tool_error(
              kiln::error_code::kProviderUnavailable,
              "detect=true needs the event_detector kind, and no event_detector node is "
              "resolved here (the kind is off, or this tool runs isolated in a node-host); "
              "analyse the marked events (detect=false) or run the roast plugin in-process");
      }
      // Phase temperatures instead of the log's or the curve's (an R1 log's DRY END at 18 °C).
      if (const auto* ph = in.if_contains("phases"); ph && ph->is_array()) {
        std::string why;
        const auto p = rising_phases(ph->as_array(), "the log's", &why);
        if (!p) return kiln::tool_error(kiln::error_code::kInvalidInput, why);
        log.phases = *p;
      }
      auto a = kiln::roast::analyze(log, opt, detector.get());
      json::object out = kiln::roast::to_json(a);
      out["phase_temperatures"] =
          json::array{log.phases[0], log.phases[1], log.phases[2], log.phases[3]};
      out["title"] = log.title;
      out["mode"] = std::string(1, log.mode);
      out["readings"] = log.time.size();
      return kiln::ToolResult{std::move(out), {}};
    } catch (const kiln::roast::PyLiteralError& e) {
      return kiln::tool_error(kiln::error_code::kInvalidInput,
                              std::string("the .alog is not a Python literal: ") + e.what());
    } catch (const kiln::roast::AlogError& e) {
      return kiln::tool_error(kiln::error_code::kInvalidInput,
                              std::string(alog ? "the .alog is not a usable roast log: "
                                               : "the curve is not usable: ") +
                                  e.what());
    }
  }

 private:
  kiln::HostServices& host_;
  const std::array<double, 4> phases_;
};

// roast.profile_import: an .alog's text, or a profile's JSON, to a checked profile body.
class ProfileImportTool final : public kiln::Tool {
 public:
  kiln::ToolOutcome invoke(const json::value& input, const kiln::ToolContext&) override {
    const auto& in = input.as_object();
    const auto* alog = in.if_contains("alog");
    const auto* profile = in.if_contains("profile");
    if ((alog == nullptr) == (profile == nullptr))
      return kiln::tool_error(kiln::error_code::kInvalidInput,
                              "give exactly one of 'alog' (an .alog file's text) and 'profile' "
                              "(a profile's JSON)");
    try {
      json::object body;
      if (alog) {
        const auto& text = alog->as_string();
        body = kiln::roast::profile_from_alog(std::string_view(text.data(), text.size()));
      } else {
        body = kiln::roast::profile_from_json(profile->as_object());
      }
      if (const auto* t = in.if_contains("title"); t && t->is_string() && !t->as_string().empty())
        body["title"] = *t;
      // The phase temperatures to detect DRY END and estimate FCs by, instead of the log's (an
      // R1 log's may say 18 °C): the profile is checked and its views made again with them.
      if (const auto* ph = in.if_contains("phases"); ph && ph->is_array()) {
        std::string why;
        if (!rising_phases(ph->as_array(), "the profile's", &why))
          return kiln::tool_error(kiln::error_code::kInvalidInput, why);
        body["phases"] = *ph;
        body = kiln::roast::profile_from_json(body);
      }
      // What QC will check roasts to it against, as a roaster reads it, and what it will not.
      json::array described;
      const auto& unit = body.at("unit").as_string();
      for (auto& line : kiln::roast::describe_targets(body.at("targets").as_object(),
                                                      unit.empty() ? 'C' : unit[0]))
        described.emplace_back(std::move(line));
      json::value notes = body.contains("notes") ? body.at("notes") : json::array{};
      return kiln::ToolResult{json::object{{"profile", std::move(body)},
                                           {"qc_targets", std::move(described)},
                                           {"notes", std::move(notes)}},
                              {}};
    } catch (const kiln::roast::PyLiteralError& e) {
      return kiln::tool_error(kiln::error_code::kInvalidInput,
                              std::string("the .alog is not a Python literal: ") + e.what());
    } catch (const kiln::roast::AlogError& e) {
      return kiln::tool_error(kiln::error_code::kInvalidInput,
                              std::string(alog ? "the .alog is not a usable roast profile: "
                                               : "the profile is not usable: ") +
                                  e.what());
    } catch (const std::invalid_argument& e) {
      return kiln::tool_error(kiln::error_code::kInvalidInput,
                              std::string("the profile's targets: ") + e.what());
    }
  }
};

// roast.profile_export: a profile body as an Artisan .alog.
class ProfileExportTool final : public kiln::Tool {
 public:
  kiln::ToolOutcome invoke(const json::value& input, const kiln::ToolContext&) override {
    try {
      auto text = kiln::roast::alog_of_profile(input.as_object().at("profile").as_object());
      return kiln::ToolResult{json::object{{"alog", text}, {"bytes", text.size()}}, {}};
    } catch (const kiln::roast::AlogError& e) {
      return kiln::tool_error(
          kiln::error_code::kInvalidInput,
          std::string("the profile cannot be written as an .alog: ") + e.what());
    }
  }
};

kiln::Manifest manifest() {
  kiln::Manifest m;
  m.name = "roast";
  m.version = "0.1.0";
  m.description = "Coffee roast analysis: Artisan .alog import, events, phases, AUC, rate of rise";
  m.license = "Apache-2.0";
  kiln::ToolDecl analyze;
  analyze.name = "roast.analyze";
  analyze.description =
      "Analyse an Artisan .alog (events marked, or detected with detect=true) or a recorded curve "
      "(events detected): phases, DTR, AUC and rate of rise, times in seconds after CHARGE";
  analyze.input_schema = json::parse(R"({
    "type": "object", "additionalProperties": false,
    "properties": {
      "alog": {"type": "string", "minLength": 1, "description": "the text of the .alog file"},
      "curve": {"type": "object", "required": ["time", "bt"],
                "description": "a recorded curve (telemetry.session's output): events are detected, but for those a roaster marked",
                "properties": {"time": {"type": "array"}, "bt": {"type": "array"},
                               "et": {"type": "array"}, "state": {"type": "array"},
                               "unit": {"type": "string", "enum": ["C", "F"]},
                               "phases": {"type": "array", "minItems": 4, "maxItems": 4,
                                          "items": {"type": "number"}},
                               "weight": {"type": "object", "description": "the batch's weights: green in, roasted out",
                                          "properties": {"in": {"type": ["number", "null"]}, "out": {"type": ["number", "null"]},
                                                         "unit": {"type": "string"}}},
                               "marks": {"type": "object", "description": "events a roaster marked, in seconds on the curve's clock: taken over the detected ones",
                                         "additionalProperties": false,
                                         "properties": {"CHARGE": {"type": "number"}, "DRY_END": {"type": "number"},
                                                        "FCs": {"type": "number"}, "DROP": {"type": "number"}}}}},
      "detect": {"type": "boolean"},
      "phases": {"type": "array", "minItems": 4, "maxItems": 4, "items": {"type": "number"},
                 "description": "phase temperatures (drying from, DRY END, FCs, finish) instead of the log's"},
      "ror_series": {"type": "boolean"},
      "ror_span_s": {"type": "number", "minimum": 2, "maximum": 120}}})");
  analyze.output_schema = json::parse(R"({
    "type": "object", "required": ["events", "phases", "auc", "ror"]})");
  analyze.factory = [](kiln::HostServices& host) { return std::make_shared<AnalyzeTool>(host); };
  analyze.nonblocking = true;  // pure computation on one file
  m.tools.push_back(std::move(analyze));
  m.config_keys.push_back(
      {"curve_phases", "array", json::array{150, 150, 195, 225},
       "phase temperatures (°C: drying from, DRY END, FCs, finish) for recorded curves, which "
       "carry none; FCs is predicted at the third (a Bullet R1 cracks at about 190-196 °C BT; "
       "Artisan's default is 200)"});
  kiln::ToolDecl qc;
  qc.name = "roast.qc";
  qc.description =
      "Quality check of an analysis against targets with tolerances (a profile's, else DTR "
      "15-25 %, FCs 6-10 min, DROP 7.5-13 min): pass / warn / fail with reasons. A fail is the "
      "error qc_failed (details: the checks) until an approver accepts it";
  qc.input_schema = json::parse(R"({
    "type": "object", "required": ["analysis"], "additionalProperties": false,
    "properties": {"analysis": {"type": "object", "required": ["events"]},
                   "targets": {"type": "object"}}})");
  qc.output_schema = json::parse(R"({
    "type": "object", "required": ["verdict", "checks"],
    "properties": {"verdict": {"type": "string", "enum": ["pass", "warn", "fail"]},
                   "checks": {"type": "array"}, "accepted_by": {"type": "string"}}})");
  qc.factory = [](kiln::HostServices&) { return std::make_shared<QcTool>(); };
  qc.nonblocking = true;
  m.tools.push_back(std::move(qc));

  kiln::ToolDecl predict;
  predict.name = "roast.predict";
  predict.description =
      "Predictive assist (read-only): from a live curve, the expected FCs and DROP times (seconds "
      "after CHARGE) with an early/late band, from the rate of rise since the turning point";
  predict.input_schema = json::parse(R"({
    "type": "object", "required": ["curve"], "additionalProperties": false,
    "properties": {"curve": {"type": "object", "required": ["time", "bt"]},
                   "fcs_bt": {"type": "number", "minimum": 100, "maximum": 260},
                   "dtr": {"type": "number", "minimum": 5, "maximum": 40,
                           "description": "target development time ratio, percent"}}})");
  predict.output_schema =
      json::parse(R"({"type": "object", "required": ["status", "fcs", "drop"]})");
  predict.factory = [](kiln::HostServices& host) { return std::make_shared<PredictTool>(host); };
  predict.nonblocking = true;
  m.tools.push_back(std::move(predict));

  kiln::ToolDecl pimport;
  pimport.name = "roast.profile_import";
  pimport.description =
      "A roast profile from an Artisan .alog (its curve, marked events, phases, AUC, the "
      "roaster's control changes (its special events: heater, fan, drum), and QC targets around "
      "it: FCs and DROP time ±30 s, DROP BT ±3 °C, DTR ±2 points, weight loss ±1.5 points) or "
      "from a "
      "profile's JSON (checked, events recomputed, its targets kept); `kiln profiles import` and "
      "POST /v1/profiles store it as a new version";
  pimport.input_schema = json::parse(R"({
    "type": "object", "additionalProperties": false,
    "properties": {"alog": {"type": "string", "minLength": 1},
                   "profile": {"type": "object"},
                   "title": {"type": "string"},
                   "phases": {"type": "array", "items": {"type": "number"}, "minItems": 4, "maxItems": 4,
                              "description": "Artisan's phase temperatures in the profile's unit (drying from, DRY END, FCs, finish) instead of the file's"}}})");
  pimport.output_schema = json::parse(R"({"type": "object",
    "required": ["profile", "qc_targets", "notes"],
    "properties": {"profile": {"type": "object"},
                   "qc_targets": {"type": "array", "items": {"type": "string"},
                                  "description": "the targets as a roaster reads them"},
                   "notes": {"type": "array", "items": {"type": "string"},
                             "description": "what QC will not check against this profile"}}})");
  pimport.factory = [](kiln::HostServices&) { return std::make_shared<ProfileImportTool>(); };
  pimport.nonblocking = true;
  m.tools.push_back(std::move(pimport));

  kiln::ToolDecl pexport;
  pexport.name = "roast.profile_export";
  pexport.description =
      "A roast profile written as an Artisan .alog (timex, temp1 = ET, temp2 = BT, timeindex, "
      "phases, weight, the controls as special events, computed) that Artisan and `kiln "
      "analyze` open";
  pexport.input_schema = json::parse(R"({
    "type": "object", "required": ["profile"], "additionalProperties": false,
    "properties": {"profile": {"type": "object", "required": ["curve"]}}})");
  pexport.output_schema = json::parse(R"({"type": "object", "required": ["alog", "bytes"]})");
  pexport.factory = [](kiln::HostServices&) { return std::make_shared<ProfileExportTool>(); };
  pexport.nonblocking = true;
  m.tools.push_back(std::move(pexport));

  kiln::ToolDecl report;
  report.name = "roast.report";
  report.description =
      "An HTML roast report (inline SVG chart of BT, ET, rate of rise, events, phases and the "
      "roaster's settings when the curve has heater, fan or drum; QC table) that opens offline, "
      "its numbers as JSON (report: events, phases, settings, QC, the profile comparison) and a "
      "one-paragraph summary; page and JSON are also written to the plugin's "
      "artifact directory (path, json_path), unless keep is false. With html false the page is "
      "not in the output but the file report.html beside it (html_file; a mission keeps it)";
  report.input_schema = json::parse(R"({
    "type": "object", "required": ["curve", "analysis"], "additionalProperties": false,
    "properties": {"title": {"type": "string"}, "session": {"type": "object"},
                   "curve": {"type": "object", "required": ["time", "bt"]},
                   "analysis": {"type": "object"}, "qc": {"type": "object"},
                   "keep": {"type": "boolean", "description": "write the page and its JSON to the artifact directory (default true); false: only returned"},
                   "html": {"type": "boolean", "description": "the page in the output (default true); false: returned as the file report.html beside the output"},
                   "reference": {"type": ["object", "null"],
                                 "description": "the profile to draw behind the roast and compare: telemetry.session's reference"}}})");
  report.output_schema = json::parse(R"({
    "type": "object", "required": ["summary", "bytes", "report"],
    "properties": {"report": {"type": "object",
                              "description": "the report's numbers, format kiln.roast-report/1"},
                   "html": {"type": "string", "description": "the page; absent with html false"},
                   "html_file": {"type": "string", "description": "with html false: the name of the page's file, report.html"},
                   "bytes": {"type": "integer", "description": "the page's size"},
                   "path": {"type": "string", "description": "the page kept; absent with keep false"},
                   "json_path": {"type": "string", "description": "its numbers kept"}}})");
  report.factory = [](kiln::HostServices& host) { return std::make_shared<ReportTool>(host); };
  m.tools.push_back(std::move(report));

  m.nodes.push_back(kiln::NodeDecl::make<kiln::nodes::EventDetector>(
      "artisan",
      "Artisan's rules: CHARGE/DROP from the roaster's state channel or a BT break, TP as the "
      "lowest BT after CHARGE, DRY END and FCs from the phase temperatures",
      [](const kiln::NodeContext& ctx) {
        double lag = kiln::roast::ArtisanDetector::kDefaultProbeLag;
        if (const auto* v = ctx.kind_config.if_contains("probe_lag_s"); v && v->is_number())
          lag = v->to_number<double>();
        if (!(lag >= 0 && lag <= 60))
          throw std::invalid_argument("event_detector.probe_lag_s is " + std::to_string(lag) +
                                      "; it must be between 0 and 60 seconds");
        return std::make_shared<kiln::roast::ArtisanDetector>(lag);
      }));
  return m;
}

}  // namespace

KILN_PLUGIN(manifest)
