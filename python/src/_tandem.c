/*
 * _tandem.c - the CPython extension under the `tandem` package: thin
 * Python types over include/tandem.h and nothing else (no src/ header),
 * so the package is one more embedding program of the public API. Array
 * and DataFrame handling lives in tandem/__init__.py; this file takes
 * buffers that are already in the layout the C API wants, and releases
 * the GIL while tandem works.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <pthread.h>
#include <string.h>
#include <unistd.h>

#include "tandem.h"

static PyObject *tandem_error; /* tandem.Error */

/* Raises tandem.Error(message) with the status's name as its .status. */
static PyObject *raise_error(int status, const char *message) {
  PyObject *args = Py_BuildValue("(s)", message);
  if (args == NULL) return NULL;
  PyObject *exc = PyObject_Call(tandem_error, args, NULL);
  Py_DECREF(args);
  if (exc == NULL) return NULL;
  PyObject *name = PyUnicode_FromString(tdm_status_name(status));
  if (name != NULL) {
    PyObject_SetAttrString(exc, "status", name);
    Py_DECREF(name);
  }
  PyErr_SetObject(tandem_error, exc);
  Py_DECREF(exc);
  return NULL;
}

/* ---- Model ---- */

typedef struct {
  PyObject_HEAD tdm_model *model;
  tdm_model_info info;
} ModelObject;

static int model_init(ModelObject *self, PyObject *args, PyObject *kwargs) {
  static char *names[] = {"path", NULL};
  PyObject *path_obj;
  if (!PyArg_ParseTupleAndKeywords(args, kwargs, "O&", names,
                                   PyUnicode_FSConverter, &path_obj))
    return -1;
  tdm_error err;
  int rc;
  const char *path = PyBytes_AS_STRING(path_obj);
  tdm_model *model = NULL;
  Py_BEGIN_ALLOW_THREADS rc = tdm_model_load(path, &model, &err);
  Py_END_ALLOW_THREADS Py_DECREF(path_obj);
  if (rc != TDM_OK) {
    raise_error(rc, err.message);
    return -1;
  }
  tdm_model_free(self->model);
  self->model = model;
  tdm_model_get_info(model, &self->info);
  return 0;
}

static void model_dealloc(ModelObject *self) {
  tdm_model_free(self->model);
  Py_TYPE(self)->tp_free((PyObject *)self);
}

static int model_ready(ModelObject *self) {
  if (self->model != NULL) return 1;
  PyErr_SetString(PyExc_RuntimeError, "the model is not loaded");
  return 0;
}

typedef struct predict_job {
  const tdm_model *model;
  const void *rows;
  int is_float32, flags;
  size_t num_rows, width_in, width_out;
  double *out;
  int rc;
} predict_job;

static void *predict_part(void *arg) {
  predict_job *j = arg;
  j->rc = j->is_float32
              ? tdm_model_predict_float32(j->model, j->rows, j->num_rows,
                                          j->flags, j->out)
              : tdm_model_predict(j->model, j->rows, j->num_rows, j->flags,
                                  j->out);
  return NULL;
}

/*
 * _predict(rows, out, margin, threads): rows is a C-contiguous 2-D buffer
 * of float32 ('f') or float64 ('d') with the model's feature count as its
 * width; out a writable C-contiguous float64 buffer of rows x output
 * width. Rows are split into `threads` contiguous parts scored at once;
 * each row's value does not depend on the split.
 */
static PyObject *model_predict(ModelObject *self, PyObject *args) {
  PyObject *rows_obj, *out_obj;
  int margin, threads;
  if (!model_ready(self) ||
      !PyArg_ParseTuple(args, "OOpi", &rows_obj, &out_obj, &margin, &threads))
    return NULL;
  Py_buffer in, out;
  if (PyObject_GetBuffer(rows_obj, &in, PyBUF_C_CONTIGUOUS | PyBUF_FORMAT) != 0)
    return NULL;
  if (PyObject_GetBuffer(out_obj, &out, PyBUF_C_CONTIGUOUS | PyBUF_FORMAT |
                                            PyBUF_WRITABLE) != 0) {
    PyBuffer_Release(&in);
    return NULL;
  }
  int flags = margin ? TDM_PREDICT_MARGIN : 0;
  size_t width_in = self->info.num_features;
  size_t width_out = tdm_model_output_width(self->model, flags);
  int is_float32 = in.format != NULL && strcmp(in.format, "f") == 0;
  int is_float64 = in.format != NULL && strcmp(in.format, "d") == 0;
  size_t num_rows = in.ndim == 2 ? (size_t)in.shape[0] : 0;
  PyObject *result = NULL;
  if (!is_float32 && !is_float64) {
    PyErr_SetString(PyExc_TypeError, "rows must be float32 or float64");
  } else if (in.ndim != 2 || (size_t)in.shape[1] != width_in) {
    PyErr_Format(PyExc_ValueError,
                 "rows must be a 2-D array with %zu columns (the model's "
                 "features)",
                 width_in);
  } else if (out.format == NULL || strcmp(out.format, "d") != 0 ||
             (size_t)out.len != num_rows * width_out * sizeof(double)) {
    PyErr_SetString(PyExc_ValueError, "out has the wrong type or size");
  } else {
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    if (threads <= 0) threads = cores > 0 ? (int)cores : 1;
    if ((size_t)threads > num_rows / 256 + 1)
      threads = (int)(num_rows / 256 + 1); /* no thread for a few rows */
    if (threads > 256) threads = 256;
    predict_job jobs[256];
    pthread_t ids[256];
    size_t element = is_float32 ? sizeof(float) : sizeof(double);
    int started = 0;
    Py_BEGIN_ALLOW_THREADS for (int t = 0; t < threads; t++) {
      size_t first = num_rows * (size_t)t / (size_t)threads;
      size_t end = num_rows * (size_t)(t + 1) / (size_t)threads;
      jobs[t] = (predict_job){self->model,
                              (const char *)in.buf + first * width_in * element,
                              is_float32,
                              flags,
                              end - first,
                              width_in,
                              width_out,
                              (double *)out.buf + first * width_out,
                              TDM_OK};
      /* The last part runs on this thread; the others on their own. */
      if (t == threads - 1 ||
          pthread_create(&ids[t], NULL, predict_part, &jobs[t]) != 0) {
        predict_part(&jobs[t]);
        ids[t] = 0;
      } else {
        started++;
      }
    }
    for (int t = 0; t < threads; t++)
      if (ids[t] != 0) pthread_join(ids[t], NULL);
    Py_END_ALLOW_THREADS(void) started;
    int rc = TDM_OK;
    for (int t = 0; t < threads; t++)
      if (jobs[t].rc != TDM_OK) rc = jobs[t].rc;
    if (rc != TDM_OK)
      raise_error(rc, tdm_strerror(rc));
    else
      result = Py_NewRef(Py_None);
  }
  PyBuffer_Release(&in);
  PyBuffer_Release(&out);
  return result;
}

static PyObject *model_output_width(ModelObject *self, PyObject *args) {
  int margin;
  if (!model_ready(self) || !PyArg_ParseTuple(args, "p", &margin)) return NULL;
  return PyLong_FromSize_t(
      tdm_model_output_width(self->model, margin ? TDM_PREDICT_MARGIN : 0));
}

/* A list of the model's per-feature strings (names or types). */
static PyObject *feature_strings(ModelObject *self,
                                 const char *(*get)(const tdm_model *,
                                                    size_t)) {
  if (!model_ready(self)) return NULL;
  PyObject *list = PyList_New((Py_ssize_t)self->info.num_features);
  for (size_t i = 0; list != NULL && i < self->info.num_features; i++) {
    PyObject *s = PyUnicode_FromString(get(self->model, i));
    if (s == NULL) {
      Py_CLEAR(list);
      break;
    }
    PyList_SET_ITEM(list, (Py_ssize_t)i, s);
  }
  return list;
}

static PyObject *model_feature_names(ModelObject *self, PyObject *unused) {
  return feature_strings(self, tdm_model_feature_name);
}

static PyObject *model_feature_types(ModelObject *self, PyObject *unused) {
  return feature_strings(self, tdm_model_feature_type);
}

static PyObject *model_info(ModelObject *self, PyObject *unused) {
  if (!model_ready(self)) return NULL;
  const tdm_model_info *i = &self->info;
  return Py_BuildValue(
      "{s:s,s:s,s:s,s:s,s:n,s:n,s:n,s:n,s:n,s:n,s:n,s:n,s:n,s:O,s:s}",
      "format", i->format_name, "library_version", i->library_version,
      "booster", i->booster, "objective", i->objective, "num_features",
      (Py_ssize_t)i->num_features, "num_outputs", (Py_ssize_t)i->num_outputs,
      "num_scores", (Py_ssize_t)i->num_scores, "num_classes",
      (Py_ssize_t)i->num_classes, "num_trees", (Py_ssize_t)i->num_trees,
      "num_iterations", (Py_ssize_t)i->num_iterations, "num_nodes",
      (Py_ssize_t)i->num_nodes, "max_depth", (Py_ssize_t)i->max_depth,
      "num_categorical_splits", (Py_ssize_t)i->num_categorical_splits,
      "float32", i->float32 ? Py_True : Py_False, "sha256", i->sha256);
}

static PyMethodDef model_methods[] = {
    {"_predict", (PyCFunction)model_predict, METH_VARARGS,
     "_predict(rows, out, margin, threads): scores a C-contiguous matrix"},
    {"_output_width", (PyCFunction)model_output_width, METH_VARARGS, NULL},
    {"_feature_names", (PyCFunction)model_feature_names, METH_NOARGS, NULL},
    {"_feature_types", (PyCFunction)model_feature_types, METH_NOARGS, NULL},
    {"_info", (PyCFunction)model_info, METH_NOARGS, NULL},
    {NULL, NULL, 0, NULL}};

static PyTypeObject ModelType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "tandem._tandem.Model",
    .tp_basicsize = sizeof(ModelObject),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE,
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)model_init,
    .tp_dealloc = (destructor)model_dealloc,
    .tp_methods = model_methods,
    .tp_doc = "A loaded model (tdm_model): Model(path)."};

/* ---- Pipeline ---- */

typedef struct {
  PyObject_HEAD tdm_pipeline *pipeline;
} PipelineObject;

static int pipeline_init(PipelineObject *self, PyObject *args,
                         PyObject *kwargs) {
  static char *names[] = {"path", "store", "now_ms", "features_only", NULL};
  PyObject *path_obj, *store_obj = NULL;
  long long now_ms = 0;
  int features_only = 0;
  if (!PyArg_ParseTupleAndKeywords(args, kwargs, "O&|O&Lp", names,
                                   PyUnicode_FSConverter, &path_obj,
                                   PyUnicode_FSConverter, &store_obj, &now_ms,
                                   &features_only))
    return -1;
  tdm_pipeline_options opt = {0};
  opt.store = store_obj ? PyBytes_AS_STRING(store_obj) : NULL;
  opt.now_ms = now_ms;
  opt.features_only = features_only;
  tdm_pipeline *p = NULL;
  tdm_error err;
  int rc;
  Py_BEGIN_ALLOW_THREADS rc =
      tdm_pipeline_open(PyBytes_AS_STRING(path_obj), &opt, &p, &err);
  Py_END_ALLOW_THREADS Py_DECREF(path_obj);
  Py_XDECREF(store_obj);
  if (rc != TDM_OK) {
    raise_error(rc, err.message);
    return -1;
  }
  tdm_pipeline_free(self->pipeline);
  self->pipeline = p;
  return 0;
}

static void pipeline_dealloc(PipelineObject *self) {
  tdm_pipeline_free(self->pipeline);
  Py_TYPE(self)->tp_free((PyObject *)self);
}

static int pipeline_ready(PipelineObject *self) {
  if (self->pipeline != NULL) return 1;
  PyErr_SetString(PyExc_RuntimeError, "the pipeline is not open");
  return 0;
}

static PyObject *pipeline_describe(PipelineObject *self, PyObject *unused) {
  if (!pipeline_ready(self)) return NULL;
  const tdm_pipeline *p = self->pipeline;
  PyObject *fields = PyList_New(0), *features = PyList_New(0);
  for (size_t i = 0; fields && i < tdm_pipeline_num_fields(p); i++) {
    PyObject *t = Py_BuildValue("(ss)", tdm_pipeline_field_name(p, i),
                                tdm_pipeline_field_type(p, i));
    if (t == NULL || PyList_Append(fields, t) != 0) Py_CLEAR(fields);
    Py_XDECREF(t);
  }
  for (size_t i = 0; features && i < tdm_pipeline_num_features(p); i++) {
    PyObject *s = PyUnicode_FromString(tdm_pipeline_feature_name(p, i));
    if (s == NULL || PyList_Append(features, s) != 0) Py_CLEAR(features);
    Py_XDECREF(s);
  }
  PyObject *result = NULL;
  if (fields && features)
    result = Py_BuildValue("{s:s,s:s,s:O,s:O}", "name", tdm_pipeline_name(p),
                           "entity", tdm_pipeline_entity(p), "fields", fields,
                           "features", features);
  Py_XDECREF(fields);
  Py_XDECREF(features);
  return result;
}

static PyObject *batch_stats(const tdm_batch_stats *stats) {
  return Py_BuildValue("{s:n,s:n,s:n,s:n,s:i,s:d}", "events",
                       (Py_ssize_t)stats->events, "written",
                       (Py_ssize_t)stats->written, "rejected",
                       (Py_ssize_t)stats->rejected, "duplicates",
                       (Py_ssize_t)stats->duplicates, "threads",
                       stats->threads, "seconds", stats->seconds);
}

static PyObject *pipeline_batch(PipelineObject *self, PyObject *args) {
  PyObject *in_obj, *out_obj;
  int threads, explain;
  if (!pipeline_ready(self) ||
      !PyArg_ParseTuple(args, "O&O&ip", PyUnicode_FSConverter, &in_obj,
                        PyUnicode_FSConverter, &out_obj, &threads, &explain))
    return NULL;
  tdm_batch_options opt = {0};
  opt.threads = threads;
  opt.explain = explain;
  tdm_batch_stats stats;
  tdm_error err;
  int rc;
  Py_BEGIN_ALLOW_THREADS rc =
      tdm_pipeline_batch(self->pipeline, PyBytes_AS_STRING(in_obj),
                         PyBytes_AS_STRING(out_obj), &opt, &stats, &err);
  Py_END_ALLOW_THREADS Py_DECREF(in_obj);
  Py_DECREF(out_obj);
  if (rc != TDM_OK) return raise_error(rc, err.message);
  return batch_stats(&stats);
}

/* The UTF-8 texts of a list of str or None (NULL for None) into texts,
 * which the list keeps alive; what the list holds at i is named by
 * what(i) in errors. A text holding a NUL character is refused, since
 * tandem reads each cell up to its NUL. Returns 0, or -1 with an
 * exception set. */
static int list_texts(PyObject *list, const char **texts,
                      void (*what)(void *ctx, size_t i, char *buf, size_t n),
                      void *ctx) {
  Py_ssize_t n = PyList_GET_SIZE(list);
  for (Py_ssize_t i = 0; i < n; i++) {
    PyObject *item = PyList_GET_ITEM(list, i);
    texts[i] = NULL;
    if (item == Py_None) continue;
    Py_ssize_t len;
    const char *text =
        PyUnicode_Check(item) ? PyUnicode_AsUTF8AndSize(item, &len) : NULL;
    if (text != NULL && strlen(text) == (size_t)len) {
      texts[i] = text;
      continue;
    }
    if (text != NULL || !PyErr_Occurred()) {
      char where[160];
      what(ctx, (size_t)i, where, sizeof where);
      PyErr_Format(PyExc_ValueError, "%s: %s", where,
                   text ? "the text holds a NUL character"
                        : "not a str or None");
    }
    return -1;
  }
  return 0;
}

typedef struct cell_names {
  PyObject *columns;
  size_t num_columns;
} cell_names;

static void name_column(void *ctx, size_t i, char *buf, size_t n) {
  (void)ctx;
  snprintf(buf, n, "column %zu", i + 1);
}

static void name_cell(void *ctx, size_t i, char *buf, size_t n) {
  cell_names *c = ctx;
  const char *column = PyUnicode_AsUTF8(
      PyList_GET_ITEM(c->columns, (Py_ssize_t)(i % c->num_columns)));
  if (column == NULL) PyErr_Clear();
  snprintf(buf, n, "row %zu, column \"%s\"", i / c->num_columns,
           column ? column : "?");
}

/*
 * _batch_rows(columns, cells, out_path, threads, explain):
 * tdm_pipeline_batch_rows over a list of column names and a flat list of
 * str or None, len(columns) per row. The texts are the lists' own UTF-8
 * (the lists keep them alive while the GIL is released).
 */
static PyObject *pipeline_batch_rows(PipelineObject *self, PyObject *args) {
  PyObject *columns_obj, *cells_obj, *out_obj;
  int threads, explain;
  if (!pipeline_ready(self) ||
      !PyArg_ParseTuple(args, "O!O!O&ip", &PyList_Type, &columns_obj,
                        &PyList_Type, &cells_obj, PyUnicode_FSConverter,
                        &out_obj, &threads, &explain))
    return NULL;
  size_t nc = (size_t)PyList_GET_SIZE(columns_obj);
  size_t n = (size_t)PyList_GET_SIZE(cells_obj);
  if (nc == 0 ? n != 0 : n % nc != 0) {
    Py_DECREF(out_obj);
    return PyErr_Format(PyExc_ValueError,
                        "%zu cells is not a whole number of rows of %zu "
                        "columns",
                        n, nc);
  }
  const char **columns = PyMem_Calloc(nc + 1, sizeof *columns);
  const char **cells = PyMem_Calloc(n + 1, sizeof *cells);
  cell_names names = {columns_obj, nc};
  int bad = columns == NULL || cells == NULL;
  if (bad) PyErr_NoMemory();
  if (!bad) bad = list_texts(columns_obj, columns, name_column, NULL) != 0;
  for (size_t c = 0; !bad && c < nc; c++)
    if (columns[c] == NULL) {
      PyErr_Format(PyExc_ValueError, "column %zu: a name must be a str",
                   c + 1);
      bad = 1;
    }
  if (!bad) bad = list_texts(cells_obj, cells, name_cell, &names) != 0;
  if (bad) {
    PyMem_Free(columns);
    PyMem_Free(cells);
    Py_DECREF(out_obj);
    return NULL;
  }
  tdm_batch_options opt = {0};
  opt.threads = threads;
  opt.explain = explain;
  tdm_batch_stats stats;
  tdm_error err;
  int rc;
  Py_BEGIN_ALLOW_THREADS rc = tdm_pipeline_batch_rows(
      self->pipeline, columns, nc, cells, nc ? n / nc : 0,
      PyBytes_AS_STRING(out_obj), &opt, &stats, &err);
  Py_END_ALLOW_THREADS PyMem_Free(columns);
  PyMem_Free(cells);
  Py_DECREF(out_obj);
  if (rc != TDM_OK) return raise_error(rc, err.message);
  return batch_stats(&stats);
}

static PyMethodDef pipeline_methods[] = {
    {"_describe", (PyCFunction)pipeline_describe, METH_NOARGS, NULL},
    {"_batch", (PyCFunction)pipeline_batch, METH_VARARGS,
     "_batch(in_path, out_path, threads, explain): tandem batch"},
    {"_batch_rows", (PyCFunction)pipeline_batch_rows, METH_VARARGS,
     "_batch_rows(columns, cells, out_path, threads, explain): tandem "
     "batch over rows in memory"},
    {NULL, NULL, 0, NULL}};

static PyTypeObject PipelineType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "tandem._tandem.Pipeline",
    .tp_basicsize = sizeof(PipelineObject),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE,
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)pipeline_init,
    .tp_dealloc = (destructor)pipeline_dealloc,
    .tp_methods = pipeline_methods,
    .tp_doc = "A compiled pipeline (tdm_pipeline)."};

/* ---- State ---- */

typedef struct {
  PyObject_HEAD tdm_state *state;
  PyObject *pipeline; /* kept alive while the state lives */
} StateObject;

static int state_init(StateObject *self, PyObject *args, PyObject *kwargs) {
  static char *names[] = {"pipeline", "dir", NULL};
  PyObject *pipeline, *dir_obj = NULL;
  if (!PyArg_ParseTupleAndKeywords(args, kwargs, "O!|O&", names, &PipelineType,
                                   &pipeline, PyUnicode_FSConverter, &dir_obj))
    return -1;
  if (!pipeline_ready((PipelineObject *)pipeline)) {
    Py_XDECREF(dir_obj);
    return -1;
  }
  tdm_state *s = NULL;
  tdm_error err;
  int rc;
  Py_BEGIN_ALLOW_THREADS rc =
      tdm_state_open(((PipelineObject *)pipeline)->pipeline,
                     dir_obj ? PyBytes_AS_STRING(dir_obj) : NULL, &s, &err);
  Py_END_ALLOW_THREADS Py_XDECREF(dir_obj);
  if (rc != TDM_OK) {
    raise_error(rc, err.message);
    return -1;
  }
  tdm_state_free(self->state);
  Py_XDECREF(self->pipeline);
  self->state = s;
  self->pipeline = Py_NewRef(pipeline);
  return 0;
}

static void state_dealloc(StateObject *self) {
  tdm_state_free(self->state);
  Py_XDECREF(self->pipeline);
  Py_TYPE(self)->tp_free((PyObject *)self);
}

/* _process(body: bytes, explain) -> (status name, answer text, message):
 * the answer is the live endpoint's body whatever the status. */
static PyObject *state_process(StateObject *self, PyObject *args) {
  const char *body;
  Py_ssize_t len;
  int explain;
  if (self->state == NULL) {
    PyErr_SetString(PyExc_RuntimeError, "the state is not open");
    return NULL;
  }
  if (!PyArg_ParseTuple(args, "y#p", &body, &len, &explain)) return NULL;
  const char *answer;
  size_t answer_len;
  tdm_error err;
  int rc;
  err.message[0] = 0;
  /* The answer stays valid until the next call on this state; the state
   * serialises calls, and the GIL is taken back before another Python
   * call on it can run, so the copy below reads this call's answer. */
  Py_BEGIN_ALLOW_THREADS rc =
      tdm_state_process(self->state, body, (size_t)len,
                        explain ? TDM_PROCESS_EXPLAIN : 0, &answer,
                        &answer_len, &err);
  Py_END_ALLOW_THREADS;
  return Py_BuildValue("(ss#s)", tdm_status_name(rc), answer,
                       (Py_ssize_t)answer_len, rc == TDM_OK ? "" : err.message);
}

static PyMethodDef state_methods[] = {
    {"_process", (PyCFunction)state_process, METH_VARARGS, NULL},
    {NULL, NULL, 0, NULL}};

static PyTypeObject StateType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "tandem._tandem.State",
    .tp_basicsize = sizeof(StateObject),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE,
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)state_init,
    .tp_dealloc = (destructor)state_dealloc,
    .tp_methods = state_methods,
    .tp_doc = "Entity state (tdm_state): State(pipeline, dir=None)."};

static PyObject *version(PyObject *module, PyObject *unused) {
  return PyUnicode_FromString(tdm_version());
}

static PyMethodDef module_methods[] = {
    {"version", version, METH_NOARGS, "tdm_version()"},
    {NULL, NULL, 0, NULL}};

static struct PyModuleDef module_def = {
    PyModuleDef_HEAD_INIT, "tandem._tandem",
    "tandem's C API (include/tandem.h) for Python.", -1, module_methods,
    NULL, NULL, NULL, NULL};

PyMODINIT_FUNC PyInit__tandem(void) {
  if (PyType_Ready(&ModelType) < 0 || PyType_Ready(&PipelineType) < 0 ||
      PyType_Ready(&StateType) < 0)
    return NULL;
  PyObject *m = PyModule_Create(&module_def);
  if (m == NULL) return NULL;
  tandem_error = PyErr_NewExceptionWithDoc(
      "tandem.Error",
      "An error reported by tandem: the message names where (file:line:"
      "column, a JSON pointer, a field); .status is its code's name.",
      PyExc_ValueError, NULL);
  if (tandem_error == NULL ||
      PyModule_AddObjectRef(m, "Error", tandem_error) < 0 ||
      PyModule_AddObjectRef(m, "Model", (PyObject *)&ModelType) < 0 ||
      PyModule_AddObjectRef(m, "Pipeline", (PyObject *)&PipelineType) < 0 ||
      PyModule_AddObjectRef(m, "State", (PyObject *)&StateType) < 0) {
    Py_DECREF(m);
    return NULL;
  }
  return m;
}
