/*
 * fuzz_events.c - a libFuzzer harness for the live events endpoint's
 * body: one JSON event or an array of them, turned into events
 * (tdm__event_from_json) and run through the pipeline core against one
 * state map, each result formatted as JSON. A fixed pipeline (features
 * only, no model) with every kind of window and a few expressions is
 * compiled once. Bad events must fail cleanly; the state must keep
 * working; every formatted result must be valid JSON.
 * Seeds: tests/fuzz/corpus/events/.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../src/core/json.h"
#include "../../src/io/events.h"
#include "../../src/pipeline/pipeline.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char pipeline_yaml[] =
    "name: fuzz\n"
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
    "  - {name: sd_7d, agg: stddev(amount), window: 7d, hop: 1h}\n"
    "  - {name: max_1h, agg: max(amount), window: 1h}\n"
    "  - {name: last_amount, agg: last(amount), window: 1d}\n"
    "  - {name: shops_1d, agg: distinct(shop), window: 1d}\n"
    "  - {name: gap, agg: since_last}\n"
    "  - {name: small_b, agg: count, window: 10m, where: \"kind == 1 and amount < 5\"}\n"
    "  - {name: ratio, expr: \"amount / max(mean_7d, 1)\"}\n"
    "model: unused.json\n"
    "state: {lateness: 10m, max_events: 64}\n";

static tdm__pipeline *pipeline;
static tdm__state_map *map;
static tdm__result result;

static void setup(void) {
  tdm__spec *spec;
  tdm_error err;
  if (tdm__spec_parse(pipeline_yaml, sizeof pipeline_yaml - 1, "fuzz.yaml",
                      &spec, &err) != TDM_OK ||
      tdm__pipeline_from_spec(spec, TDM__PIPELINE_FEATURES_ONLY, &pipeline,
                              &err) != TDM_OK ||
      tdm__state_map_new(pipeline, &map) != TDM_OK ||
      tdm__result_init(pipeline, &result, NULL) != TDM_OK) {
    fprintf(stderr, "fuzz_events: setup: %s\n", err.message);
    abort();
  }
}

static void one(const tdm__json_doc *doc, const tdm__json *object) {
  const tdm__spec *spec = tdm__pipeline_spec(pipeline);
  tdm__str fields[16];
  tdm_error err;
  if (tdm__event_from_json(spec, doc, object, NULL, fields, &err) != TDM_OK)
    return;
  tdm__event ev = {fields};
  if (tdm__pipeline_process(pipeline, map, &ev, &result, &err) != TDM_OK)
    return;
  tdm__buf out = {0};
  if (tdm__pipeline_json(pipeline, &ev, &result, 1, &out) == TDM_OK) {
    tdm__json_doc check;
    if (tdm__json_parse(&check, out.data, out.len, "result", 0, &err) !=
        TDM_OK) {
      fprintf(stderr, "fuzz_events: a result is not JSON: %s\n%.*s\n",
              err.message, (int)out.len, out.data);
      abort();
    }
    tdm__json_doc_free(&check);
  }
  tdm__buf_free(&out);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (pipeline == NULL) setup();
  /* Keep the state bounded across inputs. */
  if (tdm__state_map_entities(map) > 1000) {
    tdm__state_map_free(map);
    if (tdm__state_map_new(pipeline, &map) != TDM_OK) abort();
  }
  tdm__json_doc doc;
  tdm_error err;
  if (tdm__json_parse(&doc, (const char *)data, size, "request", 0, &err) !=
      TDM_OK)
    return 0;
  if (doc.root->type == TDM__JSON_ARRAY) {
    for (size_t i = 0; i < doc.root->count; i++) one(&doc, &doc.root->items[i]);
  } else {
    one(&doc, doc.root);
  }
  tdm__json_doc_free(&doc);
  return 0;
}
