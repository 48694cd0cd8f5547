#include "runtime/telemetry_tools.hpp"

#include <cmath>
#include <map>

#include "telemetry/profiles.hpp"
#include "telemetry/sessions.hpp"

namespace kiln::runtime {
namespace json = boost::json;

namespace {

class SessionTool final : public Tool {
 public:
  explicit SessionTool(std::function<std::filesystem::path()> storage)
      : storage_(std::move(storage)) {}

  ToolOutcome invoke(const json::value& input, const ToolContext& ctx) override {
    const std::string id(input.as_object().at("session").as_string());
    const auto db = storage_();
    auto s = telemetry::Sessionizer::get(db, ctx.tenant, id);
    if (!s)
      return Unexpected<ToolError>{ToolError{error_code::kNotFound,
                                             telemetry::no_session(id, ctx.tenant), false,
                                             json::object{{"session", id}}}};
    auto samples = telemetry::Sessionizer::samples(db, *s);
    json::array time, bt, et, state, heater, fan, drum;
    bool any_state = false;
    // Temperatures to 0.01 °C, finer than any roaster's probe: a device (the simulator, a
    // float32 frame) may send 17 digits, and this curve is kept twice a report (the step's
    // ledger event and its output) — ≈ 15 KB less a roast.
    auto centi = [](double v) { return std::round(v * 100) / 100; };
    for (const auto& x : samples) {
      time.push_back(std::round((x.t - s->start_t) * 1000) / 1000);
      bt.push_back(centi(x.bt));
      et.push_back(centi(x.et));
      state.push_back(x.state);
      heater.push_back(x.heater);
      fan.push_back(x.fan);
      drum.push_back(x.drum);
      any_state = any_state || x.state != 0;
    }
    json::object curve{{"unit", "C"},      {"time", time}, {"bt", bt},    {"et", et},
                       {"heater", heater}, {"fan", fan},   {"drum", drum}};
    if (any_state) curve["state"] = state;
    // A roaster's marks (first crack is heard): the analysis takes them over its detector's.
    // The call's (a mission's, as they were when it started), else the session's now.
    std::map<std::string, double> marks = s->marks;
    if (const auto* m = input.as_object().if_contains("marks"); m && m->is_object()) {
      marks.clear();
      for (const auto& [event, ms] : m->as_object())
        marks[std::string(event)] = ms.to_number<double>() / 1000;
    }
    // The batch's weights, in grams: the call's (a mission's, in mg), else the session's.
    std::optional<double> green = s->green_g, roasted = s->roasted_g;
    if (const auto* w = input.as_object().if_contains("weight"); w && w->is_object()) {
      auto grams = [&](const char* key) -> std::optional<double> {
        const auto* v = w->as_object().if_contains(key);
        if (!v || !v->is_number()) return std::nullopt;
        return v->to_number<double>() / 1000;
      };
      green = grams("green_mg");
      roasted = grams("roasted_mg");
    }
    if (green || roasted)
      curve["weight"] = json::object{{"in", green ? json::value(*green) : json::value()},
                                     {"out", roasted ? json::value(*roasted) : json::value()},
                                     {"unit", "g"}};
    if (!marks.empty()) {
      json::object on_curve;
      for (const auto& [event, t] : marks)
        on_curve[event] = std::round((t - s->start_t) * 1000) / 1000;
      curve["marks"] = std::move(on_curve);
    }
    // The session's profile gives the QC targets and the phase temperatures of its analysis.
    json::value profile = nullptr;
    json::value reference = nullptr;  // the profile's body, for roast.report to draw behind
    json::object targets;
    if (s->profile) {
      auto p = telemetry::ProfileStore::get(db, ctx.tenant, *s->profile, s->profile_version);
      if (!p)
        return tool_error(error_code::kInternal,
                          "session " + id + " was roasted to profile " + *s->profile + "@" +
                              std::to_string(s->profile_version) +
                              ", which the profile tables do not hold (`kiln ledger replay` "
                              "compares them with the ledger)");
      profile = json::object{{"name", p->name}, {"version", p->version}, {"title", p->title}};
      reference = json::object{
          {"name", p->name}, {"version", p->version}, {"title", p->title}, {"profile", p->body}};
      // Recorded curves are in °C: the profile's °C view (its own unit may be °F).
      const json::object* view = &p->body;
      if (const auto* c = p->body.if_contains("celsius"); c && c->is_object())
        view = &c->as_object();
      if (const auto* t = view->if_contains("targets"); t && t->is_object())
        targets = t->as_object();
      if (const auto* ph = view->if_contains("phases"); ph && ph->is_array()) curve["phases"] = *ph;
    }
    // Targets given with the call (a mission's inputs) take precedence over the profile's.
    if (const auto* t = input.as_object().if_contains("targets");
        t && t->is_object() && !t->as_object().empty())
      targets = t->as_object();
    return ToolResult{json::object{{"session", s->to_json()},
                                   {"samples", samples.size()},
                                   {"curve", std::move(curve)},
                                   {"profile", std::move(profile)},
                                   {"reference", std::move(reference)},
                                   {"targets", std::move(targets)}},
                      {}};
  }

 private:
  std::function<std::filesystem::path()> storage_;
};

class CommandTool final : public Tool {
 public:
  explicit CommandTool(std::function<std::shared_ptr<nodes::TelemetryDriver>()> driver)
      : driver_(std::move(driver)) {}

  ToolOutcome invoke(const json::value& input, const ToolContext& ctx) override {
    auto d = driver_();
    if (!d)
      return tool_error(error_code::kProviderUnavailable,
                        "no telemetry_driver node is running here");
    const auto& in = input.as_object();
    nodes::DriverCommand c{std::string(in.at("setting").as_string()),
                           static_cast<int>(in.at("value").to_number<std::int64_t>())};
    if (auto e = d->command(c)) return Unexpected<ToolError>{*e};
    return ToolResult{
        json::object{{"setting", c.setting},
                     {"value", c.value},
                     {"approved_by", ctx.approved_by.empty() ? json::value(nullptr)
                                                             : json::value(ctx.approved_by)}},
        {}};
  }

 private:
  std::function<std::shared_ptr<nodes::TelemetryDriver>()> driver_;
};

}  // namespace

std::vector<ToolDecl> telemetry_tools(
    std::function<std::filesystem::path()> storage_path,
    std::function<std::shared_ptr<nodes::TelemetryDriver>()> driver) {
  std::vector<ToolDecl> out;
  ToolDecl session;
  session.name = "telemetry.session";
  session.description =
      "A stored roast session of the caller's tenant: its info, its curve (time in seconds "
      "from the session's start, BT and ET in °C to 0.01, heater, fan, drum and the roaster's "
      "state when recorded; the profile's phase temperatures; the events a roaster marked, in "
      "seconds from the start: the call's marks, else the session's; the batch's weights in "
      "grams), its profile, the profile's content to compare it with (reference; null without a "
      "profile) and the QC targets to check it against (the call's, else the profile's, else {} "
      "for roast.qc's defaults)";
  session.input_schema = json::parse(R"({"type": "object", "required": ["session"],
    "additionalProperties": false,
    "properties": {"session": {"type": "string", "minLength": 1},
                   "targets": {"type": "object"},
                   "weight": {"type": ["object", "null"], "additionalProperties": false,
                              "properties": {"green_mg": {"type": ["integer", "null"]}, "roasted_mg": {"type": ["integer", "null"]}},
                              "description": "the batch's weights to use (mg) instead of the session's; null: the session's"},
                   "marks": {"type": ["object", "null"], "additionalProperties": {"type": "integer"},
                             "description": "the marks to use (event: device time in ms) instead of the session's now; null: the session's"}}})");
  session.output_schema = json::parse(R"({"type": "object",
    "required": ["session", "samples", "curve", "profile", "reference", "targets"]})");
  session.factory = [storage_path](HostServices&) {
    return std::make_shared<SessionTool>(storage_path);
  };
  out.push_back(std::move(session));

  ToolDecl command;
  command.name = "roaster.command";
  command.description =
      "Change a setting of the roaster the selected telemetry_driver reads (heater 0-9, fan "
      "1-12, drum 1-9). Actuates: refused unless the policy allows actuation, and then only with "
      "an approver when it requires one; read-only drivers answer read_only";
  command.input_schema = json::parse(R"({"type": "object", "required": ["setting", "value"],
    "additionalProperties": false,
    "properties": {"setting": {"type": "string", "enum": ["heater", "fan", "drum"]},
                   "value": {"type": "integer", "minimum": 0, "maximum": 12}},
    "allOf": [
      {"if": {"properties": {"setting": {"const": "heater"}}},
       "then": {"properties": {"value": {"maximum": 9}}, "description": "heater levels are 0-9"}},
      {"if": {"properties": {"setting": {"const": "fan"}}},
       "then": {"properties": {"value": {"minimum": 1}}, "description": "fan levels are 1-12"}},
      {"if": {"properties": {"setting": {"const": "drum"}}},
       "then": {"properties": {"value": {"minimum": 1, "maximum": 9}},
                "description": "drum levels are 1-9"}}]})");
  command.output_schema = json::parse(R"({"type": "object", "required": ["setting", "value"]})");
  command.factory = [driver](HostServices&) { return std::make_shared<CommandTool>(driver); };
  command.actuates = true;
  out.push_back(std::move(command));
  return out;
}

}  // namespace kiln::runtime
