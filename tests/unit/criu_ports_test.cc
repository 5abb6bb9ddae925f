// SPDX-License-Identifier: MIT
// The criu translib's account of a port a restore could not bind (translibs/criu/ports.h).
#include "../../translibs/criu/ports.h"

#include <doctest/doctest.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <string>

using namespace gcp::criu;

namespace {

const char* kLog =
    "(00.386766)      2: \tReceive fd for 0\n"
    "(00.386800)      3: inet: \tRestore: family AF_INET    type SOCK_DGRAM    proto IPPROTO_UDP      port 9 "
    "state TCP_CLOSE       src_addr 10.0.0.1\n"
    "(00.386830)      2: inet: \tRestore: family AF_INET    type SOCK_STREAM    proto IPPROTO_TCP      port 45678 "
    "state TCP_LISTEN       src_addr 127.0.0.1\n"
    "(00.386873)      1: \t\tCreate fd for 0\n"
    "(00.386956)      2: Error (criu/sk-inet.c:1059): inet: Can't bind inet socket (id 29): Address already in use\n";

// A TCP socket listening on 127.0.0.1 at a port the kernel picks.
struct Listener {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  unsigned port = 0;
  Listener() {
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof(a);
    REQUIRE(::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)) == 0);
    REQUIRE(::listen(fd, 1) == 0);
    REQUIRE(::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len) == 0);
    port = ntohs(a.sin_port);
  }
  ~Listener() { ::close(fd); }
};

}  // namespace

TEST_CASE("bind_failure: the socket the failing task restored last, not another task's") {
  BindFailure b = bind_failure(kLog);
  CHECK(b.proto == "tcp");
  CHECK(b.addr == "127.0.0.1");
  CHECK(b.port == 45678);
}

TEST_CASE("bind_failure: nothing for a log without a bind error, or without the socket's line") {
  CHECK(bind_failure("(00.1) 2: Error (criu/files.c:1): Can't open file\n").port == 0);
  CHECK(bind_failure("(00.1) 2: Error (criu/sk-inet.c:1059): inet: Can't bind inet socket (id 1): x\n").port == 0);
  CHECK(bind_failure("").port == 0);
  std::string garbage(4096, '\xff');
  CHECK(bind_failure(garbage + "\n)))::: Error ( Can't bind inet socket\n").port == 0);
}

TEST_CASE("port_holders: finds this process on a port it listens on, and nobody on a free one") {
  Listener l;
  auto holders = port_holders("tcp", l.port);
  REQUIRE(holders.size() == 1);
  CHECK(holders[0].pid == ::getpid());
  CHECK(holders[0].local == "127.0.0.1:" + std::to_string(l.port));
  CHECK(!holders[0].comm.empty());
  CHECK(port_holders("udp", l.port).empty());
  unsigned free_port = l.port;
  ::close(l.fd);
  l.fd = -1;
  CHECK(port_holders("tcp", free_port).empty());
}

TEST_CASE("explain_bind_failure: names the holder, and stays silent on other errors") {
  Listener l;
  std::string log = kLog;
  log.replace(log.find("45678"), 5, std::to_string(l.port));
  PortVerdict v = explain_bind_failure("inet: Can't bind inet socket (id 29): Address already in use", log);
  CHECK(v.detail.find("127.0.0.1:" + std::to_string(l.port) + "/tcp, held by pid " + std::to_string(::getpid())) !=
        std::string::npos);
  CHECK(v.hint.find("stop what holds") != std::string::npos);
  CHECK(explain_bind_failure("Can't open file", log).detail.empty());
}
