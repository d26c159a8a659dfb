# The CPU engine and the C API against transformers fixtures, and bad input through the API.
# Both convert fixtures with the built seaopt-convert binary.
seaopt_add_test(NAME test_model_cpu SOURCES test_model_cpu.cpp LABELS cpu)
add_dependencies(test_model_cpu seaopt-convert)
seaopt_add_test(NAME test_api_errors SOURCES test_api_errors.cpp LABELS cpu LIBS OpenMP::OpenMP_CXX)
add_dependencies(test_api_errors seaopt-convert)

# The public header compiles as C, and a C program links and calls the library.
add_executable(test_api_c test_api_c.c)
target_link_libraries(test_api_c PRIVATE seaopt)
set_target_properties(test_api_c PROPERTIES LINKER_LANGUAGE CXX C_STANDARD 99 C_STANDARD_REQUIRED ON)
target_compile_options(test_api_c PRIVATE -Wall -Wextra -Werror -pedantic)
add_test(NAME c_api_compiles_and_runs COMMAND test_api_c)
set_tests_properties(c_api_compiles_and_runs PROPERTIES LABELS cpu)
