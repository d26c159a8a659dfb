# SEA's attention maps (seaopt_attention_maps, issue 4 item 8) through the C API on the SEA demo model, and
# seaopt-attnviz run as a child process: the PNG's signature and size, and a clean failure on a bad layer
# (those tool tests skip where libpng was missing and seaopt-attnviz was not built).
if(SEAOPT_BUILD_TOOLS)
  seaopt_add_test(NAME test_attnviz SOURCES test_attnviz.cpp LABELS cpu TIMEOUT 300)
  add_dependencies(test_attnviz tiny_model tiny_sea_model)
  if(TARGET seaopt-attnviz)
    add_dependencies(test_attnviz seaopt-attnviz)
    target_compile_definitions(test_attnviz PRIVATE SEAOPT_HAVE_ATTNVIZ=1)
  endif()
endif()
