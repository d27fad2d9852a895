# grove_add_layer(<name> SOURCES ... DEPENDS ...)
# One layer = one static library grove_<name>, alias grove::<name>, public
# headers under <name>/include/grove/<name>/, exported for find_package(grove).
function(grove_add_layer name)
  cmake_parse_arguments(L "" "" "SOURCES;DEPENDS;PRIVATE_DEPENDS" ${ARGN})
  add_library(grove_${name} STATIC ${L_SOURCES})
  add_library(grove::${name} ALIAS grove_${name})
  set_target_properties(grove_${name} PROPERTIES EXPORT_NAME ${name} OUTPUT_NAME grove_${name})
  target_include_directories(grove_${name} PUBLIC
    $<BUILD_INTERFACE:${CMAKE_CURRENT_SOURCE_DIR}/include>
    $<INSTALL_INTERFACE:${CMAKE_INSTALL_INCLUDEDIR}>)
  target_link_libraries(grove_${name} PUBLIC ${L_DEPENDS} PRIVATE $<BUILD_INTERFACE:grove_warnings> ${L_PRIVATE_DEPENDS})
  target_compile_features(grove_${name} PUBLIC cxx_std_20)
  install(TARGETS grove_${name} EXPORT groveTargets
          ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR}
          LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR})
  install(DIRECTORY include/ DESTINATION ${CMAKE_INSTALL_INCLUDEDIR})
endfunction()
