/*
 * fuzz_kafka.c - a libFuzzer harness for `tandem stream`'s decoding of
 * Kafka messages (src/stream/stream.c, handle()). The input is a short
 * run of one partition's message payloads, separated by newlines; each
 * goes through what handle() calls, in its order: tdm__json_parse, "not
 * a JSON object", tdm__event_from_json, tdm__pipeline_process with the
 * partition's state map, tdm__pipeline_json, and for a duplicate the
 * removal of the "duplicate" flag the stream relies on. After every
 * message the changed states take the changelog's path, as at a commit:
 * tdm__state_map_take_dirty, each state restored into another map
 * (tdm__state_map_restore, as src/stream/changelog.c does after a
 * rebalance) and encoded again to the same bytes, as at a commit
 * (take_changes()). The pipeline is
 * kafka_pipeline.h's (a model and decision rules). A fresh map per input,
 * so an input replays alone.
 * Checks: a bad message fails cleanly (never a crash or sanitizer
 * report); every output is valid JSON; a duplicate's output ends with the
 * flag; every saved state restores and round-trips.
 * Seeds: tests/fuzz/corpus/kafka/.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../src/core/json.h"
#include "../../src/io/events.h"
#include "kafka_pipeline.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check(int ok, const char *what) {
  if (ok) return;
  fprintf(stderr, "fuzz_kafka: check failed: %s\n", what);
  abort();
}

/* The changelog's round trip of one saved state (take_dirty's callback):
 * restored into a map of its own, it encodes to the same bytes. */
static int round_trip(void *ctx, tdm__str key, uint64_t tag, const void *state,
                      size_t len) {
  tdm__pipeline *p = ctx;
  tdm__state_map *other;
  check(tdm__state_map_new(p, &other) == TDM_OK, "a map");
  tdm_error err;
  if (tdm__state_map_restore(other, key, tag, state, len, &err) != TDM_OK) {
    fprintf(stderr, "fuzz_kafka: a saved state does not restore: %s\n",
            err.message);
    abort();
  }
  check(tdm__state_map_tag(other, key) == tag, "the tag is restored");
  tdm__buf again = {0};
  check(tdm__state_map_encode(other, key, &again) == TDM_OK, "encode");
  check(again.len == len && memcmp(again.data, state, len) == 0,
        "a restored state encodes to the same bytes");
  tdm__buf_free(&again);
  tdm__state_map_free(other);
  return 0;
}

/* handle() for one message payload. */
static void one(tdm__pipeline *p, tdm__state_map *map, tdm__result *result,
                const char *payload, size_t len, uint64_t offset) {
  if (len == 0) return; /* "the message is empty": a dead letter */
  const tdm__spec *spec = tdm__pipeline_spec(p);
  tdm__json_doc doc;
  tdm_error why;
  int rc = tdm__json_parse(&doc, payload, len, "message", 0, &why);
  if (rc != TDM_OK) {
    check(why.message[0] != '\0', "a parse error has a message");
    return;
  }
  tdm__str fields[spec->num_fields + 1];
  tdm__event ev = {fields};
  if (doc.root->type != TDM__JSON_OBJECT) rc = TDM_EPARSE;
  if (rc == TDM_OK)
    rc = tdm__event_from_json(spec, &doc, doc.root, NULL, fields, &why);
  if (rc == TDM_OK) rc = tdm__pipeline_process(p, map, &ev, result, &why);
  if (rc != TDM_OK) {
    check(rc != TDM_ENOMEM, "no out of memory");
    tdm__json_doc_free(&doc);
    return;
  }
  tdm__buf out = {0};
  check(tdm__pipeline_json(p, &ev, result, 0, &out) == TDM_OK, "json");
  tdm__json_doc parsed;
  if (tdm__json_parse(&parsed, out.data, out.len, "result", 0, &why) !=
      TDM_OK) {
    fprintf(stderr, "fuzz_kafka: an output is not JSON: %s\n%.*s\n",
            why.message, (int)out.len, out.data);
    abort();
  }
  tdm__json_doc_free(&parsed);
  if (result->duplicate) {
    static const char flag[] = ",\"duplicate\":true}";
    size_t n = sizeof flag - 1;
    check(out.len >= n && memcmp(out.data + out.len - n, flag, n) == 0,
          "a duplicate's output ends with its flag");
  } else {
    tdm__state_map_set_tag(map, result->entity, offset + 1);
  }
  tdm__buf_free(&out);
  tdm__json_doc_free(&doc);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  tdm__pipeline *p = kafka_pipeline();
  static tdm__result result;
  static int ready;
  if (!ready) {
    check(tdm__result_init(p, &result, NULL) == TDM_OK, "a result");
    ready = 1;
  }
  tdm__state_map *map;
  check(tdm__state_map_new(p, &map) == TDM_OK, "a map");
  const char *at = (const char *)data, *end = at + size;
  for (uint64_t offset = 0; at <= end && offset < 64; offset++) {
    const char *nl = memchr(at, '\n', (size_t)(end - at));
    size_t len = nl ? (size_t)(nl - at) : (size_t)(end - at);
    one(p, map, &result, at, len, offset);
    tdm__state_map_take_dirty(map, round_trip, p);
    if (nl == NULL) break;
    at = nl + 1;
  }
  tdm__state_map_free(map);
  return 0;
}
