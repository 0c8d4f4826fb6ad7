/*
 * embed.c - tandem embedded in a C program through its public API
 * (tandem.h) and the shared library, found with pkg-config:
 *
 *   embed PIPELINE EVENTS.jsonl [STATE_DIR]
 *
 * opens the pipeline, makes its entity state (in memory, or durable in
 * STATE_DIR), and answers each line of EVENTS.jsonl (one JSON event) as
 * the live endpoint does, one answer per line on stdout. A rejected
 * event's answer is its {"error": ...} object; the program goes on, as a
 * server would, and exits 1 at the end if any event was rejected.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <tandem.h>

int main(int argc, char **argv) {
  if (argc < 3 || argc > 4) {
    fprintf(stderr, "usage: embed PIPELINE EVENTS.jsonl [STATE_DIR]\n");
    return 2;
  }
  tdm_pipeline *pipeline;
  tdm_state *state;
  tdm_error err;
  if (tdm_pipeline_open(argv[1], NULL, &pipeline, &err) != TDM_OK) {
    fprintf(stderr, "embed: %s\n", err.message);
    return 2;
  }
  if (tdm_state_open(pipeline, argc == 4 ? argv[3] : NULL, &state, &err) !=
      TDM_OK) {
    fprintf(stderr, "embed: %s\n", err.message);
    tdm_pipeline_free(pipeline);
    return 1;
  }
  FILE *in = fopen(argv[2], "r");
  if (in == NULL) {
    perror(argv[2]);
    tdm_state_free(state);
    tdm_pipeline_free(pipeline);
    return 2;
  }
  fprintf(stderr, "embed: tandem %s, pipeline %s\n", tdm_version(),
          tdm_pipeline_name(pipeline));
  char *line = NULL;
  size_t cap = 0;
  ssize_t len;
  int rejected = 0;
  while ((len = getline(&line, &cap, in)) > 0) {
    while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r'))
      line[--len] = 0;
    if (len == 0) continue;
    const char *answer;
    size_t answer_len;
    /* The answer belongs to the state until the next call: print it now. */
    if (tdm_state_process(state, line, (size_t)len, 0, &answer, &answer_len,
                          &err) != TDM_OK)
      rejected++;
    fwrite(answer, 1, answer_len, stdout);
    fputc('\n', stdout);
  }
  free(line);
  fclose(in);
  tdm_state_free(state); /* with STATE_DIR: everything is on disk */
  tdm_pipeline_free(pipeline);
  return rejected ? 1 : 0;
}
