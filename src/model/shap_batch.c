/*
 * shap_batch.c - XGBoost's path-dependent TreeSHAP (shap_path.h's
 * recursion in float32) for sixteen rows at once, one row per vector lane.
 *
 * The recursion's shape does not depend on the row: every inner node
 * recurses into both children, and the path's features and zero fractions
 * (cover ratios) are the same for every row. A row only sets each path
 * element's one fraction (1 where the row goes that way, 0 where not), and
 * through it the permutation weights. So one walk of the tree serves
 * sixteen rows: each lane performs exactly the scalar recursion's float32
 * operations, in its order (multiplications and divisions as written,
 * -ffp-contract=off so none is fused), and IEEE arithmetic gives the same
 * bits in a lane as alone. Where the scalar code branches on a row's one
 * fraction, both sides are computed and each lane takes its own.
 *
 * What the lanes cannot share is the order of the additions into phi:
 * XGBoost recurses into the row's own (hot) child first, so each row adds
 * the leaves' shares in its own order, and float32 addition is not
 * associative. The walk therefore only records each leaf's shares for all
 * lanes (and which way each lane went at each node); shap.c then adds
 * them into each row's phi in that row's hot-first order
 * (tdm__shap_batch_add_row), which gives the scalar recursion's sums.
 *
 * The kernel is compiled three times from one source: for AVX-512 (one
 * 16-lane vector per operation), AVX2 (two 8-lane halves) and the portable
 * target (four SSE2 quarters on x86-64); the CPU picks the widest it has.
 * All three perform the same IEEE operations, so they give the same bits
 * (tests/unit/test_shap.c compares each with the per-row recursion).
 */
#include <string.h>

#include "../core/core.h"
#include "model.h"

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define SHAP_BATCH_X86 1
#endif

enum { LANES = TDM__SHAP_BATCH_LANES };

/* Sixteen float32 lanes and their comparison masks (GCC's and clang's
 * vector extensions). Aligned as their elements, so that any float
 * pointer may be read as lanes: the loads are then unaligned ones. */
typedef float lanes __attribute__((vector_size(4 * LANES), aligned(4)));
typedef int32_t lane_mask __attribute__((vector_size(4 * LANES), aligned(4)));

#define ALL_LANES ((uint32_t)0xFFFF)

/* The helpers below take and return lanes by value; they are static and
 * inlined into each kernel, so no call crosses the targets' differing
 * vector ABIs, and GCC's note that a 64-byte vector argument's ABI
 * depends on the target does not apply. */
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wpsabi"
#endif

/* The deepest tree the lanes take (the path triangle grows with the
 * square of the depth); a deeper tree keeps the per-row recursion. */
#define BATCH_MAX_DEPTH 64
/* The most bytes one tree's leaf shares may take in the lanes. */
#define BATCH_MAX_SHARE_BYTES ((size_t)16 << 20)

/* One feature on the path, as shap_path.h's path_element, with a lane per
 * row for what depends on the row. one_set mirrors one_fraction: bit r is
 * set where lane r's one fraction is 1, so that a leaf can tell without
 * looking at the lanes whether all, none or some of them go that way. */
typedef struct batch_element {
  lanes one_fraction;
  lanes pweight;
  uint32_t one_set;
  int feature;
  float zero_fraction;
} batch_element;

/* A child still to enter, kept while its sibling's subtree is walked: its
 * parent's path (unchanged by the sibling, which writes only further into
 * the triangle) and the fractions it extends that path with. */
typedef struct batch_frame {
  lanes one_fraction;
  uint32_t one_set;
  uint32_t index;
  unsigned depth;
  int feature;
  float zero_fraction;
  batch_element *parent;
} batch_frame;

typedef void batch_kernel(tdm__shap_batch *batch, const tdm_model *model,
                          const tdm__tree *tree, const tdm__row *rows);

struct tdm__shap_batch {
  batch_kernel *kernel;
  const char *kernel_name;
  unsigned char *tree_batched; /* per tree: 1 when the lanes take it */
  batch_element *path;         /* the triangle */
  batch_frame *stack;
  /* Per node of the tree last walked (index from its root): bit r of
   * goes_left is lane r's way; a leaf's shares are in
   * shares[LANES x (leaf_slot + k)] for its leaf_count path features
   * features_at[leaf_slot + k]. */
  uint16_t *goes_left;
  uint32_t *leaf_slot;
  uint16_t *leaf_count;
  float *shares;
  int32_t *features_at;
  /* The features the tree splits on (every one gets shares: every leaf
   * is visited), and a mark per feature while collecting them. */
  uint32_t *features;
  size_t feature_count;
  unsigned char *marked;
  size_t slots_used;
};

static inline __attribute__((always_inline)) lanes lanes_splat(float x) { return x - (lanes){0}; }

/* yes where the mask is set, no elsewhere. */
static inline __attribute__((always_inline)) lanes select_lanes(lane_mask mask, lanes yes, lanes no) {
  return (lanes)(((lane_mask)yes & mask) | ((lane_mask)no & ~mask));
}

/* The one fraction of each lane from its bit: 1 or 0. */
static inline __attribute__((always_inline)) lanes one_from_bits(uint32_t bits) {
  lanes one;
  for (unsigned r = 0; r < LANES; r++) one[r] = (bits >> r) & 1 ? 1.0f : 0.0f;
  return one;
}

/* shap_path.h's extend_path, every lane. */
static inline __attribute__((always_inline)) void batch_extend(
    batch_element *path, unsigned depth, float zero_fraction,
    lanes one_fraction, uint32_t one_set, int feature) {
  path[depth].feature = feature;
  path[depth].zero_fraction = zero_fraction;
  path[depth].one_fraction = one_fraction;
  path[depth].one_set = one_set;
  path[depth].pweight = lanes_splat(depth == 0 ? 1.0f : 0.0f);
  const lanes zero = lanes_splat(zero_fraction);
  const lanes scale = lanes_splat((float)(depth + 1));
  for (int i = (int)depth - 1; i >= 0; i--) {
    path[i + 1].pweight +=
        one_fraction * path[i].pweight * lanes_splat((float)(i + 1)) / scale;
    path[i].pweight = zero * path[i].pweight *
                      lanes_splat((float)(depth - (unsigned)i)) / scale;
  }
}

/* shap_path.h's unwind_path, every lane: both of the scalar branches, each
 * lane keeping its own. */
static inline __attribute__((always_inline)) void batch_unwind(
    batch_element *path, unsigned depth, unsigned path_index) {
  const lanes one = path[path_index].one_fraction;
  const lane_mask one_mask = one != lanes_splat(0.0f);
  const uint32_t one_set = path[path_index].one_set;
  const lanes zero = lanes_splat(path[path_index].zero_fraction);
  const lanes scale = lanes_splat((float)(depth + 1));
  lanes next_one_portion = path[depth].pweight;
  for (int i = (int)depth - 1; i >= 0; i--) {
    const lanes position = lanes_splat((float)(i + 1));
    const lanes rest = lanes_splat((float)(depth - (unsigned)i));
    const lanes kept = path[i].pweight;
    lanes with_one = kept, without_one = kept;
    if (one_set != 0) {
      with_one = next_one_portion * scale / (position * one);
      next_one_portion = kept - with_one * zero * rest / scale;
    }
    if (one_set != ALL_LANES) without_one = (kept * scale) / (zero * rest);
    path[i].pweight = select_lanes(one_mask, with_one, without_one);
  }
  for (unsigned i = path_index; i < depth; i++) {
    path[i].feature = path[i + 1].feature;
    path[i].zero_fraction = path[i + 1].zero_fraction;
    path[i].one_fraction = path[i + 1].one_fraction;
    path[i].one_set = path[i + 1].one_set;
  }
}

/*
 * shap_path.h's unwound_path_sum and leaf share for `count` (1 to 4) path
 * elements from `first` on, every lane: out[k] is the share of element
 * first + k. The elements' dependency chains (each step waits for a
 * division) are independent, so one pass over the path interleaves them
 * and keeps the divider busy; called with a constant count, the loops
 * over elements unroll. An element whose lanes all go its way (or none
 * does) computes only that side of the scalar branch.
 */
static inline __attribute__((always_inline)) void batch_shares(
    const batch_element *path, unsigned depth, unsigned first, unsigned count,
    float leaf, lanes *out) {
  const lanes scale = lanes_splat((float)(depth + 1));
  lanes one[4], next_one_portion[4], total[4], zero[4];
  lane_mask one_mask[4];
  uint32_t one_set[4];
  int zero_set[4];
  for (unsigned k = 0; k < count; k++) {
    const batch_element *el = &path[first + k];
    one[k] = el->one_fraction;
    one_mask[k] = one[k] != lanes_splat(0.0f);
    one_set[k] = el->one_set;
    zero[k] = lanes_splat(el->zero_fraction);
    zero_set[k] = el->zero_fraction != 0.0f;
    next_one_portion[k] = path[depth].pweight;
    total[k] = lanes_splat(0.0f);
  }
  for (int i = (int)depth - 1; i >= 0; i--) {
    const lanes pweight = path[i].pweight;
    const lanes ratio =
        lanes_splat((float)(depth - (unsigned)i) / (float)(depth + 1));
    const lanes position = lanes_splat((float)(i + 1));
    for (unsigned k = 0; k < count; k++) {
      lanes with_one = total[k], without_one = total[k];
      if (one_set[k] != 0) {
        const lanes share = next_one_portion[k] * scale / (position * one[k]);
        with_one = total[k] + share;
        next_one_portion[k] = pweight - share * zero[k] * ratio;
      }
      /* Both fractions zero: the scalar code adds nothing. */
      if (one_set[k] != ALL_LANES && zero_set[k])
        without_one = total[k] + (pweight / zero[k]) / ratio;
      total[k] = one_set[k] == ALL_LANES ? with_one
                 : one_set[k] == 0       ? without_one
                                   : select_lanes(one_mask[k], with_one,
                                                  without_one);
    }
  }
  const lanes value = lanes_splat(leaf);
  for (unsigned k = 0; k < count; k++)
    out[k] = total[k] * (one[k] - zero[k]) * value;
}

/* A leaf reached with the path in path[0..depth]: its shares for every
 * lane, and its features, in the next slots. */
static inline __attribute__((always_inline)) void batch_leaf(
    tdm__shap_batch *batch, const batch_element *path, unsigned depth,
    uint32_t local, float leaf) {
  const size_t slot = batch->slots_used;
  batch->leaf_slot[local] = (uint32_t)slot;
  batch->leaf_count[local] = (uint16_t)depth;
  batch->slots_used += depth;
  lanes *out = (lanes *)(batch->shares + slot * LANES);
  for (unsigned first = 1; first <= depth; first += 4) {
    switch (depth - first) {
      case 0: batch_shares(path, depth, first, 1, leaf, out); break;
      case 1: batch_shares(path, depth, first, 2, leaf, out); break;
      case 2: batch_shares(path, depth, first, 3, leaf, out); break;
      default: batch_shares(path, depth, first, 4, leaf, out); break;
    }
    out += 4;
  }
  for (unsigned i = 1; i <= depth; i++) {
    const int feature = path[i].feature;
    batch->features_at[slot + i - 1] = feature;
    if (!batch->marked[feature]) {
      batch->marked[feature] = 1;
      batch->features[batch->feature_count++] = (uint32_t)feature;
    }
  }
}

/* The lanes whose rows go left at an inner node (XGBoost's numeric split
 * inline, as the scalar recursion decides it). */
static inline uint32_t lanes_going_left(const tdm_model *model, uint32_t index,
                                        const tdm__row *rows) {
  const tdm__node *node = &model->nodes[index];
  uint32_t bits = 0;
  for (unsigned r = 0; r < LANES; r++)
    if (tdm__next_node_inline(model, node, index, rows[r]) == node->left)
      bits |= (uint32_t)1 << r;
  return bits;
}

/*
 * The recursion of shap_path.h's tree_shap over one tree for the LANES
 * rows, children in node order (left, then right), iteratively: the
 * right child waits on `stack` while the left subtree is walked.
 */
static inline __attribute__((always_inline)) void batch_tree(
    tdm__shap_batch *batch, const tdm_model *model, const tdm__tree *tree,
    const tdm__row *rows) {
  batch->slots_used = 0;
  batch->feature_count = 0;
  batch_frame *stack = batch->stack;
  unsigned top = 0;
  batch_frame at = {lanes_splat(1.0f), ALL_LANES, tree->root, 0, -1, 1.0f,
                    batch->path};
  for (;;) {
    const tdm__node *node = &model->nodes[at.index];
    const uint32_t local = at.index - tree->root;
    unsigned depth = at.depth;
    batch_element *path = at.parent + depth + 1;
    memcpy(path, at.parent, (depth + 1) * sizeof *path);
    batch_extend(path, depth, at.zero_fraction, at.one_fraction, at.one_set,
                 at.feature);
    if (node->feature < 0) {
      batch_leaf(batch, path, depth, local, (float)node->unweighted);
      if (top == 0) break;
      at = stack[--top];
      continue;
    }
    const uint32_t left = lanes_going_left(model, at.index, rows);
    batch->goes_left[local] = (uint16_t)left;
    const float w = (float)node->cover;
    const float left_zero = (float)model->nodes[node->left].cover / w;
    const float right_zero = (float)model->nodes[node->right].cover / w;
    /* A feature already on the path is unwound and split again here. */
    float incoming_zero = 1.0f;
    lanes incoming_one = lanes_splat(1.0f);
    uint32_t incoming_set = ALL_LANES;
    unsigned path_index = 0;
    while (path_index <= depth && path[path_index].feature != node->feature)
      path_index++;
    if (path_index <= depth) {
      incoming_zero = path[path_index].zero_fraction;
      incoming_one = path[path_index].one_fraction;
      incoming_set = path[path_index].one_set;
      batch_unwind(path, depth, path_index);
      depth--;
    }
    /* Each lane's one fraction is the incoming one on its own side and 0
     * on the other (the scalar recursion's hot and cold child). */
    const uint32_t left_set = incoming_set & left;
    const uint32_t right_set = incoming_set & ~left & ALL_LANES;
    const lanes zero = lanes_splat(0.0f);
    const lane_mask left_mask = one_from_bits(left) != zero;
    stack[top++] = (batch_frame){select_lanes(left_mask, zero, incoming_one),
                                 right_set,
                                 node->right,
                                 depth + 1,
                                 node->feature,
                                 right_zero * incoming_zero,
                                 path};
    at = (batch_frame){select_lanes(left_mask, incoming_one, zero),
                       left_set,
                       node->left,
                       depth + 1,
                       node->feature,
                       left_zero * incoming_zero,
                       path};
  }
  for (size_t i = 0; i < batch->feature_count; i++)
    batch->marked[batch->features[i]] = 0;
}

static void kernel_portable(tdm__shap_batch *batch, const tdm_model *model,
                            const tdm__tree *tree, const tdm__row *rows) {
  batch_tree(batch, model, tree, rows);
}

#ifdef SHAP_BATCH_X86
__attribute__((target("avx2"))) static void kernel_avx2(
    tdm__shap_batch *batch, const tdm_model *model, const tdm__tree *tree,
    const tdm__row *rows) {
  batch_tree(batch, model, tree, rows);
}

__attribute__((target("avx512f"))) static void kernel_avx512(
    tdm__shap_batch *batch, const tdm_model *model, const tdm__tree *tree,
    const tdm__row *rows) {
  batch_tree(batch, model, tree, rows);
}
#endif

/* The kernel named by `want` ("avx512", "avx2", "portable"; NULL: the
 * widest the CPU has); one the CPU lacks falls back to the portable one. */
static void choose_kernel(tdm__shap_batch *batch, const char *want) {
  batch->kernel = kernel_portable;
  batch->kernel_name = "portable";
#ifdef SHAP_BATCH_X86
  __builtin_cpu_init();
  int avx512 = __builtin_cpu_supports("avx512f");
  int avx2 = __builtin_cpu_supports("avx2");
  if (want == NULL) want = avx512 ? "avx512" : "avx2";
  if (strcmp(want, "avx512") == 0 && avx512) {
    batch->kernel = kernel_avx512;
    batch->kernel_name = "avx512";
  } else if (strcmp(want, "avx2") == 0 && avx2) {
    batch->kernel = kernel_avx2;
    batch->kernel_name = "avx2";
  }
#else
  (void)want;
#endif
}

void tdm__shap_batch_free(tdm__shap_batch *batch) {
  if (batch == NULL) return;
  tdm__free(batch->tree_batched);
  tdm__free(batch->path);
  tdm__free(batch->stack);
  tdm__free(batch->goes_left);
  tdm__free(batch->leaf_slot);
  tdm__free(batch->leaf_count);
  tdm__free(batch->shares);
  tdm__free(batch->features_at);
  tdm__free(batch->features);
  tdm__free(batch->marked);
  tdm__free(batch);
}

int tdm__shap_batch_new(const tdm_model *model, const char *kernel,
                        tdm__shap_batch **out) {
  *out = NULL;
  tdm__shap_batch *batch = tdm__calloc(1, sizeof *batch);
  if (batch == NULL) return TDM_ENOMEM;
  choose_kernel(batch, kernel);
  size_t nf = model->num_features, nodes = 1, depth = 0, slots = 1;
  batch->tree_batched = tdm__calloc(model->num_trees + 1, 1);
  if (batch->tree_batched == NULL) goto fail;
  for (size_t t = 0; t < model->num_trees; t++) {
    const tdm__tree *tree = &model->trees[t];
    if (tree->depth > BATCH_MAX_DEPTH) continue;
    /* A leaf holds a share per distinct feature on its path. */
    size_t leaves = 0;
    for (uint32_t i = 0; i < tree->num_nodes; i++)
      leaves += model->nodes[tree->root + i].feature < 0;
    size_t per_leaf = tree->depth < nf ? tree->depth : nf;
    size_t tree_slots = leaves * per_leaf;
    if (tree_slots * LANES * sizeof(float) > BATCH_MAX_SHARE_BYTES) continue;
    batch->tree_batched[t] = 1;
    if (tree->num_nodes > nodes) nodes = tree->num_nodes;
    if (tree->depth > depth) depth = tree->depth;
    if (tree_slots > slots) slots = tree_slots;
  }
  batch->path =
      tdm__malloc((depth + 2) * (depth + 3) / 2 * sizeof(batch_element));
  batch->stack = tdm__malloc((depth + 2) * sizeof(batch_frame));
  batch->goes_left = tdm__malloc(nodes * sizeof(uint16_t));
  batch->leaf_slot = tdm__malloc(nodes * sizeof(uint32_t));
  batch->leaf_count = tdm__malloc(nodes * sizeof(uint16_t));
  batch->shares = tdm__malloc(slots * LANES * sizeof(float));
  batch->features_at = tdm__malloc(slots * sizeof(int32_t));
  batch->features = tdm__malloc((nf + 1) * sizeof(uint32_t));
  batch->marked = tdm__calloc(nf + 1, 1);
  if (batch->path == NULL || batch->stack == NULL ||
      batch->goes_left == NULL || batch->leaf_slot == NULL ||
      batch->leaf_count == NULL || batch->shares == NULL ||
      batch->features_at == NULL || batch->features == NULL ||
      batch->marked == NULL)
    goto fail;
  *out = batch;
  return TDM_OK;
fail:
  tdm__shap_batch_free(batch);
  return TDM_ENOMEM;
}

const char *tdm__shap_batch_kernel(const tdm__shap_batch *batch) {
  return batch->kernel_name;
}

int tdm__shap_batch_takes(const tdm__shap_batch *batch, size_t tree) {
  return batch->tree_batched[tree];
}

const uint32_t *tdm__shap_batch_run(tdm__shap_batch *batch,
                                    const tdm_model *model, size_t tree,
                                    const tdm__row *rows, size_t *count) {
  batch->kernel(batch, model, &model->trees[tree], rows);
  *count = batch->feature_count;
  return batch->features;
}

void tdm__shap_batch_add_row(tdm__shap_batch *batch, const tdm_model *model,
                             size_t tree, unsigned lane, float *phi) {
  const uint32_t root = model->trees[tree].root;
  /* The tree's walk is done with the stack: it holds nodes to visit. */
  uint32_t *stack = (uint32_t *)batch->stack;
  unsigned top = 0;
  uint32_t index = root;
  for (;;) {
    const tdm__node *node = &model->nodes[index];
    while (node->feature >= 0) {
      const int left = (batch->goes_left[index - root] >> lane) & 1;
      stack[top++] = left ? node->right : node->left;
      index = left ? node->left : node->right;
      node = &model->nodes[index];
    }
    const uint32_t local = index - root;
    const size_t slot = batch->leaf_slot[local];
    const float *shares = batch->shares + slot * LANES + lane;
    const int32_t *features = batch->features_at + slot;
    for (unsigned k = 0; k < batch->leaf_count[local]; k++)
      phi[features[k]] += shares[(size_t)k * LANES];
    if (top == 0) return;
    index = stack[--top];
  }
}
