# The installed package as an application uses it: cmake --install, then find_package(seaopt) and pkg-config
# (tests/consumer/). Needs the tools (the demo model).
if(SEAOPT_BUILD_TOOLS AND NOT SEAOPT_SANITIZE)
  add_test(NAME install.FindPackageAndPkgConfig
           COMMAND ${CMAKE_COMMAND} -DBUILD_DIR=${CMAKE_BINARY_DIR} -DSOURCE_DIR=${CMAKE_SOURCE_DIR}
                   -DMODEL=${CMAKE_BINARY_DIR}/models/opt-tiny-untrained.gguf -DC_COMPILER=${CMAKE_C_COMPILER}
                   -DLIBDIR=${CMAKE_INSTALL_LIBDIR}
                   -P ${CMAKE_CURRENT_SOURCE_DIR}/consumer/run.cmake)
  set_tests_properties(install.FindPackageAndPkgConfig PROPERTIES LABELS cpu TIMEOUT 600)
endif()
