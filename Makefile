# ngx_http_conductor_module: build against the distribution's nginx.
#
#   make            build the module into $(BUILD)
#   make run        start the gateway on 127.0.0.1:8000 with conf/conductor.conf
#                   (PORT=, MOCK_PORT= for other ports, RUNDIR= its folder)
#   make test       unit tests + the whole prove suite
#   make valgrind   the prove suite with nginx under valgrind
#   make fuzz       the libFuzzer targets, bounded in time
#   make bench      wrk: plain proxy_pass against the gateway
#   make deb        the Debian package, into $(BUILD) (debian/, README)
#   make docker     the container image; make docker-test runs it (podman)

SHELL    := /bin/bash
SRC      := $(CURDIR)
BUILD    ?= $(CURDIR)/build
NGX_SRC  ?= /usr/share/nginx/src
MODULE   := $(BUILD)/ngx_http_conductor_module.so
RUNDIR   ?= $(BUILD)/run
# make run: the gateway's and the embedded mock's ports on 127.0.0.1
PORT      ?= 8000
MOCK_PORT ?= 8001

CC       ?= cc
FUZZ_SECONDS ?= 30

MODULE_SOURCES := config ngx_http_conductor_module.c $(wildcard src/*.c src/*.h)

# nginx-free parsers, built on their own for unit tests and fuzzing
PARSERS  := src/ngx_http_conductor_json.c src/ngx_http_conductor_sse.c \
            src/ngx_http_conductor_usage.c src/ngx_http_conductor_strip.c \
            src/ngx_http_conductor_ratelimit.c src/ngx_http_conductor_window.c \
            src/ngx_http_conductor_money.c \
            src/ngx_http_conductor_sha256.c src/ngx_http_conductor_minutes.c
PARSERS_PRESENT = $(wildcard $(PARSERS))
# the redaction of log lines is nginx-free too (before the rules below)
PARSERS  += src/ngx_http_conductor_redact_line.c
# and so is the RESP command writer (its test compares it with hiredis's)
PARSERS  += src/ngx_http_conductor_resp.c
UNIT_SRC := $(wildcard t/unit/*_test.c)
UNIT_BIN := $(patsubst t/unit/%.c,$(BUILD)/unit/%,$(UNIT_SRC))
FUZZ_SRC := $(wildcard t/fuzz/*_fuzz.c)
FUZZ_BIN := $(patsubst t/fuzz/%.c,$(BUILD)/fuzz/%,$(FUZZ_SRC))
UNIT_CFLAGS := -g -O1 -Wall -Wextra -Werror -Isrc -fsanitize=address,undefined \
               -fno-omit-frame-pointer

.PHONY: all build run stop test unit valgrind fuzz bench deps install clean

MODULES_DIR ?= /usr/lib/nginx/modules
CONF_DIR    ?= /etc/nginx

all: build

build: $(MODULE)

$(BUILD)/Makefile: config
	mkdir -p $(BUILD)
	cd $(NGX_SRC) && . ./conf_flags && ./configure \
	    --with-cc-opt="$$(dpkg-buildflags --get CFLAGS) -fPIC $$(dpkg-buildflags --get CPPFLAGS)" \
	    --with-ld-opt="$$(dpkg-buildflags --get LDFLAGS) -fPIC" \
	    "$${NGX_CONF_FLAGS[@]}" --add-dynamic-module="$(SRC)" \
	    --builddir="$(BUILD)" > $(BUILD)/configure.log 2>&1 \
	    || { tail -20 $(BUILD)/configure.log; exit 1; }

$(MODULE): $(BUILD)/Makefile $(MODULE_SOURCES)
	$(MAKE) -f $(BUILD)/Makefile -C $(NGX_SRC) modules
	@test -f $(MODULE)

$(BUILD)/unit/%: t/unit/%.c $(PARSERS_PRESENT) $(wildcard src/*.h t/unit/*.h)
	@mkdir -p $(BUILD)/unit
	$(CC) $(UNIT_CFLAGS) -o $@ $< $(PARSERS_PRESENT) -ljansson -lhiredis

$(BUILD)/fuzz/%: t/fuzz/%.c $(PARSERS_PRESENT) $(wildcard src/*.h t/unit/*.h)
	@mkdir -p $(BUILD)/fuzz
	clang -g -O1 -Isrc -fsanitize=fuzzer,address,undefined -o $@ $< \
	    $(PARSERS_PRESENT) -ljansson -lhiredis

# json_scalar_test is json_test.c on the portable scan; json_fuzz
# includes the scanner as it was, its differential reference
$(BUILD)/unit/json_scalar_test: t/unit/json_test.c
$(BUILD)/fuzz/json_fuzz: t/fuzz/json_ref.c

unit: $(UNIT_BIN)

deps:
	cd t/sdk && npm ci --no-audit --no-fund --loglevel=error
	cd examples/node && npm ci --no-audit --no-fund --loglevel=error

# conductor.conf's 127.0.0.1:8000 (the gateway) and :8001 (the mock) become
# PORT and MOCK_PORT; `t` ends a line's edits once the first has matched
run: build
	mkdir -p $(RUNDIR)/logs $(RUNDIR)/conf
	cp conf/*.conf $(RUNDIR)/conf/
	sed -i -e 's|^load_module .*|load_module $(MODULE);|' \
	    -e 's|127\.0\.0\.1:8000\b|127.0.0.1:$(PORT)|g;t' \
	    -e 's|127\.0\.0\.1:8001\b|127.0.0.1:$(MOCK_PORT)|g' \
	    -e 's|localhost:8000\b|localhost:$(PORT)|g' \
	    $(RUNDIR)/conf/conductor.conf
	nginx -p $(RUNDIR) -c conf/conductor.conf
	@echo "gateway on http://127.0.0.1:$(PORT) (stop: make stop)"

# the nginx of RUNDIR (PORT and MOCK_PORT play no part: it has its pid file)
stop:
	-kill -QUIT $$(cat $(RUNDIR)/logs/nginx.pid)

test: build unit
	prove -r t/

valgrind: build unit
	TEST_NGINX_USE_VALGRIND=1 prove -r t/

fuzz: $(FUZZ_BIN)
	@for f in $(FUZZ_BIN); do \
	    name=$$(basename $$f); mkdir -p $(BUILD)/fuzz/corpus-$$name; \
	    echo "fuzz $$name for $(FUZZ_SECONDS)s"; \
	    $$f -max_total_time=$(FUZZ_SECONDS) -print_final_stats=1 \
	        $(BUILD)/fuzz/corpus-$$name $$( [ -d t/fuzz/seeds-$$name ] && echo t/fuzz/seeds-$$name ) \
	        2>$(BUILD)/fuzz/$$name.log || { tail -40 $(BUILD)/fuzz/$$name.log; exit 1; }; \
	    grep -E 'stat::number_of_executed_units' $(BUILD)/fuzz/$$name.log; \
	done

bench: build
	bench/run.sh

# the module where the distribution's nginx loads modules from, and the
# snippet, log format and prices beside nginx.conf (never overwritten)
install: build
	install -d $(MODULES_DIR)
	install -m 644 $(MODULE) $(MODULES_DIR)/
	for f in conductor_proxy.conf conductor_log.conf pricing.conf; do \
	    [ -e $(CONF_DIR)/$$f ] || install -m 644 conf/$$f $(CONF_DIR)/; \
	done
	@echo "load_module $(MODULES_DIR)/ngx_http_conductor_module.so; then restart nginx"

clean:
	rm -rf $(BUILD)

# the Debian package, libnginx-mod-http-conductor_VERSION_ARCH.deb, built
# by dpkg-buildpackage from a copy of the tree in $(BUILD)/deb
DEB_VERSION := $(shell debian/module-version)
DEB := $(BUILD)/libnginx-mod-http-conductor_$(DEB_VERSION)_$(shell dpkg --print-architecture).deb

.PHONY: deb
deb: $(DEB)

$(DEB): $(MODULE_SOURCES) $(wildcard conf/*.conf debian/* debian/*/* bin/* man/*) \
        README.md scripts/build-deb.sh
	scripts/build-deb.sh $(BUILD)

# callgrind: instructions per streamed byte and per request, plain proxy_pass
# against the gateway (bench/callgrind.sh, 1-2 minutes)
.PHONY: bench-instructions
bench-instructions: build
	bench/callgrind.sh

# client keys and Redis sync (bench/clients.sh: callgrind and wrk, about
# 13 minutes; MODE=exact adds sync=0 when the module accepts it)
.PHONY: bench-clients
bench-clients: build
	bench/clients.sh

# the container image (docker/Dockerfile: the .deb on debian:bookworm-slim)
# with podman on the project's own storage in $(BUILD)/docker, and its test
# (docker/test.sh: built and run with each CONDUCTOR_* variable)
.PHONY: docker docker-test
docker:
	DOCKER_DIR=$(BUILD)/docker docker/podman.sh build

docker-test:
	DOCKER_DIR=$(BUILD)/docker docker/test.sh
