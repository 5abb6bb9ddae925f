# SPDX-License-Identifier: MIT
# gcp: one plain, non-recursive Makefile. `make help` lists the targets.

PREFIX     ?= /usr/local
DESTDIR    ?=
# The tools find translibs and gcp-init relative to their own directory
# (../lib/gcp/translibs, ../libexec/gcp), so these follow PREFIX only.
BINDIR     := $(PREFIX)/bin
LIBDIR     := $(PREFIX)/lib
LIBEXECDIR := $(PREFIX)/libexec
MANDIR     ?= $(PREFIX)/share/man
comma      := ,
# A sanitizer build goes to its own directory (build/san-address-undefined), so that it
# never mixes its objects with the plain build's.
BUILD      ?= $(if $(SANITIZE),build/san-$(subst $(comma),-,$(SANITIZE)),build)

CXX      ?= g++
CC       ?= cc
CXXFLAGS ?= -O2 -g
CFLAGS   ?= -O2 -g
WARN     := -Wall -Wextra $(if $(filter true,$(CI)),-Werror)
PKGS     := spdlog libcgroup libcrypto libzstd libacl
PKG_CFLAGS = $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
PKG_LIBS   = $(shell pkg-config --libs $(PKGS) 2>/dev/null)
ALL_CXXFLAGS = -std=c++20 $(WARN) -fPIC -MMD -MP -Icommon/include $(PKG_CFLAGS) $(CXXFLAGS)
ALL_CFLAGS   = -std=gnu11 $(WARN) -fPIC -MMD -MP -Icommon/include $(CFLAGS)
LDLIBS_GCP   = $(PKG_LIBS) -ldl -pthread

# The C++ code (libgcp, the tools, the unit tests, the criu translib) only: the small C
# programs stay as they are: gcp-user is setuid (the sanitizers' runtime honours
# environment variables a user sets), criu-rlimits.so is preloaded into criu (which is
# not sanitized), gcp-init is static. Any report fails the run (-fno-sanitize-recover).
ifneq ($(SANITIZE),)
SANFLAGS     := -fsanitize=$(SANITIZE) -fno-sanitize-recover=all -fno-omit-frame-pointer
ALL_CXXFLAGS += $(SANFLAGS)
LDFLAGS      += -fsanitize=$(SANITIZE)
endif

# The translib ABI as others build against it: translib.h and gcp-translib.pc, installed
# by `make install` and, the same way, into $(SDK) for the translibs of this tree, which
# compile with what pkg-config says and without -Icommon/include.
TRANSLIB_H   := common/include/gcp/translib.h
TRANSLIB_ABI := $(shell sed -n 's/^\#define GCP_TRANSLIB_ABI_MAJOR //p' $(TRANSLIB_H)).$(shell sed -n 's/^\#define GCP_TRANSLIB_ABI_MINOR //p' $(TRANSLIB_H))
SDK          := $(BUILD)/sdk
SDK_PC       := $(SDK)/lib/pkgconfig/gcp-translib.pc
# Used in recipes only: the shell asks pkg-config once the staged files exist.
SDK_CFLAGS    = $$(PKG_CONFIG_PATH=$(SDK)/lib/pkgconfig pkg-config --cflags gcp-translib)
# install_translib_abi ROOT,PREFIX: translib.h and gcp-translib.pc for PREFIX, under ROOT.
define install_translib_abi
	install -d $(1)$(2)/include/gcp $(1)$(2)/lib/pkgconfig
	install -m 0644 $(TRANSLIB_H) $(1)$(2)/include/gcp/
	sed -e 's|@PREFIX@|$(2)|' -e 's|@ABI_VERSION@|$(TRANSLIB_ABI)|' translibs/gcp-translib.pc.in \
	  >$(1)$(2)/lib/pkgconfig/gcp-translib.pc
	chmod 0644 $(1)$(2)/lib/pkgconfig/gcp-translib.pc
endef

JOBS      ?= $(shell nproc 2>/dev/null || echo 2)
TOOLS     := gcp-isolate gcp-checkpoint gcp-restart gcp-store gcp-deps gcp-migrate gcp-slurm
LIB_SRCS  := $(wildcard common/src/*.cc)
LIB_OBJS  := $(LIB_SRCS:%.cc=$(BUILD)/obj/%.o)
LIBGCP    := $(BUILD)/lib/libgcp.a
BINS      := $(TOOLS:%=$(BUILD)/bin/%)
INIT      := $(BUILD)/libexec/gcp/gcp-init
GATE      := $(BUILD)/libexec/gcp/criu-gate
REAPER    := $(BUILD)/libexec/gcp/criu-reaper
RLIMITS   := $(BUILD)/libexec/gcp/criu-rlimits.so
USER_HELPER := $(BUILD)/libexec/gcp/gcp-user
TRANSLIBS := $(BUILD)/lib/gcp/translibs/criu.so
CRIU_OBJS := $(patsubst %.cc,$(BUILD)/obj/%.o,$(wildcard translibs/criu/*.cc))
FAKES     := $(addprefix $(BUILD)/tests/translibs/,echo.so wrong-abi.so old-abi.so failing-probe.so short-table.so)
UNIT_SRCS := $(wildcard tests/unit/*.cc)
UNIT_BIN  := $(BUILD)/tests/unit-tests
WORKLOADS := $(patsubst tests/workloads/%.c,$(BUILD)/tests/workloads/%,$(wildcard tests/workloads/*.c))

.PHONY: all help test check unit unit-build e2e bench simulate demo install man clean format deps fuzz fuzz-build fuzz-check sanitize-unit zdtm zdtm-ci
all: $(BINS) $(INIT) $(GATE) $(REAPER) $(RLIMITS) $(USER_HELPER) $(TRANSLIBS)

help:
	@echo "make [all]      build the tools, gcp-init and the CRIU translib into $(BUILD)/"
	@echo "make test       install what is missing, build, run unit and end-to-end tests"
	@echo "make unit       build and run the unit tests only (no root needed)"
	@echo "make e2e        run the end-to-end tests only (root, real CRIU)"
	@echo "make demo       install what is missing, build, checkpoint and restart a sample job"
	@echo "make simulate   the checkpoint policy against exponential and Weibull failure traces; report in $(BUILD)/bench/simulate.md"
	@echo "make bench      hash and pipe speeds; gcp-deps on 1,000 processes; gcp's store vs plain criu (256 MiB, 1 GiB); coordinated rounds on 3 test nodes; reports in $(BUILD)/bench/"
	@echo "make install    install under PREFIX=$(PREFIX) (DESTDIR honoured); as root, gcp-user setuid root for group gcp"
	@echo "make format     clang-format every C and C++ file (.clang-format)"
	@echo "make fuzz       build the libFuzzer harnesses of tests/fuzz and run each for FUZZ_SECONDS (default 600)"
	@echo "make fuzz-build build the harnesses only (clang, ASan, UBSan) into $(FUZZ_DIR)/"
	@echo "make SANITIZE=address,undefined unit   the unit tests under ASan and UBSan (in build/san-address-undefined)"
	@echo "make zdtm       CRIU's ZDTM static tests (ns flavour) through gcp and through plain CRIU, compared (root)"
	@echo "make zdtm-ci    the same for the subset in tests/zdtm/ci-tests (part of make test)"

deps:
	@scripts/install-deps.sh

# The tools' own folders hold their .cc files; everything shared is in libgcp.a.
$(BUILD)/obj/%.o: %.cc
	@mkdir -p $(@D)
	$(CXX) $(ALL_CXXFLAGS) -c $< -o $@

$(BUILD)/obj/%.o: %.c
	@mkdir -p $(@D)
	$(CC) $(ALL_CFLAGS) -c $< -o $@

$(LIBGCP): $(LIB_OBJS)
	@mkdir -p $(@D)
	rm -f $@ && ar rcs $@ $^

define tool_rule
$(BUILD)/bin/$(1): $(patsubst %.cc,$(BUILD)/obj/%.o,$(wildcard tools/$(1)/*.cc)) $(LIBGCP)
	@mkdir -p $$(@D)
	$$(CXX) $$(LDFLAGS) -o $$@ $$^ $$(LDLIBS_GCP)
endef
$(foreach t,$(TOOLS),$(eval $(call tool_rule,$(t))))

# Static: a checkpoint restores onto this very file, so it must not depend on a libc
# that an upgrade could change.
$(INIT): tools/gcp-init/init.c
	@mkdir -p $(@D)
	$(CC) -std=gnu11 $(WARN) -O2 -static -o $@ $<

# The setuid helper through which users run the tools (tools/gcp-user/user.c), built
# with the usual hardening of setuid programs.
$(USER_HELPER): tools/gcp-user/user.c
	@mkdir -p $(@D)
	$(CC) -std=gnu11 $(WARN) $(CFLAGS) -fPIE -pie -fstack-protector-strong -D_FORTIFY_SOURCE=2 \
	  -Wl,-z,relro,-z,now -o $@ $<

# CRIU's action script for the criu translib's gate (translibs/criu/gate.c).
$(GATE): translibs/criu/gate.c
	@mkdir -p $(@D)
	$(CC) -std=gnu11 $(WARN) $(CFLAGS) -o $@ $<

# Preloaded into criu dump: another uid's resource limits without CAP_SYS_RESOURCE
# (translibs/criu/rlimits.c).
$(RLIMITS): translibs/criu/rlimits.c
	@mkdir -p $(@D)
	$(CC) -std=gnu11 $(WARN) $(CFLAGS) -fPIC -shared -o $@ $< -ldl

# Runs every criu so that nothing it starts outlives it (translibs/criu/reaper.c).
$(REAPER): translibs/criu/reaper.c
	@mkdir -p $(@D)
	$(CC) -std=gnu11 $(WARN) $(CFLAGS) -o $@ $<

$(SDK_PC): $(TRANSLIB_H) translibs/gcp-translib.pc.in
	$(call install_translib_abi,,$(abspath $(SDK)))

# The criu translib builds as one outside this tree would: of gcp only translib.h,
# through pkg-config. It exports only its descriptor (version script, hidden
# visibility), and links nothing of gcp's: a build that does (libgcp.a, spdlog) fails
# at the nm check.
$(BUILD)/obj/translibs/criu/%.o: translibs/criu/%.cc $(SDK_PC)
	@mkdir -p $(@D)
	$(CXX) -std=c++20 $(WARN) -fPIC -MMD -MP -fvisibility=hidden $(SDK_CFLAGS) $(SANFLAGS) $(CXXFLAGS) -c $< -o $@

$(BUILD)/lib/gcp/translibs/criu.so: $(CRIU_OBJS) translibs/translib.map
	@mkdir -p $(@D)
	$(CXX) $(LDFLAGS) -shared -Wl,-z,defs -Wl,--version-script=translibs/translib.map \
	  -o $@.tmp $(CRIU_OBJS) -pthread
	@leaks=$$(nm -C $@.tmp | grep -oE '(gcp::[A-Za-z_]+|spdlog::|fmt::)' | grep -vx 'gcp::criu' | sort -u); \
	  if [ -n "$$leaks" ]; then rm -f $@.tmp; \
	    echo "make: error: $@ holds symbols of gcp's own code: $$(echo $$leaks)" >&2; \
	    echo "make: hint: a translib builds from translib.h alone; give translibs/criu its own copy" >&2; exit 1; fi
	mv $@.tmp $@

$(BUILD)/tests/translibs/echo.so:          FAKE_FLAGS :=
$(BUILD)/tests/translibs/wrong-abi.so:     FAKE_FLAGS := -DFAKE_ABI_MAJOR=99 -DFAKE_NAME='"wrong-abi"'
$(BUILD)/tests/translibs/old-abi.so:       FAKE_FLAGS := -DFAKE_ABI_MAJOR=0 -DFAKE_NAME='"old-abi"'
$(BUILD)/tests/translibs/failing-probe.so: FAKE_FLAGS := -DFAKE_FAILING_PROBE -DFAKE_NAME='"failing-probe"'
$(BUILD)/tests/translibs/short-table.so:   FAKE_FLAGS := -DFAKE_SHORT_TABLE -DFAKE_NAME='"short-table"'
$(FAKES): translibs/fake/fake.c $(SDK_PC) translibs/translib.map
	@mkdir -p $(@D)
	$(CC) -std=gnu11 $(WARN) $(CFLAGS) $(SDK_CFLAGS) -fPIC -fvisibility=hidden -shared \
	  -Wl,--version-script=translibs/translib.map $(FAKE_FLAGS) -o $@ $<

# The application's client header must also build as strict ISO C11.
$(BUILD)/obj/tests/unit/callbacks_c11.o: tests/unit/callbacks_c11.c common/include/gcp/callbacks.h
	@mkdir -p $(@D)
	$(CC) -std=c11 -pedantic $(WARN) -Icommon/include $(CFLAGS) -c $< -o $@

# The criu translib's parts (its reader of CRIU's images, its relay, its spawner) are
# tested on their own, without the translib.
$(UNIT_BIN): $(UNIT_SRCS:%.cc=$(BUILD)/obj/%.o) $(BUILD)/obj/tests/unit/callbacks_c11.o \
             $(filter-out %/criu.o,$(CRIU_OBJS)) $(LIBGCP)
	@mkdir -p $(@D)
	$(CXX) $(LDFLAGS) -o $@ $^ $(LDLIBS_GCP)

# Workloads may include the callback client (gcp/callbacks.h), as an application would.
$(BUILD)/tests/workloads/%: tests/workloads/%.c tests/workloads/state.h common/include/gcp/callbacks.h
	@mkdir -p $(@D)
	$(CC) -std=gnu11 -O2 $(WARN) -Icommon/include -pthread -o $@ $<

# `make test` is what CI runs: it installs what is missing first. Besides the unit and
# end-to-end tests: the unit tests again under ASan and UBSan, each fuzz harness for
# FUZZ_CHECK_SECONDS on its corpus, and a subset of CRIU's ZDTM tests (zdtm-ci).
test: deps
	@$(MAKE) --no-print-directory -j$(JOBS) all $(UNIT_BIN) $(FAKES) $(WORKLOADS)
	@BUILD=$(BUILD) tests/run-all.sh
	@$(MAKE) --no-print-directory sanitize-unit
	@$(MAKE) --no-print-directory fuzz-check
	@$(MAKE) --no-print-directory zdtm-ci

SAN_BUILD := build/san-address-undefined
sanitize-unit:
	@$(MAKE) --no-print-directory -j$(JOBS) SANITIZE=address,undefined BUILD=$(SAN_BUILD) unit

unit-build: $(UNIT_BIN) $(FAKES) $(GATE) $(REAPER) $(RLIMITS) $(USER_HELPER) $(INIT) $(TRANSLIBS)

# ---- fuzzing (tests/fuzz) ----
# libFuzzer harnesses, one per reader of hostile input, built with clang: all of libgcp
# again, instrumented for coverage and checked by ASan and UBSan, in $(FUZZ_DIR).
FUZZ_CXX     ?= clang++-14
FUZZ_DIR     := $(BUILD)/fuzz
FUZZ_SECONDS ?= 600
FUZZ_CHECK_SECONDS ?= 30
FUZZERS      := $(patsubst tests/fuzz/%.cc,%,$(wildcard tests/fuzz/*.cc))
FUZZ_BINS    := $(FUZZERS:%=$(FUZZ_DIR)/%)
FUZZ_SAN     := -fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer
FUZZ_CXXFLAGS = -std=c++20 -MMD -MP -O1 -g -Icommon/include $(PKG_CFLAGS) $(FUZZ_SAN) -fsanitize=fuzzer-no-link

$(FUZZ_DIR)/obj/%.o: %.cc
	@mkdir -p $(@D)
	$(FUZZ_CXX) $(FUZZ_CXXFLAGS) -c $< -o $@

# The parts of libgcp the harnesses reach (readers, and what those link to), and the criu
# translib's readers of what CRIU writes and sends: the rest
# would only double the build. A harness that needs another part fails to link, naming it.
FUZZ_LIB_SRCS := $(addprefix common/src/,caller.cc chunks.cc deps.cc error.cc events.cc fs.cc grouping.cc \
                   log.cc manifest.cc netns.cc proc.cc process.cc progress.cc rounds.cc store.cc wire.cc \
                   written_files.cc) \
                 $(addprefix translibs/criu/,images.cc ports.cc relay.cc)
$(FUZZ_DIR)/libgcp.a: $(FUZZ_LIB_SRCS:%.cc=$(FUZZ_DIR)/obj/%.o)
	rm -f $@ && ar rcs $@ $^

$(FUZZ_DIR)/%: $(FUZZ_DIR)/obj/tests/fuzz/%.o $(FUZZ_DIR)/libgcp.a
	$(FUZZ_CXX) $(FUZZ_SAN) -fsanitize=fuzzer -o $@ $^ $(LDLIBS_GCP)

# Kept, so that a built harness is not rebuilt for want of its object.
.SECONDARY: $(FUZZERS:%=$(FUZZ_DIR)/obj/tests/fuzz/%.o)
fuzz-build: $(FUZZ_BINS)

# Each harness in turn on a copy of its committed corpus (what it finds stays in
# $(FUZZ_DIR)/corpus), nice'd: the machine stays usable. A crash stops the run; its
# input is in $(FUZZ_DIR)/crash-*.
fuzz: fuzz-build
	@FUZZ_DIR=$(FUZZ_DIR) tests/fuzz/run.sh $(FUZZ_SECONDS) $(FUZZERS)

fuzz-check: fuzz-build
	@FUZZ_DIR=$(FUZZ_DIR) tests/fuzz/run.sh $(FUZZ_CHECK_SECONDS) $(FUZZERS)

# ---- CRIU's ZDTM static tests as a peer suite (tests/zdtm) ----
# Each test through gcp (gcp-isolate run, gcp-checkpoint --stop, gcp-restart) and through
# plain CRIU in fresh namespaces; a test CRIU passes and gcp fails fails the target.
# CRIU's source and the built tests stay in $(BUILD)/zdtm.
zdtm: all
	@BUILD=$(BUILD) tests/zdtm/run.sh

zdtm-ci: all
	@BUILD=$(BUILD) tests/zdtm/run.sh --list tests/zdtm/ci-tests

check: test

unit: $(UNIT_BIN) $(FAKES) $(GATE) $(REAPER) $(RLIMITS) $(USER_HELPER) $(INIT) $(TRANSLIBS)
	cd $(BUILD)/tests && ./unit-tests

e2e: all $(WORKLOADS)
	@BUILD=$(BUILD) tests/run-all.sh --e2e-only

demo: deps
	@$(MAKE) --no-print-directory -j$(JOBS) all $(BUILD)/tests/workloads/counter
	@BUILD=$(BUILD) scripts/demo.sh

# Not part of `all`: it links the other hash libraries it measures SHA-256 against.
$(BUILD)/bench/hash-speed: tests/bench/hash-speed.cc
	@mkdir -p $(@D)
	$(CXX) -std=c++20 -O2 $(WARN) $< -o $@ $$(pkg-config --cflags --libs libcrypto libsodium) -lb2 -lxxhash

$(BUILD)/bench/fanout: tests/bench/fanout.c
	@mkdir -p $(@D)
	$(CC) -std=gnu11 -O2 $(WARN) -o $@ $<

$(BUILD)/bench/pipe-speed: tests/bench/pipe-speed.c
	@mkdir -p $(@D)
	$(CC) -std=gnu11 -O2 $(WARN) -o $@ $<

$(BUILD)/bench/callbacks-overhead: tests/bench/callbacks-overhead.cc $(LIBGCP)
	@mkdir -p $(@D)
	$(CXX) $(ALL_CXXFLAGS) $(LDFLAGS) -o $@ $< $(LIBGCP) $(LDLIBS_GCP)

$(BUILD)/bench/simulate: tests/bench/simulate.cc $(LIBGCP)
	@mkdir -p $(@D)
	$(CXX) $(ALL_CXXFLAGS) $(LDFLAGS) -o $@ $< $(LIBGCP) $(LDLIBS_GCP)

# The policy against failure traces (gcp-policy(7)); the report goes to $(BUILD)/bench.
simulate: $(BUILD)/bench/simulate
	$(BUILD)/bench/simulate $(BUILD)/bench/simulate.svg > $(BUILD)/bench/simulate.md; rc=$$?; cat $(BUILD)/bench/simulate.md; exit $$rc

bench:
	@scripts/install-deps.sh --bench
	@$(MAKE) --no-print-directory -j$(JOBS) all $(WORKLOADS) $(BUILD)/bench/hash-speed $(BUILD)/bench/fanout $(BUILD)/bench/callbacks-overhead $(BUILD)/bench/pipe-speed
	$(BUILD)/bench/hash-speed > $(BUILD)/bench/hash-speed.md
	$(BUILD)/bench/pipe-speed > $(BUILD)/bench/pipe-speed.md
	$(BUILD)/bench/callbacks-overhead > $(BUILD)/bench/callbacks-overhead.md
	@BUILD=$(BUILD) tests/bench/callbacks-checkpoint.sh
	@BUILD=$(BUILD) tests/bench/deps-bench.sh
	@BUILD=$(BUILD) tests/bench/store-bench.sh
	@BUILD=$(BUILD) tests/bench/nodes-bench.sh

MANPAGES := $(wildcard man/*.[1-8])
man:
	@for m in $(MANPAGES); do man --warnings -l $$m >/dev/null || exit 1; done

install: all
	install -d $(DESTDIR)$(BINDIR) $(DESTDIR)$(LIBDIR)/gcp/translibs $(DESTDIR)$(LIBEXECDIR)/gcp
	install -m 0755 $(BINS) $(DESTDIR)$(BINDIR)/
	install -m 0755 $(INIT) $(GATE) $(REAPER) $(RLIMITS) $(DESTDIR)$(LIBEXECDIR)/gcp/
	install -m 0755 $(USER_HELPER) $(DESTDIR)$(LIBEXECDIR)/gcp/
	@# Setuid root, run by root and group gcp only: a site adds its users to group gcp.
	@h=$(DESTDIR)$(LIBEXECDIR)/gcp/gcp-user; \
	if [ "$$(id -u)" -eq 0 ]; then \
	  getent group gcp >/dev/null || groupadd --system gcp || exit 1; \
	  chown root:gcp "$$h" && chmod 4750 "$$h" || exit 1; \
	else \
	  echo "make: warning: not root: '$$h' is not setuid; as root: chown root:gcp '$$h' && chmod 4750 '$$h'" >&2; \
	fi
	install -m 0755 $(TRANSLIBS) $(DESTDIR)$(LIBDIR)/gcp/translibs/
	install -d $(DESTDIR)$(PREFIX)/include/gcp
	install -m 0644 common/include/gcp/callbacks.h $(DESTDIR)$(PREFIX)/include/gcp/
	$(call install_translib_abi,$(DESTDIR),$(PREFIX))
	for m in $(MANPAGES); do s=$${m##*.}; install -d $(DESTDIR)$(MANDIR)/man$$s; \
	  install -m 0644 $$m $(DESTDIR)$(MANDIR)/man$$s/; done

# clang-format (Debian's clang-format, .clang-format) over every C and C++ file git knows.
format:
	@git ls-files '*.c' '*.cc' '*.h' | xargs clang-format -i

clean:
	rm -rf $(BUILD)

-include $(shell find $(BUILD)/obj $(FUZZ_DIR)/obj -name '*.d' 2>/dev/null)
