/* SPDX-License-Identifier: MIT */
/*
 * The gcp translib ABI: the only header a translation library includes.
 *
 * A translib maps gcp's common checkpoint API onto one checkpointer (CRIU, ...).
 * It is a shared object that exports exactly one symbol, gcp_translib_open, and
 * speaks JSON in both directions, so it can be built apart from gcp and by
 * another compiler. No C++ exception may leave any function of this table.
 *
 * Call order, as the host (a gcp tool) drives it:
 *
 *   dlopen(".../translibs/<name>.so")
 *   d = gcp_translib_open(&host)        host tells its ABI version; the translib
 *                                       returns its descriptor (never NULL on a
 *                                       version mismatch: the host reports it)
 *   host checks d->abi_major == GCP_TRANSLIB_ABI_MAJOR, d->struct_size
 *   d->probe(req, &res, &err)           usable here? which checkpointer version?
 *   d->checkpoint(req, &res, &err)      one call per unit, maybe in parallel
 *   d->restart(req, &res, &err)         one call per unit
 *   d->check(req, &res, &err)           before a restart (1.2, when struct_size has it):
 *                                       can this node restore these images?
 *   d->free_string(res), d->free_string(err)
 *   dlclose
 *
 * Every function returns a gcp_translib_status. On GCP_TRANSLIB_OK *result holds a
 * JSON object; on GCP_TRANSLIB_ERROR and GCP_TRANSLIB_UNSUPPORTED *error holds one
 * line of text (what failed and why), optionally followed by a line
 * "hint: <what to do>". Both strings are allocated by the translib and released
 * with its free_string. The request and result schemas are in gcp-translib(7).
 *
 * Capabilities: the host decides from the descriptor's GCP_CAP_* bits, not from what
 * probe says. It sends a checkpoint request a "gate" only to a translib with
 * GCP_CAP_DUMP_GATE, and a restart request an "imageSource" only to one with
 * GCP_CAP_IMAGE_SOURCE.
 *
 * Dependencies: a checkpoint request's "needs" says in gcp's words what the unit's
 * ties need of the checkpointer ("tcp-established": an established TCP connection is
 * dumped and restored; "leader-outside": the unit's process group or session leader
 * is outside it; "unix-datagram-outside": a datagram socket is connected to one
 * outside). The translib maps each to its checkpointer's own options, answers
 * GCP_TRANSLIB_UNSUPPORTED for a need it cannot meet, and returns the options it used
 * as "options"; gcp records them with the checkpoint and passes them back, verbatim,
 * as the restart request's "options". Those come from a manifest that anyone who can
 * write the store may have written: the translib accepts only options it would have
 * used itself.
 *
 * The image source (GCP_CAP_IMAGE_SOURCE): instead of reading a unit's images back
 * into imagesDir before the restart, gcp serves them from its store while the
 * checkpointer restores, each chunk verified before its bytes go out. The restart
 * request then names a unix stream socket where gcp listens, "imageSource". The
 * translib connects once and asks for its images one after another on that
 * connection:
 *
 *   translib -> gcp   {"image":"pages-1.img"}
          a path relative to imagesDir
 *   gcp -> translib   {"exists":true,"size":4096}
      or {"exists":false}

 *   translib -> gcp   one byte carrying the write end of a pipe (SCM_RIGHTS), only
 *                     when the image exists; gcp writes the image's size bytes into it
 *                     and closes it
 *
 * Each message is one JSON object on one line of at most GCP_IMAGE_SOURCE_MAX_LINE
 * bytes, its newline included; anything else ends the connection. gcp closes a pipe
 * early at a chunk that does not verify: the restore must then fail before the
 * restored processes run. The translib closes the connection when it is done, and
 * returns from restart only once its checkpointer has stopped reading.
 *
 * Versioning: the major number changes when this table or the meaning of a call
 * changes incompatibly; host and translib must agree on it exactly. The minor
 * number grows with compatible additions (capability bits, request and result
 * fields, entries at the end of the table); struct_size tells the host which
 * entries a translib has. 1.1 added GCP_CAP_DUMP_GATE, GCP_CAP_IMAGE_SOURCE, "needs"
 * and "imageSource". 1.2 added check and the checkpoint result's "checkImages".
 *
 * Compatibility (1.2): a checkpoint result may name, in "checkImages", images it wrote
 * that describe what a node restoring them must offer (CRIU: cpuinfo.img, the CPU's
 * features). Before a restart the host writes just those into an empty directory and
 * calls check with {"imagesDir": dir}; the translib answers {"checks": [{"check":
 * "cpu", "status": "ok"|"warn"|"refuse", "reason": "..."}]}, the reason in the
 * checkpointer's own words when it refuses.
 */
#ifndef GCP_TRANSLIB_H
#define GCP_TRANSLIB_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define GCP_TRANSLIB_ABI_MAJOR 1
#define GCP_TRANSLIB_ABI_MINOR 2

/** The name of the one symbol a translib exports. */
#define GCP_TRANSLIB_OPEN_SYMBOL "gcp_translib_open"

/** The longest line of the image-source protocol, its newline included. */
#define GCP_IMAGE_SOURCE_MAX_LINE 4096

/** Outcome of a translib call. */
typedef enum gcp_translib_status {
  GCP_TRANSLIB_OK = 0,          /**< done; *result holds JSON */
  GCP_TRANSLIB_UNSUPPORTED = 1, /**< not possible with this checkpointer or kernel ("not mine") */
  GCP_TRANSLIB_ERROR = 2,       /**< tried and failed; *error says why */
} gcp_translib_status;

/** Capability bits a translib announces in its descriptor. */
enum {
  GCP_CAP_PROCESS_TREE = 1u << 0,   /**< dumps a plain process tree */
  GCP_CAP_PID_NAMESPACE = 1u << 1,  /**< dumps a whole PID namespace and restores it into a new one */
  GCP_CAP_INCREMENTAL = 1u << 2,    /**< writes only what changed since a parent image */
  GCP_CAP_TCP = 1u << 3,            /**< checkpoints established TCP connections */
  GCP_CAP_LIVE_MIGRATION = 1u << 4, /**< lazy / post-copy restore */
  GCP_CAP_LEAVE_RUNNING = 1u << 5,  /**< the unit can keep running after a dump */
  GCP_CAP_DUMP_GATE = 1u << 6,      /**< checkpoint takes a "gate": starts up before the unit is frozen (1.1) */
  GCP_CAP_IMAGE_SOURCE = 1u << 7,   /**< restart reads the images from gcp's "imageSource" (1.1) */
};

/** What the host tells a translib about itself. */
typedef struct gcp_translib_host {
  uint32_t abi_major;  /**< GCP_TRANSLIB_ABI_MAJOR of the host */
  uint32_t abi_minor;  /**< GCP_TRANSLIB_ABI_MINOR of the host */
  const char *version; /**< gcp release, e.g. "0.1.0" */
} gcp_translib_host;

/** A JSON-in, JSON-out call of a translib. */
typedef gcp_translib_status (*gcp_translib_call)(const char *request_json, char **result_json, char **error);

/** The descriptor a translib returns from gcp_translib_open. */
typedef struct gcp_translib_descriptor {
  uint32_t abi_major;           /**< GCP_TRANSLIB_ABI_MAJOR the translib was built with */
  uint32_t abi_minor;           /**< GCP_TRANSLIB_ABI_MINOR the translib was built with */
  uint32_t struct_size;         /**< sizeof(gcp_translib_descriptor) when it was built */
  const char *type;             /**< "checkpointer/<name>", e.g. "checkpointer/criu" */
  const char *name;             /**< short name, equal to the file name without ".so" */
  const char *version;          /**< the translib's own version */
  uint64_t capabilities;        /**< GCP_CAP_* bits */
  gcp_translib_call probe;      /**< is the checkpointer usable here: {} -> {checkpointer, version, path} */
  gcp_translib_call checkpoint; /**< dump one unit into a directory */
  gcp_translib_call restart;    /**< restore one unit from a directory */
  void (*free_string)(char *s); /**< releases result and error strings */
  gcp_translib_call check;      /**< can this node restore these images (1.2; may be NULL) */
} gcp_translib_descriptor;

/** Signature of the exported gcp_translib_open. */
typedef const gcp_translib_descriptor *(*gcp_translib_open_fn)(const gcp_translib_host *host);

#ifdef __cplusplus
}
#endif

#endif /* GCP_TRANSLIB_H */
