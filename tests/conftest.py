from adf_service.train.runtime import keep_freed_memory_in_heap

# CPU training on this kind of VM is 10–100× slower without it (see the function's docstring).
keep_freed_memory_in_heap()
