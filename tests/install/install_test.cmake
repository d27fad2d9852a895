# cmake -P script: install, configure the example against the prefix, build, run.
file(REMOVE_RECURSE "${WORK_DIR}")
set(prefix "${WORK_DIR}/prefix")

execute_process(COMMAND ${CMAKE_COMMAND} --install "${GROVE_BUILD_DIR}" --prefix "${prefix}"
                RESULT_VARIABLE rc OUTPUT_QUIET)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "cmake --install failed (${rc})")
endif()

execute_process(COMMAND ${CMAKE_COMMAND} -S "${EXAMPLE_SOURCE_DIR}" -B "${WORK_DIR}/build"
                        -DCMAKE_PREFIX_PATH=${prefix} -DCMAKE_CXX_COMPILER=${CXX_COMPILER}
                        -DCMAKE_BUILD_TYPE=${BUILD_TYPE}
                RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "configuring the example against the installed package failed:\n${out}\n${err}")
endif()

execute_process(COMMAND ${CMAKE_COMMAND} --build "${WORK_DIR}/build" RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "building the example failed:\n${out}\n${err}")
endif()

if(NOT EXAMPLE_NAME)
  set(EXAMPLE_NAME row_operator)
endif()
if(NOT EXAMPLE_ARGS)
  set(EXAMPLE_ARGS --generate 1000000)
endif()
string(REPLACE "," ";" EXAMPLE_ARGS "${EXAMPLE_ARGS}")
execute_process(COMMAND "${WORK_DIR}/build/${EXAMPLE_NAME}" ${EXAMPLE_ARGS}
                RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
message("${out}${err}")
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "the example exited with ${rc}")
endif()
