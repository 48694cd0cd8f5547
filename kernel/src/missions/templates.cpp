#include "missions/templates.hpp"

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <functional>
#include <set>
#include <sstream>

#include <yaml-cpp/yaml.h>

#include "common/embedded.hpp"
#include "common/strings.hpp"
#include "common/yaml.hpp"
#include "runtime/json_schema.hpp"

namespace kiln::missions {
namespace json = boost::json;
using common::did_you_mean;
using common::mark_of;

std::string_view to_string(Approval a) {
  switch (a) {
    case Approval::kNever:
      return "never";
    case Approval::kOnFailure:
      return "on_failure";
    case Approval::kRequired:
      return "required";
  }
  return "never";
}

std::optional<Approval> parse_approval(std::string_view s) {
  if (s == "never") return Approval::kNever;
  if (s == "on_failure") return Approval::kOnFailure;
  if (s == "required") return Approval::kRequired;
  return std::nullopt;
}

const StepTemplate* MissionTemplate::step(std::string_view id) const {
  for (const auto& s : steps)
    if (s.id == id) return &s;
  return nullptr;
}

TemplateError::TemplateError(std::vector<std::string> problems)
    : std::runtime_error(common::join(problems, "\n")), problems_(std::move(problems)) {}

namespace {

struct Placeholder {
  std::string text;                // "inputs.who", "steps.s.output.reference?"
  std::vector<std::string> parts;  // {"inputs", "who"}
  // A trailing '?': a field the referred output or the mission's inputs may lack (one a step
  // run by an older kiln did not give) is null instead of an error.
  bool optional = false;
};

// Every ${...} in a string, in order; `bad` receives unterminated ones.
std::vector<Placeholder> placeholders_in(std::string_view s, std::vector<std::string>* bad) {
  std::vector<Placeholder> out;
  for (std::size_t pos = s.find("${"); pos != std::string_view::npos; pos = s.find("${", pos)) {
    auto end = s.find('}', pos);
    if (end == std::string_view::npos) {
      if (bad) bad->push_back(std::string(s.substr(pos)));
      break;
    }
    Placeholder p;
    p.text = std::string(s.substr(pos + 2, end - pos - 2));
    p.optional = p.text.ends_with('?');
    std::stringstream ss(p.optional ? p.text.substr(0, p.text.size() - 1) : p.text);
    for (std::string part; std::getline(ss, part, '.');) p.parts.push_back(part);
    out.push_back(std::move(p));
    pos = end + 1;
  }
  return out;
}

// The strings of a step's input that hold a ${...}, each with its place in the file and in the
// input.
void collect_texts(const std::string& file, const YAML::Node& n, const std::string& path,
                   std::vector<StepTemplate::Text>& out) {
  if (n.IsScalar()) {
    if (n.Scalar().find("${") != std::string::npos)
      out.push_back({mark_of(file, n.Mark()), path, n.Scalar()});
  } else if (n.IsSequence()) {
    for (std::size_t i = 0; i < n.size(); ++i)
      collect_texts(file, n[i], path + "[" + std::to_string(i) + "]", out);
  } else if (n.IsMap()) {
    for (const auto& kv : n) collect_texts(file, kv.second, path + "." + kv.first.Scalar(), out);
  }
}

class Parser {
 public:
  std::vector<std::string> problems;

  std::optional<MissionTemplate> parse_file(const TemplateSet::File& f) {
    YAML::Node root;
    try {
      root = YAML::Load(f.text);
    } catch (const YAML::Exception& e) {
      problems.push_back(mark_of(f.name, e.mark) + ": not valid YAML: " + e.msg);
      return std::nullopt;
    }
    try {
      return parse_root(f, root);
    } catch (const YAML::Exception& e) {  // a shape the parser did not foresee: said, not a crash
      problems.push_back(mark_of(f.name, e.mark) + ": " + e.msg +
                         " (a value of another shape than the template format's: missions.md)");
      return std::nullopt;
    }
  }

 private:
  std::optional<MissionTemplate> parse_root(const TemplateSet::File& f, const YAML::Node& root) {
    if (!root.IsMap()) {
      problems.push_back(f.name + ": a mission template is a mapping with name, steps");
      return std::nullopt;
    }
    MissionTemplate t;
    t.source = f.name;
    const std::vector<std::string> top = {"name", "description", "inputs", "steps", "optional"};
    for (const auto& kv : root) {
      const std::string key = kv.first.Scalar();
      if (std::find(top.begin(), top.end(), key) == top.end())
        problems.push_back(mark_of(f.name, kv.first.Mark()) + ": unknown key '" + key + "'" +
                           did_you_mean(key, top) + " (allowed: " + common::join(top) + ")");
    }
    if (!root["name"] || !root["name"].IsScalar() || root["name"].Scalar().empty()) {
      problems.push_back(mark_of(f.name, root.Mark()) + ": 'name' is required (a string)");
      return std::nullopt;
    }
    t.name = root["name"].Scalar();
    if (root["description"]) t.description = root["description"].Scalar();
    if (root["optional"]) {
      const std::string v = root["optional"].Scalar();
      if (v != "true" && v != "false")
        problems.push_back(f.name + ": 'optional' must be true or false, not '" + v + "'");
      t.optional = v == "true";
    }
    parse_inputs(f.name, root["inputs"], t);
    if (!root["steps"] || !root["steps"].IsSequence() || root["steps"].size() == 0) {
      problems.push_back(mark_of(f.name, root.Mark()) + ": template '" + t.name +
                         "' needs 'steps', a non-empty list");
      return std::nullopt;
    }
    for (const auto& n : root["steps"]) parse_step(f.name, n, t);
    return t;
  }

  void parse_inputs(const std::string& file, const YAML::Node& n, MissionTemplate& t) {
    json::object properties;
    json::array required;
    if (n && !n.IsNull()) {
      if (!n.IsMap()) {
        problems.push_back(mark_of(file, n.Mark()) +
                           ": 'inputs' maps input names to JSON Schemas, e.g. who: {type: string}");
      } else {
        for (const auto& kv : n) {
          const std::string name = kv.first.Scalar();
          json::value schema = common::yaml_to_json(kv.second);
          if (!schema.is_object()) {
            problems.push_back(mark_of(file, kv.second.Mark()) + ": input '" + name +
                               "' needs a schema mapping, e.g. {type: string, default: x}");
            continue;
          }
          // A typo'd keyword (minLenght) would check nothing, silently: said, as other mistakes.
          const auto bad_schema = runtime::schema_problems(schema, "inputs." + name);
          for (const auto& p : bad_schema)
            problems.push_back(mark_of(file, kv.second.Mark()) + ": " + p);
          auto& o = schema.as_object();
          if (auto* d = o.if_contains("default")) {
            // (Against a schema that is itself wrong, a default's problem would be a guess.)
            if (auto err = bad_schema.empty()
                               ? runtime::validate_json(schema, *d, "inputs." + name + ".default")
                               : std::nullopt)
              problems.push_back(mark_of(file, kv.second.Mark()) + ": " + *err);
            t.defaults[name] = *d;
          } else {
            required.push_back(json::value(name));
          }
          properties[name] = std::move(schema);
        }
      }
    }
    t.input_schema = json::object{{"type", "object"},
                                  {"properties", std::move(properties)},
                                  {"required", std::move(required)},
                                  {"additionalProperties", false}};
  }

  void parse_step(const std::string& file, const YAML::Node& n, MissionTemplate& t) {
    const std::string where = mark_of(file, n.Mark());
    if (!n.IsMap()) {
      problems.push_back(where + ": a step is a mapping with id, tool and input");
      return;
    }
    const std::vector<std::string> keys = {"id",    "tool",       "input",   "needs",
                                           "retry", "timeout_ms", "approval"};
    for (const auto& kv : n) {
      const std::string key = kv.first.Scalar();
      if (std::find(keys.begin(), keys.end(), key) == keys.end())
        problems.push_back(mark_of(file, kv.first.Mark()) + ": unknown step key '" + key + "'" +
                           did_you_mean(key, keys) + " (allowed: " + common::join(keys) + ")");
    }
    StepTemplate s;
    s.where = where;
    if (!n["id"] || !n["id"].IsScalar() || n["id"].Scalar().empty()) {
      problems.push_back(where + ": step needs an 'id'");
      return;
    }
    s.id = n["id"].Scalar();
    if (s.id.find('.') != std::string::npos)
      problems.push_back(where + ": step id '" + s.id + "' may not contain '.'");
    if (!n["tool"] || !n["tool"].IsScalar()) {
      problems.push_back(where + ": step '" + s.id + "' needs a 'tool'");
      return;
    }
    s.tool = n["tool"].Scalar();
    s.input = n["input"] ? common::yaml_to_json(n["input"]) : json::value(json::object{});
    if (n["input"]) collect_texts(file, n["input"], "input", s.texts);
    if (s.input.is_null()) s.input = json::object{};
    if (const auto& needs = n["needs"]) {
      if (needs.IsScalar()) {
        s.needs.push_back(needs.Scalar());
      } else if (needs.IsSequence()) {
        for (const auto& x : needs) s.needs.push_back(x.Scalar());
      } else {
        problems.push_back(mark_of(file, needs.Mark()) + ": 'needs' is a step id or a list");
      }
    }
    if (const auto& retry = n["retry"]; retry && !retry.IsMap()) {
      problems.push_back(mark_of(file, retry.Mark()) +
                         ": retry is {max_attempts: N >= 1, backoff_ms: N >= 0}");
    } else if (retry) {
      auto max = retry["max_attempts"];
      auto backoff = retry["backoff_ms"];
      try {
        if (max) s.max_attempts = max.as<int>();
        if (backoff) s.backoff_ms = backoff.as<std::int64_t>();
      } catch (const YAML::Exception&) {
        problems.push_back(mark_of(file, retry.Mark()) +
                           ": retry is {max_attempts: N >= 1, backoff_ms: N >= 0}");
      }
      for (const auto& kv : retry)
        if (kv.first.Scalar() != "max_attempts" && kv.first.Scalar() != "backoff_ms")
          problems.push_back(mark_of(file, kv.first.Mark()) + ": unknown retry key '" +
                             kv.first.Scalar() + "' (allowed: max_attempts, backoff_ms)");
      if (s.max_attempts < 1 || s.max_attempts > 1000 || s.backoff_ms < 0 ||
          s.backoff_ms > 86400000)
        problems.push_back(mark_of(file, retry.Mark()) +
                           ": retry.max_attempts must be 1-1000 and retry.backoff_ms 0-86400000 "
                           "(a day)");
    }
    if (const auto& timeout = n["timeout_ms"]) {
      try {
        s.timeout_ms = timeout.as<std::int64_t>();
      } catch (const YAML::Exception&) {
      }
      if (!s.timeout_ms || *s.timeout_ms < 1)
        problems.push_back(mark_of(file, timeout.Mark()) + ": timeout_ms must be an integer >= 1");
    }
    if (const auto& approval = n["approval"]) {
      auto a = parse_approval(approval.Scalar());
      if (!a)
        problems.push_back(mark_of(file, approval.Mark()) + ": approval '" + approval.Scalar() +
                           "' is not one of required, on_failure, never");
      else
        s.approval = *a;
    }
    t.steps.push_back(std::move(s));
  }
};

// Orders steps so that each follows its needs; reports unknown needs and cycles.
void order_steps(MissionTemplate& t, std::vector<std::string>& problems) {
  std::vector<std::string> ids;
  std::set<std::string> seen;
  bool broken = false;  // no order to find (a cycle reported now would be a consequence)
  for (const auto& s : t.steps) {
    if (!seen.insert(s.id).second) {
      problems.push_back(s.where + ": duplicate step id '" + s.id + "' in template '" + t.name +
                         "'");
      broken = true;
    }
    ids.push_back(s.id);
  }
  for (const auto& s : t.steps)
    for (const auto& need : s.needs)
      if (!seen.count(need)) {
        std::vector<std::string> others;  // a step is not suggested as its own need
        for (const auto& id : ids)
          if (id != s.id) others.push_back(id);
        problems.push_back(s.where + ": step '" + s.id + "' needs unknown step '" + need + "'" +
                           did_you_mean(need, others));
        broken = true;
      }
  if (broken) return;
  std::vector<StepTemplate> ordered;
  std::set<std::string> placed;
  while (ordered.size() < t.steps.size()) {
    bool progress = false;
    for (const auto& s : t.steps) {
      if (placed.count(s.id)) continue;
      if (std::all_of(s.needs.begin(), s.needs.end(),
                      [&](const std::string& n) { return placed.count(n) > 0; })) {
        ordered.push_back(s);
        placed.insert(s.id);
        progress = true;
      }
    }
    if (!progress) {
      std::vector<std::string> stuck;
      std::string where;  // the first step caught in it
      for (const auto& s : t.steps)
        if (!placed.count(s.id)) {
          stuck.push_back(s.id);
          if (where.empty()) where = s.where;
        }
      problems.push_back(where + ": template '" + t.name + "' has a cycle in 'needs' among steps " +
                         common::join(stuck));
      return;
    }
  }
  t.steps = std::move(ordered);
}

void check_references(const MissionTemplate& t, std::vector<std::string>& problems) {
  std::vector<std::string> input_names;
  for (const auto& kv : t.input_schema.at("properties").as_object())
    input_names.emplace_back(kv.key());
  // Step -> every step it needs, directly or through its needs: walked from each step, so that
  // it holds in any order the steps are written (and through a cycle or an unknown need, which
  // are problems of their own).
  std::map<std::string, const StepTemplate*> by_id;
  for (const auto& s : t.steps) by_id.emplace(s.id, &s);
  std::map<std::string, std::set<std::string>> reachable;
  for (const auto& s : t.steps) {
    auto& r = reachable[s.id];
    std::vector<std::string> unwalked(s.needs.begin(), s.needs.end());
    while (!unwalked.empty()) {
      const std::string n = std::move(unwalked.back());
      unwalked.pop_back();
      if (!r.insert(n).second) continue;
      if (const auto it = by_id.find(n); it != by_id.end())
        unwalked.insert(unwalked.end(), it->second->needs.begin(), it->second->needs.end());
    }
  }
  for (const auto& s : t.steps) {
    for (const auto& text : s.texts) {
      std::vector<std::string> bad;
      const std::string at = text.where + ": step '" + s.id + "': " + text.path;
      for (const auto& p : placeholders_in(text.text, &bad)) {
        const std::string where = at + ": ${" + p.text + "}";
        if (p.parts.size() >= 2 && p.parts[0] == "inputs") {
          if (std::find(input_names.begin(), input_names.end(), p.parts[1]) == input_names.end())
            problems.push_back(where + " refers to an input the template does not declare" +
                               did_you_mean(p.parts[1], input_names));
        } else if (p.parts.size() >= 3 && p.parts[0] == "steps" && p.parts[2] == "output") {
          if (!reachable[s.id].count(p.parts[1]))
            problems.push_back(
                where + " refers to step '" + p.parts[1] + "', which this step does not need; " +
                (reachable[p.parts[1]].count(s.id)
                     ? "'" + p.parts[1] + "' runs after this step (it needs '" + s.id +
                           "'): a step can use only the outputs of steps before it"
                     : std::string("add it to 'needs'")));
        } else if (p.parts.size() == 2 && p.parts[0] == "mission" &&
                   (p.parts[1] == "id" || p.parts[1] == "tenant")) {
        } else {
          problems.push_back(where +
                             " is not a reference; use ${inputs.NAME}, ${steps.ID.output[.path]}, "
                             "${mission.id} or ${mission.tenant}");
        }
      }
      for (const auto& b : bad) problems.push_back(at + ": unterminated placeholder '" + b + "'");
    }
  }
}

}  // namespace

TemplateSet TemplateSet::parse(const std::vector<File>& files,
                               const std::map<std::string, json::value>* tools) {
  std::vector<std::string> tool_names;
  if (tools)
    for (const auto& [name, _] : *tools) tool_names.push_back(name);
  const auto* known_tools = tools ? &tool_names : nullptr;
  // A string with a ${...} in it is known when the step runs, not now.
  const auto pending = [](const json::value& v) {
    return v.is_string() && !placeholders_in(v.as_string(), nullptr).empty();
  };
  Parser parser;
  TemplateSet set;
  std::map<std::string, std::string> origin;
  for (const auto& f : files) {
    auto t = parser.parse_file(f);
    if (!t) continue;
    if (auto it = origin.find(t->name); it != origin.end()) {
      parser.problems.push_back(f.name + ": template '" + t->name + "' is also defined in " +
                                it->second + "; names must be unique");
      continue;
    }
    order_steps(*t, parser.problems);
    check_references(*t, parser.problems);
    if (known_tools) {
      std::vector<std::string> missing;
      for (const auto& s : t->steps)
        if (std::find(known_tools->begin(), known_tools->end(), s.tool) == known_tools->end())
          missing.push_back(s.where + ": step '" + s.id + "' uses unknown tool '" + s.tool + "'" +
                            did_you_mean(s.tool, *known_tools) +
                            " (`kiln tool list` shows the loaded tools)");
      if (!missing.empty() && t->optional) {
        // An optional template needs a plugin this deployment does not load: left out.
        set.skipped_.push_back(t->name + " (" + missing.front() + ")");
        continue;
      }
      parser.problems.insert(parser.problems.end(), missing.begin(), missing.end());
      // What the tool would refuse when the step runs (after an approval, perhaps): said now.
      for (auto& s : t->steps) {
        const auto it = tools->find(s.tool);
        if (it == tools->end()) continue;
        s.tool_input_schema = it->second;
        if (auto why = runtime::validate_json(it->second, s.input, "input", pending))
          parser.problems.push_back(s.where + ": step '" + s.id + "': " + *why +
                                    " (the input of tool " + s.tool +
                                    "; `kiln tool list --json` "
                                    "shows its schema)");
      }
    }
    origin[t->name] = f.name;
    set.templates_.emplace(t->name, std::move(*t));
  }
  if (!parser.problems.empty()) throw TemplateError(std::move(parser.problems));
  return set;
}

std::vector<TemplateSet::File> TemplateSet::sources(const std::vector<std::string>& dirs) {
  std::vector<File> files;
  if (dirs.empty()) {
    for (const auto& e : common::embedded_files())
      if (e.name.rfind("config/missions/", 0) == 0)
        files.push_back({std::string(e.name) + " (embedded)", std::string(e.content)});
    return files;
  }
  for (const auto& d : dirs) {
    std::error_code ec;
    if (!std::filesystem::is_directory(d, ec))
      throw TemplateError({"missions.dirs: '" + d +
                           "' is not a directory; list directories holding *.yaml templates"});
    std::vector<std::filesystem::path> paths;
    for (const auto& e : std::filesystem::directory_iterator(d))
      if (e.path().extension() == ".yaml" || e.path().extension() == ".yml")
        paths.push_back(e.path());
    std::sort(paths.begin(), paths.end());
    for (const auto& p : paths) {
      std::ifstream in(p);
      std::stringstream ss;
      ss << in.rdbuf();
      if (!in) throw TemplateError({p.string() + ": cannot read the file"});
      files.push_back({p.string(), ss.str()});
    }
  }
  return files;
}

const MissionTemplate* TemplateSet::find(std::string_view name) const {
  auto it = templates_.find(std::string(name));
  return it == templates_.end() ? nullptr : &it->second;
}

std::vector<std::string> TemplateSet::names() const {
  std::vector<std::string> out;
  for (const auto& [n, _] : templates_) out.push_back(n);
  return out;
}

namespace {

const json::value& resolve(const Placeholder& p, const RenderContext& ctx, json::value& scratch) {
  auto fail = [&](const std::string& why) -> const json::value& {
    throw std::runtime_error("${" + p.text + "}: " + why);
  };
  const json::value* v = nullptr;
  std::size_t next = 0;
  // An optional reference to what is not there: null.
  auto absent = [&]() -> const json::value& {
    scratch = nullptr;
    return scratch;
  };
  if (p.parts.size() >= 2 && p.parts[0] == "inputs") {
    auto* found = ctx.inputs ? ctx.inputs->if_contains(p.parts[1]) : nullptr;
    if (!found && p.optional) return absent();
    if (!found) return fail("the mission has no input '" + p.parts[1] + "'");
    v = found;
    next = 2;
  } else if (p.parts.size() >= 3 && p.parts[0] == "steps" && p.parts[2] == "output") {
    auto it = ctx.outputs ? ctx.outputs->find(p.parts[1]) : decltype(ctx.outputs->end()){};
    if (!ctx.outputs || it == ctx.outputs->end())
      return fail("step '" + p.parts[1] + "' has no output yet");
    v = &it->second;
    next = 3;
  } else if (p.parts.size() == 2 && p.parts[0] == "mission") {
    scratch = json::value(p.parts[1] == "id" ? ctx.mission_id : ctx.tenant);
    return scratch;
  } else {
    return fail("not a reference");
  }
  for (; next < p.parts.size(); ++next) {
    const std::string& key = p.parts[next];
    if (v->is_object()) {
      v = v->as_object().if_contains(key);
    } else if (v->is_array() && !key.empty() &&
               std::all_of(key.begin(), key.end(), [](char c) { return c >= '0' && c <= '9'; })) {
      const auto& a = v->as_array();
      std::size_t i = std::stoul(key);
      v = i < a.size() ? &a[i] : nullptr;
    } else {
      v = nullptr;
    }
    if (!v && p.optional) return absent();
    if (!v) return fail("'" + key + "' is not present");
  }
  return *v;
}

json::value render_string(const std::string& s, const RenderContext& ctx) {
  auto ps = placeholders_in(s, nullptr);
  if (ps.empty()) return json::value(s);
  json::value scratch;
  if (ps.size() == 1 && s.size() == ps[0].text.size() + 3) return resolve(ps[0], ctx, scratch);
  std::string out;
  std::size_t pos = 0;
  for (const auto& p : ps) {
    auto start = s.find("${" + p.text + "}", pos);
    out += s.substr(pos, start - pos);
    const json::value& v = resolve(p, ctx, scratch);
    out += v.is_string() ? std::string(v.as_string()) : json::serialize(v);
    pos = start + p.text.size() + 3;
  }
  out += s.substr(pos);
  return json::value(out);
}

}  // namespace

json::value render(const json::value& input, const RenderContext& ctx) {
  if (input.is_string()) return render_string(std::string(input.as_string()), ctx);
  if (input.is_array()) {
    json::array a;
    for (const auto& x : input.as_array()) a.push_back(render(x, ctx));
    return a;
  }
  if (input.is_object()) {
    json::object o;
    for (const auto& kv : input.as_object()) o[kv.key()] = render(kv.value(), ctx);
    return o;
  }
  return input;
}

json::object complete_inputs(const MissionTemplate& t, const json::object& given) {
  json::object inputs = given;
  for (const auto& kv : t.defaults)
    if (!inputs.contains(kv.key())) inputs[kv.key()] = kv.value();
  if (auto err = runtime::validate_json(t.input_schema, inputs, "inputs"))
    throw InputError("template '" + t.name + "': " + *err, err->substr(0, err->find(':')));
  return inputs;
}

}  // namespace kiln::missions
