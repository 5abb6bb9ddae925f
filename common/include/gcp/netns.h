// SPDX-License-Identifier: MIT
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <string>

// A unit's own network namespace: one macvlan named eth0 with the unit's IPv4 address
// and a MAC derived from it, so that the address (and the TCP connections bound to it)
// moves with the unit when it is restarted on another node. The namespace is kept by
// a bind mount at path(job, unit) on this node's /run/gcp (not /run/netns, which test
// nodes may share and where a migrating unit would meet itself).
namespace gcp::netns {

/// Where the namespace files live; a shared mount point, so that other mount
/// namespaces let go of a namespace when it is removed here.
inline constexpr const char* kDir = "/run/gcp/netns";
/// The name of the unit's device inside its namespace.
inline constexpr const char* kDevice = "eth0";

/// How a unit's network namespace is set up.
struct Config {
  std::string address;  ///< IPv4 CIDR, "10.77.0.101/24"
  std::string parent;   ///< lower device in the caller's network namespace, e.g. "eth0"
  std::string gateway;  ///< default route via this IPv4 address; empty: none
  std::string mac;      ///< the device's MAC; empty: mac_of(address)
};

/// A parsed IPv4 CIDR.
struct Cidr {
  std::array<uint8_t, 4> octets{};
  int prefix = 32;
  /// "10.77.0.101" (without the prefix).
  std::string host() const;
};

/// Parses "a.b.c.d/n" (n from 1 to 32, the prefix required); nullopt when it is not one.
std::optional<Cidr> parse_cidr(const std::string& text);
/// True for a dotted-quad IPv4 address such as a gateway ("10.77.0.1").
bool valid_ipv4(const std::string& text);
/// True for a Linux network device name: 1 to 15 characters, no '/', ':' or white space.
bool valid_device(const std::string& name);
/// True for a MAC address in the form mac_of() writes: six lowercase hex pairs with ':'.
bool valid_mac(const std::string& text);

/// Throws Error(kUsage), after `what` ("starting unit 'u' of job 'j'"), naming the first
/// malformed field of `config`: the address, gateway, parent device name or MAC.
void check(const std::string& what, const Config& config);

/// The unit's MAC: 02:67 (locally administered, unicast; 0x67 is 'g') and the four
/// octets of the IPv4 address, so the same address always has the same MAC on every
/// node and two addresses never share one. Throws Error(kUsage) for a bad address.
std::string mac_of(const std::string& cidr);

/// The namespace file of a unit: kDir/<job>/<unit>. A directory per job, because job
/// and unit names may contain '.', which would make "<job>.<unit>" ambiguous.
std::string path(const std::string& job, const std::string& unit);

/// True when the unit's namespace file exists and holds a namespace (an nsfs mount).
bool exists(const std::string& job, const std::string& unit);

/// Creates the unit's namespace at path(): a macvlan (mode bridge) on `config.parent`
/// created inside it as eth0 with the MAC, the address, lo and eth0 up, and the
/// default route via `config.gateway` if given. With `locked`, it is locked (lock())
/// before eth0 comes up, so that nothing answers for the address until unlock(): a
/// peer's retransmission that met the address before the unit's sockets are restored
/// would be answered with a reset.
/// Throws Error with a hint, leaving nothing behind, when not root (kNotPermitted), the
/// address or parent is malformed (kUsage), the parent device is missing, the address
/// is used on this node (by this network namespace or another unit's), or the unit's
/// namespace exists already (kFailed).
void create(const std::string& job, const std::string& unit, const Config& config, bool locked = false);

/// Who on this node has IPv4 address `host` already: this network namespace (naming the
/// device) or a unit's namespace other than except_job/except_unit's; nullopt when nobody.
std::optional<std::string> address_user(const std::string& host, const std::string& except_job = "",
                                        const std::string& except_unit = "");

/// Locks the namespace's network: iptables rules inside it drop every packet through
/// eth0, so that its TCP connections neither acknowledge what peers send nor answer
/// them with a reset (while the unit is dumped and killed, or not yet restored). Needs
/// iptables-restore, as CRIU's --tcp-established does.
void lock(const std::string& job, const std::string& unit);

/// Removes the rules of lock(); throws Error when they are not there.
void unlock(const std::string& job, const std::string& unit);

/// Sends gratuitous ARP for the address from eth0 inside the namespace, three times
/// 50 ms apart, so that neighbours and bridges learn at once where the address is now.
/// Several, because one broadcast is best effort: a bridge port that just came up, or
/// a full receive queue, drops it silently.
void announce(const std::string& job, const std::string& unit, const Config& config);

/// Removes the unit's namespace, if any: deletes eth0 first (a namespace lives on while
/// closing sockets hold it, and its macvlan would keep the MAC busy on the parent),
/// then unmounts and unlinks the file. Never throws; logs what it could not remove.
void remove(const std::string& job, const std::string& unit) noexcept;

/// The device named by the node's configuration: "network": {"parent": ...} in
/// $GCP_CONFIG, else /etc/gcp/gcp.json; nullopt when neither says one. Throws
/// Error(kUsage) for a file that is not JSON or a "parent" that is not a device name,
/// or when $GCP_CONFIG names a file that does not exist.
std::optional<std::string> configured_parent();

/// The device of the default IPv4 route in the caller's network namespace; nullopt
/// when there is none.
std::optional<std::string> default_route_device();

}  // namespace gcp::netns
