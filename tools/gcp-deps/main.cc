// SPDX-License-Identifier: MIT
#include "gcp/main.h"
#include "deps_tool.h"
#include "gcp/names.h"

int main(int argc, char** argv) {
  CLI::App app{"Show the processes of a job's units and what ties them together and to the outside"};
  gcp::deps_tool::Options opt;
  app.add_option("job", opt.job, "Job name (its units from the store), or the name of an ad-hoc job");
  app.add_option(gcp::names::kOptStore, opt.store, gcp::names::kStoreHelp);
  app.add_option(gcp::names::kOptUnit, opt.unit,
                 "Only this unit of JOB, or the name of the ad-hoc unit (default: main)");
  opt.grouping.add(app);
  app.add_option("--format", opt.format, "json (a DependencyGraph manifest), dot (graphviz) or text")
      ->check(CLI::IsMember({"json", "dot", "text"}))
      ->default_val("json");
  app.add_flag("--uncoordinated", opt.uncoordinated, "Judge ties between units as for units checkpointed one by one");
  return gcp::run_main("gcp-deps", app, argc, argv, [&] { gcp::deps_tool::run(opt); });
}
