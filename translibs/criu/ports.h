// SPDX-License-Identifier: MIT
#pragma once

#include <sys/types.h>
#include <string>
#include <vector>

// Who holds the port a restore could not bind: CRIU says only "Address already in use";
// an operator needs the address, the port and the process in the way.
namespace gcp::criu {

/// The socket a failed `criu restore` could not bind, from its log.
struct BindFailure {
  std::string proto;  ///< "tcp" or "udp"
  std::string addr;   ///< the local address, e.g. "127.0.0.1"
  unsigned port = 0;
};

/// The socket of CRIU's first "Can't bind inet socket" error: the last "inet: Restore:"
/// line the same task logged before it. Empty port when the log has no such error.
BindFailure bind_failure(const std::string& log);

/// A process holding a socket bound to `port` in the caller's network namespace.
struct PortHolder {
  pid_t pid = 0;
  std::string comm;   ///< its command name
  std::string local;  ///< "addr:port" as it is bound
};

/// The processes holding a `proto` socket on `port` (any address), from /proc/net and
/// every process's descriptors. `proc` is the procfs to read (tests point it elsewhere).
std::vector<PortHolder> port_holders(const std::string& proto, unsigned port, const std::string& proc = "/proc");

/// " (ADDR:PORT/PROTO, held by pid N 'comm')" and a hint line for a restore that failed
/// with `why` (CRIU's first error); empty strings when `why` is not a bind failure.
struct PortVerdict {
  std::string detail;
  std::string hint;
};
PortVerdict explain_bind_failure(const std::string& why, const std::string& log);

}  // namespace gcp::criu
