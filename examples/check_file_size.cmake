# cmake -DFILE=path -DBYTES=n -P check_file_size.cmake: fails unless the file has n bytes.
file(SIZE "${FILE}" size)
if(NOT size EQUAL BYTES)
  message(FATAL_ERROR "${FILE} has ${size} bytes, expected ${BYTES}")
endif()
