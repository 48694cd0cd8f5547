// The kiln command line: argument parsing, help texts and one handler per subcommand.
#pragma once

#include <ostream>
#include <string>
#include <vector>

#include <boost/json/array.hpp>

namespace kiln::cli {

// Runs one command line (without the program name); returns the process exit code.
int run(const std::vector<std::string>& args, std::ostream& out, std::ostream& err);

// The table of `kiln nodes` from the node kinds as GET /v1/nodes gives them (local and --server
// print the same).
void print_nodes(const boost::json::array& kinds, std::ostream& out);

}  // namespace kiln::cli
