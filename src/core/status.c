/*
 * status.c - status codes and error messages. The codes come from the one
 * X-macro list in tandem.h; a tdm_error carries a code and a one-line
 * message that names where the problem is.
 */
#include <stdio.h>
#include <string.h>

#include "core.h"

const char *tdm_strerror(int status) {
  switch (status) {
#define TDM__STATUS_TEXT(name, value, text) \
  case value: return text;
    TDM_STATUS_LIST(TDM__STATUS_TEXT)
#undef TDM__STATUS_TEXT
  }
  return "unknown status";
}

const char *tdm_status_name(int status) {
  switch (status) {
#define TDM__STATUS_NAME(name, value, text) \
  case value: return #name;
    TDM_STATUS_LIST(TDM__STATUS_NAME)
#undef TDM__STATUS_NAME
  }
  return "TDM_UNKNOWN";
}

int tdm__fail(tdm_error *err, int status, const char *fmt, ...) {
  if (err != NULL) {
    va_list ap;
    va_start(ap, fmt);
    err->status = status;
    vsnprintf(err->message, sizeof err->message, fmt, ap);
    va_end(ap);
  }
  return status;
}

void tdm__error_clear(tdm_error *err) {
  if (err != NULL) {
    err->status = TDM_OK;
    err->message[0] = '\0';
  }
}
