// SPDX-License-Identifier: MIT
// criu-rlimits.so (translibs/criu/rlimits.c), built into ../libexec/gcp: the resource
// limits of another uid's process, which criu dump reads with prlimit64, from /proc.
#include "testing.h"

#include <doctest/doctest.h>

#include <dlfcn.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <fstream>
#include <string>

namespace {

const char* kRlimits = "../libexec/gcp/criu-rlimits.so";

using SyscallFn = long (*)(long, ...);

// A child with RLIMIT_NOFILE 77/99 and RLIMIT_CORE 0/unlimited that runs as uid 65534
// (when the tests run as root) and waits.
pid_t limited_child() {
  pid_t child = ::fork();
  REQUIRE(child >= 0);
  if (child == 0) {
    rlimit files{77, 99}, core{0, RLIM_INFINITY};
    if (::setrlimit(RLIMIT_NOFILE, &files) != 0 || ::setrlimit(RLIMIT_CORE, &core) != 0) ::_exit(1);
    if (::geteuid() == 0 && (::setresgid(65534, 65534, 65534) != 0 || ::setresuid(65534, 65534, 65534) != 0))
      ::_exit(1);
    for (;;) ::pause();
  }
  // Until it has its limits and its uid.
  for (int i = 0; i < 500; ++i) {
    std::ifstream limits("/proc/" + std::to_string(child) + "/limits");
    std::string text((std::istreambuf_iterator<char>(limits)), std::istreambuf_iterator<char>());
    std::ifstream status("/proc/" + std::to_string(child) + "/status");
    std::string st((std::istreambuf_iterator<char>(status)), std::istreambuf_iterator<char>());
    if (text.find("Max open files            77 ") != std::string::npos &&
        (::geteuid() != 0 || st.find("Uid:\t65534\t65534\t65534") != std::string::npos)) {
      break;
    }
    ::usleep(10000);
  }
  return child;
}

}  // namespace

TEST_CASE("criu-rlimits.so answers criu's read of another uid's limits from /proc, and passes every other call") {
  void* lib = ::dlopen(kRlimits, RTLD_NOW | RTLD_LOCAL);
  REQUIRE_MESSAGE(lib, ::dlerror());
  auto shimmed = reinterpret_cast<SyscallFn>(::dlsym(lib, "syscall"));
  REQUIRE(reinterpret_cast<void*>(shimmed) != nullptr);
  pid_t child = limited_child();

  struct rlimit64 lim {};
  CHECK(shimmed(SYS_prlimit64, static_cast<long>(child), static_cast<long>(RLIMIT_NOFILE), 0L,
                reinterpret_cast<long>(&lim)) == 0);
  CHECK(lim.rlim_cur == 77);
  CHECK(lim.rlim_max == 99);
  CHECK(shimmed(SYS_prlimit64, static_cast<long>(child), static_cast<long>(RLIMIT_CORE), 0L,
                reinterpret_cast<long>(&lim)) == 0);
  CHECK(lim.rlim_cur == 0);
  CHECK(lim.rlim_max == RLIM64_INFINITY);
  // A change of another process's limits is not read from anywhere: it stays refused.
  struct rlimit64 lower {
    1, 1
  };
  if (::geteuid() == 0) {
    errno = 0;
    long rc = shimmed(SYS_prlimit64, static_cast<long>(child), static_cast<long>(RLIMIT_NOFILE),
                      reinterpret_cast<long>(&lower), 0L);
    CHECK((rc == 0 || errno == EPERM));  // 0 where root holds CAP_SYS_RESOURCE
  }
  // Any other call goes through as it is.
  CHECK(shimmed(SYS_getpid) == ::getpid());
  errno = 0;
  CHECK(shimmed(SYS_kill, 999999999L, 0L) == -1);
  CHECK(errno == ESRCH);

  ::kill(child, SIGKILL);
  ::waitpid(child, nullptr, 0);
  // Gone: no limits, and the kernel's error, not one of its own.
  errno = 0;
  CHECK(shimmed(SYS_prlimit64, static_cast<long>(child), static_cast<long>(RLIMIT_NOFILE), 0L,
                reinterpret_cast<long>(&lim)) == -1);
  CHECK(errno == ESRCH);
  ::dlclose(lib);
}
