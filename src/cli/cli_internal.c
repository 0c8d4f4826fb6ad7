/*
 * cli_internal.c - the few internal helpers that the commands running on
 * the public API (cmd_batch.c) still need for their arguments and
 * messages: times as the pipelines write them, the refusal to write an
 * output over an input, and the process's allocator setting. Each is a
 * call into the library's own code, so that the command and the library
 * never disagree on what a time is; they live here so that those
 * commands include nothing of the library but include/tandem.h
 * (scripts/library_boundary.py checks it).
 */
#include <string.h>

#include "../core/core.h"
#include "../pipeline/spec.h"
#include "cli.h"

int tdm__cli_parse_time(const char *text, int64_t *ms) {
  return tdm__parse_time(text, strlen(text), TDM__TIME_AUTO, ms);
}

void tdm__cli_format_time(int64_t ms, char buf[32]) {
  tdm__format_time(ms, buf);
}

int64_t tdm__cli_now_ms(void) { return tdm__now_ms(); }

void tdm__cli_keep_heap(void) { tdm__keep_heap(); }

int tdm__cli_refuse_output_onto_input(const char *flag, const char *out_path,
                                      const char *const *inputs,
                                      const char *const *input_flags,
                                      size_t num_inputs, tdm_error *err) {
  return tdm__refuse_output_onto_input(flag, out_path, inputs, input_flags,
                                       num_inputs, err);
}
