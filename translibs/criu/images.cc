// SPDX-License-Identifier: MIT
#include "images.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <cstring>
#include <optional>
#include <stdexcept>

namespace gcp::criu {

namespace {

constexpr uint32_t kCommonMagic = 0x54564319;  // IMG_COMMON_MAGIC, before every image's own
constexpr uint32_t kFilesMagic = 0x56303138;   // FILES_MAGIC

// The protobuf wire format, just enough of it to walk messages and skip what is not read.
class Wire {
 public:
  explicit Wire(std::span<const uint8_t> data) : p_(data.data()), end_(data.data() + data.size()) {}

  bool done() const { return p_ == end_; }

  uint64_t varint() {
    uint64_t v = 0;
    for (int shift = 0; shift < 64; shift += 7) {
      if (p_ == end_) throw std::runtime_error("a varint runs past its entry");
      uint8_t b = *p_++;
      v |= static_cast<uint64_t>(b & 0x7f) << shift;
      if (!(b & 0x80)) return v;
    }
    throw std::runtime_error("a varint longer than 10 bytes");
  }

  std::span<const uint8_t> bytes() {
    uint64_t len = varint();
    if (len > static_cast<uint64_t>(end_ - p_)) throw std::runtime_error("a field runs past its entry");
    std::span<const uint8_t> out(p_, static_cast<size_t>(len));
    p_ += len;
    return out;
  }

  void skip(uint32_t wire_type) {
    switch (wire_type) {
      case 0:
        varint();
        return;
      case 1:
        advance(8);
        return;
      case 2:
        bytes();
        return;
      case 5:
        advance(4);
        return;
      default:
        throw std::runtime_error("wire type " + std::to_string(wire_type) + " (groups are not used by CRIU)");
    }
  }

 private:
  void advance(size_t n) {
    if (n > static_cast<size_t>(end_ - p_)) throw std::runtime_error("a field runs past its entry");
    p_ += n;
  }

  const uint8_t* p_;
  const uint8_t* end_;
};

// A repeated uint32, packed or not.
void add_uint32s(Wire& w, uint32_t wire_type, std::vector<uint32_t>& into) {
  if (wire_type == 0) {
    into.push_back(static_cast<uint32_t>(w.varint()));
  } else if (wire_type == 2) {
    Wire packed(w.bytes());
    while (!packed.done()) into.push_back(static_cast<uint32_t>(packed.varint()));
  } else {
    w.skip(wire_type);
  }
}

// CRIU keeps an address as the u32 words of in_addr / in6_addr, in memory order.
std::string address(int family, const uint32_t* words) {
  char text[INET6_ADDRSTRLEN];
  if (!::inet_ntop(family, words, text, sizeof text)) throw std::runtime_error("an address inet_ntop cannot print");
  return text;
}

// inet_sk_entry: family = 3, proto = 5, src_port = 7, dst_port = 8, src_addr = 11, dst_addr = 12.
std::optional<TcpConnection> inet_socket(std::span<const uint8_t> msg) {
  Wire w(msg);
  uint64_t family = 0, proto = 0, src_port = 0, dst_port = 0;
  std::vector<uint32_t> src, dst;
  while (!w.done()) {
    uint64_t key = w.varint();
    auto field = static_cast<uint32_t>(key >> 3), type = static_cast<uint32_t>(key & 7);
    if (type == 0 && (field == 3 || field == 5 || field == 7 || field == 8)) {
      uint64_t v = w.varint();
      (field == 3 ? family : field == 5 ? proto : field == 7 ? src_port : dst_port) = v;
    } else if (field == 11 || field == 12) {
      add_uint32s(w, type, field == 11 ? src : dst);
    } else {
      w.skip(type);
    }
  }
  // CRIU's own test (tcp_connection() in criu/sk-inet.c): TCP with a peer port.
  if (proto != IPPROTO_TCP || dst_port == 0) return std::nullopt;
  if (src_port > 65535 || dst_port > 65535) throw std::runtime_error("a TCP port above 65535");
  TcpConnection c;
  c.src_port = static_cast<uint16_t>(src_port);
  c.dst_port = static_cast<uint16_t>(dst_port);
  if (family == AF_INET && src.size() == 1 && dst.size() == 1) {
    c.family = "ipv4";
    c.src = address(AF_INET, src.data());
    c.dst = address(AF_INET, dst.data());
  } else if (family == AF_INET6 && src.size() == 4 && dst.size() == 4) {
    if (dst[2] == htonl(0x0000ffff)) {  // IPv4-mapped: CRIU locks it with iptables, not ip6tables
      c.family = "ipv4";
      c.src = address(AF_INET, &src[3]);
      c.dst = address(AF_INET, &dst[3]);
    } else {
      c.family = "ipv6";
      c.src = address(AF_INET6, src.data());
      c.dst = address(AF_INET6, dst.data());
    }
  } else {
    throw std::runtime_error("a TCP socket of family " + std::to_string(family) + " with " +
                             std::to_string(src.size()) + "/" + std::to_string(dst.size()) + " address words");
  }
  return c;
}

uint32_t u32_at(std::span<const uint8_t> data, size_t off) {
  uint32_t v;
  std::memcpy(&v, data.data() + off, sizeof v);
  return v;
}

}  // namespace

std::vector<TcpConnection> tcp_connections(std::span<const uint8_t> files_img) {
  if (files_img.size() < 8 || u32_at(files_img, 0) != kCommonMagic || u32_at(files_img, 4) != kFilesMagic) {
    throw std::runtime_error("not a files.img of CRIU (its magic does not match)");
  }
  std::vector<TcpConnection> out;
  for (size_t off = 8; off < files_img.size();) {
    if (files_img.size() - off < 4) throw std::runtime_error("an entry's size is cut off");
    uint32_t len = u32_at(files_img, off);
    off += 4;
    if (len > files_img.size() - off) throw std::runtime_error("an entry is cut off");
    // file_entry: isk = 4
    Wire w(files_img.subspan(off, len));
    off += len;
    while (!w.done()) {
      uint64_t key = w.varint();
      auto field = static_cast<uint32_t>(key >> 3), type = static_cast<uint32_t>(key & 7);
      if (field == 4 && type == 2) {
        if (auto c = inet_socket(w.bytes())) out.push_back(std::move(*c));
      } else {
        w.skip(type);
      }
    }
  }
  return out;
}

}  // namespace gcp::criu
