# SEA attention in the CPU engine: the GGUF -> SeaParams mapping (model/opt_sea.h) against the checkpoint
# it was converted from (read with weights-convert's safetensors reader, hence seaopt_convert), and the
# engine through the C API on the SEA demo model (tiny_sea_model): prefill == decode, layer lists, sea_k,
# several sequences, kv_clear / kv_truncate, decode_nll, and the context errors.
if(SEAOPT_BUILD_TOOLS)
  seaopt_add_test(NAME test_sea_engine SOURCES test_sea_engine.cpp LIBS seaopt_convert LABELS cpu TIMEOUT 300)
  add_dependencies(test_sea_engine tiny_model tiny_sea_model seaopt-convert seaopt-make-tiny-checkpoint)
endif()
