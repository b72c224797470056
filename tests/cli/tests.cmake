# End-to-end tests of the dl4c command (tests/cli/test_*.sh), included from tests/CMakeLists.txt.
# Each script gets the dl4c binary and the build directory, works in its own mktemp -d
# directory (removed on exit) and makes small Fashion-MNIST slices there.
# Exit code 77 means skipped (no mpirun, or no torch under /usr/bin/python3).
if(TARGET dl4c_cli)
  set(DL4C_CLI_TEST_ENV "OPENBLAS_NUM_THREADS=1;OMP_NUM_THREADS=1;PYTHONDONTWRITEBYTECODE=1")
  foreach(name bad_input train_eval torch_logits mpi)
    if(name STREQUAL "mpi" AND NOT DL4C_MPI)
      continue()
    endif()
    add_test(NAME cli/${name}
             COMMAND bash ${CMAKE_SOURCE_DIR}/tests/cli/test_${name}.sh $<TARGET_FILE:dl4c_cli> ${CMAKE_BINARY_DIR}
             WORKING_DIRECTORY ${CMAKE_CURRENT_BINARY_DIR})
    set_tests_properties(cli/${name} PROPERTIES
                         ENVIRONMENT "${DL4C_CLI_TEST_ENV}"
                         TIMEOUT 300
                         SKIP_RETURN_CODE 77
                         LABELS "cli")
  endforeach()
  # Two ranks on two cores: don't share the CPUs with other tests.
  if(DL4C_MPI)
    set_tests_properties(cli/mpi PROPERTIES RUN_SERIAL TRUE)
  endif()
endif()
