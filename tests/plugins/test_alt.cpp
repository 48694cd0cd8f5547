// test_alt: a second provider of test.echo and test.flaky, for routing and fallback tests.
#include <boost/json.hpp>

#include "kiln/kiln.hpp"

namespace {
namespace json = boost::json;
using namespace kiln;

class Echo final : public Tool {
 public:
  ToolOutcome invoke(const json::value& in, const ToolContext&) override {
    json::object o = in.is_object() ? in.as_object() : json::object{};
    o["provider"] = "test_alt";
    return ToolResult{o, {}};
  }
};

Manifest manifest() {
  Manifest m;
  m.name = "test_alt";
  m.version = "0.0.1";
  m.description = "second provider";
  m.license = "Apache-2.0";
  for (const char* name : {"test.echo", "test.flaky"}) {
    ToolDecl d;
    d.name = name;
    d.nonblocking = true;
    d.factory = [](HostServices&) { return std::make_shared<Echo>(); };
    m.tools.push_back(std::move(d));
  }
  return m;
}

}  // namespace

KILN_PLUGIN(manifest)
