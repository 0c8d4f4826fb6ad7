/*
 * kafka_pipeline.h - the pipeline shared by fuzz_kafka.c, fuzz_changelog.c
 * and make_kafka_corpus.c: what `tandem stream` runs, compiled from an
 * inline spec (as tests/unit/test_pipeline.c does) with a logistic model
 * written to a temporary file once, so results have a score and decision
 * rules as in a real stream. Every kind of window and role is used (exact,
 * hopped, all-time, since_last, a filter, distinct strings), with an
 * event id (the dedupe the stream's restarts rely on), a ttl and a short
 * lateness. No lookup: that needs a table store (test_stream.py runs
 * one). The same spec everywhere, so the corpus's encoded states are
 * states of the fuzzers' pipeline.
 */
#ifndef TDM_FUZZ_KAFKA_PIPELINE_H
#define TDM_FUZZ_KAFKA_PIPELINE_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "../../src/core/json.h"
#include "../../src/io/events.h"
#include "../../src/pipeline/pipeline.h"

static const char kafka_model_json[] =
    "{\"format\": \"tandem-linear\", \"link\": \"logit\", \"intercept\": -3,\n"
    " \"coefficients\": {\"log_amount\": 0.4, \"n_1h\": 0.3, \"shops_1d\": 0.2,"
    " \"ratio\": 0.1, \"gap\": -0.0001},\n"
    " \"default_missing\": 0}\n";

/* %s: the model's path. */
static const char kafka_pipeline_format[] =
    "name: kafka\n"
    "entity: card\n"
    "time: ts\n"
    "id: id\n"
    "fields: {id: string, card: string, ts: time, amount: number,\n"
    "         shop: string, kind: {type: category, values: [a, b, c]}}\n"
    "features:\n"
    "  - {name: log_amount, expr: \"log1p(amount)\"}\n"
    "  - {name: n_1h, agg: count, window: 1h}\n"
    "  - {name: sum_1d, agg: sum(amount), window: 1d}\n"
    "  - {name: mean_7d, agg: mean(amount), window: 7d, hop: 1h}\n"
    "  - {name: sd_all, agg: stddev(amount)}\n"
    "  - {name: max_1h, agg: max(amount), window: 1h}\n"
    "  - {name: last_amount, agg: last(amount), window: 1d}\n"
    "  - {name: shops_1d, agg: distinct(shop), window: 1d}\n"
    "  - {name: gap, agg: since_last}\n"
    "  - {name: small_b, agg: count, window: 10m, where: \"kind == 1 and "
    "amount < 5\"}\n"
    "  - {name: ratio, expr: \"amount / max(mean_7d, 1)\"}\n"
    "model: {path: %s}\n"
    "decision:\n"
    "  - {when: \"score >= 0.8\", then: decline}\n"
    "  - {when: \"score >= 0.3 or small_b >= 3\", then: review}\n"
    "  - {then: approve}\n"
    "output: [id, card, ts, amount, score, decision]\n"
    "state: {lateness: 10m, ttl: 8d, dedupe: 1d, max_events: 64}\n";

/* Compiles the pipeline (once per process); aborts on failure. */
static inline tdm__pipeline *kafka_pipeline(void) {
  static tdm__pipeline *p;
  if (p != NULL) return p;
  char dir[] = "/tmp/tandem-fuzz-kafka.XXXXXX";
  if (mkdtemp(dir) == NULL) abort();
  char model[64], yaml[4096];
  snprintf(model, sizeof model, "%s/model.json", dir);
  FILE *f = fopen(model, "w");
  if (f == NULL || fputs(kafka_model_json, f) < 0 || fclose(f) != 0) abort();
  int n = snprintf(yaml, sizeof yaml, kafka_pipeline_format, model);
  tdm__spec *spec;
  tdm_error err;
  if (tdm__spec_parse(yaml, (size_t)n, "kafka.yaml", &spec, &err) != TDM_OK ||
      tdm__pipeline_from_spec(spec, 0, &p, &err) != TDM_OK) {
    fprintf(stderr, "kafka_pipeline: %s\n", err.message);
    abort();
  }
  /* The model is loaded; its file and directory are not needed. */
  unlink(model);
  rmdir(dir);
  return p;
}

/* A fixed stream of messages for the corpus and for fuzz_changelog's
 * map: event i is 4 minutes after event i-1 (a few 5 minutes late),
 * over entities card00..card39 with card07 every 8th event; every 25th
 * repeats the id before it (a duplicate). */
#define KAFKA_T0_S 1767225600LL /* 2026-01-01T00:00:00Z */
#define KAFKA_ENTITIES 40
#define KAFKA_KEY "card07"

static inline int64_t kafka_event_time_ms(unsigned i) {
  return (KAFKA_T0_S + 240LL * i - (i % 11 == 5 ? 300 : 0)) * 1000;
}

/* Message i's payload, NUL-terminated, in buf; returns its length. */
static inline size_t kafka_message(unsigned i, char *buf, size_t size) {
  unsigned h = i * 2654435761u ^ 0x9e3779b9u;
  h ^= h >> 15;
  unsigned card = i % 8 == 0 ? 7 : h % KAFKA_ENTITIES;
  unsigned id = i % 25 == 24 ? i - 1 : i;
  int64_t t = kafka_event_time_ms(i) / 1000;
  char ts[40];
  if (i % 3 == 0) {
    snprintf(ts, sizeof ts, "%lld", (long long)t);
  } else {
    time_t tt = (time_t)t;
    struct tm tm;
    gmtime_r(&tt, &tm);
    strftime(ts, sizeof ts, "\"%Y-%m-%dT%H:%M:%SZ\"", &tm);
  }
  int n = snprintf(buf, size,
                   "{\"id\":\"e%u\",\"card\":\"card%02u\",\"ts\":%s,"
                   "\"amount\":%u.%02u,\"shop\":\"s%u\",\"kind\":\"%c\"}",
                   id, card, ts, h % 400, (h >> 8) % 100, (h >> 12) % 12,
                   "abc"[(h >> 4) % 3]);
  return n < 0 ? 0 : (size_t)n;
}

/* Processes message payload text at `offset` through the pipeline
 * against map, as the stream does (an applied event tags its entity with
 * offset + 1); returns the status. The result's strings point into the
 * message, so only its numbers are valid on return. */
static inline int kafka_process(tdm__pipeline *p, tdm__state_map *map,
                                tdm__result *result, const char *text,
                                size_t len, uint64_t offset) {
  const tdm__spec *spec = tdm__pipeline_spec(p);
  tdm__json_doc doc;
  tdm_error err;
  int rc = tdm__json_parse(&doc, text, len, "message", 0, &err);
  if (rc != TDM_OK) return rc;
  tdm__str fields[spec->num_fields + 1];
  tdm__event ev = {fields};
  rc = doc.root->type == TDM__JSON_OBJECT ? TDM_OK : TDM_EPARSE;
  if (rc == TDM_OK)
    rc = tdm__event_from_json(spec, &doc, doc.root, NULL, fields, &err);
  if (rc == TDM_OK) rc = tdm__pipeline_process(p, map, &ev, result, &err);
  if (rc == TDM_OK && !result->duplicate)
    tdm__state_map_set_tag(map, result->entity, offset + 1);
  tdm__json_doc_free(&doc);
  return rc;
}

#endif /* TDM_FUZZ_KAFKA_PIPELINE_H */
