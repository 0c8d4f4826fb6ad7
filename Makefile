# tandem - build with `make`. Outputs go to build/ (or $(BUILD)).
#   make            the CLI at build/tandem and the unit tests
#   make asan       the same with AddressSanitizer + UBSan in build-asan/
#   make fuzz       libFuzzer harnesses (clang) in build-fuzz/
#   make test       unit and integration tests (see scripts/test.sh)

BUILD    ?= build
CC       ?= cc
OPT      ?= -O2
CFLAGS   ?=
SANITIZE ?=
WARN      = -Wall -Wextra -Werror -Wshadow -Wstrict-prototypes -Wno-unused-parameter
BASEFLAGS = -std=c11 -D_POSIX_C_SOURCE=200809L -D_DEFAULT_SOURCE $(OPT) -g \
            $(WARN) -Iinclude -ffp-contract=off -MMD -MP $(SANITIZE)
LDLIBS    = -lcurl -lfyaml -llmdb -lmicrohttpd -lrdkafka -lsqlite3 -lcrypto -lm -lpthread

LIB_SRC  := $(wildcard src/core/*.c src/model/*.c src/io/*.c src/pipeline/*.c \
              src/store/*.c src/batch/*.c src/serve/*.c src/eval/*.c \
              src/stream/*.c)
CLI_SRC  := $(wildcard src/cli/*.c)
TEST_SRC := $(wildcard tests/unit/*.c)

LIB_OBJ  := $(LIB_SRC:%.c=$(BUILD)/%.o)
CLI_OBJ  := $(CLI_SRC:%.c=$(BUILD)/%.o)
TEST_OBJ := $(TEST_SRC:%.c=$(BUILD)/%.o)

.PHONY: all asan fuzz test clean format bench
all: $(BUILD)/tandem $(BUILD)/tandem-unit-tests $(BUILD)/mock-kafka $(BUILD)/kafka-peer

$(BUILD)/libtandem.a: $(LIB_OBJ)
	ar rcs $@ $^

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

$(BUILD)/bench-window: bench/bench_window.c $(BUILD)/libtandem.a
	$(CC) $(BASEFLAGS) $(CFLAGS) -o $@ $^ $(LDLIBS)

bench: $(BUILD)/bench-predict
	scripts/bench.sh

test:
	scripts/test.sh

format:
	clang-format -i include/*.h src/*/*.c src/*/*.h tests/unit/*.c tests/fuzz/*.c

clean:
	rm -rf build build-asan build-fuzz

-include $(LIB_OBJ:.o=.d) $(CLI_OBJ:.o=.d) $(TEST_OBJ:.o=.d)
