/*
 * make_kafka_corpus.c - writes the generated seeds of fuzz_kafka and
 * fuzz_changelog (kafka_pipeline.h's pipeline and fixed stream):
 *   corpus/changelog/state-after-N: the changelog value of card07 after N
 *     messages, [u64 tag][tdm__state_map_encode], as the stream produces
 *     it (the tag is the offset after card07's last applied message);
 *   corpus/kafka/stream-A-B: messages A..B-1, one per line.
 * The hand-written seeds (regression-*, invalid-*) are left alone. Build
 * and run from the repository root after `make`:
 *   cc -std=c11 -D_DEFAULT_SOURCE -Iinclude -o build/make-kafka-corpus \
 *     tests/fuzz/make_kafka_corpus.c build/libtandem.a -lcurl -lfyaml \
 *     -llmdb -lmicrohttpd -lrdkafka -lsqlite3 -lcrypto -lm -lpthread
 *   build/make-kafka-corpus tests/fuzz/corpus
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kafka_pipeline.h"

static void write_file(const char *path, const void *data, size_t len) {
  FILE *f = fopen(path, "wb");
  if (f == NULL || fwrite(data, 1, len, f) != len || fclose(f) != 0) {
    fprintf(stderr, "make_kafka_corpus: cannot write %s\n", path);
    exit(1);
  }
}

int main(int argc, char **argv) {
  if (argc != 2) {
    fprintf(stderr, "usage: %s CORPUS_DIR\n", argv[0]);
    return 2;
  }
  tdm__pipeline *p = kafka_pipeline();
  tdm__state_map *map;
  tdm__result result;
  if (tdm__state_map_new(p, &map) != TDM_OK ||
      tdm__result_init(p, &result, NULL) != TDM_OK)
    return 1;
  static const unsigned snapshots[] = {1, 9, 25, 60, 150, 300, 600};
  size_t next = 0;
  char text[512], path[4096];
  tdm__str key = {KAFKA_KEY, strlen(KAFKA_KEY)};
  for (unsigned i = 0; i < 600; i++) {
    size_t len = kafka_message(i, text, sizeof text);
    if (kafka_process(p, map, &result, text, len, i) != TDM_OK) {
      fprintf(stderr, "make_kafka_corpus: message %u: %s\n", i, text);
      return 1;
    }
    if (next < sizeof snapshots / sizeof snapshots[0] &&
        i + 1 == snapshots[next]) {
      tdm__buf value = {0};
      uint64_t tag = tdm__state_map_tag(map, key);
      if (tdm__buf_append(&value, &tag, 8) != TDM_OK ||
          tdm__state_map_encode(map, key, &value) != TDM_OK)
        return 1;
      snprintf(path, sizeof path, "%s/changelog/state-after-%u", argv[1],
               i + 1);
      write_file(path, value.data, value.len);
      tdm__buf_free(&value);
      next++;
    }
  }
  /* Runs of messages for fuzz_kafka: short, with duplicates, late ones,
   * both time forms. */
  static const unsigned runs[][2] = {{0, 1}, {0, 12}, {20, 30}, {40, 64}};
  for (size_t r = 0; r < sizeof runs / sizeof runs[0]; r++) {
    tdm__buf b = {0};
    for (unsigned i = runs[r][0]; i < runs[r][1]; i++) {
      size_t len = kafka_message(i, text, sizeof text);
      if ((i > runs[r][0] && tdm__buf_append(&b, "\n", 1) != TDM_OK) ||
          tdm__buf_append(&b, text, len) != TDM_OK)
        return 1;
    }
    snprintf(path, sizeof path, "%s/kafka/stream-%u-%u", argv[1], runs[r][0],
             runs[r][1]);
    write_file(path, b.data, b.len);
    tdm__buf_free(&b);
  }
  tdm__result_free(&result);
  tdm__state_map_free(map);
  tdm__pipeline_free(p);
  return 0;
}
