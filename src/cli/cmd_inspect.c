/*
 * cmd_inspect.c - `tandem inspect M`: what a model file is: its format,
 * objective, trees, classes, features, depth, size and version (SHA-256).
 */
#include <getopt.h>
#include <stdio.h>
#include <string.h>

#include "../core/core.h"
#include "cli.h"

static const char inspect_help[] =
    "usage: tandem inspect [--json] MODEL\n"
    "\n"
    "Describes a model file: format, objective, trees, classes, features\n"
    "(names and types), maximum depth, node count, and the SHA-256 of the\n"
    "file, which tandem uses as the model's version.\n"
    "\n"
    "options:\n"
    "  --json   print one JSON object instead of text\n"
    "  --help, -h show this help\n"
    "\n"
    "exit status: 0 success, 1 runtime failure, 2 bad usage or bad input\n";

static void print_json_string(const char *s) {
  putchar('"');
  for (; *s; s++) {
    unsigned char ch = (unsigned char)*s;
    if (ch == '"' || ch == '\\')
      printf("\\%c", ch);
    else if (ch < 0x20)
      printf("\\u%04x", ch);
    else
      putchar(ch);
  }
  putchar('"');
}

static void print_json(const tdm_model *model, const tdm_model_info *info,
                       const char *path) {
  printf("{\"path\":");
  print_json_string(path);
  printf(",\"format\":\"%s\",\"library_version\":", info->format_name);
  print_json_string(info->library_version);
  printf(",\"booster\":");
  print_json_string(info->booster);
  printf(",\"objective\":");
  print_json_string(info->objective);
  printf(
      ",\"sha256\":\"%s\",\"trees\":%zu,\"outputs\":%zu,\"classes\":%zu,"
      "\"max_depth\":%zu,\"nodes\":%zu,\"categorical_splits\":%zu,"
      "\"precision\":\"%s\",\"features\":[",
      info->sha256, info->num_trees, info->num_outputs, info->num_classes,
      info->max_depth, info->num_nodes, info->num_categorical_splits,
      info->float32 ? "float32" : "float64");
  for (size_t i = 0; i < info->num_features; i++) {
    printf(i ? ",{\"name\":" : "{\"name\":");
    print_json_string(tdm_model_feature_name(model, i));
    printf(",\"type\":");
    print_json_string(tdm_model_feature_type(model, i));
    printf("}");
  }
  printf("]}\n");
}

/* A feature type in words for people: XGBoost's feature_types codes (q, c,
 * i, int, float) mean nothing to a reader who has not read its source.
 * --json keeps the code itself, which is what XGBoost reads back. */
static const char *type_in_words(const char *type) {
  static const struct {
    const char *code, *words;
  } names[] = {{"c", "categorical (c)"},
               {"q", "number (q)"},
               {"float", "number (float)"},
               {"int", "integer (int)"},
               {"i", "indicator, 0 or 1 (i)"}};
  for (size_t k = 0; k < sizeof names / sizeof names[0]; k++)
    if (strcmp(type, names[k].code) == 0) return names[k].words;
  return type;
}

static void print_text(const tdm_model *model, const tdm_model_info *info,
                       const char *path) {
  printf("model:       %s\n", path);
  printf("format:      %s%s%s\n", info->format_name,
         info->library_version[0] ? ", written by version " : "",
         info->library_version);
  printf("version:     sha256:%s\n", info->sha256);
  printf("booster:     %s\n", info->booster);
  printf("objective:   %s\n", info->objective);
  printf("precision:   %s\n", info->float32 ? "float32" : "float64");
  printf("trees:       %zu\n", info->num_trees);
  printf("outputs:     %zu per row", info->num_outputs);
  if (info->num_classes) printf(" (%zu classes)", info->num_classes);
  printf("\n");
  printf("max depth:   %zu\n", info->max_depth);
  printf("nodes:       %zu (%zu categorical splits)\n", info->num_nodes,
         info->num_categorical_splits);
  printf("features:    %zu%s\n", info->num_features,
         tdm_model_has_feature_names(model) ? "" : " (unnamed: f0, f1, ...)");
  for (size_t i = 0; i < info->num_features; i++) {
    const char *type = tdm_model_feature_type(model, i);
    printf("  %4zu  %-32s %s\n", i, tdm_model_feature_name(model, i),
           type_in_words(type));
  }
}

int tdm__cmd_inspect(int argc, char **argv) {
  static const struct option long_options[] = {{"json", no_argument, NULL, 'j'},
                                               {"help", no_argument, NULL, 'h'},
                                               {NULL, 0, NULL, 0}};
  int json = 0;
  opterr = 0;
  optind = 1;
  int c;
  while ((c = getopt_long(argc, argv, ":h", long_options, NULL)) != -1) {
    switch (c) {
      case 'j': json = 1; break;
      case 'h': fputs(inspect_help, stdout); return TDM_EXIT_OK;
      default:
        return tdm__usage_error("inspect", "unknown option '%s'",
                                argv[optind - 1]);
    }
  }
  if (argc - optind != 1)
    return tdm__usage_error("inspect", "expected one model file");
  const char *path = argv[optind];
  tdm_model *model;
  tdm_error err;
  int rc = tdm_model_load(path, &model, &err);
  if (rc != TDM_OK) return tdm__report(rc, &err);
  tdm_model_info info;
  tdm_model_get_info(model, &info);
  if (json)
    print_json(model, &info, path);
  else
    print_text(model, &info, path);
  tdm_model_free(model);
  return TDM_EXIT_OK;
}
