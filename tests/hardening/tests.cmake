# Hardening tests (issue 7) beyond the cmocka suites (tests/hardening/test_*.c are registered by
# the top-level glob), included from tests/CMakeLists.txt:
#  - hardening/interrupt, hardening/resources: the dl4c command end to end (signals and
#    --resume; divergence, memory estimate and streaming, unwritable outputs, full disk);
#  - hardening/asan_ubsan: the whole C suite (label "c") rebuilt with AddressSanitizer +
#    UndefinedBehaviorSanitizer in BUILD/sanitized, so `make test` runs it;
#  - hardening/fuzz_smoke: each libFuzzer target for 10 s (DL4C_FUZZ_SMOKE_SECONDS) in
#    BUILD/fuzz-smoke (clang), from the committed seed corpora and regression inputs.
# The last two build in their own directories and are not registered inside sanitized or fuzz
# builds (no recursion).
if(TARGET dl4c_cli)
  foreach(name interrupt resources)
    add_test(NAME hardening/${name}
             COMMAND bash ${CMAKE_SOURCE_DIR}/tests/hardening/test_${name}.sh $<TARGET_FILE:dl4c_cli> ${CMAKE_BINARY_DIR})
    set_tests_properties(hardening/${name} PROPERTIES
                         ENVIRONMENT "OPENBLAS_NUM_THREADS=1;OMP_NUM_THREADS=1;PYTHONDONTWRITEBYTECODE=1"
                         TIMEOUT 600 LABELS "cli;hardening")
  endforeach()
endif()
if(NOT DL4C_SANITIZE AND NOT DL4C_FUZZ)
  add_test(NAME hardening/asan_ubsan
           COMMAND bash ${CMAKE_SOURCE_DIR}/tests/hardening/sanitize.sh asan+ubsan ${CMAKE_BINARY_DIR}/sanitized)
  set_tests_properties(hardening/asan_ubsan PROPERTIES TIMEOUT 1500 LABELS "sanitize;hardening")
  find_program(DL4C_CLANG clang)
  if(DL4C_CLANG)
    set(DL4C_FUZZ_SMOKE_SECONDS 10 CACHE STRING "Seconds per fuzz target in the hardening/fuzz_smoke test")
    add_test(NAME hardening/fuzz_smoke
             COMMAND bash ${CMAKE_SOURCE_DIR}/fuzz/run.sh ${CMAKE_BINARY_DIR}/fuzz-smoke ${DL4C_FUZZ_SMOKE_SECONDS})
    set_tests_properties(hardening/fuzz_smoke PROPERTIES TIMEOUT 1200 LABELS "fuzz;hardening"
                         ENVIRONMENT "FUZZ_SEED=1")
  endif()
endif()
