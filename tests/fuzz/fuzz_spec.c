/*
 * fuzz_spec.c - a libFuzzer harness for pipeline files: the input is YAML
 * text, read by tdm__spec_parse and, when its shape is valid, compiled
 * without a model (features only), which runs every expression, window
 * and dependency check. Either step may refuse the input, with a status
 * and a message naming the file; neither may crash, leak or misbehave
 * under the sanitizers. Seeds: tests/fuzz/corpus/spec/.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../src/pipeline/pipeline.h"
#include "../../src/pipeline/spec.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  tdm__spec *spec;
  tdm_error err;
  memset(&err, 0, sizeof err);
  int rc = tdm__spec_parse((const char *)data, size, "fuzz.yaml", &spec, &err);
  if (rc != TDM_OK) {
    if (strncmp(err.message, "fuzz.yaml", 9) != 0 && rc != TDM_ENOMEM) {
      fprintf(stderr, "fuzz_spec: a message without the file: %s\n",
              err.message);
      abort();
    }
    return 0;
  }
  tdm__pipeline *p;
  rc = tdm__pipeline_from_spec(spec, TDM__PIPELINE_FEATURES_ONLY, &p, &err);
  if (rc == TDM_OK) tdm__pipeline_free(p);
  return 0;
}
