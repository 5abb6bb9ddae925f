// SPDX-License-Identifier: MIT
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <vector>

// What the CRIU translib reads from CRIU's own images (protobuf entries after a magic
// header; criu/images/*.proto): only what a restore needs and gcp cannot learn another way.
namespace gcp::criu {

/// A TCP connection of a dump: a socket with a peer port. CRIU restores it in repair
/// mode and, when the restore ends, deletes the iptables rules that locked it.
struct TcpConnection {
  std::string family;  ///< "ipv4" or "ipv6" (an IPv4-mapped IPv6 socket is "ipv4", as CRIU locks it)
  std::string src;     ///< the local address, e.g. "127.0.0.1"
  uint16_t src_port = 0;
  std::string dst;  ///< the peer's address
  uint16_t dst_port = 0;

  bool operator==(const TcpConnection&) const = default;
};

/// The TCP connections among the entries of a files.img. Throws std::runtime_error
/// when the image is not one CRIU wrote (bad magic, a truncated entry).
std::vector<TcpConnection> tcp_connections(std::span<const uint8_t> files_img);

}  // namespace gcp::criu
