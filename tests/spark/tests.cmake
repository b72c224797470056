# The Python binding (python/dl4c) and dl4c.spark. Interpreter: the PyPI python3 on PATH
# (numpy, safetensors, pytest and pyspark installed for it by scripts/setup; Spark runs on
# the machine's Java 17). Included from tests/CMakeLists.txt.
set(DL4C_PY_ENV
    "PYTHONPATH=${CMAKE_SOURCE_DIR}/python;DL4C_LIBRARY=$<TARGET_FILE:dl4c>;DL4C_CLI=$<TARGET_FILE:dl4c_cli>;OPENBLAS_NUM_THREADS=1;OMP_NUM_THREADS=1;PYTHONDONTWRITEBYTECODE=1;SPARK_LOCAL_IP=127.0.0.1")

# ctypes binding: build/fit/evaluate on numpy, params and updater state, model files, the
# single-call worker round (bit-identical to dl4c train), the TCP communicator.
add_test(NAME python_binding/binding
         COMMAND python3 -m pytest -q -p no:cacheprovider ${CMAKE_SOURCE_DIR}/tests/python_binding/test_binding.py
                 ${CMAKE_SOURCE_DIR}/tests/python_binding/test_spark_gpu_placement.py
         WORKING_DIRECTORY ${CMAKE_BINARY_DIR})
set_tests_properties(python_binding/binding PROPERTIES ENVIRONMENT "${DL4C_PY_ENV}" TIMEOUT 300 LABELS "python")

# Spark local[2] (about 70 s) and local-cluster[2,1,1024] (about 90 s); each uses both cores.
foreach(t local cluster)
  add_test(NAME spark/${t}
           COMMAND python3 -m pytest -q -s -p no:cacheprovider ${CMAKE_SOURCE_DIR}/tests/spark/test_spark_${t}.py
           WORKING_DIRECTORY ${CMAKE_BINARY_DIR})
  set_tests_properties(spark/${t} PROPERTIES ENVIRONMENT "${DL4C_PY_ENV}" TIMEOUT 600 PROCESSORS 2
                       LABELS "spark;python")
endforeach()
