// SPDX-License-Identifier: MIT
#include "gcp/main.h"
#include "gcp/names.h"
#include "isolate.h"

int main(int argc, char** argv) {
  CLI::App app{
      "Start job units in isolation (own PID, mount, IPC, UTS and network namespaces, own cgroup) and manage them"};
  app.require_subcommand(1);
  gcp::isolate::Options opt;
  app.add_option(gcp::names::kOptStore, opt.store, gcp::names::kStoreHelp);

  auto* run = app.add_subcommand("run", "Start COMMAND as a unit of a job; print the Job manifest");
  run->add_option(gcp::names::kOptJob, opt.job, "Job name")->required();
  run->add_option(gcp::names::kOptUnit, opt.unit, "Unit name (default: main)");
  run->add_option(gcp::names::kOptKeep, opt.keep, "Keep this many committed checkpoints of the job (policy.keep)")
      ->check(CLI::PositiveNumber);
  run->add_option(gcp::names::kOptCallbackTimeout, opt.callback_timeout_ms,
                  "Milliseconds each unit has to answer a callback event (policy.callbackTimeoutMs; default " +
                      std::to_string(gcp::names::kDefaultCallbackDeadline.count()) + ")")
      ->check(CLI::Range(1, 86400000));
  run->add_option(gcp::names::kOptHooks, opt.hooks,
                  "Directory of executables run on each callback event of the unit (gcp-callbacks(7))");
  run->add_option(gcp::names::kOptPolicy, opt.policy,
                  "The job's checkpoint policy: adaptive (the default), daly, young or fixed, with settings: "
                  "fixed,interval=10m | adaptive,deadline=+12h,max-restarts=3,spares=n2+n3 (gcp-policy(7))");
  run->add_option("--node", opt.node, "Start the unit on this node, through its launcher (gcp-launchers(7))");
  run->add_option(gcp::names::kOptLauncher, opt.launcher,
                  "How the job's nodes are reached: local, ssh or srun (recorded in the Job manifest; default: "
                  "/etc/gcp/gcp.json)")
      ->check(CLI::IsMember({"local", "ssh", "srun"}));
  run->add_option(gcp::names::kOptAddress, opt.address,
                  "Give the unit a network namespace of its own with this IPv4 address (CIDR, e.g. 10.77.0.101/24), "
                  "which moves with it on restart");
  run->add_option(gcp::names::kOptVia, opt.via,
                  "Lower device of the unit's macvlan (default: network.parent of $GCP_CONFIG or /etc/gcp/gcp.json, "
                  "else the device of the default route)")
      ->needs(gcp::names::kOptAddress);
  run->add_option(gcp::names::kOptGateway, opt.gateway, "Default route of the unit's network namespace")
      ->needs(gcp::names::kOptAddress);
  run->add_option(gcp::names::kOptShare, opt.share,
                  "Share these namespaces with the node instead of giving the unit its own: ipc, uts, net "
                  "(comma-separated)")
      ->delimiter(',')
      ->allow_extra_args(false)
      ->check(CLI::IsMember({"ipc", "uts", "net"}))
      ->excludes(gcp::names::kOptAddress);
  run->add_flag(gcp::names::kOptUncoordinated, opt.uncoordinated,
                "The job's units are checkpointed each on its own node, not in coordinated rounds (policy.mode)");
  run->add_option("command", opt.command, "Command and arguments, after --")->required();
  run->prefix_command(false);
  auto* list = app.add_subcommand("list", "List the jobs in the store with their state");
  auto* status = app.add_subcommand("status", "Print the Job manifest of JOB with each unit's live state");
  status->add_option("job", opt.job, "Job name")->required();
  auto* kill = app.add_subcommand("kill", "Kill the units of JOB (or one unit) and mark them stopped");
  kill->add_option("job", opt.job, "Job name")->required();
  kill->add_option(gcp::names::kOptUnit, opt.kill_unit, "Only this unit");

  return gcp::run_main("gcp-isolate", app, argc, argv, [&] {
    if (*run)
      gcp::isolate::run(opt);
    else if (*list)
      gcp::isolate::list(opt);
    else if (*status)
      gcp::isolate::status(opt);
    else if (*kill)
      gcp::isolate::kill(opt);
  });
}
