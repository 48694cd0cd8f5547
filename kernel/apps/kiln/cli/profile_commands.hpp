// `kiln profiles list|show|versions|import|export|archive|restore` and `kiln devices profile`:
// the roast profile library, against this deployment's storage or a server (--server).
#pragma once

#include <map>
#include <ostream>
#include <string>

#include <boost/json.hpp>

#include "cli/args.hpp"

namespace kiln::cli {

const std::map<std::string, std::string>& profile_help();

// --phases A,B,C,D (Artisan's phase temperatures) as four numbers; std::invalid_argument, naming
// the option and an example, otherwise.
boost::json::array phases_option(const std::string& text);

// Every profile command (the subcommand is in a.positional).
int cmd_profiles(const Args& a, std::ostream& out, std::ostream& err);

}  // namespace kiln::cli
