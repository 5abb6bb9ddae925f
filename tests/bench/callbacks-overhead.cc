// SPDX-License-Identifier: MIT
// Benchmark (a report, not a timed test): what delivering one callback event costs gcp
// per unit, by how the unit answers. "no endpoint" is a job from before callbacks;
// "no socket file" and "stale socket file" are units whose application does not use
// callbacks (one connect attempt each); "listening client" is gcp/callbacks.h in a
// thread answering ok. Prints a Markdown table of microseconds (median, p90, max).
#include "gcp/callbacks.h"
#include "gcp/events.h"

#include <stdlib.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <string>
#include <thread>
#include <vector>

namespace events = gcp::events;
using Clock = std::chrono::steady_clock;

namespace {

constexpr int kRuns = 2000;

void row(const char* what, const gcp::manifest::Callbacks& endpoint, const char* via) {
  std::vector<double> us;
  events::Request req{events::Event::kPreCheckpoint, "bench", "main", 1, std::chrono::milliseconds(10000), {}};
  std::string got;
  for (int i = 0; i < kRuns; ++i) {
    auto t = Clock::now();
    auto r = events::deliver(endpoint, req);
    us.push_back(std::chrono::duration<double, std::micro>(Clock::now() - t).count());
    got = r.ok ? r.via : "error: " + r.message;
  }
  std::sort(us.begin(), us.end());
  std::printf("| %s | %s | %.1f | %.1f | %.1f |\n", what, got == via ? via : got.c_str(), us[us.size() / 2],
              us[us.size() * 9 / 10], us.back());
}

}  // namespace

int main() {
  char tmpl[] = "/tmp/gcp-bench-callbacks-XXXXXX";
  if (!::mkdtemp(tmpl)) return 1;
  std::string dir = tmpl, absent = dir + "/absent.sock", stale = dir + "/stale.sock", live = dir + "/live.sock";
  {
    int fd = ::socket(AF_UNIX, SOCK_STREAM, 0);
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    std::snprintf(addr.sun_path, sizeof addr.sun_path, "%s", stale.c_str());
    if (::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) return 1;
    ::close(fd);
  }
  ::setenv(GCP_CALLBACK_SOCKET_ENV, live.c_str(), 1);
  gcp_callbacks cb;
  if (gcp_callbacks_open(&cb) != 1) return 1;
  std::atomic<bool> stop{false};
  std::thread app([&] {
    while (!stop) gcp_callbacks_dispatch(&cb, 20);
  });

  std::printf(
      "# Callback delivery cost per unit and event\n\n"
      "%d deliveries of pre-checkpoint each, microseconds, on %u cores.\n\n"
      "| unit | delivered via | median | p90 | max |\n|---|---|---|---|---|\n",
      kRuns, std::thread::hardware_concurrency());
  row("no endpoint (job from before callbacks)", {}, "none");
  row("application without callbacks: no socket file", {absent, "", {}}, "none");
  row("application without callbacks: stale socket file", {stale, "", {}}, "none");
  row("listening client (gcp/callbacks.h), answers ok", {live, "", {}}, "socket");
  stop = true;
  app.join();
  gcp_callbacks_close(&cb);
  std::filesystem::remove_all(dir);
}
