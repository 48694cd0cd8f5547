# KilnPlugin.cmake — kiln_add_plugin(): builds a kiln plugin the one supported way.
# Installed with the SDK (find_package(Kiln)) and used in-tree, so first-party plugins are built
# exactly as a third party's would be.
#
#   kiln_add_plugin(<target> SOURCES a.cpp b.cpp [OUTPUT_DIRECTORY dir])
#
# Produces <target>.so: a MODULE library with hidden symbols (only the build stamp and the
# kiln_plugin_v1 entry point are exported by KILN_PLUGIN), C++20, linked to kiln::sdk.
function(kiln_add_plugin target)
  cmake_parse_arguments(ARG "" "OUTPUT_DIRECTORY" "SOURCES" ${ARGN})
  if(NOT ARG_SOURCES)
    message(FATAL_ERROR "kiln_add_plugin(${target}): no SOURCES given")
  endif()
  # Installed SDK only (in-tree plugins share kiln's compiler): the build stamp holds the
  # compiler and its major version, and kiln refuses a plugin whose stamp differs — say so now.
  if(DEFINED KILN_CXX_COMPILER_ID)
    string(REGEX MATCH "^[0-9]+" _kiln_major "${CMAKE_CXX_COMPILER_VERSION}")
    if(NOT CMAKE_CXX_COMPILER_ID STREQUAL KILN_CXX_COMPILER_ID
       OR NOT _kiln_major STREQUAL KILN_CXX_COMPILER_MAJOR)
      message(FATAL_ERROR
        "kiln_add_plugin(${target}): this project compiles with ${CMAKE_CXX_COMPILER_ID} "
        "${CMAKE_CXX_COMPILER_VERSION} (${CMAKE_CXX_COMPILER}), but kiln was built with "
        "${KILN_CXX_COMPILER_ID} ${KILN_CXX_COMPILER_MAJOR}, and kiln refuses to load a plugin "
        "built by another compiler. Configure a fresh build directory with that compiler, e.g. "
        "-DCMAKE_CXX_COMPILER=g++-${KILN_CXX_COMPILER_MAJOR}")
    endif()
  endif()
  add_library(${target} MODULE ${ARG_SOURCES})
  target_link_libraries(${target} PRIVATE kiln::sdk)
  target_compile_features(${target} PRIVATE cxx_std_20)
  set_target_properties(${target} PROPERTIES
    PREFIX ""
    CXX_VISIBILITY_PRESET hidden
    VISIBILITY_INLINES_HIDDEN ON
    POSITION_INDEPENDENT_CODE ON)
  # Unresolved symbols are a build error, not a load-time surprise. The version script exports
  # exactly the two entry points, even where a library header marks its classes visible; with
  # --no-undefined-version a plugin that defines neither (KILN_PLUGIN(fn) forgotten) fails to link
  # ("kiln_plugin_v1: undefined version") instead of building a library kiln refuses to load.
  set(_script "${CMAKE_CURRENT_BINARY_DIR}/${target}.exports.map")
  file(WRITE "${_script}" "{\n  global: kiln_build_stamp_v1; kiln_plugin_v1;\n  local: *;\n};\n")
  target_link_options(${target} PRIVATE "LINKER:--no-undefined" "LINKER:--no-undefined-version"
                      "LINKER:--version-script=${_script}")
  set_property(TARGET ${target} APPEND PROPERTY LINK_DEPENDS "${_script}")
  if(ARG_OUTPUT_DIRECTORY)
    set_target_properties(${target} PROPERTIES LIBRARY_OUTPUT_DIRECTORY "${ARG_OUTPUT_DIRECTORY}")
  endif()
endfunction()
