/*
 * fuzz_changelog.c - a libFuzzer harness for the values of `tandem
 * stream`'s changelog topic: the input is one record's value, [u64 tag]
 * [entity state], applied as src/stream/changelog.c's apply() does:
 * shorter than 8 bytes is refused, else tdm__state_map_forget of the
 * record's key, then tdm__state_map_restore into the partition's map. The
 * pipeline is kafka_pipeline.h's; the map holds its 40 entities after 600
 * messages of its fixed stream, and the key is one of them (card07), so a
 * restore meets a full map with probe chains, as after a rebalance.
 * Checks: a rejected state fails with TDM_EPARSE and a message and leaves
 * every other entity as it was; an accepted one encodes back to the same
 * bytes with its tag, takes further events (a repeated id answers from
 * the restored record, formatted as valid JSON) and its new state
 * restores again. The entity's saved state is put back after each input.
 * Seeds: tests/fuzz/corpus/changelog/ (make_kafka_corpus.c: states of
 * card07 after 1 to 600 messages, with their tags).
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kafka_pipeline.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define SETUP_MESSAGES 600

static void check(int ok, const char *what) {
  if (ok) return;
  fprintf(stderr, "fuzz_changelog: check failed: %s\n", what);
  abort();
}

static tdm__pipeline *pipeline;
static tdm__state_map *map;
static tdm__result result;
/* Every entity's state after setup: key i is "card%02d". */
static tdm__buf saved[KAFKA_ENTITIES];
static uint64_t saved_tag[KAFKA_ENTITIES];
static size_t entities;

static tdm__str key_of(unsigned i, char buf[16]) {
  snprintf(buf, 16, "card%02u", i);
  return (tdm__str){buf, strlen(buf)};
}

static void setup(void) {
  pipeline = kafka_pipeline();
  check(tdm__state_map_new(pipeline, &map) == TDM_OK, "a map");
  check(tdm__result_init(pipeline, &result, NULL) == TDM_OK, "a result");
  char text[512];
  for (unsigned i = 0; i < SETUP_MESSAGES; i++) {
    size_t len = kafka_message(i, text, sizeof text);
    check(kafka_process(pipeline, map, &result, text, len, i) == TDM_OK,
          "the fixed stream is processed");
  }
  entities = tdm__state_map_entities(map);
  for (unsigned i = 0; i < KAFKA_ENTITIES; i++) {
    char buf[16];
    tdm__str key = key_of(i, buf);
    saved_tag[i] = tdm__state_map_tag(map, key);
    tdm__state_map_encode(map, key, &saved[i]); /* empty if not there */
  }
}

/* Whether every entity but `except` still encodes to its saved state. */
static void check_others(unsigned except) {
  tdm__buf now = {0};
  for (unsigned i = 0; i < KAFKA_ENTITIES; i++) {
    if (i == except || saved[i].len == 0) continue;
    char buf[16];
    tdm__str key = key_of(i, buf);
    now.len = 0;
    check(tdm__state_map_encode(map, key, &now) == TDM_OK &&
              now.len == saved[i].len &&
              memcmp(now.data, saved[i].data, now.len) == 0 &&
              tdm__state_map_tag(map, key) == saved_tag[i],
          "the other entities are untouched");
  }
  tdm__buf_free(&now);
}

/* Events for the restored entity after its state: repeated ids (from the
 * fixed stream, likely in a restored state) and new ones, on time and
 * late; every result is formatted and must be JSON. */
static void more_events(void) {
  static const char *const events[] = {
      "{\"id\":\"e592\",\"card\":\"card07\",\"ts\":1767369680,\"amount\":3}",
      "{\"id\":\"e0\",\"card\":\"card07\",\"ts\":1767225600,\"amount\":1}",
      "{\"id\":\"n1\",\"card\":\"card07\",\"ts\":1767369800,\"amount\":2.5,"
      "\"shop\":\"s1\",\"kind\":\"b\"}",
      "{\"id\":\"n2\",\"card\":\"card07\",\"ts\":1767369500,\"amount\":4,"
      "\"kind\":\"b\"}",
      "{\"id\":\"n3\",\"card\":\"card07\",\"ts\":1767380000,\"amount\":900,"
      "\"shop\":\"s9\"}",
      "{\"id\":\"n1\",\"card\":\"card07\",\"ts\":1767369800,\"amount\":2.5}",
  };
  tdm__buf out = {0};
  for (size_t i = 0; i < sizeof events / sizeof events[0]; i++) {
    const tdm__spec *spec = tdm__pipeline_spec(pipeline);
    tdm__json_doc doc;
    tdm_error err;
    check(tdm__json_parse(&doc, events[i], strlen(events[i]), "event", 0,
                          &err) == TDM_OK,
          "a fixed event parses");
    tdm__str fields[spec->num_fields + 1];
    tdm__event ev = {fields};
    check(tdm__event_from_json(spec, &doc, doc.root, NULL, fields, &err) ==
              TDM_OK,
          "a fixed event reads");
    int rc = tdm__pipeline_process(pipeline, map, &ev, &result, &err);
    check(rc != TDM_ENOMEM, "no out of memory");
    if (rc == TDM_OK) {
      out.len = 0;
      check(tdm__pipeline_json(pipeline, &ev, &result, 1, &out) == TDM_OK,
            "json");
      tdm__json_doc parsed;
      if (tdm__json_parse(&parsed, out.data, out.len, "result", 0, &err) !=
          TDM_OK) {
        fprintf(stderr, "fuzz_changelog: a result is not JSON: %s\n%.*s\n",
                err.message, (int)out.len, out.data);
        abort();
      }
      tdm__json_doc_free(&parsed);
    }
    tdm__json_doc_free(&doc);
  }
  tdm__buf_free(&out);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (pipeline == NULL) setup();
  if (size < 8) return 0; /* apply(): "the state is cut short" */
  unsigned which = 7;
  char buf[16];
  tdm__str key = key_of(which, buf);
  uint64_t tag;
  memcpy(&tag, data, 8);
  tdm__state_map_forget(map, key);
  tdm_error err;
  int rc = tdm__state_map_restore(map, key, tag, data + 8, size - 8, &err);
  if (rc != TDM_OK) {
    check(rc == TDM_EPARSE && err.message[0] != '\0', "a clean rejection");
    check(tdm__state_map_entities(map) == entities - 1, "no entity added");
    check(tdm__state_map_encode(map, key, &(tdm__buf){0}) == TDM_ENOTFOUND,
          "the rejected entity is not there");
  } else {
    check(tdm__state_map_entities(map) == entities, "the entity is back");
    check(tdm__state_map_tag(map, key) == tag, "its tag");
    tdm__buf again = {0};
    check(tdm__state_map_encode(map, key, &again) == TDM_OK, "encode");
    if (size > 12 && data[12] == 1) {
      /* A window state of format version 1 is written as version 2: that
       * one restores and encodes to the same bytes. */
      tdm__buf v2 = {0};
      tdm__state_map_forget(map, key);
      check(tdm__state_map_restore(map, key, tag, again.data, again.len,
                                   &err) == TDM_OK,
            "a version 1 state restores as version 2");
      check(tdm__state_map_encode(map, key, &v2) == TDM_OK, "encode");
      check(v2.len == again.len && memcmp(v2.data, again.data, v2.len) == 0,
            "a version 1 state encodes the same as version 2");
      tdm__buf_free(&v2);
    } else {
      check(again.len == size - 8 &&
                memcmp(again.data, data + 8, size - 8) == 0,
            "a restored state encodes to the same bytes");
    }
    more_events();
    /* Its new state restores in turn. */
    again.len = 0;
    check(tdm__state_map_encode(map, key, &again) == TDM_OK, "encode");
    tdm__state_map_forget(map, key);
    if (tdm__state_map_restore(map, key, 1, again.data, again.len, &err) !=
        TDM_OK) {
      fprintf(stderr, "fuzz_changelog: a state after events: %s\n",
              err.message);
      abort();
    }
    tdm__buf_free(&again);
    tdm__state_map_forget(map, key);
  }
  check_others(which);
  check(tdm__state_map_restore(map, key, saved_tag[which], saved[which].data,
                               saved[which].len, &err) == TDM_OK,
        "the saved state is put back");
  return 0;
}
