/*
 * fast.c - the fast evaluator: a perfect-tree layout for float32 (XGBoost)
 * models, described first, and two layouts for LightGBM models further
 * down (a bitvector layout, the default, and a record walk).
 *
 * At load, every tree of depth at most TDM__FAST_MAX_DEPTH whose splits
 * are all numeric is laid out as a perfect binary tree in heap order: the
 * children of split i are 2i+1 and 2i+2, and a tree of depth D has
 * 2^D - 1 splits and 2^D leaves. A leaf above the last level is padded
 * with splits whose both subtrees end in copies of it, so every row takes
 * exactly D steps and each step is the same branch-free arithmetic:
 *
 *   key = splits[i].key;  x = row[key & 0x7fffffff]
 *   left = x < splits[i].threshold  ||  (x is NaN && key's top bit)
 *   i = 2i + 2 - left
 *
 * A split is 8 bytes (feature and default direction in one word, the
 * float32 threshold in the other); a leaf 4.
 *
 * Rows are scored in blocks: for each tree in order, the whole block walks
 * the tree (the tree stays in cache while the block passes), 16 rows at a
 * time with AVX-512 gathers, 8 with AVX2, or 8 interleaved scalar walks,
 * chosen once by the CPU at load. Every row's margin is the float32 sum of
 * its leaves in tree order from the base margin, exactly as XGBoost's CPU
 * predictor and the reference walk in predict.c add them, so the choice of
 * kernel, block size or thread count never changes a bit. Trees that do
 * not fit the layout (categorical splits, deeper trees) are walked by the
 * reference evaluator in the same tree order.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "model.h"

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define TDM__HAVE_X86 1
#include <immintrin.h>
#endif

#define GENERIC_TREE UINT32_MAX
#define DEFAULT_LEFT 0x80000000u
/* A categorical split: its threshold word holds CATEGORY_REF(begin, count)
 * of its bitset in tdm_model.cat_words instead of a float. */
#define CATEGORICAL 0x40000000u
#define FEATURE_MASK 0x3fffffffu
#define CATEGORY_REF(begin, count) ((begin) << 8 | (count))
#define MAX_CATEGORY_WORDS 255u
#define MAX_CATEGORY_BEGIN ((1u << 24) - 1)

/* Floats of stack scratch per block: accumulators, and the rows when they
 * arrive as doubles and must be converted. */
#define SCRATCH_FLOATS 16384
#define MAX_BLOCK_ROWS 256

typedef struct fast_split {
  /* feature | DEFAULT_LEFT when missing values go left | CATEGORICAL */
  uint32_t key;
  union {
    float threshold;       /* numeric: x < threshold goes left */
    uint32_t category_ref; /* categorical: CATEGORY_REF of its bitset */
  };
} fast_split;

/* Adds each row's leaf of one perfect tree to acc[0..n). Kernels for
 * categorical trees read bitsets in `words` (tdm_model.cat_words). */
typedef void (*fast_kernel)(const fast_split *splits, const float *leaves,
                            const uint32_t *words, uint32_t depth,
                            const float *rows, size_t stride, size_t n,
                            float *acc);

typedef struct lgb_layout lgb_layout;

struct tdm__fast {
  uint32_t *depth;      /* per tree; GENERIC_TREE for the reference walk */
  uint32_t *split_base; /* per tree: first split in `splits` */
  uint32_t *leaf_base;  /* per tree: first leaf in `leaves` */
  fast_split *splits;
  float *leaves;
  size_t bytes;
  /* Per tree: how many trees from it on have the perfect layout and no
   * categorical split (the single-row kernels walk only those). */
  uint32_t *run;
  uint8_t *categorical; /* per tree: 1 when it has a categorical split */
  fast_kernel kernel;
  fast_kernel categorical_kernel;
  /* Leaves of `lanes` consecutive trees for one row, walked side by side
   * (one row gains nothing from rows in parallel); NULL for scalar. */
  void (*tree_kernel)(const tdm__fast *fast, const float *row,
                      size_t num_features, size_t first, size_t count,
                      float *leaves);
  uint32_t lanes;
  const char *kernel_name;
  /* LightGBM models: the double-precision layout; NULL for XGBoost. */
  lgb_layout *lgb;
};

/* One step down a perfect tree: the heap index of the child. */
static inline uint32_t step(const fast_split *splits, uint32_t i,
                            const float *row) {
  uint32_t key = splits[i].key;
  float x = row[key & FEATURE_MASK];
  uint32_t left =
      (x < splits[i].threshold) | ((uint32_t)isnan(x) & (uint32_t)(key >> 31));
  return 2 * i + 2 - left;
}

/* The same step where the split may be categorical: XGBoost's rule
 * (missing values take the default child, a category in the set goes
 * right). */
static inline uint32_t step_categorical(const fast_split *splits,
                                        const uint32_t *words, uint32_t i,
                                        const float *row) {
  uint32_t key = splits[i].key;
  if (!(key & CATEGORICAL)) return step(splits, i, row);
  float x = row[key & FEATURE_MASK];
  uint32_t ref = splits[i].category_ref, left;
  /* A model whose every category set is empty has no words at all (NULL):
   * the rule then reads none, but NULL + 0 is still undefined in C. */
  const uint32_t *set = words != NULL ? words + (ref >> 8) : NULL;
  if (isnan(x))
    left = key >> 31;
  else
    left = (uint32_t)tdm__xgb_category_goes_left(set, ref & 0xff, x);
  return 2 * i + 2 - left;
}

/* A categorical tree, eight rows side by side as kernel_scalar walks. */
static void kernel_scalar_categorical(const fast_split *splits,
                                      const float *leaves,
                                      const uint32_t *words, uint32_t depth,
                                      const float *rows, size_t stride,
                                      size_t n, float *acc) {
  const uint32_t first_leaf = (1u << depth) - 1;
  size_t r = 0;
  for (; r + 8 <= n; r += 8) {
    uint32_t idx[8] = {0};
    for (uint32_t level = 0; level < depth; level++)
      for (int j = 0; j < 8; j++)
        idx[j] = step_categorical(splits, words, idx[j],
                                  rows + (r + (size_t)j) * stride);
    for (int j = 0; j < 8; j++)
      acc[r + (size_t)j] += leaves[idx[j] - first_leaf];
  }
  for (; r < n; r++) {
    uint32_t i = 0;
    for (uint32_t level = 0; level < depth; level++)
      i = step_categorical(splits, words, i, rows + r * stride);
    acc[r] += leaves[i - first_leaf];
  }
}

/* The portable kernel: eight rows walk side by side so their loads
 * overlap instead of waiting on each other. */
static void kernel_scalar(const fast_split *splits, const float *leaves,
                          const uint32_t *words, uint32_t depth,
                          const float *rows, size_t stride, size_t n,
                          float *acc) {
  (void)words; /* numeric trees only */
  const uint32_t first_leaf = (1u << depth) - 1;
  size_t r = 0;
  for (; r + 8 <= n; r += 8) {
    uint32_t idx[8] = {0};
    for (uint32_t level = 0; level < depth; level++)
      for (int j = 0; j < 8; j++)
        idx[j] = step(splits, idx[j], rows + (r + (size_t)j) * stride);
    for (int j = 0; j < 8; j++)
      acc[r + (size_t)j] += leaves[idx[j] - first_leaf];
  }
  for (; r < n; r++) {
    uint32_t i = 0;
    for (uint32_t level = 0; level < depth; level++)
      i = step(splits, i, rows + r * stride);
    acc[r] += leaves[i - first_leaf];
  }
}

/* The portable tree kernel: SCALAR_TREES trees walk side by side for one
 * row, each at its own depth. */
#define SCALAR_TREES 16
static void trees_scalar(const tdm__fast *fast, const float *row,
                         size_t num_features, size_t first, size_t count,
                         float *leaves) {
  uint32_t idx[SCALAR_TREES] = {0}, max_depth = 0;
  const uint32_t *depth = fast->depth + first;
  for (size_t j = 0; j < count; j++)
    if (depth[j] > max_depth) max_depth = depth[j];
  for (uint32_t level = 0; level < max_depth; level++)
    for (size_t j = 0; j < count; j++)
      if (level < depth[j])
        idx[j] = step(fast->splits + fast->split_base[first + j], idx[j], row);
  for (size_t j = 0; j < count; j++)
    leaves[j] = fast->leaves[fast->leaf_base[first + (size_t)j] + idx[j] -
                             ((1u << depth[j]) - 1)];
}

#ifdef TDM__HAVE_X86
__attribute__((target("avx2"))) static void kernel_avx2(
    const fast_split *splits, const float *leaves, const uint32_t *words_unused,
    uint32_t depth, const float *rows, size_t stride, size_t n, float *acc) {
  (void)words_unused; /* numeric trees only */
  const int *words = (const int *)splits;
  const __m256i lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
  const __m256i feature_mask = _mm256_set1_epi32((int)FEATURE_MASK);
  const __m256i two = _mm256_set1_epi32(2);
  const __m256i first_leaf = _mm256_set1_epi32((int)((1u << depth) - 1));
  size_t r = 0;
  for (; r + 8 <= n; r += 8) {
    __m256i row_offset =
        _mm256_mullo_epi32(_mm256_add_epi32(lane, _mm256_set1_epi32((int)r)),
                           _mm256_set1_epi32((int)stride));
    __m256i idx = _mm256_setzero_si256();
    for (uint32_t level = 0; level < depth; level++) {
      __m256i at = _mm256_slli_epi32(idx, 1);
      __m256i key = _mm256_i32gather_epi32(words, at, 4);
      __m256 threshold = _mm256_i32gather_ps(
          (const float *)words, _mm256_add_epi32(at, _mm256_set1_epi32(1)), 4);
      __m256i feature = _mm256_and_si256(key, feature_mask);
      __m256 x =
          _mm256_i32gather_ps(rows, _mm256_add_epi32(row_offset, feature), 4);
      __m256 lt = _mm256_cmp_ps(x, threshold, _CMP_LT_OQ);
      __m256 nan = _mm256_cmp_ps(x, x, _CMP_UNORD_Q);
      __m256 dl = _mm256_castsi256_ps(_mm256_srai_epi32(key, 31));
      __m256i left =
          _mm256_castps_si256(_mm256_or_ps(lt, _mm256_and_ps(nan, dl)));
      /* left is -1 or 0: i = 2i + 2 + left */
      idx = _mm256_add_epi32(_mm256_add_epi32(at, two), left);
    }
    __m256 leaf =
        _mm256_i32gather_ps(leaves, _mm256_sub_epi32(idx, first_leaf), 4);
    _mm256_storeu_ps(acc + r, _mm256_add_ps(_mm256_loadu_ps(acc + r), leaf));
  }
  if (r < n)
    kernel_scalar(splits, leaves, NULL, depth, rows + r * stride, stride, n - r,
                  acc + r);
}

/*
 * Sixteen rows down one perfect tree. With `categorical`, lanes whose
 * split is categorical test their category against the split's bitset
 * (XGBoost's rule, as tdm__xgb_category_goes_left): a value that is a
 * category in [0, 2^24) inside the bitset gathers its word; a category in
 * the set goes right, anything else left, a missing value the default way.
 */
__attribute__((target("avx512f"))) static inline void kernel_avx512_any(
    const fast_split *splits, const float *leaves, const uint32_t *cat_words,
    uint32_t depth, const float *rows, size_t stride, size_t n, float *acc,
    int categorical) {
  const int *words = (const int *)splits;
  const __m512i lane =
      _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
  const __m512i feature_mask = _mm512_set1_epi32((int)FEATURE_MASK);
  const __m512i one = _mm512_set1_epi32(1);
  const __m512i two = _mm512_set1_epi32(2);
  const __m512i first_leaf = _mm512_set1_epi32((int)((1u << depth) - 1));
  size_t r = 0;
  for (; r + 16 <= n; r += 16) {
    __m512i row_offset =
        _mm512_mullo_epi32(_mm512_add_epi32(lane, _mm512_set1_epi32((int)r)),
                           _mm512_set1_epi32((int)stride));
    __m512i idx = _mm512_setzero_si512();
    for (uint32_t level = 0; level < depth; level++) {
      __m512i at = _mm512_slli_epi32(idx, 1);
      __m512i key = _mm512_i32gather_epi32(at, words, 4);
      __m512 threshold =
          _mm512_i32gather_ps(_mm512_add_epi32(at, one), words, 4);
      __m512i feature = _mm512_and_si512(key, feature_mask);
      __m512 x =
          _mm512_i32gather_ps(_mm512_add_epi32(row_offset, feature), rows, 4);
      __mmask16 lt = _mm512_cmp_ps_mask(x, threshold, _CMP_LT_OQ);
      __mmask16 nan = _mm512_cmp_ps_mask(x, x, _CMP_UNORD_Q);
      __mmask16 dl = _mm512_cmplt_epi32_mask(key, _mm512_setzero_si512());
      __mmask16 left = lt | (nan & dl);
      if (categorical) {
        __mmask16 cat =
            _mm512_test_epi32_mask(key, _mm512_set1_epi32((int)CATEGORICAL));
        if (cat) {
          __m512i ref = _mm512_castps_si512(threshold);
          __mmask16 in_range =
              _mm512_cmp_ps_mask(x, _mm512_setzero_ps(), _CMP_GE_OQ) &
              _mm512_cmp_ps_mask(x, _mm512_set1_ps(16777216.0f), _CMP_LT_OQ);
          __m512i category = _mm512_maskz_cvttps_epi32(in_range, x);
          __m512i word_index = _mm512_srli_epi32(category, 5);
          __m512i count = _mm512_and_si512(ref, _mm512_set1_epi32(0xff));
          __mmask16 inside =
              cat & in_range & _mm512_cmplt_epu32_mask(word_index, count);
          __m512i word = _mm512_mask_i32gather_epi32(
              _mm512_setzero_si512(), inside,
              _mm512_add_epi32(_mm512_srli_epi32(ref, 8), word_index),
              (const int *)cat_words, 4);
          __m512i bit = _mm512_srlv_epi32(
              word, _mm512_and_si512(category, _mm512_set1_epi32(31)));
          __mmask16 in_set = inside & _mm512_test_epi32_mask(bit, one);
          __mmask16 cat_left = (~nan & ~in_set) | (nan & dl);
          left = (left & ~cat) | (cat_left & cat);
        }
      }
      idx = _mm512_mask_sub_epi32(_mm512_add_epi32(at, two), left,
                                  _mm512_add_epi32(at, two), one);
    }
    __m512 leaf =
        _mm512_i32gather_ps(_mm512_sub_epi32(idx, first_leaf), leaves, 4);
    _mm512_storeu_ps(acc + r, _mm512_add_ps(_mm512_loadu_ps(acc + r), leaf));
  }
  if (r < n)
    kernel_scalar_categorical(splits, leaves, cat_words, depth,
                              rows + r * stride, stride, n - r, acc + r);
}

__attribute__((target("avx512f"))) static void kernel_avx512(
    const fast_split *splits, const float *leaves, const uint32_t *words,
    uint32_t depth, const float *rows, size_t stride, size_t n, float *acc) {
  kernel_avx512_any(splits, leaves, words, depth, rows, stride, n, acc, 0);
}

__attribute__((target("avx512f"))) static void kernel_avx512_categorical(
    const fast_split *splits, const float *leaves, const uint32_t *words,
    uint32_t depth, const float *rows, size_t stride, size_t n, float *acc) {
  kernel_avx512_any(splits, leaves, words, depth, rows, stride, n, acc, 1);
}

/* Trees [first, first + 8) for one row, a tree per lane; lanes whose tree
 * is shallower stop early. */
__attribute__((target("avx2"))) static void trees_avx2(
    const tdm__fast *fast, const float *row, size_t num_features, size_t first,
    size_t count, float *leaves) {
  /* Lanes past `count` load zeros: depth 0, never active. */
  __m256i valid = _mm256_cmpgt_epi32(_mm256_set1_epi32((int)count),
                                     _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
  const int *words = (const int *)fast->splits;
  const __m256i one = _mm256_set1_epi32(1);
  const __m256i feature_mask = _mm256_set1_epi32((int)FEATURE_MASK);
  __m256i depth =
      _mm256_maskload_epi32((const int *)(fast->depth + first), valid);
  __m256i base = _mm256_slli_epi32(
      _mm256_maskload_epi32((const int *)(fast->split_base + first), valid), 1);
  __m256i leaf_base =
      _mm256_maskload_epi32((const int *)(fast->leaf_base + first), valid);
  __m256i idx = _mm256_setzero_si256();
  uint32_t max_depth = 0;
  for (size_t j = 0; j < count; j++)
    if (fast->depth[first + j] > max_depth) max_depth = fast->depth[first + j];
  for (uint32_t level = 0; level < max_depth; level++) {
    __m256i active = _mm256_cmpgt_epi32(depth, _mm256_set1_epi32((int)level));
    __m256i at = _mm256_add_epi32(base, _mm256_slli_epi32(idx, 1));
    __m256i key = _mm256_mask_i32gather_epi32(_mm256_setzero_si256(), words, at,
                                              active, 4);
    __m256 threshold = _mm256_mask_i32gather_ps(
        _mm256_setzero_ps(), (const float *)words, _mm256_add_epi32(at, one),
        _mm256_castsi256_ps(active), 4);
    __m256 x = _mm256_mask_i32gather_ps(_mm256_setzero_ps(), row,
                                        _mm256_and_si256(key, feature_mask),
                                        _mm256_castsi256_ps(active), 4);
    __m256 lt = _mm256_cmp_ps(x, threshold, _CMP_LT_OQ);
    __m256 nan = _mm256_cmp_ps(x, x, _CMP_UNORD_Q);
    __m256 dl = _mm256_castsi256_ps(_mm256_srai_epi32(key, 31));
    __m256i left =
        _mm256_castps_si256(_mm256_or_ps(lt, _mm256_and_ps(nan, dl)));
    __m256i next = _mm256_add_epi32(
        _mm256_add_epi32(_mm256_slli_epi32(idx, 1), _mm256_set1_epi32(2)),
        left);
    idx = _mm256_blendv_epi8(idx, next, active);
  }
  /* Leaf j of a depth-D tree is at heap index 2^D - 1 + j. */
  __m256i first_leaf = _mm256_sub_epi32(_mm256_sllv_epi32(one, depth), one);
  __m256i at = _mm256_add_epi32(leaf_base, _mm256_sub_epi32(idx, first_leaf));
  _mm256_storeu_ps(leaves, _mm256_i32gather_ps(fast->leaves, at, 4));
}

/* Trees [first, first + 16 * TREE_GROUPS) for one row: the groups walk
 * interleaved so that one group's gathers wait while another's run. */
#define TREE_GROUPS 2
__attribute__((target("avx512f"))) static void trees_avx512(
    const tdm__fast *fast, const float *row, size_t num_features, size_t first,
    size_t count, float *leaves) {
  /* A row of at most 64 features lives in four registers: reading a
   * feature is a permute, not a gather. */
  int in_registers = num_features <= 64;
  __m512 part[4];
  for (int k = 0; k < 4 && in_registers; k++) {
    size_t begin = 16 * (size_t)k;
    size_t have = num_features > begin ? num_features - begin : 0;
    __mmask16 present =
        have >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << have) - 1);
    part[k] = _mm512_maskz_loadu_ps(present, row + begin);
  }
  const int *words = (const int *)fast->splits;
  const __m512i one = _mm512_set1_epi32(1);
  const __m512i two = _mm512_set1_epi32(2);
  const __m512i feature_mask = _mm512_set1_epi32((int)FEATURE_MASK);
  __m512i depth[TREE_GROUPS], base[TREE_GROUPS], idx[TREE_GROUPS],
      leaf_base[TREE_GROUPS];
  uint32_t max_depth = 0;
  for (int g = 0; g < TREE_GROUPS; g++) {
    size_t t = first + 16 * (size_t)g;
    /* Lanes past `count` load zeros: depth 0, never active. */
    size_t in_group = count > 16 * (size_t)g ? count - 16 * (size_t)g : 0;
    __mmask16 valid =
        in_group >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << in_group) - 1);
    depth[g] = _mm512_maskz_loadu_epi32(valid, fast->depth + t);
    base[g] = _mm512_slli_epi32(
        _mm512_maskz_loadu_epi32(valid, fast->split_base + t), 1);
    leaf_base[g] = _mm512_maskz_loadu_epi32(valid, fast->leaf_base + t);
    idx[g] = _mm512_setzero_si512();
    uint32_t d = (uint32_t)_mm512_reduce_max_epi32(depth[g]);
    if (d > max_depth) max_depth = d;
  }
  for (uint32_t level = 0; level < max_depth; level++) {
    __m512i lvl = _mm512_set1_epi32((int)level);
#pragma GCC unroll 4
    for (int g = 0; g < TREE_GROUPS; g++) {
      __mmask16 active = _mm512_cmpgt_epi32_mask(depth[g], lvl);
      __m512i at = _mm512_add_epi32(base[g], _mm512_slli_epi32(idx[g], 1));
      __m512i key = _mm512_mask_i32gather_epi32(_mm512_setzero_si512(), active,
                                                at, words, 4);
      __m512 threshold = _mm512_mask_i32gather_ps(
          _mm512_setzero_ps(), active, _mm512_add_epi32(at, one), words, 4);
      __m512i feature = _mm512_and_si512(key, feature_mask);
      __m512 x;
      if (in_registers) {
        __m512 low = _mm512_permutex2var_ps(part[0], feature, part[1]);
        __m512 high = _mm512_permutex2var_ps(part[2], feature, part[3]);
        x = _mm512_mask_blend_ps(
            _mm512_test_epi32_mask(feature, _mm512_set1_epi32(32)), low, high);
      } else {
        x = _mm512_mask_i32gather_ps(_mm512_setzero_ps(), active, feature, row,
                                     4);
      }
      __mmask16 lt = _mm512_cmp_ps_mask(x, threshold, _CMP_LT_OQ);
      __mmask16 nan = _mm512_cmp_ps_mask(x, x, _CMP_UNORD_Q);
      __mmask16 dl = _mm512_cmplt_epi32_mask(key, _mm512_setzero_si512());
      __mmask16 left = lt | (nan & dl);
      __m512i next = _mm512_add_epi32(_mm512_slli_epi32(idx[g], 1), two);
      next = _mm512_mask_sub_epi32(next, left, next, one);
      idx[g] = _mm512_mask_mov_epi32(idx[g], active, next);
    }
  }
  for (int g = 0; g < TREE_GROUPS; g++) {
    __m512i first_leaf =
        _mm512_sub_epi32(_mm512_sllv_epi32(one, depth[g]), one);
    __m512i at =
        _mm512_add_epi32(leaf_base[g], _mm512_sub_epi32(idx[g], first_leaf));
    _mm512_storeu_ps(leaves + 16 * g, _mm512_i32gather_ps(at, fast->leaves, 4));
  }
}
#endif

/*
 * The widest kernel that pays: AVX-512 when the CPU has it, else the
 * portable one. AVX2's 8-lane gathers measured slower than the interleaved
 * scalar walk (bench/README.md), so AVX2 runs only when asked for.
 * tdm__fast_use_kernel forces one (tests, benchmarks; the CLI's `score`
 * and bench_predict do so from TANDEM_KERNEL, which the library never
 * reads); one the CPU lacks falls back to the portable kernel.
 */
static void choose_kernel(tdm__fast *fast, const char *want) {
  fast->kernel = kernel_scalar;
  fast->categorical_kernel = kernel_scalar_categorical;
  fast->tree_kernel = trees_scalar;
  fast->lanes = SCALAR_TREES;
  fast->kernel_name = "scalar";
#ifdef TDM__HAVE_X86
  __builtin_cpu_init();
  if (want == NULL || strcmp(want, "avx512") == 0) {
    if (__builtin_cpu_supports("avx512f")) {
      fast->kernel = kernel_avx512;
      fast->categorical_kernel = kernel_avx512_categorical;
      fast->tree_kernel = trees_avx512;
      fast->lanes = 16 * TREE_GROUPS;
      fast->kernel_name = "avx512";
    }
  } else if (strcmp(want, "avx2") == 0 && __builtin_cpu_supports("avx2")) {
    fast->kernel = kernel_avx2;
    fast->tree_kernel = trees_avx2;
    fast->lanes = 8;
    fast->kernel_name = "avx2";
  }
#else
  (void)want;
#endif
}

/* Can this tree take the perfect layout? */
static int fits_layout(const tdm_model *model, const tdm__tree *tree) {
  if (tree->depth > TDM__FAST_MAX_DEPTH) return 0;
  for (uint32_t i = 0; i < tree->num_nodes; i++) {
    const tdm__node *node = &model->nodes[tree->root + i];
    if (node->kind == TDM__NODE_LEAF || node->kind == TDM__NODE_XGB_NUMERIC)
      continue;
    if (node->kind != TDM__NODE_XGB_CATEGORICAL ||
        node->cat_count > MAX_CATEGORY_WORDS ||
        node->cat_begin > MAX_CATEGORY_BEGIN)
      return 0;
  }
  return 1;
}

static int has_categorical_split(const tdm_model *model,
                                 const tdm__tree *tree) {
  for (uint32_t i = 0; i < tree->num_nodes; i++)
    if (model->nodes[tree->root + i].kind == TDM__NODE_XGB_CATEGORICAL)
      return 1;
  return 0;
}

/* Writes node's subtree at heap position pos of a perfect tree. */
static void lay_out(const tdm_model *model, uint32_t node_index, uint32_t pos,
                    uint32_t level, uint32_t depth, fast_split *splits,
                    float *leaves) {
  const tdm__node *node = &model->nodes[node_index];
  if (level == depth) {
    leaves[pos - ((1u << depth) - 1)] = (float)node->value;
    return;
  }
  if (node->kind == TDM__NODE_LEAF) {
    /* Padding: either way leads to a copy of this leaf. */
    splits[pos] = (fast_split){DEFAULT_LEFT, {INFINITY}};
    lay_out(model, node_index, 2 * pos + 1, level + 1, depth, splits, leaves);
    lay_out(model, node_index, 2 * pos + 2, level + 1, depth, splits, leaves);
    return;
  }
  uint32_t key =
      (uint32_t)node->feature | (node->default_left ? DEFAULT_LEFT : 0);
  if (node->kind == TDM__NODE_XGB_CATEGORICAL) {
    splits[pos].key = key | CATEGORICAL;
    splits[pos].category_ref = CATEGORY_REF(node->cat_begin, node->cat_count);
  } else {
    splits[pos].key = key;
    splits[pos].threshold = (float)node->value;
  }
  lay_out(model, node->left, 2 * pos + 1, level + 1, depth, splits, leaves);
  lay_out(model, node->right, 2 * pos + 2, level + 1, depth, splits, leaves);
}

/*
 * LightGBM's layout. Its trees are deep and unbalanced (leaf-wise growth:
 * depth 18 in a 31-leaf tree), so a perfect tree would not fit; instead
 * every node of the model becomes a 24-byte record at its own index, and
 * every decision of LightGBM's is reduced to flag bits set at load:
 *
 *   categorical: tdm__lgb_category_goes_left on the split's bitset
 *   NaN:         goes left when NAN_LEFT (missing type None reads NaN as 0,
 *                so its NaN goes where 0 goes; Zero and NaN send it to the
 *                default child)
 *   x == 0 with ZERO_MISSING (missing type Zero): left when ZERO_LEFT
 *   otherwise:   x <= threshold, in double
 *
 * A leaf's record leads back to itself both ways and holds the leaf value,
 * so eight rows walk side by side without a test per row: they step
 * together until all eight stand on leaves. Rows walk in blocks, tree by tree;
 * a row's margin is the sum of its leaves in tree order from the base margin,
 * as the reference walk adds them, so the scores are the same doubles. Rows are
 * first read as LightGBM reads them (tdm__lightgbm_value) when the model says
 * so; a linear leaf is computed by the reference's tdm__leaf_output from the
 * caller's row.
 */
#define LGB_NAN_LEFT 0x80000000u
#define LGB_ZERO_MISSING 0x40000000u
#define LGB_ZERO_LEFT 0x20000000u
#define LGB_CATEGORICAL 0x10000000u
#define LGB_LEAF 0x08000000u
#define LGB_FEATURE_MASK 0x07ffffffu
#define LGB_SCRATCH 8192
#define LGB_ROWS 8 /* rows that walk a tree side by side */

static void finish_block(const tdm_model *model, const float *acc32,
                         const double *acc64, size_t n, int flags, double *out);
static size_t block_rows(const tdm_model *model, int converting,
                         size_t scratch);

typedef struct lgb_record {
  uint32_t key;      /* feature | the LGB_ flags above; LGB_LEAF for a leaf */
  uint32_t child[2]; /* [0] right, [1] left; a leaf's own index twice */
  /* A categorical split's bitset in lgb_layout.words, CATEGORY_REF(begin,
   * count); any other record's names an empty set (count 0). */
  uint32_t category_ref;
  union {
    double threshold; /* numeric split */
    double value;     /* leaf */
  };
} lgb_record;

typedef struct lgb_bits lgb_bits;

struct lgb_layout {
  lgb_record *records; /* one per node of tdm_model.nodes, same index */
  uint32_t *words;     /* tdm_model.cat_words, then one zero word */
  uint8_t *linear;     /* per tree: 1 when it has linear leaves */
  /* The bitvector layout (below), NULL where a tree does not fit it; used
   * when use_bits is set (the default), else the record walk. */
  lgb_bits *bits;
  int use_bits;
};

/* One LightGBM decision: the record x goes to from `record`. */
static inline uint32_t lgb_step(const lgb_record *record, const uint32_t *words,
                                double x) {
  uint32_t key = record->key;
  uint32_t left;
  if (key & LGB_CATEGORICAL) {
    uint32_t ref = record->category_ref;
    left = (uint32_t)tdm__lgb_category_goes_left(words + (ref >> 8), ref & 0xff,
                                                 x);
  } else if (isnan(x)) {
    left = key >> 31;
  } else if ((key & LGB_ZERO_MISSING) && x == 0.0) {
    left = (key & LGB_ZERO_LEFT) != 0;
  } else {
    left = x <= record->threshold;
  }
  return record->child[left];
}

/*
 * LightGBM's bitvector layout, the default wherever every tree has at most
 * 64 leaves (LightGBM's default is 31). It follows QuickScorer's idea
 * (Lucchese et al., SIGIR 2015) instead of walking: number each tree's
 * leaves left to right; a split that sends the row right rules out every
 * leaf of its left subtree, and no split on the row's own path rules out
 * the leaf the row reaches, while every leaf left of it is ruled out by the
 * split where the two paths part. So the row's leaf is the leftmost leaf
 * that no split sending the row right has ruled out: the lowest set bit of
 * a 64-bit word per tree, started at all ones and ANDed with the mask of
 * each such split.
 *
 * Which splits send x right is found per feature, not per node. A numeric
 * split sends a value that is neither NaN nor zero right exactly when
 * threshold < x (LightGBM's rule is x <= threshold to the left, in double,
 * and its missing types only concern NaN and zero), so with a feature's
 * splits sorted by threshold they are a prefix of the list, scanned until
 * the first threshold that is not below x (each list ends in a +infinity
 * sentinel that stops every scan). A NaN and a zero (after values under
 * kZeroThreshold are read as zero) instead take a list made at load of the
 * splits that send them right under each split's own missing type: None
 * reads NaN as 0, which goes right when the threshold is below 0; Zero
 * sends both to the default child; NaN sends a NaN to the default child
 * and a zero by its threshold. A categorical split whose set fits 64
 * categories is listed per feature with its set inline (one shift per
 * split, the category computed once per value); wider sets are tested one
 * by one (tdm__lgb_category_goes_left). The per-value work is therefore a
 * few loads and an AND per split that goes right, with no test of missing
 * types on the way, and no row waits for a deeper one.
 *
 * Trees are taken in groups (at most BITS_GROUP_TREES trees and about
 * BITS_GROUP_SPLITS splits, so a group's lists stay in the first cache
 * levels while a block of rows passes); within a group every row finds
 * its leaves and adds them to its margins in tree order, and groups go in
 * tree order, so each margin is the same sum in the same order as the
 * reference walk's. Linear leaves are computed on the layout (linear_leaf),
 * or, for a model that imputes missing values, by the reference's
 * tdm__leaf_output from the caller's row.
 */
#define BITS_MAX_LEAVES 64
#define BITS_GROUP_TREES 256
#define BITS_GROUP_SPLITS 2048

/* A split the row may go right at: its tree (within the group) loses the
 * leaves `mask` clears. Numeric lists sort by threshold; the NaN and zero
 * lists leave it 0; a categorical split of at most 64 categories holds its
 * set instead (bit c for category c). */
typedef struct bits_split {
  union {
    double threshold;
    uint64_t set;
  };
  uint64_t mask;
  uint32_t tree;
  uint32_t reserved;
} bits_split;

/* A categorical split whose set reaches past category 63. */
typedef struct bits_categorical {
  uint64_t mask;
  uint32_t tree; /* within the group */
  uint32_t feature;
  uint32_t cat_begin; /* its bitset in lgb_layout.words */
  uint32_t cat_count;
} bits_categorical;

struct lgb_bits {
  size_t num_groups;
  uint32_t *group_first; /* per group, then the tree count: first tree */
  /* Per (group, feature), index g * num_features + f, then one past the
   * last: where its list starts in `numeric` (sorted by threshold, ending
   * in a +infinity sentinel), `nan` and `zero` (unsorted). */
  uint32_t *numeric_at, *nan_at, *zero_at;
  bits_split *numeric, *nan, *zero;
  /* The same for categorical splits of at most 64 categories, and per
   * group (then one past the last) for the others. */
  uint32_t *narrow_at;
  bits_split *narrow;
  uint32_t *categorical_at;
  bits_categorical *categorical;
  /* Per tree, then one past the last: where its leaves, left to right,
   * start in leaf_value and leaf_node. */
  uint32_t *leaf_at;
  double *leaf_value;
  uint32_t *leaf_node;        /* the leaf's index in tdm_model.nodes */
  uint8_t *group_linear;      /* per group: 1 when a tree has linear leaves */
  uint8_t *group_categorical; /* per group: 1 with a categorical split */
  /* Linear leaves (NULL arrays when the model has none, or imputes), each
   * padded to its tree's most terms so that every leaf of a tree runs the
   * same loop, whose length then does not depend on the row: per tree the first
   * term of its leaf 0 and the terms per leaf; per term its feature and
   * coefficient; per leaf its real term count and its constant (a plain
   * leaf's: its value, no terms). */
  uint32_t *term_at, *term_stride;
  uint32_t *term_feature;
  double *term_coeff;
  uint32_t *leaf_terms;
  double *leaf_const;
  /* Per leaf, for models of at most 64 features: bit f set when one of
   * its terms reads feature f (NULL otherwise). */
  uint64_t *leaf_features;
  size_t bytes;
};

/* Numbers the leaves of `index`'s subtree from *next, left to right, into
 * leaf_node, and gives every split the mask that clears its left
 * subtree's leaves (masks[index]), bit i for the tree's leaf i, the tree's
 * first leaf being number `first`. The recursion is as deep as the tree,
 * at most 64. */
static void bits_number(const tdm_model *model, uint32_t index, uint32_t first,
                        uint32_t *next, uint32_t *leaf_node, uint64_t *masks) {
  const tdm__node *node = &model->nodes[index];
  if (node->kind == TDM__NODE_LEAF || node->kind == TDM__NODE_LINEAR_LEAF) {
    leaf_node[(*next)++] = index;
    return;
  }
  uint32_t begin = *next;
  bits_number(model, node->left, first, next, leaf_node, masks);
  uint32_t count = *next - begin; /* at most 63: the right side has one */
  masks[index] = ~((((uint64_t)1 << count) - 1) << (begin - first));
  bits_number(model, node->right, first, next, leaf_node, masks);
}

static int compare_threshold(const void *a, const void *b) {
  double x = ((const bits_split *)a)->threshold,
         y = ((const bits_split *)b)->threshold;
  return (x > y) - (x < y);
}

/* Where a NaN and where a zero go at a numeric split, 1 for right: the
 * reference's lgb_numeric_goes_left for those two values. */
static int nan_goes_right(const tdm__node *node) {
  if (node->missing_type == TDM__MISSING_NONE) return !(0.0 <= node->value);
  return !node->default_left;
}

static int zero_goes_right(const tdm__node *node) {
  if (node->missing_type == TDM__MISSING_ZERO) return !node->default_left;
  return !(0.0 <= node->value);
}

/* Lays out the linear leaves' terms, padded per tree (lgb_bits above). */
static int bits_pad_terms(tdm_model *model, lgb_bits *bits, size_t num_leaves) {
  size_t n = model->num_trees, num_terms = 0;
  bits->term_at = tdm__arena_alloc(&model->arena, (n + 1) * sizeof(uint32_t));
  bits->term_stride =
      tdm__arena_alloc(&model->arena, (n + 1) * sizeof(uint32_t));
  bits->leaf_terms =
      tdm__arena_alloc(&model->arena, (num_leaves + 1) * sizeof(uint32_t));
  bits->leaf_const =
      tdm__arena_alloc(&model->arena, (num_leaves + 1) * sizeof(double));
  if (!bits->term_at || !bits->term_stride || !bits->leaf_terms ||
      !bits->leaf_const)
    return TDM_ENOMEM;
  for (size_t t = 0; t < n; t++) {
    uint32_t stride = 0;
    for (uint32_t i = bits->leaf_at[t]; i < bits->leaf_at[t + 1]; i++) {
      const tdm__node *leaf = &model->nodes[bits->leaf_node[i]];
      int linear = leaf->kind == TDM__NODE_LINEAR_LEAF;
      bits->leaf_terms[i] = linear ? leaf->linear_count : 0;
      bits->leaf_const[i] = linear ? leaf->linear_const : leaf->value;
      if (bits->leaf_terms[i] > stride) stride = bits->leaf_terms[i];
    }
    if (num_terms + (size_t)stride * (bits->leaf_at[t + 1] - bits->leaf_at[t]) >
        UINT32_MAX)
      return TDM_ENOMEM;
    bits->term_at[t] = (uint32_t)num_terms;
    bits->term_stride[t] = stride;
    num_terms += (size_t)stride * (bits->leaf_at[t + 1] - bits->leaf_at[t]);
  }
  if (model->num_features <= 64) {
    bits->leaf_features =
        tdm__arena_alloc(&model->arena, (num_leaves + 1) * sizeof(uint64_t));
    if (bits->leaf_features == NULL) return TDM_ENOMEM;
    for (size_t i = 0; i < num_leaves; i++) {
      const tdm__node *leaf = &model->nodes[bits->leaf_node[i]];
      bits->leaf_features[i] = 0;
      for (uint32_t k = 0; k < bits->leaf_terms[i]; k++)
        bits->leaf_features[i] |=
            (uint64_t)1 << model->linear_features[leaf->linear_begin + k];
    }
    bits->bytes += num_leaves * sizeof(uint64_t);
  }
  bits->term_feature =
      tdm__arena_alloc(&model->arena, (num_terms + 1) * sizeof(uint32_t));
  bits->term_coeff =
      tdm__arena_alloc(&model->arena, (num_terms + 1) * sizeof(double));
  if (!bits->term_feature || !bits->term_coeff) return TDM_ENOMEM;
  for (size_t t = 0; t < n; t++) {
    uint32_t stride = bits->term_stride[t];
    for (uint32_t i = bits->leaf_at[t]; i < bits->leaf_at[t + 1]; i++) {
      const tdm__node *leaf = &model->nodes[bits->leaf_node[i]];
      size_t at = bits->term_at[t] + (size_t)(i - bits->leaf_at[t]) * stride;
      for (uint32_t k = 0; k < stride; k++) {
        /* Padding: -0.0 times the converted row's trailing +0.0. */
        int real = k < bits->leaf_terms[i];
        bits->term_feature[at + k] =
            real ? model->linear_features[leaf->linear_begin + k]
                 : (uint32_t)model->num_features;
        bits->term_coeff[at + k] =
            real ? model->linear_coeffs[leaf->linear_begin + k] : -0.0;
      }
    }
  }
  bits->bytes += num_terms * (sizeof(uint32_t) + sizeof(double)) +
                 num_leaves * (sizeof(uint32_t) + sizeof(double));
  return TDM_OK;
}

/* Builds the bitvector layout into the model's arena: TDM_OK with *out
 * set, or with *out NULL when a tree does not fit it (more than 64 leaves,
 * a NaN threshold); TDM_ENOMEM. Called by lgb_build after the records. */
static int bits_build(tdm_model *model, lgb_bits **out) {
  size_t nf = model->num_features, n = model->num_trees;
  int rc = TDM_ENOMEM;
  *out = NULL;
  if (n == 0) return TDM_OK;
  size_t num_leaves = 0, num_splits = 0, num_groups = 0;
  for (size_t t = 0; t < n; t++) {
    const tdm__tree *tree = &model->trees[t];
    size_t leaves = 0;
    for (uint32_t i = 0; i < tree->num_nodes; i++) {
      const tdm__node *node = &model->nodes[tree->root + i];
      if (node->kind == TDM__NODE_LEAF || node->kind == TDM__NODE_LINEAR_LEAF)
        leaves++;
      else if (node->kind == TDM__NODE_LGB_NUMERIC && isnan(node->value))
        return TDM_OK; /* no order to sort it in: the record walk */
    }
    if (leaves > BITS_MAX_LEAVES || leaves + leaves - 1 != tree->num_nodes)
      return TDM_OK;
    num_leaves += leaves;
    num_splits += tree->num_nodes - leaves;
  }
  /* Groups of whole trees, tree order. */
  uint32_t *group_of = calloc(n, sizeof *group_of);
  uint32_t *group_first = calloc(n + 1, sizeof *group_first);
  uint64_t *masks = calloc(model->num_nodes + 1, sizeof *masks);
  if (!group_of || !group_first || !masks) goto fail;
  for (size_t t = 0, trees = 0, splits = 0; t < n; t++) {
    size_t s = model->trees[t].num_nodes / 2;
    if (t == 0 || trees == BITS_GROUP_TREES ||
        (splits + s > BITS_GROUP_SPLITS && trees > 0)) {
      group_first[num_groups++] = (uint32_t)t;
      trees = splits = 0;
    }
    group_of[t] = (uint32_t)(num_groups - 1);
    trees++;
    splits += s;
  }
  group_first[num_groups] = (uint32_t)n;
  /* Every row visits every (group, feature) list: where most lists would
   * be empty (many features, few splits) that costs more than walking,
   * and their offsets and sentinels more memory than the trees. */
  if (num_groups * nf > 4 * num_splits + 1024) {
    rc = TDM_OK;
    goto fail;
  }

  lgb_bits *bits = tdm__arena_alloc(&model->arena, sizeof *bits);
  size_t lists = num_groups * nf + 1;
  if (bits == NULL) goto fail;
  memset(bits, 0, sizeof *bits);
  bits->num_groups = num_groups;
  bits->group_first =
      tdm__arena_alloc(&model->arena, (num_groups + 1) * sizeof(uint32_t));
  bits->numeric_at = tdm__arena_alloc(&model->arena, lists * sizeof(uint32_t));
  bits->nan_at = tdm__arena_alloc(&model->arena, lists * sizeof(uint32_t));
  bits->zero_at = tdm__arena_alloc(&model->arena, lists * sizeof(uint32_t));
  bits->narrow_at = tdm__arena_alloc(&model->arena, lists * sizeof(uint32_t));
  bits->categorical_at =
      tdm__arena_alloc(&model->arena, (num_groups + 1) * sizeof(uint32_t));
  bits->leaf_at = tdm__arena_alloc(&model->arena, (n + 1) * sizeof(uint32_t));
  bits->leaf_value =
      tdm__arena_alloc(&model->arena, (num_leaves + 1) * sizeof(double));
  bits->leaf_node =
      tdm__arena_alloc(&model->arena, (num_leaves + 1) * sizeof(uint32_t));
  bits->group_linear = tdm__arena_alloc(&model->arena, num_groups + 1);
  bits->group_categorical = tdm__arena_alloc(&model->arena, num_groups + 1);
  if (!bits->group_first || !bits->numeric_at || !bits->nan_at ||
      !bits->zero_at || !bits->narrow_at || !bits->categorical_at ||
      !bits->leaf_at || !bits->leaf_value || !bits->leaf_node ||
      !bits->group_linear || !bits->group_categorical)
    goto fail;
  memset(bits->group_linear, 0, num_groups + 1);
  memset(bits->group_categorical, 0, num_groups + 1);
  memcpy(bits->group_first, group_first, (num_groups + 1) * sizeof(uint32_t));
  memset(bits->numeric_at, 0, lists * sizeof(uint32_t));
  memset(bits->nan_at, 0, lists * sizeof(uint32_t));
  memset(bits->zero_at, 0, lists * sizeof(uint32_t));
  memset(bits->narrow_at, 0, lists * sizeof(uint32_t));
  memset(bits->categorical_at, 0, (num_groups + 1) * sizeof(uint32_t));

  /* Leaves and masks; then each list's length, counted one slot ahead so
   * that a running sum turns lengths into starts. */
  uint32_t next = 0;
  for (size_t t = 0; t < n; t++) {
    const tdm__tree *tree = &model->trees[t];
    bits->leaf_at[t] = next;
    bits_number(model, tree->root, next, &next, bits->leaf_node, masks);
    size_t g = group_of[t];
    for (uint32_t i = 0; i < tree->num_nodes; i++) {
      const tdm__node *node = &model->nodes[tree->root + i];
      if (node->kind == TDM__NODE_LINEAR_LEAF) bits->group_linear[g] = 1;
      if (node->kind == TDM__NODE_LGB_CATEGORICAL) {
        bits->group_categorical[g] = 1;
        if (node->cat_count <= 2)
          bits->narrow_at[g * nf + (size_t)node->feature + 1]++;
        else
          bits->categorical_at[g + 1]++;
      } else if (node->kind == TDM__NODE_LGB_NUMERIC) {
        size_t at = g * nf + (size_t)node->feature + 1;
        bits->numeric_at[at]++;
        bits->nan_at[at] += (uint32_t)nan_goes_right(node);
        bits->zero_at[at] += (uint32_t)zero_goes_right(node);
      }
    }
  }
  bits->leaf_at[n] = next;
  for (size_t i = 0; i < num_leaves; i++)
    bits->leaf_value[i] = model->nodes[bits->leaf_node[i]].value;
  if (model->num_linear_terms > 0 && model->linear_missing == NULL &&
      bits_pad_terms(model, bits, num_leaves) != TDM_OK)
    goto fail;
  for (size_t i = 0; i + 1 < lists; i++) {
    /* Every numeric list has its sentinel. */
    bits->numeric_at[i + 1] += bits->numeric_at[i] + 1;
    bits->nan_at[i + 1] += bits->nan_at[i];
    bits->zero_at[i + 1] += bits->zero_at[i];
    bits->narrow_at[i + 1] += bits->narrow_at[i];
  }
  for (size_t g = 0; g < num_groups; g++)
    bits->categorical_at[g + 1] += bits->categorical_at[g];
  size_t num_numeric = bits->numeric_at[lists - 1] + 1,
         num_nan = bits->nan_at[lists - 1], num_zero = bits->zero_at[lists - 1],
         num_narrow = bits->narrow_at[lists - 1],
         num_categorical = bits->categorical_at[num_groups];
  bits->numeric =
      tdm__arena_alloc(&model->arena, num_numeric * sizeof(bits_split));
  bits->nan =
      tdm__arena_alloc(&model->arena, (num_nan + 1) * sizeof(bits_split));
  bits->zero =
      tdm__arena_alloc(&model->arena, (num_zero + 1) * sizeof(bits_split));
  bits->narrow =
      tdm__arena_alloc(&model->arena, (num_narrow + 1) * sizeof(bits_split));
  bits->categorical = tdm__arena_alloc(
      &model->arena, (num_categorical + 1) * sizeof(bits_categorical));
  uint32_t *fill = calloc(4 * lists + num_groups + 1, sizeof *fill);
  if (!bits->numeric || !bits->nan || !bits->zero || !bits->narrow ||
      !bits->categorical || !fill)
    goto fail_fill;
  uint32_t *numeric_fill = fill, *nan_fill = fill + lists,
           *zero_fill = fill + 2 * lists, *narrow_fill = fill + 3 * lists,
           *categorical_fill = fill + 4 * lists;
  memcpy(numeric_fill, bits->numeric_at, lists * sizeof *fill);
  memcpy(nan_fill, bits->nan_at, lists * sizeof *fill);
  memcpy(zero_fill, bits->zero_at, lists * sizeof *fill);
  memcpy(narrow_fill, bits->narrow_at, lists * sizeof *fill);
  memcpy(categorical_fill, bits->categorical_at, num_groups * sizeof *fill);
  for (size_t t = 0; t < n; t++) {
    const tdm__tree *tree = &model->trees[t];
    size_t g = group_of[t];
    uint32_t local = (uint32_t)(t - group_first[g]);
    for (uint32_t i = 0; i < tree->num_nodes; i++) {
      const tdm__node *node = &model->nodes[tree->root + i];
      uint64_t mask = masks[tree->root + i];
      if (node->kind == TDM__NODE_LGB_CATEGORICAL && node->cat_count <= 2) {
        const uint32_t *words = model->cat_words + node->cat_begin;
        bits_split split = {{0}, mask, local, 0};
        if (node->cat_count > 0) split.set = words[0];
        if (node->cat_count > 1) split.set |= (uint64_t)words[1] << 32;
        bits->narrow[narrow_fill[g * nf + (size_t)node->feature]++] = split;
        continue;
      }
      if (node->kind == TDM__NODE_LGB_CATEGORICAL) {
        bits->categorical[categorical_fill[g]++] =
            (bits_categorical){mask, local, (uint32_t)node->feature,
                               node->cat_begin, node->cat_count};
        continue;
      }
      if (node->kind != TDM__NODE_LGB_NUMERIC) continue;
      size_t at = g * nf + (size_t)node->feature;
      bits_split split = {{node->value}, mask, local, 0};
      bits->numeric[numeric_fill[at]++] = split;
      split.threshold = 0.0;
      if (nan_goes_right(node)) bits->nan[nan_fill[at]++] = split;
      if (zero_goes_right(node)) bits->zero[zero_fill[at]++] = split;
    }
  }
  for (size_t i = 0; i + 1 < lists; i++) {
    bits_split *list = bits->numeric + bits->numeric_at[i];
    size_t len = bits->numeric_at[i + 1] - bits->numeric_at[i] - 1;
    qsort(list, len, sizeof *list, compare_threshold);
    /* The sentinel: no value is above it (a NaN never reaches the scan),
     * and its mask would clear nothing. */
    list[len] = (bits_split){{INFINITY}, ~(uint64_t)0, 0, 0};
  }
  bits->bytes += num_numeric * sizeof(bits_split) +
                 (num_nan + num_zero + num_narrow) * sizeof(bits_split) +
                 num_categorical * sizeof(bits_categorical) +
                 num_leaves * (sizeof(double) + sizeof(uint32_t)) +
                 (4 * lists + n + 2 * num_groups) * sizeof(uint32_t);
  free(fill);
  free(group_of);
  free(group_first);
  free(masks);
  *out = bits;
  return TDM_OK;
fail_fill:
  free(fill);
fail:
  free(group_of);
  free(group_first);
  free(masks);
  return rc;
}

/* The lowest set bit's index; `word` is never 0 (the row's own leaf is
 * never ruled out). */
static inline uint32_t lowest_bit(uint64_t word) {
#if defined(__GNUC__) || defined(__clang__)
  return (uint32_t)__builtin_ctzll(word);
#else
  uint32_t i = 0;
  while (!(word >> i & 1)) i++;
  return i;
#endif
}

/* Rules out, in words[t] for group g's trees, the leaves that row x (nf
 * values, as LightGBM reads them) cannot reach, and returns the row's
 * missing features among the first 64 (bit f for feature f; linear leaves
 * read it). `categorical` is a constant in each of the two callers below:
 * a group without categorical splits runs a loop without their tests. */
static inline uint64_t bits_rule_out_any(const lgb_bits *bits,
                                         const uint32_t *cat_words, size_t g,
                                         size_t nf, const double *x,
                                         uint64_t *words, int categorical) {
  const uint32_t *numeric_at = bits->numeric_at + g * nf,
                 *nan_at = bits->nan_at + g * nf,
                 *zero_at = bits->zero_at + g * nf,
                 *narrow_at = bits->narrow_at + g * nf;
  uint64_t missing = 0;
  for (size_t f = 0; f < nf; f++) {
    double v = x[f];
    const bits_split *split, *end;
    if (categorical && narrow_at[f] != narrow_at[f + 1]) {
      /* tdm__lgb_category_goes_left on a set of at most 64 categories,
       * without a branch: anything but a category below 64 (NaN,
       * truncating to a negative int, 64 and above) is in no set and goes
       * right; a category in the set goes left. */
      int in_range = v > -1.0 && v < 64.0;
      uint32_t category = in_range ? (uint32_t)(int32_t)v : 0;
      uint64_t valid = in_range ? 1 : 0;
      split = bits->narrow + narrow_at[f];
      end = bits->narrow + narrow_at[f + 1];
      for (; split < end; split++) {
        uint64_t left = (split->set >> category) & valid;
        words[split->tree] &= split->mask | (0 - left);
      }
    }
    if (fabs(v) > 0.0) {
      /* Neither NaN nor zero (one test for both, the common case). The
       * sentinel's +infinity ends the scan. */
      for (split = bits->numeric + numeric_at[f]; split->threshold < v; split++)
        words[split->tree] &= split->mask;
      continue;
    }
    if (isnan(v)) {
      split = bits->nan + nan_at[f];
      end = bits->nan + nan_at[f + 1];
      if (f < 64) missing |= (uint64_t)1 << f;
    } else {
      split = bits->zero + zero_at[f];
      end = bits->zero + zero_at[f + 1];
    }
    for (; split < end; split++) words[split->tree] &= split->mask;
  }
  if (!categorical) return missing;
  const bits_categorical *c = bits->categorical + bits->categorical_at[g],
                         *last =
                             bits->categorical + bits->categorical_at[g + 1];
  for (; c < last; c++)
    if (!tdm__lgb_category_goes_left(cat_words + c->cat_begin, c->cat_count,
                                     x[c->feature]))
      words[c->tree] &= c->mask;
  return missing;
}

static uint64_t bits_rule_out_numeric(const lgb_bits *bits, size_t g, size_t nf,
                                      const double *x, uint64_t *words) {
  return bits_rule_out_any(bits, NULL, g, nf, x, words, 0);
}

static uint64_t bits_rule_out_categorical(const lgb_bits *bits,
                                          const uint32_t *cat_words, size_t g,
                                          size_t nf, const double *x,
                                          uint64_t *words) {
  return bits_rule_out_any(bits, cat_words, g, nf, x, words, 1);
}

/* Leaf `leaf` (tree t's, its padded terms at term_at[t] + position *
 * stride) on row x (values as LightGBM reads them, then +0.0): the rule
 * of tdm__leaf_output for a model that does not impute (its reference,
 * which the differential tests hold it to), the terms added in the same
 * order. Every leaf of the tree runs the same padded loop, so its length
 * does not depend on the row. A padding term is -0.0 times the row's
 * trailing +0.0, and adding -0.0 leaves every double as it is (-0.0 and
 * NaN included), so the sum is the reference's. Then the leaf's value
 * instead if one of its terms reads a missing value: for models of at
 * most 64 features by a mask of the row's missing features (`missing`),
 * without a branch; for wider ones the terms are looked at again, only
 * when the sum is NaN (a missing value makes it NaN). */
static double linear_leaf(const lgb_bits *bits, size_t t, uint32_t leaf,
                          const double *x, uint64_t missing) {
  uint32_t stride = bits->term_stride[t];
  size_t at = bits->term_at[t] + (size_t)(leaf - bits->leaf_at[t]) * stride;
  const uint32_t *features = bits->term_feature + at;
  const double *coeffs = bits->term_coeff + at;
  double sum = bits->leaf_const[leaf];
  for (uint32_t k = 0; k < stride; k++) sum += coeffs[k] * x[features[k]];
  if (bits->leaf_features != NULL)
    return missing & bits->leaf_features[leaf] ? bits->leaf_value[leaf] : sum;
  if (isnan(sum))
    for (uint32_t k = 0; k < bits->leaf_terms[leaf]; k++)
      if (isnan(x[features[k]])) return bits->leaf_value[leaf];
  return sum;
}

/* Adds each row's leaves to acc[output * n + r], tree by tree in order:
 * rows as lgb_tree takes them, n at most LGB_SCRATCH / outputs. */
static void bits_block(const tdm_model *model, const lgb_layout *lgb,
                       const double *rows, size_t stride, size_t n,
                       tdm__row original, double *acc) {
  const lgb_bits *bits = lgb->bits;
  size_t nf = model->num_features;
  uint64_t words[BITS_GROUP_TREES];
  uint32_t leaf[BITS_GROUP_TREES];
  double value[BITS_GROUP_TREES];
  for (size_t g = 0; g < bits->num_groups; g++) {
    size_t first = bits->group_first[g], end = bits->group_first[g + 1];
    /* tdm_model_limit_iterations may have cut the model short. */
    if (first >= model->num_trees) break;
    size_t count = end - first;
    if (end > model->num_trees) end = model->num_trees;
    for (size_t r = 0; r < n; r++) {
      for (size_t t = 0; t < count; t++) words[t] = ~(uint64_t)0;
      uint64_t missing =
          bits->group_categorical[g]
              ? bits_rule_out_categorical(bits, lgb->words, g, nf,
                                          rows + r * stride, words)
              : bits_rule_out_numeric(bits, g, nf, rows + r * stride, words);
      /* The leaves first, then their sum: the loads of one tree's leaf
       * need not wait for the previous tree's addition. */
      for (size_t t = first; t < end; t++) {
        leaf[t - first] = bits->leaf_at[t] + lowest_bit(words[t - first]);
        value[t - first] = bits->leaf_value[leaf[t - first]];
      }
      if (bits->group_linear[g]) {
        const double *x = rows + r * stride;
        for (size_t t = first; t < end; t++) {
          if (!lgb->linear[t]) continue;
          if (bits->term_at != NULL) {
            value[t - first] =
                linear_leaf(bits, t, leaf[t - first], x, missing);
          } else {
            const tdm__node *node =
                &model->nodes[bits->leaf_node[leaf[t - first]]];
            size_t at = r * nf;
            tdm__row row = {original.f64 ? original.f64 + at : NULL,
                            original.f32 ? original.f32 + at : NULL};
            value[t - first] = tdm__leaf_output(model, node, row);
          }
        }
      }
      if (model->num_outputs == 1) {
        double sum = acc[r];
        for (size_t t = first; t < end; t++) sum += value[t - first];
        acc[r] = sum;
      } else {
        for (size_t t = first; t < end; t++)
          acc[model->trees[t].output * n + r] += value[t - first];
      }
    }
  }
}

static int lgb_build(tdm_model *model, tdm__fast *fast) {
  size_t n = model->num_trees;
  if (model->num_features == 0 || model->num_features > LGB_FEATURE_MASK ||
      model->num_nodes >= (size_t)UINT32_MAX)
    return TDM_OK;
  lgb_layout *lgb = tdm__arena_alloc(&model->arena, sizeof *lgb);
  if (lgb == NULL) return TDM_ENOMEM;
  lgb->records = tdm__arena_alloc(
      &model->arena, (model->num_nodes + 1) * sizeof *lgb->records);
  lgb->linear = tdm__arena_alloc(&model->arena, n + 1);
  lgb->words = tdm__arena_alloc(
      &model->arena, (model->num_cat_words + 1) * sizeof *lgb->words);
  if (!lgb->records || !lgb->linear || !lgb->words) return TDM_ENOMEM;
  if (model->num_cat_words > MAX_CATEGORY_BEGIN) return TDM_OK;
  if (model->num_cat_words > 0)
    memcpy(lgb->words, model->cat_words,
           model->num_cat_words * sizeof *lgb->words);
  lgb->words[model->num_cat_words] = 0;
  const uint32_t empty_set = CATEGORY_REF((uint32_t)model->num_cat_words, 0);
  for (size_t i = 0; i < model->num_nodes; i++) {
    const tdm__node *node = &model->nodes[i];
    lgb_record *record = &lgb->records[i];
    if (node->kind == TDM__NODE_LEAF || node->kind == TDM__NODE_LINEAR_LEAF) {
      record->key = LGB_LEAF;
      record->category_ref = empty_set;
      record->child[0] = record->child[1] = (uint32_t)i;
      record->value = node->value;
      continue;
    }
    if (node->kind != TDM__NODE_LGB_NUMERIC &&
        node->kind != TDM__NODE_LGB_CATEGORICAL)
      return TDM_OK; /* not a LightGBM tree: the reference walk */
    record->child[1] = node->left;
    record->child[0] = node->right;
    record->key = (uint32_t)node->feature;
    record->category_ref = empty_set;
    record->threshold = 0.0;
    if (node->kind == TDM__NODE_LGB_CATEGORICAL) {
      /* A bitset too large for a reference: the reference walk. */
      if (node->cat_count > MAX_CATEGORY_WORDS) return TDM_OK;
      record->key |= LGB_CATEGORICAL;
      record->category_ref = CATEGORY_REF(node->cat_begin, node->cat_count);
      continue;
    }
    record->threshold = node->value;
    int nan_left = node->missing_type == TDM__MISSING_NONE
                       ? 0.0 <= node->value
                       : node->default_left != 0;
    if (nan_left) record->key |= LGB_NAN_LEFT;
    if (node->missing_type == TDM__MISSING_ZERO) {
      record->key |= LGB_ZERO_MISSING;
      if (node->default_left) record->key |= LGB_ZERO_LEFT;
    }
  }
  for (size_t t = 0; t < n; t++) {
    const tdm__tree *tree = &model->trees[t];
    lgb->linear[t] = 0;
    for (uint32_t i = 0; i < tree->num_nodes; i++)
      if (model->nodes[tree->root + i].kind == TDM__NODE_LINEAR_LEAF)
        lgb->linear[t] = 1;
  }
  int rc = bits_build(model, &lgb->bits);
  if (rc != TDM_OK) return rc;
  lgb->use_bits = lgb->bits != NULL;
  fast->lgb = lgb;
  fast->bytes = model->num_nodes * sizeof(lgb_record) + n +
                (lgb->bits != NULL ? lgb->bits->bytes : 0);
  fast->kernel_name = lgb->use_bits ? "bitvector" : "scalar";
  model->fast = fast;
  return TDM_OK;
}

/* LGB_ROWS rows down one tree side by side, so that their loads overlap;
 * the leaves' records lead back to themselves, so rows that arrive early
 * wait without a test of their own. */
static void lgb_walk(const lgb_record *records, const uint32_t *words,
                     uint32_t root, const double *block, size_t stride,
                     uint32_t *idx) {
  for (size_t j = 0; j < LGB_ROWS; j++) idx[j] = root;
  uint32_t all_leaves = records[root].key & LGB_LEAF;
  while (!all_leaves) {
    uint32_t key[LGB_ROWS];
    for (size_t j = 0; j < LGB_ROWS; j++) {
      const lgb_record *record = &records[idx[j]];
      idx[j] = lgb_step(record, words,
                        block[j * stride + (record->key & LGB_FEATURE_MASK)]);
    }
    /* Two steps between checks: a row already on its leaf stays there. */
    for (size_t j = 0; j < LGB_ROWS; j++) {
      const lgb_record *record = &records[idx[j]];
      idx[j] = lgb_step(record, words,
                        block[j * stride + (record->key & LGB_FEATURE_MASK)]);
      key[j] = records[idx[j]].key;
    }
    all_leaves = LGB_LEAF;
    for (size_t j = 0; j < LGB_ROWS; j++) all_leaves &= key[j];
  }
}

/* Adds each row's leaf of tree t to acc[0..n): rows (doubles, as LightGBM
 * reads them) `stride` apart; `original` is the caller's block of rows,
 * which linear leaves read. */
static void lgb_tree(const tdm_model *model, const lgb_layout *lgb, size_t t,
                     const double *rows, size_t stride, size_t n,
                     tdm__row original, double *acc) {
  const lgb_record *records = lgb->records;
  const uint32_t *words = lgb->words;
  const tdm__tree *tree = &model->trees[t];
  uint32_t idx[LGB_ROWS];
  for (size_t r = 0; r < n; r += LGB_ROWS) {
    size_t m = n - r < LGB_ROWS ? n - r : LGB_ROWS;
    const double *block = rows + r * stride;
    for (size_t j = 0; j < LGB_ROWS; j++) idx[j] = tree->root;
    if (m == LGB_ROWS) {
      lgb_walk(records, words, tree->root, block, stride, idx);
    } else {
      /* A tail of fewer than eight rows: each row alone. */
      for (size_t j = 0; j < m; j++)
        for (uint32_t level = 0; level < tree->depth; level++) {
          const lgb_record *record = &records[idx[j]];
          idx[j] =
              lgb_step(record, words,
                       block[j * stride + (record->key & LGB_FEATURE_MASK)]);
        }
    }
    for (size_t j = 0; j < m; j++) {
      if (!lgb->linear[t]) {
        acc[r + j] += records[idx[j]].value;
        continue;
      }
      size_t at = (r + j) * model->num_features;
      tdm__row row = {original.f64 ? original.f64 + at : NULL,
                      original.f32 ? original.f32 + at : NULL};
      acc[r + j] += tdm__leaf_output(model, &model->nodes[idx[j]], row);
    }
  }
}

static int lgb_predict(const tdm_model *model, const double *rows64,
                       const float *rows32, size_t num_rows, int flags,
                       double *out) {
  size_t nf = model->num_features, width = tdm_model_output_width(model, flags);
  /* Converted rows are `stride` values apart: the row, then a +0.0 that
   * the padding of linear leaves reads (linear_leaf). */
  size_t stride = nf + 1, block = block_rows(model, 1, LGB_SCRATCH);
  if (block > LGB_SCRATCH / stride) block = LGB_SCRATCH / stride;
  if (block == 0) return 0;
  const lgb_layout *lgb = model->fast->lgb;
  double acc[LGB_SCRATCH];
  double converted[LGB_SCRATCH];
  for (size_t start = 0; start < num_rows; start += block) {
    size_t n = num_rows - start < block ? num_rows - start : block;
    for (size_t r = 0; r < n; r++) {
      for (size_t f = 0; f < nf; f++) {
        size_t i = (start + r) * nf + f;
        double x = rows64 != NULL ? rows64[i] : (double)rows32[i];
        converted[r * stride + f] =
            model->lightgbm_zero ? tdm__lightgbm_value(x) : x;
      }
      converted[r * stride + nf] = 0.0;
    }
    tdm__row original = {rows64 ? rows64 + start * nf : NULL,
                         rows32 ? rows32 + start * nf : NULL};
    for (size_t o = 0; o < model->num_outputs; o++)
      for (size_t r = 0; r < n; r++) acc[o * n + r] = model->base_margin[o];
    if (lgb->use_bits) {
      bits_block(model, lgb, converted, stride, n, original, acc);
    } else {
      for (size_t t = 0; t < model->num_trees; t++)
        lgb_tree(model, lgb, t, converted, stride, n, original,
                 acc + model->trees[t].output * n);
    }
    finish_block(model, NULL, acc, n, flags, out + start * width);
  }
  return 1;
}

int tdm__fast_build(tdm_model *model) {
  model->fast = NULL;
  if (model->format == TDM_FORMAT_LIGHTGBM_TEXT) {
    tdm__fast *fast = tdm__arena_alloc(&model->arena, sizeof *fast);
    if (fast == NULL) return TDM_ENOMEM;
    memset(fast, 0, sizeof *fast);
    return lgb_build(model, fast);
  }
  if (!model->float32 || model->num_features > FEATURE_MASK) return TDM_OK;
  tdm__fast *fast = tdm__arena_alloc(&model->arena, sizeof *fast);
  size_t n = model->num_trees, num_splits = 0, num_leaves = 0;
  if (fast == NULL) return TDM_ENOMEM;
  memset(fast, 0, sizeof *fast);
  fast->depth = tdm__arena_alloc(&model->arena, (n + 1) * sizeof(uint32_t));
  fast->split_base =
      tdm__arena_alloc(&model->arena, (n + 1) * sizeof(uint32_t));
  fast->leaf_base = tdm__arena_alloc(&model->arena, (n + 1) * sizeof(uint32_t));
  fast->run = tdm__arena_alloc(&model->arena, (n + 1) * sizeof(uint32_t));
  fast->categorical = tdm__arena_alloc(&model->arena, n + 1);
  if (!fast->depth || !fast->split_base || !fast->leaf_base || !fast->run ||
      !fast->categorical)
    return TDM_ENOMEM;
  for (size_t t = 0; t < n; t++) {
    const tdm__tree *tree = &model->trees[t];
    fast->split_base[t] = (uint32_t)num_splits;
    fast->leaf_base[t] = (uint32_t)num_leaves;
    if (!fits_layout(model, tree)) {
      fast->depth[t] = GENERIC_TREE;
      continue;
    }
    fast->depth[t] = tree->depth;
    fast->categorical[t] = (uint8_t)has_categorical_split(model, tree);
    num_splits += ((size_t)1 << tree->depth) - 1;
    num_leaves += (size_t)1 << tree->depth;
  }
  /* Kernels address splits and leaves with 32-bit indices. */
  if (num_splits >= ((size_t)1 << 29) || num_leaves >= ((size_t)1 << 30))
    return TDM_OK;
  for (size_t t = n; t-- > 0;)
    fast->run[t] = fast->depth[t] == GENERIC_TREE || fast->categorical[t]
                       ? 0
                       : fast->run[t + 1] + 1;
  fast->splits =
      tdm__arena_alloc(&model->arena, (num_splits + 1) * sizeof(fast_split));
  fast->leaves =
      tdm__arena_alloc(&model->arena, (num_leaves + 1) * sizeof(float));
  if (!fast->splits || !fast->leaves) return TDM_ENOMEM;
  for (size_t t = 0; t < n; t++) {
    if (fast->depth[t] == GENERIC_TREE) continue;
    lay_out(model, model->trees[t].root, 0, 0, fast->depth[t],
            fast->splits + fast->split_base[t],
            fast->leaves + fast->leaf_base[t]);
  }
  fast->bytes = num_splits * sizeof(fast_split) + num_leaves * sizeof(float) +
                3 * n * sizeof(uint32_t);
  choose_kernel(fast, NULL);
  model->fast = fast;
  return TDM_OK;
}

size_t tdm__fast_bytes(const tdm_model *model) {
  return model->fast ? model->fast->bytes : 0;
}

int tdm__fast_use_kernel(tdm_model *model, const char *name) {
  if (strcmp(name, "reference") == 0) {
    /* Every tree through the reference walk (the layout stays allocated
     * in the model's arena, unused). */
    model->fast = NULL;
    return 1;
  }
  if (model->fast == NULL) return 0;
  /* LightGBM's layouts: "bitvector" (the default where every tree fits
   * it) and "scalar", the record walk (an AVX-512 walk of eight double
   * lanes measured slower, its gathers waiting on each other level after
   * level). */
  lgb_layout *lgb = model->fast->lgb;
  if (lgb != NULL) {
    if (strcmp(name, "scalar") == 0)
      lgb->use_bits = 0;
    else if (strcmp(name, "bitvector") == 0 && lgb->bits != NULL)
      lgb->use_bits = 1;
    else
      return 0;
    model->fast->kernel_name = lgb->use_bits ? "bitvector" : "scalar";
    return 1;
  }
  choose_kernel(model->fast, name);
  return strcmp(model->fast->kernel_name, name) == 0;
}

int tdm__fast_tree_laid_out(const tdm_model *model, size_t tree) {
  if (model->fast == NULL) return 0;
  return model->fast->lgb != NULL || model->fast->depth[tree] != GENERIC_TREE;
}

int tdm_model_use_kernel(tdm_model *model, const char *name, tdm_error *err) {
  if (model == NULL || name == NULL ||
      (strcmp(name, "scalar") != 0 && strcmp(name, "avx2") != 0 &&
       strcmp(name, "avx512") != 0 && strcmp(name, "bitvector") != 0 &&
       strcmp(name, "reference") != 0))
    return tdm__fail(err, TDM_EINVAL,
                     "kernel \"%s\": not reference, scalar, avx2, avx512 "
                     "or bitvector",
                     name ? name : "");
  if (!tdm__fast_use_kernel(model, name))
    return tdm__fail(err, TDM_EUNSUPPORTED,
                     "kernel %s: not available here (this CPU or this "
                     "model's layout); %s is used",
                     name, tdm__fast_kernel(model));
  return TDM_OK;
}

const char *tdm__fast_kernel(const tdm_model *model) {
  return model->fast ? model->fast->kernel_name : "reference";
}

/*
 * Margins of n rows (row-major float32, `stride` floats apart) into
 * acc[o * n + r], o the output: base margin, then each tree in order.
 */
/* One row: trees side by side, their leaves added in tree order. */
static void margins_row(const tdm_model *model, const float *row, float *acc,
                        size_t stride_out) {
  const tdm__fast *fast = model->fast;
  float leaves[64];
  size_t t = 0, lanes = fast->lanes;
  while (t < model->num_trees) {
    size_t count = fast->run[t];
    if (count > lanes) count = lanes;
    if (count > model->num_trees - t) count = model->num_trees - t;
    if (count > 0) {
      fast->tree_kernel(fast, row, model->num_features, t, count, leaves);
      if (model->num_outputs == 1) {
        for (size_t j = 0; j < count; j++) acc[0] += leaves[j];
      } else {
        for (size_t j = 0; j < count; j++)
          acc[model->trees[t + j].output * stride_out] += leaves[j];
      }
      t += count;
      continue;
    }
    float leaf;
    if (fast->depth[t] != GENERIC_TREE) {
      /* A categorical tree in the layout: one walk down it. */
      uint32_t i = 0, depth = fast->depth[t];
      const fast_split *splits = fast->splits + fast->split_base[t];
      for (uint32_t level = 0; level < depth; level++)
        i = step_categorical(splits, model->cat_words, i, row);
      leaf = fast->leaves[fast->leaf_base[t] + i - ((1u << depth) - 1)];
    } else {
      tdm__row one = {NULL, row}; /* a tree outside the layout */
      leaf = (float)tdm__tree_leaf_value(model, &model->trees[t], one);
    }
    acc[model->trees[t].output * stride_out] += leaf;
    t++;
  }
}

static void margins_block(const tdm_model *model, const float *rows,
                          size_t stride, size_t n, float *acc) {
  const tdm__fast *fast = model->fast;
  for (size_t o = 0; o < model->num_outputs; o++)
    for (size_t r = 0; r < n; r++)
      acc[o * n + r] = (float)model->base_margin[o];
  if (n < fast->lanes) {
    /* Too few rows to fill the vectors: walk trees side by side instead. */
    for (size_t r = 0; r < n; r++)
      margins_row(model, rows + r * stride, acc + r, n);
    return;
  }
  for (size_t t = 0; t < model->num_trees; t++) {
    float *out = acc + model->trees[t].output * n;
    if (fast->depth[t] != GENERIC_TREE) {
      fast_kernel kernel =
          fast->categorical[t] ? fast->categorical_kernel : fast->kernel;
      kernel(fast->splits + fast->split_base[t],
             fast->leaves + fast->leaf_base[t], model->cat_words,
             fast->depth[t], rows, stride, n, out);
      continue;
    }
    for (size_t r = 0; r < n; r++) {
      tdm__row row = {NULL, rows + r * stride};
      out[r] += (float)tdm__tree_leaf_value(model, &model->trees[t], row);
    }
  }
}

/* Margins to the caller's output: as they are, or through the link. */
/* Margins come as float32 (acc32) or double (acc64) sums, one of them set,
 * stored acc[o * n + r]. */
static void finish_block(const tdm_model *model, const float *acc32,
                         const double *acc64, size_t n, int flags,
                         double *out) {
  size_t k = model->num_outputs, width = tdm_model_output_width(model, flags);
  double margins[TDM__MAX_OUTPUTS];
  for (size_t r = 0; r < n; r++) {
    for (size_t o = 0; o < k; o++)
      margins[o] = acc32 != NULL ? acc32[o * n + r] : acc64[o * n + r];
    if (flags & TDM_PREDICT_MARGIN)
      memcpy(out + r * width, margins, k * sizeof *margins);
    else
      tdm__apply_link(model, margins, out + r * width);
  }
}

/* Rows per block: what fits `scratch` values of scratch, at most
 * MAX_BLOCK_ROWS. */
static size_t block_rows(const tdm_model *model, int converting,
                         size_t scratch) {
  size_t per_row = model->num_outputs;
  size_t rows = scratch / per_row;
  if (converting && scratch / model->num_features < rows)
    rows = scratch / (model->num_features ? model->num_features : 1);
  if (rows > MAX_BLOCK_ROWS) rows = MAX_BLOCK_ROWS;
  /* Kernels index a block's values with 32-bit offsets. */
  size_t nf = model->num_features ? model->num_features : 1;
  if (rows > ((size_t)INT32_MAX - nf) / nf)
    rows = ((size_t)INT32_MAX - nf) / nf;
  return rows;
}

int tdm__fast_predict(const tdm_model *model, const double *rows64,
                      const float *rows32, size_t num_rows, int flags,
                      double *out) {
  size_t nf = model->num_features, width = tdm_model_output_width(model, flags);
  if (model->fast != NULL && model->fast->lgb != NULL)
    return lgb_predict(model, rows64, rows32, num_rows, flags, out);
  size_t block = block_rows(model, rows32 == NULL, SCRATCH_FLOATS);
  if (model->fast == NULL || block == 0) return 0;
  float acc[SCRATCH_FLOATS];
  float converted[SCRATCH_FLOATS];
  for (size_t start = 0; start < num_rows; start += block) {
    size_t n = num_rows - start < block ? num_rows - start : block;
    const float *x;
    if (rows32 != NULL) {
      x = rows32 + start * nf;
    } else {
      /* XGBoost reads every value as float32. */
      const double *src = rows64 + start * nf;
      for (size_t i = 0; i < n * nf; i++) converted[i] = (float)src[i];
      x = converted;
    }
    margins_block(model, x, nf, n, acc);
    finish_block(model, acc, NULL, n, flags, out + start * width);
  }
  return 1;
}
