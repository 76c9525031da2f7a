# Daz: `make` builds bin/daz; `make run` runs the bot; `make test` runs every
# test (installing and starting what it needs); `make bench` prints figures.

PKGS      := libwebsockets libuv libpq lua5.4 libmicrohttpd jansson openssl
CC        ?= cc
CFLAGS    ?= -O2 -g
WARNINGS  := -Wall -Wextra -Wshadow -Wformat=2 -Wno-unused-parameter
BUILD_ID  := $(shell git rev-parse --short HEAD 2>/dev/null || echo unknown)
PKG_CFLAGS = $(shell pkg-config --cflags $(PKGS))
PKG_LIBS   = $(shell pkg-config --libs $(PKGS)) -lpthread -lm
DEFS      := -D_GNU_SOURCE -DDAZ_BUILD='"$(BUILD_ID)"'

SRCS      := $(wildcard src/*.c src/*/*.c)
HDRS      := $(wildcard src/*/*.h)
CORE_LUA  := $(sort $(wildcard lua/core/*.lua))
GEN       := build/gen/embedded_lua.c

# Release build and the sanitizer build the tests run.
REL_OBJS  := $(patsubst src/%.c,build/rel/%.o,$(SRCS)) build/rel/embedded_lua.o
ASAN_OBJS := $(patsubst src/%.c,build/asan/%.o,$(SRCS)) build/asan/embedded_lua.o
SAN_FLAGS := -fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer

# C unit tests: spec/c/<unit>_test.c, linked with the sanitizer objects.
C_TESTS   := $(patsubst spec/c/%.c,build/tests/%,$(wildcard spec/c/*_test.c))
LIB_OBJS  := $(filter-out build/asan/main.o,$(ASAN_OBJS))

.PHONY: all deps asan test run bench clean check-config

all: bin/daz

deps:
	@scripts/deps

bin/daz: $(REL_OBJS) | bin
	$(CC) $(CFLAGS) -o $@ $^ $(PKG_LIBS)

bin/daz-asan: $(ASAN_OBJS) | bin
	$(CC) -O1 -g $(SAN_FLAGS) -o $@ $^ $(PKG_LIBS)

asan: bin/daz-asan $(C_TESTS)

build/rel/%.o: src/%.c $(HDRS)
	@mkdir -p $(@D)
	$(CC) $(CFLAGS) $(WARNINGS) $(DEFS) $(PKG_CFLAGS) -Isrc -c -o $@ $<

build/asan/%.o: src/%.c $(HDRS)
	@mkdir -p $(@D)
	$(CC) -O1 -g $(SAN_FLAGS) $(WARNINGS) -Werror $(DEFS) $(PKG_CFLAGS) -Isrc -c -o $@ $<

build/rel/embedded_lua.o: $(GEN) | build/rel
	$(CC) $(CFLAGS) $(PKG_CFLAGS) -Isrc -c -o $@ $<

build/asan/embedded_lua.o: $(GEN) | build/asan
	$(CC) -O1 -g $(SAN_FLAGS) $(PKG_CFLAGS) -Isrc -c -o $@ $<

$(GEN): $(CORE_LUA) scripts/embed-lua | build/gen
	lua5.4 scripts/embed-lua $@ $(CORE_LUA)

build/tests/%: spec/c/%.c $(LIB_OBJS) spec/c/tap.h $(HDRS) | build/tests
	$(CC) -O1 -g $(SAN_FLAGS) $(WARNINGS) -Werror $(DEFS) $(PKG_CFLAGS) -Isrc -Ispec/c -o $@ $< $(LIB_OBJS) $(PKG_LIBS)

BUS_BENCH_SRCS := src/core/bus.c src/core/event.c src/core/log.c src/core/ratelog.c src/core/log_repeat.c src/core/deadline_heap.c
build/bench/bus_bench: bench/bus_bench.c $(BUS_BENCH_SRCS) $(HDRS) | build/bench
	$(CC) -O2 -g $(WARNINGS) $(DEFS) $(PKG_CFLAGS) -Isrc -o $@ bench/bus_bench.c $(BUS_BENCH_SRCS) $(PKG_LIBS)

bin build/rel build/asan build/gen build/tests build/fuzz build/bench:
	mkdir -p $@

test: deps
	@scripts/test

run: deps bin/daz
	@scripts/run

check-config: bin/daz
	bin/daz -config config.lua -check-config

bench: deps
	@scripts/bench

# libFuzzer targets: fuzz/<name>_fuzz.c, each run for FUZZ_SECONDS from its
# seed corpus fuzz/corpus/<name> (new inputs collect in build/fuzz/).
FUZZ_SECONDS ?= 60
FUZZ_BINS := $(patsubst fuzz/%_fuzz.c,build/fuzz/%_fuzz,$(wildcard fuzz/*_fuzz.c))

fuzz: deps $(FUZZ_BINS)
	@for t in $(FUZZ_BINS); do \
	  n=$$(basename $$t _fuzz); mkdir -p build/fuzz/corpus-$$n; \
	  echo "== $$t for $(FUZZ_SECONDS) s"; \
	  $$t -max_total_time=$(FUZZ_SECONDS) -max_len=8192 -timeout=10 -print_final_stats=1 \
	    build/fuzz/corpus-$$n fuzz/corpus/$$n || exit 1; \
	done

build/fuzz/socketio_fuzz: fuzz/socketio_fuzz.c src/cytube/socketio.c src/cytube/socketio.h | build/fuzz
	clang -O1 -g -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all $(WARNINGS) -Werror $(DEFS) \
	  $(shell pkg-config --cflags jansson) -Isrc -o $@ fuzz/socketio_fuzz.c src/cytube/socketio.c $(shell pkg-config --libs jansson)

clean:
	rm -rf build bin
