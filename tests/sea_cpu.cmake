# The fp32 CPU reference of SEA attention (attention/sea_cpu.{h,cpp}): decode == prefill, causality, the
# budget and the expansion of sea.md §2.7-§2.8, the full-budget limit against dense attention, bad arguments,
# and agreement with the PyTorch reference on the fixtures in tests/data/sea (read with weights-convert's
# safetensors reader, hence seaopt_convert).
seaopt_add_test(NAME test_sea_cpu SOURCES test_sea_cpu.cpp LIBS seaopt_convert LABELS cpu TIMEOUT 300)
