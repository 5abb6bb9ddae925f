// SPDX-License-Identifier: MIT
// The criu translib's relay (translibs/criu/relay.h) between `criu restore --stream`,
// played here as CRIU plays it (criu/img-streamer.c), and an image source that speaks
// gcp's protocol (translib.h), played here by the test.
#include "../../translibs/criu/relay.h"

#include "gcp/translib.h"
#include "testing.h"

#include <doctest/doctest.h>
#include <nlohmann/json.hpp>

#include <fcntl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstring>
#include <functional>
#include <map>
#include <optional>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

using gcp::criu::StreamRelay;
using gcp::testing::TempDir;
using json = nlohmann::json;

namespace {

int connect_to(const std::string& path) {
  int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  REQUIRE(fd >= 0);
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::strncpy(addr.sun_path, path.c_str(), sizeof addr.sun_path - 1);
  REQUIRE(::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0);
  return fd;
}

ino_t inode_of(int fd) {
  struct stat st {};
  REQUIRE(::fstat(fd, &st) == 0);
  return st.st_ino;
}

// `criu restore --stream`: per image its name ([u32 length][protobuf: 1 = filename]),
// the answer whether it exists ([u32 length][protobuf: 1 = exists]), then the write end
// of a pipe, passed over, to read it from.
class Criu {
 public:
  explicit Criu(const std::string& dir) : sock_(connect_to(dir + "/" + StreamRelay::kSocketName)) {}
  ~Criu() { ::close(sock_); }

  void send(const std::string& bytes) {
    REQUIRE(::send(sock_, bytes.data(), bytes.size(), MSG_NOSIGNAL) == static_cast<ssize_t>(bytes.size()));
  }

  static std::string request(const std::string& name) {
    std::string msg = "\x0a" + std::string(1, static_cast<char>(name.size())) + name;
    uint32_t len = static_cast<uint32_t>(msg.size());
    return std::string(reinterpret_cast<const char*>(&len), 4) + msg;
  }

  // True when the relay has closed the connection (what CRIU then sees: its restore fails).
  bool closed() {
    char c;
    return ::recv(sock_, &c, 1, 0) == 0;
  }

  // The image, or nullopt when it does not exist.
  std::optional<std::string> fetch(const std::string& name) {
    send(request(name));
    uint8_t reply[6];
    REQUIRE(::recv(sock_, reply, sizeof reply, MSG_WAITALL) == 6);
    CHECK(reply[0] == 2);
    CHECK(reply[4] == 0x08);
    if (reply[5] == 0) return std::nullopt;
    int fds[2];
    REQUIRE(::pipe2(fds, O_CLOEXEC) == 0);
    pipes.push_back(inode_of(fds[0]));
    gcp::testing::send_fd(sock_, fds[1]);
    ::close(fds[1]);
    std::string out;
    char buf[65536];
    for (ssize_t r; (r = ::read(fds[0], buf, sizeof buf)) > 0;) out.append(buf, static_cast<size_t>(r));
    ::close(fds[0]);
    return out;
  }

  std::vector<ino_t> pipes;  ///< the pipes it read from

 private:
  int sock_;
};

// An image source of the test's own: answers each request line with what `answer`
// says and, when that says the image exists, writes `images[name]` into the pipe it
// gets, noting the pipe's inode.
class Source {
 public:
  using Answer = std::function<std::string(const std::string& line)>;

  Source(const std::string& path, std::map<std::string, std::string> images, Answer answer = {})
      : path_(path), images_(std::move(images)), answer_(std::move(answer)) {
    listen_ = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    REQUIRE(listen_ >= 0);
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    std::strncpy(addr.sun_path, path.c_str(), sizeof addr.sun_path - 1);
    REQUIRE(::bind(listen_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0);
    REQUIRE(::listen(listen_, 1) == 0);
    thread_ = std::thread([this] { serve(); });
  }
  ~Source() {
    // Wakes an accept() that nobody came to.
    int knock = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    std::strncpy(addr.sun_path, path_.c_str(), sizeof addr.sun_path - 1);
    (void)::connect(knock, reinterpret_cast<sockaddr*>(&addr), sizeof addr);
    ::close(knock);
    thread_.join();
    ::close(listen_);
  }

  const std::string& path() const { return path_; }
  std::vector<std::string> asked;  ///< request lines, as they came
  std::vector<ino_t> pipes;        ///< the pipes it wrote into

 private:
  void serve() {
    int conn = ::accept4(listen_, nullptr, nullptr, SOCK_CLOEXEC);
    if (conn < 0) return;
    for (;;) {
      std::string line;
      char c;
      ssize_t r;
      while ((r = ::recv(conn, &c, 1, 0)) == 1 && c != '\n') line += c;
      if (r != 1) break;  // the relay is done
      asked.push_back(line);
      json request = json::parse(line, nullptr, false);
      std::string name = request.is_object() ? request.value("image", "") : "";
      auto it = images_.find(name);
      std::string reply = answer_ ? answer_(line)
                                  : (it == images_.end() ? std::string(R"({"exists":false})")
                                                         : json{{"exists", true}, {"size", it->second.size()}}.dump());
      reply += "\n";
      if (::send(conn, reply.data(), reply.size(), MSG_NOSIGNAL) != static_cast<ssize_t>(reply.size())) break;
      json said = json::parse(reply, nullptr, false);
      if (!said.is_object() || !said.contains("exists") || said["exists"] != true) continue;
      int pipe = gcp::testing::receive_fd(conn);
      if (pipe < 0) break;
      pipes.push_back(inode_of(pipe));
      const std::string& data = it != images_.end() ? it->second : std::string();
      for (size_t done = 0; done < data.size();) {
        ssize_t w = ::write(pipe, data.data() + done, data.size() - done);
        if (w <= 0) break;
        done += static_cast<size_t>(w);
      }
      ::close(pipe);
    }
    ::close(conn);
  }

  std::string path_;
  std::map<std::string, std::string> images_;
  Answer answer_;
  int listen_ = -1;
  std::thread thread_;
};

}  // namespace

TEST_CASE("the relay answers criu as the image source does and hands criu's own pipe on to it") {
  TempDir tmp;
  std::string pages(3 << 20, 'p');
  Source source((tmp.path() / "source.sock").string(), {{"core-1.img", "core"}, {"pages-1.img", pages}});
  StreamRelay relay(tmp.path().string(), source.path());
  {
    Criu criu(tmp.path().string());
    CHECK(criu.fetch("core-1.img") == "core");
    CHECK(criu.fetch("inventory.img") == std::nullopt);
    CHECK(criu.fetch("pages-1.img") == pages);
    // No byte passed through the relay: the source wrote into the very pipes criu read.
    CHECK(source.pipes == criu.pipes);
  }
  CHECK(relay.finish() == "");
  CHECK(source.pipes.size() == 2);
  CHECK(source.asked == std::vector<std::string>{R"({"image":"core-1.img"})", R"({"image":"inventory.img"})",
                                                 R"({"image":"pages-1.img"})"});
  CHECK_FALSE(std::filesystem::exists(tmp.path() / StreamRelay::kSocketName));
}

TEST_CASE("the relay ends criu's restore at a request it cannot read, and says why") {
  struct Case {
    std::string sent;
    std::string says;
  };
  auto length = [](uint32_t n) { return std::string(reinterpret_cast<const char*>(&n), 4); };
  for (const auto& c : std::vector<Case>{
           {length(0), "request of 0 bytes"},
           {length(5000), "request of 5000 bytes"},
           {length(3) + "\x12\x01x", "cannot read"},         // field 2, not 1
           {length(4) + "\x0a\x05xy", "cannot read"},        // a name longer than its message
           {length(2) + "\x0a\x80", "cannot read"},          // a varint cut off
           {length(8) + "\x0a\x02", "middle of a message"},  // the rest never comes
       }) {
    CAPTURE(c.says);
    TempDir tmp;
    Source source((tmp.path() / "source.sock").string(), {});
    StreamRelay relay(tmp.path().string(), source.path());
    {
      Criu criu(tmp.path().string());
      criu.send(c.sent);
      if (c.says != "middle of a message") CHECK(criu.closed());
    }
    CHECK_CONTAINS(relay.finish(), c.says);
    CHECK(source.asked.empty());
  }
}

TEST_CASE("the relay ends criu's restore at an answer of the image source it cannot read, and says why") {
  for (const auto& [answer, says] : std::vector<std::pair<std::string, std::string>>{
           {"yes", "answered 'yes' for image 'core-1.img'"},
           {R"({"exists":"yes"})", "not {\"exists\": true|false"},
           {R"({"exists":true,"size":-1})", "not {\"exists\": true|false"},
           {R"(["exists"])", "not {\"exists\": true|false"},
           {std::string(GCP_IMAGE_SOURCE_MAX_LINE + 1, ' '), "longer than 4096 bytes"},
       }) {
    CAPTURE(says);
    TempDir tmp;
    Source source((tmp.path() / "source.sock").string(), {{"core-1.img", "core"}},
                  [a = answer](const std::string&) { return a; });
    StreamRelay relay(tmp.path().string(), source.path());
    {
      Criu criu(tmp.path().string());
      criu.send(Criu::request("core-1.img"));
      CHECK(criu.closed());  // no answer: criu's restore fails
    }
    CHECK_CONTAINS(relay.finish(), says);
  }
}

TEST_CASE("the relay ends at once when criu never connects, and refuses a source or a socket path it cannot use") {
  TempDir tmp;
  {
    Source source((tmp.path() / "source.sock").string(), {});
    StreamRelay relay(tmp.path().string(), source.path());
    CHECK(relay.finish() == "");
  }
  CHECK_FALSE(std::filesystem::exists(tmp.path() / StreamRelay::kSocketName));
  std::string missing = (tmp.path() / "nobody.sock").string();
  try {
    StreamRelay relay(tmp.path().string(), missing);
    FAIL("a relay to no source started");
  } catch (const std::runtime_error& e) {
    CHECK_CONTAINS(e.what(), "connecting to gcp's image source at '" + missing + "'");
  }
  std::string deep = "/tmp/" + std::string(100, 'd');
  try {
    StreamRelay relay(deep, missing);
    FAIL("a relay started at a path too long for a socket");
  } catch (const std::runtime_error& e) {
    CHECK_CONTAINS(e.what(), "connecting to gcp's image source");  // the source is tried first
  }
  Source source((tmp.path() / "source-2.sock").string(), {});
  try {
    StreamRelay relay(deep, source.path());
    FAIL("a relay started at a path too long for a socket");
  } catch (const std::runtime_error& e) {
    CHECK_CONTAINS(e.what(), "'" + deep + "/streamer-serve.sock' is too long for a unix socket path");
  }
}

TEST_CASE("criu's image-streamer request is read strictly") {
  auto name = [](const std::string& msg) {
    return gcp::criu::streamer_filename({reinterpret_cast<const uint8_t*>(msg.data()), msg.size()});
  };
  CHECK(name("\x0a\x08"
             "core.img") == "core.img");
  std::string long_name(200, 'n');
  CHECK(name("\x0a\xc8\x01" + long_name) == long_name);  // a two-byte length
  for (std::string bad : {std::string(), std::string("\x0a"), std::string("\x0a\x00", 2),
                          std::string("\x0a\x03"
                                      "ab"),
                          std::string("\x0a\x01"
                                      "ab"),
                          std::string("\x0a\x02"
                                      "a\0",
                                      4),
                          std::string("\x08\x01")}) {
    CAPTURE(bad.size());
    CHECK_THROWS_AS(name(bad), std::runtime_error);
  }
}
