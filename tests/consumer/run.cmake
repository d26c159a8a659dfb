# ctest install.FindPackageAndPkgConfig (tests/install.cmake): `cmake --install` the build into a scratch prefix, then
# build tests/consumer (consumer.c, the C API only) against it twice — through find_package(seaopt) and through
# pkg-config's seaopt.pc — and run both on the demo model. Variables: BUILD_DIR, SOURCE_DIR, MODEL, C_COMPILER,
# LIBDIR (CMAKE_INSTALL_LIBDIR).
set(prefix ${BUILD_DIR}/test-install)
set(work ${BUILD_DIR}/test-consumer)
file(REMOVE_RECURSE ${prefix} ${work})

function(run_step what)
  execute_process(COMMAND ${ARGN} RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "${what} failed (${rc}):\n${out}\n${err}")
  endif()
  set(step_out "${out}" PARENT_SCOPE)
endfunction()

run_step("cmake --install" ${CMAKE_COMMAND} --install ${BUILD_DIR} --prefix ${prefix})
foreach(f include/seaopt.h ${LIBDIR}/libseaopt.a ${LIBDIR}/cmake/seaopt/seaoptConfig.cmake ${LIBDIR}/pkgconfig/seaopt.pc
          bin/seaopt-generate)
  if(NOT EXISTS ${prefix}/${f})
    message(FATAL_ERROR "cmake --install did not install ${f}")
  endif()
endforeach()

# find_package(seaopt)
run_step("configuring the consumer" ${CMAKE_COMMAND} -S ${SOURCE_DIR}/tests/consumer -B ${work}/cmake
         -DCMAKE_BUILD_TYPE=Release -DCMAKE_C_COMPILER=${C_COMPILER} "-DCMAKE_PREFIX_PATH=${prefix}")
run_step("building the consumer" ${CMAKE_COMMAND} --build ${work}/cmake)
run_step("running the consumer" ${work}/cmake/consumer ${MODEL})
if(NOT step_out MATCHES "prompt tokens; greedy: [0-9]+ [0-9]+ [0-9]+ [0-9]+")
  message(FATAL_ERROR "unexpected consumer output: ${step_out}")
endif()
message(STATUS "find_package(seaopt): ${step_out}")

# pkg-config (static library: seaopt.pc's Libs carry its dependencies)
find_program(PKG_CONFIG pkg-config)
if(PKG_CONFIG)
  # In front of the caller's search path, which may name where libpcre2-8.pc (seaopt.pc's Requires) is.
  if(DEFINED ENV{PKG_CONFIG_PATH} AND NOT "$ENV{PKG_CONFIG_PATH}" STREQUAL "")
    set(ENV{PKG_CONFIG_PATH} "${prefix}/${LIBDIR}/pkgconfig:$ENV{PKG_CONFIG_PATH}")
  else()
    set(ENV{PKG_CONFIG_PATH} ${prefix}/${LIBDIR}/pkgconfig)
  endif()
  run_step("pkg-config" ${PKG_CONFIG} --cflags --libs seaopt)
  string(STRIP "${step_out}" flags)
  separate_arguments(flags UNIX_COMMAND "${flags}")
  run_step("compiling with pkg-config's flags" ${C_COMPILER} -std=c99 ${SOURCE_DIR}/tests/consumer/consumer.c ${flags}
           -o ${work}/consumer_pc)
  run_step("running the pkg-config consumer" ${work}/consumer_pc ${MODEL})
  message(STATUS "pkg-config seaopt: ${step_out}")
else()
  message(STATUS "pkg-config not found: the seaopt.pc check is skipped")
endif()
