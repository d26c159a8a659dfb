# seaopt-convert --sea: the SEA estimator from checkpoints of the authors' trainer (sea.md §5).
#
#   test_convert_sea    every checkpoint layout (safetensors, torch state_dict, trainer checkpoint.pth,
#                       DeepSpeed mp_rank_00_model_states.pt; fp16/bf16/fp32) -> GGUF, checked value
#                       by value; bad SEA checkpoints -> clear errors; the loader's SEA checks   [cpu]
seaopt_add_test(NAME test_convert_sea PREFIX "convert." SOURCES test_convert_sea.cpp
                LIBS seaopt_convert LABELS cpu TIMEOUT 300)
add_dependencies(test_convert_sea seaopt-convert seaopt-make-tiny-checkpoint)
