// `kiln profiles list|show|versions|import|export|archive|restore` and `kiln devices profile`:
// the roast profile library, against this deployment's storage or a server (--server).
#pragma once

#include <map>
#include <ostream>
#include <string>

#include "cli/args.hpp"

namespace kiln::cli {

const std::map<std::string, std::string>& profile_help();

// Every profile command (the subcommand is in a.positional).
int cmd_profiles(const Args& a, std::ostream& out, std::ostream& err);

}  // namespace kiln::cli
