// The kiln command line: argument parsing, help texts and one handler per subcommand.
#pragma once

#include <ostream>
#include <string>
#include <vector>

namespace kiln::cli {

// Runs one command line (without the program name); returns the process exit code.
int run(const std::vector<std::string>& args, std::ostream& out, std::ostream& err);

}  // namespace kiln::cli
