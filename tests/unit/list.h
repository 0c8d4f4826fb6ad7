/* list.h - every unit test, once. X(name) runs test_<name>. */
#define TEST_LIST(X)                         \
  X(sha256_known_vectors)                    \
  X(sha256_incremental)                      \
  X(json_values)                             \
  X(json_nan_literal)                        \
  X(json_syntax_errors)                      \
  X(json_pointer)                            \
  X(json_number_conversions)                 \
  X(json_out_of_memory)                      \
  X(csv_plain)                               \
  X(csv_quotes_crlf_bom)                     \
  X(csv_errors)                              \
  X(csv_long_records)                        \
  X(csv_cell_numbers)                        \
  X(csv_append_field)                        \
  X(atomic_file_commit_and_abort)            \
  X(model_numeric_and_missing)               \
  X(model_categorical_rules)                 \
  X(model_objective_transforms)              \
  X(model_dart_weights)                      \
  X(model_without_trees)                     \
  X(model_base_score_forms)                  \
  X(model_errors_name_json_pointer)          \
  X(model_out_of_memory)                     \
  X(model_format_value_round_trips)          \
  X(lightgbm_rules)                          \
  X(lightgbm_errors_name_line)               \
  X(model_loaders_out_of_memory)             \
  X(lightgbm_hostile_counts_fail_fast)       \
  X(csv_read_error_is_sticky)                \
  X(score_out_of_memory)                     \
  X(fast_matches_reference_on_random_models) \
  X(fast_matches_reference_on_fixtures)      \
  X(number_hard_cases)                       \
  X(number_random_against_strtod)
