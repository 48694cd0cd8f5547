// YAML helpers shared by the config, policy and mission-template loaders.
#pragma once

#include <string>

#include <yaml-cpp/yaml.h>
#include <boost/json.hpp>

namespace kiln::common {

// "file:line:column" of a node (1-based), or just "file" when the node has no position.
std::string mark_of(const std::string& file, const YAML::Mark& m);

// YAML -> JSON without a schema: plain scalars are typed (null, bool, int, float), quoted ones
// stay strings.
boost::json::value yaml_to_json(const YAML::Node& n);

}  // namespace kiln::common
