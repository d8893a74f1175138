# Runs the program built without and with -fopenmp and requires the same bytes from both.
foreach(program PLAIN OPENMP)
  execute_process(COMMAND ${${program}} ${OUTPUT_DIR}/openmp_products_${program}.bin
    RESULT_VARIABLE status)
  if(NOT status EQUAL 0)
    message(FATAL_ERROR "${${program}} failed: ${status}")
  endif()
endforeach()
execute_process(COMMAND ${CMAKE_COMMAND} -E compare_files
  ${OUTPUT_DIR}/openmp_products_PLAIN.bin ${OUTPUT_DIR}/openmp_products_OPENMP.bin
  RESULT_VARIABLE different)
if(different)
  message(FATAL_ERROR "the -fopenmp build gives other results than the plain build")
endif()
