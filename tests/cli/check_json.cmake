# cmake -DGROVE=<grove> -DOUT=<file> -P check_json.cmake
# Runs a short benchmark with --json and checks the file is Google Benchmark
# JSON naming <workload>/<implementation> with an items_per_second figure.
file(REMOVE "${OUT}")
execute_process(COMMAND "${GROVE}" bench memory --filter "W1_pair64/malloc" --repetitions 1 --min-time 0.01
                        --json "${OUT}"
  RESULT_VARIABLE status OUTPUT_VARIABLE out ERROR_VARIABLE err)
if(NOT status EQUAL 0)
  message(FATAL_ERROR "grove exited ${status}\n${out}${err}")
endif()
file(READ "${OUT}" json)
string(JSON count LENGTH "${json}" benchmarks)
if(count LESS 1)
  message(FATAL_ERROR "no benchmarks in ${OUT}")
endif()
string(JSON name GET "${json}" benchmarks 0 name)
string(JSON ips GET "${json}" benchmarks 0 items_per_second)
if(NOT name STREQUAL "W1_pair64/malloc")
  message(FATAL_ERROR "unexpected benchmark name '${name}' in ${OUT}")
endif()
if(NOT ips GREATER 0)
  message(FATAL_ERROR "items_per_second is '${ips}' in ${OUT}")
endif()
message(STATUS "${OUT}: ${name}, items_per_second ${ips}")
