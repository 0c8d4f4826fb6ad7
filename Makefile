# tandem - build with `make`. Outputs go to build/ (or $(BUILD)).
#   make            the CLI at build/tandem and the unit tests
#   make asan       the same with AddressSanitizer + UBSan in build-asan/
#   make fuzz       libFuzzer harnesses (clang) in build-fuzz/
#   make test       unit and integration tests (see scripts/test.sh)
#   make install    PREFIX=/usr/local: the CLI, tandem.h, libtandem.a,
#                   libtandem.so, tandem.pc (pkg-config), the man pages
#                   and bash completion
#   make man        man pages (tandem.1, tandem-CMD.1) in build/man/
#   make python     the Python package's extension, built in python/

BUILD    ?= build
CC       ?= cc
OPT      ?= -O2
CFLAGS   ?=
SANITIZE ?=
WARN      = -Wall -Wextra -Werror -Wshadow -Wstrict-prototypes -Wno-unused-parameter
BASEFLAGS = -std=c11 -D_POSIX_C_SOURCE=200809L -D_DEFAULT_SOURCE $(OPT) -g \
            $(WARN) -Iinclude -ffp-contract=off -MMD -MP $(SANITIZE) \
            -fPIC -fvisibility=hidden
LDLIBS    = -lcurl -lfyaml -lhiredis -llmdb -lmicrohttpd -lrdkafka -lsqlite3 -lssl -lcrypto -lm -lpthread

LIB_SRC  := $(wildcard src/api/*.c src/core/*.c src/model/*.c src/io/*.c src/pipeline/*.c \
              src/store/*.c src/batch/*.c src/serve/*.c src/eval/*.c \
              src/stream/*.c)
CLI_SRC  := $(wildcard src/cli/*.c)
TEST_SRC := $(wildcard tests/unit/*.c)

LIB_OBJ  := $(LIB_SRC:%.c=$(BUILD)/%.o)
CLI_OBJ  := $(CLI_SRC:%.c=$(BUILD)/%.o)
TEST_OBJ := $(TEST_SRC:%.c=$(BUILD)/%.o)

# The shared library's version: SONAME libtandem.so.$(SO_MAJOR). Every
# object is compiled -fPIC and -fvisibility=hidden, so the one set of
# objects makes both libraries and only TDM_API (tdm_) names are exported.
SO_MAJOR  = 0
SO_VERSION = 0.1.0
PREFIX   ?= /usr/local
LIBDIR   ?= $(PREFIX)/lib
PYTHON   ?= /usr/bin/python3

.PHONY: all asan tsan fuzz test clean format bench install python man
all: $(BUILD)/tandem $(BUILD)/tandem-unit-tests $(BUILD)/mock-kafka $(BUILD)/kafka-peer \
     $(BUILD)/open-loop $(BUILD)/libtandem.so

$(BUILD)/libtandem.a: $(LIB_OBJ)
	ar rcs $@ $^

$(BUILD)/libtandem.so.$(SO_VERSION): $(LIB_OBJ)
	$(CC) $(BASEFLAGS) $(CFLAGS) -shared -Wl,-soname,libtandem.so.$(SO_MAJOR) \
	  -Wl,--no-undefined -o $@ $^ $(LDLIBS)

$(BUILD)/libtandem.so: $(BUILD)/libtandem.so.$(SO_VERSION)
	ln -sf libtandem.so.$(SO_VERSION) $(BUILD)/libtandem.so.$(SO_MAJOR)
	ln -sf libtandem.so.$(SO_VERSION) $@

# Man pages, generated from the CLI's own help (the one source, which
# `tandem help CMD` prints) by scripts/man.py through scdoc.
$(BUILD)/man/tandem.1: $(BUILD)/tandem scripts/man.py
	$(PYTHON) scripts/man.py $(BUILD)/tandem $(BUILD)/man

man: $(BUILD)/man/tandem.1

install: $(BUILD)/tandem $(BUILD)/libtandem.a $(BUILD)/libtandem.so \
         $(BUILD)/man/tandem.1
	install -d $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(PREFIX)/include \
	  $(DESTDIR)$(LIBDIR)/pkgconfig $(DESTDIR)$(PREFIX)/share/man/man1 \
	  $(DESTDIR)$(PREFIX)/share/bash-completion/completions
	install -m 644 $(BUILD)/man/*.1 $(DESTDIR)$(PREFIX)/share/man/man1/
	install -m 644 scripts/tandem-completion.bash \
	  $(DESTDIR)$(PREFIX)/share/bash-completion/completions/tandem
	install -m 755 $(BUILD)/tandem $(DESTDIR)$(PREFIX)/bin/tandem
	install -m 644 include/tandem.h $(DESTDIR)$(PREFIX)/include/tandem.h
	install -m 644 $(BUILD)/libtandem.a $(DESTDIR)$(LIBDIR)/libtandem.a
	install -m 755 $(BUILD)/libtandem.so.$(SO_VERSION) $(DESTDIR)$(LIBDIR)/
	ln -sf libtandem.so.$(SO_VERSION) $(DESTDIR)$(LIBDIR)/libtandem.so.$(SO_MAJOR)
	ln -sf libtandem.so.$(SO_VERSION) $(DESTDIR)$(LIBDIR)/libtandem.so
	# pkg-config's file names this install's PREFIX and LIBDIR, so it is
	# written here, each time, not kept in $(BUILD) (a copy made for one
	# PREFIX pointed a later install elsewhere); the static library needs
	# the dependencies' flags too.
	sed -e 's|@PREFIX@|$(PREFIX)|g' -e 's|@LIBDIR@|$(LIBDIR)|g' \
	  -e 's|@VERSION@|$(SO_VERSION)|g' -e 's|@LIBS_PRIVATE@|$(LDLIBS)|g' \
	  tandem.pc.in > $(DESTDIR)$(LIBDIR)/pkgconfig/tandem.pc
	chmod 644 $(DESTDIR)$(LIBDIR)/pkgconfig/tandem.pc

# The Python extension, in place in python/ (the tests import it from
# there); it links build/libtandem.a, so it needs no installed library.
# --force: setuptools does not see that the library it links changed.
python: $(BUILD)/libtandem.a
	cd python && TANDEM_BUILD=$(abspath $(BUILD)) $(PYTHON) setup.py -q build_ext --inplace --force

$(BUILD)/tandem: $(CLI_OBJ) $(BUILD)/libtandem.a
	$(CC) $(BASEFLAGS) $(CFLAGS) -o $@ $^ $(LDLIBS)

$(BUILD)/tandem-unit-tests: $(TEST_OBJ) $(BUILD)/libtandem.a
	$(CC) $(BASEFLAGS) $(CFLAGS) -o $@ $^ $(LDLIBS)

$(BUILD)/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(BASEFLAGS) $(CFLAGS) -c -o $@ $<

asan:
	$(MAKE) BUILD=build-asan OPT=-O1 \
	  SANITIZE="-fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer"

# ThreadSanitizer: the unit tests (test_api.c runs two pipelines in two
# threads) in build-tsan/.
tsan:
	$(MAKE) BUILD=build-tsan OPT=-O1 SANITIZE="-fsanitize=thread" \
	  build-tsan/tandem-unit-tests

# libFuzzer needs clang. Each harness links the library built with the
# fuzzer's coverage instrumentation and sanitizers.
FUZZ_SRC := $(wildcard tests/fuzz/fuzz_*.c)
FUZZ_BIN := $(FUZZ_SRC:tests/fuzz/%.c=build-fuzz/%)
FUZZ_FLAGS = -fsanitize=fuzzer-no-link,address,undefined -fno-omit-frame-pointer
fuzz:
	$(MAKE) BUILD=build-fuzz CC=clang OPT=-O1 SANITIZE="$(FUZZ_FLAGS)" build-fuzz/libtandem.a
	$(MAKE) BUILD=build-fuzz CC=clang OPT=-O1 SANITIZE="$(FUZZ_FLAGS)" $(FUZZ_BIN)

build-fuzz/fuzz_%: tests/fuzz/fuzz_%.c build-fuzz/libtandem.a
	clang $(BASEFLAGS) -fsanitize=fuzzer -o $@ $^ $(LDLIBS)

# Benchmarks link XGBoost's C API (libxgboost-dev), the peer they measure.
$(BUILD)/bench-predict: bench/bench_predict.c $(BUILD)/libtandem.a
	$(CC) $(BASEFLAGS) $(CFLAGS) -Wno-error -o $@ $^ -lxgboost $(LDLIBS)
$(BUILD)/bench-load: bench/bench_load.c $(BUILD)/libtandem.a
	$(CC) $(BASEFLAGS) $(CFLAGS) -o $@ $^ -lxgboost $(LDLIBS)
$(BUILD)/bench-contribs: bench/bench_contribs.c $(BUILD)/libtandem.a
	$(CC) $(BASEFLAGS) $(CFLAGS) -Wno-error -o $@ $^ -lxgboost $(LDLIBS)

# librdkafka's mock cluster as a process, for the tests of tandem stream.
$(BUILD)/mock-kafka: tests/tools/mock_kafka.c
	@mkdir -p $(dir $@)
	$(CC) $(BASEFLAGS) $(CFLAGS) -o $@ $< -lrdkafka

# The pass-through peer of bench/bench_stream.py.
$(BUILD)/kafka-peer: bench/kafka_peer.c
	@mkdir -p $(dir $@)
	$(CC) $(BASEFLAGS) $(CFLAGS) -o $@ $< -lrdkafka

# The open-loop (fixed-rate) load generator of bench/bench_pipeline.py.
$(BUILD)/open-loop: bench/open_loop.c
	@mkdir -p $(dir $@)
	$(CC) $(BASEFLAGS) $(CFLAGS) -o $@ $<

$(BUILD)/bench-window: bench/bench_window.c $(BUILD)/libtandem.a
	$(CC) $(BASEFLAGS) $(CFLAGS) -o $@ $^ $(LDLIBS)

bench: $(BUILD)/bench-predict
	scripts/bench.sh

test:
	scripts/test.sh

format:
	clang-format -i include/*.h src/*/*.c src/*/*.h tests/unit/*.c tests/fuzz/*.c

clean:
	rm -rf build build-asan build-tsan build-fuzz

-include $(LIB_OBJ:.o=.d) $(CLI_OBJ:.o=.d) $(TEST_OBJ:.o=.d)
