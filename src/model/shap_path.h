/*
 * shap_path.h - the path-dependent TreeSHAP recursion (Lundberg et al.,
 * "Consistent Individualized Feature Attribution for Tree Ensembles",
 * algorithm 2), written once for the two precisions the libraries use:
 * shap.c includes it with SHAP_REAL float (XGBoost computes in float32)
 * and with SHAP_REAL double (LightGBM). Every expression keeps the
 * operand order and the conversions of the libraries' code, because a
 * different order rounds differently and the contributions must be the
 * same bits. Not a header to include anywhere else.
 */
#ifndef SHAP_REAL
#error "shap_path.h is included by shap.c with SHAP_REAL defined"
#endif

#define SHAP_CAT2(a, b) a##_##b
#define SHAP_CAT(a, b) SHAP_CAT2(a, b)
#define SHAP_FN(name) SHAP_CAT(name, SHAP_REAL)

/* One feature on the path from the root: the fraction of the training
 * data (zero) and of this row (one, 0 or 1) that takes the path, and the
 * permutation weight of subsets of that size. */
typedef struct SHAP_FN(path_element) {
  int feature;
  SHAP_REAL zero_fraction;
  SHAP_REAL one_fraction;
  SHAP_REAL pweight;
} SHAP_FN(path_element);

/* Adds a feature to the path at position depth, updating the weights. */
static void SHAP_FN(extend_path)(SHAP_FN(path_element) * path, unsigned depth,
                                 SHAP_REAL zero_fraction,
                                 SHAP_REAL one_fraction, int feature) {
  path[depth].feature = feature;
  path[depth].zero_fraction = zero_fraction;
  path[depth].one_fraction = one_fraction;
  path[depth].pweight = (SHAP_REAL)(depth == 0 ? 1 : 0);
  for (int i = (int)depth - 1; i >= 0; i--) {
    path[i + 1].pweight += one_fraction * path[i].pweight * (SHAP_REAL)(i + 1) /
                           (SHAP_REAL)(depth + 1);
    path[i].pweight = zero_fraction * path[i].pweight *
                      (SHAP_REAL)(depth - (unsigned)i) / (SHAP_REAL)(depth + 1);
  }
}

/* Removes the feature at path_index, undoing its extension. */
static void SHAP_FN(unwind_path)(SHAP_FN(path_element) * path, unsigned depth,
                                 unsigned path_index) {
  const SHAP_REAL one_fraction = path[path_index].one_fraction;
  const SHAP_REAL zero_fraction = path[path_index].zero_fraction;
  SHAP_REAL next_one_portion = path[depth].pweight;
  for (int i = (int)depth - 1; i >= 0; i--) {
    if (one_fraction != 0) {
      const SHAP_REAL kept = path[i].pweight;
      path[i].pweight = next_one_portion * (SHAP_REAL)(depth + 1) /
                        ((SHAP_REAL)(i + 1) * one_fraction);
      next_one_portion = kept - path[i].pweight * zero_fraction *
                                    (SHAP_REAL)(depth - (unsigned)i) /
                                    (SHAP_REAL)(depth + 1);
    } else {
      path[i].pweight = (path[i].pweight * (SHAP_REAL)(depth + 1)) /
                        (zero_fraction * (SHAP_REAL)(depth - (unsigned)i));
    }
  }
  for (unsigned i = path_index; i < depth; i++) {
    path[i].feature = path[i + 1].feature;
    path[i].zero_fraction = path[i + 1].zero_fraction;
    path[i].one_fraction = path[i + 1].one_fraction;
  }
}

/* The total permutation weight the path would have without the feature
 * at path_index (without changing the path). */
static SHAP_REAL SHAP_FN(unwound_path_sum)(const SHAP_FN(path_element) * path,
                                           unsigned depth,
                                           unsigned path_index) {
  const SHAP_REAL one_fraction = path[path_index].one_fraction;
  const SHAP_REAL zero_fraction = path[path_index].zero_fraction;
  SHAP_REAL next_one_portion = path[depth].pweight;
  SHAP_REAL total = 0;
  for (int i = (int)depth - 1; i >= 0; i--) {
    if (one_fraction != 0) {
      const SHAP_REAL share = next_one_portion * (SHAP_REAL)(depth + 1) /
                              ((SHAP_REAL)(i + 1) * one_fraction);
      total += share;
      next_one_portion =
          path[i].pweight -
          share * zero_fraction *
              ((SHAP_REAL)(depth - (unsigned)i) / (SHAP_REAL)(depth + 1));
    } else if (zero_fraction != 0) {
      total += (path[i].pweight / zero_fraction) /
               ((SHAP_REAL)(depth - (unsigned)i) / (SHAP_REAL)(depth + 1));
    }
    /* Both zero: the permutation weight is zero (XGBoost checks it). */
  }
  return total;
}

/* The reference leaf step: values[i - 1] is the share of the leaf's value
 * that the feature at path[i] gets, for i in 1..depth. */
static void SHAP_FN(leaf_values_scalar)(const SHAP_FN(path_element) * path,
                                        unsigned depth, SHAP_REAL leaf,
                                        SHAP_REAL *values) {
  for (unsigned i = 1; i <= depth; i++) {
    const SHAP_REAL w = SHAP_FN(unwound_path_sum)(path, depth, i);
    const SHAP_FN(path_element) *el = &path[i];
    values[i - 1] = w * (el->one_fraction - el->zero_fraction) * leaf;
  }
}

/* The leaf step the recursion takes: shap.c defines it per precision (the
 * scalar one above, or lanes that compute several unwound sums at once
 * with the same operations in the same order). */
static void SHAP_FN(leaf_values)(const SHAP_FN(path_element) * path,
                                 unsigned depth, SHAP_REAL leaf,
                                 SHAP_REAL *values);

/* Adds a leaf's shares to phi. The features on a path are distinct, so
 * the order of the updates does not matter; each product is rounded
 * before the sum, as in the libraries' `phi[f] += w * (one - zero) * v`. */
static void SHAP_FN(leaf_contributions)(const SHAP_FN(path_element) * path,
                                        unsigned depth, SHAP_REAL leaf,
                                        SHAP_REAL *phi, shap_touched *touched) {
  SHAP_REAL *values = (SHAP_REAL *)touched->values;
  SHAP_FN(leaf_values)(path, depth, leaf, values);
  for (unsigned i = 1; i <= depth; i++) {
    touch(touched, path[i].feature);
    phi[path[i].feature] += values[i - 1];
  }
}

/* The recursion's first step at a node: the parent's path copied into
 * the next slot of the triangle and extended with the parent's split. */
static SHAP_FN(path_element) *
    SHAP_FN(enter_node)(SHAP_FN(path_element) * parent, unsigned depth,
                        SHAP_REAL parent_zero_fraction,
                        SHAP_REAL parent_one_fraction, int parent_feature) {
  SHAP_FN(path_element) *path = parent + depth + 1;
  memcpy(path, parent, (depth + 1) * sizeof *path);
  SHAP_FN(extend_path)
  (path, depth, parent_zero_fraction, parent_one_fraction, parent_feature);
  return path;
}

/* At an inner node splitting on `feature`: a feature already on the path
 * is unwound and split again here, its fractions carried on in *zero and
 * *one (1 and 1 otherwise). Returns the path's depth after that. */
static unsigned SHAP_FN(unwind_repeat)(SHAP_FN(path_element) * path,
                                       unsigned depth, int feature,
                                       SHAP_REAL *zero, SHAP_REAL *one) {
  *zero = 1;
  *one = 1;
  unsigned path_index = 0;
  for (; path_index <= depth; path_index++)
    if (path[path_index].feature == feature) break;
  if (path_index == depth + 1) return depth;
  *zero = path[path_index].zero_fraction;
  *one = path[path_index].one_fraction;
  SHAP_FN(unwind_path)(path, depth, path_index);
  return depth - 1;
}

/*
 * The recursion from `node` with the path so far in parent[0..depth-1]
 * (the root call passes depth 0 and a dummy feature -1). Each call copies
 * its parent's path into the next slot, so the storage is a triangle of
 * (max depth + 2)(max depth + 3)/2 elements. Contributions go to phi; a
 * feature's first contribution is recorded in `touched`.
 */
static void SHAP_FN(tree_shap)(const tdm_model *model, tdm__row row,
                               SHAP_REAL *phi, shap_touched *touched,
                               uint32_t index, unsigned depth,
                               SHAP_FN(path_element) * parent,
                               SHAP_REAL parent_zero_fraction,
                               SHAP_REAL parent_one_fraction,
                               int parent_feature) {
  const tdm__node *node = &model->nodes[index];
  SHAP_FN(path_element) *path = SHAP_FN(enter_node)(
      parent, depth, parent_zero_fraction, parent_one_fraction, parent_feature);
  if (node->feature < 0) {
    SHAP_FN(leaf_contributions)
    (path, depth, (SHAP_REAL)node->unweighted, phi, touched);
    return;
  }
  uint32_t hot = tdm__next_node(model, index, row);
  uint32_t cold = hot == node->left ? node->right : node->left;
  const SHAP_REAL w = (SHAP_REAL)node->cover;
  const SHAP_REAL hot_zero_fraction = (SHAP_REAL)model->nodes[hot].cover / w;
  const SHAP_REAL cold_zero_fraction = (SHAP_REAL)model->nodes[cold].cover / w;
  SHAP_REAL incoming_zero_fraction, incoming_one_fraction;
  depth =
      SHAP_FN(unwind_repeat)(path, depth, node->feature,
                             &incoming_zero_fraction, &incoming_one_fraction);
  SHAP_FN(tree_shap)
  (model, row, phi, touched, hot, depth + 1, path,
   hot_zero_fraction * incoming_zero_fraction, incoming_one_fraction,
   node->feature);
  SHAP_FN(tree_shap)
  (model, row, phi, touched, cold, depth + 1, path,
   cold_zero_fraction * incoming_zero_fraction, 0, node->feature);
}

/*
 * The leaf table of one tree (shap.c's shap_table): the recursion above,
 * run for every way a row can take the tree instead of one row's. A leaf
 * at split level L is reached through L splits; at each the row either
 * goes the leaf's way (the recursion's hot child: one fraction kept) or
 * not (the cold child: one fraction 0). The path's zero fractions depend
 * only on the covers, so a leaf's shares are a function of those L bits,
 * `pattern` (bit k: the split at level k sent the row the leaf's way).
 * This fills values[pattern * depth + i - 1] at every leaf with the very
 * operations the recursion performs for a row with that pattern, so a
 * lookup gives the recursion's bits.
 */
static void SHAP_FN(table_fill)(const tdm_model *model, shap_table *table,
                                uint32_t index, unsigned depth,
                                SHAP_FN(path_element) * parent,
                                SHAP_REAL parent_zero_fraction,
                                SHAP_REAL parent_one_fraction,
                                int parent_feature, uint32_t pattern,
                                unsigned level) {
  const tdm__node *node = &model->nodes[index];
  SHAP_FN(path_element) *path = SHAP_FN(enter_node)(
      parent, depth, parent_zero_fraction, parent_one_fraction, parent_feature);
  if (node->feature < 0) {
    const shap_table_leaf *leaf = &table->leaves[index];
    SHAP_REAL *values = (SHAP_REAL *)table->values + leaf->value_begin +
                        (size_t)pattern * leaf->stride;
    /* The same features at every pattern: the unwinding depends only on
     * which features the splits test. */
    int32_t *features = table->features + leaf->feature_begin;
    for (unsigned i = 1; i <= depth; i++) features[i - 1] = path[i].feature;
    if (table->lane_of == NULL) {
      SHAP_FN(leaf_values)(path, depth, (SHAP_REAL)node->unweighted, values);
      return;
    }
    /* Dense: each share in its feature's lane, the others left 0. */
    SHAP_REAL *shares = (SHAP_REAL *)table->shares;
    SHAP_FN(leaf_values)(path, depth, (SHAP_REAL)node->unweighted, shares);
    for (unsigned i = 0; i < depth; i++)
      values[table->lane_of[features[i]]] = shares[i];
    return;
  }
  const SHAP_REAL w = (SHAP_REAL)node->cover;
  SHAP_REAL incoming_zero_fraction, incoming_one_fraction;
  depth =
      SHAP_FN(unwind_repeat)(path, depth, node->feature,
                             &incoming_zero_fraction, &incoming_one_fraction);
  const uint32_t children[2] = {node->left, node->right};
  for (unsigned c = 0; c < 2; c++) {
    const SHAP_REAL zero_fraction =
        (SHAP_REAL)model->nodes[children[c]].cover / w;
    /* The child as the row's hot one, then as its cold one. */
    SHAP_FN(table_fill)
    (model, table, children[c], depth + 1, path,
     zero_fraction * incoming_zero_fraction, incoming_one_fraction,
     node->feature, pattern | (1u << level), level + 1);
    SHAP_FN(table_fill)
    (model, table, children[c], depth + 1, path,
     zero_fraction * incoming_zero_fraction, 0, node->feature, pattern,
     level + 1);
  }
}

/*
 * One row through a tabled tree: the recursion's order (the row's child
 * first, then the other, depth first), each leaf adding the table's
 * shares for the pattern the row gives it. No feature is recorded as
 * touched: every leaf is visited, so the features touched are all those
 * the tree splits on (shap_table's tree_features). Iterative, with the
 * other children on a stack: a tabled tree has at most TABLE_MAX_LEVEL
 * levels.
 *
 * A sparse tree (groups 0) adds each share to phi. A dense tree (float32
 * only: shap.c's table_walk_dense) adds the leaf's whole entry to
 * `groups` groups of four lanes, `sums`, which the caller keeps in
 * registers by passing a constant `groups`.
 */
static inline __attribute__((always_inline)) void SHAP_FN(table_walk_lanes)(
    const tdm_model *model, const shap_table *table, tdm__row row,
    SHAP_REAL *phi, uint32_t root, unsigned groups, lanes_float *sums) {
  struct {
    uint32_t index, pattern, level;
  } stack[TABLE_MAX_LEVEL + 1];
  unsigned top = 0;
  uint32_t index = root, pattern = 0, level = 0;
  for (;;) {
    const tdm__node *node = &model->nodes[index];
    while (node->feature >= 0) {
      uint32_t hot = tdm__next_node_inline(model, node, index, row);
      stack[top].index = hot == node->left ? node->right : node->left;
      stack[top].pattern = pattern;
      stack[top].level = level + 1;
      top++;
      index = hot;
      pattern |= 1u << level;
      level++;
      node = &model->nodes[index];
    }
    const shap_table_leaf *leaf = &table->leaves[index];
    const size_t at = leaf->value_begin + (size_t)pattern * leaf->stride;
    if (groups == 0) {
      const SHAP_REAL *values = (const SHAP_REAL *)table->values + at;
      const int32_t *features = table->features + leaf->feature_begin;
      for (unsigned i = 0; i < leaf->feature_count; i++)
        phi[features[i]] += values[i];
    } else {
      const float *values = (const float *)table->values + at;
      for (unsigned g = 0; g < groups; g++) {
        lanes_float entry;
        memcpy(&entry, values + 4 * g, sizeof entry);
        sums[g] += entry;
      }
    }
    if (top == 0) return;
    top--;
    index = stack[top].index;
    pattern = stack[top].pattern;
    level = stack[top].level;
  }
}

static void SHAP_FN(table_walk)(const tdm_model *model, const shap_table *table,
                                tdm__row row, SHAP_REAL *phi, uint32_t root) {
  SHAP_FN(table_walk_lanes)(model, table, row, phi, root, 0, NULL);
}

#undef SHAP_FN
#undef SHAP_CAT
#undef SHAP_CAT2
