// kiln — the single binary: serve, plugins, nodes, gates, config and tools.
#include <iostream>
#include <string>
#include <vector>

#include "cli/commands.hpp"

int main(int argc, char** argv) {
  std::vector<std::string> args(argv + 1, argv + argc);
  return kiln::cli::run(args, std::cout, std::cerr);
}
