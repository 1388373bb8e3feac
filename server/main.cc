// The posthaste binary: hands its arguments to the subcommand dispatcher in //server/cli.
#include <unistd.h>

#include <iostream>
#include <string>
#include <vector>

#include "server/cli/cli.h"

int main(int argc, char** argv) {
  std::ios::sync_with_stdio(false);
  std::vector<std::string> args(argv + 1, argv + argc);
  posthaste::server::cli::CliStreams io{&std::cin, &std::cout, &std::cerr, isatty(2) == 1,
                                        isatty(0) == 1};
  int status = posthaste::server::cli::RunCli(args, io);
  std::cout.flush();
  return status;
}
