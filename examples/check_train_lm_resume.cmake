# Runs train_lm for STEPS steps in one go, and for half of them, saved, then resumed to STEPS:
# the resumed run's step lines (loss, learning rate, gradient norm) and its sample must be the
# same as the uninterrupted run's. Usage:
#   cmake -DTRAIN_LM=<path> -DDATA=<file> -DWORK_DIR=<dir> -P check_train_lm_resume.cmake
set(common --data=${DATA} --embedding-dim=16 --blocks=1 --heads=2 --batch=2 --seq-len=16
    --warmup=2 --eval-every=100 --sample-length=24 --threads=1)
file(REMOVE_RECURSE ${WORK_DIR}/half)

function(run_train_lm output_variable)
  execute_process(COMMAND ${TRAIN_LM} ${common} ${ARGN} RESULT_VARIABLE result
                  OUTPUT_VARIABLE output ERROR_VARIABLE errors)
  if(NOT result EQUAL 0)
    message(FATAL_ERROR "train_lm ${ARGN} failed (${result}): ${errors}")
  endif()
  set(${output_variable} "${output}" PARENT_SCOPE)
endfunction()

# The lines that must agree: every step line without its tokens/s, and the sample.
function(comparable output result_variable)
  string(REGEX MATCHALL "step [0-9]+ loss [^\n]* norm [0-9.]+" steps "${output}")
  string(REGEX MATCH "sample:\n.*" sample "${output}")
  set(${result_variable} "${steps};${sample}" PARENT_SCOPE)
endfunction()

run_train_lm(straight --steps=6)
run_train_lm(first_half --steps=3 --save=${WORK_DIR}/half --sample-length=0)
run_train_lm(second_half --steps=6 --resume=${WORK_DIR}/half)
comparable("${straight}" expected)
comparable("${first_half}${second_half}" actual)
if(NOT expected STREQUAL actual)
  message(FATAL_ERROR "resumed run differs:\n--- straight\n${expected}\n--- resumed\n${actual}")
endif()
message(STATUS "resumed run matches the uninterrupted one:\n${actual}")
