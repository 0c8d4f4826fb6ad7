/*
 * score_api.c - tdm_score_file of include/tandem.h: `tandem score` as a
 * call. A thin layer over the scoring runner (src/batch/score.c), so that
 * the CLI and a program embedding tandem get the same bytes from the same
 * code; what it adds is the checks a command-line parser would have made
 * for them.
 */
#include <stdio.h>
#include <string.h>

#include "../batch/score.h"
#include "../core/core.h"
#include "tandem.h"

/* The run replaces OUT and OUT.manifest.json at its end: refuse, before
 * anything is written, when either is the model or the input (by any
 * name, a link or another spelling of the path included). */
static int refuse_outputs_onto_inputs(const char *model_path,
                                      const char *in_path, const char *out_path,
                                      tdm_error *err) {
  const char *inputs[] = {model_path, in_path};
  const char *input_names[] = {"the model", "the input"};
  char manifest[4096];
  if ((size_t)snprintf(manifest, sizeof manifest, "%s.manifest.json",
                       out_path) >= sizeof manifest)
    return tdm__fail(err, TDM_EINVAL, "%s: path too long", out_path);
  int rc = tdm__refuse_output_onto_input("the output", out_path, inputs,
                                         input_names, 2, err);
  if (rc == TDM_OK)
    rc = tdm__refuse_output_onto_input("the manifest", manifest, inputs,
                                       input_names, 2, err);
  return rc;
}

int tdm_score_file(const char *model_path, const char *in_path,
                   const char *out_path, const tdm_score_options *options,
                   tdm_score_stats *stats, tdm_error *err) {
  static const tdm_score_options defaults = {0};
  tdm_score_stats ignored;
  if (stats == NULL) stats = &ignored;
  memset(stats, 0, sizeof *stats);
  tdm__error_clear(err);
  if (model_path == NULL || in_path == NULL || out_path == NULL)
    return tdm__fail(err, TDM_EINVAL,
                     "tdm_score_file needs a model, an input and an output "
                     "path");
  int rc = refuse_outputs_onto_inputs(model_path, in_path, out_path, err);
  if (rc != TDM_OK) return rc;
  tdm__score_options opt = {.model_path = model_path,
                            .in_path = in_path,
                            .out_path = out_path,
                            .score = options ? *options : defaults};
  return tdm__score_run(&opt, stats, err);
}
