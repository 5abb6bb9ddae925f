// SPDX-License-Identifier: MIT
#include "gcp/main.h"

#include "gcp/caller.h"
#include "gcp/error.h"
#include "gcp/log.h"
#include "gcp/proc.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <cstdio>
#include <iostream>

namespace gcp {

int run_main(const std::string& tool, CLI::App& app, int argc, char** argv, const std::function<void()>& body,
             bool via_helper) {
  // A user who may run gcp-user becomes this tool run as root for itself, before any of
  // its arguments is read (the tool run as root checks them).
  if (via_helper) caller::reexec_through_helper(tool, argc, argv);
  try {
    caller::adopt_environment();
  } catch (const Error& e) {
    std::fprintf(stderr, "%s: error: %s\n%s: hint: %s\n", tool.c_str(), e.what(), tool.c_str(), e.hint().c_str());
    return static_cast<int>(e.code());
  }
  bool verbose = false;
  app.add_flag("-v,--verbose", verbose, "Log debug details to stderr");
  // -v and the tool's own options (--store) also after a subcommand
  for (auto* sub : app.get_subcommands([](CLI::App*) { return true; })) sub->fallthrough();
  app.set_version_flag("--version", std::string(tool) + " " + kVersion);
  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForAllHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForVersion& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    std::fprintf(stderr, "%s: error: %s\n%s: hint: run '%s --help'\n", tool.c_str(), e.what(), tool.c_str(),
                 tool.c_str());
    return static_cast<int>(Exit::kUsage);
  }
  log::setup(tool, verbose);
  if (verbose) {
    std::string args;
    for (int i = 0; i < argc; ++i) args += (i ? " " : "") + std::string(argv[i]);
    spdlog::debug("gcp {} on kernel {}: {}", kVersion, proc::kernel_release(), args);
  }
  try {
    body();
    return 0;
  } catch (const Error& e) {
    spdlog::error("{}", e.what());
    if (!e.hint().empty()) std::fprintf(stderr, "%s: hint: %s\n", tool.c_str(), e.hint().c_str());
    return static_cast<int>(e.code());
  } catch (const std::exception& e) {
    spdlog::error("{}", e.what());
    return static_cast<int>(Exit::kFailed);
  }
}

void print_json(const std::string& json_text) { std::cout << json_text << std::endl; }

void print_table(const std::vector<std::vector<std::string>>& rows) {
  std::vector<size_t> width;
  for (const auto& row : rows) {
    width.resize(std::max(width.size(), row.size()));
    for (size_t i = 0; i < row.size(); ++i) width[i] = std::max(width[i], row[i].size());
  }
  for (const auto& row : rows) {
    std::string line;
    for (size_t i = 0; i < row.size(); ++i) {
      line += row[i];
      if (i + 1 < row.size()) line += std::string(width[i] - row[i].size() + 2, ' ');
    }
    std::cout << line << "\n";
  }
  std::cout.flush();
}

}  // namespace gcp
