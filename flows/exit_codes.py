"""The `ferry` command's exit codes (the README lists them). Kept free of imports, so the command
can answer a bad argument before anything heavy loads."""

#: every entry ok or skipped
EXIT_OK = 0
#: some entry rejected or failed (the manifest says which and why)
EXIT_ENTRIES_FAILED = 1
#: the task could not run: bad arguments, missing directory or bucket, bad credentials
EXIT_CANNOT_RUN = 2
#: the task was cancelled (Ctrl-C, `ferry stream stop`, Cancel in the UI); its summary is printed
EXIT_CANCELLED = 3
#: an error ferry did not foresee: one line, the traceback with -v
EXIT_UNEXPECTED = 4
