// A main() for libFuzzer targets in builds without libFuzzer (g++, ASan+UBSan): replays every
// file (or every file in every directory) named on the command line, then a fixed number of
// deterministic pseudo-random inputs, so each fuzz target doubles as a regression test.
// Threading: single-threaded. Exit code 0 when every input returned; a crash is the failure.

#include <dirent.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iterator>
#include <random>
#include <string>
#include <vector>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size);

namespace {

std::string ReadWholeFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

void CollectInputs(const std::string& path, std::vector<std::string>* inputs) {
  if (DIR* dir = opendir(path.c_str())) {
    while (dirent* entry = readdir(dir)) {
      std::string name = entry->d_name;
      if (name == "." || name == "..") continue;
      CollectInputs(path + "/" + name, inputs);
    }
    closedir(dir);
    return;
  }
  inputs->push_back(ReadWholeFile(path));
}

void RunOne(const std::string& input) {
  LLVMFuzzerTestOneInput(reinterpret_cast<const uint8_t*>(input.data()), input.size());
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<std::string> corpus;
  for (int i = 1; i < argc; ++i) CollectInputs(argv[i], &corpus);
  for (const std::string& input : corpus) RunOne(input);

  // Mutations of the corpus (byte flips, splices, truncations) plus pure noise. Fixed seed:
  // a failure here reproduces exactly.
  const char* runs_env = std::getenv("PH_FUZZ_RUNS");
  const int runs = runs_env ? std::atoi(runs_env) : 20000;
  std::mt19937_64 rng(0x9057a57e);
  for (int i = 0; i < runs; ++i) {
    std::string input;
    if (!corpus.empty() && (rng() % 4) != 0) {
      input = corpus[rng() % corpus.size()];
      const int edits = 1 + rng() % 8;
      for (int e = 0; e < edits; ++e) {
        switch (rng() % 4) {
          case 0:
            if (!input.empty()) input[rng() % input.size()] = static_cast<char>(rng());
            break;
          case 1:
            if (!input.empty()) input.resize(rng() % input.size());
            break;
          case 2:
            input.insert(rng() % (input.size() + 1), corpus[rng() % corpus.size()]);
            break;
          default:
            input.insert(rng() % (input.size() + 1), 1, "\r\n. :*"[rng() % 6]);
        }
      }
    } else {
      input.resize(rng() % 512);
      for (char& c : input) c = static_cast<char>(rng());
    }
    RunOne(input);
  }
  std::printf("replayed %zu corpus inputs and %d generated inputs\n", corpus.size(), runs);
  return 0;
}
