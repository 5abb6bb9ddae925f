// SPDX-License-Identifier: MIT
// The criu translib's reader of files.img (translibs/criu/images.h), on entries encoded
// here as CRIU encodes them (protobuf, criu/images/fdinfo.proto and sk-inet.proto).
#include "../../translibs/criu/images.h"

#include <doctest/doctest.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <cstring>
#include <stdexcept>
#include <string>
#include <vector>

using gcp::criu::tcp_connections;
using gcp::criu::TcpConnection;

namespace {

using Bytes = std::vector<uint8_t>;

void varint(Bytes& out, uint64_t v) {
  while (v >= 0x80) {
    out.push_back(static_cast<uint8_t>(v | 0x80));
    v >>= 7;
  }
  out.push_back(static_cast<uint8_t>(v));
}

void field_varint(Bytes& out, uint32_t field, uint64_t v) {
  varint(out, field << 3);
  varint(out, v);
}

void field_bytes(Bytes& out, uint32_t field, const Bytes& v) {
  varint(out, (field << 3) | 2);
  varint(out, v.size());
  out.insert(out.end(), v.begin(), v.end());
}

// The u32 words of an address as CRIU keeps them (in_addr / in6_addr in memory order).
std::vector<uint32_t> words(int family, const char* text) {
  uint8_t raw[16] = {};
  REQUIRE(::inet_pton(family, text, raw) == 1);
  std::vector<uint32_t> w(family == AF_INET ? 1 : 4);
  std::memcpy(w.data(), raw, w.size() * 4);
  return w;
}

struct Socket {
  uint32_t family = AF_INET, proto = IPPROTO_TCP, state = 1;  // TCP_ESTABLISHED
  std::vector<uint32_t> src, dst;
  uint32_t sport = 0, dport = 0;
  bool packed = false;
};

// An inet_sk_entry with the fields CRIU always writes, the ones not read among them.
Bytes inet_sk(const Socket& s) {
  Bytes m;
  field_varint(m, 1, 7);       // id
  field_varint(m, 2, 123456);  // ino
  field_varint(m, 3, s.family);
  field_varint(m, 4, SOCK_STREAM);
  field_varint(m, 5, s.proto);
  field_varint(m, 6, s.state);
  field_varint(m, 7, s.sport);
  field_varint(m, 8, s.dport);
  field_varint(m, 9, 2);   // flags
  field_varint(m, 10, 0);  // backlog
  for (auto [field, addr] : {std::pair{11u, &s.src}, std::pair{12u, &s.dst}}) {
    if (s.packed) {
      Bytes p;
      for (uint32_t w : *addr) varint(p, w);
      field_bytes(m, field, p);
    } else {
      for (uint32_t w : *addr) field_varint(m, field, w);
    }
  }
  field_bytes(m, 13, Bytes{0x08, 0x00});  // fown
  field_bytes(m, 14, Bytes{0x08, 0x01});  // opts
  return m;
}

// A file_entry of type INETSK (4) holding `isk`, or of another type with field `field`.
Bytes file_entry(uint32_t type, uint32_t field, const Bytes& body) {
  Bytes m;
  field_varint(m, 1, type);
  field_varint(m, 2, 9);
  field_bytes(m, field, body);
  return m;
}

Bytes image(const std::vector<Bytes>& entries) {
  Bytes out(8);
  uint32_t magic[2] = {0x54564319, 0x56303138};
  std::memcpy(out.data(), magic, 8);
  for (const auto& e : entries) {
    uint32_t len = static_cast<uint32_t>(e.size());
    const auto* p = reinterpret_cast<const uint8_t*>(&len);
    out.insert(out.end(), p, p + 4);
    out.insert(out.end(), e.begin(), e.end());
  }
  return out;
}

}  // namespace

TEST_CASE("files.img: a connected TCP socket is found, listening and UDP sockets and other files are not") {
  Socket conn{.src = words(AF_INET, "127.0.0.1"), .dst = words(AF_INET, "10.1.2.3"), .sport = 40122, .dport = 5000};
  Socket listening{.state = 10, .src = words(AF_INET, "0.0.0.0"), .dst = words(AF_INET, "0.0.0.0"), .sport = 5000};
  Socket udp{.proto = IPPROTO_UDP,
             .src = words(AF_INET, "127.0.0.1"),
             .dst = words(AF_INET, "127.0.0.1"),
             .sport = 53,
             .dport = 9};
  auto img =
      image({file_entry(1, 3, Bytes{0x08, 0x01, 0x12, 0x02, 'a', 'b'}),  // a regular file
             file_entry(4, 4, inet_sk(listening)), file_entry(4, 4, inet_sk(conn)), file_entry(4, 4, inet_sk(udp))});
  auto found = tcp_connections(img);
  REQUIRE(found.size() == 1);
  CHECK(found[0] == TcpConnection{"ipv4", "127.0.0.1", 40122, "10.1.2.3", 5000});
}

TEST_CASE("files.img: IPv6 connections, IPv4-mapped ones as IPv4, and packed addresses") {
  Socket v6{.family = AF_INET6,
            .src = words(AF_INET6, "fd00::5"),
            .dst = words(AF_INET6, "fd00::7"),
            .sport = 1,
            .dport = 65535,
            .packed = true};
  Socket mapped{.family = AF_INET6,
                .src = words(AF_INET6, "::ffff:127.0.0.1"),
                .dst = words(AF_INET6, "::ffff:127.0.0.2"),
                .sport = 33059,
                .dport = 51962};
  auto found = tcp_connections(image({file_entry(4, 4, inet_sk(v6)), file_entry(4, 4, inet_sk(mapped))}));
  REQUIRE(found.size() == 2);
  CHECK(found[0] == TcpConnection{"ipv6", "fd00::5", 1, "fd00::7", 65535});
  CHECK(found[1] == TcpConnection{"ipv4", "127.0.0.1", 33059, "127.0.0.2", 51962});
}

TEST_CASE("files.img: an image without sockets has no connections") {
  CHECK(tcp_connections(image({})).empty());
  CHECK(tcp_connections(image({file_entry(2, 18, Bytes{0x08, 0x01})})).empty());  // a pipe
}

TEST_CASE("files.img: a wrong magic, a cut entry or a cut field is refused") {
  Socket conn{.src = words(AF_INET, "127.0.0.1"), .dst = words(AF_INET, "127.0.0.1"), .sport = 1, .dport = 2};
  auto good = image({file_entry(4, 4, inet_sk(conn))});
  REQUIRE(tcp_connections(good).size() == 1);

  auto other = good;
  other[4] ^= 1;  // another image's magic
  CHECK_THROWS_WITH_AS(tcp_connections(other), doctest::Contains("magic"), std::runtime_error);

  auto cut = good;
  cut.resize(cut.size() - 3);
  CHECK_THROWS_WITH_AS(tcp_connections(cut), doctest::Contains("cut off"), std::runtime_error);

  // The entry's length says less than its socket needs: the socket runs past it.
  auto short_entry = good;
  short_entry[8] = static_cast<uint8_t>(short_entry[8] - 5);
  short_entry.resize(short_entry.size() - 5);
  CHECK_THROWS_AS(tcp_connections(short_entry), std::runtime_error);

  CHECK_THROWS_AS(tcp_connections(Bytes{0x19, 0x43}), std::runtime_error);
}
