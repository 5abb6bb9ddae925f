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
BUILD      ?= build

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

ifneq ($(SANITIZE),)
ALL_CXXFLAGS += -fsanitize=$(SANITIZE) -fno-omit-frame-pointer
LDFLAGS      += -fsanitize=$(SANITIZE)
endif

JOBS      ?= $(shell nproc 2>/dev/null || echo 2)
TOOLS     := gcp-isolate gcp-checkpoint gcp-restart gcp-store gcp-deps gcp-migrate
LIB_SRCS  := $(wildcard common/src/*.cc)
LIB_OBJS  := $(LIB_SRCS:%.cc=$(BUILD)/obj/%.o)
LIBGCP    := $(BUILD)/lib/libgcp.a
BINS      := $(TOOLS:%=$(BUILD)/bin/%)
INIT      := $(BUILD)/libexec/gcp/gcp-init
GATE      := $(BUILD)/libexec/gcp/criu-gate
REAPER    := $(BUILD)/libexec/gcp/criu-reaper
TRANSLIBS := $(BUILD)/lib/gcp/translibs/criu.so
FAKES     := $(addprefix $(BUILD)/tests/translibs/,echo.so wrong-abi.so old-abi.so failing-probe.so short-table.so)
UNIT_SRCS := $(wildcard tests/unit/*.cc)
UNIT_BIN  := $(BUILD)/tests/unit-tests
WORKLOADS := $(patsubst tests/workloads/%.c,$(BUILD)/tests/workloads/%,$(wildcard tests/workloads/*.c))

.PHONY: all help test check unit e2e bench demo install man clean deps
all: $(BINS) $(INIT) $(GATE) $(REAPER) $(TRANSLIBS)

help:
	@echo "make [all]      build the tools, gcp-init and the CRIU translib into $(BUILD)/"
	@echo "make test       install what is missing, build, run unit and end-to-end tests"
	@echo "make unit       build and run the unit tests only (no root needed)"
	@echo "make e2e        run the end-to-end tests only (root, real CRIU)"
	@echo "make demo       install what is missing, build, checkpoint and restart a sample job"
	@echo "make bench      hash and pipe speeds; gcp-deps on 1,000 processes; gcp's store vs plain criu (256 MiB, 1 GiB); coordinated rounds on 3 test nodes; reports in $(BUILD)/bench/"
	@echo "make install    install under PREFIX=$(PREFIX) (DESTDIR honoured)"
	@echo "SANITIZE=address,undefined  build with sanitizers"

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

# CRIU's action script for the criu translib's gate (translibs/criu/gate.c).
$(GATE): translibs/criu/gate.c
	@mkdir -p $(@D)
	$(CC) -std=gnu11 $(WARN) $(CFLAGS) -o $@ $<

# Runs every criu so that nothing it starts outlives it (translibs/criu/reaper.c).
$(REAPER): translibs/criu/reaper.c
	@mkdir -p $(@D)
	$(CC) -std=gnu11 $(WARN) $(CFLAGS) -o $@ $<

# A translib exports only its descriptor (version script, hidden visibility).
$(BUILD)/obj/translibs/%.o: ALL_CXXFLAGS += -fvisibility=hidden
CRIU_OBJS := $(BUILD)/obj/translibs/criu/criu.o $(BUILD)/obj/translibs/criu/images.o
$(BUILD)/lib/gcp/translibs/criu.so: $(CRIU_OBJS) $(LIBGCP) translibs/translib.map
	@mkdir -p $(@D)
	$(CXX) $(LDFLAGS) -shared -Wl,--version-script=translibs/translib.map \
	  -o $@ $(CRIU_OBJS) $(LIBGCP) $(LDLIBS_GCP)

$(BUILD)/tests/translibs/echo.so:          FAKE_FLAGS :=
$(BUILD)/tests/translibs/wrong-abi.so:     FAKE_FLAGS := -DFAKE_ABI_MAJOR=99 -DFAKE_NAME='"wrong-abi"'
$(BUILD)/tests/translibs/old-abi.so:       FAKE_FLAGS := -DFAKE_ABI_MAJOR=0 -DFAKE_NAME='"old-abi"'
$(BUILD)/tests/translibs/failing-probe.so: FAKE_FLAGS := -DFAKE_FAILING_PROBE -DFAKE_NAME='"failing-probe"'
$(BUILD)/tests/translibs/short-table.so:   FAKE_FLAGS := -DFAKE_SHORT_TABLE -DFAKE_NAME='"short-table"'
$(FAKES): translibs/fake/fake.c common/include/gcp/translib.h translibs/translib.map
	@mkdir -p $(@D)
	$(CC) -std=gnu11 $(WARN) $(CFLAGS) -Icommon/include -fPIC -fvisibility=hidden -shared \
	  -Wl,--version-script=translibs/translib.map $(FAKE_FLAGS) -o $@ $<

# The application's client header must also build as strict ISO C11.
$(BUILD)/obj/tests/unit/callbacks_c11.o: tests/unit/callbacks_c11.c common/include/gcp/callbacks.h
	@mkdir -p $(@D)
	$(CC) -std=c11 -pedantic $(WARN) -Icommon/include $(CFLAGS) -c $< -o $@

# The translib's reader of CRIU's images is tested on its own, without the translib.
$(UNIT_BIN): $(UNIT_SRCS:%.cc=$(BUILD)/obj/%.o) $(BUILD)/obj/tests/unit/callbacks_c11.o \
             $(BUILD)/obj/translibs/criu/images.o $(LIBGCP)
	@mkdir -p $(@D)
	$(CXX) $(LDFLAGS) -o $@ $^ $(LDLIBS_GCP)

# Workloads may include the callback client (gcp/callbacks.h), as an application would.
$(BUILD)/tests/workloads/%: tests/workloads/%.c tests/workloads/state.h common/include/gcp/callbacks.h
	@mkdir -p $(@D)
	$(CC) -std=gnu11 -O2 $(WARN) -Icommon/include -pthread -o $@ $<

# `make test` is what CI runs: it installs what is missing first.
test: deps
	@$(MAKE) --no-print-directory -j$(JOBS) all $(UNIT_BIN) $(FAKES) $(WORKLOADS)
	@BUILD=$(BUILD) tests/run-all.sh

check: test

unit: $(UNIT_BIN) $(FAKES) $(GATE) $(REAPER)
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
	install -m 0755 $(INIT) $(GATE) $(REAPER) $(DESTDIR)$(LIBEXECDIR)/gcp/
	install -m 0755 $(TRANSLIBS) $(DESTDIR)$(LIBDIR)/gcp/translibs/
	install -d $(DESTDIR)$(PREFIX)/include/gcp
	install -m 0644 common/include/gcp/callbacks.h $(DESTDIR)$(PREFIX)/include/gcp/
	for m in $(MANPAGES); do s=$${m##*.}; install -d $(DESTDIR)$(MANDIR)/man$$s; \
	  install -m 0644 $$m $(DESTDIR)$(MANDIR)/man$$s/; done

clean:
	rm -rf $(BUILD)

-include $(shell find $(BUILD)/obj -name '*.d' 2>/dev/null)
