// minimal_plugin — the smallest useful kiln plugin: one tool, `minimal.greet`.
// Build it against an installed kiln SDK (see CMakeLists.txt and README.md).
#include <string>

#include <kiln/kiln.hpp>

namespace {

class Greet final : public kiln::Tool {
 public:
  explicit Greet(std::string greeting) : greeting_(std::move(greeting)) {}

  kiln::ToolOutcome invoke(const boost::json::value& input, const kiln::ToolContext&) override {
    // The input was validated against the schema below before this call.
    const auto& name = input.as_object().at("name").as_string();
    return kiln::ToolResult{
        boost::json::object{{"message", greeting_ + ", " + std::string(name) + "!"}}, {}};
  }

 private:
  std::string greeting_;
};

kiln::Manifest manifest() {
  kiln::Manifest m;
  m.name = "minimal";
  m.version = "1.0.0";
  m.description = "the smallest useful kiln plugin";
  m.license = "Apache-2.0";

  kiln::ToolDecl greet;
  greet.name = "minimal.greet";
  greet.description = "Greets someone by name.";
  greet.input_schema = {{"type", "object"},
                        {"required", {"name"}},
                        {"properties", {{"name", {{"type", "string"}, {"minLength", 1}}}}}};
  greet.output_schema = {{"type", "object"}, {"required", {"message"}}};
  greet.nonblocking = true;  // pure computation: runs on the caller's thread
  greet.factory = [](kiln::HostServices& host) {
    // Settings come from `plugin_config.minimal.*`, already validated and defaulted.
    const auto& greeting = host.config().at("greeting").as_string();
    return std::make_shared<Greet>(std::string(greeting));
  };
  m.tools.push_back(std::move(greet));

  m.config_keys.push_back({"greeting", "string", "Hello", "how minimal.greet starts"});
  return m;
}

}  // namespace

KILN_PLUGIN(manifest)
