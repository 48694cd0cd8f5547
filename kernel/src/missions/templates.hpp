// Mission templates: YAML files in config/missions/ (embedded) or the directories listed in
// `missions.dirs`. A template names its inputs and its steps; each step runs one tool with an
// input templated from the mission's inputs and earlier steps' outputs. See
// docs/architecture/missions.md for the format.
#pragma once

#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <boost/json.hpp>

namespace kiln::missions {

enum class Approval { kNever, kOnFailure, kRequired };
std::string_view to_string(Approval a);
std::optional<Approval> parse_approval(std::string_view s);

struct StepTemplate {
  std::string id;
  std::string tool;
  boost::json::value input;  // with ${...} placeholders
  std::vector<std::string> needs;
  int max_attempts = 1;                    // tries of this step before it fails for good
  std::int64_t backoff_ms = 1000;          // before retry n: backoff_ms * 2^(n-1)
  std::optional<std::int64_t> timeout_ms;  // overrides tool_strategy.timeout_ms
  Approval approval = Approval::kNever;
  std::string where;  // file:line:column of the step
  // Every string of `input` with a ${...} in it, where it is written: what references are judged
  // by when the templates load (a problem is located at its reference, not only at its step).
  struct Text {
    std::string where;  // file:line:column of the string
    std::string path;   // "input.lot.name", "input.items[2]"
    std::string text;
  };
  std::vector<Text> texts;
  // Its tool's input schema, when the templates were checked against the loaded tools: a mission
  // start checks what the step will be given, where the mission's inputs alone decide it.
  boost::json::value tool_input_schema = nullptr;
};

struct MissionTemplate {
  std::string name;
  std::string description;
  std::string source;                // file the template came from
  boost::json::object input_schema;  // JSON Schema of the mission's inputs, with defaults
  boost::json::object defaults;      // input name -> default value
  std::vector<StepTemplate> steps;   // in a dependency order: every step after its needs
  // `optional: true`: when a tool it uses is not loaded, the template is left out (listed by
  // TemplateSet::skipped) instead of an error — for templates of plugins a deployment may omit.
  bool optional = false;
  const StepTemplate* step(std::string_view id) const;
};

// All problems found across the files, one per line, each with file:line:column.
class TemplateError : public std::runtime_error {
 public:
  explicit TemplateError(std::vector<std::string> problems);
  const std::vector<std::string>& problems() const { return problems_; }

 private:
  std::vector<std::string> problems_;
};

class TemplateSet {
 public:
  struct File {
    std::string name;  // shown in errors: a path, or "config/missions/x.yaml (embedded)"
    std::string text;
  };
  // Parses and checks every file: structure, duplicate names and step ids, unknown `needs`,
  // cycles, placeholders that refer to undeclared inputs or to steps the step does not need
  // (directly or through its needs), and, when `tools` is given (each loaded tool's name and
  // input schema), tools not among them and step inputs their tool would refuse — a missing or
  // unknown field, a value of the wrong type or range — as far as they are known before the
  // step runs (a `${...}` value is rendered then; everything around it is checked now).
  // Throws TemplateError listing every problem.
  static TemplateSet parse(const std::vector<File>& files,
                           const std::map<std::string, boost::json::value>* tools = nullptr);
  // The embedded config/missions/*.yaml, or every *.yaml in `dirs` when not empty.
  static std::vector<File> sources(const std::vector<std::string>& dirs);

  const MissionTemplate* find(std::string_view name) const;
  std::vector<std::string> names() const;
  const std::map<std::string, MissionTemplate>& all() const { return templates_; }
  // Optional templates left out because a tool they use is not loaded: "name (why)".
  const std::vector<std::string>& skipped() const { return skipped_; }

 private:
  std::map<std::string, MissionTemplate> templates_;
  std::vector<std::string> skipped_;
};

// Fills a step's input: a string that is exactly one placeholder becomes the referenced JSON
// value; placeholders inside longer strings are replaced by their text. References:
//   ${inputs.NAME[.path...]}   ${steps.ID.output[.path...]}   ${mission.id}   ${mission.tenant}
// Throws std::runtime_error naming the placeholder when a reference does not resolve.
struct RenderContext {
  const boost::json::object* inputs = nullptr;
  const std::map<std::string, boost::json::value>* outputs = nullptr;  // step id -> output
  std::string mission_id;
  std::string tenant;
};
boost::json::value render(const boost::json::value& input, const RenderContext& ctx);

// Mission inputs that do not fit the template; `field` is the wrong one ("inputs.who").
struct InputError : std::invalid_argument {
  InputError(const std::string& message, std::string f)
      : std::invalid_argument(message), field(std::move(f)) {}
  std::string field;
};
// Applies defaults and validates mission inputs against the template; returns the complete
// inputs or throws InputError.
boost::json::object complete_inputs(const MissionTemplate& t, const boost::json::object& given);

}  // namespace kiln::missions
